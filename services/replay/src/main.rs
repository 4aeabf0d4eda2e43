//! The `replay` binary: parse flags, set up logging, wire Ctrl-C and SIGTERM, run, print the
//! summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

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
/// Exit status after a second Ctrl-C (128 + SIGINT, as a shell reports it).
const EXIT_INTERRUPTED: u8 = 130;
/// Exit status after a second signal that was SIGTERM (128 + SIGTERM).
const EXIT_TERMINATED: u8 = 143;

/// The stop signals: Ctrl-C (SIGINT), and SIGTERM on Unix.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers; `None` when they cannot be (the process then stops as it would
    /// without them).
    fn install() -> Option<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Some(Self {
                int: signal(SignalKind::interrupt()).ok()?,
                term: signal(SignalKind::terminate()).ok()?,
            })
        }
        #[cfg(not(unix))]
        {
            Some(Self {})
        }
    }

    /// The next signal: its name, and the exit status of a process it stops at once. `None`
    /// once none can come any more.
    async fn next(&mut self) -> Option<(&'static str, u8)> {
        const CTRL_C: (&str, u8) = ("interrupted (Ctrl-C)", EXIT_INTERRUPTED);
        #[cfg(unix)]
        {
            tokio::select! {
                got = self.int.recv() => got.map(|()| CTRL_C),
                got = self.term.recv() => got.map(|()| ("SIGTERM", EXIT_TERMINATED)),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| CTRL_C)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = cli_env::parse_or_exit(EXIT_CONFIG);
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        // One listener per signal for both stops, registered before the first: a second signal
        // right after the first is never missed. SIGTERM (a Kubernetes Job, systemd, `kill`)
        // is Ctrl-C's twin: without it the process died mid-batch, and that batch, perhaps
        // delivered, was sent again by the next run.
        let Some(mut signals) = Signals::install() else {
            return;
        };
        if let Some((name, _)) = signals.next().await {
            tracing::warn!(
                "{name}: stopping after the batch in flight (Ctrl-C or SIGTERM again to stop now)"
            );
            on_signal.cancel();
        }
        // The batch in flight can take up to the retry budget. A second signal stops at once:
        // the checkpoint has everything up to the last batch, and that batch's records may
        // have reached the target, so the next run may send them again.
        if let Some((name, code)) = signals.next().await {
            tracing::warn!(
                "{name} again: stopping now; the batch in flight may be sent again by the next run"
            );
            std::process::exit(i32::from(code));
        }
    });

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
