//! `ingest` binary: read config, start logs (and trace export), build the Firehose client,
//! bind, serve until SIGTERM, then flush the traces.

use std::process::ExitCode;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use cli_env::stop::{Signals, Stage};
use ingest::config::Config;
use ingest::{Drain, Drained, Service, Target};
use tokio::net::TcpListener;

/// jemalloc, not glibc malloc: under load (`scripts/bench-ingest.sh`, perf) glibc's allocator
/// was ~17 % of the service's CPU, much of it arena-lock contention between runtime workers
/// allocating and freeing request bodies, records and log lines.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ingest: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run_to_exit());
    // Without waiting for ever on a blocking task the service stopped waiting for (the
    // embedded Firehose's write to a hung disk, past its cutoff).
    cli_env::stop::leave_blocking_tasks(runtime);
    code
}

async fn run_to_exit() -> ExitCode {
    // First: a SIGTERM during start-up (the credential chain can wait on instance metadata)
    // then shuts down gracefully once serving starts, instead of killing the process with its
    // log lines unwritten.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("ingest: cannot install the SIGTERM/SIGINT handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config::load();
    let telemetry = match ingest::telemetry::init_tracing(&config.log_settings()) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("ingest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match start(config, signals).await {
        Ok(Drained::Complete) => ExitCode::SUCCESS,
        Ok(Drained::Abandoned) => {
            tracing::warn!(
                status = EXIT_ABANDONED,
                "exiting with connections that were still open: requests on them got no answer"
            );
            ExitCode::from(EXIT_ABANDONED)
        }
        Err(Failed::Start(e)) => {
            // Every error message already says what to fix; the chain adds nothing for operators.
            tracing::error!(error = %e, "ingest cannot start");
            eprintln!("ingest: {e}");
            ExitCode::FAILURE
        }
        Err(Failed::Later(e)) => {
            tracing::error!(error = %e, "ingest failed while serving or shutting down");
            eprintln!("ingest: {e}");
            ExitCode::FAILURE
        }
    };
    // The server has drained: export the spans still buffered (the last requests') while the
    // runtime that sends them still runs.
    telemetry.shutdown();
    code
}

/// Exit status after a drain that gave up on open connections (grace period over, or a second
/// signal): not a clean stop, and not a failure to serve (status 1).
const EXIT_ABANDONED: u8 = 3;

/// Why the binary failed: before it served (the message says what to fix), or afterwards (a
/// server error, or the local Firehose failing to flush what it had acknowledged).
enum Failed {
    Start(anyhow::Error),
    Later(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Self {
        Self::Start(e.into())
    }
}

async fn start(
    #[cfg_attr(not(feature = "embedded"), allow(unused_mut))] mut config: Config,
    signals: Signals,
) -> Result<Drained, Failed> {
    // Settle everything that needs no AWS before touching the credential chain, so a typo is
    // reported at once (not after IMDS timeouts).
    config.validate()?;
    #[cfg(feature = "embedded")]
    let mut local: Option<firehose_local::EmbeddedHandle> = None;
    let client = match Target::from_config(&config)? {
        Target::Firehose { .. } => {
            // Credentials and region: the standard chain (env, profile, web identity/IRSA,
            // IMDS); AWS_ENDPOINT_URL overrides the endpoint (AWS_ENDPOINT_URL_FIREHOSE for
            // Firehose alone: the global one also moves STS, which IRSA needs). The SDK's own
            // retries are off for Firehose calls only (`firehose_client`).
            let aws = aws_config::defaults(BehaviorVersion::latest()).load().await;
            // Without a region every call fails inside the SDK as a dispatch error, retried
            // and never explained: say so now.
            if aws.region().is_none() {
                return Err(Failed::Start(anyhow::anyhow!(
                    "no AWS region: set AWS_REGION (or a profile's region; the Helm chart's \
                     config.region). On EKS the pod identity webhook usually sets it for IRSA \
                     pods, and instance metadata gives it where the pod can reach it"
                )));
            }
            ingest::sink::firehose_client(&aws)
        }
        #[cfg(feature = "embedded")]
        Target::Local { .. } => {
            let embedded = ingest::embedded::start(&config).await?;
            tracing::warn!(
                endpoint = %embedded.handle.endpoint_url(),
                stream = %embedded.stream,
                dir = %config.local_dir.display(),
                "FIREHOSE_DELIVERY_STREAM is not set: using the embedded local Firehose (development only)"
            );
            config.delivery_stream = Some(embedded.stream.clone());
            local = Some(embedded.handle);
            embedded.client
        }
    };
    #[cfg(feature = "embedded")]
    let local_hurry = local
        .as_ref()
        .map(firehose_local::EmbeddedHandle::hurry_handle);
    #[cfg(not(feature = "embedded"))]
    let local_hurry = None;
    let served = serve(&config, client, signals, local_hurry).await;
    // Whatever ended the front door (a drained shutdown or an error), everything it
    // acknowledged is in the local Firehose, which now flushes (delivers or backs up) before
    // we exit. Dropping the handle instead would leave the flush to a task that the runtime
    // aborts as soon as `main` returns.
    #[cfg(feature = "embedded")]
    if let Some(local) = local {
        let flushed = local.shutdown().await;
        if let (Err(_), Err(e)) = (&served, &flushed) {
            // Only the first error is returned; this one must not go unseen.
            tracing::error!(error = %e, "the local Firehose could not flush");
        }
        let drained = served?;
        flushed.map_err(|e| Failed::Later(e.into()))?;
        return Ok(drained);
    }
    served
}

/// Binds both listeners and serves until the first signal and the drain are over. With the
/// embedded local Firehose, `local_hurry` is its [`firehose_local::Server::hurry_handle`]: the
/// second signal also ends its grace period, as it does for the standalone binary.
async fn serve(
    config: &Config,
    client: aws_sdk_firehose::Client,
    signals: Signals,
    local_hurry: Option<tokio_util::sync::CancellationToken>,
) -> Result<Drained, Failed> {
    let service = Service::build(config, Arc::new(client))?;
    let public = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on INGEST_LISTEN={}: {e}", config.listen))?;
    let admin = TcpListener::bind(config.admin_listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on INGEST_ADMIN_LISTEN={}: {e}",
            config.admin_listen
        )
    })?;
    tracing::info!(
        listen = %public.local_addr()?,
        admin = %admin.local_addr()?,
        stream = config.delivery_stream.as_deref().unwrap_or_default(),
        "ingest listening"
    );
    let drain = Drain {
        delay: config.shutdown_delay,
        grace: config.shutdown_grace,
        cut_short: tokio_util::sync::CancellationToken::new(),
    };
    // The first signal starts the drain; a second ends its wait for in-flight requests and the
    // embedded local Firehose's grace period (what it has not delivered is backed up now; it
    // logs "shutdown grace period cut short" itself); a third exits at once.
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(hurry) = local_hurry {
        let cut_short = drain.cut_short.clone();
        tokio::spawn(async move {
            cut_short.cancelled().await;
            hurry.cancel();
        });
    }
    signals.escalate(
        vec![
            Stage {
                begins: stop.clone(),
                message: "shutting down: draining (a second signal stops waiting for in-flight \
                          requests, a third exits at once)",
            },
            Stage {
                begins: drain.cut_short.clone(),
                message: "no longer waiting for in-flight requests (their clients get no answer, \
                          so they send again); a third signal exits at once",
            },
        ],
        "exiting now; records the local Firehose holds (if any) are lost",
    );
    let shutdown = stop.cancelled_owned();
    let served = ingest::run(public, admin, service.state, drain, shutdown).await;
    for task in service.background {
        task.abort();
    }
    served.map_err(|e| Failed::Later(e.into()))
}
