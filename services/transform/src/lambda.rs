//! The `lambda_runtime` glue behind the `transform` binary (feature `lambda`).
//!
//! The handler takes the event as raw JSON (`Box<RawValue>`, no typed tree) and returns the
//! response as raw JSON, so no tree is built and the work happens in
//! [`crate::process_event_with_stats`]. The runtime's serde steps are not free, though:
//! `lambda_runtime` reads the body into a `RawValue` with `serde_json::from_slice`, which checks
//! the whole event's grammar and UTF-8 and copies it, and the response is checked again by
//! `RawValue::from_string` and copied once more on the way out: a few passes over at most 6 MB,
//! milliseconds per invocation. (The README's throughput figures are `process_event` alone.)
//! An invocation body that is not JSON at all is refused by `lambda_runtime` before the handler
//! runs, with its own `errorType`; Firehose never sends one. The environment is checked before
//! the runtime starts,
//! because `lambda_runtime` panics on a missing variable instead of saying what to fix.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::value::RawValue;

use crate::event::{InvocationError, process_event_with_stats};
use crate::telemetry::{Emf, log_invocation};

/// The metrics settings, read from the environment at the first invocation.
static EMF: std::sync::OnceLock<Option<Emf>> = std::sync::OnceLock::new();

/// Environment variables the Lambda service sets and `lambda_runtime` requires.
///
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime>
pub const REQUIRED_ENV: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// The runtime environment is not a Lambda one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// A required variable is unset.
    #[error(
        "{0} is not set: this binary is a Lambda custom runtime (bootstrap); run it in Lambda, \
         under `cargo lambda watch`, or set the Lambda runtime variables ({vars})",
        vars = REQUIRED_ENV.join(", ")
    )]
    Missing(&'static str),
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` is not a number of megabytes.
    #[error("AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a whole number of MB, got {0:?}")]
    BadMemorySize(String),
}

/// Checks the variables `lambda_runtime` would otherwise panic on. `get` reads one variable.
///
/// # Errors
///
/// The first problem found, naming the variable to fix.
pub fn check_env(get: impl Fn(&str) -> Option<String>) -> Result<(), EnvError> {
    for name in REQUIRED_ENV {
        if get(name).is_none_or(|v| v.is_empty()) {
            return Err(EnvError::Missing(name));
        }
    }
    let memory = get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(EnvError::BadMemorySize(memory));
    }
    Ok(())
}

/// The `tracing` level for Lambda's advanced logging controls: Lambda sets `AWS_LAMBDA_LOG_LEVEL`
/// (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`) when a function's application log
/// level is configured, and expects a custom runtime to honour it
/// (<https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html>).
/// `FATAL` has no `tracing` level of its own and maps to `error`; unset or unknown: `info`.
/// `RUST_LOG`, when set to a valid filter, takes precedence (it can name targets).
#[must_use]
pub fn lambda_log_level(value: Option<&str>) -> &'static str {
    match value.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
        Some("TRACE") => "trace",
        Some("DEBUG") => "debug",
        Some("WARN") => "warn",
        Some("ERROR" | "FATAL") => "error",
        _ => "info",
    }
}

/// Maps an invocation error to the Runtime API's error body (`errorType`, `errorMessage`).
impl From<InvocationError> for Diagnostic {
    fn from(error: InvocationError) -> Self {
        let error_type = match &error {
            InvocationError::NotFirehoseEvent { .. } => "NotFirehoseEvent",
            InvocationError::ResponseOverBudget { .. } => "ResponseOverBudget",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// The Lambda handler: raw Firehose event in, raw response out.
///
/// # Errors
///
/// A [`Diagnostic`] (posted to `/invocation/{id}/error`) when the event is not a Firehose event.
pub async fn handle(event: LambdaEvent<Box<RawValue>>) -> Result<Box<RawValue>, Diagnostic> {
    let started = Instant::now();
    let request_id = event.context.request_id;
    let (response, stats) = process_event_with_stats(event.payload.get().as_bytes(), now_ms())
        .inspect_err(
            |error| tracing::error!(request_id = %request_id, %error, "invocation failed"),
        )?;
    // Built before the invocation is logged as done: an answer that cannot be sent is an
    // invocation that failed, not one whose records went out.
    let response = String::from_utf8(response)
        .map_err(|_| internal("response is not UTF-8"))
        .and_then(|r| RawValue::from_string(r).map_err(|_| internal("response is not valid JSON")))
        .inspect_err(|error| {
            tracing::error!(request_id = %request_id, error = %error.error_message, "invocation failed");
        })?;
    log_invocation(&request_id, &stats, started.elapsed());
    if let Some(emf) = EMF.get_or_init(|| Emf::from_env(|name| std::env::var(name).ok())) {
        // A line of its own on stdout, beside the log's: CloudWatch Logs reads it as metrics.
        let mut line = emf.line(&stats, now_ms());
        line.push('\n');
        if let Err(error) =
            std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes())
        {
            tracing::warn!(%error, "could not write the metrics line");
        }
    }
    Ok(response)
}

/// An error that would be a bug in this crate; reported rather than panicking.
fn internal(message: &str) -> Diagnostic {
    Diagnostic {
        error_type: "InternalError".to_owned(),
        error_message: message.to_owned(),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: [(&str, &str); 4] = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "transform"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ];

    #[test]
    fn lambdas_log_level_becomes_a_tracing_level() {
        for (value, level) in [
            (Some("DEBUG"), "debug"),
            (Some("trace"), "trace"),
            (Some(" WARN "), "warn"),
            (Some("ERROR"), "error"),
            (Some("FATAL"), "error"),
            (Some("INFO"), "info"),
            (Some("verbose"), "info"),
            (None, "info"),
        ] {
            assert_eq!(lambda_log_level(value), level, "{value:?}");
        }
    }

    #[test]
    fn a_lambda_environment_passes() {
        assert_eq!(check_env(env(&FULL)), Ok(()));
    }

    #[test]
    fn each_missing_variable_is_named() {
        for (skip, (name, _)) in FULL.iter().enumerate() {
            let partial: Vec<_> = FULL
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let error = check_env(env(&partial)).expect_err("a variable is missing");
            assert_eq!(error, EnvError::Missing(name));
            assert!(error.to_string().starts_with(name));
        }
    }

    #[test]
    fn memory_size_must_be_a_number() {
        let mut vars = FULL.to_vec();
        vars[2].1 = "lots";
        assert_eq!(
            check_env(env(&vars)),
            Err(EnvError::BadMemorySize("lots".to_owned()))
        );
    }

    #[test]
    fn invocation_errors_map_to_named_error_types() {
        let diagnostic = Diagnostic::from(InvocationError::NotFirehoseEvent {
            detail: "x".to_owned(),
        });
        assert_eq!(diagnostic.error_type, "NotFirehoseEvent");
        assert!(diagnostic.error_message.contains("`records` array"));
    }
}
