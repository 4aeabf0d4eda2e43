//! The progress bar: objects done out of objects selected, with the running counts.
//!
//! Shown only when stderr is a terminal. In a pipeline, a CI log or a Kubernetes Job the bar
//! would be noise (or escape codes in a log), so it is hidden there and the summary and the log
//! lines carry the same information.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that may be hidden.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar drawn on stderr if stderr is a terminal, else a hidden one.
    #[must_use]
    pub fn for_terminal() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} objects  {msg}",
            ) {
                bar.set_style(style);
            }
            Self { bar }
        } else {
            Self::hidden()
        }
    }

    /// A bar that draws nothing (tests, pipes).
    #[must_use]
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// Whether the bar draws nothing.
    #[must_use]
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Sets the number of objects (known once the source is listed).
    pub fn set_length(&self, objects: usize) {
        self.bar.set_length(objects as u64);
    }

    /// One more object handled.
    pub fn object_done(&self) {
        self.bar.inc(1);
    }

    /// Shows the running counts.
    pub fn counts(&self, sent: usize, skipped: usize, failed: usize) {
        if !self.bar.is_hidden() {
            self.bar
                .set_message(format!("sent {sent}  skipped {skipped}  failed {failed}"));
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_the_bar_is_hidden() {
        // nextest and CI capture stderr, so it is not a terminal there.
        if !std::io::stderr().is_terminal() {
            assert!(Progress::for_terminal().is_hidden());
        }
        let hidden = Progress::hidden();
        hidden.object_done();
        hidden.counts(1, 2, 3);
        hidden.finish();
        assert!(hidden.is_hidden());
    }
}
