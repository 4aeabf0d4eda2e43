//! The delivery-stream engine: the stages a record passes between `PutRecord` and its destination.
//!
//! Each stream is a chain of tasks joined by channels, one stage each, so a slow stage never
//! stops the ones before it, as in Firehose:
//!
//! * **processor buffer** (only with a processor): takes the records the API accepted and holds
//!   them until the processor hints say a batch is ready;
//! * **transform**: invokes the function for one batch at a time (in order), retries, writes
//!   `processing-failed` output, and passes the transformed records on;
//! * **destination buffer**: holds records until the destination hints say a batch is ready,
//!   on its own clock, so records already transformed leave on time while a later batch is
//!   still being transformed (or retried);
//! * **delivery**: sends batches, retries, backs up what fails.
//!
//! Without a processor the API's records go straight to the destination buffer. Shutdown closes
//! intake; each stage then flushes what it holds and ends when the stage before it has ended, so
//! everything accepted flows through in order. Once the grace period is over, transforms and
//! deliveries are cut off and their batches backed up. Nothing accepted is dropped without being
//! delivered or written to backup, or, when the backup has made no progress for shutdown's
//! backup window, logged as lost with its count. Until then records exist only in
//! memory (channels and buffers, nothing on disk), so a process killed without a graceful
//! shutdown loses records already acknowledged (README, "What a crash loses").

use crate::backup::Backup;
use crate::buffer::{Buffer, Record};
use crate::config::{S3BackupMode, StreamConfig};
use crate::destination::Destination;
use crate::processor::ProcessorStage;
use firehose_formats::backup::{ErrorOutputType, ErrorRecord};
use firehose_formats::http_endpoint::MAX_RECORDS_PER_REQUEST;
use futures::FutureExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// 1 MB as Firehose's buffering hints count it.
const MB: f64 = 1024.0 * 1024.0;

/// The API's view of a running stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamHandle {
    pub(crate) config: StreamConfig,
    pub(crate) arn: String,
    pub(crate) version: u64,
    pub(crate) created_at: time::OffsetDateTime,
    intake: mpsc::UnboundedSender<Vec<Record>>,
}

/// The stream no longer accepts records (it is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl StreamHandle {
    /// Hands accepted records to the stream.
    pub(crate) fn accept(&self, records: Vec<Record>) -> Result<(), Closed> {
        self.intake.send(records).map_err(|_| Closed)
    }
}

/// Everything a stream's tasks need.
#[derive(Debug)]
pub(crate) struct StreamParts {
    pub(crate) config: StreamConfig,
    pub(crate) arn: String,
    pub(crate) processor: Option<ProcessorStage>,
    pub(crate) destination: Arc<dyn Destination>,
    pub(crate) backup: Backup,
    /// Cancelled at shutdown: stop taking records, flush.
    pub(crate) stop_intake: CancellationToken,
    /// Cancelled when the shutdown grace period ends: stop retrying, back up. The processor
    /// stage holds the same token.
    pub(crate) give_up: CancellationToken,
}

/// Starts a stream's tasks; the join handle finishes when everything accepted is settled.
pub(crate) fn spawn(parts: StreamParts) -> (StreamHandle, JoinHandle<()>) {
    let (intake_tx, intake_rx) = mpsc::unbounded_channel();
    let (deliver_tx, deliver_rx) = mpsc::unbounded_channel();
    let handle = StreamHandle {
        config: parts.config.clone(),
        arn: parts.arn.clone(),
        version: parts.backup.version,
        created_at: time::OffsetDateTime::now_utc(),
        intake: intake_tx,
    };
    let hints = parts.config.buffering;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let dest = Buffer::new(
        (f64::from(hints.size_mb) * MB) as usize,
        MAX_RECORDS_PER_REQUEST,
        Duration::from_secs(hints.interval_secs),
    );
    let all_data = parts
        .config
        .http_endpoint
        .as_ref()
        .is_some_and(|h| h.s3_backup_mode == S3BackupMode::AllData);
    let mut tasks = Vec::new();
    match parts.config.processor.as_ref().zip(parts.processor) {
        Some((hints, stage)) => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let processing = Buffer::new(
                (hints.buffer_size_mb * MB) as usize,
                usize::MAX,
                Duration::from_secs(hints.buffer_interval_secs),
            );
            let (transform_tx, transform_rx) = mpsc::unbounded_channel();
            let (transformed_tx, transformed_rx) = mpsc::unbounded_channel();
            let gather = Gather {
                buffer: processing,
                out: transform_tx,
                backup: parts.backup.clone(),
                backup_source: false,
                if_out_gone: ErrorOutputType::ProcessingFailed,
            };
            tasks.push((
                "processor buffer",
                tokio::spawn(gather.run(intake_rx, Some(parts.stop_intake))),
            ));
            tasks.push((
                "transform",
                tokio::spawn(transform(
                    transform_rx,
                    stage,
                    parts.backup.clone(),
                    all_data,
                    transformed_tx,
                )),
            ));
            let gather = Gather {
                buffer: dest,
                out: deliver_tx,
                backup: parts.backup.clone(),
                backup_source: false,
                if_out_gone: ErrorOutputType::HttpEndpointFailed,
            };
            tasks.push((
                "destination buffer",
                tokio::spawn(gather.run(transformed_rx, None)),
            ));
        }
        None => {
            let gather = Gather {
                buffer: dest,
                out: deliver_tx,
                backup: parts.backup.clone(),
                backup_source: all_data,
                if_out_gone: ErrorOutputType::HttpEndpointFailed,
            };
            tasks.push((
                "destination buffer",
                tokio::spawn(gather.run(intake_rx, Some(parts.stop_intake))),
            ));
        }
    }
    tasks.push((
        "delivery",
        tokio::spawn(deliver(
            deliver_rx,
            parts.destination,
            parts.backup,
            parts.give_up,
        )),
    ));
    let joined = tokio::spawn(async move {
        for (stage, task) in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, stage, "stream task failed");
            }
        }
    });
    (handle, joined)
}

/// A buffering stage: takes records from `rx`, holds them in `buffer` until its size, count or
/// interval hint says a batch is ready, and passes each batch to `out`.
struct Gather {
    buffer: Buffer,
    out: mpsc::UnboundedSender<Vec<Record>>,
    backup: Backup,
    /// Write each batch to the `AllData` source backup before passing it on (the destination
    /// buffer of a stream without a processor).
    backup_source: bool,
    /// Where a batch goes when the next stage is gone (only after a panic there).
    if_out_gone: ErrorOutputType,
}

impl Gather {
    /// Runs until `rx` is closed and drained, then passes on what is left. `stop` (the first
    /// stage's only) closes `rx` at shutdown; later stages end when the stage before them ends.
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Vec<Record>>,
        stop: Option<CancellationToken>,
    ) {
        let stop = stop.unwrap_or_default();
        let mut closed = false;
        loop {
            tokio::select! {
                biased;
                () = sleep_until(self.buffer.deadline()) => {
                    let batch = self.buffer.take();
                    self.pass_on(batch).await;
                }
                () = stop.cancelled(), if !closed => {
                    // Refuse new records; the ones already queued are still received below.
                    rx.close();
                    closed = true;
                }
                msg = rx.recv() => match msg {
                    Some(records) => {
                        let now = Instant::now();
                        for record in records {
                            if let Some(full) = self.buffer.push(record, now) {
                                self.pass_on(full).await;
                            }
                            if self.buffer.is_full() {
                                let batch = self.buffer.take();
                                self.pass_on(batch).await;
                            }
                        }
                    }
                    None => break,
                },
            }
        }
        let batch = self.buffer.take();
        self.pass_on(batch).await;
    }

    async fn pass_on(&mut self, batch: Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        if self.backup_source {
            self.backup.write_source(&batch).await;
        }
        hand_on(&self.out, batch, &self.backup, self.if_out_gone).await;
    }
}

/// Sends `batch` to the next stage. If that stage is gone (it only ends after this one, so only
/// after a panic there), the records are kept anyway: backed up as `if_gone` output.
async fn hand_on(
    out: &mpsc::UnboundedSender<Vec<Record>>,
    batch: Vec<Record>,
    backup: &Backup,
    if_gone: ErrorOutputType,
) {
    if let Err(mpsc::error::SendError(batch)) = out.send(batch) {
        tracing::error!(
            records = batch.len(),
            "the next stage of the stream stopped early; backing the batch up"
        );
        let failed = failed_records(
            &batch,
            0,
            "Local.StageStopped",
            "the stream's next stage stopped before the batch reached it",
            crate::backup::now_ms(),
        );
        backup.write_errors(if_gone, &failed).await;
    }
}

/// The transform stage: one batch at a time, in order.
async fn transform(
    mut rx: mpsc::UnboundedReceiver<Vec<Record>>,
    stage: ProcessorStage,
    backup: Backup,
    all_data: bool,
    out: mpsc::UnboundedSender<Vec<Record>>,
) {
    while let Some(mut batch) = rx.recv().await {
        gather_queued(&mut batch, &mut rx, &stage.give_up);
        if all_data {
            backup.write_source(&batch).await;
        }
        let processed = stage.process(batch).await;
        backup
            .write_errors(ErrorOutputType::ProcessingFailed, &processed.failed)
            .await;
        if !processed.ok.is_empty() {
            hand_on(
                &out,
                processed.ok,
                &backup,
                ErrorOutputType::HttpEndpointFailed,
            )
            .await;
        }
    }
}

/// Most record bytes [`gather_queued`] puts in one batch.
const MAX_GATHERED_BYTES: usize = 64 * 1024 * 1024;

/// Past the shutdown grace period nothing more is attempted, so every batch still queued for a
/// stage goes straight to backup. Written one object per batch, a long queue (an endpoint down
/// for an hour holds hundreds) would take one store round trip each; so once
/// `give_up` is cancelled, `batch` takes every batch already queued behind it, up to
/// [`MAX_GATHERED_BYTES`], and they are backed up together.
fn gather_queued(
    batch: &mut Vec<Record>,
    rx: &mut mpsc::UnboundedReceiver<Vec<Record>>,
    give_up: &CancellationToken,
) {
    if !give_up.is_cancelled() {
        return;
    }
    let mut bytes: usize = batch.iter().map(|r| r.data.len()).sum();
    while bytes < MAX_GATHERED_BYTES {
        let Ok(more) = rx.try_recv() else { break };
        bytes += more.iter().map(|r| r.data.len()).sum::<usize>();
        batch.extend(more);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn failed_records(
    batch: &[Record],
    attempts: u32,
    code: &str,
    message: &str,
    ended_ms: i64,
) -> Vec<ErrorRecord> {
    batch
        .iter()
        .map(|r| ErrorRecord {
            attempts_made: attempts,
            arrival_timestamp: r.arrival_ms,
            error_code: code.to_owned(),
            error_message: message.to_owned(),
            attempt_ending_timestamp: ended_ms,
            raw_data: crate::backup::b64(&r.data),
            subsequence_number: Some(0),
            // AWS's example shows the record's sequence number and `.0`.
            data_id: Some(format!("{}.0", r.id)),
            ..ErrorRecord::default()
        })
        .collect()
}

async fn deliver(
    mut rx: mpsc::UnboundedReceiver<Vec<Record>>,
    destination: Arc<dyn Destination>,
    backup: Backup,
    give_up: CancellationToken,
) {
    while let Some(mut batch) = rx.recv().await {
        gather_queued(&mut batch, &mut rx, &give_up);
        // A destination that panics (one given to `Server::with_destination`) fails the batch,
        // which is backed up, instead of ending this task with every batch queued behind it.
        // (The call goes inside the caught future: a panic before it returns a future counts.)
        let delivered =
            std::panic::AssertUnwindSafe(async { destination.deliver(&batch, &give_up).await })
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(crate::destination::DeliveryFailure {
                        attempts: 1,
                        error_code: "Local.DestinationPanicked".to_owned(),
                        error_message: "the destination panicked while delivering the batch"
                            .to_owned(),
                        ended_ms: crate::backup::now_ms(),
                    })
                });
        if let Err(f) = delivered {
            tracing::warn!(
                records = batch.len(),
                code = f.error_code,
                attempts = f.attempts,
                "delivery failed; writing the batch to error output"
            );
            let failed = failed_records(
                &batch,
                f.attempts,
                &f.error_code,
                &f.error_message,
                f.ended_ms,
            );
            backup
                .write_errors(ErrorOutputType::HttpEndpointFailed, &failed)
                .await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backup::LocalDirStore;
    use crate::config::{BackupConfig, BufferingHints, LocalDestinationConfig};
    use crate::destination::DeliveryFailure;
    use crate::metrics::Metrics;
    use bytes::Bytes;
    use futures::future::BoxFuture;

    #[derive(Debug)]
    struct Collect(mpsc::UnboundedSender<Vec<Record>>);

    impl Destination for Collect {
        fn deliver<'a>(
            &'a self,
            batch: &'a [Record],
            _give_up: &'a CancellationToken,
        ) -> BoxFuture<'a, Result<(), DeliveryFailure>> {
            let _ = self.0.send(batch.to_vec());
            Box::pin(async { Ok(()) })
        }
    }

    fn parts(
        dir: &std::path::Path,
        hints: BufferingHints,
    ) -> (
        StreamParts,
        mpsc::UnboundedReceiver<Vec<Record>>,
        CancellationToken,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let config = StreamConfig {
            name: "s".into(),
            buffering: hints,
            processor: None,
            http_endpoint: None,
            local_destination: LocalDestinationConfig::default(),
            backup: BackupConfig::default(),
        };
        let parts = StreamParts {
            arn: "arn".into(),
            processor: None,
            destination: Arc::new(Collect(tx)),
            backup: Backup {
                store: Arc::new(LocalDirStore::new(dir.to_owned())),
                stream: "s".into(),
                version: 1,
                config: config.backup.clone(),
                metrics: Metrics::new().unwrap(),
                cutoff: crate::backup::Cutoff::default(),
            },
            config,
            stop_intake: stop.clone(),
            give_up: CancellationToken::new(),
        };
        (parts, rx, stop)
    }

    fn rec(i: usize, len: usize) -> Record {
        Record::new(i.to_string(), 0, vec![b'x'; len])
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_when_the_interval_expires_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let (parts, mut rx, _stop) = parts(
            dir.path(),
            BufferingHints {
                size_mb: 1,
                interval_secs: 60,
            },
        );
        let (handle, _task) = spawn(parts);
        handle.accept(vec![rec(1, 10), rec(2, 10)]).unwrap();
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(rx.try_recv().is_err(), "nothing before 60 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let batch = rx.recv().await.unwrap();
        assert_eq!(
            batch.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_at_the_size_hint_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (parts, mut rx, _stop) = parts(
            dir.path(),
            BufferingHints {
                size_mb: 1,
                interval_secs: 900,
            },
        );
        let (handle, _task) = spawn(parts);
        let started = Instant::now();
        // 3 × 400 KiB: the third would pass 1 MiB, so the first two go out as one batch.
        handle
            .accept(vec![
                rec(1, 400 * 1024),
                rec(2, 400 * 1024),
                rec(3, 400 * 1024),
            ])
            .unwrap();
        let batch = rx.recv().await.unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "size flush does not wait for the interval"
        );
        assert!(rx.try_recv().is_err());
    }

    /// Returns every record `Ok` with its data unchanged.
    #[derive(Debug)]
    struct Echo;

    impl crate::processor::Processor for Echo {
        fn invoke(
            &self,
            event: Vec<u8>,
            _timeout: Duration,
        ) -> BoxFuture<'_, Result<Vec<u8>, crate::processor::InvokeError>> {
            Box::pin(async move {
                let ev: firehose_formats::transform::TransformEvent =
                    serde_json::from_slice(&event).unwrap();
                let records: Vec<_> = ev
                    .records
                    .iter()
                    .map(|r| serde_json::json!({"recordId": r.record_id, "result": "Ok", "data": r.data}))
                    .collect();
                Ok(serde_json::to_vec(&serde_json::json!({ "records": records })).unwrap())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_processor_buffer_waits_for_its_own_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (mut parts, mut rx, _stop) = parts(
            dir.path(),
            BufferingHints {
                size_mb: 1,
                interval_secs: 0,
            },
        );
        parts.config.processor = Some(crate::config::ProcessorConfig {
            buffer_interval_secs: 10,
            ..Default::default()
        });
        parts.processor = Some(ProcessorStage {
            timeout: Duration::from_secs(60),
            ..stage(Arc::new(Echo))
        });
        let (handle, _task) = spawn(parts);
        let started = Instant::now();
        handle.accept(vec![rec(1, 10)]).unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(
            rx.try_recv().is_err(),
            "the processor buffer holds records for 10 s"
        );
        let batch = rx.recv().await.unwrap();
        assert_eq!(batch[0].data, Bytes::from(vec![b'x'; 10]));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    /// [`Echo`], but the second invocation takes 100 s.
    #[derive(Debug, Default)]
    struct SlowSecond(std::sync::atomic::AtomicUsize);

    impl crate::processor::Processor for SlowSecond {
        fn invoke(
            &self,
            event: Vec<u8>,
            timeout: Duration,
        ) -> BoxFuture<'_, Result<Vec<u8>, crate::processor::InvokeError>> {
            let call = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if call == 1 {
                    tokio::time::sleep(Duration::from_secs(100)).await;
                }
                Echo.invoke(event, timeout).await
            })
        }
    }

    fn stage(processor: Arc<dyn crate::processor::Processor>) -> ProcessorStage {
        ProcessorStage {
            processor,
            lambda_arn: "arn:aws:lambda:us-east-1:0:function:f".into(),
            stream: "s".into(),
            stream_arn: "arn".into(),
            region: "us-east-1".into(),
            number_of_retries: 3,
            timeout: Duration::from_secs(300),
            faults: crate::faults::Faults::new(&crate::config::FaultsConfig::default()),
            metrics: Metrics::new().unwrap(),
            give_up: CancellationToken::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transformed_records_leave_on_time_while_a_later_batch_is_transformed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut parts, mut rx, _stop) = parts(
            dir.path(),
            BufferingHints {
                size_mb: 1,
                interval_secs: 5,
            },
        );
        parts.config.processor = Some(crate::config::ProcessorConfig {
            buffer_interval_secs: 1,
            ..Default::default()
        });
        parts.processor = Some(stage(Arc::new(SlowSecond::default())));
        let (handle, _task) = spawn(parts);
        let started = Instant::now();
        // Record 1 is transformed at 1 s and waits in the destination buffer until 6 s; record 2
        // reaches the function at 3 s and is still being transformed then.
        handle.accept(vec![rec(1, 10)]).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        handle.accept(vec![rec(2, 10)]).unwrap();
        let first = rx.recv().await.unwrap();
        assert_eq!(
            first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["1"]
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(6),
            "the destination buffer keeps its own interval during a slow transform"
        );
        // Records accepted during the slow transform are not held up behind it at intake.
        handle.accept(vec![rec(3, 10)]).unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(
            second.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["2", "3"],
            "order is kept: record 3 waits for record 2's transform"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(108));
    }

    /// Panics on its first batch, then collects like [`Collect`].
    #[derive(Debug)]
    struct PanicsOnce(
        std::sync::atomic::AtomicBool,
        mpsc::UnboundedSender<Vec<Record>>,
    );

    impl Destination for PanicsOnce {
        fn deliver<'a>(
            &'a self,
            batch: &'a [Record],
            _give_up: &'a CancellationToken,
        ) -> BoxFuture<'a, Result<(), DeliveryFailure>> {
            let first = !self.0.swap(true, std::sync::atomic::Ordering::SeqCst);
            // Before the future is made: the hardest place to catch.
            assert!(!first, "a destination with a bug");
            Box::pin(async move {
                let _ = self.1.send(batch.to_vec());
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_that_panics_fails_its_batch_and_the_stream_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut parts, _unused, stop) = parts(
            dir.path(),
            BufferingHints {
                size_mb: 1,
                interval_secs: 1,
            },
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        parts.destination = Arc::new(PanicsOnce(std::sync::atomic::AtomicBool::new(false), tx));
        let (handle, task) = spawn(parts);
        handle.accept(vec![rec(1, 5)]).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        handle.accept(vec![rec(2, 5)]).unwrap();
        let delivered = rx.recv().await.unwrap();
        assert_eq!(
            delivered[0].id, "2",
            "the batch after the panic is delivered"
        );
        stop.cancel();
        task.await.unwrap();
        let backed_up: Vec<String> = crate::backup::tests::files(dir.path())
            .into_iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(backed_up.len(), 1, "{backed_up:?}");
        assert!(
            backed_up[0].contains("Local.DestinationPanicked")
                && backed_up[0].contains("\"dataId\":\"1.0\""),
            "the first batch is backed up: {}",
            backed_up[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_everything_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let (parts, mut rx, stop) = parts(
            dir.path(),
            BufferingHints {
                size_mb: 64,
                interval_secs: 900,
            },
        );
        let (handle, task) = spawn(parts);
        handle
            .accept(vec![rec(1, 5), rec(2, 5), rec(3, 5)])
            .unwrap();
        tokio::task::yield_now().await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(rx.recv().await.unwrap().len(), 3);
        assert_eq!(
            handle.accept(vec![rec(4, 1)]),
            Err(Closed),
            "closed streams refuse records"
        );
    }
}
