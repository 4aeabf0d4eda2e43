//! The replay loop: list, filter, read, send, checkpoint, count.
//!
//! Objects are handled one at a time in key order (time order for Firehose's layout), and the
//! items of one object in batches, one batch in flight at a time. That keeps the checkpoint
//! exact: after each batch the checkpoint records which items the target confirmed, and after
//! the last batch the object is finished. The price is throughput bounded by one batch's round
//! trip, which for a recovery tool (usually run with `--rate` anyway) is the right trade.
//!
//! The loop stops, leaving a checkpoint a re-run resumes from, when the target stays
//! unavailable, when it reports a configuration error, or when the run is cancelled (Ctrl-C).
//! Unreadable lines, objects that cannot be fetched and items the target refuses for good are
//! reported and counted, and the loop goes on.

use std::io::Write;

use bytes::Bytes;
use firehose_formats::backup::ErrorOutputType;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::layout::{ObjectKind, UtcHour};
use crate::progress::Progress;
use crate::rate::Pacer;
use crate::read::read_object;
use crate::source::{ObjectInfo, Source, SourceError};
use crate::summary::{Problem, ProblemKind, Summary};
use crate::target::{ItemResult, Target};

/// Which objects to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these error outputs; empty means every object, `AllData` raw objects included.
    pub error_types: Vec<ErrorOutputType>,
    /// First hour to include (UTC, from the key).
    pub since: Option<UtcHour>,
    /// Last hour to include (UTC, from the key).
    pub until: Option<UtcHour>,
    /// Only these keys (`--key`); empty means every key.
    pub keys: Vec<String>,
    /// Keys never to read (the checkpoint file, when it sits inside a source directory).
    pub exclude_keys: Vec<String>,
}

impl Selection {
    /// Whether the object is selected, or why not.
    fn admits(&self, key: &str) -> Result<(), &'static str> {
        if self.exclude_keys.iter().any(|k| k == key) {
            return Err("excluded");
        }
        if !self.keys.is_empty() && !self.keys.iter().any(|k| k == key) {
            return Err("not a --key");
        }
        if !self.error_types.is_empty() {
            let kind = ObjectKind::of_key(key);
            let wanted = self.error_types.iter().any(|t| match t {
                ErrorOutputType::ProcessingFailed => kind == ObjectKind::ProcessingFailed,
                ErrorOutputType::HttpEndpointFailed => kind == ObjectKind::HttpEndpointFailed,
            });
            if !wanted {
                return Err("other error type");
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(hour) = UtcHour::of_key(key) else {
                return Err("no time in key");
            };
            if self.since.is_some_and(|since| hour < since)
                || self.until.is_some_and(|until| hour > until)
            {
                return Err("outside the time range");
            }
        }
        Ok(())
    }
}

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which objects.
    pub selection: Selection,
    /// Count and show, send nothing, change no checkpoint.
    pub dry_run: bool,
    /// In a dry run, how many items to print.
    pub show: usize,
    /// Items per second; `None` for no limit.
    pub rate: Option<u32>,
}

/// Why a replay could not run at all (as opposed to problems it counts and reports).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The source could not be listed.
    #[error(transparent)]
    List(#[from] SourceError),
    /// The checkpoint could not be written: continuing would risk sending twice.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The dry-run preview could not be written.
    #[error("cannot write the dry-run preview: {0}")]
    Preview(#[source] std::io::Error),
}

/// Everything a run needs besides its options.
pub struct Run<'a, T> {
    /// Where objects come from.
    pub source: &'a Source,
    /// Where items go.
    pub target: &'a T,
    /// What was done before, and where progress is recorded.
    pub checkpoint: &'a mut Checkpoint,
    /// The progress bar (hidden when not on a terminal).
    pub progress: &'a Progress,
    /// Where a dry run prints what it would send.
    pub preview: &'a mut (dyn Write + Send),
    /// Cancelled on Ctrl-C: the run stops after the batch in flight.
    pub cancel: &'a CancellationToken,
}

impl<T: Target> std::fmt::Debug for Run<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("source", self.source)
            .field("target", &self.target.describe())
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

/// Runs a replay to the end, or until it has to stop.
///
/// # Errors
/// See [`ReplayError`]; everything else is counted in the [`Summary`].
pub async fn replay<T: Target>(run: Run<'_, T>, options: &Options) -> Result<Summary, ReplayError> {
    let Run {
        source,
        target,
        checkpoint,
        progress,
        preview,
        cancel,
    } = run;
    let mut summary = Summary {
        dry_run: options.dry_run,
        ..Summary::default()
    };
    let listed = source.list().await?;
    let mut objects = Vec::with_capacity(listed.len());
    for object in listed {
        match options.selection.admits(&object.key) {
            Ok(()) => objects.push(object),
            Err(why) => {
                tracing::debug!(key = %object.key, why, "object not selected");
                summary.objects_filtered_out += 1;
            }
        }
    }
    for wanted in &options.selection.keys {
        if !objects.iter().any(|o| &o.key == wanted) {
            tracing::warn!(key = %wanted, "--key names no object under the source (or one left out by the other filters)");
        }
    }
    summary.objects = objects.len();
    progress.set_length(objects.len());
    tracing::info!(
        source = %describe(source),
        target = %target.describe(),
        objects = objects.len(),
        filtered_out = summary.objects_filtered_out,
        dry_run = options.dry_run,
        "replay starting"
    );

    let mut pacer = Pacer::new(options.rate);
    let batch_size = pacer.batch_size(target.max_batch());
    let mut shown = 0usize;
    for object in &objects {
        if summary.stopped.is_some() {
            break;
        }
        if checkpoint.is_finished(&object.key, object.size) {
            summary.objects_already_done += 1;
            progress.object_done();
            continue;
        }
        let mut ctx = ObjectRun {
            object,
            target,
            checkpoint: &mut *checkpoint,
            summary: &mut summary,
            pacer: &mut pacer,
            batch_size,
            cancel,
            dry_run: options.dry_run,
            preview: &mut *preview,
            show: options.show,
            shown: &mut shown,
        };
        ctx.run(source).await?;
        progress.object_done();
        progress.counts(summary.sent, summary.skipped, summary.failed());
    }
    progress.finish();
    tracing::info!(
        objects = summary.objects,
        finished = summary.objects_finished,
        records = summary.records,
        sent = summary.sent,
        skipped = summary.skipped,
        failed = summary.failed(),
        "replay done"
    );
    Ok(summary)
}

fn describe(source: &Source) -> String {
    match source {
        Source::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        Source::Dir(path) => path.display().to_string(),
    }
}

/// One object's replay.
struct ObjectRun<'a, T> {
    object: &'a ObjectInfo,
    target: &'a T,
    checkpoint: &'a mut Checkpoint,
    summary: &'a mut Summary,
    pacer: &'a mut Pacer,
    batch_size: usize,
    cancel: &'a CancellationToken,
    dry_run: bool,
    preview: &'a mut (dyn Write + Send),
    show: usize,
    shown: &'a mut usize,
}

impl<T: Target> ObjectRun<'_, T> {
    async fn run(&mut self, source: &Source) -> Result<(), ReplayError> {
        let object = self.object;
        let key = object.key.as_str();
        let size = self.object.size;
        let kind = ObjectKind::of_key(key);
        let body = match source.get(key).await {
            Ok(body) => body,
            Err(e) => {
                self.object_failed(e.to_string());
                return Ok(());
            }
        };
        let read = match read_object(&kind, body) {
            Ok(read) => read,
            Err(e) => {
                self.object_failed(e.to_string());
                return Ok(());
            }
        };
        for bad in &read.unreadable {
            tracing::warn!(key, line = bad.line, reason = %bad.reason, "skipping a line that cannot be read");
            self.summary.skipped += 1;
            self.summary.report(Problem {
                kind: ProblemKind::Unreadable,
                key: key.to_owned(),
                line: Some(bad.line),
                reason: bad.reason.clone(),
            });
        }
        self.summary.records += read.records.len();

        // Items in a stable order, so the checkpoint's indexes mean the same thing on resume.
        let mut items: Vec<(usize, Bytes)> = Vec::new();
        for record in &read.records {
            match self.target.prepare(record) {
                Ok(prepared) => items.extend(prepared.into_iter().map(|item| (record.line, item))),
                Err(reason) => {
                    tracing::warn!(key, line = record.line, %reason, "record cannot go to this target");
                    self.reject(key, record.line, reason);
                }
            }
        }
        self.summary.items += items.len();

        let mut done = self.checkpoint.done_items(key, size);
        let todo: Vec<usize> = (0..items.len()).filter(|&i| !done.contains(i)).collect();
        if todo.len() < items.len() {
            tracing::info!(
                key,
                already = items.len() - todo.len(),
                "resuming a partly sent object"
            );
        }
        self.summary.already_sent += items.len() - todo.len();

        for (n, chunk) in todo.chunks(self.batch_size).enumerate() {
            let remaining = todo.len() - n * self.batch_size;
            if self.cancel.is_cancelled() {
                self.stop("interrupted".to_owned(), remaining);
                return Ok(());
            }
            let cancel = self.cancel;
            let cancelled = tokio::select! {
                () = self.pacer.acquire(chunk.len()) => false,
                () = cancel.cancelled() => true,
            };
            if cancelled {
                self.stop("interrupted".to_owned(), remaining);
                return Ok(());
            }
            if self.dry_run {
                self.show_items(key, chunk.iter().map(|&i| &items[i]))?;
                self.summary.sent += chunk.len();
                continue;
            }
            let batch: Vec<Bytes> = chunk.iter().map(|&i| items[i].1.clone()).collect();
            // A target error still says what the batch delivered before it: that is recorded
            // like any answer, then the run stops, so a re-run does not send it again.
            let (results, fatal) = match self.target.send(batch).await {
                Ok(results) => (results, None),
                Err(e) => (e.results, Some(e.error)),
            };
            if results.len() != chunk.len() {
                let reason = format!(
                    "the target answered {} results for {} items{}",
                    results.len(),
                    chunk.len(),
                    fatal.map(|e| format!(" ({e})")).unwrap_or_default()
                );
                self.stop(reason, remaining);
                return Ok(());
            }
            let mut unaccepted = None;
            for (&index, result) in chunk.iter().zip(results) {
                match result {
                    ItemResult::Accepted => {
                        self.summary.sent += 1;
                        done.insert(index);
                    }
                    ItemResult::Rejected(reason) => {
                        tracing::warn!(key, line = items[index].0, %reason, "the target refused an item");
                        self.reject(key, items[index].0, reason);
                        done.insert(index);
                    }
                    ItemResult::Unaccepted(reason) => {
                        self.summary.unsent += 1;
                        unaccepted = Some(reason);
                    }
                }
            }
            self.checkpoint.record_progress(key, size, &done)?;
            let reason = match (fatal, unaccepted) {
                (Some(error), _) => error.to_string(),
                (None, Some(reason)) => format!("the target stayed unavailable: {reason}"),
                (None, None) => continue,
            };
            self.stop(reason, remaining - chunk.len());
            return Ok(());
        }
        if !self.dry_run {
            self.checkpoint.record_finished(key, size)?;
        }
        self.summary.objects_finished += 1;
        tracing::info!(key, kind = kind.name(), items = items.len(), "object done");
        Ok(())
    }

    fn object_failed(&mut self, reason: String) {
        let key = &self.object.key;
        tracing::error!(key = %key, %reason, "cannot read the object; it stays unfinished, a re-run tries it again");
        self.summary.objects_failed += 1;
        self.summary.report(Problem {
            kind: ProblemKind::ObjectFailed,
            key: key.clone(),
            line: None,
            reason,
        });
    }

    fn reject(&mut self, key: &str, line: usize, reason: String) {
        self.summary.rejected += 1;
        self.summary.report(Problem {
            kind: ProblemKind::Rejected,
            key: key.to_owned(),
            line: Some(line),
            reason,
        });
    }

    /// Stops the run: `unsent` items of this object were not sent.
    fn stop(&mut self, reason: String, unsent: usize) {
        tracing::error!(key = %self.object.key, %reason, "replay stopping; the checkpoint records what was delivered");
        self.summary.unsent += unsent;
        self.summary.stopped = Some(reason);
    }

    fn show_items<'i>(
        &mut self,
        key: &str,
        items: impl Iterator<Item = &'i (usize, Bytes)>,
    ) -> Result<(), ReplayError> {
        for (line, data) in items {
            if *self.shown >= self.show {
                return Ok(());
            }
            *self.shown += 1;
            let text = String::from_utf8_lossy(data);
            let text = text.trim_end();
            let preview: String = text.chars().take(200).collect();
            let more = if preview.len() < text.len() {
                " …"
            } else {
                ""
            };
            writeln!(self.preview, "{key}:{line}\t{preview}{more}")
                .map_err(ReplayError::Preview)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_error_type_and_hour() {
        let sel = Selection {
            error_types: vec![ErrorOutputType::HttpEndpointFailed],
            since: Some(
                "2026-11-25T09"
                    .parse::<crate::layout::HourBound>()
                    .unwrap()
                    .as_start(),
            ),
            until: Some(
                "2026-11-25T10"
                    .parse::<crate::layout::HourBound>()
                    .unwrap()
                    .as_end(),
            ),
            keys: vec![],
            exclude_keys: vec![],
        };
        assert_eq!(sel.admits("http-endpoint-failed/2026/11/25/09/a"), Ok(()));
        assert_eq!(sel.admits("http-endpoint-failed/2026/11/25/10/a"), Ok(()));
        assert_eq!(
            sel.admits("http-endpoint-failed/2026/11/25/11/a"),
            Err("outside the time range")
        );
        assert_eq!(
            sel.admits("http-endpoint-failed/2026/11/25/08/a"),
            Err("outside the time range")
        );
        assert_eq!(
            sel.admits("processing-failed/2026/11/25/09/a"),
            Err("other error type")
        );
        assert_eq!(sel.admits("2026/11/25/09/raw"), Err("other error type"));
        assert_eq!(
            sel.admits("http-endpoint-failed/custom/a"),
            Err("no time in key")
        );
        let all = Selection {
            exclude_keys: vec!["cp.json".into()],
            ..Selection::default()
        };
        assert_eq!(all.admits("2026/11/25/09/raw"), Ok(()));
        assert_eq!(all.admits("cp.json"), Err("excluded"));
        let one = Selection {
            keys: vec!["processing-failed/2026/11/25/09/a".into()],
            ..Selection::default()
        };
        assert_eq!(one.admits("processing-failed/2026/11/25/09/a"), Ok(()));
        assert_eq!(
            one.admits("processing-failed/2026/11/25/09/b"),
            Err("not a --key")
        );
    }
}
