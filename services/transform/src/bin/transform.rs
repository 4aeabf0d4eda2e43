//! `transform`: the Firehose transform Lambda, built as the custom-runtime `bootstrap`.
//!
//! Logs go to stdout as one JSON object per line (`RUST_LOG` filters, default `info`). The
//! Lambda environment is checked first, so running it by hand says what is missing.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
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
