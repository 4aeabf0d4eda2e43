//! Destinations: where a buffered batch goes, and the local NDJSON one.
//!
//! The stream engine hands each full destination buffer to a [`Destination`] and backs up what
//! it reports as failed; the destination owns its own retry policy. [`LocalDestination`] is the
//! "no endpoint configured" destination: each batch becomes one file laid out like an S3
//! destination object (`<stream>/YYYY/MM/dd/HH/<stream>-<version>-…-<uuid>.ndjson`), one record
//! per line, so a newcomer can `tail` transformed events as they arrive.

use crate::buffer::Record;
use crate::metrics::Metrics;
use firehose_formats::backup as layout;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A batch the destination gave up on; every record in it goes to error output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// Attempts made.
    pub attempts: u32,
    /// Firehose error code, e.g. `HttpEndpoint.DestinationException`.
    pub error_code: String,
    /// The last error's message.
    pub error_message: String,
    /// Epoch ms of the last attempt's end.
    pub ended_ms: i64,
}

/// Somewhere batches are delivered.
pub trait Destination: Send + Sync + std::fmt::Debug {
    /// Delivers one batch, retrying per the destination's policy. `give_up` is cancelled when a
    /// shutdown's grace period is over: stop retrying and report the failure.
    fn deliver<'a>(
        &'a self,
        batch: &'a [Record],
        give_up: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), DeliveryFailure>>;
}

/// Writes batches as NDJSON files.
#[derive(Debug, Clone)]
pub struct LocalDestination {
    pub(crate) dir: PathBuf,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) metrics: Metrics,
}

/// The file extension of local destination objects (Firehose's `FileExtension` setting).
pub const LOCAL_EXTENSION: &str = ".ndjson";

impl LocalDestination {
    fn body(batch: &[Record]) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.iter().map(|r| r.data.len() + 1).sum());
        for r in batch {
            body.extend_from_slice(&r.data);
            if !r.data.ends_with(b"\n") {
                body.push(b'\n');
            }
        }
        body
    }
}

impl Destination for LocalDestination {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Record],
        give_up: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), DeliveryFailure>> {
        Box::pin(async move {
            let oldest = batch
                .iter()
                .map(|r| r.arrival_ms)
                .min()
                .unwrap_or_else(crate::backup::now_ms);
            let at = crate::backup::datetime_from_ms(oldest);
            let prefix = layout::format_timestamp("yyyy/MM/dd/HH/", at).unwrap_or_default();
            // Named like an S3 object, by the oldest record's arrival (see `backup`).
            let name = layout::object_name(
                &self.stream,
                self.version,
                at,
                &uuid::Uuid::new_v4().to_string(),
                LOCAL_EXTENSION,
            );
            let path = self.dir.join(&self.stream).join(prefix).join(name);
            let body = bytes::Bytes::from(Self::body(batch));
            let mut attempts = 0;
            let mut delay = Duration::from_millis(500);
            loop {
                attempts += 1;
                let result =
                    crate::backup::write_durably(self.dir.clone(), path.clone(), body.clone())
                        .await;
                match result {
                    Ok(()) => {
                        self.metrics
                            .local_records
                            .with_label_values(&[self.stream.as_str()])
                            .inc_by(batch.len() as u64);
                        self.metrics
                            .local_bytes
                            .with_label_values(&[self.stream.as_str()])
                            .inc_by(body.len() as u64);
                        tracing::info!(stream = self.stream, path = %path.display(), records = batch.len(), "delivered to local destination");
                        return Ok(());
                    }
                    Err(e) if give_up.is_cancelled() => {
                        return Err(DeliveryFailure {
                            attempts,
                            error_code: "Local.WriteFailed".into(),
                            error_message: format!("writing {}: {e}", path.display()),
                            ended_ms: crate::backup::now_ms(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "local destination write failed; retrying");
                        let _ = give_up.run_until_cancelled(tokio::time::sleep(delay)).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn one_record_per_line_without_doubling_newlines() {
        let recs = [
            Record::new("1", 0, Bytes::from_static(b"{\"a\":1}\n")),
            Record::new("2", 0, Bytes::from_static(b"{\"b\":2}")),
        ];
        assert_eq!(LocalDestination::body(&recs), b"{\"a\":1}\n{\"b\":2}\n");
    }
}
