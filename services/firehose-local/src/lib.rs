//! `firehose-local`: Amazon Data Firehose on one machine, faithful where it matters for producers
//! and destinations.
//!
//! LocalStack and moto pass records straight through; this crate reproduces what a pipeline
//! built on Firehose actually meets: buffering by size and interval, the Lambda processor with
//! its retries and contract checks, HTTP endpoint delivery with Firehose's headers, body, response
//! rules and backoff, and the S3 backup layout with error output. It is a development and test
//! tool; production uses AWS Firehose.
//!
//! # Layout
//! - [`config`]: the typed configuration (TOML/YAML file, flags, [`Config::local_default`]).
//! - `api`: the JSON 1.1 producer API (`PutRecord`, `PutRecordBatch`, `Describe…`, `List…`).
//! - `buffer`: size-and-interval buffering. `engine`: the stages of one stream.
//! - [`processor`]: the Lambda processor stage; [`runtime_api`]: the hosted Lambda Runtime API.
//! - [`delivery`]: HTTP endpoint delivery. [`destination`]: the destination trait and the local
//!   NDJSON destination. [`backup`]: the S3-style backup (local directory or S3).
//! - `faults`: fault injection. [`metrics`]: Prometheus metrics after the CloudWatch names.
//!
//! # Use
//! [`run`] serves a config on a listener until a shutdown future completes, then flushes;
//! [`spawn_embedded`] does the same on a loopback port in the background, for hosts such as
//! `ingest` that want a Firehose without AWS.

pub mod api;
pub mod backup;
mod buffer;
pub mod config;
pub mod delivery;
pub mod destination;
mod engine;
mod faults;
pub mod metrics;
pub mod processor;
pub mod runtime_api;

pub use buffer::Record;
pub use config::{Config, ConfigError};
pub use destination::{DeliveryFailure, Destination};
pub use processor::{InvokeError, Processor};

use crate::config::ProcessorConfig;
use std::collections::{BTreeMap, HashMap};
use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The stream version written into object names: 1, as for a stream never reconfigured.
pub const STREAM_VERSION: u64 = 1;

/// How long, once everything accepted is flushed at shutdown, requests still in progress have
/// to finish before shutdown stops waiting for them.
pub const SERVER_DRAIN: Duration = Duration::from_secs(2);

/// Why the local Firehose could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or serving the API failed.
    #[error("API listener: {0}")]
    Io(#[from] std::io::Error),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP client for a destination could not be built.
    #[error("HTTP client for stream {stream}: {source}")]
    HttpClient {
        /// The stream.
        stream: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// The Lambda Runtime API for a child-process processor could not start.
    #[error("stream {stream}: {source}")]
    RuntimeApi {
        /// The stream.
        stream: String,
        /// Why.
        source: runtime_api::RuntimeApiError,
    },
    /// The background server task ended abnormally.
    #[error("the embedded server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The `LambdaArn` of a processor: configured, or a `transform` function in the config's account.
#[must_use]
pub fn lambda_arn(config: &Config, processor: &ProcessorConfig) -> String {
    processor.lambda_arn.clone().unwrap_or_else(|| {
        format!(
            "arn:aws:lambda:{}:{}:function:transform:$LATEST",
            config.region, config.account_id
        )
    })
}

/// A configured local Firehose, with optional test doubles for processors and destinations.
#[derive(Debug)]
pub struct Server {
    config: Config,
    processors: HashMap<String, Arc<dyn Processor>>,
    destinations: HashMap<String, Arc<dyn Destination>>,
    hurry: CancellationToken,
}

impl Server {
    /// Validates `config`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field to fix.
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            config,
            processors: HashMap::new(),
            destinations: HashMap::new(),
            hurry: CancellationToken::new(),
        })
    }

    /// Runs `stream`'s processor stage with `processor` instead of the configured mode.
    #[must_use]
    pub fn with_processor(mut self, stream: &str, processor: Arc<dyn Processor>) -> Self {
        self.processors.insert(stream.to_owned(), processor);
        self
    }

    /// Delivers `stream`'s batches to `destination` instead of the configured one.
    #[must_use]
    pub fn with_destination(mut self, stream: &str, destination: Arc<dyn Destination>) -> Self {
        self.destinations.insert(stream.to_owned(), destination);
        self
    }

    /// A token that, cancelled during the shutdown, ends its grace period at once: what is still
    /// undelivered is backed up now instead of retried until the grace period is over (the
    /// binary cancels it on a second SIGINT/SIGTERM). Nothing accepted is dropped for it.
    #[must_use]
    pub fn hurry_handle(&self) -> CancellationToken {
        self.hurry.clone()
    }

    /// Serves the API on `listener` until `shutdown` completes, then stops intake, flushes every
    /// buffer and waits for delivery; failed deliveries and transform invocations keep retrying
    /// for the configured grace period and are then backed up; once the backup has made no
    /// progress for [`backup::SHUTDOWN_BACKUP_WINDOW`] (see there), the writes still waiting are
    /// abandoned (their loss logged).
    /// Connections still open once everything is flushed get [`SERVER_DRAIN`]; then `run`
    /// returns without them (their tasks end with the runtime; their puts are refused).
    ///
    /// # Errors
    /// [`Error`] if a stage cannot start or the listener fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future + Send + 'static,
    ) -> Result<(), Error> {
        let config = Arc::new(self.config);
        let metrics = metrics::Metrics::new()?;
        let faults = faults::Faults::new(&config.faults);
        let stop_intake = CancellationToken::new();
        let give_up = CancellationToken::new();
        let backup_cutoff = backup::Cutoff::default();
        let stop_children = CancellationToken::new();
        let mut streams = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut local_dirs = Vec::new();
        for sc in &config.streams {
            let name = sc.name.clone();
            if let config::BackupTarget::LocalDir { dir } = &sc.backup.target {
                local_dirs.push(dir.clone());
            }
            metrics.init_stream(&name);
            let arn = config.stream_arn(&name);
            let backup = backup::Backup {
                store: backup::store_for(&sc.backup).await,
                stream: name.clone(),
                version: STREAM_VERSION,
                config: sc.backup.clone(),
                metrics: metrics.clone(),
                cutoff: backup_cutoff.clone(),
            };
            let destination: Arc<dyn Destination> =
                match (self.destinations.get(&name), &sc.http_endpoint) {
                    (Some(d), _) => d.clone(),
                    (None, Some(h)) => Arc::new(
                        delivery::HttpDelivery::new(
                            h.clone(),
                            name.clone(),
                            arn.clone(),
                            metrics.clone(),
                        )
                        .map_err(|source| Error::HttpClient {
                            stream: name.clone(),
                            source,
                        })?,
                    ),
                    (None, None) => {
                        local_dirs.push(sc.local_destination.dir.clone());
                        Arc::new(destination::LocalDestination {
                            dir: sc.local_destination.dir.clone(),
                            stream: name.clone(),
                            version: STREAM_VERSION,
                            metrics: metrics.clone(),
                        })
                    }
                };
            let processor = match &sc.processor {
                None => None,
                Some(pc) => {
                    let function_arn = lambda_arn(&config, pc);
                    let runner: Arc<dyn Processor> =
                        match (self.processors.get(&name), pc.mode, &pc.binary) {
                            (Some(p), _, _) => p.clone(),
                            (None, config::ProcessorMode::RuntimeApi, Some(binary)) => Arc::new(
                                runtime_api::RuntimeApiProcessor::start(
                                    binary.clone(),
                                    pc.env.clone(),
                                    function_arn.clone(),
                                    config.region.clone(),
                                    stop_children.clone(),
                                )
                                .await
                                .map_err(|source| {
                                    Error::RuntimeApi {
                                        stream: name.clone(),
                                        source,
                                    }
                                })?,
                            ),
                            (None, _, _) => Arc::new(processor::InProcess),
                        };
                    Some(processor::ProcessorStage {
                        processor: runner,
                        lambda_arn: function_arn,
                        stream: name.clone(),
                        stream_arn: arn.clone(),
                        region: config.region.clone(),
                        number_of_retries: pc.number_of_retries,
                        timeout: Duration::from_secs(pc.timeout_secs),
                        faults: faults.clone(),
                        metrics: metrics.clone(),
                        give_up: give_up.clone(),
                    })
                }
            };
            let (handle, task) = engine::spawn(engine::StreamParts {
                config: sc.clone(),
                arn,
                processor,
                destination,
                backup,
                stop_intake: stop_intake.clone(),
                give_up: give_up.clone(),
            });
            streams.insert(name, handle);
            tasks.push(task);
        }
        // Sorted, a directory comes right before those inside it: each is walked once.
        local_dirs.sort();
        local_dirs.dedup_by(|inner, outer| inner.starts_with(outer));
        // In the background: a large local tree must not hold up serving.
        tokio::spawn(backup::report_leftover_partials(local_dirs));
        let state = api::ApiState {
            streams: Arc::new(streams),
            config: config.clone(),
            holding: buffer::Holding::new(
                usize::try_from(config.max_held_mb.saturating_mul(1024 * 1024))
                    .unwrap_or(usize::MAX),
                metrics.held_bytes.clone(),
            ),
            metrics,
            faults,
        };
        tracing::info!(addr = ?listener.local_addr().ok(), streams = config.streams.len(), "firehose-local serving");
        let stop_serving = CancellationToken::new();
        let mut server = tokio::spawn(
            axum::serve(listener, api::app(state))
                .with_graceful_shutdown(stop_serving.clone().cancelled_owned())
                .into_future(),
        );
        // Intake closes as soon as shutdown starts, not when the last connection is done: a
        // client stalled mid-request (a host gone, a half-open connection) would otherwise keep
        // the buffers from ever being flushed. Requests still in progress then get
        // `ServiceUnavailableException` for records they had not put yet.
        let mut result = tokio::select! {
            joined = &mut server => Some(joined),
            _ = shutdown => None,
        };
        tracing::info!("shutting down: flushing buffers");
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        if grace.is_zero() {
            // Before the flush starts, so that no flushed batch gets an attempt first.
            give_up.cancel();
        }
        stop_serving.cancel();
        stop_intake.cancel();
        let grace_timer = {
            let give_up = give_up.clone();
            let hurry = self.hurry.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(grace) => tracing::warn!(
                        "shutdown grace period over: backing up what is still undelivered"
                    ),
                    () = hurry.cancelled() => tracing::warn!(
                        "shutdown grace period cut short: backing up what is still undelivered"
                    ),
                }
                give_up.cancel();
                backup_cutoff.when_quiet().await;
                tracing::error!(
                    window = ?backup::SHUTDOWN_BACKUP_WINDOW,
                    "the backup has made no progress for the shutdown backup window: abandoning backup writes that have not landed"
                );
            })
        };
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "stream task failed during shutdown");
            }
        }
        grace_timer.abort();
        stop_children.cancel();
        if result.is_none() {
            // Answers to requests still in progress; a connection that will not finish is not
            // waited for (axum runs each connection in a task of its own, which ends with the
            // runtime; intake is closed, so it cannot get records accepted any more).
            result = tokio::time::timeout(SERVER_DRAIN, &mut server).await.ok();
            if result.is_none() {
                tracing::warn!(
                    drain = ?SERVER_DRAIN,
                    "connections still open after the flush; no longer waiting for them"
                );
                server.abort();
            }
        }
        tracing::info!("firehose-local stopped");
        match result {
            Some(Ok(served)) => served.map_err(Error::Io),
            Some(Err(join)) => Err(Error::Io(std::io::Error::other(join))),
            None => Ok(()),
        }
    }
}

/// Serves `config` on `listener` until `shutdown` completes, then flushes (see [`Server::run`]).
///
/// # Errors
/// [`Error`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future + Send + 'static,
) -> Result<(), Error> {
    Server::new(config)?.run(listener, shutdown).await
}

/// A local Firehose running in the background on a loopback port.
///
/// Await [`EmbeddedHandle::shutdown`] before the host exits, on error paths too: records it
/// answered with 200 are only in memory until they are delivered or backed up.
#[derive(Debug)]
pub struct EmbeddedHandle {
    addr: SocketAddr,
    streams: Vec<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    hurry: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl EmbeddedHandle {
    /// The API's URL, for `aws-sdk-firehose`'s `endpoint_url`.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The API's socket address.
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The delivery streams served.
    #[must_use]
    pub fn stream_names(&self) -> &[String] {
        &self.streams
    }

    /// Cancelled during [`EmbeddedHandle::shutdown`], ends its grace period at once: what is
    /// not delivered yet is backed up now instead of being retried until the grace period is
    /// over (the standalone binary's second signal; [`Server::hurry_handle`]).
    #[must_use]
    pub fn hurry_handle(&self) -> CancellationToken {
        self.hurry.clone()
    }

    /// Stops intake, flushes every buffer and waits until everything accepted is delivered or
    /// backed up.
    ///
    /// # Errors
    /// [`Error`] if the server failed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await?
    }
}

impl Drop for EmbeddedHandle {
    fn drop(&mut self) {
        // Dropped without `shutdown()`: the server still stops and flushes, but in a background
        // task, which lives only as long as the runtime. A host that exits after dropping the
        // handle loses whatever was not yet delivered or backed up: call `shutdown()` and await
        // it on every exit path.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts `config` on 127.0.0.1 with a free port, in the background.
///
/// # Errors
/// [`Error`] if the config is invalid or the port cannot be bound.
pub async fn spawn_embedded(config: Config) -> Result<EmbeddedHandle, Error> {
    spawn_server(Server::new(config)?).await
}

/// Like [`spawn_embedded`] for a [`Server`] with test doubles.
///
/// # Errors
/// [`Error`] if the port cannot be bound.
pub async fn spawn_server(server: Server) -> Result<EmbeddedHandle, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let streams = server
        .config
        .streams
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let hurry = server.hurry_handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = rx.await;
    }));
    Ok(EmbeddedHandle {
        addr,
        streams,
        shutdown: Some(tx),
        hurry,
        task,
    })
}
