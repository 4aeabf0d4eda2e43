//! What every handler shares: the producer, auth, limits, schema, metrics and readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::producer::ProducerHandle;
use crate::ratelimit::RateLimiter;
use crate::sink::RecordSink;
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

/// Readiness: the delivery stream answered its last check, and no SIGTERM yet.
#[derive(Debug)]
pub struct Readiness {
    stream_ok: AtomicBool,
    checked: AtomicBool,
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

    /// Whether the last stream check succeeded.
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

    /// Records a stream check result.
    pub fn set_stream(&self, result: Result<(), String>) {
        let ok = result.is_ok();
        let was = self.stream_ok.swap(ok, Ordering::AcqRel);
        let first = !self.checked.swap(true, Ordering::AcqRel);
        match (&result, was) {
            (Ok(()), false) => tracing::info!("delivery stream reachable"),
            (Err(e), true) => {
                tracing::error!(error = %e, "delivery stream check failed; not ready")
            }
            (Err(e), false) if first => {
                tracing::error!(error = %e, "delivery stream check failed; not ready until it succeeds");
            }
            _ => {}
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = result.err();
        self.publish();
    }

    fn publish(&self) {
        self.metrics.ready.set(i64::from(self.is_ready()));
    }

    /// Checks the stream now and then every `every`, until the task is aborted.
    pub async fn watch(
        state: AppState,
        sink: Arc<dyn RecordSink>,
        stream: String,
        every: Duration,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // The admin listener's /readyz may show the transport's whole account.
            let result = sink.check(&stream).await.map_err(|e| match &e.detail {
                Some(detail) => format!("{e} ({detail})"),
                None => e.to_string(),
            });
            if let Err(e) = &result {
                tracing::debug!(error = %e, stream = %stream, "stream check failed");
            }
            state.readiness().set_stream(result);
        }
    }
}
