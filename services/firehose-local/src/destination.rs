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
                let result = unless_hung(
                    crate::backup::write_durably(self.dir.clone(), path.clone(), body.clone()),
                    give_up,
                )
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

/// `write`, unless a shutdown's grace period is over (`give_up`) and it has still not finished
/// [`crate::backup::SHUTDOWN_BACKUP_WINDOW`] later: a disk that hangs must not hold the stop up
/// for ever. Such a write counts as failed, so its batch goes to the backup; should it finish
/// after all (it runs on the blocking pool), the batch is both delivered and backed up: a
/// duplicate, never a loss.
async fn unless_hung(
    write: impl std::future::Future<Output = std::io::Result<()>>,
    give_up: &CancellationToken,
) -> std::io::Result<()> {
    tokio::select! {
        biased;
        done = write => done,
        () = async {
            give_up.cancelled().await;
            tokio::time::sleep(crate::backup::SHUTDOWN_BACKUP_WINDOW).await;
        } => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the write had not finished {:?} after the shutdown grace period (a disk that hangs?)",
                crate::backup::SHUTDOWN_BACKUP_WINDOW
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::SHUTDOWN_BACKUP_WINDOW;
    use bytes::Bytes;

    /// helper-88: a destination write to a disk that hangs held the shutdown for ever. Now,
    /// once the grace period is over, it gets one backup window more and then fails (its batch
    /// goes to the backup); a slow write that finishes within it is delivered; without a
    /// shutdown a write is waited for however long it takes.
    #[tokio::test(start_paused = true)]
    async fn a_hung_write_fails_one_window_after_the_grace_period() {
        let give_up = CancellationToken::new();
        give_up.cancel();
        let start = tokio::time::Instant::now();
        let hung = unless_hung(std::future::pending(), &give_up).await;
        assert_eq!(
            hung.expect_err("given up on").kind(),
            std::io::ErrorKind::TimedOut
        );
        assert_eq!(start.elapsed(), SHUTDOWN_BACKUP_WINDOW);

        let slow = async {
            tokio::time::sleep(SHUTDOWN_BACKUP_WINDOW / 2).await;
            Ok(())
        };
        assert!(unless_hung(slow, &give_up).await.is_ok());

        let running = CancellationToken::new();
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            unless_hung(std::future::pending(), &running),
        )
        .await;
        assert!(waited.is_err(), "no shutdown: the write is not given up on");
    }

    #[test]
    fn one_record_per_line_without_doubling_newlines() {
        let recs = [
            Record::new("1", 0, Bytes::from_static(b"{\"a\":1}\n")),
            Record::new("2", 0, Bytes::from_static(b"{\"b\":2}")),
        ];
        assert_eq!(LocalDestination::body(&recs), b"{\"a\":1}\n{\"b\":2}\n");
    }
}
