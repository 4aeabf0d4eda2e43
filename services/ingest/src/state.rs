//! What every handler shares: the producer, auth, limits, schema, metrics and readiness.
//!
//! Readiness asks Firehose about the stream with `DescribeDeliveryStream`, a control-plane call
//! AWS limits to five per second for the account and region, as a hard limit shared with every
//! other tool ([`DESCRIBE_STREAM_LIMIT_DOC`]). A fleet of pods each checking every
//! `INGEST_READINESS_INTERVAL` could pass it and be throttled, and a pod that took a throttled
//! check for an unreachable stream would leave the load balancer while `PutRecordBatch` works.
//! So: a `PutRecordBatch` call Firehose answered since the last check stands in for the check
//! (a pod with traffic never calls it); a check that fails without an answer about the stream
//! (throttled, timed out, no connection, access denied) turns readiness off only after
//! [`CHECK_FAILURES_BEFORE_UNREADY`] in a row; the stream found missing or not `ACTIVE` turns it
//! off at once. Checks are spread by ±10 % jitter, and until the first success they are retried
//! sooner (1 s, doubling up to the interval), so a fleet started at once does not wait a whole
//! interval after one throttled call.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng as _;

use crate::auth::Auth;
use crate::metrics::{Metrics, call_outcome};
use crate::producer::ProducerHandle;
use crate::ratelimit::RateLimiter;
use crate::sink::{RecordSink, SinkError};
use crate::validate::Schema;

/// The HTTP layer's settings.
#[derive(Debug)]
pub struct HttpSettings {
    /// API-key checking.
    pub auth: Auth,
    /// Per-key request rate limits.
    pub limiter: RateLimiter,
    /// Optional JSON Schema for events.
    pub schema: Option<Schema>,
    /// Body cap, as received and decompressed.
    pub max_body_bytes: usize,
    /// Most events in one request.
    pub max_events: usize,
    /// Largest event (`INGEST_MAX_EVENT_BYTES`).
    pub max_event_bytes: usize,
    /// How long after a request starts its body must be in and its events inside a
    /// `PutRecordBatch` call ([`crate::config::Config::send_window`]).
    pub send_window: Duration,
}

/// Shared state of both routers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    producer: ProducerHandle,
    settings: HttpSettings,
    metrics: Metrics,
    readiness: Readiness,
}

impl AppState {
    /// Bundles the parts. `metrics` should be the set the producer was spawned with.
    #[must_use]
    pub fn new(producer: ProducerHandle, settings: HttpSettings, metrics: Metrics) -> Self {
        let readiness = Readiness::new(metrics.clone());
        Self {
            inner: Arc::new(Inner {
                producer,
                settings,
                metrics,
                readiness,
            }),
        }
    }

    /// The producer.
    #[must_use]
    pub fn producer(&self) -> &ProducerHandle {
        &self.inner.producer
    }

    /// API-key checking.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        &self.inner.settings.auth
    }

    /// Rate limits.
    #[must_use]
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.settings.limiter
    }

    /// The event schema, if configured.
    #[must_use]
    pub fn schema(&self) -> Option<&Schema> {
        self.inner.settings.schema.as_ref()
    }

    /// Body cap.
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.inner.settings.max_body_bytes
    }

    /// Most events in one request.
    #[must_use]
    pub fn max_events(&self) -> usize {
        self.inner.settings.max_events
    }

    /// Largest event, in bytes.
    #[must_use]
    pub fn max_event_bytes(&self) -> usize {
        self.inner.settings.max_event_bytes
    }

    /// See [`HttpSettings::send_window`].
    #[must_use]
    pub fn send_window(&self) -> Duration {
        self.inner.settings.send_window
    }

    /// Metrics.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Readiness flags.
    #[must_use]
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }
}

/// Where AWS states the five-per-second hard limit on `DescribeDeliveryStream`.
pub const DESCRIBE_STREAM_LIMIT_DOC: &str =
    "https://docs.aws.amazon.com/firehose/latest/dev/limits.html";

/// Stream checks in a row that must fail without an answer about the stream (throttled, timed
/// out, …) before a pod whose stream was reachable turns not ready: with the default 15 s
/// interval, about 45 s of a check that cannot get through.
pub const CHECK_FAILURES_BEFORE_UNREADY: u32 = 3;

/// What one stream check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCheck {
    /// The stream is `ACTIVE`, or Firehose answered a `PutRecordBatch` call for it.
    Reachable,
    /// Firehose answered that the stream cannot take records: not found, not `ACTIVE`.
    Refused(String),
    /// The check got no answer about the stream: throttled, timed out, no connection, access
    /// denied to the check. Counts toward [`CHECK_FAILURES_BEFORE_UNREADY`].
    Failed(String),
}

impl StreamCheck {
    /// Weighs a `RecordSink::check` result: only "not found" and "not `ACTIVE`" say the stream
    /// itself cannot take records.
    #[must_use]
    pub fn from_result(result: Result<(), SinkError>) -> Self {
        match result {
            Ok(()) => Self::Reachable,
            Err(e) => {
                let text = match &e.detail {
                    Some(detail) => format!("{e} ({detail})"),
                    None => e.to_string(),
                };
                match e.code.as_str() {
                    "ResourceNotFoundException" | crate::sink::STREAM_NOT_ACTIVE => {
                        Self::Refused(text)
                    }
                    _ => Self::Failed(text),
                }
            }
        }
    }
}

/// Readiness: the delivery stream is reachable (see the module docs for how that is judged),
/// and no SIGTERM yet.
#[derive(Debug)]
pub struct Readiness {
    stream_ok: AtomicBool,
    checked: AtomicBool,
    /// Checks in a row that ended [`StreamCheck::Failed`].
    failures: AtomicU32,
    terminating: AtomicBool,
    closing: AtomicBool,
    last_error: Mutex<Option<String>>,
    metrics: Metrics,
}

impl Readiness {
    fn new(metrics: Metrics) -> Self {
        metrics.ready.set(0);
        Self {
            stream_ok: AtomicBool::new(false),
            checked: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            terminating: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            last_error: Mutex::new(Some("stream not checked yet".to_owned())),
            metrics,
        }
    }

    /// Whether `/readyz` answers 200.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.stream_reachable() && !self.is_terminating()
    }

    /// Whether the stream counts as reachable.
    #[must_use]
    pub fn stream_reachable(&self) -> bool {
        self.stream_ok.load(Ordering::Acquire)
    }

    /// Whether SIGTERM (or the test's shutdown future) fired.
    #[must_use]
    pub fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::Acquire)
    }

    /// Whether the listener is closing: new requests are answered 503.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The last check's error.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the start of shutdown: readiness turns false.
    pub fn set_terminating(&self) {
        self.terminating.store(true, Ordering::Release);
        self.publish();
    }

    /// Marks the listener as closing.
    pub fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Records a stream check: [`StreamCheck::Reachable`] makes the stream reachable,
    /// [`StreamCheck::Refused`] unreachable at once, [`StreamCheck::Failed`] unreachable once it
    /// is the [`CHECK_FAILURES_BEFORE_UNREADY`]th in a row (or while no check has succeeded).
    pub fn set_stream(&self, check: StreamCheck) {
        let (ok, error) = match check {
            StreamCheck::Reachable => {
                self.failures.store(0, Ordering::Release);
                (true, None)
            }
            StreamCheck::Refused(e) => {
                self.failures.store(0, Ordering::Release);
                (false, Some(e))
            }
            StreamCheck::Failed(e) => {
                let failures = self
                    .failures
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                let still_ok = self.stream_reachable() && failures < CHECK_FAILURES_BEFORE_UNREADY;
                if still_ok {
                    tracing::warn!(
                        error = %e,
                        failures,
                        limit = CHECK_FAILURES_BEFORE_UNREADY,
                        "delivery stream check failed; still ready until this happens {CHECK_FAILURES_BEFORE_UNREADY} times in a row"
                    );
                }
                (still_ok, Some(e))
            }
        };
        let was = self.stream_ok.swap(ok, Ordering::AcqRel);
        let first = !self.checked.swap(true, Ordering::AcqRel);
        match (&error, ok, was) {
            (None, true, false) => tracing::info!("delivery stream reachable"),
            (Some(e), false, true) => {
                tracing::error!(error = %e, "delivery stream check failed; not ready");
            }
            (Some(e), false, false) if first => {
                tracing::error!(error = %e, "delivery stream check failed; not ready until it succeeds");
            }
            _ => {}
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
        self.publish();
    }

    fn publish(&self) {
        self.metrics.ready.set(i64::from(self.is_ready()));
    }

    /// Checks the stream now and then about every `every`, until the task is aborted: a
    /// `PutRecordBatch` call answered since the previous check counts as a successful check
    /// (read from `ingest_firehose_put_batch_calls_total`, outcomes `ok` and `partial`); only
    /// otherwise is `DescribeDeliveryStream` called, and a call without an answer within
    /// `check_timeout` is a [`StreamCheck::Failed`] (the SDK sets no read timeout, and a
    /// connection that stops answering would otherwise stop the checks). See the module docs.
    pub async fn watch(
        state: AppState,
        sink: Arc<dyn RecordSink>,
        stream: String,
        every: Duration,
        check_timeout: Duration,
    ) {
        let answered_calls = || {
            let calls = &state.metrics().producer.put_batch_calls;
            calls.with_label_values(&[call_outcome::OK]).get()
                + calls.with_label_values(&[call_outcome::PARTIAL]).get()
        };
        let mut seen_calls = answered_calls();
        let mut retry = Duration::from_secs(1);
        loop {
            let calls = answered_calls();
            let check = if calls > seen_calls {
                StreamCheck::Reachable
            } else {
                let result = crate::sink::within(check_timeout, sink.check(&stream)).await;
                if let Err(e) = &result {
                    tracing::debug!(error = %e, stream = %stream, "stream check failed");
                }
                StreamCheck::from_result(result)
            };
            seen_calls = calls;
            state.readiness().set_stream(check);
            let pause = if state.readiness().stream_reachable() {
                retry = Duration::from_secs(1);
                every
            } else {
                // Not ready yet (or any more): look again sooner, backing off to the interval.
                let pause = retry.min(every);
                retry = retry.saturating_mul(2);
                pause
            };
            tokio::time::sleep(jittered(pause)).await;
        }
    }
}

/// `pause` ± 10 %, so that pods started together do not check in step.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::rng().random_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_inactive_stream_is_a_refusal() {
        let refused = |code: &str| {
            matches!(
                StreamCheck::from_result(Err(SinkError::new(code, "m"))),
                StreamCheck::Refused(_)
            )
        };
        assert!(refused("ResourceNotFoundException"));
        assert!(refused(crate::sink::STREAM_NOT_ACTIVE));
        for code in [
            "LimitExceededException",
            "ThrottlingException",
            "Timeout",
            "Dispatch",
            "AccessDeniedException",
            "ServiceUnavailableException",
        ] {
            assert!(!refused(code), "{code}");
        }
        assert_eq!(StreamCheck::from_result(Ok(())), StreamCheck::Reachable);
    }

    #[test]
    fn failed_checks_count_only_in_a_row_and_never_make_a_pod_ready() {
        let r = Readiness::new(Metrics::new().expect("metrics"));
        let failed = || StreamCheck::Failed("LimitExceededException: Rate exceeded".into());
        r.set_stream(failed());
        assert!(!r.is_ready(), "no check has succeeded yet");
        r.set_stream(StreamCheck::Reachable);
        for _ in 1..CHECK_FAILURES_BEFORE_UNREADY {
            r.set_stream(failed());
            assert!(r.is_ready());
        }
        // A success in between starts the count again.
        r.set_stream(StreamCheck::Reachable);
        for _ in 1..CHECK_FAILURES_BEFORE_UNREADY {
            r.set_stream(failed());
        }
        assert!(r.is_ready());
        assert!(r.last_error().is_some_and(|e| e.contains("Rate exceeded")));
        r.set_stream(failed());
        assert!(!r.is_ready());
        r.set_stream(StreamCheck::Reachable);
        assert!(r.is_ready());
        assert_eq!(r.last_error(), None);
        r.set_stream(StreamCheck::Refused("ResourceNotFoundException".into()));
        assert!(!r.is_ready(), "a refusal counts at once");
    }
}
