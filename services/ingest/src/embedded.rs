//! The embedded local Firehose: what `ingest` talks to when no delivery stream is configured.
//!
//! With `FIREHOSE_DELIVERY_STREAM` unset, `ingest` starts `firehose-local` in-process on a
//! loopback port and points its own `aws-sdk-firehose` client at it, with dummy credentials.
//! The front door therefore runs the very same code path as in AWS (the SDK, `PutRecordBatch`,
//! partial failures, readiness through `DescribeDeliveryStream`), and the whole pipeline
//! (front door → buffering → Rust transform → HTTP endpoint or local files, with backup) runs
//! from one command on a fresh machine. It is a development default: production sets the stream.
//!
//! Compiled only with the `embedded` cargo feature (on by default), so a production image can
//! leave the emulator out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_config::BehaviorVersion;
use firehose_local::config::{Compression, HttpEndpointConfig, S3BackupMode, Secret};
use secrecy::ExposeSecret as _;

use crate::config::Config;

/// Retry duration for `INGEST_LOCAL_ENDPOINT_URL`: 60 s, as in the seed design.
const LOCAL_ENDPOINT_RETRY_SECS: u64 = 60;

/// Why the embedded Firehose cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The firehose-local configuration file or the derived settings are invalid.
    #[error("INGEST_LOCAL_FIREHOSE_CONFIG: {0}")]
    Config(#[from] firehose_local::ConfigError),
    /// The local Firehose failed to start.
    #[error("the embedded local Firehose failed to start: {0}")]
    Start(#[from] firehose_local::Error),
    /// The configuration file defines no stream.
    #[error(
        "INGEST_LOCAL_FIREHOSE_CONFIG={0}: the file defines no delivery stream; add one under `streams`"
    )]
    NoStream(PathBuf),
}

/// A running embedded Firehose and the SDK client that reaches it.
#[derive(Debug)]
pub struct Embedded {
    /// The running server; shut it down after the front door drained, so it flushes.
    pub handle: firehose_local::EmbeddedHandle,
    /// An `aws-sdk-firehose` client whose endpoint is the embedded server.
    pub client: aws_sdk_firehose::Client,
    /// The stream that receives the events (the first one configured).
    pub stream: String,
}

/// The firehose-local configuration the settings ask for: the file named by
/// `INGEST_LOCAL_FIREHOSE_CONFIG` as it is, or else the local default (one stream `events`, the
/// in-process transform, delivered records and backups under `INGEST_LOCAL_DIR`), delivering to
/// `INGEST_LOCAL_ENDPOINT_URL` when that is set.
///
/// # Errors
/// [`EmbeddedError`] naming the setting at fault.
pub fn local_config(config: &Config) -> Result<firehose_local::Config, EmbeddedError> {
    if let Some(path) = &config.local_firehose_config {
        let local = firehose_local::Config::from_file(path)?;
        if local.streams.is_empty() {
            return Err(EmbeddedError::NoStream(path.clone()));
        }
        return Ok(local);
    }
    let mut local = firehose_local::Config::local_default(Path::new(&config.local_dir));
    if let Some(url) = &config.local_endpoint_url
        && let Some(stream) = local.streams.first_mut()
    {
        let endpoint = HttpEndpointConfig {
            url: url.clone(),
            name: Some("INGEST_LOCAL_ENDPOINT_URL".to_owned()),
            access_key: config
                .local_endpoint_access_key
                .as_ref()
                .map(|key| Secret::new(key.expose_secret().to_owned())),
            common_attributes: BTreeMap::new(),
            // What New Relic asks for; every HTTP server that speaks the protocol accepts it.
            content_encoding: Compression::Gzip,
            // The seed design's retry duration (and the Terraform module's default).
            retry_duration_secs: LOCAL_ENDPOINT_RETRY_SECS,
            s3_backup_mode: S3BackupMode::default(),
            request_timeout_secs: firehose_formats::http_endpoint::RESPONSE_TIMEOUT_SECS,
        };
        stream.http_endpoint = Some(endpoint);
    }
    local.validate()?;
    Ok(local)
}

/// Starts the embedded Firehose and builds an SDK client for it.
///
/// # Errors
/// [`EmbeddedError`] when the configuration is invalid or the server cannot start.
pub async fn start(config: &Config) -> Result<Embedded, EmbeddedError> {
    let local = local_config(config)?;
    let stream = local
        .streams
        .first()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let region = local.region.clone();
    let handle = firehose_local::spawn_embedded(local).await?;
    // Signatures are accepted unchecked by firehose-local; these credentials never leave the
    // machine. The explicit endpoint wins over any AWS_ENDPOINT_URL in the environment.
    let credentials =
        aws_sdk_firehose::config::Credentials::new("local", "local", None, None, "ingest-embedded");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(credentials)
        .endpoint_url(handle.endpoint_url())
        .load()
        .await;
    let client = crate::sink::firehose_client(&sdk);
    Ok(Embedded {
        handle,
        client,
        stream,
    })
}
