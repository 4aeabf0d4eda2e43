//! The counts a replay reports at the end, and how they read.
//!
//! Records are what the objects hold; items are what the target takes (a record for
//! `--to-stream`, one event line of a record for `--to-http`). Every item ends up in exactly one
//! of `sent`, `rejected`, `unsent` or `already_sent`, and every line that could not be read is in
//! `skipped`, so an operator can check that nothing went missing:
//! `items + records the target cannot take = sent + rejected + unsent + already_sent`.
//!
//! Problems (unreadable lines, refused items, unreadable objects) are logged as they happen and
//! the first [`MAX_REPORTED_PROBLEMS`] are kept here, with object key and line number, for the
//! end-of-run report.

use std::fmt;

use serde::Serialize;

/// How many problems the summary keeps (all of them are logged).
pub const MAX_REPORTED_PROBLEMS: usize = 1000;

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A line that could not be read; skipped.
    Unreadable,
    /// A record or item the target cannot take, or refused for good.
    Rejected,
    /// An object that could not be fetched or decompressed.
    ObjectFailed,
}

/// One reported problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// Object key.
    pub key: String,
    /// 1-based line in the (decompressed) object, when the problem is one line's.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects selected by the filters.
    pub objects: usize,
    /// Objects finished in this run.
    pub objects_finished: usize,
    /// Objects skipped because the checkpoint says an earlier run finished them.
    pub objects_already_done: usize,
    /// Objects that could not be fetched or decompressed (reported; re-run to retry).
    pub objects_failed: usize,
    /// Objects listed but left out by the filters.
    pub objects_filtered_out: usize,
    /// Selected objects left out because the checkpoint's first run did not select them
    /// ([`crate::checkpoint::Checkpoint::knows`]).
    pub objects_new: usize,
    /// The keys of the first [`crate::replay::MAX_LISTED_LEFT_OUT`] of those.
    pub left_out: Vec<String>,
    /// Objects the checkpoint's first run did not select but taken anyway: filed under an hour
    /// before that run began, so not this replay's records
    /// ([`crate::checkpoint::Checkpoint::filed_before_first_run`]).
    pub objects_late: usize,
    /// Records read from the objects this run opened.
    pub records: usize,
    /// Items made from those records (records, or event lines for `--to-http`).
    pub items: usize,
    /// Items (records, or events for `--to-http`) delivered, or that would be in a dry run.
    pub sent: usize,
    /// Lines that could not be read (reported with key and line number).
    pub skipped: usize,
    /// Items the target refused for good, or records it cannot take (reported).
    pub rejected: usize,
    /// Items not delivered because the target stayed unavailable; a re-run sends them.
    pub unsent: usize,
    /// Items of a partly sent object that an earlier run had delivered.
    pub already_sent: usize,
    /// Items this run sent (or would send, in a dry run) holding an event whose `timestamp`
    /// is more than 47 hours old, as sent: New Relic drops those once 48 hours old
    /// ([`crate::age`]).
    pub too_old_for_new_relic: usize,
    /// Items sent (or to send) with an event's old `timestamp` renamed (`--restamp`,
    /// [`crate::age::restamp`]).
    pub restamped: usize,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stop>,
    /// Objects among `objects_failed` that cannot be read as they are (ZIP, corrupt GZIP, no
    /// readable line, over the size cap, …): a re-run reads them the same way.
    pub objects_unreadable: usize,
    /// Whether nothing was sent because of `--dry-run`.
    pub dry_run: bool,
    /// The first [`MAX_REPORTED_PROBLEMS`] problems.
    pub problems: Vec<Problem>,
    /// Problems not kept in `problems` (they are in the log).
    pub problems_not_kept: usize,
    /// The checkpoint's problems file, where this run and earlier ones appended every problem
    /// (`checkpoint::problems_path`), when there is one.
    pub problems_file: Option<String>,
}

/// Why a run stopped before it got through everything selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stop {
    /// What stopped it, for the summary and the log.
    pub reason: String,
    /// Whether it was a target error (a wrong stream, a refused key) or the checkpoint's own
    /// files: every call would fail the same way, so running again as it is cannot get past it.
    pub needs_fix: bool,
}

impl Summary {
    /// `failed` in the words: items that did not get delivered this run.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.rejected + self.unsent
    }

    /// Keeps a problem for the report (up to [`MAX_REPORTED_PROBLEMS`]).
    pub fn report(&mut self, problem: Problem) {
        if self.problems.len() < MAX_REPORTED_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.problems_not_kept += 1;
        }
    }

    /// Records that the run stopped early, and whether running it again as it is would stop the
    /// same way ([`Stop::needs_fix`]).
    pub fn stop(&mut self, reason: String, needs_fix: bool) {
        self.stopped = Some(Stop { reason, needs_fix });
    }

    /// What stopped the run early, if something did.
    #[must_use]
    pub fn stop_reason(&self) -> Option<&str> {
        self.stopped.as_ref().map(|stop| stop.reason.as_str())
    }

    /// Whether running the same command again, as it is, cannot complete the replay
    /// ([`Stop::needs_fix`] or [`Self::objects_unreadable`]): fix what the summary names
    /// first. A retry loop must stop on it (exit status 3).
    #[must_use]
    pub fn needs_fix(&self) -> bool {
        self.stopped.as_ref().is_some_and(|stop| stop.needs_fix) || self.objects_unreadable > 0
    }

    /// Whether the replay is complete: everything selected was read and delivered.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.stopped.is_none() && self.objects_failed == 0 && self.failed() == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sent, finished, items, were) = if self.dry_run {
            ("would send", "read", "items to send", "would be")
        } else {
            ("sent", "finished", "items sent", "were")
        };
        writeln!(
            f,
            "objects: {} selected, {} {finished}, {} already done (checkpoint), {} failed, {} filtered out",
            self.objects,
            self.objects_finished,
            self.objects_already_done,
            self.objects_failed,
            self.objects_filtered_out
        )?;
        writeln!(
            f,
            "records: {} read ({} items), {} {sent}, {} skipped (unreadable lines), {} failed ({} rejected, {} unsent), {} already sent earlier",
            self.records,
            self.items,
            self.sent,
            self.skipped,
            self.failed(),
            self.rejected,
            self.unsent,
            self.already_sent
        )?;
        if self.too_old_for_new_relic > 0 {
            writeln!(
                f,
                "{} {items} hold an event whose `timestamp` is more than 47 hours old: New Relic drops log records more than 48 hours old \
                 (https://docs.newrelic.com/docs/logs/ui-data/timestamp-support/) and the way through Firehose takes time, so they {were} delivered here but will not show up there \
                 (--restamp renames such a `timestamp` `{}`: New Relic then keeps the event, at its arrival time)",
                self.too_old_for_new_relic,
                crate::age::RENAMED_TO
            )?;
        }
        if self.restamped > 0 {
            writeln!(
                f,
                "{} {items} {were} restamped (--restamp): their events' `timestamp` older than 47 hours renamed `{}`, so New Relic keeps them at their arrival time",
                self.restamped,
                crate::age::RENAMED_TO
            )?;
        }
        if self.objects_late > 0 {
            writeln!(
                f,
                "{} objects this checkpoint's first run did not select were taken: written since, into an hour before that run began (late failures of the replayed hours, not this replay's records)",
                self.objects_late
            )?;
        }
        if self.objects_new > 0 {
            writeln!(
                f,
                "{} objects this checkpoint's first run did not select were left out (written since, into an hour at or after that run began: among them may be this replay's own records, backed up again by the stream). \
                 If they are failures to replay, select them with a new --checkpoint (--key, or --since the hour of the first key below):",
                self.objects_new
            )?;
            for key in &self.left_out {
                writeln!(f, "  left out: {key}")?;
            }
            if self.objects_new > self.left_out.len() {
                writeln!(
                    f,
                    "  … and {} more (RUST_LOG=replay=debug names them)",
                    self.objects_new - self.left_out.len()
                )?;
            }
        }
        for p in &self.problems {
            let kind = match p.kind {
                ProblemKind::Unreadable => "unreadable",
                ProblemKind::Rejected => "rejected",
                ProblemKind::ObjectFailed => "object failed",
            };
            match p.line {
                Some(line) => writeln!(f, "  {kind}: {}:{line}: {}", p.key, p.reason)?,
                None => writeln!(f, "  {kind}: {}: {}", p.key, p.reason)?,
            }
        }
        if self.problems_not_kept > 0 {
            writeln!(
                f,
                "  … and {} more problems (see the log)",
                self.problems_not_kept
            )?;
        }
        if let Some(file) = &self.problems_file {
            writeln!(
                f,
                "problems of this run and earlier ones, every one of them: {file}"
            )?;
        }
        if self.objects_unreadable > 0 {
            writeln!(
                f,
                "{} objects cannot be read as they are (above) and stay unfinished; a re-run alone reads them the same way: fix or move them",
                self.objects_unreadable
            )?;
        }
        match &self.stopped {
            Some(Stop {
                reason,
                needs_fix: true,
            }) => writeln!(
                f,
                "stopped early: {reason}; fix that, then run the same command again to resume"
            ),
            Some(Stop { reason, .. }) => writeln!(
                f,
                "stopped early: {reason}; run the same command again to resume"
            ),
            None if self.dry_run => writeln!(
                f,
                "dry run: nothing was sent and the checkpoint was not changed"
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_count() {
        let s = Summary {
            objects: 3,
            records: 10,
            sent: 7,
            skipped: 1,
            rejected: 1,
            unsent: 2,
            stopped: Some(Stop {
                reason: "target unavailable".into(),
                needs_fix: false,
            }),
            ..Summary::default()
        };
        let mut s = s;
        s.report(Problem {
            kind: ProblemKind::Unreadable,
            key: "k".into(),
            line: Some(4),
            reason: "not a JSON error record".into(),
        });
        let text = s.to_string();
        assert!(
            text.contains("unreadable: k:4: not a JSON error record"),
            "{text}"
        );
        assert!(text.contains("3 selected"), "{text}");
        assert!(
            text.contains("10 read (0 items), 7 sent, 1 skipped"),
            "{text}"
        );
        assert!(text.contains("3 failed (1 rejected, 2 unsent)"), "{text}");
        assert!(text.contains("run the same command again"), "{text}");
        assert!(!text.contains("fix that"), "{text}");
        assert!(!s.complete());
        assert!(Summary::default().complete());
        assert!(!s.needs_fix());
        s.stop("target unavailable".into(), true);
        assert!(s.needs_fix());
        assert!(s.to_string().contains("fix that, then run"), "{s}");
        // An unreadable object, then an interruption: each is worded as what it is.
        s.stop("interrupted".into(), false);
        s.objects_unreadable = 1;
        let text = s.to_string();
        assert!(s.needs_fix());
        assert!(
            text.contains("1 objects cannot be read as they are"),
            "{text}"
        );
        assert!(
            text.contains("interrupted; run the same command again"),
            "{text}"
        );
        assert!(!text.contains("fix that"), "{text}");
    }
}
