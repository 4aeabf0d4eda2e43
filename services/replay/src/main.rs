//! The `replay` binary: parse flags, set up logging, wire Ctrl-C and SIGTERM, run, print the
//! summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use cli_env::stop::{Signals, Stage};
use replay::config::Config;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Exit status when the replay ran but did not deliver everything (re-run to resume).
const EXIT_INCOMPLETE: u8 = 2;
/// Exit status when the replay did not deliver everything and running it again as it is
/// cannot (a target error, objects that cannot be read): fix what the summary names first. A
/// retry loop that re-runs on 2 must stop on this.
const EXIT_NEEDS_FIX: u8 = 3;
/// Exit status for a bad command line, as for any other configuration error: not clap's 2,
/// which here means "incomplete, run it again" (a retry loop would re-run a typo for ever).
const EXIT_CONFIG: i32 = 1;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = cli_env::parse_or_exit(EXIT_CONFIG);
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // One listener for both stops, registered before the first: a second signal right after
    // the first is never missed. SIGTERM (a Kubernetes Job, systemd, `kill`) is Ctrl-C's twin:
    // without it the process died mid-batch, and that batch, perhaps delivered, was sent again
    // by the next run. The request or call in flight is waited for (a retry wait is not: the
    // targets end it, see `HttpTarget::with_cancel`, `StreamTarget::with_cancel`); a second signal
    // stops at once (exit status 130 or 143): the checkpoint has everything up to the last
    // batch, and that batch's records may have reached the target, so the next run may send
    // them again.
    let cancel = CancellationToken::new();
    match Signals::install() {
        Ok(signals) => signals.escalate(
            vec![Stage {
                begins: cancel.clone(),
                message: "stopping after the batch in flight (Ctrl-C or SIGTERM again to stop now)",
            }],
            "stopping now; the batch in flight may be sent again by the next run",
        ),
        // The process then stops as it would without handlers.
        Err(e) => tracing::warn!("cannot install the Ctrl-C/SIGTERM handlers: {e}"),
    }

    let mut stdout = std::io::stdout();
    match replay::run(&config, &mut stdout, &cancel).await {
        Ok(summary) => {
            // The summary is the command's output; a closed stdout is not worth a panic.
            let _ = write!(stdout, "{summary}");
            let _ = stdout.flush();
            if summary.complete() {
                ExitCode::SUCCESS
            } else if summary.needs_fix() {
                ExitCode::from(EXIT_NEEDS_FIX)
            } else {
                ExitCode::from(EXIT_INCOMPLETE)
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            let _ = writeln!(std::io::stderr(), "replay: {e}");
            ExitCode::FAILURE
        }
    }
}
