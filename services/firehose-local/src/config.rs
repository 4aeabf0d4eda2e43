//! Typed configuration: delivery streams, their stages, fault injection, and how to load it.
//!
//! A config comes from a TOML or YAML file (`--config`), from flags for a single stream, or from
//! [`Config::local_default`] (what `ingest` embeds). Every field mirrors the Firehose API setting
//! it stands for and carries that setting's default and range; [`Config::validate`] rejects
//! out-of-range values at start with a message naming the field, so a bad file never half-runs.

use firehose_formats::backup::{self as layout, ErrorOutputType};
use firehose_formats::{http_endpoint, limits, transform as contract};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The stream [`Config::local_default`] creates.
pub const DEFAULT_STREAM_NAME: &str = "events";
/// Region used in ARNs when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Account id used in ARNs when none is configured.
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML/YAML for this schema.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the field).
        message: String,
    },
    /// The file's extension is not .toml, .yaml or .yml.
    #[error("config file {0} must end in .toml, .yaml or .yml")]
    UnknownFormat(PathBuf),
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole local Firehose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Region written into ARNs and the Lambda event (`us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Account id written into ARNs (`000000000000`).
    #[serde(default = "default_account_id")]
    pub account_id: String,
    /// Seconds a graceful shutdown keeps retrying failed deliveries and transform invocations
    /// before backing the rest up (30); backup writes then go on while the store takes them,
    /// until the backup has made no progress for [`crate::backup::SHUTDOWN_BACKUP_WINDOW`]. With 0, nothing is attempted after the signal: what is buffered is backed up.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Most record data, in MiB as received, held in memory across every stream: accepted but
    /// not yet delivered, backed up or dropped (256). Past it, `PutRecordBatch` answers the
    /// records that do not fit `ServiceUnavailableException` / "Slow down." and `PutRecord`
    /// fails with that error, as Firehose answers a producer over its throughput limit; so a
    /// slow or failing destination slows producers down instead of growing memory without end.
    #[serde(default = "default_max_held_mb")]
    pub max_held_mb: u64,
    /// Fault injection (all off by default).
    #[serde(default)]
    pub faults: FaultsConfig,
    /// The delivery streams (at least one).
    pub streams: Vec<StreamConfig>,
}

/// One delivery stream (Direct PUT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name: 1–64 of `[a-zA-Z0-9_.-]`.
    pub name: String,
    /// Destination buffering hints (`BufferingHints`).
    #[serde(default)]
    pub buffering: BufferingHints,
    /// The Lambda processor; none means records go to the destination unchanged.
    #[serde(default)]
    pub processor: Option<ProcessorConfig>,
    /// The HTTP endpoint destination; none means the local NDJSON destination.
    #[serde(default)]
    pub http_endpoint: Option<HttpEndpointConfig>,
    /// Where records go when no HTTP endpoint is configured.
    #[serde(default)]
    pub local_destination: LocalDestinationConfig,
    /// The S3-style backup (error output, and all source data with `AllData`).
    #[serde(default)]
    pub backup: BackupConfig,
}

/// New Relic's Firehose endpoints (US and EU), whose 1 MB request limit [`Config::validate`]
/// holds a stream to: a 1 MiB buffer with GZIP.
const NEW_RELIC_FIREHOSE_HOSTS: [&str; 2] = ["aws-api.newrelic.com", "aws-api.eu.newrelic.com"];

/// `BufferingHints` for the destination: flush at whichever comes first. Both or neither: AWS
/// refuses one without the other ("If you specify a value for one of them, you must also
/// provide a value for the other", `HttpEndpointBufferingHints`), so a config that gives one
/// is refused here too rather than run with the other's default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GivenBufferingHints")]
pub struct BufferingHints {
    /// `SizeInMBs`, 1–64 (AWS default 5; New Relic recommends 1). Counted before compression.
    pub size_mb: u32,
    /// `IntervalInSeconds`, 0–900 (AWS default 300).
    pub interval_secs: u64,
}

/// [`BufferingHints`] as a config file gives them, before the both-or-neither rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GivenBufferingHints {
    size_mb: Option<u32>,
    interval_secs: Option<u64>,
}

impl TryFrom<GivenBufferingHints> for BufferingHints {
    type Error = String;

    fn try_from(given: GivenBufferingHints) -> Result<Self, Self::Error> {
        match (given.size_mb, given.interval_secs) {
            (Some(size_mb), Some(interval_secs)) => Ok(Self {
                size_mb,
                interval_secs,
            }),
            (None, None) => Ok(Self::default()),
            (Some(_), None) => Err(format!(
                "buffering: size_mb without interval_secs; AWS takes both or neither: add interval_secs (its default is {})",
                default_interval_secs()
            )),
            (None, Some(_)) => Err(format!(
                "buffering: interval_secs without size_mb; AWS takes both or neither: add size_mb (its default is {})",
                default_size_mb()
            )),
        }
    }
}

impl Default for BufferingHints {
    fn default() -> Self {
        Self {
            size_mb: default_size_mb(),
            interval_secs: default_interval_secs(),
        }
    }
}

/// How the transform runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessorMode {
    /// The `transform` library, called in this process.
    #[default]
    InProcess,
    /// The `transform` binary as a child process, driven through a Lambda Runtime API hosted here.
    RuntimeApi,
}

/// The Lambda processor (`ProcessingConfiguration` with one `Lambda` processor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// `in-process` (default) or `runtime-api`.
    #[serde(default)]
    pub mode: ProcessorMode,
    /// `runtime-api` only: path of the custom-runtime binary (e.g. `target/debug/transform`).
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// `runtime-api` only: the function's environment variables. The child gets these and
    /// Lambda's own variables, nothing inherited from this process; Lambda's reserved keys
    /// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `TZ`, ...) are refused, as on AWS.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `LambdaArn`, written to `processing-failed` records (default: a `transform` function ARN).
    #[serde(default)]
    pub lambda_arn: Option<String>,
    /// `BufferSizeInMBs`, 0.2–3 (default 1).
    #[serde(default = "default_processor_buffer_mb")]
    pub buffer_size_mb: f64,
    /// `BufferIntervalInSeconds`, 0–900 (default 60).
    #[serde(default = "default_processor_interval_secs")]
    pub buffer_interval_secs: u64,
    /// `NumberOfRetries` for failed invocations (default 3).
    #[serde(default = "default_retries")]
    pub number_of_retries: u32,
    /// The function timeout in seconds, 1–300 (default 60); past it: `Lambda.FunctionTimedOut`.
    #[serde(default = "default_function_timeout_secs")]
    pub timeout_secs: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            mode: ProcessorMode::InProcess,
            binary: None,
            env: BTreeMap::new(),
            lambda_arn: None,
            buffer_size_mb: default_processor_buffer_mb(),
            buffer_interval_secs: default_processor_interval_secs(),
            number_of_retries: default_retries(),
            timeout_secs: default_function_timeout_secs(),
        }
    }
}

/// `ContentEncoding` of delivery requests, or `CompressionFormat` of backup objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// GZIP.
    Gzip,
}

/// `S3BackupMode` of an HTTP endpoint destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum S3BackupMode {
    /// Only records that failed delivery (the default).
    #[default]
    FailedDataOnly,
    /// Every source record, plus the failures.
    AllData,
}

/// A secret string: never printed by `Debug` or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is sent.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The HTTP endpoint destination (`HttpEndpointDestinationConfiguration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpointConfig {
    /// Endpoint URL. `https://` as in AWS; `http://` allowed here for local endpoints.
    pub url: String,
    /// Display name (`EndpointConfiguration.Name`).
    #[serde(default)]
    pub name: Option<String>,
    /// Sent verbatim as `X-Amz-Firehose-Access-Key` (≤ 4096 bytes).
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// `CommonAttributes`, sent as `X-Amz-Firehose-Common-Attributes` (≤ 50).
    #[serde(default)]
    pub common_attributes: BTreeMap<String, String>,
    /// `RequestConfiguration.ContentEncoding`: NONE or GZIP.
    #[serde(default)]
    pub content_encoding: Compression,
    /// `RetryOptions.DurationInSeconds`, 0–7200 (default 300, Terraform's default).
    #[serde(default = "default_retry_duration_secs")]
    pub retry_duration_secs: u64,
    /// `FailedDataOnly` (default) or `AllData`.
    #[serde(default)]
    pub s3_backup_mode: S3BackupMode,
    /// Seconds to wait for a response (AWS: 180, fixed). Lower only in tests.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

/// The local NDJSON destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDestinationConfig {
    /// Directory for delivered records (`./firehose-local/delivered`).
    #[serde(default = "default_destination_dir")]
    pub dir: PathBuf,
}

impl Default for LocalDestinationConfig {
    fn default() -> Self {
        Self {
            dir: default_destination_dir(),
        }
    }
}

/// Where backup objects are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum BackupTarget {
    /// A local directory; object keys become relative paths.
    LocalDir {
        /// The directory (`./firehose-local/backup`).
        dir: PathBuf,
    },
    /// An S3 bucket through `aws-sdk-s3` (credentials and region from the usual AWS chain).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Endpoint override, e.g. a `moto_server` or `MinIO` URL.
        #[serde(default)]
        endpoint_url: Option<String>,
        /// Region (defaults to the AWS chain, then `us-east-1`).
        #[serde(default)]
        region: Option<String>,
    },
}

/// The S3 backup configuration (`S3Configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Where objects go.
    #[serde(default = "default_backup_target")]
    pub target: BackupTarget,
    /// `Prefix`; without expressions `YYYY/MM/dd/HH/` is appended.
    #[serde(default)]
    pub prefix: String,
    /// `ErrorOutputPrefix`; must contain `!{firehose:error-output-type}` when set.
    #[serde(default)]
    pub error_output_prefix: Option<String>,
    /// `CompressionFormat`: NONE or GZIP (objects get `.gz`).
    #[serde(default)]
    pub compression: Compression,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            target: default_backup_target(),
            prefix: String::new(),
            error_output_prefix: None,
            compression: Compression::None,
        }
    }
}

/// Fault injection for tests and demos.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultsConfig {
    /// Share (0–1) of `PutRecordBatch` records answered `ServiceUnavailableException` / "Slow down.".
    #[serde(default)]
    pub throttle_share: f64,
    /// Share (0–1) of transform invocations that fail as a function error.
    #[serde(default)]
    pub transform_failure_share: f64,
    /// Share (0–1) of `PutRecord`/`PutRecordBatch` calls refused whole: HTTP 503
    /// `ServiceUnavailableException` "Slow down.", nothing of the call taken (what AWS answers
    /// when a stream's throughput limit is passed).
    #[serde(default)]
    pub call_failure_share: f64,
    /// Seed for the fault dice, for reproducible runs (random when absent).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_region() -> String {
    DEFAULT_REGION.to_owned()
}
fn default_account_id() -> String {
    DEFAULT_ACCOUNT_ID.to_owned()
}
/// Longest `shutdown_grace_secs` accepted: one hour.
pub const MAX_SHUTDOWN_GRACE_SECS: u64 = 3600;

const fn default_shutdown_grace_secs() -> u64 {
    30
}
/// Largest `max_held_mb` accepted: 64 GiB.
pub const MAX_HELD_MB: u64 = 64 * 1024;

const fn default_max_held_mb() -> u64 {
    256
}
const fn default_size_mb() -> u32 {
    5
}
const fn default_interval_secs() -> u64 {
    300
}
const fn default_processor_buffer_mb() -> f64 {
    contract::PROCESSOR_DEFAULT_BUFFER_MB
}
const fn default_processor_interval_secs() -> u64 {
    contract::PROCESSOR_DEFAULT_INTERVAL_SECS
}
const fn default_retries() -> u32 {
    contract::PROCESSOR_DEFAULT_RETRIES
}
const fn default_function_timeout_secs() -> u64 {
    60
}
const fn default_retry_duration_secs() -> u64 {
    300
}
const fn default_request_timeout_secs() -> u64 {
    http_endpoint::RESPONSE_TIMEOUT_SECS
}
fn default_destination_dir() -> PathBuf {
    PathBuf::from("firehose-local/delivered")
}
/// The Terraform module's default backup `prefix` (`terraform/variables.tf`, `backup_prefix`).
pub const TERRAFORM_BACKUP_PREFIX: &str = "source/";
/// The Terraform module's default `error_output_prefix` (`backup_error_output_prefix`).
pub const TERRAFORM_ERROR_OUTPUT_PREFIX: &str =
    "failed/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/";

fn default_backup_target() -> BackupTarget {
    BackupTarget::LocalDir {
        dir: PathBuf::from("firehose-local/backup"),
    }
}

impl Config {
    /// The embedded default: one stream [`DEFAULT_STREAM_NAME`] with the in-process transform,
    /// 1 MB / 5 s destination buffering (New Relic's recommended size; a short interval so a
    /// developer sees events within seconds), processor interval 1 s, and the local NDJSON
    /// destination and backup under `dir` (`dir/delivered`, `dir/backup`). The backup is laid
    /// out as the Terraform module's ([`TERRAFORM_BACKUP_PREFIX`],
    /// [`TERRAFORM_ERROR_OUTPUT_PREFIX`], GZIP), so what a local run leaves there is what
    /// `replay` meets in the real bucket.
    #[must_use]
    pub fn local_default(dir: &Path) -> Self {
        Self {
            region: default_region(),
            account_id: default_account_id(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            max_held_mb: default_max_held_mb(),
            faults: FaultsConfig::default(),
            streams: vec![StreamConfig {
                name: DEFAULT_STREAM_NAME.to_owned(),
                buffering: BufferingHints {
                    size_mb: 1,
                    interval_secs: 5,
                },
                processor: Some(ProcessorConfig {
                    buffer_interval_secs: 1,
                    ..ProcessorConfig::default()
                }),
                http_endpoint: None,
                local_destination: LocalDestinationConfig {
                    dir: dir.join("delivered"),
                },
                backup: BackupConfig {
                    target: BackupTarget::LocalDir {
                        dir: dir.join("backup"),
                    },
                    prefix: TERRAFORM_BACKUP_PREFIX.to_owned(),
                    error_output_prefix: Some(TERRAFORM_ERROR_OUTPUT_PREFIX.to_owned()),
                    compression: Compression::Gzip,
                },
            }],
        }
    }

    /// Loads a `.toml`, `.yaml` or `.yml` file and validates it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the field at fault.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let parse_err = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let config: Self = match ext {
            "toml" => toml::from_str(&text).map_err(|e| parse_err(toml_message(&text, &e)))?,
            "yaml" | "yml" => {
                serde_norway::from_str(&text).map_err(|e| parse_err(e.to_string()))?
            }
            _ => return Err(ConfigError::UnknownFormat(path.to_owned())),
        };
        config.validate()?;
        Ok(config)
    }

    /// The ARN of a stream.
    #[must_use]
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:firehose:{}:{}:deliverystream/{name}",
            self.region, self.account_id
        )
    }

    /// Checks every range and rule; the message names the stream and field to fix.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        if self.streams.is_empty() {
            return bad("at least one entry in `streams` is required".into());
        }
        // It is added to the clock at shutdown; an hour is more than any flush needs.
        if self.shutdown_grace_secs > MAX_SHUTDOWN_GRACE_SECS {
            return bad(format!(
                "shutdown_grace_secs must be 0-{MAX_SHUTDOWN_GRACE_SECS}, got {}",
                self.shutdown_grace_secs
            ));
        }
        if !(1..=MAX_HELD_MB).contains(&self.max_held_mb) {
            return bad(format!(
                "max_held_mb must be 1-{MAX_HELD_MB}, got {}",
                self.max_held_mb
            ));
        }
        for share in [
            ("faults.throttle_share", self.faults.throttle_share),
            (
                "faults.transform_failure_share",
                self.faults.transform_failure_share,
            ),
            ("faults.call_failure_share", self.faults.call_failure_share),
        ] {
            if !(0.0..=1.0).contains(&share.1) {
                return bad(format!(
                    "{} must be between 0 and 1, got {}",
                    share.0, share.1
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.streams {
            let n = &s.name;
            if !limits::is_valid_stream_name(n) {
                return bad(format!(
                    "stream name {n:?} must be 1-64 characters of [a-zA-Z0-9_.-]"
                ));
            }
            if !names.insert(n.as_str()) {
                return bad(format!("stream name {n:?} appears twice"));
            }
            if !(1..=64).contains(&s.buffering.size_mb) {
                return bad(format!(
                    "streams[{n}].buffering.size_mb must be 1-64, got {}",
                    s.buffering.size_mb
                ));
            }
            if s.buffering.interval_secs > 900 {
                return bad(format!(
                    "streams[{n}].buffering.interval_secs must be 0-900, got {}",
                    s.buffering.interval_secs
                ));
            }
            if let Some(p) = &s.processor {
                if !(contract::PROCESSOR_MIN_BUFFER_MB..=contract::PROCESSOR_MAX_BUFFER_MB)
                    .contains(&p.buffer_size_mb)
                {
                    return bad(format!(
                        "streams[{n}].processor.buffer_size_mb must be 0.2-3, got {}",
                        p.buffer_size_mb
                    ));
                }
                if p.buffer_interval_secs > contract::PROCESSOR_MAX_INTERVAL_SECS {
                    return bad(format!(
                        "streams[{n}].processor.buffer_interval_secs must be 0-900, got {}",
                        p.buffer_interval_secs
                    ));
                }
                if !(1..=contract::MAX_FUNCTION_DURATION_SECS).contains(&p.timeout_secs) {
                    return bad(format!(
                        "streams[{n}].processor.timeout_secs must be 1-300, got {}",
                        p.timeout_secs
                    ));
                }
                if p.mode == ProcessorMode::RuntimeApi {
                    match &p.binary {
                        None => {
                            return bad(format!(
                                "streams[{n}].processor.binary is required with mode = \"runtime-api\""
                            ));
                        }
                        Some(b) if !b.is_file() => {
                            return bad(format!(
                                "streams[{n}].processor.binary {} does not exist (build it with `cargo build -p transform`)",
                                b.display()
                            ));
                        }
                        Some(_) => {}
                    }
                }
                if let Some(key) = p
                    .env
                    .keys()
                    .find(|k| crate::runtime_api::LAMBDA_RESERVED_ENV.contains(&k.as_str()))
                {
                    return bad(format!(
                        "streams[{n}].processor.env sets {key}, which Lambda reserves and sets itself (a function configured with it is refused on AWS); remove it"
                    ));
                }
            }
            if let Some(h) = &s.http_endpoint {
                // Parsed, not only prefix-checked: otherwise every batch would fail to build its
                // request, which reads like a network failure (retried for the whole retry
                // duration, then backed up).
                match reqwest::Url::parse(&h.url) {
                    Err(e) => {
                        return bad(format!(
                            "streams[{n}].http_endpoint.url is not a valid URL: {e}"
                        ));
                    }
                    Ok(url) if !matches!(url.scheme(), "http" | "https") || h.url.len() > 1000 => {
                        return bad(format!(
                            "streams[{n}].http_endpoint.url must be an http(s):// URL of at most 1000 characters"
                        ));
                    }
                    // New Relic takes at most 1 MB per request and answers 413 above it, which
                    // Firehose does not retry (and by AWS's 2023 spec does not back up): the
                    // Terraform module refuses other settings for its URLs, and so does this.
                    Ok(url)
                        if NEW_RELIC_FIREHOSE_HOSTS
                            .contains(&url.host_str().unwrap_or_default())
                            && (s.buffering.size_mb != 1
                                || h.content_encoding != Compression::Gzip) =>
                    {
                        return bad(format!(
                            "streams[{n}] sends to New Relic, which takes at most 1 MB per request: set buffering.size_mb = 1 and http_endpoint.content_encoding = \"GZIP\" (New Relic's advice; larger requests get 413 and are not retried); from the command line: --buffer-size-mb 1 --gzip"
                        ));
                    }
                    Ok(_) => {}
                }
                if h.retry_duration_secs > http_endpoint::MAX_RETRY_DURATION_SECS {
                    return bad(format!(
                        "streams[{n}].http_endpoint.retry_duration_secs must be 0-7200, got {}",
                        h.retry_duration_secs
                    ));
                }
                if h.request_timeout_secs == 0
                    || h.request_timeout_secs > http_endpoint::RESPONSE_TIMEOUT_SECS
                {
                    return bad(format!(
                        "streams[{n}].http_endpoint.request_timeout_secs must be 1-180"
                    ));
                }
                if h.access_key
                    .as_ref()
                    .is_some_and(|k| k.expose().len() > http_endpoint::MAX_ACCESS_KEY_BYTES)
                {
                    return bad(format!(
                        "streams[{n}].http_endpoint.access_key is longer than 4096 bytes"
                    ));
                }
                // The same for a key that cannot be a header value (the newline `$(cat key)`
                // or a file read whole leaves, a control character). The key is not quoted.
                if h.access_key
                    .as_ref()
                    .is_some_and(|k| http::HeaderValue::from_str(k.expose()).is_err())
                {
                    return bad(format!(
                        "streams[{n}].http_endpoint.access_key holds a character an HTTP header cannot (a line break or another control character, or non-ASCII); remove it"
                    ));
                }
                if h.common_attributes.len() > http_endpoint::MAX_COMMON_ATTRIBUTES
                    || h.common_attributes.iter().any(|(k, v)| {
                        // AWS's pattern for a name, ^(?!\s*$).+: not empty, not only whitespace.
                        k.trim().is_empty() || k.chars().count() > 256 || v.chars().count() > 1024
                    })
                {
                    return bad(format!(
                        "streams[{n}].http_endpoint.common_attributes: at most 50, names 1-256 characters and not only whitespace, values 0-1024 characters"
                    ));
                }
            }
            let b = &s.backup;
            // Evaluating the prefixes (`check_prefix`) refuses `!{firehose:error-output-type}` in
            // `prefix`, and a `prefix` with expressions but no `error_output_prefix`. It cannot
            // see this rule (a prefix without expressions evaluates): a set
            // `error_output_prefix` must contain `!{firehose:error-output-type}`.
            if let Some(p) = &b.error_output_prefix
                && !p.contains("!{firehose:error-output-type}")
            {
                return bad(format!(
                    "streams[{n}].backup.error_output_prefix must contain !{{firehose:error-output-type}}"
                ));
            }
            // `prefix` names source-record (`AllData`) objects and, without an
            // `error_output_prefix`, error output too; `error_output_prefix` names error output.
            let mut prefix_uses = vec![None];
            if b.error_output_prefix.is_none() {
                prefix_uses.extend(ERROR_OUTPUT_TYPES.map(Some));
            }
            check_prefix(n, "prefix", &b.prefix, &prefix_uses)?;
            if let Some(p) = &b.error_output_prefix {
                check_prefix(n, "error_output_prefix", p, &ERROR_OUTPUT_TYPES.map(Some))?;
            }
        }
        // Under a cap smaller than the streams' buffers (the cap is shared), the size hints
        // could never be reached: streams would crawl at one interval per cap's worth of
        // records. (Each record is also charged 128 bytes besides its data, so streams of small
        // records need more room than this.)
        let buffers: f64 = self
            .streams
            .iter()
            .map(|s| {
                f64::from(s.buffering.size_mb)
                    + s.processor.as_ref().map_or(0.0, |p| p.buffer_size_mb)
            })
            .sum();
        #[allow(clippy::cast_precision_loss)]
        if (self.max_held_mb as f64) < buffers {
            return bad(format!(
                "max_held_mb ({}) is below the streams' buffers (buffering.size_mb + \
                 processor.buffer_size_mb of every stream = {buffers} MB), so they could never \
                 fill: raise max_held_mb or lower the size hints",
                self.max_held_mb
            ));
        }
        Ok(())
    }
}

/// Every `!{firehose:error-output-type}` value this crate writes (the engine writes
/// `http-endpoint-failed` for any destination, so both apply to every stream).
const ERROR_OUTPUT_TYPES: [ErrorOutputType; 2] = [
    ErrorOutputType::ProcessingFailed,
    ErrorOutputType::HttpEndpointFailed,
];

/// Evaluates a backup prefix the way every backup write will, so a prefix that cannot be
/// evaluated stops the start instead of failing each write later, when its records can only be
/// logged as lost. AWS checks the prefix rules when the stream is created (facts §2.1–2.2);
/// for timestamp patterns firehose-local is stricter than AWS (see
/// [`layout::format_timestamp`]): a pattern letter it does not implement is refused here rather
/// than formatted differently.
///
/// `uses` are the error-output types the prefix is evaluated with (`None`: source records). The
/// expressions take their longest values, so the 512-character limit holds for every object:
/// an 11-character random string, and any instant, since every supported timestamp field is
/// fixed-width (`yyyy` four digits, the others two) for the years records can arrive in.
fn check_prefix(
    stream: &str,
    field: &str,
    template: &str,
    uses: &[Option<ErrorOutputType>],
) -> Result<(), ConfigError> {
    let at = time::OffsetDateTime::UNIX_EPOCH;
    for &kind in uses {
        let mut random = || "x".repeat(layout::RANDOM_STRING_LEN);
        let evaluated = layout::evaluate_prefix(template, kind, at, &mut random);
        if let Ok(key) = &evaluated
            && !stays_inside(key)
        {
            return Err(ConfigError::Invalid(format!(
                "streams[{stream}].backup.{field} {template:?} starts with `/` or has a `.` or \
                 `..` segment: S3 would keep those as characters of the key, but firehose-local \
                 also writes backups as files under --dir, and such a key would not stay inside it"
            )));
        }
        if let Err(e) = evaluated {
            let used_for = kind.map_or_else(
                || "source-record backups".to_owned(),
                |k| {
                    format!(
                        "error output with !{{firehose:error-output-type}} = {}",
                        k.as_str()
                    )
                },
            );
            return Err(ConfigError::Invalid(format!(
                "streams[{stream}].backup.{field} {template:?} cannot be evaluated for {used_for}: {e}; {}",
                prefix_fix(&e)
            )));
        }
    }
    Ok(())
}

/// Whether `key`, taken as a relative path, names a file under the directory it is joined to:
/// not absolute, no `.` or `..` segment. (`LocalDirStore` checks every key the same way.)
pub(crate) fn stays_inside(key: &str) -> bool {
    !key.starts_with('/')
        && key
            .split('/')
            .all(|segment| segment != "." && segment != "..")
}

/// What to change in a prefix that failed with `e`.
const fn prefix_fix(e: &layout::PrefixError) -> &'static str {
    use layout::PrefixError as E;
    match e {
        E::Unterminated(_) => "close every `!{` with `}`",
        E::UnsupportedExpression(_) => {
            "use only !{timestamp:<pattern>}, !{firehose:random-string} and, in \
             error_output_prefix, !{firehose:error-output-type} (firehose-local has no dynamic \
             partitioning, so no !{partitionKeyFromQuery:…} or !{partitionKeyFromLambda:…})"
        }
        E::BadTimestampPattern(_) => {
            "write the pattern with yyyy, yy, MM, dd, HH, mm and ss (letters are case-sensitive \
             and two wide: HH, not H; yyyy, not YYYY), put other text in single quotes \
             ('year='yyyy), and close every quote"
        }
        E::TooLong(_) => {
            "shorten it: an evaluated prefix may have at most 512 characters, counted with the \
             longest values its expressions take (http-endpoint-failed, 11 random characters)"
        }
        E::ErrorTypeNotAllowed => {
            "remove !{firehose:error-output-type}: only error_output_prefix may contain it"
        }
        // Only `prefix` (with expressions, evaluated for error output) gets here: `validate`
        // refuses an `error_output_prefix` without !{firehose:error-output-type} before.
        E::ErrorTypeMissing => {
            "set error_output_prefix (with !{firehose:error-output-type}): it is required when \
             prefix has expressions"
        }
    }
}

/// A TOML error as `line L, column C: message`. `toml`'s own `Display` quotes the whole source
/// line at fault, which can hold a secret: an `access_key` in the same inline table as the
/// field that is wrong. On a line that names `access_key`, the message does not repeat the
/// text at fault either (`access_key = 1234` is "invalid type: integer `1234`").
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some((span, before)) = e
        .span()
        .and_then(|span| Some((span.clone(), text.get(..span.start)?)))
    else {
        return message.to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let on_key_line = text
        .lines()
        .nth(line - 1)
        .is_some_and(|l| l.contains("access_key"));
    let at_fault = text.get(span).unwrap_or_default().trim();
    let message = if on_key_line && !at_fault.is_empty() {
        message.replace(at_fault, "<hidden>")
    } else {
        message.to_owned()
    };
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_names_the_place_but_never_quotes_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for broken in [
            // A wrong value beside the key in the same inline table.
            TOML.replace("access_key = \"k\"", "access_key = \"super-secret-key\"")
                .replace("\"GZIP\"", "\"ZIP\""),
            // An unknown field beside it.
            TOML.replace(
                "access_key = \"k\"",
                "access_key = \"super-secret-key\", nope = 1",
            ),
            // A syntax error on its line.
            TOML.replace(
                "access_key = \"k\"",
                "access_key = \"super-secret-key\" oops",
            ),
            // The key itself of the wrong type: the message would quote it.
            TOML.replace("access_key = \"k\"", "access_key = 8675309"),
        ] {
            std::fs::write(&p, &broken).unwrap();
            let text = Config::from_file(&p).unwrap_err().to_string();
            assert!(!text.contains("super-secret-key"), "{text}");
            assert!(!text.contains("8675309"), "{text}");
            assert!(text.contains("line 7, column "), "{text}");
        }
    }

    const TOML: &str = r#"
region = "eu-west-1"
[[streams]]
name = "logs"
buffering = { size_mb = 1, interval_secs = 60 }
processor = { mode = "in-process", number_of_retries = 2 }
http_endpoint = { url = "http://127.0.0.1:9/v1", access_key = "k", content_encoding = "GZIP", retry_duration_secs = 10, s3_backup_mode = "AllData" }
backup = { target = { kind = "local-dir", dir = "/tmp/b" }, error_output_prefix = "err/!{firehose:error-output-type}/" }
"#;

    const YAML: &str = r#"
region: eu-west-1
streams:
  - name: logs
    buffering: { size_mb: 1, interval_secs: 60 }
    processor: { mode: in-process, number_of_retries: 2 }
    http_endpoint: { url: "http://127.0.0.1:9/v1", access_key: k, content_encoding: GZIP, retry_duration_secs: 10, s3_backup_mode: AllData }
    backup: { target: { kind: local-dir, dir: /tmp/b }, error_output_prefix: "err/!{firehose:error-output-type}/" }
"#;

    /// AWS refuses buffering hints with one of the two values, and an attribute name of only
    /// whitespace; so does the config.
    #[test]
    fn what_aws_refuses_at_stream_creation_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        // Neither is AWS's defaults.
        std::fs::write(&p, TOML.replace("size_mb = 1, interval_secs = 60", "")).unwrap();
        let neither = Config::from_file(&p).unwrap();
        assert_eq!(neither.streams[0].buffering, BufferingHints::default());
        for (broken, says) in [
            (
                TOML.replace("size_mb = 1, interval_secs = 60", "size_mb = 1"),
                "interval_secs",
            ),
            (
                TOML.replace("size_mb = 1, interval_secs = 60", "interval_secs = 60"),
                "size_mb",
            ),
            (
                TOML.replace(
                    "access_key = \"k\",",
                    "access_key = \"k\", common_attributes = { \"  \" = \"v\" },",
                ),
                "not only whitespace",
            ),
        ] {
            std::fs::write(&p, &broken).unwrap();
            let text = Config::from_file(&p).unwrap_err().to_string();
            assert!(text.contains(says), "{says}: {text}");
        }
    }

    #[test]
    fn toml_and_yaml_load_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("c.toml");
        let y = dir.path().join("c.yaml");
        std::fs::write(&t, TOML).unwrap();
        std::fs::write(&y, YAML).unwrap();
        let a = Config::from_file(&t).unwrap();
        let b = Config::from_file(&y).unwrap();
        assert_eq!(a, b);
        let s = &a.streams[0];
        assert_eq!(s.processor.as_ref().unwrap().number_of_retries, 2);
        assert_eq!(s.processor.as_ref().unwrap().buffer_size_mb, 1.0);
        let h = s.http_endpoint.as_ref().unwrap();
        assert_eq!(h.content_encoding, Compression::Gzip);
        assert_eq!(h.s3_backup_mode, S3BackupMode::AllData);
        assert_eq!(h.request_timeout_secs, 180);
        assert_eq!(
            a.stream_arn("logs"),
            "arn:aws:firehose:eu-west-1:000000000000:deliverystream/logs"
        );
    }

    #[test]
    fn secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            TOML.replace("access_key = \"k\"", "access_key = \"super-secret-key\""),
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        assert_eq!(
            c.streams[0]
                .http_endpoint
                .as_ref()
                .unwrap()
                .access_key
                .as_ref()
                .unwrap()
                .expose(),
            "super-secret-key"
        );
        assert!(!format!("{c:?}").contains("super-secret-key"));
    }

    #[test]
    fn the_function_environment_may_not_set_lambdas_reserved_keys() {
        let mut c = Config::local_default(Path::new("/tmp/x"));
        let p = c.streams[0].processor.as_mut().unwrap();
        p.env.insert("RUST_LOG".into(), "debug".into());
        p.env.insert("PATH".into(), "/opt/bin".into());
        c.validate().unwrap();
        for reserved in ["AWS_REGION", "AWS_SECRET_ACCESS_KEY", "TZ", "_HANDLER"] {
            let mut c = c.clone();
            let p = c.streams[0].processor.as_mut().unwrap();
            p.env.insert(reserved.into(), "x".into());
            let msg = c.validate().unwrap_err().to_string();
            assert!(
                msg.contains(&format!(
                    "processor.env sets {reserved}, which Lambda reserves"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_field_to_fix() {
        let mut c = Config::local_default(Path::new("/tmp/x"));
        c.validate().unwrap();
        c.streams[0].buffering.size_mb = 65;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("streams[events].buffering.size_mb must be 1-64")
        );
        let mut c = Config::local_default(Path::new("/tmp/x"));
        c.streams[0].backup.error_output_prefix = Some("errors/".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("error_output_prefix must contain")
        );
        let mut c = Config::local_default(Path::new("/tmp/x"));
        c.streams[0].name = "bad name".into();
        assert!(c.validate().is_err());
        let mut c = Config::local_default(Path::new("/tmp/x"));
        c.faults.throttle_share = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("faults.throttle_share")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[[streams]]\nname = \"a\"\nbogus = 1\n").unwrap();
        assert!(
            Config::from_file(&p)
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
        assert!(matches!(
            Config::from_file(&dir.path().join("c.json")),
            Err(ConfigError::Read { .. })
        ));
    }

    /// The embedded default's backup layout is the Terraform module's, read from its variables.
    #[test]
    fn the_local_backup_is_laid_out_as_the_terraform_module_lays_out_the_bucket() {
        let tf = include_str!("../../../terraform/variables.tf");
        let default_of = |variable: &str| {
            let block = tf
                .split(&format!("variable \"{variable}\""))
                .nth(1)
                .unwrap_or_else(|| panic!("{variable} not in variables.tf"));
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with("default"))
                .unwrap();
            line.split('"').nth(1).unwrap().to_owned()
        };
        let backup = &Config::local_default(Path::new("/tmp/x")).streams[0].backup;
        assert_eq!(backup.prefix, default_of("backup_prefix"));
        assert_eq!(
            backup.error_output_prefix.as_deref(),
            Some(default_of("backup_error_output_prefix").as_str())
        );
        let firehose_tf = include_str!("../../../terraform/firehose.tf");
        assert!(firehose_tf.contains("compression_format  = \"GZIP\""));
        assert_eq!(backup.compression, Compression::Gzip);
    }

    /// A URL or access key the HTTP client cannot send fails at start, not at every batch.
    #[test]
    fn an_endpoint_that_cannot_be_sent_to_is_refused_at_start() {
        let with = |url: &str, key: &str| {
            let mut c = Config::local_default(Path::new("/tmp/x"));
            c.streams[0].http_endpoint = Some(HttpEndpointConfig {
                url: url.to_owned(),
                name: None,
                access_key: Some(Secret::new(key)),
                common_attributes: BTreeMap::new(),
                content_encoding: Compression::Gzip,
                retry_duration_secs: 60,
                s3_backup_mode: S3BackupMode::default(),
                request_timeout_secs: 10,
            });
            c.validate().map_err(|e| e.to_string())
        };
        assert_eq!(
            with("https://aws-api.newrelic.com/firehose/v1", "key"),
            Ok(())
        );
        let err = with("https://exa mple.com/v1", "key").unwrap_err();
        assert!(
            err.contains("http_endpoint.url is not a valid URL"),
            "{err}"
        );
        let err = with("https://aws-api.newrelic.com/firehose/v1", "secret-key\n").unwrap_err();
        assert!(
            err.contains("http_endpoint.access_key holds a character"),
            "{err}"
        );
        assert!(!err.contains("secret-key"), "the key is not quoted: {err}");
    }

    /// New Relic takes at most 1 MB per request: a stream sending there needs the 1 MiB buffer
    /// and GZIP, as the Terraform module requires; other endpoints may use any.
    #[test]
    fn a_new_relic_endpoint_needs_a_1_mib_buffer_and_gzip() {
        let with = |url: &str, size_mb: u32, encoding: Compression| {
            let mut c = Config::local_default(Path::new("/tmp/x"));
            c.streams[0].buffering.size_mb = size_mb;
            c.streams[0].http_endpoint = Some(HttpEndpointConfig {
                url: url.to_owned(),
                name: None,
                access_key: Some(Secret::new("key")),
                common_attributes: BTreeMap::new(),
                content_encoding: encoding,
                retry_duration_secs: 60,
                s3_backup_mode: S3BackupMode::default(),
                request_timeout_secs: 10,
            });
            c.validate().map_err(|e| e.to_string())
        };
        for url in [
            "https://aws-api.newrelic.com/firehose/v1",
            "https://aws-api.eu.newrelic.com/firehose/v1",
        ] {
            assert_eq!(with(url, 1, Compression::Gzip), Ok(()));
            for (size_mb, encoding) in [(5, Compression::Gzip), (1, Compression::None)] {
                let err = with(url, size_mb, encoding).unwrap_err();
                assert!(
                    err.contains(
                        "set buffering.size_mb = 1 and http_endpoint.content_encoding = \"GZIP\""
                    ),
                    "{url} {size_mb} {encoding:?}: {err}"
                );
            }
        }
        assert_eq!(
            with("https://logs.example.com/firehose", 5, Compression::None),
            Ok(())
        );
    }

    /// A prefix that cannot be evaluated would make every backup write fail at run time (the
    /// records lost); AWS refuses such prefixes when the stream is created, so must `validate`.
    #[test]
    fn prefixes_that_cannot_be_evaluated_are_refused_at_start() {
        let mut c = Config::local_default(Path::new("/tmp/x"));
        c.shutdown_grace_secs = u64::MAX;
        let msg = c
            .validate()
            .expect_err("a grace past the clock")
            .to_string();
        assert!(msg.contains("shutdown_grace_secs must be 0-3600"), "{msg}");
        for held in [0, MAX_HELD_MB + 1] {
            let mut c = Config::local_default(Path::new("/tmp/x"));
            c.max_held_mb = held;
            let msg = c.validate().expect_err("held cap out of range").to_string();
            assert!(msg.contains("max_held_mb must be 1-65536"), "{msg}");
        }
        // local_default: 1 MB destination + 1 MB processor buffer.
        let mut c = Config::local_default(Path::new("/tmp/x"));
        c.max_held_mb = 1;
        let msg = c.validate().expect_err("cap under the buffers").to_string();
        assert!(
            msg.contains("max_held_mb (1) is below the streams' buffers") && msg.contains("= 2 MB"),
            "{msg}"
        );
        c.max_held_mb = 2;
        assert!(c.validate().is_ok());
        // The cap is shared: two such streams need twice the room.
        let mut second = c.streams[0].clone();
        second.name = "other".into();
        c.streams.push(second);
        let msg = c.validate().expect_err("two streams' buffers").to_string();
        assert!(msg.contains("= 4 MB"), "{msg}");

        let err_prefix = |p: &str| {
            let mut c = Config::local_default(Path::new("/tmp/x"));
            c.streams[0].backup.error_output_prefix = Some(p.to_owned());
            c.validate().map_err(|e| e.to_string())
        };
        let prefixes = |p: &str, e: Option<&str>| {
            let mut c = Config::local_default(Path::new("/tmp/x"));
            c.streams[0].backup.prefix = p.to_owned();
            c.streams[0].backup.error_output_prefix = e.map(str::to_owned);
            c.validate().map_err(|e| e.to_string())
        };
        let eop = "streams[events].backup.error_output_prefix";
        for (prefix, why) in [
            (
                "e/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/H}/",
                "unsupported timestamp pattern",
            ),
            (
                "e/!{firehose:error-output-type}/!{timestamp:YYYY}/",
                "unsupported timestamp pattern",
            ),
            (
                "e/!{firehose:error-output-type}/!{partitionKeyFromQuery:x}/",
                "!{partitionKeyFromQuery:x}",
            ),
            (
                "e/!{firehose:error-output-type}/!{timestamp:yyyy",
                "unterminated",
            ),
        ] {
            let msg = err_prefix(prefix).expect_err(prefix);
            assert!(msg.contains(eop) && msg.contains(why), "{prefix}: {msg}");
        }
        for escaping in [
            "/abs/!{firehose:error-output-type}/",
            "../!{firehose:error-output-type}/",
            "e/./!{firehose:error-output-type}/",
            "e/!{firehose:error-output-type}/../../x",
        ] {
            let msg = err_prefix(escaping).expect_err(escaping);
            assert!(
                msg.contains(eop) && msg.contains("would not stay inside"),
                "{escaping}: {msg}"
            );
        }
        err_prefix("e..f/!{timestamp:'..'yyyy}/!{firehose:error-output-type}/")
            .expect("dots inside a segment are characters");
        // 18 + 494 = 512 characters as `processing-failed/…`, but 515 as
        // `http-endpoint-failed/…`: too long for the longer error-output type.
        let long = format!("!{{firehose:error-output-type}}/{}", "a".repeat(494));
        let msg = err_prefix(&long).unwrap_err();
        assert!(
            msg.contains(eop) && msg.contains("http-endpoint-failed") && msg.contains("515"),
            "{msg}"
        );
        let fits = format!("!{{firehose:error-output-type}}/{}", "a".repeat(491));
        err_prefix(&fits).expect("512 characters with the longest error-output type");
        // The longest values the expressions take: 11 random characters, 4-digit years.
        let random = format!(
            "!{{firehose:error-output-type}}/!{{firehose:random-string}}/{}",
            "a".repeat(480)
        );
        assert!(err_prefix(&random).unwrap_err().contains("513"));

        // `prefix` is evaluated for source backups (no error-output type) ...
        let ep = Some("e/!{firehose:error-output-type}/");
        let p = "streams[events].backup.prefix";
        for bad in ["p/!{timestamp:yyyy/MM/dd/H}/", "p/!{", "p/!{nope:x}/"] {
            let msg = prefixes(bad, ep).expect_err(bad);
            assert!(msg.contains(p), "{bad}: {msg}");
        }
        // Only error_output_prefix may hold !{firehose:error-output-type}, and a prefix with
        // expressions needs an error_output_prefix (AWS's rules, facts §2.2).
        let msg = prefixes("p/!{firehose:error-output-type}/", ep).unwrap_err();
        assert!(
            msg.contains(p) && msg.contains("only error_output_prefix may contain it"),
            "{msg}"
        );
        let msg = prefixes("p/!{timestamp:yyyy}/", None).unwrap_err();
        assert!(
            msg.contains(p)
                && msg.contains("error_output_prefix")
                && msg.contains("required when prefix has expressions"),
            "{msg}"
        );
        prefixes("p/!{timestamp:yyyy}/", ep).expect("with an error_output_prefix");
        // ... and, without an error_output_prefix, for error output too: 480 + 14 fits as a
        // source prefix, 480 + `http-endpoint-failed/` (21) + 14 does not.
        prefixes(&"a".repeat(480), ep).expect("494 characters for source backups");
        let msg = prefixes(&"a".repeat(480), None).unwrap_err();
        assert!(
            msg.contains(p) && msg.contains("http-endpoint-failed") && msg.contains("515"),
            "{msg}"
        );
    }
}
