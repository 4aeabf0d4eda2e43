//! The Lambda processor stage: invoke the transform on a batch and apply Firehose's contract.
//!
//! Firehose sends a batch (at most the processor buffer size, always under Lambda's 6 MB payload
//! limit), retries a failed invocation `NumberOfRetries` times, and then checks the response:
//! missing or duplicated record ids and responses that break the status model fail the whole
//! batch without retry; records returned `ProcessingFailed` fail alone. Every failed record goes
//! to `processing-failed/` with its original data. Once a shutdown's grace period is over nothing
//! more is invoked, as in HTTP delivery: an invocation in progress is abandoned
//! (`Lambda.FunctionTimedOut`, not retried), a batch not yet invoked fails with
//! `Local.ShutdownBeforeAttempt` and `attemptsMade` 0, and both go to `processing-failed/`, so a
//! hanging function cannot hold shutdown up. How the function runs is behind [`Processor`]:
//! in this process through the `transform` library, or as a child process through the Lambda
//! Runtime API (`runtime_api`). Sources: <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html>.

use crate::backup::{b64, now_ms};
use crate::buffer::{Held, Record};
use crate::delivery::error_code::SHUTDOWN_BEFORE_ATTEMPT;
use crate::faults::Faults;
use crate::metrics::Metrics;
use base64::Engine as _;
use bytes::Bytes;
use firehose_formats::backup::ErrorRecord;
use firehose_formats::limits::LAMBDA_MAX_PAYLOAD_BYTES;
use firehose_formats::transform::{
    self as contract, EventRecord, TransformEvent, TransformResult, error_code,
};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why one invocation failed (Firehose retries these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function returned an error, crashed, or its response could not be read.
    #[error("{0}")]
    Function(String),
    /// The function ran past its timeout.
    #[error("the function did not return within {0:?}")]
    TimedOut(Duration),
}

impl InvokeError {
    const fn error_code(&self) -> &'static str {
        match self {
            Self::Function(_) => error_code::FUNCTION_ERROR,
            Self::TimedOut(_) => error_code::FUNCTION_TIMED_OUT,
        }
    }

    /// The `errorMessage` of the error records: for a function error the text real Firehose
    /// writes (firehose-facts.md §2.3, from a real `processing-failed` record), which readers
    /// may match on, followed by what firehose-local knows of the cause.
    fn error_message(&self) -> String {
        match self {
            Self::Function(cause) => format!("{FUNCTION_ERROR_MESSAGE} ({cause})"),
            Self::TimedOut(_) => self.to_string(),
        }
    }
}

/// Firehose's `errorMessage` for `Lambda.FunctionError`.
const FUNCTION_ERROR_MESSAGE: &str =
    "The Lambda function was successfully invoked but it returned an error result.";

/// Runs the transform function on one invocation event.
pub trait Processor: Send + Sync + std::fmt::Debug {
    /// Invokes the function with the raw event JSON and returns its raw response JSON.
    fn invoke(
        &self,
        event: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, InvokeError>>;
}

/// The `transform` library, called in this process on a blocking thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl Processor for InProcess {
    fn invoke(
        &self,
        event: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, InvokeError>> {
        Box::pin(async move {
            let work =
                tokio::task::spawn_blocking(move || transform::process_event(&event, now_ms()));
            match tokio::time::timeout(timeout, work).await {
                Err(_) => Err(InvokeError::TimedOut(timeout)),
                Ok(Err(join)) => Err(InvokeError::Function(format!(
                    "the transform panicked: {join}"
                ))),
                Ok(Ok(Err(e))) => Err(InvokeError::Function(e.to_string())),
                Ok(Ok(Ok(body))) => Ok(body),
            }
        })
    }
}

/// What processing a batch produced.
#[derive(Debug, Default)]
pub(crate) struct Processed {
    /// Records returned `Ok`, with their transformed data and original arrival time.
    pub(crate) ok: Vec<Record>,
    /// Records for `processing-failed/`.
    pub(crate) failed: Vec<ErrorRecord>,
    /// The failed records' shares of the memory account, kept until their backup is written.
    pub(crate) failed_held: Vec<Held>,
    /// Records returned `Dropped`.
    pub(crate) dropped: usize,
}

/// The processor stage of one stream.
#[derive(Debug, Clone)]
pub(crate) struct ProcessorStage {
    pub(crate) processor: Arc<dyn Processor>,
    pub(crate) lambda_arn: String,
    pub(crate) stream: String,
    pub(crate) stream_arn: String,
    pub(crate) region: String,
    pub(crate) number_of_retries: u32,
    pub(crate) timeout: Duration,
    pub(crate) faults: Faults,
    pub(crate) metrics: Metrics,
    /// Cancelled when a shutdown's grace period is over: invoke nothing more, back up.
    pub(crate) give_up: CancellationToken,
}

impl ProcessorStage {
    /// Processes a batch, splitting it first if its event would pass Lambda's 6 MB request limit.
    pub(crate) async fn process(&self, batch: Vec<Record>) -> Processed {
        let mut out = Processed::default();
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            if batch.is_empty() {
                continue;
            }
            // Past the shutdown grace period nothing more is invoked: the batch goes to backup
            // now, without building (and splitting) its event first.
            if self.give_up.is_cancelled() {
                self.fail_unattempted(&mut out, batch);
                continue;
            }
            let event = self.event(&batch);
            if event.len() > LAMBDA_MAX_PAYLOAD_BYTES && batch.len() > 1 {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                pending.push(second);
                pending.push(first);
                continue;
            }
            self.process_one(batch, event, &mut out).await;
        }
        out
    }

    fn event(&self, batch: &[Record]) -> Vec<u8> {
        let event = TransformEvent {
            invocation_id: uuid::Uuid::new_v4().to_string(),
            delivery_stream_arn: self.stream_arn.clone(),
            region: self.region.clone(),
            records: batch
                .iter()
                .map(|r| EventRecord {
                    record_id: r.id.clone(),
                    approximate_arrival_timestamp: r.arrival_ms,
                    data: b64(&r.data),
                })
                .collect(),
        };
        serde_json::to_vec(&event).unwrap_or_default()
    }

    /// Fails a batch the shutdown grace period cut off before its first invocation.
    fn fail_unattempted(&self, out: &mut Processed, batch: Vec<Record>) {
        tracing::warn!(
            stream = self.stream,
            records = batch.len(),
            "shutdown grace period over; backing the batch up without invoking the transform"
        );
        self.fail(
            out,
            batch,
            0,
            SHUTDOWN_BEFORE_ATTEMPT,
            "firehose-local shut down and its grace period (shutdown_grace_secs) ended before \
             this batch was sent to the transform function; it was not invoked",
        );
    }

    /// Moves `batch` to `out`'s `processing-failed` records (keeping the records' shares of the
    /// memory account until the backup is written).
    fn fail(
        &self,
        out: &mut Processed,
        batch: Vec<Record>,
        attempts: u32,
        code: &str,
        message: &str,
    ) {
        let ended = now_ms();
        for r in batch {
            out.failed.push(ErrorRecord {
                attempts_made: attempts,
                arrival_timestamp: r.arrival_ms,
                error_code: code.to_owned(),
                error_message: message.to_owned(),
                attempt_ending_timestamp: ended,
                raw_data: b64(&r.data),
                lambda_arn: Some(self.lambda_arn.clone()),
                ..ErrorRecord::default()
            });
            out.failed_held.push(r.held);
        }
    }

    async fn invoke_once(&self, event: &[u8]) -> Result<Vec<u8>, InvokeError> {
        if self.faults.fail_transform() {
            return Err(InvokeError::Function(
                "injected fault: the function returned an error (faults.transform_failure_share)"
                    .into(),
            ));
        }
        // A processor that panics (one given to `Server::with_processor`) fails the invocation
        // like a crashed function, instead of taking the stream's transform stage, and every
        // batch queued behind it, down with it. Only where panics unwind (debug builds, tests):
        // release builds abort (README, "What a crash loses").
        // (The call goes inside the caught future: a panic before it returns a future counts.)
        let body = std::panic::AssertUnwindSafe(async {
            self.processor.invoke(event.to_vec(), self.timeout).await
        })
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(InvokeError::Function("the processor panicked".into())))?;
        if body.len() > LAMBDA_MAX_PAYLOAD_BYTES {
            return Err(InvokeError::Function(format!(
                "the response is {} bytes, over Lambda's 6 MB payload limit",
                body.len()
            )));
        }
        Ok(body)
    }

    async fn process_one(&self, batch: Vec<Record>, event: Vec<u8>, out: &mut Processed) {
        let stream = [self.stream.as_str()];
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            self.metrics
                .processing_invocations
                .with_label_values(&stream)
                .inc();
            let started = tokio::time::Instant::now();
            // An invocation in progress when the grace period ends is abandoned (its outcome is
            // unknown) and not retried.
            let result = tokio::select! {
                biased;
                r = self.invoke_once(&event) => r,
                () = self.give_up.cancelled() => {
                    tracing::warn!(stream = self.stream, attempts, records = batch.len(), "shutdown grace period over; transform invocation abandoned");
                    self.fail(
                        out,
                        batch,
                        attempts,
                        error_code::FUNCTION_TIMED_OUT,
                        "The function had not returned when the shutdown grace period \
                         (shutdown_grace_secs) ended; the invocation was abandoned",
                    );
                    return;
                }
            };
            self.metrics
                .processing_duration
                .with_label_values(&stream)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(body) => break body,
                Err(e) if attempts > self.number_of_retries || self.give_up.is_cancelled() => {
                    tracing::warn!(stream = self.stream, attempts, error = %e, records = batch.len(), "transform invocation failed and is not retried (retries used up, or shutdown grace period over)");
                    self.fail(out, batch, attempts, e.error_code(), &e.error_message());
                    return;
                }
                Err(e) => {
                    tracing::warn!(stream = self.stream, attempts, error = %e, "transform invocation failed; retrying")
                }
            }
        };
        let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
        let checked = contract::check_response(&ids, &response).and_then(|recs| {
            recs.into_iter()
                .map(
                    |r| match base64::engine::general_purpose::STANDARD.decode(&r.data) {
                        Ok(data) => Ok((r.result, data)),
                        Err(e) => Err(contract::ContractError::JsonProcessing(format!(
                            "record {:?} has invalid base64 data: {e}",
                            r.record_id
                        ))),
                    },
                )
                .collect::<Result<Vec<_>, _>>()
        });
        let records = match checked {
            Ok(r) => r,
            Err(e) => {
                // A response that came back is final, however malformed: no retry.
                tracing::warn!(stream = self.stream, code = e.error_code(), error = %e, "transform response breaks the contract");
                self.fail(out, batch, attempts, e.error_code(), &e.to_string());
                return;
            }
        };
        self.metrics
            .processing_success
            .with_label_values(&stream)
            .inc();
        for (source, (result, data)) in batch.into_iter().zip(records) {
            match result {
                TransformResult::Ok => {
                    self.metrics
                        .succeed_processing_records
                        .with_label_values(&stream)
                        .inc();
                    self.metrics
                        .succeed_processing_bytes
                        .with_label_values(&stream)
                        .inc_by(data.len() as u64);
                    out.ok.push(Record {
                        id: source.id,
                        arrival_ms: source.arrival_ms,
                        data: Bytes::from(data),
                        held: source.held,
                    });
                }
                TransformResult::Dropped => {
                    self.metrics
                        .succeed_processing_records
                        .with_label_values(&stream)
                        .inc();
                    out.dropped += 1;
                }
                TransformResult::ProcessingFailed => self.fail(
                    out,
                    vec![source],
                    attempts,
                    error_code::PROCESSING_FAILED_STATUS,
                    "ProcessingFailed status set for record",
                ),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Echoes records, failing those whose data is `bad`; optionally breaks the contract.
    #[derive(Debug, Default)]
    struct Scripted {
        calls: AtomicU32,
        fail_first: u32,
        mode: &'static str,
    }

    impl Processor for Scripted {
        fn invoke(
            &self,
            event: Vec<u8>,
            _timeout: Duration,
        ) -> BoxFuture<'_, Result<Vec<u8>, InvokeError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.fail_first {
                    return Err(InvokeError::Function("boom".into()));
                }
                let ev: TransformEvent = serde_json::from_slice(&event).unwrap();
                let mut recs: Vec<serde_json::Value> = ev
                    .records
                    .iter()
                    .map(|r| {
                        let result = if r.data == b64(b"bad") { "ProcessingFailed" } else if r.data == b64(b"drop") { "Dropped" } else { "Ok" };
                        serde_json::json!({"recordId": r.record_id, "result": result, "data": b64(b"T")})
                    })
                    .collect();
                match self.mode {
                    "missing" => {
                        recs.pop();
                    }
                    "duplicate" => {
                        let first = recs[0].clone();
                        recs.push(first);
                    }
                    _ => {}
                }
                Ok(serde_json::to_vec(&serde_json::json!({ "records": recs })).unwrap())
            })
        }
    }

    fn stage(p: Scripted, retries: u32) -> (ProcessorStage, Arc<Scripted>) {
        let p = Arc::new(p);
        (
            ProcessorStage {
                processor: p.clone(),
                lambda_arn: "arn:aws:lambda:us-east-1:000000000000:function:transform:$LATEST"
                    .into(),
                stream: "s".into(),
                stream_arn: "arn".into(),
                region: "us-east-1".into(),
                number_of_retries: retries,
                timeout: Duration::from_secs(5),
                faults: Faults::new(&crate::config::FaultsConfig::default()),
                metrics: Metrics::new().unwrap(),
                give_up: CancellationToken::new(),
            },
            p,
        )
    }

    fn batch(datas: &[&'static str]) -> Vec<Record> {
        datas
            .iter()
            .enumerate()
            .map(|(i, d)| Record::new(format!("id{i}"), 7, Bytes::from_static(d.as_bytes())))
            .collect()
    }

    #[tokio::test]
    async fn ok_dropped_and_processing_failed_are_routed() {
        let (s, _) = stage(Scripted::default(), 3);
        let out = s.process(batch(&["a", "bad", "drop"])).await;
        assert_eq!(out.ok.len(), 1);
        assert_eq!(out.ok[0].data, Bytes::from_static(b"T"));
        assert_eq!(out.ok[0].arrival_ms, 7);
        assert_eq!(out.dropped, 1);
        assert_eq!(out.failed.len(), 1);
        let f = &out.failed[0];
        assert_eq!(f.error_code, "Lambda.ProcessingFailedStatus");
        assert_eq!(f.raw_data, b64(b"bad"), "rawData is the original record");
        assert_eq!(f.attempts_made, 1);
        assert!(f.lambda_arn.as_deref().unwrap().ends_with(":$LATEST"));
    }

    /// Each record keeps its share of the memory account through the transform: `Ok` records
    /// carry it on, `Dropped` ones give it back, failed ones hold it until their backup is
    /// written (`failed_held`).
    #[tokio::test]
    async fn memory_shares_follow_the_records_through_the_transform() {
        let gauge = prometheus::IntGauge::new("held", "held").unwrap();
        let holding = crate::buffer::Holding::new(1 << 20, gauge);
        let tracked = batch(&["a", "bad", "drop"])
            .into_iter()
            .map(|r| Record {
                held: holding.hold(r.data.len()).unwrap(),
                ..r
            })
            .collect();
        let (s, _) = stage(Scripted::default(), 3);
        let out = s.process(tracked).await;
        assert_eq!(
            holding.bytes(),
            1 + 3,
            "a (ok) and bad (failed); drop gave its 4 back"
        );
        let Processed {
            ok, failed_held, ..
        } = out;
        drop(failed_held);
        assert_eq!(
            holding.bytes(),
            1,
            "the failed record's share is given back with it"
        );
        drop(ok);
        assert_eq!(holding.bytes(), 0);
    }

    /// A processor with a bug.
    #[derive(Debug)]
    struct Panics;

    impl Processor for Panics {
        fn invoke(
            &self,
            _event: Vec<u8>,
            _timeout: Duration,
        ) -> BoxFuture<'_, Result<Vec<u8>, InvokeError>> {
            Box::pin(async { panic!("a processor with a bug") })
        }
    }

    #[tokio::test]
    async fn a_processor_that_panics_fails_the_invocation_like_a_crash() {
        let (stage, _) = stage(Scripted::default(), 1);
        let stage = ProcessorStage {
            processor: Arc::new(Panics),
            ..stage
        };
        let out = stage.process(batch(&["a"])).await;
        assert!(out.ok.is_empty());
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].error_code, error_code::FUNCTION_ERROR);
        assert_eq!(
            out.failed[0].attempts_made, 2,
            "retried like any function error"
        );
        assert!(out.failed[0].error_message.contains("panicked"));
        assert!(
            out.failed[0]
                .error_message
                .starts_with(FUNCTION_ERROR_MESSAGE),
            "{:?}",
            out.failed[0]
        );
    }

    #[tokio::test]
    async fn invocation_failures_are_retried_number_of_retries_times() {
        let (s, p) = stage(
            Scripted {
                fail_first: 2,
                ..Scripted::default()
            },
            3,
        );
        assert_eq!(s.process(batch(&["a"])).await.ok.len(), 1);
        assert_eq!(p.calls.load(Ordering::SeqCst), 3);
        let (s, p) = stage(
            Scripted {
                fail_first: 100,
                ..Scripted::default()
            },
            3,
        );
        let out = s.process(batch(&["a", "b"])).await;
        assert_eq!(p.calls.load(Ordering::SeqCst), 4);
        assert_eq!(out.failed.len(), 2);
        assert_eq!(out.failed[0].error_code, "Lambda.FunctionError");
        assert_eq!(out.failed[0].attempts_made, 4);
    }

    #[tokio::test]
    async fn contract_breaks_fail_the_batch_without_retry() {
        for (mode, code) in [
            ("missing", "Lambda.MissingRecordId"),
            ("duplicate", "Lambda.DuplicatedRecordId"),
        ] {
            let (s, p) = stage(
                Scripted {
                    mode,
                    ..Scripted::default()
                },
                3,
            );
            let out = s.process(batch(&["a", "b"])).await;
            assert_eq!(p.calls.load(Ordering::SeqCst), 1, "{mode}");
            assert!(out.ok.is_empty());
            assert_eq!(out.failed.len(), 2);
            assert!(
                out.failed
                    .iter()
                    .all(|f| f.error_code == code && f.attempts_made == 1),
                "{mode}"
            );
        }
    }

    #[tokio::test]
    async fn oversized_events_are_split_under_six_megabytes() {
        let (s, p) = stage(Scripted::default(), 0);
        let big: &'static str = Box::leak("x".repeat(1_000_000).into_boxed_str());
        let out = s.process(batch(&[big, big, big, big, big, big])).await;
        assert_eq!(out.ok.len(), 6);
        assert!(p.calls.load(Ordering::SeqCst) >= 2);
    }
}
