//! The delivery-stream engine: the stages a record passes between `PutRecord` and its destination.
//!
//! Each stream runs two tasks. The intake task owns the buffers: records wait in the processor
//! buffer (processor hints), are transformed, then wait in the destination buffer (destination
//! hints). Full destination batches go to the delivery task, which retries and backs up on
//! failure, so a slow endpoint never stops the API from accepting records, as in Firehose.
//! Shutdown closes intake, flushes both buffers and lets both tasks finish; once the grace period
//! is over, transforms and deliveries are cut off and their batches backed up. Nothing accepted
//! is dropped without being delivered or written to backup, or, when the backup store has still
//! not taken it as shutdown's backup window ends, logged as lost with its count. Until then records
//! exist only in memory (unbounded channels and buffers, nothing on disk), so a process killed
//! without a graceful shutdown loses records already acknowledged (README, "What a crash loses").

use crate::backup::Backup;
use crate::buffer::{Buffer, Record};
use crate::config::{S3BackupMode, StreamConfig};
use crate::destination::Destination;
use crate::processor::ProcessorStage;
use firehose_formats::backup::{ErrorOutputType, ErrorRecord};
use firehose_formats::http_endpoint::MAX_RECORDS_PER_REQUEST;
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
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let processing = parts.config.processor.as_ref().map(|p| {
        Buffer::new(
            (p.buffer_size_mb * MB) as usize,
            usize::MAX,
            Duration::from_secs(p.buffer_interval_secs),
        )
    });
    let all_data = parts
        .config
        .http_endpoint
        .as_ref()
        .is_some_and(|h| h.s3_backup_mode == S3BackupMode::AllData);
    let intake = Intake {
        processing: processing.zip(parts.processor),
        dest,
        deliver_tx,
        backup: parts.backup.clone(),
        all_data,
    };
    let intake_task = tokio::spawn(intake.run(intake_rx, parts.stop_intake));
    let delivery_task = tokio::spawn(deliver(
        deliver_rx,
        parts.destination,
        parts.backup,
        parts.give_up,
    ));
    let joined = tokio::spawn(async move {
        if let Err(e) = intake_task.await {
            tracing::error!(error = %e, "stream intake task failed");
        }
        if let Err(e) = delivery_task.await {
            tracing::error!(error = %e, "stream delivery task failed");
        }
    });
    (handle, joined)
}

struct Intake {
    processing: Option<(Buffer, ProcessorStage)>,
    dest: Buffer,
    deliver_tx: mpsc::UnboundedSender<Vec<Record>>,
    backup: Backup,
    all_data: bool,
}

impl Intake {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Vec<Record>>, stop: CancellationToken) {
        let mut closed = false;
        loop {
            let deadline = [
                self.processing.as_ref().and_then(|(b, _)| b.deadline()),
                self.dest.deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                biased;
                () = sleep_until(deadline) => self.flush_expired().await,
                () = stop.cancelled(), if !closed => {
                    // Refuse new records; the ones already queued are still received below.
                    rx.close();
                    closed = true;
                }
                msg = rx.recv() => match msg {
                    Some(records) => {
                        for r in records {
                            self.push(r).await;
                        }
                    }
                    None => break,
                },
            }
        }
        if let Some((buf, stage)) = &mut self.processing {
            let batch = buf.take();
            let stage = stage.clone();
            self.process(&stage, batch).await;
        }
        let batch = self.dest.take();
        self.send(batch).await;
    }

    async fn push(&mut self, record: Record) {
        let now = Instant::now();
        if let Some((buf, stage)) = &mut self.processing {
            let mut ready = buf.push(record, now).into_iter().collect::<Vec<_>>();
            if buf.is_full() {
                ready.push(buf.take());
            }
            let stage = stage.clone();
            for batch in ready {
                self.process(&stage, batch).await;
            }
        } else {
            self.push_dest(record, now).await;
        }
    }

    async fn push_dest(&mut self, record: Record, now: Instant) {
        if let Some(full) = self.dest.push(record, now) {
            self.send(full).await;
        }
        if self.dest.is_full() {
            let batch = self.dest.take();
            self.send(batch).await;
        }
    }

    async fn flush_expired(&mut self) {
        let now = Instant::now();
        if let Some((buf, stage)) = &mut self.processing
            && buf.deadline().is_some_and(|d| d <= now)
        {
            let batch = buf.take();
            let stage = stage.clone();
            self.process(&stage, batch).await;
        }
        if self.dest.deadline().is_some_and(|d| d <= now) {
            let batch = self.dest.take();
            self.send(batch).await;
        }
    }

    async fn process(&mut self, stage: &ProcessorStage, batch: Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        if self.all_data {
            self.backup.write_source(&batch).await;
        }
        let out = stage.process(batch).await;
        self.backup
            .write_errors(ErrorOutputType::ProcessingFailed, &out.failed)
            .await;
        let now = Instant::now();
        for r in out.ok {
            self.push_dest(r, now).await;
        }
    }

    async fn send(&mut self, batch: Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        if self.all_data && self.processing.is_none() {
            self.backup.write_source(&batch).await;
        }
        if let Err(mpsc::error::SendError(batch)) = self.deliver_tx.send(batch) {
            // The delivery task is gone (it only ends after this task): keep the records anyway.
            tracing::error!(
                records = batch.len(),
                "delivery task stopped early; backing the batch up"
            );
            let failed = failed_records(
                &batch,
                0,
                "Local.DeliveryStopped",
                "the delivery task stopped before the batch was sent",
                crate::backup::now_ms(),
            );
            self.backup
                .write_errors(ErrorOutputType::HttpEndpointFailed, &failed)
                .await;
        }
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
            data_id: Some(r.id.clone()),
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
    while let Some(batch) = rx.recv().await {
        if let Err(f) = destination.deliver(&batch, &give_up).await {
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
                cutoff: CancellationToken::new(),
            },
            config,
            stop_intake: stop.clone(),
            give_up: CancellationToken::new(),
        };
        (parts, rx, stop)
    }

    fn rec(i: usize, len: usize) -> Record {
        Record {
            id: i.to_string(),
            arrival_ms: 0,
            data: Bytes::from(vec![b'x'; len]),
        }
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
            processor: Arc::new(Echo),
            lambda_arn: "arn:aws:lambda:us-east-1:0:function:f".into(),
            stream: "s".into(),
            stream_arn: "arn".into(),
            region: "us-east-1".into(),
            number_of_retries: 3,
            timeout: Duration::from_secs(60),
            faults: crate::faults::Faults::new(&crate::config::FaultsConfig::default()),
            metrics: Metrics::new().unwrap(),
            give_up: CancellationToken::new(),
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
