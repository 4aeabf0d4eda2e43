//! Typed configuration, read once at start from flags and environment variables.
//!
//! Every field says what it means, its variable and its default; the README's configuration
//! table is the same list. [`Config::validate`] turns nonsense into an error that says what to
//! fix, before anything is bound or sent. Nothing secret lives here: API keys stay in their file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use firehose_formats::limits::is_valid_stream_name;
use secrecy::SecretString;

use crate::log_writer::WhenFull;
use crate::producer::ProducerConfig;
use crate::telemetry::LogSettings;

/// `ingest` settings. Each flag can also be set through the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ingest",
    version,
    about = "HTTP front door for Amazon Data Firehose"
)]
pub struct Config {
    /// Delivery stream that receives the events. Unset: `ingest` starts the embedded local
    /// Firehose (development only; needs the `embedded` feature, on by default), configured by
    /// the `INGEST_LOCAL_*` settings below.
    #[arg(long, env = "FIREHOSE_DELIVERY_STREAM")]
    pub delivery_stream: Option<String>,

    /// Embedded local Firehose only: directory for delivered records (`delivered/`) and
    /// backups (`backup/`).
    #[arg(long, env = "INGEST_LOCAL_DIR", default_value = "local-data")]
    pub local_dir: PathBuf,

    /// Embedded local Firehose only: deliver to this HTTP endpoint (the Firehose HTTP-endpoint
    /// protocol, GZIP, 60 s retry duration) instead of writing `delivered/` files. `http://` is
    /// allowed locally.
    #[arg(long, env = "INGEST_LOCAL_ENDPOINT_URL")]
    pub local_endpoint_url: Option<String>,

    /// Embedded local Firehose only: sent as `X-Amz-Firehose-Access-Key` to
    /// `INGEST_LOCAL_ENDPOINT_URL` (e.g. a New Relic license key). Never printed.
    #[arg(long, env = "INGEST_LOCAL_ENDPOINT_ACCESS_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub local_endpoint_access_key: Option<SecretString>,

    /// Embedded local Firehose only: a full firehose-local configuration file (TOML or YAML;
    /// see services/firehose-local/README.md). Its first stream receives the events; the other
    /// `INGEST_LOCAL_*` settings are then ignored.
    #[arg(long, env = "INGEST_LOCAL_FIREHOSE_CONFIG")]
    pub local_firehose_config: Option<PathBuf>,

    /// Public listener: event intake (`POST /v1/events`, `POST /`).
    #[arg(long, env = "INGEST_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Admin listener: `/healthz`, `/readyz`, `/metrics`. Keep it off the ingress.
    #[arg(long, env = "INGEST_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// File of API keys, one per line: the key itself, or `sha256:<64 hex digits>` of it.
    /// `#` starts a comment. Re-read when it changes. Unset: authentication is off.
    #[arg(long, env = "INGEST_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// How often to look for a changed API-key file (at least 1 s: each look reads the
    /// file on a runtime worker).
    #[arg(long, env = "INGEST_API_KEYS_RELOAD", default_value = "5s", value_parser = parse_duration)]
    pub api_keys_reload: Duration,

    /// JSON Schema file every event must satisfy. Unset: any JSON object is accepted.
    #[arg(long, env = "INGEST_SCHEMA_FILE")]
    pub schema_file: Option<PathBuf>,

    /// Largest request body, in bytes, as received and again after decompression.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most events in one request (a JSON array's elements, NDJSON lines); more: 413, nothing
    /// sent. Bounds what a request holds besides its bytes (about 256 bytes per event).
    #[arg(long, env = "INGEST_MAX_EVENTS", default_value_t = 100_000)]
    pub max_events: usize,

    /// Largest event, in bytes (2 to 1,023,999, Firehose's record limit less the newline);
    /// larger: 400, nothing sent. Lower it to keep events New Relic takes whole: it keeps at most
    /// 128 KB of an attribute value, and one record near the Firehose limit that does not
    /// compress makes a request over New Relic's 1 MB (413).
    #[arg(long, env = "INGEST_MAX_EVENT_BYTES", default_value_t = crate::validate::MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,

    /// How long a Firehose batch waits for more records after its first one.
    #[arg(long, env = "INGEST_LINGER", default_value = "10ms", value_parser = parse_duration)]
    pub linger: Duration,

    /// How long failed records are retried before the request is answered 503.
    #[arg(long, env = "INGEST_RETRY_BUDGET", default_value = "10s", value_parser = parse_duration)]
    pub retry_budget: Duration,

    /// Longest wait for one `PutRecordBatch` answer.
    #[arg(long, env = "INGEST_FIREHOSE_CALL_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub call_timeout: Duration,

    /// `PutRecordBatch` calls in flight at once.
    #[arg(long, env = "INGEST_MAX_CONCURRENT_CALLS", default_value_t = 32)]
    pub max_concurrent_calls: usize,

    /// Cap on bytes held for requests: bodies as they arrive (and inflate), then their records
    /// until Firehose answers, and each call's copies of them in the SDK while it runs; past it
    /// new requests get 503 at once.
    #[arg(long, env = "INGEST_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// Requests per second allowed per API key (per service when auth is off). 0: no limit.
    #[arg(long, env = "INGEST_RATE_LIMIT_RPS", default_value_t = 0.0)]
    pub rate_limit_rps: f64,

    /// Requests a key may burst above its rate. Default: one second's worth (at least 1).
    #[arg(long, env = "INGEST_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,

    /// Longest time one request may take, end to end. Events not inside a `PutRecordBatch`
    /// call by this time minus the call timeout minus 1 s are not sent and are answered as not
    /// accepted (503 listing them); a body not received by then is answered 408. Must exceed
    /// the retry budget + the call timeout + 1 s, and the linger + the call timeout + 1 s.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// After SIGTERM: time `/readyz` answers 503 while requests are still served, so load
    /// balancers stop sending before the listener closes.
    #[arg(long, env = "INGEST_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// After the listener closes: how long in-flight requests may take to finish. At least
    /// the request timeout, which bounds every request.
    #[arg(long, env = "INGEST_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How often (±10 %) `/readyz` re-checks that the delivery stream is reachable: a
    /// `PutRecordBatch` call answered since the last check counts, otherwise
    /// `DescribeDeliveryStream` is called (see [`crate::state`]).
    #[arg(long, env = "INGEST_READINESS_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub readiness_interval: Duration,

    /// Log filter (`tracing` env-filter syntax), e.g. `info` or `ingest=debug`. An empty value
    /// (`RUST_LOG=` exported by a shell or `docker run -e RUST_LOG=`) means the default, `info`:
    /// to the filter it would mean "off", errors and the access log included.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = log_filter)]
    pub log: String,

    /// Log lines (one access line per request) that may wait for the thread writing stdout:
    /// what a stall of stdout is absorbed by before `INGEST_LOG_WHEN_FULL` applies. At most
    /// about this many times a line's size (≈ 300 bytes for an access line) of memory, and the
    /// queue's slots (≈ 32 bytes each) are taken at start: 1 to 1,048,576.
    #[arg(
        long,
        env = "INGEST_LOG_QUEUE_LINES",
        default_value_t = 65_536,
        value_parser = clap::value_parser!(u32).range(1..=MAX_LOG_QUEUE_LINES)
    )]
    pub log_queue_lines: u32,

    /// When that queue is full because stdout stalls: `drop` drops the lines and counts them
    /// (`ingest_log_lines_dropped_total`) and requests go on; `block` makes every request wait
    /// to log, so no line is lost but a stalled log pipeline stops intake.
    #[arg(long, env = "INGEST_LOG_WHEN_FULL", value_enum, default_value_t = WhenFull::Drop)]
    pub log_when_full: WhenFull,
}

/// Most log lines `INGEST_LOG_QUEUE_LINES` takes: the queue allocates its slots at start, and
/// `u32::MAX` of them (≈ 128 GiB) would abort the process instead of failing with a message.
pub const MAX_LOG_QUEUE_LINES: i64 = 1 << 20;

/// A configuration value that cannot work, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The stream name breaks Firehose's naming rule.
    #[error(
        "FIREHOSE_DELIVERY_STREAM={0:?} is not a delivery-stream name: use 1-64 characters of a-z A-Z 0-9 _ . -"
    )]
    StreamName(String),
    /// No delivery stream, and a build without the embedded local Firehose.
    #[error(
        "FIREHOSE_DELIVERY_STREAM is not set and this build has no embedded local Firehose: set it (or --delivery-stream) to the name of the delivery stream that receives the events"
    )]
    MissingStream,
    /// A number that must be positive is zero.
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    /// The event size limit is outside what an event can be.
    #[error(
        "INGEST_MAX_EVENT_BYTES ({0}) must be from 2 (the smallest event, {{}}) to 1023999 (a Firehose record of 1,024,000 bytes less its newline)"
    )]
    EventBytes(usize),
    /// The in-flight cap is smaller than one request body.
    #[error(
        "INGEST_MAX_INFLIGHT_BYTES ({inflight}) must be at least INGEST_MAX_BODY_BYTES ({body}) so one full request fits"
    )]
    InflightBelowBody {
        /// The in-flight cap.
        inflight: usize,
        /// The body cap.
        body: usize,
    },
    /// The request timeout would cut requests off in the middle of their retries.
    #[error(
        "INGEST_REQUEST_TIMEOUT ({timeout:?}) must be longer than INGEST_RETRY_BUDGET + INGEST_FIREHOSE_CALL_TIMEOUT + 1 s ({needed:?}), or requests run out of time while their records are still being retried"
    )]
    TimeoutBelowBudget {
        /// The request timeout.
        timeout: Duration,
        /// Budget plus one call plus the answer margin.
        needed: Duration,
    },
    /// The linger would hold a lone event past its request's deadline.
    #[error(
        "INGEST_LINGER ({linger:?}) must be shorter than INGEST_REQUEST_TIMEOUT - INGEST_FIREHOSE_CALL_TIMEOUT - 1 s ({window:?}), or a lone event is never sent in time"
    )]
    LingerTooLong {
        /// The linger.
        linger: Duration,
        /// The time a request's events have to get into a call.
        window: Duration,
    },
    /// The shutdown grace would cut off requests that are still within their timeout.
    #[error(
        "INGEST_SHUTDOWN_GRACE ({grace:?}) must be at least INGEST_REQUEST_TIMEOUT ({timeout:?}), so requests in flight at shutdown are answered before exit"
    )]
    GraceBelowTimeout {
        /// The grace period.
        grace: Duration,
        /// The request timeout.
        timeout: Duration,
    },
    /// More concurrent calls than the service can track.
    #[error(
        "INGEST_MAX_CONCURRENT_CALLS must be at most {MAX_CONCURRENT_CALLS}, got {0} (Firehose's quotas are reached with far fewer)"
    )]
    TooManyCalls(usize),
    /// A rate that is negative or not a number.
    #[error("INGEST_RATE_LIMIT_RPS must be a number >= 0, got {0}")]
    Rate(String),
    /// A burst without a rate: rate limiting is off, so the burst would be ignored in silence.
    #[error(
        "INGEST_RATE_LIMIT_BURST is {0} but INGEST_RATE_LIMIT_RPS is 0 (rate limiting off): set a rate per key, or leave the burst out"
    )]
    BurstWithoutRate(u32),
    /// Readiness checks so frequent that a few idle pods would exhaust the account's
    /// `DescribeDeliveryStream` limit.
    #[error(
        "INGEST_READINESS_INTERVAL must be at least 1s, got {0:?}: an idle pod calls DescribeDeliveryStream once per interval, and AWS allows 5 such calls per second for the whole account and region"
    )]
    ReadinessTooOften(Duration),
    /// The key file would be checked more than once a second.
    #[error(
        "INGEST_API_KEYS_RELOAD must be at least 1s, got {0:?}: each check reads the key file on a worker thread, and a rotation does not need to be seen sooner"
    )]
    KeysReloadTooOften(Duration),
}

impl Config {
    /// Parses the flags and the environment; exits with clap's message (and status 2) on a
    /// value that does not parse. The message names the environment variable as well as the
    /// flag, since in a pod the value almost always comes from the variable.
    #[must_use]
    pub fn load() -> Self {
        cli_env::parse()
    }

    /// The log settings, for [`crate::telemetry::init_tracing`].
    #[must_use]
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            filter: self.log.clone(),
            queue_lines: usize::try_from(self.log_queue_lines).unwrap_or(usize::MAX),
            when_full: self.log_when_full,
        }
    }

    /// Checks the values that clap cannot check alone.
    ///
    /// # Errors
    /// The first problem found, phrased as what to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(stream) = &self.delivery_stream
            && !is_valid_stream_name(stream)
        {
            return Err(ConfigError::StreamName(stream.clone()));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Zero("INGEST_MAX_BODY_BYTES"));
        }
        if self.max_concurrent_calls == 0 {
            return Err(ConfigError::Zero("INGEST_MAX_CONCURRENT_CALLS"));
        }
        if self.max_concurrent_calls > MAX_CONCURRENT_CALLS {
            return Err(ConfigError::TooManyCalls(self.max_concurrent_calls));
        }
        if self.max_events == 0 {
            return Err(ConfigError::Zero("INGEST_MAX_EVENTS"));
        }
        if !(2..=crate::validate::MAX_EVENT_BYTES).contains(&self.max_event_bytes) {
            return Err(ConfigError::EventBytes(self.max_event_bytes));
        }
        if self.max_inflight_bytes < self.max_body_bytes {
            return Err(ConfigError::InflightBelowBody {
                inflight: self.max_inflight_bytes,
                body: self.max_body_bytes,
            });
        }
        for (value, name) in [
            (self.call_timeout, "INGEST_FIREHOSE_CALL_TIMEOUT"),
            (self.request_timeout, "INGEST_REQUEST_TIMEOUT"),
            (self.api_keys_reload, "INGEST_API_KEYS_RELOAD"),
            (self.readiness_interval, "INGEST_READINESS_INTERVAL"),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.readiness_interval < MIN_READINESS_INTERVAL {
            return Err(ConfigError::ReadinessTooOften(self.readiness_interval));
        }
        if self.api_keys_reload < MIN_KEYS_RELOAD {
            return Err(ConfigError::KeysReloadTooOften(self.api_keys_reload));
        }
        if self.rate_limit_burst == Some(0) {
            return Err(ConfigError::Zero("INGEST_RATE_LIMIT_BURST"));
        }
        let needed = self.retry_budget + self.call_timeout + ANSWER_MARGIN;
        if self.request_timeout <= needed {
            return Err(ConfigError::TimeoutBelowBudget {
                timeout: self.request_timeout,
                needed,
            });
        }
        let window = self.send_window();
        if self.linger >= window {
            return Err(ConfigError::LingerTooLong {
                linger: self.linger,
                window,
            });
        }
        if self.shutdown_grace < self.request_timeout {
            return Err(ConfigError::GraceBelowTimeout {
                grace: self.shutdown_grace,
                timeout: self.request_timeout,
            });
        }
        if !(self.rate_limit_rps >= 0.0 && self.rate_limit_rps.is_finite()) {
            return Err(ConfigError::Rate(self.rate_limit_rps.to_string()));
        }
        if let Some(burst) = self.rate_limit_burst
            && self.rate_limit_rps == 0.0
        {
            return Err(ConfigError::BurstWithoutRate(burst));
        }
        Ok(())
    }

    /// How long after a request starts its events may still go into a `PutRecordBatch` call:
    /// the request timeout minus one call timeout minus [`ANSWER_MARGIN`], so that a call
    /// started at the last moment is answered before the request timeout.
    #[must_use]
    pub fn send_window(&self) -> Duration {
        self.request_timeout
            .saturating_sub(self.call_timeout)
            .saturating_sub(ANSWER_MARGIN)
    }

    /// The producer's share of the settings.
    #[must_use]
    pub fn producer(&self) -> ProducerConfig {
        ProducerConfig {
            linger: self.linger,
            retry_budget: self.retry_budget,
            call_timeout: self.call_timeout,
            max_inflight_bytes: self.max_inflight_bytes,
            max_concurrent_calls: self.max_concurrent_calls,
            ..ProducerConfig::default()
        }
    }
}

/// Most `PutRecordBatch` calls in flight that `INGEST_MAX_CONCURRENT_CALLS` may ask for. Each is
/// a permit of one semaphore, and hundreds already reach a stream's request quota.
pub const MAX_CONCURRENT_CALLS: usize = 4096;

/// Shortest `INGEST_READINESS_INTERVAL`. `DescribeDeliveryStream`, which an idle pod calls once
/// per interval, is limited to 5 calls per second per account and region, a hard limit
/// ([`crate::state::DESCRIBE_STREAM_LIMIT_DOC`]): below a second, two idle pods exhaust it.
pub const MIN_READINESS_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest `INGEST_API_KEYS_RELOAD`.
pub const MIN_KEYS_RELOAD: Duration = Duration::from_secs(1);

/// `RUST_LOG` as given, or `info` when it is blank.
#[allow(clippy::unnecessary_wraps)] // clap's value_parser signature
fn log_filter(text: &str) -> Result<String, String> {
    Ok(if text.trim().is_empty() {
        "info".to_owned()
    } else {
        text.to_owned()
    })
}

/// Longest duration any setting takes (7 days). Every duration is added to a clock reading
/// somewhere (deadlines, timers), and a sum past what the clock can hold would panic; no
/// setting of this service has a use for more.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Time kept between the last moment a request's events may be sent and its timeout, for the
/// call's answer to be turned into the response.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// A secret from a flag or variable, taken as it is; `Debug` shows it redacted.
fn parse_secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text.to_owned()))
}

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds, at most [`MAX_DURATION`].
///
/// # Errors
/// A message naming the accepted forms, or the longest duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use e.g. 250ms, 10s or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s or m"
            ));
        }
    };
    let duration = Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))?;
    if duration > MAX_DURATION {
        return Err(format!(
            "{text:?} is longer than the longest duration accepted, 7 days (10080m)"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["ingest"];
        argv.extend_from_slice(args);
        cli_env::parse_args_only(argv).expect("arguments parse")
    }

    #[test]
    fn a_value_that_does_not_parse_names_the_flag_and_the_variable() {
        let error = Config::try_parse_from(["ingest", "--linger", "abc"]).expect_err("bad value");
        let message = cli_env::name_the_variable::<Config>(error).to_string();
        assert!(
            message.contains("'--linger <LINGER> or INGEST_LINGER'"),
            "{message}"
        );
        assert!(message.contains("not a duration"), "{message}");
        // Errors about something else are left as they are.
        let error = Config::try_parse_from(["ingest", "--no-such-flag"]).expect_err("unknown");
        assert_eq!(
            cli_env::name_the_variable::<Config>(error).to_string(),
            Config::try_parse_from(["ingest", "--no-such-flag"])
                .expect_err("unknown")
                .to_string()
        );
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = parse(&[]);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.linger, Duration::from_millis(10));
        assert_eq!(c.retry_budget, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(25));
        assert_eq!(c.shutdown_grace, Duration::from_secs(25));
        assert_eq!(c.send_window(), Duration::from_secs(14));
        assert_eq!(c.log_queue_lines, 65_536);
        assert_eq!(c.log_when_full, WhenFull::Drop);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn log_queue_settings_parse_and_refuse_what_cannot_work() {
        let c = parse(&["--log-when-full", "block", "--log-queue-lines", "16"]);
        let log = c.log_settings();
        assert_eq!(log.when_full, WhenFull::Block);
        assert_eq!(log.queue_lines, 16);
        parse(&["--log-queue-lines", "1048576"]);
        for args in [
            ["--log-queue-lines", "0"],
            ["--log-queue-lines", "1048577"],
            ["--log-when-full", "wait"],
        ] {
            let error =
                Config::try_parse_from(["ingest", args[0], args[1]]).expect_err("refused at start");
            let message = cli_env::name_the_variable::<Config>(error).to_string();
            assert!(message.contains("INGEST_LOG_"), "{args:?}: {message}");
        }
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert_eq!(parse_duration("10080m"), Ok(MAX_DURATION));
        for huge in ["10081m", "99999999999", "18446744073709551616s"] {
            parse_duration(huge).expect_err(huge);
        }
        let err = parse_duration("10081m").expect_err("over 7 days");
        assert!(
            err.contains("longer than the longest duration accepted, 7 days"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let c = parse(&["--delivery-stream", "has space"]);
        assert!(matches!(c.validate(), Err(ConfigError::StreamName(_))));
        let c = parse(&["--max-body-bytes", "100", "--max-inflight-bytes", "10"]);
        let err = c.validate().expect_err("inflight below body");
        assert!(err.to_string().contains("INGEST_MAX_INFLIGHT_BYTES"));
        let c = parse(&["--retry-budget", "60s"]);
        let err = c.validate().expect_err("timeout below budget");
        assert!(err.to_string().contains("INGEST_REQUEST_TIMEOUT"));
        let c = parse(&["--retry-budget", "1s", "--linger", "14s"]);
        let err = c.validate().expect_err("linger past the send window");
        assert!(matches!(err, ConfigError::LingerTooLong { .. }), "{err}");
        assert!(err.to_string().contains("INGEST_LINGER"));
        let c = parse(&["--request-timeout", "40s"]);
        let err = c.validate().expect_err("grace below the request timeout");
        assert!(err.to_string().contains("INGEST_SHUTDOWN_GRACE"), "{err}");
        for flag in [
            "--api-keys-reload",
            "--readiness-interval",
            "--call-timeout",
        ] {
            let c = parse(&[flag, "0ms"]);
            assert!(matches!(c.validate(), Err(ConfigError::Zero(_))), "{flag}");
        }
        let c = parse(&["--local-endpoint-access-key", "nr-license-0123"]);
        let shown = format!("{c:?}");
        assert!(!shown.contains("nr-license-0123"), "{shown}");
        assert!(
            shown.contains("local_endpoint_access_key: Some("),
            "{shown}"
        );
        assert_eq!(
            parse(&["--readiness-interval", "999ms"]).validate(),
            Err(ConfigError::ReadinessTooOften(Duration::from_millis(999)))
        );
        parse(&["--readiness-interval", "1s"])
            .validate()
            .expect("one check a second is allowed");
        assert_eq!(
            parse(&["--api-keys-reload", "100ms"]).validate(),
            Err(ConfigError::KeysReloadTooOften(Duration::from_millis(100)))
        );
        parse(&["--api-keys-reload", "1s"])
            .validate()
            .expect("a look a second is allowed");
        assert_eq!(
            parse(&["--log", ""]).log,
            "info",
            "blank is the default, not off"
        );
        assert_eq!(parse(&["--log", "  "]).log, "info");
        assert_eq!(parse(&["--log", "ingest=debug"]).log, "ingest=debug");
        assert_eq!(
            parse(&["--max-events", "0"]).validate(),
            Err(ConfigError::Zero("INGEST_MAX_EVENTS"))
        );
        assert_eq!(parse(&[]).max_events, 100_000);
        assert_eq!(parse(&[]).max_event_bytes, 1_023_999);
        for bad in ["0", "1", "1024000"] {
            assert_eq!(
                parse(&["--max-event-bytes", bad]).validate(),
                Err(ConfigError::EventBytes(bad.parse().expect("a number"))),
                "{bad}"
            );
        }
        for good in ["2", "131072", "1023999"] {
            parse(&["--max-event-bytes", good])
                .validate()
                .expect("within an event's sizes");
        }
        assert_eq!(
            parse(&["--max-concurrent-calls", "0"]).validate(),
            Err(ConfigError::Zero("INGEST_MAX_CONCURRENT_CALLS"))
        );
        let err = parse(&["--max-concurrent-calls", "4097"])
            .validate()
            .expect_err("more calls than a semaphore should hold");
        assert!(err.to_string().contains("at most 4096"), "{err}");
        parse(&["--max-concurrent-calls", "4096"])
            .validate()
            .expect("the largest accepted");
        // The longest durations together: validation adds them, and must not overflow.
        let week = "10080m";
        let c = parse(&[
            "--retry-budget",
            week,
            "--call-timeout",
            week,
            "--request-timeout",
            week,
            "--shutdown-grace",
            week,
        ]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TimeoutBelowBudget { .. })
        ));
        let c = parse(&["--rate-limit-burst", "0"]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero("INGEST_RATE_LIMIT_BURST"))
        );
        // A burst without a rate would be ignored in silence.
        let c = parse(&["--rate-limit-burst", "20"]);
        assert_eq!(c.validate(), Err(ConfigError::BurstWithoutRate(20)));
        let c = parse(&["--rate-limit-burst", "20", "--rate-limit-rps", "5"]);
        assert_eq!(c.validate(), Ok(()));
        assert!(
            ConfigError::MissingStream
                .to_string()
                .contains("FIREHOSE_DELIVERY_STREAM")
        );
    }
}
