//! How the binaries stop: the signals that ask them to, escalation on repeated signals, and an
//! exit that does not wait for ever.
//!
//! All three binaries (`ingest`, `firehose-local`, `replay`) stop the same way, so an operator
//! learns it once. SIGTERM (Kubernetes, systemd, `kill`) and SIGINT (Ctrl-C) are one stream,
//! registered once at start, before anything slow, so that a signal during start-up is not the
//! default (killing) and none is missed between the first and the next. The first signal
//! starts a graceful stop; each further one cuts a later stage short ([`Signals::escalate`]);
//! the one after the last exits at once with the status a process killed by that signal has
//! (128 + its number), as a shell reports it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A stop signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// For the log: `SIGTERM`, or `SIGINT (Ctrl-C)`.
    pub name: &'static str,
    /// The exit status of a process this signal kills (128 + its number).
    pub exit_status: u8,
}

/// SIGTERM (128 + 15).
pub const SIGTERM: Signal = Signal {
    name: "SIGTERM",
    exit_status: 143,
};

/// SIGINT (128 + 2).
pub const SIGINT: Signal = Signal {
    name: "SIGINT (Ctrl-C)",
    exit_status: 130,
};

/// SIGTERM and SIGINT, registered. (Elsewhere than on Unix, Ctrl-C only.)
#[derive(Debug)]
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

/// One stage of a stop: the token [`Signals::escalate`] cancels at its signal, and the warning
/// it logs then (what happens now, and what the next signal would do).
#[derive(Debug, Clone)]
pub struct Stage {
    /// Cancelled when the stage's signal arrives.
    pub begins: CancellationToken,
    /// Logged, as a warning with the signal's name, when it does.
    pub message: &'static str,
}

impl Signals {
    /// Registers the handlers. Call it inside a tokio runtime, first thing: from then on the
    /// signals no longer kill the process.
    ///
    /// # Errors
    /// When the runtime cannot register a handler (no signal driver: a runtime built without
    /// `enable_io`).
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next signal; `None` once none can come any more (the runtime is shutting down).
    pub async fn next(&mut self) -> Option<Signal> {
        #[cfg(unix)]
        {
            tokio::select! {
                got = self.term.recv() => got.map(|()| SIGTERM),
                got = self.int.recv() => got.map(|()| SIGINT),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| SIGINT)
        }
    }

    /// Listens from now on, on a task of its own: the first signal begins `stages[0]`, the
    /// second `stages[1]`, and so on, each with its warning; the signal after the last stage
    /// logs `exit_message` as an error and exits the process at once with that signal's
    /// status. Must be called inside a tokio runtime.
    pub fn escalate(mut self, stages: Vec<Stage>, exit_message: &'static str) {
        tokio::spawn(async move {
            for stage in stages {
                let Some(signal) = self.next().await else {
                    return;
                };
                tracing::warn!(signal = signal.name, "{}", stage.message);
                stage.begins.cancel();
            }
            if let Some(signal) = self.next().await {
                tracing::error!(signal = signal.name, "{exit_message}");
                std::process::exit(i32::from(signal.exit_status));
            }
        });
    }
}

/// How long [`leave_blocking_tasks`] waits for blocking tasks still running.
pub const LEFTOVER_BLOCKING_WAIT: Duration = Duration::from_secs(2);

/// Shuts `runtime` down once `main`'s work is done, without waiting for ever. Dropping a
/// runtime waits for every blocking task, and a service stops waiting for some on purpose: a
/// backup or destination write on a hung disk past the shutdown cutoff, an in-process
/// transform past its timeout. Those were already given up on and reported; the process must
/// still exit. Tasks still running after [`LEFTOVER_BLOCKING_WAIT`] are left to the exit.
pub fn leave_blocking_tasks(runtime: tokio::runtime::Runtime) {
    runtime.shutdown_timeout(LEFTOVER_BLOCKING_WAIT);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Sends `signal` (`TERM`, `INT`) to this very process, as `kill` would.
    #[cfg(unix)]
    fn send(signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(std::process::id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The signals arrive named, with the status a shell reports for them, and each one begins
    /// the next stage, in order. (One test: the signals go to the whole process, so a second
    /// test raising them at the same time would see them too.)
    #[cfg(unix)]
    #[tokio::test]
    async fn signals_are_named_and_begin_the_stages_in_turn() {
        let mut signals = Signals::install().unwrap();
        send("TERM");
        assert_eq!(signals.next().await, Some(SIGTERM));
        assert_eq!(SIGTERM.exit_status, 128 + 15);
        send("INT");
        assert_eq!(signals.next().await, Some(SIGINT));
        assert_eq!(SIGINT.exit_status, 128 + 2);

        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        let stage = |begins: &CancellationToken| Stage {
            begins: begins.clone(),
            message: "test stage",
        };
        signals.escalate(vec![stage(&first), stage(&second)], "unreachable here");
        send("TERM");
        tokio::time::timeout(Duration::from_secs(30), first.cancelled())
            .await
            .expect("the first signal begins the first stage");
        assert!(!second.is_cancelled(), "one signal, one stage");
        send("INT");
        tokio::time::timeout(Duration::from_secs(30), second.cancelled())
            .await
            .expect("the second signal begins the second stage");
        // One more signal would exit this test process: that step is tested through a binary
        // (`replay`'s, whose second signal exits: tests/it/binary.rs).
    }

    /// A blocking task that never ends by itself (a write to a hung disk) does not keep the
    /// exit waiting: dropping the runtime instead would wait until the task ends.
    #[test]
    fn the_exit_leaves_a_blocking_task_it_stopped_waiting_for() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (release, hung) = mpsc::channel::<()>();
        runtime.block_on(async move {
            drop(tokio::task::spawn_blocking(move || hung.recv()));
        });
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            leave_blocking_tasks(runtime);
            let _ = done.send(());
        });
        let result = exited.recv_timeout(Duration::from_secs(30));
        // Let the "hung" task end either way, so a failure does not leave the test hanging.
        drop(release);
        assert!(result.is_ok(), "the exit waited for the blocking task");
    }
}
