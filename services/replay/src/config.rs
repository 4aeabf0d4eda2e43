//! The command line: every flag, its environment variable, its default, and the checks that
//! make a bad invocation fail before anything is read or sent.
//!
//! The API key for `--to-http` is read into a [`SecretString`], so neither `Debug` output nor a
//! log line can show it.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use firehose_formats::limits::is_valid_stream_name;
use secrecy::SecretString;

use crate::layout::{HourBound, ObjectKind};
use crate::source::Location;

/// Replays the Amazon Data Firehose S3 backup into a delivery stream or a front door.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "replay",
    version,
    about = "Replay the Firehose S3 backup (processing-failed, http-endpoint-failed, AllData) into a delivery stream or a front door",
    after_help = "Exit status: 0 when every selected record was delivered (unreadable lines are listed, not fatal); 2 when some were not (re-run the same command to resume); 3 when some were not and running the same command again cannot finish (fix what the summary names first; a retry loop must stop on 3); 130 (143) after a second Ctrl-C (SIGTERM); 1 on a configuration or I/O error before anything was sent."
)]
pub struct Config {
    /// Where the backup is: `s3://BUCKET/PREFIX/` or a local directory (keys are the paths
    /// below it, e.g. what firehose-local writes).
    #[arg(value_name = "SOURCE", env = "REPLAY_SOURCE")]
    pub source: String,

    /// Send with PutRecordBatch to this delivery stream, through the front door's producer.
    #[arg(
        long,
        env = "REPLAY_TO_STREAM",
        value_name = "STREAM",
        conflicts_with = "to_http"
    )]
    pub to_stream: Option<String>,

    /// POST the events as NDJSON to a front door, e.g. `http://ingest:8080/v1/events` (a URL
    /// with no path gets `/v1/events`).
    #[arg(long, env = "REPLAY_TO_HTTP", value_name = "URL")]
    pub to_http: Option<reqwest::Url>,

    /// API key for `--to-http`, sent as `Authorization: Bearer`. Never printed.
    #[arg(long, env = "REPLAY_HTTP_API_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub http_api_key: Option<SecretString>,

    /// Only these objects (repeatable): `all-data` for the `AllData` backup (every record the
    /// stream received), `processing-failed` or `http-endpoint-failed` for that error output.
    /// Without it (and without --key) every object under the source is read, unless the source
    /// holds both `AllData` backup objects and error output: an `AllData` backup already holds
    /// the failed records too, so such a replay is refused, before anything is sent, until you
    /// choose.
    #[arg(long = "error-type", value_enum, value_name = "TYPE")]
    pub error_types: Vec<ErrorTypeArg>,

    /// Only the object with this key (repeat for several), as the summary and the log print it,
    /// e.g. an object whose records the front door refused, to replay it with `--to-stream`
    /// (and another `--checkpoint` file). On S3 the whole key or the path below the source's
    /// prefix; each named key is looked up (`HeadObject`) instead of listing the prefix. A key
    /// with no object stops the run before anything is sent.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,

    /// First hour to replay, UTC, from the `YYYY/MM/dd/HH/` layout (or the object name):
    /// `2026-11-25T09`, `2026/11/25/09`, or a date for its first hour.
    #[arg(long, value_name = "HOUR")]
    pub since: Option<HourBound>,

    /// Last hour to replay (inclusive), same forms; a date alone means its last hour.
    #[arg(long, value_name = "HOUR")]
    pub until: Option<HourBound>,

    /// Send events whose `timestamp` is more than 47 hours old with that member renamed
    /// `original_timestamp`: New Relic drops log records whose timestamp is more than 48 hours
    /// old (an hour is left for the way through Firehose), and keeps these, at their arrival
    /// time. Without it they are counted in the summary, and sent as
    /// they are.
    #[arg(long, env = "REPLAY_RESTAMP")]
    pub restamp: bool,

    /// Read and count everything, print the first `--show` items, send nothing, leave the
    /// checkpoint unchanged. Needs no target; without one, an existing checkpoint file is
    /// refused (naming its target, to pass for what a re-run would still send).
    #[arg(long)]
    pub dry_run: bool,

    /// In a dry run: how many items to print.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub show: usize,

    /// Send at most this many items (records; events for `--to-http`) per second. Default: no
    /// limit.
    #[arg(long, env = "REPLAY_RATE", value_name = "PER_SECOND")]
    pub rate: Option<u32>,

    /// Checkpoint file: finished objects and the progress of unfinished ones. Re-running with
    /// the same file resumes and never resends a finished object. One file per source and
    /// target: a file written for another one is refused.
    #[arg(
        long,
        env = "REPLAY_CHECKPOINT",
        default_value = "replay-checkpoint.json",
        value_name = "FILE"
    )]
    pub checkpoint: PathBuf,

    /// AWS endpoint override for S3 and Firehose (S3-compatible servers, moto, firehose-local).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// AWS region. Default: the standard chain (AWS_REGION, profile, IMDS).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// The backup bucket's region, when it is not the stream's (`--region`): the S3 calls go
    /// there, the Firehose calls stay in `--region`.
    #[arg(long, env = "REPLAY_SOURCE_REGION", value_name = "REGION")]
    pub source_region: Option<String>,

    /// Address S3 buckets by path (`http://host/bucket/key`), as S3-compatible servers and moto
    /// need.
    #[arg(long, env = "REPLAY_S3_FORCE_PATH_STYLE")]
    pub s3_force_path_style: bool,

    /// `--to-stream`: how long, in seconds, the producer keeps retrying records Firehose refused
    /// before the replay stops (to be resumed later).
    #[arg(
        long,
        env = "REPLAY_RETRY_BUDGET_SECS",
        default_value_t = 60,
        value_name = "SECONDS",
        // Added to the clock for every batch; a day is more than any outage worth waiting out.
        value_parser = clap::value_parser!(u64).range(..=86_400)
    )]
    pub retry_budget_secs: u64,

    /// `--to-http`: attempts per batch before the replay stops (to be resumed later).
    #[arg(
        long,
        env = "REPLAY_HTTP_MAX_ATTEMPTS",
        default_value_t = 8,
        value_name = "N"
    )]
    pub http_max_attempts: u32,

    /// `--to-http`: events per POST.
    #[arg(long, env = "REPLAY_HTTP_BATCH", default_value_t = crate::http::DEFAULT_EVENTS_PER_REQUEST, value_name = "N")]
    pub http_batch: usize,

    /// Log filter (`tracing` env-filter syntax), e.g. `info` or `replay=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_name = "FILTER")]
    pub log: String,
}

/// The kinds of object `--error-type` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ErrorTypeArg {
    /// The `AllData` backup: every record the stream received, delivered or not.
    AllData,
    /// Records the transform Lambda failed (`rawData` is the original input).
    ProcessingFailed,
    /// Records New Relic (the HTTP endpoint) did not accept in time.
    HttpEndpointFailed,
}

impl From<ErrorTypeArg> for ObjectKind {
    fn from(arg: ErrorTypeArg) -> Self {
        match arg {
            ErrorTypeArg::AllData => Self::Raw,
            ErrorTypeArg::ProcessingFailed => Self::ProcessingFailed,
            ErrorTypeArg::HttpEndpointFailed => Self::HttpEndpointFailed,
        }
    }
}

/// Where the replay sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChoice {
    /// A delivery stream.
    Stream(String),
    /// A front door.
    Http(reqwest::Url),
    /// Nothing (dry run without a target): records are shown as they are.
    None,
}

/// A flag combination or value that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither target, and not a dry run.
    #[error("say where to send: --to-stream STREAM or --to-http URL (or --dry-run to only look)")]
    NoTarget,
    /// Bad stream name.
    #[error(
        "--to-stream {0:?} is not a delivery-stream name: use 1-64 characters of a-z A-Z 0-9 _ . -"
    )]
    StreamName(String),
    /// Bad source.
    #[error("SOURCE: {0}")]
    Source(String),
    /// A local source that is not a directory.
    #[error("SOURCE {0} is not a directory (write s3://BUCKET/PREFIX/ for S3)")]
    NotADirectory(PathBuf),
    /// `--since` after `--until`.
    #[error("--since {since} is after --until {until}")]
    EmptyRange {
        /// First hour.
        since: String,
        /// Last hour.
        until: String,
    },
    /// A number that must be positive is zero.
    #[error("{0} must be greater than 0 (omit --rate for no limit)")]
    Zero(&'static str),
    /// The `--to-http` URL is not http(s).
    #[error("--to-http {0} must be an http:// or https:// URL")]
    HttpScheme(String),
}

impl Config {
    /// Checks the flags together; see [`ConfigError`] for what is refused.
    ///
    /// # Errors
    /// The first problem found, worded as what to change.
    pub fn validate(&self) -> Result<(Location, TargetChoice), ConfigError> {
        let location = Location::parse(&self.source).map_err(ConfigError::Source)?;
        if let Location::Dir(path) = &location
            && !path.is_dir()
        {
            return Err(ConfigError::NotADirectory(path.clone()));
        }
        let target = match (&self.to_stream, &self.to_http) {
            (Some(stream), _) => {
                if !is_valid_stream_name(stream) {
                    return Err(ConfigError::StreamName(stream.clone()));
                }
                TargetChoice::Stream(stream.clone())
            }
            (None, Some(url)) => {
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ConfigError::HttpScheme(url.to_string()));
                }
                TargetChoice::Http(url.clone())
            }
            (None, None) if self.dry_run => TargetChoice::None,
            (None, None) => return Err(ConfigError::NoTarget),
        };
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since.as_start() > until.as_end()
        {
            return Err(ConfigError::EmptyRange {
                since: since.as_start().to_string(),
                until: until.as_end().to_string(),
            });
        }
        if self.rate == Some(0) {
            return Err(ConfigError::Zero("--rate"));
        }
        if self.http_max_attempts == 0 {
            return Err(ConfigError::Zero("--http-max-attempts"));
        }
        if self.http_batch == 0 {
            return Err(ConfigError::Zero("--http-batch"));
        }
        if self.retry_budget_secs == 0 {
            return Err(ConfigError::Zero("--retry-budget-secs"));
        }
        Ok((location, target))
    }
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("the API key is empty".to_owned());
    }
    Ok(SecretString::from(value.trim().to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        cli_env::parse_args_only(std::iter::once("replay").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn a_target_or_dry_run_is_required() {
        let err = parse(&["s3://b/p/"]).validate().unwrap_err();
        assert_eq!(err, ConfigError::NoTarget);
        assert_eq!(
            parse(&["s3://b/p/", "--dry-run"]).validate().unwrap().1,
            TargetChoice::None
        );
        assert_eq!(
            parse(&["s3://b/p/", "--to-stream", "events"])
                .validate()
                .unwrap()
                .1,
            TargetChoice::Stream("events".into())
        );
    }

    #[test]
    fn both_targets_at_once_are_refused_by_the_parser() {
        let args = [
            "replay",
            "s3://b/",
            "--to-stream",
            "s",
            "--to-http",
            "http://h/",
        ];
        let err = Config::try_parse_from(args).expect_err("two targets");
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::ArgumentConflict,
            "{err}"
        );
    }

    #[test]
    fn a_retry_budget_past_a_day_is_refused_by_the_parser() {
        let args = [
            "replay",
            "s3://b/",
            "--to-stream",
            "s",
            "--retry-budget-secs",
        ];
        let with = |v: &'static str| Config::try_parse_from(args.iter().copied().chain([v]));
        assert!(with("86400").is_ok());
        let err = with("86401").unwrap_err().to_string();
        assert!(err.contains("86401") && err.contains("0..=86400"), "{err}");
        assert!(with("18446744073709551615").is_err());
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        let err = parse(&["s3://b/", "--to-stream", "bad name"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("1-64 characters"), "{err}");
        let err = parse(&["/definitely/not/here", "--dry-run"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = parse(&[
            "s3://b/",
            "--dry-run",
            "--since",
            "2026-11-25T10",
            "--until",
            "2026-11-25T09",
        ])
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("after --until"), "{err}");
        let err = parse(&["s3://b/", "--dry-run", "--rate", "0"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--rate"), "{err}");
        let err = parse(&["s3://b/", "--to-http", "ftp://h/"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let err = Config::try_parse_from(["replay", "s3://b/", "--since", "yesterday"])
            .expect_err("not a time");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
    }

    #[test]
    fn error_type_takes_all_data_and_repeats() {
        let config = parse(&[
            "s3://b/",
            "--dry-run",
            "--error-type",
            "all-data",
            "--error-type",
            "http-endpoint-failed",
            "--error-type",
            "processing-failed",
        ]);
        let kinds: Vec<ObjectKind> = config.error_types.iter().map(|&t| t.into()).collect();
        assert_eq!(
            kinds,
            [
                ObjectKind::Raw,
                ObjectKind::HttpEndpointFailed,
                ObjectKind::ProcessingFailed
            ]
        );
        let err = Config::try_parse_from(["replay", "s3://b/", "--error-type", "alldata"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("all-data"), "names the values: {err}");
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let config = parse(&[
            "s3://b/",
            "--to-http",
            "http://h/",
            "--http-api-key",
            "s3cr3t-key",
        ]);
        assert!(!format!("{config:?}").contains("s3cr3t-key"));
    }
}
