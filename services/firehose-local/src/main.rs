//! The `firehose-local` binary: flags and environment in, a [`firehose_local::Server`] until
//! SIGINT/SIGTERM (a second signal ends the grace period at once, a third exits).

use anyhow::Context as _;
use clap::Parser;
use cli_env::stop::{Signals, Stage};
use firehose_local::config::{
    BackupConfig, BackupTarget, BufferingHints, Compression, Config, FaultsConfig,
    HttpEndpointConfig, LocalDestinationConfig, ProcessorConfig, ProcessorMode, Secret,
    StreamConfig,
};
use std::path::PathBuf;

/// A local Amazon Data Firehose: producer API, buffering, Lambda processor, HTTP endpoint delivery, backup.
///
/// Give a config file (`--config`), or describe one stream with the flags below.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to serve the Firehose API and /metrics on.
    #[arg(long, env = "FIREHOSE_LOCAL_LISTEN", default_value = "127.0.0.1:4573")]
    listen: String,
    /// Config file (.toml, .yaml or .yml); when set, the single-stream flags are ignored.
    #[arg(long, env = "FIREHOSE_LOCAL_CONFIG")]
    config: Option<PathBuf>,
    /// Single-stream mode: the stream name.
    #[arg(long, env = "FIREHOSE_LOCAL_STREAM", default_value = "events")]
    stream: String,
    /// HTTP endpoint URL; without it records go to the local NDJSON destination.
    #[arg(long, env = "FIREHOSE_LOCAL_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Access key sent as X-Amz-Firehose-Access-Key (never printed).
    #[arg(long, env = "FIREHOSE_LOCAL_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// GZIP the delivery requests.
    #[arg(long, env = "FIREHOSE_LOCAL_GZIP")]
    gzip: bool,
    /// Retry duration in seconds (0-7200).
    #[arg(
        long,
        env = "FIREHOSE_LOCAL_RETRY_DURATION_SECS",
        default_value_t = 300
    )]
    retry_duration_secs: u64,
    /// Destination buffer size hint in MB (1-64).
    #[arg(long, env = "FIREHOSE_LOCAL_BUFFER_SIZE_MB", default_value_t = 1)]
    buffer_size_mb: u32,
    /// Destination buffer interval hint in seconds (0-900; AWS default 300, short here so events show up quickly).
    #[arg(long, env = "FIREHOSE_LOCAL_BUFFER_INTERVAL_SECS", default_value_t = 5)]
    buffer_interval_secs: u64,
    /// Processor buffer interval hint in seconds (0-900; AWS default 60, short here so events show up quickly).
    #[arg(
        long,
        env = "FIREHOSE_LOCAL_PROCESSOR_BUFFER_INTERVAL_SECS",
        default_value_t = 1
    )]
    processor_buffer_interval_secs: u64,
    /// Processor: `in-process`, `runtime-api` or `none`.
    #[arg(long, env = "FIREHOSE_LOCAL_PROCESSOR", default_value = "in-process")]
    processor: String,
    /// The `transform` binary for `--processor runtime-api`.
    #[arg(long, env = "FIREHOSE_LOCAL_TRANSFORM_BINARY")]
    transform_binary: Option<PathBuf>,
    /// `--processor runtime-api`: a `KEY=VALUE` of the function's environment (repeatable; the
    /// env variable takes them comma-separated). The child gets these and Lambda's own
    /// variables, nothing inherited from this process.
    #[arg(long = "transform-env", env = "FIREHOSE_LOCAL_TRANSFORM_ENV", value_delimiter = ',', value_parser = key_value)]
    transform_env: Vec<(String, String)>,
    /// Directory for the local destination and the backup (`<dir>/delivered`, `<dir>/backup`).
    #[arg(long, env = "FIREHOSE_LOCAL_DIR", default_value = "firehose-local")]
    dir: PathBuf,
    /// Most record data (MiB, 1-65536) held in memory until delivered or backed up; past it,
    /// puts are answered "Slow down." (default 256); overrides the file.
    #[arg(long, env = "FIREHOSE_LOCAL_MAX_HELD_MB")]
    max_held_mb: Option<u64>,
    /// Fault injection: share (0-1) of PutRecordBatch records throttled; overrides the file.
    #[arg(long, env = "FIREHOSE_LOCAL_THROTTLE_SHARE")]
    throttle_share: Option<f64>,
    /// Fault injection: share (0-1) of transform invocations failed; overrides the file.
    #[arg(long, env = "FIREHOSE_LOCAL_TRANSFORM_FAILURE_SHARE")]
    transform_failure_share: Option<f64>,
    /// Fault injection: share (0-1) of PutRecord/PutRecordBatch calls refused whole (503
    /// ServiceUnavailableException); overrides the file.
    #[arg(long, env = "FIREHOSE_LOCAL_CALL_FAILURE_SHARE")]
    call_failure_share: Option<f64>,
}

/// Parses `--transform-env KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => {
                let processor =
                    match self.processor.as_str() {
                        "none" => None,
                        "in-process" => Some(ProcessorConfig {
                            buffer_interval_secs: self.processor_buffer_interval_secs,
                            ..ProcessorConfig::default()
                        }),
                        "runtime-api" => Some(ProcessorConfig {
                            mode: ProcessorMode::RuntimeApi,
                            buffer_interval_secs: self.processor_buffer_interval_secs,
                            binary: Some(self.transform_binary.clone().context(
                                "--processor runtime-api needs --transform-binary PATH",
                            )?),
                            env: self.transform_env.iter().cloned().collect(),
                            ..ProcessorConfig::default()
                        }),
                        other => anyhow::bail!(
                            "--processor must be in-process, runtime-api or none, not {other:?}"
                        ),
                    };
                let mut c = Config::local_default(&self.dir);
                c.streams = vec![StreamConfig {
                    name: self.stream.clone(),
                    buffering: BufferingHints {
                        size_mb: self.buffer_size_mb,
                        interval_secs: self.buffer_interval_secs,
                    },
                    processor,
                    http_endpoint: self.endpoint_url.clone().map(|url| HttpEndpointConfig {
                        url,
                        name: None,
                        access_key: self.access_key.clone().map(Secret::new),
                        common_attributes: Default::default(),
                        content_encoding: if self.gzip {
                            Compression::Gzip
                        } else {
                            Compression::None
                        },
                        retry_duration_secs: self.retry_duration_secs,
                        s3_backup_mode: Default::default(),
                        request_timeout_secs:
                            firehose_formats::http_endpoint::RESPONSE_TIMEOUT_SECS,
                    }),
                    local_destination: LocalDestinationConfig {
                        dir: self.dir.join("delivered"),
                    },
                    backup: BackupConfig {
                        target: BackupTarget::LocalDir {
                            dir: self.dir.join("backup"),
                        },
                        ..BackupConfig::default()
                    },
                }];
                c
            }
        };
        let FaultsConfig {
            throttle_share,
            transform_failure_share,
            call_failure_share,
            ..
        } = config.faults;
        config.faults.call_failure_share = self.call_failure_share.unwrap_or(call_failure_share);
        config.faults.throttle_share = self.throttle_share.unwrap_or(throttle_share);
        config.faults.transform_failure_share = self
            .transform_failure_share
            .unwrap_or(transform_failure_share);
        if let Some(mb) = self.max_held_mb {
            config.max_held_mb = mb;
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(serve());
    // Without waiting for ever on a blocking task the server stopped waiting for: a backup or
    // destination write on a hung disk past the shutdown cutoff, an in-process transform past
    // its timeout (whose retry starts another).
    cli_env::stop::leave_blocking_tasks(runtime);
    result
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,firehose_local=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Before anything slow, so that a signal during start-up is not the default (killing).
    let signals = Signals::install().context("cannot install the SIGINT/SIGTERM handlers")?;
    let cli: Cli = cli_env::parse();
    let listen = cli.listen.clone();
    let config = cli.into_config()?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let server = firehose_local::Server::new(config)?;
    // The first signal starts the graceful shutdown; a second ends the grace period at once
    // (what is undelivered is backed up, not dropped); a third exits at once, as `ingest` does.
    let stop = tokio_util::sync::CancellationToken::new();
    signals.escalate(
        vec![
            Stage {
                begins: stop.clone(),
                message: "shutting down: delivering what is buffered (a second signal backs it \
                          up at once, a third exits at once)",
            },
            Stage {
                begins: server.hurry_handle(),
                message: "ending the grace period now; what is undelivered goes to backup (a \
                          third signal exits at once)",
            },
        ],
        "exiting now; records not yet backed up are lost",
    );
    server.run(listener, stop.cancelled_owned()).await?;
    Ok(())
}
