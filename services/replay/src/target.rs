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
//! name, bad credentials): the replay stops at once with the error. A [`Target::send`] that
//! finds that out after part of its batch was delivered says which items were ([`SendError`]),
//! so the checkpoint records them and a re-run does not send them again.
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

/// A [`Target::send`] that had to stop: the configuration error, and what became of each item
/// of the batch before it was found (some may already be delivered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// Why nothing more can be sent.
    pub error: TargetError,
    /// One per item of the batch, in order: [`ItemResult::Accepted`] (or `Rejected`) for what
    /// was settled before the error, [`ItemResult::Unaccepted`] for the rest.
    pub results: Vec<ItemResult>,
}

impl SendError {
    /// The call failed before any of its `count` items was delivered.
    #[must_use]
    pub fn nothing_sent(error: TargetError, count: usize) -> Self {
        let results = vec![ItemResult::Unaccepted(error.0.clone()); count];
        Self { error, results }
    }
}

/// A destination for replayed records.
pub trait Target: Send + Sync {
    /// How the target is shown in logs, the summary and the checkpoint, e.g.
    /// `stream:events (region us-east-1)`: everything that tells it from another target, since
    /// a checkpoint belongs to one ([`crate::checkpoint`]).
    fn describe(&self) -> String;

    /// The most items one [`Target::send`] call should carry.
    fn max_batch(&self) -> usize;

    /// The items to send for one record, or why this record cannot go to this target.
    ///
    /// # Errors
    /// A reason the record cannot be sent here (too large, not text, …): reported per record.
    fn prepare(&self, record: &Record) -> Result<Vec<Bytes>, String>;

    /// Sends one batch; the result has one entry per item, in order.
    ///
    /// # Errors
    /// [`SendError`] when the target cannot take anything more as configured; it still says
    /// which items of the batch were delivered before that.
    fn send(
        &self,
        items: Vec<Bytes>,
    ) -> impl Future<Output = Result<Vec<ItemResult>, SendError>> + Send;
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

    async fn send(&self, items: Vec<Bytes>) -> Result<Vec<ItemResult>, SendError> {
        Err(SendError::nothing_sent(
            TargetError("no target: pass --to-stream or --to-http".to_owned()),
            items.len(),
        ))
    }
}
