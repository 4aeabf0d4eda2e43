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
//!
//! Before anything is sent, a selection that names no kind of object (no `--error-type`, no
//! `--key`) is refused when it holds both `AllData` backup objects and error output
//! ([`Selection::check_kinds`]): under `S3BackupMode=AllData` the failed records are in both,
//! so that default would send them twice and send again everything already delivered. The
//! check needs the whole listing, and has it: [`Source::list`] returns every object (all
//! `ListObjectsV2` pages) before the first one is fetched.

use std::io::Write;

use bytes::Bytes;
use firehose_formats::limits::MAX_RECORD_BYTES;
use tokio_util::sync::CancellationToken;

use crate::age;
use crate::checkpoint::{Checkpoint, CheckpointError, items_fingerprint};
use crate::layout::{ObjectKind, UtcHour};
use crate::progress::Progress;
use crate::rate::Pacer;
use crate::read::read_object;
use crate::source::{ObjectInfo, Source, SourceError};
use crate::summary::{Problem, ProblemKind, Summary};
use crate::target::{ItemResult, Target};

/// `--key`s with no object named in [`ReplayError::NoSuchKeys`].
pub const MAX_NAMED_MISSING_KEYS: usize = 10;

/// Keys of left-out objects named in the log at `warn` and in the summary; the rest are
/// logged at `debug`.
pub const MAX_LISTED_LEFT_OUT: usize = 10;

/// Which objects to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--error-type`: only objects of these kinds ([`ObjectKind::Raw`] is `all-data`, the
    /// `AllData` backup). Empty means every kind, as long as the selected objects are not a mix
    /// of `AllData` backup and error output (see [`Selection::check_kinds`]).
    pub error_types: Vec<ObjectKind>,
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
    /// The filters, as the checkpoint keeps them ([`Checkpoint::check_selection`]): the flags
    /// that set them, `--error-type`s sorted, `--key`s by count and digest (a thousand keys
    /// would make the message unreadable). `everything` without filters.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.error_types.is_empty() {
            let mut names: Vec<&str> = self.error_types.iter().map(ObjectKind::name).collect();
            names.sort_unstable();
            names.dedup();
            parts.push(format!("--error-type {}", names.join(",")));
        }
        if let Some(since) = self.since {
            parts.push(format!("--since {since}"));
        }
        if let Some(until) = self.until {
            parts.push(format!("--until {until}"));
        }
        if !self.keys.is_empty() {
            let mut keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
            keys.sort_unstable();
            keys.dedup();
            match keys.as_slice() {
                [one] => parts.push(format!("--key {one}")),
                _ => parts.push(format!(
                    "{} --keys ({})",
                    keys.len(),
                    items_fingerprint(keys.iter().map(|k| k.as_bytes()))
                )),
            }
        }
        if parts.is_empty() {
            "everything".to_owned()
        } else {
            parts.join(" ")
        }
    }

    /// Whether the object is selected, or why not.
    fn admits(&self, key: &str) -> Result<(), &'static str> {
        if self.exclude_keys.iter().any(|k| k == key) {
            return Err("excluded");
        }
        if !self.keys.is_empty() && !self.keys.iter().any(|k| k == key) {
            return Err("not a --key");
        }
        if !self.error_types.is_empty() && !self.error_types.contains(&ObjectKind::of_key(key)) {
            return Err("other error type");
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

    /// Refuses the default selection when it would send failed records twice.
    ///
    /// `keys` are the objects the other filters admitted ([`Selection::admits`]): after
    /// `--since`/`--until`, and **including objects the checkpoint already finished**, so a
    /// resumed or repeated run decides as the first run did. (Were finished objects left out, a
    /// run that finished the `AllData` objects with `--error-type all-data` and was repeated
    /// without the flag would quietly send the error output: the failed records a second time.)
    ///
    /// The rule: with no `--error-type` and no `--key`, a selection holding both `AllData`
    /// backup objects ([`ObjectKind::Raw`]) and error output (any other kind) is refused. Under
    /// `S3BackupMode=AllData` every record the stream received is in the `AllData` backup, the
    /// failed ones included, and the failed ones are in the error output as well. A selection of
    /// one kind only, or one that names its kinds or keys, is taken as it is.
    ///
    /// The caller must pass the complete selection before sending anything (as
    /// [`replay`] does: [`Source::list`] returns the whole listing), or the rule would be
    /// decided on part of it.
    ///
    /// # Errors
    /// [`ReplayError::MixedKinds`], with the counts and what to pass instead.
    pub fn check_kinds<'k>(
        &self,
        source: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<(), ReplayError> {
        if !self.error_types.is_empty() || !self.keys.is_empty() {
            return Ok(());
        }
        let mut all_data = 0;
        let mut error_output = 0;
        let mut error_types: Vec<&'static str> = Vec::new();
        for key in keys {
            let kind = ObjectKind::of_key(key);
            if kind.is_error_output() {
                error_output += 1;
                if !error_types.contains(&kind.name()) {
                    error_types.push(kind.name());
                }
            } else {
                all_data += 1;
            }
        }
        if all_data == 0 || error_output == 0 {
            return Ok(());
        }
        error_types.sort_unstable();
        Err(ReplayError::MixedKinds {
            location: source.to_owned(),
            all_data,
            error_output,
            error_types: error_types.join(", "),
        })
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
    /// Send events whose `timestamp` New Relic would drop for its age with that member renamed
    /// ([`age::restamp`]).
    pub restamp: bool,
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
    /// Some of the objects `--key` names are not under the source (or the other filters left
    /// them out). Nothing was sent.
    #[error(
        "{missing} of the {given} keys --key names have no object under {location}, or the other \
         filters left them out: {keys}. A key is the object's key as the summary and the log print \
         it, or its path below the source (e.g. http-endpoint-failed/2026/11/25/09/<name> for the \
         source s3://bucket/prefix/). Nothing was sent: drop or correct those keys"
    )]
    NoSuchKeys {
        /// The source, as the log names it.
        location: String,
        /// How many of the keys have no object.
        missing: usize,
        /// How many different keys were given.
        given: usize,
        /// The first [`MAX_NAMED_MISSING_KEYS`] keys with no object, as looked up (an S3 key with
        /// the source's prefix), in key order.
        keys: String,
    },
    /// No `--error-type` or `--key`, and the selection holds both `AllData` backup objects and
    /// error output ([`Selection::check_kinds`]). Nothing was sent.
    #[error(
        "{location} holds AllData backup objects ({all_data}) and error output ({error_output}: \
         {error_types}); an AllData backup already holds every record the stream received, the \
         failed ones included, so replaying both sends those twice (and sends again what was \
         delivered): choose with --error-type all-data (everything the stream received), or \
         --error-type processing-failed / --error-type http-endpoint-failed (only what failed). \
         Nothing was sent"
    )]
    MixedKinds {
        /// The source, as the log names it (not `source`: thiserror takes that for the cause).
        location: String,
        /// Selected `AllData` backup objects (finished ones included).
        all_data: usize,
        /// Selected error-output objects (finished ones included).
        error_output: usize,
        /// The error outputs among them, e.g. `http-endpoint-failed, processing-failed`.
        error_types: String,
    },
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
    // Before the listing, which for a year of backups takes a while.
    let selection = options.selection.describe();
    checkpoint.check_selection(&selection)?;
    let listed = source.objects(&options.selection.keys).await?;
    let mut objects = Vec::with_capacity(listed.len());
    // `--key`s by hash: `admits` scans the list, which for a thousand keys over a million
    // listed objects was 10^9 comparisons; only the objects named reach it.
    let wanted: std::collections::HashSet<&str> =
        options.selection.keys.iter().map(String::as_str).collect();
    for object in listed {
        let admitted = if wanted.is_empty() || wanted.contains(object.key.as_str()) {
            options.selection.admits(&object.key)
        } else {
            Err("not a --key")
        };
        match admitted {
            Ok(()) => objects.push(object),
            Err(why) => {
                tracing::debug!(key = %object.key, why, "object not selected");
                summary.objects_filtered_out += 1;
            }
        }
    }
    let selected: std::collections::HashSet<&str> =
        objects.iter().map(|o| o.key.as_str()).collect();
    let (gone, mut missing): (Vec<&str>, Vec<&str>) = wanted
        .iter()
        .copied()
        .filter(|wanted| !selected.contains(wanted))
        .partition(|wanted| checkpoint.has_finished(wanted));
    missing.sort_unstable();
    for key in gone {
        // Finished by an earlier run of this replay, deleted since (a lifecycle rule): done,
        // not missing, or a replay stopped after it could never be resumed (helper-84).
        tracing::info!(
            key,
            "--key names an object this checkpoint finished, no longer under the source: nothing to do for it"
        );
        summary.objects_already_done += 1;
    }
    if !missing.is_empty() {
        // A typo, or an object deleted since (a lifecycle rule). Ending with "0 selected" and
        // status 0 would pass for a replay done (helper-69); replaying the others and ending
        // with status 0 would pass for all of them done (helper-82). Nothing is sent until the
        // list names only objects that are there.
        let mut keys = missing
            .iter()
            .take(MAX_NAMED_MISSING_KEYS)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if missing.len() > MAX_NAMED_MISSING_KEYS {
            keys.push_str(&format!(
                " and {} more",
                missing.len() - MAX_NAMED_MISSING_KEYS
            ));
        }
        return Err(ReplayError::NoSuchKeys {
            location: describe(source),
            missing: missing.len(),
            given: wanted.len(),
            keys,
        });
    }
    // Decided on the whole selection, before the first object is fetched or sent (dry runs
    // too: they show what a real run would do), and before objects the checkpoint does not know
    // are left out: a re-run decides as the first run would have on what is there now.
    options
        .selection
        .check_kinds(&describe(source), objects.iter().map(|o| o.key.as_str()))?;
    warn_if_both_chosen(&options.selection, &objects);
    // Objects the checkpoint's first run did not select are left out: among them may be this
    // replay's own records, backed up again by the stream (see `Checkpoint::knows`). Those
    // filed under an hour well before the first run began cannot be, and are taken: late
    // failures of the replayed hours (`Checkpoint::filed_before_first_run`).
    objects.retain(|object| {
        if checkpoint.knows(&object.key) {
            return true;
        }
        if checkpoint.filed_before_first_run(&object.key) {
            summary.objects_late += 1;
            tracing::info!(key = %object.key, "taken although this checkpoint's first run did not select it: it was written since into an hour before that run began, so it cannot hold this replay's records");
            return true;
        }
        if summary.objects_new < MAX_LISTED_LEFT_OUT {
            tracing::warn!(key = %object.key, "left out: this checkpoint's first run did not select it, and it was written since into an hour that may hold this replay's own records");
            summary.left_out.push(object.key.clone());
        } else {
            tracing::debug!(key = %object.key, "left out: not selected by this checkpoint's first run");
        }
        summary.objects_new += 1;
        false
    });
    if summary.objects_new > 0 {
        tracing::warn!(
            objects = summary.objects_new,
            "objects this checkpoint's first run did not select are left out (written since into an hour at or after that run's start; this replay's own records, backed up again by the stream, may be among them)"
        );
    }
    if !options.dry_run {
        // Before the first send: a checkpoint that cannot be written fails the run now. A first
        // run records what it selected, with its filters and its start, for the rules above.
        checkpoint.begin(
            objects.iter().map(|o| o.key.as_str()),
            &selection,
            age::now_ms() / 1000,
        );
        checkpoint.ensure_writable()?;
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
            restamp: options.restamp,
            preview: &mut *preview,
            show: options.show,
            shown: &mut shown,
            warned: 0,
        };
        if let Err(e) = ctx.run(source).await {
            // The checkpoint (or the preview) could not be written. Going on would risk
            // sending twice; stopping with an error alone lost what this run had done (the
            // summary is the run's report): stop, and say what was done and why (helper-56,
            // L6). Not a passing failure: exit status 3, fix it, then re-run.
            tracing::error!(error = %e, "replay stopping: cannot go on safely");
            summary.stop(
                format!(
                    "{e} (the last batch's records may have been delivered without the checkpoint knowing: the next run may send them again)"
                ),
                true,
            );
            break;
        }
        progress.object_done();
        progress.counts(summary.sent, summary.skipped, summary.failed());
    }
    progress.finish();
    // The problems of objects that were not checkpointed since (an unreadable object, the
    // lines of one that stopped) are kept too.
    if let Err(e) = checkpoint.flush_problems() {
        tracing::error!(error = %e, "the problems of this run could not be kept beside the checkpoint (they are in the log and the summary)");
        if summary.stopped.is_none() {
            summary.stop(e.to_string(), true);
        }
    }
    // The journal is taken into the checkpoint, which is then one file again. A failure
    // loses nothing: the journal keeps every change, and the next run takes it in.
    if let Err(e) = checkpoint.close() {
        tracing::warn!(error = %e, "the checkpoint's journal could not be taken into it; the next run will");
    }
    if let Some(path) = checkpoint.problems_file() {
        summary.problems_file = Some(path.display().to_string());
    }
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

/// `--error-type all-data` together with an error output is a choice, not refused: the `AllData`
/// objects may not be this stream's `AllData` backup. It still sends failed records twice when
/// they are, so the log says so.
fn warn_if_both_chosen(selection: &Selection, objects: &[ObjectInfo]) {
    let kinds = || objects.iter().map(|o| ObjectKind::of_key(&o.key));
    if selection.error_types.contains(&ObjectKind::Raw)
        && kinds().any(|k| k == ObjectKind::Raw)
        && kinds().any(|k| k.is_error_output())
    {
        tracing::warn!(
            "--error-type all-data with an error output: records that failed are sent from both \
             when the AllData objects are this stream's AllData backup"
        );
    }
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
    /// `--restamp` ([`Options::restamp`]).
    restamp: bool,
    preview: &'a mut (dyn Write + Send),
    show: usize,
    shown: &'a mut usize,
    /// Line-level problems of this object logged at WARN so far ([`WARNINGS_PER_OBJECT`]).
    warned: usize,
}

/// Line-level problems (an unreadable line, a refused item) logged at WARN per object; the
/// rest at DEBUG. Every one is still counted, reported in the summary (its first ones) and
/// written to the problems file: an object of a million bad lines logged a million warnings.
const WARNINGS_PER_OBJECT: usize = 10;

impl<T: Target> ObjectRun<'_, T> {
    async fn run(&mut self, source: &Source) -> Result<(), ReplayError> {
        let object = self.object;
        let key = object.key.as_str();
        let size = self.object.size;
        let kind = ObjectKind::of_key(key);
        let body = match source.get(key).await {
            Ok(body) => body,
            Err(e) => {
                // Most likely passing (network, throttling): a re-run may fetch it. Not an
                // object over the size cap (helper-57, L3), nor one S3 refuses for a reason a
                // re-run meets again: no permission, archived (helper-69).
                self.object_failed(e.to_string(), e.is_for_good());
                return Ok(());
            }
        };
        // Decompressing and splitting up to 1 GiB is CPU work: off the runtime's workers, so
        // the producer's timers and the Ctrl-C handler keep running meanwhile (helper-56, L5).
        let reading = kind.clone();
        let read = match tokio::task::spawn_blocking(move || read_object(&reading, body)).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                // The same bytes read the same way next time: a re-run alone cannot finish it.
                self.object_failed(e.to_string(), true);
                return Ok(());
            }
            Err(e) => {
                self.object_failed(format!("reading the object failed: {e}"), false);
                return Ok(());
            }
        };
        for bad in &read.unreadable {
            self.warn_line(bad.line, &bad.reason, "skipping a line that cannot be read");
            self.summary.skipped += 1;
            self.problem(Problem {
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
                    self.warn_line(record.line, &reason, "record cannot go to this target");
                    self.reject(key, record.line, reason);
                }
            }
        }
        self.summary.items += items.len();

        // Hashing up to 1 GiB of items is CPU work too: off the workers, as the reading was;
        // so is looking for events New Relic will drop for their age (`crate::age`).
        let hashed: Vec<Bytes> = items.iter().map(|(_, item)| item.clone()).collect();
        let now_ms = age::now_ms();
        let restamp = self.restamp;
        let (fingerprint, aged) = match tokio::task::spawn_blocking(move || {
            // Per item: its `--restamp`ed form, if any of its events were renamed, and whether
            // it still holds an event New Relic will drop (the item as it will be sent).
            let aged: Vec<(Option<Bytes>, bool)> = hashed
                .iter()
                .map(|item| {
                    if !age::too_old_for_new_relic(item, now_ms) {
                        return (None, false);
                    }
                    // Renaming adds 9 bytes an event: one that would no longer fit a record
                    // (or the front door's event) is sent as it was (helper-84).
                    let renamed = restamp
                        .then(|| age::restamp(item, now_ms))
                        .flatten()
                        .filter(|renamed| renamed.len() < MAX_RECORD_BYTES)
                        .map(Bytes::from);
                    // Not renamed: the item as it is, found too old just above.
                    let still_old = renamed
                        .as_ref()
                        .is_none_or(|sent| age::too_old_for_new_relic(sent, now_ms));
                    (renamed, still_old)
                })
                .collect();
            (items_fingerprint(hashed.iter().map(|item| &item[..])), aged)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                self.object_failed(format!("fingerprinting the object failed: {e}"), false);
                return Ok(());
            }
        };
        let mut done = self.checkpoint.done_items(key, size, &fingerprint);
        let todo: Vec<usize> = (0..items.len()).filter(|&i| !done.contains(i)).collect();
        // Counted as items are delivered (or shown, in a dry run), so a run that stops part way
        // counts what it sent.
        // An item as it leaves: `--restamp`ed when it was, so the checkpoint's fingerprint,
        // taken of the items as read, is the same with and without the flag.
        let outgoing = |i: usize| aged[i].0.clone().unwrap_or_else(|| items[i].1.clone());
        let count_aged = |summary: &mut Summary, i: usize| {
            summary.too_old_for_new_relic += usize::from(aged[i].1);
            summary.restamped += usize::from(aged[i].0.is_some());
        };
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
                self.stop("interrupted".to_owned(), remaining, false);
                return Ok(());
            }
            // A dry run sends nothing, so `--rate` does not hold it back.
            if self.dry_run {
                // As they would leave (`--restamp`).
                let shown: Vec<(usize, Bytes)> =
                    chunk.iter().map(|&i| (items[i].0, outgoing(i))).collect();
                self.show_items(key, shown.iter())?;
                self.summary.sent += chunk.len();
                for &i in chunk {
                    count_aged(self.summary, i);
                }
                continue;
            }
            let cancel = self.cancel;
            let cancelled = tokio::select! {
                () = self.pacer.acquire(chunk.len()) => false,
                () = cancel.cancelled() => true,
            };
            if cancelled {
                self.stop("interrupted".to_owned(), remaining, false);
                return Ok(());
            }
            let batch: Vec<Bytes> = chunk.iter().map(|&i| outgoing(i)).collect();
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
                self.stop(reason, remaining, false);
                return Ok(());
            }
            let mut unaccepted = None;
            for (&index, result) in chunk.iter().zip(results) {
                match result {
                    ItemResult::Accepted => {
                        self.summary.sent += 1;
                        count_aged(self.summary, index);
                        done.insert(index);
                    }
                    ItemResult::Rejected(reason) => {
                        self.warn_line(items[index].0, &reason, "the target refused an item");
                        self.reject(key, items[index].0, reason);
                        done.insert(index);
                    }
                    ItemResult::Unaccepted(reason) => {
                        self.summary.unsent += 1;
                        unaccepted = Some(reason);
                    }
                }
            }
            // The object's last batch, all taken: `record_finished` below saves that in the
            // same one write (a bucket of single-batch objects needed two writes each).
            let finishes = fatal.is_none() && unaccepted.is_none() && remaining == chunk.len();
            if !finishes {
                self.checkpoint
                    .record_progress(key, size, &fingerprint, &done)?;
            }
            // A target error holds for every call as configured (a wrong stream, a refused
            // key): unlike an outage, running again as it is cannot get past it.
            let (reason, needs_fix) = match (fatal, unaccepted) {
                (Some(error), _) => (error.to_string(), true),
                // The target gave up waiting to retry because the run was stopped.
                (None, Some(_)) if self.cancel.is_cancelled() => ("interrupted".to_owned(), false),
                (None, Some(reason)) => (format!("the target stayed unavailable: {reason}"), false),
                (None, None) => continue,
            };
            self.stop(reason, remaining - chunk.len(), needs_fix);
            return Ok(());
        }
        if !self.dry_run {
            self.checkpoint.record_finished(key, size)?;
        }
        self.summary.objects_finished += 1;
        tracing::info!(key, kind = kind.name(), items = items.len(), "object done");
        Ok(())
    }

    /// The object could not be fetched or read; `for_good` when a re-run would read the same
    /// bytes the same way.
    fn object_failed(&mut self, reason: String, for_good: bool) {
        let key = &self.object.key;
        if for_good {
            tracing::error!(key = %key, %reason, "cannot read the object as it is; it stays unfinished: fix or move it");
            self.summary.objects_unreadable += 1;
        } else {
            tracing::error!(key = %key, %reason, "cannot read the object; it stays unfinished, a re-run tries it again");
        }
        self.summary.objects_failed += 1;
        self.problem(Problem {
            kind: ProblemKind::ObjectFailed,
            key: key.clone(),
            line: None,
            reason,
        });
    }

    fn reject(&mut self, key: &str, line: usize, reason: String) {
        self.summary.rejected += 1;
        self.problem(Problem {
            kind: ProblemKind::Rejected,
            key: key.to_owned(),
            line: Some(line),
            reason,
        });
    }

    /// Logs a problem of one line of this object: at WARN up to [`WARNINGS_PER_OBJECT`], then
    /// once that the rest go to DEBUG.
    fn warn_line(&mut self, line: usize, reason: &str, what: &str) {
        let key = self.object.key.as_str();
        self.warned += 1;
        if self.warned > WARNINGS_PER_OBJECT {
            tracing::debug!(key, line, %reason, "{what}");
            return;
        }
        tracing::warn!(key, line, %reason, "{what}");
        if self.warned == WARNINGS_PER_OBJECT {
            tracing::warn!(
                key,
                "more problems of lines of this object are logged at debug level only; the summary counts them all, and the problems file beside the checkpoint keeps every one"
            );
        }
    }

    /// Reports a problem in the summary, and notes it for the checkpoint's problems file.
    fn problem(&mut self, problem: Problem) {
        self.checkpoint.note_problem(&problem);
        self.summary.report(problem);
    }

    /// Stops the run: `unsent` items of this object were not sent; `needs_fix` when running
    /// again as it is would stop the same way.
    fn stop(&mut self, reason: String, unsent: usize, needs_fix: bool) {
        tracing::error!(key = %self.object.key, %reason, needs_fix, "replay stopping; the checkpoint records what was delivered");
        self.summary.unsent += unsent;
        self.summary.stop(reason, needs_fix);
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
            error_types: vec![ObjectKind::HttpEndpointFailed],
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

    #[test]
    fn all_data_selects_only_the_raw_objects() {
        let sel = Selection {
            error_types: vec![ObjectKind::Raw],
            ..Selection::default()
        };
        assert_eq!(sel.admits("2026/11/25/09/raw"), Ok(()));
        assert_eq!(
            sel.admits("processing-failed/2026/11/25/09/a"),
            Err("other error type")
        );
        assert_eq!(
            sel.admits("http-endpoint-failed/2026/11/25/09/a"),
            Err("other error type")
        );
        assert_eq!(
            sel.admits("splunk-failed/2026/11/25/09/a"),
            Err("other error type")
        );
        let both = Selection {
            error_types: vec![ObjectKind::Raw, ObjectKind::HttpEndpointFailed],
            ..Selection::default()
        };
        assert_eq!(both.admits("2026/11/25/09/raw"), Ok(()));
        assert_eq!(both.admits("http-endpoint-failed/2026/11/25/09/a"), Ok(()));
        assert_eq!(
            both.admits("processing-failed/2026/11/25/09/a"),
            Err("other error type")
        );
    }

    const RAW: &str = "2026/11/25/08/s-1-2026-11-25-08-55-00-u";
    const PF: &str = "processing-failed/2026/11/25/09/s-1-2026-11-25-09-10-00-u";
    const HE: &str = "http-endpoint-failed/2026/11/25/09/s-1-2026-11-25-09-30-00-u.gz";
    const SPLUNK: &str = "splunk-failed/2026/11/25/09/s-1-2026-11-25-09-40-00-u";

    #[test]
    fn the_default_selection_refuses_all_data_mixed_with_error_output() {
        let default = Selection::default();
        let err = default
            .check_kinds("s3://b/p/", [RAW, RAW, PF, HE, HE])
            .unwrap_err();
        match &err {
            ReplayError::MixedKinds {
                location,
                all_data,
                error_output,
                error_types,
            } => {
                assert_eq!(location, "s3://b/p/");
                assert_eq!((*all_data, *error_output), (2, 3));
                assert_eq!(error_types, "http-endpoint-failed, processing-failed");
            }
            other => panic!("refused for another reason: {other}"),
        }
        let text = err.to_string();
        for part in [
            "AllData backup objects (2)",
            "error output (3: http-endpoint-failed, processing-failed)",
            "twice",
            "--error-type all-data",
            "--error-type processing-failed",
            "--error-type http-endpoint-failed",
            "Nothing was sent",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        // Any error output counts, not only the two --error-type can name.
        assert!(matches!(
            default.check_kinds("d", [RAW, SPLUNK]),
            Err(ReplayError::MixedKinds {
                all_data: 1,
                error_output: 1,
                ..
            })
        ));
    }

    #[test]
    fn one_kind_or_a_chosen_selection_is_taken_as_it_is() {
        let default = Selection::default();
        assert!(default.check_kinds("d", [RAW, RAW]).is_ok(), "AllData only");
        assert!(default.check_kinds("d", [PF, HE]).is_ok(), "errors only");
        assert!(default.check_kinds("d", []).is_ok(), "nothing selected");
        for chosen in [
            Selection {
                error_types: vec![ObjectKind::Raw],
                ..Selection::default()
            },
            Selection {
                error_types: vec![ObjectKind::HttpEndpointFailed],
                ..Selection::default()
            },
            // Both kinds named on purpose: a choice (the log warns), not refused.
            Selection {
                error_types: vec![ObjectKind::Raw, ObjectKind::ProcessingFailed],
                ..Selection::default()
            },
            Selection {
                keys: vec![RAW.into(), PF.into()],
                ..Selection::default()
            },
        ] {
            assert!(chosen.check_kinds("d", [RAW, PF, HE]).is_ok(), "{chosen:?}");
        }
    }
}
