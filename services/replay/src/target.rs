//! Where replayed records go, behind one small trait.
//!
//! The replay loop ([`crate::replay`]) does not know whether it talks to a delivery stream or to
//! a front door: it asks the [`Target`] to turn each record into the items it sends
//! ([`Target::prepare`]), hands it batches, and gets one [`ItemResult`] per item back. The
//! distinction that matters to the loop is the one a retry cannot change:
//! - [`ItemResult::Accepted`]: delivered; never sent again.
//! - [`ItemResult::Rejected`]: refused for good (an event the front door's schema rejects, a
//!   record over Firehose's size limit); reported and not sent again.
//! - [`ItemResult::Unaccepted`]: not delivered even after the target's own retries (the stream is
//!   throttled, the front door is down); the replay stops so a later run can resume.
//!
//! A [`TargetError`] means no item of the call can ever succeed as configured (wrong stream
//! name, bad credentials): the replay stops at once with the error.
//!
//! Implementations: [`crate::http::HttpTarget`] (`--to-http`), [`crate::stream::StreamTarget`]
//! (`--to-stream`, through the front door's own Firehose producer).

use std::future::Future;

use bytes::Bytes;

use crate::read::Record;

/// What became of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// Delivered.
    Accepted,
    /// Refused for good; the reason is reported.
    Rejected(String),
    /// Not delivered within the target's retries; the reason is reported.
    Unaccepted(String),
}

/// A call that cannot succeed as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// A destination for replayed records.
pub trait Target: Send + Sync {
    /// How the target is shown in logs, the summary and the checkpoint, e.g. `stream:events`.
    fn describe(&self) -> String;

    /// The most items one [`Target::send`] call should carry.
    fn max_batch(&self) -> usize;

    /// The items to send for one record, or why this record cannot go to this target.
    ///
    /// # Errors
    /// A reason the record cannot be sent here (too large, not text, …): reported per record.
    fn prepare(&self, record: &Record) -> Result<Vec<Bytes>, String>;

    /// Sends one batch; the result has one entry per item, in order.
    fn send(
        &self,
        items: Vec<Bytes>,
    ) -> impl Future<Output = Result<Vec<ItemResult>, TargetError>> + Send;
}

/// The "target" of a dry run without `--to-stream`/`--to-http`: records are shown as read.
/// It sends nothing; [`Target::send`] refuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTarget;

impl Target for NoTarget {
    fn describe(&self) -> String {
        "none (dry run)".to_owned()
    }

    fn max_batch(&self) -> usize {
        firehose_formats::limits::MAX_BATCH_RECORDS
    }

    fn prepare(&self, record: &Record) -> Result<Vec<Bytes>, String> {
        Ok(vec![record.data.clone()])
    }

    async fn send(&self, _items: Vec<Bytes>) -> Result<Vec<ItemResult>, TargetError> {
        Err(TargetError(
            "no target: pass --to-stream or --to-http".to_owned(),
        ))
    }
}
