//! `transform`: the Firehose transform Lambda, built as the custom-runtime `bootstrap`.
//!
//! Logs go to stdout as one JSON object per line. `RUST_LOG` filters them; without it, the
//! level Lambda's advanced logging controls set (`AWS_LAMBDA_LOG_LEVEL`), else `info`. A
//! `RUST_LOG` that does not parse is reported in the first line and ignored. Whatever the level,
//! `lambda_runtime`'s TRACE events are not written: one of them holds each raw event, every
//! record's data. The Lambda environment is checked first, so running it by hand says what is
//! missing.

use std::process::ExitCode;

use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let level =
        transform::lambda::lambda_log_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref());
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(error) => (EnvFilter::new(level), Some((directives, error))),
        },
        _ => (EnvFilter::new(level), None),
    };
    // Record payloads are never logged: lambda_runtime logs every raw event (all records' data)
    // at TRACE, so its TRACE events are left out whatever the level.
    let no_payloads = filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE && meta.target().starts_with("lambda_runtime"))
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_filter(filter.and(no_payloads)),
        )
        .init();
    if let Some((directives, error)) = bad_rust_log {
        tracing::warn!(rust_log = %directives, %error, using = level, "RUST_LOG is not a valid filter; it is ignored");
    }
    if let Err(error) = transform::lambda::check_env(|name| std::env::var(name).ok()) {
        tracing::error!(%error, "not started");
        return ExitCode::from(2);
    }
    match lambda_runtime::run(lambda_runtime::service_fn(transform::lambda::handle)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "runtime stopped");
            ExitCode::FAILURE
        }
    }
}
