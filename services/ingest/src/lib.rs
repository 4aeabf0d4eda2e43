//! `ingest`: the HTTP front door that puts JSON events into Amazon Data Firehose.
//!
//! Clients POST events; the service checks the API key and rate limit, validates every event,
//! coalesces records from concurrent requests into `PutRecordBatch` calls, retries only the
//! records Firehose refused, and answers 200 only when Firehose accepted every record of the
//! request. Otherwise the answer says exactly which events to send again.
//!
//! Layout (one concern per module):
//! * [`config`]: typed settings from flags and environment.
//! * `embedded` (feature `embedded`): the local Firehose started when no stream is configured.
//! * [`routes`]: the handlers; [`app`] and [`admin_app`] put them on routers.
//! * [`error`]: [`error::ApiError`], the one mapping from failure to status and body.
//! * [`validate`]: content type, gzip cap, JSON parsing with positions, JSON Schema.
//! * [`auth`]: API keys from a rotatable file, constant-time checks.
//! * [`ratelimit`]: per-key token buckets.
//! * [`sink`]: the [`sink::RecordSink`] seam and its `aws_sdk_firehose::Client` implementation.
//! * [`producer`]: coalescing, partial-failure retries, in-flight cap. Usable without HTTP.
//! * [`metrics`], [`telemetry`]: the metrics contract, logs, OpenTelemetry traces;
//!   [`middleware`]: request ids, timeout, request metrics and the access-log line, which
//!   [`access_log`] formats and [`log_writer`] writes out in paced batches.
//! * [`state`]: what handlers share, readiness.
//!
//! [`run`] serves both listeners until a shutdown future resolves, then drains.

pub mod access_log;
pub mod auth;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod log_writer;
pub mod metrics;
pub mod middleware;
pub mod producer;
pub mod ratelimit;
pub mod routes;
pub mod sink;
pub mod state;
pub mod telemetry;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::auth::{Auth, KeyFileError, KeyStore};
use crate::config::{Config, ConfigError};
use crate::metrics::{Metrics, MetricsError};
use crate::producer::Producer;
use crate::ratelimit::RateLimiter;
use crate::sink::RecordSink;
use crate::state::{AppState, HttpSettings, Readiness};
use crate::validate::{Schema, SchemaError};

/// Where events go. The one place that decides what a missing `FIREHOSE_DELIVERY_STREAM` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Firehose delivery stream reached through the AWS SDK (real AWS, or whatever
    /// `AWS_ENDPOINT_URL` points at).
    Firehose {
        /// Delivery stream name.
        stream: String,
    },
    /// No stream configured: the embedded local Firehose (`firehose-local`, in-process on a
    /// loopback port), reached through the same SDK client. Development only.
    #[cfg(feature = "embedded")]
    Local {
        /// The embedded stream's name.
        stream: String,
    },
}

impl Target {
    /// Picks the target from the configuration.
    ///
    /// A set stream is always the real thing. An unset one means the embedded local Firehose
    /// when the `embedded` feature is built in (`main` starts it, then sets the stream to the
    /// embedded one's), and a start-up error otherwise.
    ///
    /// # Errors
    /// [`ConfigError::MissingStream`] when no stream is set and the build has no embedded
    /// local Firehose.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        match &config.delivery_stream {
            Some(stream) => Ok(Self::Firehose {
                stream: stream.clone(),
            }),
            #[cfg(feature = "embedded")]
            None => Ok(Self::Local {
                stream: firehose_local::config::DEFAULT_STREAM_NAME.to_owned(),
            }),
            #[cfg(not(feature = "embedded"))]
            None => Err(ConfigError::MissingStream),
        }
    }

    /// The delivery stream name.
    #[must_use]
    pub fn stream(&self) -> &str {
        match self {
            Self::Firehose { stream } => stream,
            #[cfg(feature = "embedded")]
            Self::Local { stream } => stream,
        }
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The API-key file.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// The schema file.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Metric registration (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
}

/// A built service: its state and the background tasks to run beside it.
#[derive(Debug)]
pub struct Service {
    /// Shared state for both routers.
    pub state: AppState,
    /// Stream checker, key-file watcher.
    pub background: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Builds everything from `config` with `sink` as the Firehose client. Starts the producer,
    /// the readiness checker and the key-file watcher (so it must run inside a Tokio runtime).
    ///
    /// # Errors
    /// Configuration, key file or schema problems, each saying what to fix.
    pub fn build(config: &Config, sink: Arc<dyn RecordSink>) -> Result<Self, StartError> {
        config.validate()?;
        let target = Target::from_config(config)?;
        let metrics = Metrics::new()?;
        let mut background = Vec::new();
        let auth = match &config.api_keys_file {
            Some(path) => {
                let store = Arc::new(KeyStore::load(path)?);
                store.show_count(&metrics.api_keys);
                tracing::info!(path = %path.display(), keys = store.current().len(), "API-key authentication on");
                background.push(tokio::spawn(Arc::clone(&store).watch(
                    config.api_keys_reload,
                    metrics.api_keys.clone(),
                    metrics.api_key_file_errors.clone(),
                )));
                Auth::Keys(store)
            }
            None => {
                tracing::warn!(
                    "AUTHENTICATION IS OFF: INGEST_API_KEYS_FILE is not set, so anyone who can reach the listener can send events"
                );
                Auth::Off
            }
        };
        let schema = config
            .schema_file
            .as_deref()
            .map(Schema::load)
            .transpose()?;
        let producer = Producer::spawn_with_metrics(
            Arc::clone(&sink),
            target.stream(),
            config.producer(),
            metrics.producer.clone(),
        );
        let settings = HttpSettings {
            auth,
            limiter: RateLimiter::new(config.rate_limit_rps, config.rate_limit_burst),
            schema,
            max_body_bytes: config.max_body_bytes,
            max_events: config.max_events,
            max_event_bytes: config.max_event_bytes,
            send_window: config.send_window(),
        };
        let state = AppState::new(producer, settings, metrics);
        background.push(tokio::spawn(Readiness::watch(
            state.clone(),
            sink,
            target.stream().to_owned(),
            config.readiness_interval,
            config.call_timeout,
        )));
        Ok(Self { state, background })
    }
}

/// The public router: event intake only.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(routes::ingest))
        .route("/", post(routes::ingest))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .layer(middleware::TrackLayer::new(state.clone()))
        .with_state(state)
}

/// The admin router: `/healthz`, `/readyz`, `/metrics`.
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::admin_not_found)
        .with_state(state)
}

/// How long the admin listener's open connections get to finish once the public server is
/// done (see [`run`]).
pub const ADMIN_DRAIN: Duration = Duration::from_secs(2);

/// Shutdown timing.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Time between the shutdown signal and closing the listener (readiness already false).
    pub delay: Duration,
    /// Time in-flight requests get to finish once the listener is closed.
    pub grace: Duration,
    /// Cancelled to end the delay and the grace at once (the binary does it on a second
    /// SIGTERM or Ctrl-C).
    pub cut_short: tokio_util::sync::CancellationToken,
}

/// How the drain of [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection of the public listener finished.
    Complete,
    /// Connections were still open when the grace period ran out or was cut short: a request
    /// still running on one got no answer (its client sends it again). The binary exits with
    /// a failure status, so that an unclean stop is not reported as a clean one.
    Abandoned,
}

/// Serves `public` and `admin` until `shutdown` resolves, then: readiness turns false, after
/// `drain.delay` the public listener stops accepting, in-flight requests finish (their records
/// are sent or answered 503) within `drain.grace`, and the function returns how that went.
///
/// # Errors
/// An I/O error of the public server.
pub async fn run(
    public: TcpListener,
    admin: TcpListener,
    state: AppState,
    drain: Drain,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Drained> {
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin_server = {
        let stop = admin_stop.clone();
        let router = admin_app(state.clone());
        tokio::spawn(async move {
            axum::serve(admin, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let closed = tokio_util::sync::CancellationToken::new();
    let signal = {
        let state = state.clone();
        let closed = closed.clone();
        let cut_short = drain.cut_short.clone();
        async move {
            shutdown.await;
            tracing::info!(delay = ?drain.delay, grace = ?drain.grace, "shutdown requested; readiness is now false");
            state.readiness().set_terminating();
            tokio::select! {
                () = tokio::time::sleep(drain.delay) => {}
                () = cut_short.cancelled() => {}
            }
            state.readiness().set_closing();
            tracing::info!("listener closed; finishing in-flight requests");
            closed.cancel();
        }
    };
    // With the peer's address for the access line (`ConnectInfo`).
    let server = axum::serve(
        public,
        app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(signal);
    let grace_over = async {
        closed.cancelled().await;
        tokio::select! {
            () = tokio::time::sleep(drain.grace) => {}
            () = drain.cut_short.cancelled() => {}
        }
    };
    let result = tokio::select! {
        // The server first: when it finishes just as the grace ends (idle connections closing
        // as a second signal arrives), the drain was complete (helper-57, L2).
        biased;
        result = server => result.map(|()| Drained::Complete),
        () = grace_over => {
            tracing::warn!(grace = ?drain.grace, cut_short = drain.cut_short.is_cancelled(), "grace period over; no longer waiting for the connections still open (they end with the process: a request still running on one gets no answer, so its events were not acknowledged)");
            Ok(Drained::Abandoned)
        }
    };
    admin_stop.cancel();
    // Bounded: `axum::serve` has no header-read timeout, so one admin connection holding half a
    // request head would otherwise keep the process from ever exiting (and the embedded
    // Firehose and the trace exporter from being flushed). Admin requests are short.
    let mut admin_server = admin_server;
    if tokio::time::timeout(ADMIN_DRAIN, &mut admin_server)
        .await
        .is_err()
    {
        tracing::warn!(after = ?ADMIN_DRAIN, "no longer waiting for admin connections still open");
        admin_server.abort();
    }
    let inflight = state.producer().inflight_bytes();
    if inflight > 0 {
        tracing::warn!(
            inflight_bytes = inflight,
            "exiting with records in flight that no client was told were accepted"
        );
    }
    tracing::info!("shutdown complete");
    result
}

/// Held by the unit tests that install a scoped `tracing` subscriber. `tracing` caches each
/// callsite's interest globally, from every subscriber alive when it is computed, so two such
/// tests with different filters on parallel threads (`cargo test`; nextest runs each test in a
/// process of its own) could see each other's answer: an INFO-only test found the request span
/// enabled in about one run in ten.
#[cfg(test)]
pub(crate) fn scoped_subscriber_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
