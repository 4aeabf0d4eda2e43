//! The checkpoint file: which objects a replay has finished, and how far it got in the ones it
//! was sending when it stopped.
//!
//! It is what makes a replay safe to re-run: a finished object is never sent again, and an
//! interrupted object resumes after the last batch the target confirmed.
//!
//! Each change (a batch confirmed, an object finished) is appended to the checkpoint's journal
//! ([`crate::journal`], `<checkpoint>.journal`) and synced before the next batch is sent. The
//! checkpoint itself is written whole (to a temporary file beside it, synced, renamed over it, and
//! the directory synced, so a crash at any moment leaves either the old or the new checkpoint,
//! never a torn one) at the start of a run, when the journal has grown past the checkpoint's
//! size (and [`COMPACT_AT_LEAST`]), and at the end of a run, which then removes the journal.
//! A save therefore costs the same however many objects are finished: rewriting the whole file
//! per batch made a replay of `n` objects write O(n²) bytes (see [`crate::journal`]). Reading a
//! checkpoint applies its journal's changes; a dry run does so without writing either file.
//!
//! A checkpoint belongs to one source *and* one target. What it records only means something
//! for that pair: "finished" means "delivered to this target" (a record the front door cannot
//! take counts as done for `--to-http` but was never put into a stream), and the item indexes
//! of an unfinished object point into the list the target built from the object's records,
//! which differs per target (for `--to-http` a record of several event lines is several items).
//! Opening it for another source or target is refused, before anything is sent.
//!
//! The target is named as [`crate::target::Target::describe`] names it: `http:URL`, or
//! `stream:NAME (region REGION)` (`…, endpoint URL)` with the endpoint override the Firehose
//! client uses, `AWS_ENDPOINT_URL_FIREHOSE` included), because a
//! delivery stream's name is unique only within an account and region: a same-named stream in
//! another region (or behind another endpoint) is another target, which received nothing. A
//! file written before the region was part of the name says `stream:NAME` only; it is resumed by
//! a replay to the stream `NAME` (in whatever region that replay uses: the file cannot say which
//! one it was written in, so resume it only in that one) and names the region from its next
//! save on. The account is not part of the name: use one file per account.
//!
//! A dry run without a target has no target to check a file against, and cannot tell what a
//! target would still need: it reads no file, and refuses one that exists, naming the target it
//! belongs to ([`CheckpointError::DryRunWithoutTarget`]).
//!
//! Progress inside an object is kept as the set of item indexes the target confirmed (a count
//! of leading items plus the stragglers after it), per object: an object interrupted after a
//! partly accepted batch resends exactly the items that were not confirmed, even if later runs
//! worked on other objects in between (one that could not be fetched is left for the next run).
//!
//! One replay at a time per file: a run that writes the checkpoint holds an exclusive lock on
//! `.<checkpoint name>.lock` beside it (hidden, so a checkpoint kept in the source directory is
//! not listed as an object) from before it reads the file until it ends, and a second run with
//! the same file is refused ([`CheckpointError::Locked`]). Without it two runs would both read
//! the same state, send the same objects, and each overwrite the other's progress. The lock is
//! the kernel's (`flock`), so it goes with the process however it ends; the empty lock file
//! stays. A dry run writes nothing and takes no lock.
//!
//! Objects are identified by key *and* size: Firehose never rewrites an object (its names end in
//! a UUID), so a different size under a known key means somebody replaced it, and it is read
//! again from the start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash as _, Hasher as _};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::{self, Journal};
use crate::layout::UtcHour;
use crate::summary::Problem;

/// Format version written into the file; a file with another version is refused.
///
/// Version 3 keeps, for each object in progress, a fingerprint of the items its progress
/// indexes ([`items_fingerprint`]). Version 2 keeps progress for several objects
/// (`in_progress`) and checks the target. Version 1 and 2 files (version 1: one `partial`
/// object, target not checked) are still read: their finished objects stay finished, but an
/// object in progress, having no fingerprint, is sent again from its start (its indexes may
/// point into another list of items than this version reads). An older `replay` refuses a
/// version 3 file, so it never applies these indexes to its own reading either.
///
/// Version 4 adds the journal ([`crate::journal`]) and the checkpoint's `tag`. A replay
/// that knows version 3 only would read the checkpoint without its journal, and send again
/// what the journal records as done: it refuses a version 4 file.
pub const CHECKPOINT_VERSION: u32 = 4;

/// Smallest journal that is taken into the checkpoint before the run ends (when it has also
/// grown past the checkpoint): small enough to read at once, large enough that a checkpoint of
/// few objects is not rewritten every few batches.
pub const COMPACT_AT_LEAST: u64 = 1 << 20;

/// How long before a replay's first run began an object must be filed for
/// [`Checkpoint::filed_before_first_run`] to know it holds none of the replay's records: one
/// object can hold records that arrived up to two buffer intervals apart (the transform's
/// buffer, then the destination's or the backup's: at most 900 s each), and the clock of the
/// host that ran the first run may be ahead of AWS's. An hour covers both with room to spare
/// (helper-84: 15 minutes did not cover the buffers).
pub const LATE_MARGIN_SECS: i64 = 60 * 60;

/// The older format version still read (see [`CHECKPOINT_VERSION`]).
const OLDEST_READABLE_VERSION: u32 = 1;

/// The fingerprint of an object's items, in order: `sha256:` and the first 16 hex digits of
/// SHA-256 over each item's length (8 bytes, little-endian) and bytes. What saved progress
/// indexes must be the same list for the progress to mean the same items.
pub fn items_fingerprint<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for item in items {
        hasher.update((item.len() as u64).to_le_bytes());
        hasher.update(item);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Why the checkpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but cannot be read.
    #[error("cannot read the checkpoint file {path}: {source}")]
    Read {
        /// The checkpoint path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint this version understands.
    #[error(
        "{path} is not a replay checkpoint (version {CHECKPOINT_VERSION}): {reason}; move it away or pass another --checkpoint"
    )]
    Invalid {
        /// The checkpoint path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file records a replay of another source.
    #[error(
        "the checkpoint {path} belongs to a replay of {found}, not {expected}; pass another --checkpoint file for this source"
    )]
    OtherSource {
        /// The checkpoint path.
        path: PathBuf,
        /// The source this replay reads.
        expected: String,
        /// The source the file was written for.
        found: String,
    },
    /// The file records a replay to another target: its finished objects and item indexes do
    /// not apply here.
    #[error(
        "the checkpoint {path} belongs to a replay to {found}, not {expected}: what it records as done was done for {found} only. \
         To resume that replay, run it again with that target. To send to {expected}, pass another --checkpoint file; a new file \
         starts from nothing, so every selected record goes to {expected}, also those {found} already received (narrow the \
         selection with --key, --error-type, --since/--until)"
    )]
    OtherTarget {
        /// The checkpoint path.
        path: PathBuf,
        /// The target this replay sends to.
        expected: String,
        /// The target the file was written for.
        found: String,
    },
    /// The file records a replay with other filters.
    #[error(
        "the checkpoint {path} belongs to a replay of the objects selected by `{found}`, not `{expected}`: \
         to resume that replay, run it again with those filters; for another selection, pass another --checkpoint file \
         (a new file starts from nothing: narrow the selection so that it leaves out what that replay delivered)"
    )]
    OtherSelection {
        /// The checkpoint path.
        path: PathBuf,
        /// This run's filters.
        expected: String,
        /// The first run's filters.
        found: String,
    },
    /// A dry run without a target found a file: what it records is done only for its target.
    #[error(
        "the checkpoint {path} belongs to a replay to {found}; a dry run without --to-stream or --to-http \
         cannot tell what that replay would still send. To see that, run the dry run with that target \
         (for a stream, also in that region); to see every selected record, pass another --checkpoint file"
    )]
    DryRunWithoutTarget {
        /// The checkpoint path.
        path: PathBuf,
        /// The target the file was written for.
        found: String,
    },
    /// The problems file beside the checkpoint cannot be written ([`problems_path`]).
    #[error(
        "cannot write the problems file {path} beside the checkpoint: {source}; it keeps what the checkpoint counts as done without sending (refused items): make it writable, or pass another --checkpoint"
    )]
    Problems {
        /// The problems file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another run holds the checkpoint's lock (see the module docs).
    #[error(
        "another replay is using the checkpoint {path} (it holds the lock {lock}); wait for it to end, or pass another --checkpoint file"
    )]
    Locked {
        /// The checkpoint path.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock the checkpoint file {path} through {lock}: {source}")]
    Lock {
        /// The checkpoint path.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The journal beside the checkpoint cannot be read, or holds a line that is not a change.
    #[error(
        "cannot read the checkpoint's journal {path}: {reason}; it holds what the last run confirmed after it last wrote the checkpoint whole. Move it away only to send that again"
    )]
    Journal {
        /// The journal path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing the file failed.
    #[error("cannot write the checkpoint file {path}: {source}")]
    Write {
        /// The checkpoint path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The items of one object the target has confirmed (accepted, or refused for good).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneItems {
    /// Items `0..prefix` are all done.
    prefix: usize,
    /// Done items at or after `prefix`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    extra: BTreeSet<usize>,
}

impl DoneItems {
    /// Whether item `index` is done.
    #[must_use]
    pub fn contains(&self, index: usize) -> bool {
        index < self.prefix || self.extra.contains(&index)
    }

    /// Marks item `index` done.
    pub fn insert(&mut self, index: usize) {
        if index >= self.prefix {
            self.extra.insert(index);
        }
        while self.extra.remove(&self.prefix) {
            self.prefix += 1;
        }
    }

    /// How many items are done.
    #[must_use]
    pub fn len(&self) -> usize {
        self.prefix + self.extra.len()
    }

    /// Whether no item is done.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An object in progress, as version 1 stored it: its key beside the fields of [`InProgress`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Partial {
    key: String,
    #[serde(flatten)]
    progress: InProgress,
}

/// The confirmed items of an object in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InProgress {
    /// The object's size when the items were confirmed (a replaced object starts over).
    size: u64,
    /// The fingerprint of the object's items when they were confirmed ([`items_fingerprint`]).
    /// `done` holds indexes into that list; a replay that reads the same object into another
    /// list (a reader that takes a line another skipped, or splits records differently) starts
    /// the object over rather than skip one item and send another twice. Absent in files of
    /// version 1 and 2: such progress is not trusted either; nor is the item count a
    /// development version wrote here (a number: read as absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "fingerprint_or_none"
    )]
    items: Option<String>,
    done: DoneItems,
}

/// A fingerprint, or `None` for anything else found under its name (a number: the item count a
/// development version of version 2 wrote there), so that such a file still opens and its
/// objects in progress start over rather than the whole file be refused.
fn fingerprint_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(fingerprint) => Some(fingerprint),
        _ => None,
    })
}

/// What is stored in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    version: u32,
    /// The source this replay reads, e.g. `s3://bucket/prefix/`.
    source: String,
    /// The target, as [`crate::target::Target::describe`] names it (`stream:NAME (region R)`,
    /// `http:URL`): the kind and the destination. Checked on open (see the module docs).
    target: String,
    /// Finished objects: key → size.
    finished: BTreeMap<String, u64>,
    /// Objects with confirmed items that are not finished: key → progress. One per object, so
    /// that working on another object never loses an interrupted one's progress.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    in_progress: BTreeMap<String, InProgress>,
    /// Version 1's single object in progress; moved into `in_progress` on open, never written.
    #[serde(default, skip_serializing)]
    partial: Option<Partial>,
    /// The objects the first run selected and had not finished, less those finished since:
    /// with `finished` and `in_progress`, every object this replay is about
    /// ([`Checkpoint::knows`]). Absent in files written before it was kept: set by the next
    /// run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<BTreeSet<String>>,
    /// When the first run recorded `pending` (Unix seconds, this host's clock): objects written
    /// since into an hour well before it cannot hold this replay's records
    /// ([`Checkpoint::filed_before_first_run`]). Absent in files written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    began: Option<i64>,
    /// The first run's filters ([`crate::replay::Selection::describe`]): a run with other
    /// filters is another replay and is refused ([`Checkpoint::check_selection`]). Absent in
    /// files written before it was kept: set by the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selection: Option<String>,
    /// Drawn anew ([`journal::new_tag`]) each time the checkpoint takes its journal in, and for
    /// a new checkpoint: the journal names the tag of the checkpoint it continues, so one
    /// already taken in, or one of another checkpoint, is not applied ([`crate::journal`]).
    /// Absent (0) in files before version 4, whose journal is never read.
    #[serde(default)]
    tag: u64,
}

/// One change, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    /// An object's confirmed items ([`Checkpoint::record_progress`]).
    Progress {
        key: String,
        #[serde(flatten)]
        progress: InProgress,
    },
    /// An object's progress dropped (none of its items confirmed).
    Cleared { key: String },
    /// An object finished ([`Checkpoint::record_finished`]).
    Finished { key: String, size: u64 },
}

impl State {
    /// Makes `change`. Each change sets what it names to one value, so a change made twice
    /// leaves what once did.
    fn apply(&mut self, change: Change) {
        match change {
            Change::Progress { key, progress } => {
                self.in_progress.insert(key, progress);
            }
            Change::Cleared { key } => {
                self.in_progress.remove(&key);
            }
            Change::Finished { key, size } => {
                self.in_progress.remove(&key);
                if let Some(pending) = self.pending.as_mut() {
                    pending.remove(&key);
                }
                self.finished.insert(key, size);
            }
        }
    }
}

/// The checkpoint of one replay, backed by a file (or by nothing, for a dry run).
#[derive(Debug)]
pub struct Checkpoint {
    /// The lock of a run that writes the file at `path`; `None` for a run that does not.
    file: Option<Backing>,
    state: State,
    /// Problems noted since the last write, as lines for [`problems_path`].
    pending_problems: Vec<u8>,
    /// How many times each problem ([`problem_identity`]) is in the file, and how many times
    /// this run met it: a problem is appended only when this run meets it more often than the
    /// file holds it. A problem met again by a later run (the unreadable lines of an object
    /// resumed or read again, an object that still cannot be fetched) is then not appended
    /// twice, while two events of one line refused for the same reason are both kept.
    recorded: HashMap<u64, Seen>,
    /// The checkpoint's path, when it has one (a run that writes it, or a dry run that reads
    /// it).
    path: Option<PathBuf>,
    /// The journal this run appends to, once it has written the checkpoint whole.
    journal: Option<Journal>,
    /// Changes made (or read from the journal) since the checkpoint file was last written.
    unsaved: bool,
    /// The size of the checkpoint file as last written (or read).
    saved_bytes: u64,
    /// The journal is taken in when it passes both `saved_bytes` and this (0: after every
    /// change, for tests that need the checkpoint itself written after a batch).
    compact_at_least: u64,
}

/// The file beside the checkpoint to which every run appends the problems it met, one JSON
/// object per line (`at`, Unix seconds; `kind`; `key`; `line`; `reason`): `<checkpoint>.problems.ndjson`.
///
/// Items refused for good count as done in the checkpoint, so a re-run does not send them, and
/// the summary that names them is one run's stdout. A lost stdout (a Kubernetes Job retried)
/// left only the log; this file keeps them with the checkpoint that skips them. It is written
/// and flushed (`fsync`) before the checkpoint that counts them as done. A problem a later run
/// meets again (the unreadable lines of an object resumed or read again, an object that still
/// cannot be fetched) is not appended again: a run appends a problem only as many more times
/// as it met it than the file already holds it (kind, key, line and reason alike; so two
/// events of one line refused for the same reason are two lines).
#[must_use]
pub fn problems_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.as_os_str().to_owned();
    name.push(".problems.ndjson");
    PathBuf::from(name)
}

/// The lock a run that writes the checkpoint holds on it while it may.
#[derive(Debug)]
struct Backing {
    /// The open lock file; the lock goes with it.
    _lock: std::fs::File,
}

impl Checkpoint {
    /// Opens the checkpoint at `path` for a run that writes it, or starts an empty one if the
    /// file does not exist; takes the lock first (see the module docs) and holds it until the
    /// checkpoint is dropped.
    ///
    /// `target` is the target's [`crate::target::Target::describe`].
    ///
    /// # Errors
    /// Another run holds the lock; the file cannot be read, is not a checkpoint, or belongs to
    /// another source or target.
    pub fn open(path: &Path, source: &str, target: &str) -> Result<Self, CheckpointError> {
        // One file, one lock, whatever name it is given by: through a symlink, or with another
        // spelling of its directory, it is the file it resolves to that is locked and written.
        let path = &resolve(path);
        let lock = lock(path)?;
        let checkpoint = Self::open_read_only(path, source, target)?;
        Ok(Self {
            file: Some(Backing { _lock: lock }),
            recorded: recorded_problems(&problems_path(path), &checkpoint.state.finished),
            ..checkpoint
        })
    }

    /// Reads the checkpoint at `path` as [`Checkpoint::open`] does, without the lock, for a dry
    /// run: it honours what the file records and never writes it.
    ///
    /// # Errors
    /// The file cannot be read, is not a checkpoint, or belongs to another source or target.
    pub fn open_read_only(
        path: &Path,
        source: &str,
        target: &str,
    ) -> Result<Self, CheckpointError> {
        // The file a run writes (through a symlink, another spelling of its directory), and the
        // journal beside it.
        let path = &resolve(path);
        let mut has_journal = false;
        let (state, saved_bytes) = match read_state(path, source)? {
            Some((mut state, saved_bytes)) => {
                if !belongs_to(&state.target, target) {
                    return Err(CheckpointError::OtherTarget {
                        path: path.to_owned(),
                        expected: target.to_owned(),
                        found: state.target,
                    });
                }
                // A file naming a stream without its region names it from the next save on.
                target.clone_into(&mut state.target);
                if let Some(Partial { key, progress }) = state.partial.take() {
                    state.in_progress.insert(key, progress);
                }
                // A file before version 4 has no journal: a journal beside it is another
                // checkpoint's (say one moved away when an older `replay` refused it).
                has_journal = state.version >= 4;
                if !has_journal {
                    state.tag = journal::new_tag();
                }
                state.version = CHECKPOINT_VERSION;
                (state, saved_bytes)
            }
            None => (Self::empty_state(source, target), 0),
        };
        let mut checkpoint = Self {
            path: Some(path.to_owned()),
            saved_bytes,
            ..Self::in_memory_with(state)
        };
        // Without a checkpoint file, a journal can only be left from a checkpoint that was
        // removed: it belongs to nothing, and is not read.
        if has_journal {
            let journal = journal::path_of(path);
            let changes: Vec<Change> =
                journal::read(&journal, checkpoint.state.tag).map_err(|e| {
                    CheckpointError::Journal {
                        path: journal.clone(),
                        reason: e.to_string(),
                    }
                })?;
            checkpoint.unsaved = !changes.is_empty();
            for change in changes {
                checkpoint.state.apply(change);
            }
        }
        Ok(checkpoint)
    }

    /// Writes the checkpoint once before anything is sent, so one that cannot be written (no
    /// such directory, read-only, disk full) stops the run at the start, not after the first
    /// batch, whose records the next run would then send again.
    ///
    /// # Errors
    /// [`CheckpointError::Write`].
    pub fn ensure_writable(&mut self) -> Result<(), CheckpointError> {
        self.compact()?;
        // The problems file too: a refusal found after the first batch must not stop the run
        // after that batch, which the next run would send again. One that does not exist yet
        // is created in the directory the checkpoint was just written to.
        if let Some(path) = self.written() {
            let problems = problems_path(path);
            if std::fs::symlink_metadata(&problems).is_ok() {
                open_problems(&problems)?;
            }
        }
        Ok(())
    }

    /// The checkpoint of a dry run without a target: an empty one that writes nothing, if there
    /// is no file at `path`.
    ///
    /// # Errors
    /// The file exists ([`CheckpointError::DryRunWithoutTarget`] naming its target, or why it is not a
    /// checkpoint of this source).
    pub fn open_without_target(path: &Path, source: &str) -> Result<Self, CheckpointError> {
        match read_state(path, source)? {
            Some((state, _)) => Err(CheckpointError::DryRunWithoutTarget {
                path: path.to_owned(),
                found: state.target,
            }),
            None => Ok(Self::in_memory(source, "none")),
        }
    }

    /// A checkpoint that remembers nothing and writes nothing (for `--dry-run` without a file).
    #[must_use]
    pub fn in_memory(source: &str, target: &str) -> Self {
        Self::in_memory_with(Self::empty_state(source, target))
    }

    fn in_memory_with(state: State) -> Self {
        Self {
            file: None,
            state,
            pending_problems: Vec::new(),
            recorded: HashMap::new(),
            path: None,
            journal: None,
            unsaved: false,
            saved_bytes: 0,
            compact_at_least: COMPACT_AT_LEAST,
        }
    }

    fn empty_state(source: &str, target: &str) -> State {
        State {
            version: CHECKPOINT_VERSION,
            source: source.to_owned(),
            target: target.to_owned(),
            finished: BTreeMap::new(),
            in_progress: BTreeMap::new(),
            partial: None,
            pending: None,
            began: None,
            selection: None,
            tag: journal::new_tag(),
        }
    }

    /// Whether `key` is one of the objects this replay is about: one its first run selected
    /// (finished, in progress or still pending). Always true before a first run has recorded
    /// them, and for a checkpoint written before they were kept.
    ///
    /// Later runs leave out the objects it does not know (written since, or selected by a wider
    /// filter): among them are this replay's own records, which a stream whose backup is the
    /// source backs up again (as new `AllData` objects, or error output if they fail again). A
    /// re-run that took them would send every record the first run delivered a second time
    /// (helper-69). Keys, not times: an object rewritten in place (re-encrypted, restored) is
    /// still the same object, and no clock is compared with S3's.
    #[must_use]
    pub fn knows(&self, key: &str) -> bool {
        self.state.pending.as_ref().is_none_or(|pending| {
            pending.contains(key)
                || self.state.finished.contains_key(key)
                || self.state.in_progress.contains_key(key)
        })
    }

    /// Whether `key`, which the first run did not select ([`Checkpoint::knows`]), is filed
    /// under an hour that ended more than [`LATE_MARGIN_SECS`] before the first run began.
    /// Such an object cannot hold this replay's own records, and is taken by a re-run: a
    /// failure of the replayed hours that Firehose wrote late (it retries a failing
    /// destination for up to two hours, and files what it gives up on under the hour the
    /// records arrived in). Firehose files an object under the arrival hour of its oldest
    /// record (and names it with a time no earlier), and a record the replay sent arrived after
    /// the first run began. False when the first run's start is not known (an older file) or
    /// the key has no hour. Keys are read as UTC, Firehose's default: a stream that files its
    /// objects in a time zone west of UTC (`CustomTimeZone`) makes the replay's own objects
    /// look earlier; the README says what to do.
    #[must_use]
    pub fn filed_before_first_run(&self, key: &str) -> bool {
        // Set by the first run's `begin`, with `pending`.
        let Some(began) = self.state.began else {
            return false;
        };
        let Some(cutoff) = UtcHour::of_unix(began.saturating_sub(LATE_MARGIN_SECS)) else {
            return false;
        };
        UtcHour::of_key(key).is_some_and(|hour| hour < cutoff)
    }

    /// Refuses a run whose filters differ from the first run's: with other filters it is
    /// another replay, and this checkpoint would leave out whatever its first run did not select
    /// (or the first run's record of what it did would not apply). A file that does not say
    /// (an older one, or no first run yet) takes any.
    ///
    /// # Errors
    /// [`CheckpointError::OtherSelection`].
    pub fn check_selection(&self, selection: &str) -> Result<(), CheckpointError> {
        match &self.state.selection {
            Some(first) if first != selection => Err(CheckpointError::OtherSelection {
                path: self.path.clone().unwrap_or_default(),
                expected: selection.to_owned(),
                found: first.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Records the objects this run selected as the replay's, with its filters (`selection`)
    /// and its start (`now`, Unix seconds), unless a first run did already. Written with the
    /// next save (before anything is sent: [`Checkpoint::ensure_writable`]).
    pub fn begin<'k>(
        &mut self,
        selected: impl IntoIterator<Item = &'k str>,
        selection: &str,
        now: i64,
    ) {
        if self.state.pending.is_none() {
            let finished = &self.state.finished;
            self.state.pending = Some(
                selected
                    .into_iter()
                    .filter(|key| !finished.contains_key(*key))
                    .map(str::to_owned)
                    .collect(),
            );
            self.state.began = Some(now);
        }
        if self.state.selection.is_none() {
            self.state.selection = Some(selection.to_owned());
        }
    }

    /// Whether the object was finished by an earlier run.
    #[must_use]
    pub fn is_finished(&self, key: &str, size: u64) -> bool {
        self.state.finished.get(key) == Some(&size)
    }

    /// The items of the object an earlier run had confirmed (none if it was not in progress).
    #[must_use]
    pub fn done_items(&self, key: &str, size: u64, items: &str) -> DoneItems {
        match self.state.in_progress.get(key) {
            Some(p) if p.size == size && p.items.as_deref() == Some(items) => p.done.clone(),
            Some(p) if p.size == size => {
                tracing::warn!(
                    key,
                    then = p.items.as_deref().unwrap_or("none (an older checkpoint)"),
                    now = items,
                    "the object reads into other items than when its progress was saved: sending it from the start; items delivered before may arrive twice"
                );
                DoneItems::default()
            }
            _ => DoneItems::default(),
        }
    }

    /// Whether an earlier run finished the object at `key`, whatever its size now.
    #[must_use]
    pub fn has_finished(&self, key: &str) -> bool {
        self.state.finished.contains_key(key)
    }

    /// Number of finished objects.
    #[must_use]
    pub fn finished_count(&self) -> usize {
        self.state.finished.len()
    }

    /// Records which items of the object are confirmed, and saves.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn record_progress(
        &mut self,
        key: &str,
        size: u64,
        items: &str,
        done: &DoneItems,
    ) -> Result<(), CheckpointError> {
        self.flush_problems()?;
        let key = key.to_owned();
        self.record(if done.is_empty() {
            Change::Cleared { key }
        } else {
            Change::Progress {
                key,
                progress: InProgress {
                    size,
                    items: Some(items.to_owned()),
                    done: done.clone(),
                },
            }
        })
    }

    /// Records that the object is finished, and saves.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn record_finished(&mut self, key: &str, size: u64) -> Result<(), CheckpointError> {
        self.flush_problems()?;
        self.record(Change::Finished {
            key: key.to_owned(),
            size,
        })
    }

    /// Makes `change` and saves it: appends it to the journal (and takes the journal in once it
    /// has outgrown the checkpoint), or writes the checkpoint whole if this run has not yet.
    fn record(&mut self, change: Change) -> Result<(), CheckpointError> {
        if self.written().is_none() {
            self.state.apply(change);
            return Ok(());
        }
        let Some(journal) = self.journal.as_mut() else {
            self.state.apply(change);
            self.unsaved = true;
            return self.compact();
        };
        if let Err(source) = journal.append(&change) {
            // Part of the line may be in the file: nothing more goes after it.
            self.journal = None;
            return Err(CheckpointError::Write {
                path: self.written().map(journal::path_of).unwrap_or_default(),
                source,
            });
        }
        let journal_bytes = journal.bytes();
        self.state.apply(change);
        self.unsaved = true;
        if self.compact_at_least == 0 || journal_bytes > self.saved_bytes.max(self.compact_at_least)
        {
            self.compact()?;
        }
        Ok(())
    }

    /// Writes the checkpoint whole, taking in what the journal holds (under a new tag, if it
    /// holds anything), and starts the journal afresh.
    fn compact(&mut self) -> Result<(), CheckpointError> {
        let Some(path) = self.written().map(Path::to_owned) else {
            return Ok(());
        };
        // Until the new journal is started, nothing is appended to the old one.
        self.journal = None;
        if self.unsaved {
            self.state.tag = journal::new_tag();
        }
        let journal = journal::path_of(&path);
        self.save()?;
        self.unsaved = false;
        self.journal = Some(Journal::start(&journal, self.state.tag).map_err(|source| {
            CheckpointError::Write {
                path: journal,
                source,
            }
        })?);
        Ok(())
    }

    /// Writes the checkpoint whole after every change, as before the journal: only for tests
    /// that need a save after a batch to fail as a full disk would make it.
    #[doc(hidden)]
    pub fn compact_after_every_change(&mut self) {
        self.compact_at_least = 0;
    }

    /// Ends the run's writing: takes the journal into the checkpoint (if it holds anything) and
    /// removes it, so that the checkpoint of a run that ended is one file. Until then (and if
    /// this fails, or the run is killed) the journal keeps every change, and the next run takes
    /// it in.
    ///
    /// # Errors
    /// The checkpoint cannot be written, or the journal removed.
    pub fn close(&mut self) -> Result<(), CheckpointError> {
        let Some(path) = self.written().map(Path::to_owned) else {
            return Ok(());
        };
        if self.journal.is_none() && !self.unsaved {
            return Ok(());
        }
        if self.unsaved {
            self.compact()?;
        }
        self.journal = None;
        let journal = journal::path_of(&path);
        std::fs::remove_file(&journal).map_err(|source| CheckpointError::Write {
            path: journal,
            source,
        })
    }

    /// Notes a problem for [`problems_path`]; it is written with the next save, or by
    /// [`Checkpoint::flush_problems`]. A run that writes no checkpoint (a dry run) keeps none.
    pub fn note_problem(&mut self, problem: &Problem) {
        if self.file.is_none() {
            return;
        }
        let kind = serde_json::to_value(problem.kind).unwrap_or_default();
        let identity = problem_identity(
            kind.as_str().unwrap_or_default(),
            &problem.key,
            problem.line.and_then(|l| u64::try_from(l).ok()),
            &problem.reason,
        );
        let seen = self.recorded.entry(identity).or_default();
        seen.this_run += 1;
        if seen.this_run <= seen.in_file {
            return;
        }
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = serde_json::json!({
            "at": at,
            "kind": problem.kind,
            "key": problem.key,
            "line": problem.line,
            "reason": problem.reason,
        });
        // A `Value` always serialises.
        if serde_json::to_writer(&mut self.pending_problems, &line).is_ok() {
            self.pending_problems.push(b'\n');
        }
    }

    /// The problems file of this checkpoint, if any run has written one (a dry run reading
    /// the checkpoint names it too).
    #[must_use]
    pub fn problems_file(&self) -> Option<PathBuf> {
        let path = problems_path(self.path.as_deref()?);
        path.is_file().then_some(path)
    }

    /// Appends the problems noted so far to [`problems_path`] and flushes it (`fsync`).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn flush_problems(&mut self) -> Result<(), CheckpointError> {
        let Some(path) = self.written() else {
            return Ok(());
        };
        if self.pending_problems.is_empty() {
            return Ok(());
        }
        let problems = problems_path(path);
        let mut file = open_problems(&problems)?;
        let err = |source| CheckpointError::Problems {
            path: problems.clone(),
            source,
        };
        file.write_all(&self.pending_problems).map_err(err)?;
        file.sync_data().map_err(err)?;
        self.pending_problems.clear();
        Ok(())
    }

    /// The file this run writes: the checkpoint's path, when the run holds its lock.
    fn written(&self) -> Option<&Path> {
        self.file.as_ref().and(self.path.as_deref())
    }

    /// Writes the state: temporary file, fsync, rename over the checkpoint, fsync of the
    /// directory (so that the rename itself survives a power loss).
    fn save(&mut self) -> Result<(), CheckpointError> {
        let Some(path) = self.written() else {
            return Ok(());
        };
        let err = |source| CheckpointError::Write {
            path: path.to_owned(),
            source,
        };
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(|e| err(std::io::Error::other(e)))?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let mut file = std::fs::File::create(&tmp).map_err(err)?;
        file.write_all(&bytes).map_err(err)?;
        file.sync_all().map_err(err)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(err)?;
        sync_parent_dir(path).map_err(err)?;
        self.saved_bytes = bytes.len() as u64;
        Ok(())
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Syncs the directory holding `path`, so that a file created or renamed there is found after
/// a power loss.
pub(crate) fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(parent_dir(path))?.sync_all()
}

/// The file `path` names: the target of a symlink, in a canonical directory; `path` itself if
/// its directory cannot be resolved (opening then fails with the reason).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    // No such file yet (or a dangling symlink: written as a new file in its place).
    match (std::fs::canonicalize(parent_dir(path)), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

/// Counts of one problem: in the problems file when the run opened it, and met by this run.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    in_file: usize,
    this_run: usize,
}

/// What makes two problems the same one: kind, key, line and reason (not the time).
fn problem_identity(kind: &str, key: &str, line: Option<u64>, reason: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (kind, key, line, reason).hash(&mut hasher);
    hasher.finish()
}

/// How many times each problem is in the problems file at `path` (none if there is no file);
/// a line that is not a problem (torn by a failed write) is passed over.
///
/// The file only grows (every run appends to it), so it is read a line at a time, and only the
/// problems of objects not `finished` are counted: a finished object is not read again, so its
/// problems cannot be met again (one replaced since, under a new size, is a new object, whose
/// problems are appended anew). Reading the whole file into `Value`s held a file of millions of
/// lines in memory several times over at every start (helper-74).
fn recorded_problems(path: &Path, finished: &BTreeMap<String, u64>) -> HashMap<u64, Seen> {
    use std::borrow::Cow;
    use std::io::BufRead as _;

    /// A line of the file, borrowed where it has no escapes.
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(borrow, default)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        key: Cow<'a, str>,
        #[serde(default)]
        line: Option<u64>,
        #[serde(borrow, default)]
        reason: Cow<'a, str>,
    }

    let mut recorded: HashMap<u64, Seen> = HashMap::new();
    let Ok(file) = std::fs::File::open(path) else {
        return recorded;
    };
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let Ok(problem) = serde_json::from_slice::<Line<'_>>(text) else {
            continue;
        };
        if finished.contains_key(problem.key.as_ref()) {
            continue;
        }
        let identity = problem_identity(&problem.kind, &problem.key, problem.line, &problem.reason);
        recorded.entry(identity).or_default().in_file += 1;
    }
    recorded
}

/// The problems file, opened to append; a line a failed write left half written is ended
/// first, so every later problem starts a line of its own.
fn open_problems(path: &Path) -> Result<std::fs::File, CheckpointError> {
    use std::io::{Read as _, Seek as _};
    let err = |source| CheckpointError::Problems {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(std::io::SeekFrom::Start(len - 1)).map_err(err)?;
        file.read_exact(&mut last).map_err(err)?;
        if last[0] != b'\n' {
            file.write_all(b"\n").map_err(err)?;
        }
    }
    Ok(file)
}

/// `.<name>.lock` beside the checkpoint at `path`, opened and exclusively locked.
fn lock(path: &Path) -> Result<std::fs::File, CheckpointError> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or(path.as_os_str()));
    name.push(".lock");
    let lock = parent_dir(path).join(name);
    let failed = |source| CheckpointError::Lock {
        path: path.to_owned(),
        lock: lock.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
    {
        Ok(file) => file,
        // A lock file made by another user, read-only to this one: `flock` works on it all the
        // same.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            std::fs::File::open(&lock).map_err(failed)?
        }
        Err(e) => return Err(failed(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CheckpointError::Locked {
            path: path.to_owned(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(failed(source)),
    }
}

/// The state in the file at `path`, checked for its version and `source`, and the file's size;
/// `None` if there is no file.
fn read_state(path: &Path, source: &str) -> Result<Option<(State, u64)>, CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if !(OLDEST_READABLE_VERSION..=CHECKPOINT_VERSION).contains(&state.version) {
        return Err(CheckpointError::Invalid {
            path: path.to_owned(),
            reason: format!("it has version {}", state.version),
        });
    }
    if state.source != source {
        return Err(CheckpointError::OtherSource {
            path: path.to_owned(),
            expected: source.to_owned(),
            found: state.source,
        });
    }
    Ok(Some((state, bytes.len() as u64)))
}

/// Whether a file written for the target named `found` belongs to `target`: the same name, or
/// `stream:NAME` as written before the region was part of it, for `stream:NAME (region …)`
/// (stream names hold no spaces; see the module docs).
fn belongs_to(found: &str, target: &str) -> bool {
    found == target
        || (found.starts_with("stream:")
            && !found.contains(' ')
            && target
                .strip_prefix(found)
                .is_some_and(|rest| rest.starts_with(" (")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_a_numeric_item_count_opens_and_restarts_its_object_in_progress() {
        // What 6dba158 wrote (helper-58, H1): refused whole, such a file would stop every run.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let written = r#"{"version":2,"source":"s","target":"t","finished":{"k1":1},
            "in_progress":{"k2":{"size":2,"items":3,"done":{"prefix":1}}}}"#;
        std::fs::write(&path, written).unwrap();
        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(cp.is_finished("k1", 1));
        assert!(cp.done_items("k2", 2, "fp").is_empty());
    }

    #[test]
    fn a_problem_met_again_by_a_later_run_is_not_appended_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let unreadable = |line| Problem {
            kind: crate::summary::ProblemKind::Unreadable,
            key: "k".into(),
            line: Some(line),
            reason: "not JSON".into(),
        };
        let run = |problems: &[Problem]| {
            let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
            cp.ensure_writable().unwrap();
            for p in problems {
                cp.note_problem(p);
            }
            cp.flush_problems().unwrap();
        };
        // Two events of line 3 refused alike: both kept.
        run(&[unreadable(3), unreadable(3)]);
        // The object read again (resumed): line 3 twice more, and line 9 new.
        run(&[unreadable(3), unreadable(9), unreadable(3)]);
        let text = std::fs::read_to_string(problems_path(&path)).unwrap();
        let lines: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(lines, [3, 3, 9], "{text}");
    }

    #[test]
    fn the_problems_of_finished_objects_are_not_kept_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json.problems.ndjson");
        let lines = [
            r#"{"at":1,"kind":"unreadable","key":"done","line":3,"reason":"x"}"#,
            r#"{"at":1,"kind":"unreadable","key":"open","line":3,"reason":"a \"quoted\" reason"}"#,
            r#"{"at":1,"kind":"unreadable","key":"open","line":3,"reason":"a \"quoted\" reason"}"#,
            r#"{"at":1,"kind":"unread"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let finished = BTreeMap::from([("done".to_owned(), 1)]);
        let recorded = recorded_problems(&path, &finished);
        let open = problem_identity("unreadable", "open", Some(3), "a \"quoted\" reason");
        assert_eq!(
            recorded.len(),
            1,
            "only the open object's problem, once per identity"
        );
        assert_eq!(recorded[&open].in_file, 2);
        assert_eq!(recorded_problems(&path, &BTreeMap::new()).len(), 2);
    }

    #[test]
    fn only_objects_filed_well_before_the_first_run_are_taken_as_late() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        let key = |hour: &str| format!("http-endpoint-failed/2026/11/25/{hour}/s-1-x");
        assert!(
            !cp.filed_before_first_run(&key("08")),
            "no first run: nothing is known to predate it"
        );
        // 2026-11-25T10:10:00Z: with the hour's margin, only hours before 09 are safe.
        cp.begin(["selected"], "everything", 1_795_601_400);
        assert!(cp.filed_before_first_run(&key("08")));
        assert!(!cp.filed_before_first_run(&key("09")), "inside the margin");
        assert!(
            !cp.filed_before_first_run(&key("10")),
            "the first run's hour"
        );
        assert!(!cp.filed_before_first_run(&key("11")));
        assert!(!cp.filed_before_first_run("no-hour-in-this-key"));
        // At 10:50 the object of 09:xx may hold records that arrived with the replay's own
        // (buffered together): still not taken (a 15-minute margin took it).
        let other = dir.path().join("cp2.json");
        let mut late = Checkpoint::open(&other, "s", "t").unwrap();
        late.begin(["selected"], "everything", 1_795_601_400 + 40 * 60);
        assert!(!late.filed_before_first_run(&key("09")));
        assert!(late.filed_before_first_run(&key("08")));
        // The start and the filters are the first run's: a later begin changes neither.
        cp.begin(["other"], "--since 2026-11-26T00", 1_895_601_400);
        assert!(cp.filed_before_first_run(&key("08")));
        assert!(!cp.filed_before_first_run("2026/11/27/00/s-1-x"));
        assert!(cp.check_selection("everything").is_ok());
        let err = cp.check_selection("--since 2026-11-26T00").unwrap_err();
        assert!(
            matches!(&err, CheckpointError::OtherSelection { expected, found, .. }
                if expected == "--since 2026-11-26T00" && found == "everything"),
            "{err}"
        );
    }

    #[test]
    fn the_problems_file_is_checked_at_start_and_a_torn_line_is_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        // A directory where the file should be: refused before anything is sent.
        std::fs::create_dir(problems_path(&path)).unwrap();
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        let err = cp.ensure_writable().unwrap_err();
        assert!(matches!(err, CheckpointError::Problems { .. }), "{err}");
        assert!(err.to_string().contains("problems file"), "{err}");
        drop(cp);
        std::fs::remove_dir(problems_path(&path)).unwrap();

        // Half a line left by a failed write: the next problem starts a line of its own.
        std::fs::write(problems_path(&path), r#"{"kind":"rejec"#).unwrap();
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        cp.ensure_writable().unwrap();
        cp.note_problem(&Problem {
            kind: crate::summary::ProblemKind::Rejected,
            key: "k".into(),
            line: Some(1),
            reason: "refused".into(),
        });
        cp.flush_problems().unwrap();
        let text = std::fs::read_to_string(problems_path(&path)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let last: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(last["key"], "k");
        assert_eq!(cp.problems_file(), Some(problems_path(&path)));
        drop(cp);
        // A dry run reading the checkpoint names the file too.
        let read_only = Checkpoint::open_read_only(&path, "s", "t").unwrap();
        assert_eq!(read_only.problems_file(), Some(problems_path(&path)));
    }

    #[test]
    fn the_fingerprint_tells_lists_apart_by_items_order_and_boundaries() {
        let fp = |items: &[&str]| items_fingerprint(items.iter().map(|i| i.as_bytes()));
        assert_eq!(fp(&["ab", "c"]), fp(&["ab", "c"]));
        assert!(fp(&["ab", "c"]).starts_with("sha256:"));
        assert_eq!(fp(&["ab", "c"]).len(), "sha256:".len() + 16);
        assert_ne!(fp(&["ab", "c"]), fp(&["a", "bc"]), "boundaries");
        assert_ne!(fp(&["ab", "c"]), fp(&["c", "ab"]), "order");
        assert_ne!(fp(&["ab"]), fp(&["ab", ""]), "an empty item");
    }

    #[test]
    fn progress_and_finished_objects_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(&path, "s3://b/p/", "stream:x").unwrap();
        assert!(!cp.is_finished("k1", 10));
        cp.record_finished("k1", 10).unwrap();
        let mut done = DoneItems::default();
        for i in [0, 1, 2, 5] {
            done.insert(i);
        }
        cp.record_progress("k2", 20, "fp", &done).unwrap();
        drop(cp); // the run ends without closing (killed), and with it its lock
        let names = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(), [".cp.json.lock", "cp.json", "cp.json.journal"]);

        for closed in [false, true] {
            let mut cp = Checkpoint::open(&path, "s3://b/p/", "stream:x").unwrap();
            assert!(cp.is_finished("k1", 10), "closed before: {closed}");
            assert!(!cp.is_finished("k1", 11), "a replaced object is read again");
            assert_eq!(cp.done_items("k2", 20, "fp"), done);
            assert!(cp.done_items("k2", 21, "fp").is_empty());
            assert!(cp.done_items("k3", 20, "fp").is_empty());
            // The same object read into other items (another replay version): its indexes
            // would point at other items, so it starts over (helper-56, L1; helper-57, M1).
            assert!(cp.done_items("k2", 20, "other").is_empty());
            cp.close().unwrap();
            // No temporary file is left behind, and the journal is in the checkpoint.
            assert_eq!(names(), [".cp.json.lock", "cp.json"]);
        }
    }

    #[test]
    fn a_journal_the_checkpoint_already_took_in_is_not_applied_again() {
        // A crash after the checkpoint was written whole and before the journal was started
        // afresh leaves the old journal beside the new checkpoint.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let journal = journal::path_of(&path);
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        cp.ensure_writable().unwrap();
        let mut done = DoneItems::default();
        done.insert(0);
        cp.record_progress("k", 1, "fp", &done).unwrap();
        let old_journal = std::fs::read(&journal).unwrap();
        cp.record_finished("k", 1).unwrap();
        cp.close().unwrap();
        drop(cp);
        std::fs::write(&journal, &old_journal).unwrap();

        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(cp.is_finished("k", 1));
        assert!(
            cp.done_items("k", 1, "fp").is_empty(),
            "the old journal's progress is not brought back"
        );
    }

    #[test]
    fn a_journal_left_from_a_removed_checkpoint_is_not_read_into_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        cp.ensure_writable().unwrap();
        cp.record_finished("k", 1).unwrap();
        drop(cp); // killed: the change is in the journal only
        std::fs::remove_file(&path).unwrap(); // "start over" by removing the checkpoint

        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(!cp.is_finished("k", 1));
        cp.ensure_writable().unwrap();
        drop(cp);
        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(!cp.is_finished("k", 1), "the old journal is gone");
    }

    #[test]
    fn a_checkpoint_swapped_in_beside_a_journal_does_not_take_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut a = Checkpoint::open(&path, "s", "t").unwrap();
        a.ensure_writable().unwrap();
        a.record_finished("k", 1).unwrap();
        drop(a); // killed: the change is in the journal only

        // Another checkpoint of the same source and target, written elsewhere, copied in.
        let other = dir.path().join("other.json");
        let mut b = Checkpoint::open(&other, "s", "t").unwrap();
        b.ensure_writable().unwrap();
        b.close().unwrap();
        drop(b);
        std::fs::copy(&other, &path).unwrap();
        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(
            !cp.is_finished("k", 1),
            "the journal is the other checkpoint's"
        );
        drop(cp);

        // A version 3 file (an older replay's; no tag, read as 0) beside a journal naming tag 0:
        // such a file has no journal, so it is never read.
        std::fs::write(
            &path,
            r#"{"version":3,"source":"s","target":"t","finished":{}}"#,
        )
        .unwrap();
        std::fs::write(
            journal::path_of(&path),
            "{\"journal_of\":0}\n{\"finished\":{\"key\":\"k\",\"size\":1}}\n",
        )
        .unwrap();
        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(!cp.is_finished("k", 1));
    }

    #[test]
    fn a_dry_run_reads_the_journal_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let journal = journal::path_of(&path);
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        cp.ensure_writable().unwrap();
        cp.record_finished("k", 1).unwrap();
        drop(cp); // killed: the change is in the journal only
        let files = || {
            (
                std::fs::read(&path).unwrap(),
                std::fs::read(&journal).unwrap(),
            )
        };
        let before = files();

        let mut dry = Checkpoint::open_read_only(&path, "s", "t").unwrap();
        assert!(dry.is_finished("k", 1));
        dry.record_finished("k2", 1).unwrap();
        dry.close().unwrap();
        assert_eq!(files(), before);

        // A complete line that is not a change, and not the last (a crash cuts the last only):
        // refused, naming the journal.
        let mut bad = before.1.clone();
        bad.extend_from_slice(b"{\"finished\":\"k3\"}\n{\"cleared\":{\"key\":\"k4\"}}\n");
        std::fs::write(&journal, bad).unwrap();
        let err = Checkpoint::open_read_only(&path, "s", "t").unwrap_err();
        assert!(matches!(err, CheckpointError::Journal { .. }), "{err}");
        assert!(err.to_string().contains("cp.json.journal"), "{err}");
    }

    #[test]
    fn a_journal_that_cannot_be_written_stops_the_run_at_the_start_or_after_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let journal = journal::path_of(&path);
        // A journal that cannot be made when the run starts: found before anything is sent.
        std::fs::create_dir(&journal).unwrap();
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        let err = cp.ensure_writable().unwrap_err();
        assert!(
            matches!(&err, CheckpointError::Write { path, .. } if *path == journal),
            "{err}"
        );
        drop(cp);
        std::fs::remove_dir(&journal).unwrap();

        // A full disk after a batch: the change is not taken as saved.
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        cp.ensure_writable().unwrap();
        cp.journal = Some(Journal::full_disk());
        let err = cp.record_finished("k", 1).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::Write { path, .. } if *path == journal),
            "{err}"
        );
        assert!(!cp.is_finished("k", 1));
    }

    #[test]
    fn a_save_costs_the_same_however_many_objects_are_finished() {
        // Rewriting the whole file per save wrote O(n²) bytes over a replay of n objects.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        cp.compact_at_least = 1; // taken in as soon as the journal outgrows the checkpoint
        cp.ensure_writable().unwrap();
        let journal = journal::path_of(&path);
        let mut written = 0u64;
        let mut compactions = 0;
        let mut last_tag = cp.state.tag;
        let n = 1000;
        for i in 0..n {
            let journal_before = std::fs::metadata(&journal).unwrap().len();
            cp.record_finished(
                &format!("2026/11/25/09/stream-1-2026-11-25-09-00-00-{i:08}"),
                1,
            )
            .unwrap();
            if cp.state.tag == last_tag {
                written += std::fs::metadata(&journal).unwrap().len() - journal_before;
            } else {
                // Taken in: the whole checkpoint, and a new journal's header.
                compactions += 1;
                last_tag = cp.state.tag;
                written += std::fs::metadata(&path).unwrap().len()
                    + std::fs::metadata(&journal).unwrap().len();
            }
        }
        let checkpoint_bytes = std::fs::metadata(&path).unwrap().len();
        // Each compaction follows at least as many bytes of journal as the checkpoint had: at
        // most about twice the journal's bytes in all, whereas a rewrite per save wrote about
        // n/2 checkpoints' worth (here ~45 MB).
        let line = 80; // bytes per finished object, journal or checkpoint, about
        assert!((1..20).contains(&compactions), "{compactions} compactions");
        assert!(
            written < 4 * n * line,
            "{written} bytes written for {n} saves, checkpoint {checkpoint_bytes} bytes"
        );
        drop(cp);
        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert_eq!(cp.finished_count(), 1000);
    }

    #[test]
    fn finishing_an_object_clears_its_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(&path, "src", "t").unwrap();
        let mut done = DoneItems::default();
        done.insert(0);
        cp.record_progress("k", 1, "fp", &done).unwrap();
        cp.record_finished("k", 1).unwrap();
        drop(cp);
        let cp = Checkpoint::open(&path, "src", "t").unwrap();
        assert!(cp.done_items("k", 1, "fp").is_empty());
        assert!(cp.is_finished("k", 1));
    }

    #[test]
    fn done_items_compact_into_a_prefix() {
        let mut done = DoneItems::default();
        done.insert(2);
        done.insert(0);
        assert!(done.contains(0) && !done.contains(1) && done.contains(2));
        assert_eq!(done.len(), 2);
        done.insert(1);
        assert_eq!(
            done,
            DoneItems {
                prefix: 3,
                extra: BTreeSet::new()
            }
        );
        done.insert(1);
        assert_eq!(done.len(), 3, "inserting twice counts once");
    }

    #[test]
    fn a_checkpoint_of_another_source_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        Checkpoint::open(&path, "s3://a/", "t")
            .unwrap()
            .record_finished("k", 1)
            .unwrap();
        let err = Checkpoint::open(&path, "s3://b/", "t").unwrap_err();
        assert!(
            err.to_string().contains("pass another --checkpoint"),
            "{err}"
        );
    }

    #[test]
    fn a_checkpoint_of_another_target_is_refused_with_advice() {
        // A --to-http run finished an object (a record it could not take counted as done) and
        // was interrupted in another (indexes into the HTTP items); neither applies to a stream.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let http = "http:http://h/v1/events";
        let mut cp = Checkpoint::open(&path, "s3://a/", http).unwrap();
        cp.record_finished("k1", 1).unwrap();
        let mut done = DoneItems::default();
        done.insert(0);
        cp.record_progress("k2", 2, "fp", &done).unwrap();
        let before = std::fs::read(&path).unwrap();
        drop(cp);

        let err = Checkpoint::open(&path, "s3://a/", "stream:events").unwrap_err();
        assert!(
            matches!(&err, CheckpointError::OtherTarget { expected, found, .. }
                if expected == "stream:events" && found == http),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("pass another --checkpoint"), "{text}");
        assert!(text.contains("run it again with that target"), "{text}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file is untouched"
        );
        // the same target still resumes
        let cp = Checkpoint::open(&path, "s3://a/", http).unwrap();
        assert!(cp.is_finished("k1", 1));
        assert_eq!(cp.done_items("k2", 2, "fp"), done);
    }

    #[test]
    fn a_stream_checkpoint_of_one_region_is_refused_in_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let east = "stream:events (region us-east-1)";
        let west = "stream:events (region eu-west-1)";
        Checkpoint::open(&path, "s", east)
            .unwrap()
            .record_finished("k", 1)
            .unwrap();
        let err = Checkpoint::open(&path, "s", west).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::OtherTarget { expected, found, .. }
                if expected == west && found == east),
            "{err}"
        );
        let local = "stream:events (region us-east-1, endpoint http://127.0.0.1:4566)";
        assert!(
            Checkpoint::open(&path, "s", local).is_err(),
            "endpoint checked"
        );
        assert!(
            Checkpoint::open(&path, "s", east)
                .unwrap()
                .is_finished("k", 1)
        );
    }

    #[test]
    fn a_stream_checkpoint_named_without_its_region_resumes_and_then_names_it() {
        // Written before the region was part of a stream's name.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let old = r#"{"version":2,"source":"s","target":"stream:events","finished":{"k1":1}}"#;
        std::fs::write(&path, old).unwrap();
        let east = "stream:events (region us-east-1)";
        for other in [
            "stream:events-2 (region us-east-1)",
            "stream:event (region us-east-1)",
            "stream:other (region us-east-1)",
            "http:http://h/v1/events",
        ] {
            assert!(
                matches!(
                    Checkpoint::open(&path, "s", other),
                    Err(CheckpointError::OtherTarget { .. })
                ),
                "{other}"
            );
        }
        let mut cp = Checkpoint::open(&path, "s", east).unwrap();
        assert!(cp.is_finished("k1", 1));
        cp.record_finished("k2", 2).unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["target"], east);
        drop(cp);
        assert!(
            Checkpoint::open(&path, "s", "stream:events (region eu-west-1)").is_err(),
            "once it names the region, another region is refused"
        );
    }

    #[test]
    fn a_dry_run_without_a_target_refuses_a_file_naming_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open_without_target(&path, "s").unwrap();
        cp.record_finished("k", 1).unwrap();
        assert!(!path.exists(), "writes nothing");

        let http = "http:http://h/v1/events";
        Checkpoint::open(&path, "s", http)
            .unwrap()
            .record_finished("k", 1)
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Checkpoint::open_without_target(&path, "s").unwrap_err();
        assert!(
            matches!(&err, CheckpointError::DryRunWithoutTarget { found, .. } if found == http),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(http), "{text}");
        assert!(text.contains("pass another --checkpoint"), "{text}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file is untouched"
        );
        assert!(matches!(
            Checkpoint::open_without_target(&path, "other"),
            Err(CheckpointError::OtherSource { .. })
        ));
    }

    #[test]
    fn progress_is_kept_for_every_interrupted_object() {
        // Object A was interrupted with items 0-2 confirmed; a later run could not fetch A and
        // made progress in B. A's progress must survive.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        let mut a = DoneItems::default();
        for i in 0..3 {
            a.insert(i);
        }
        cp.record_progress("A", 10, "fp", &a).unwrap();
        drop(cp);
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        let mut b = DoneItems::default();
        b.insert(0);
        cp.record_progress("B", 20, "fp", &b).unwrap();
        cp.record_finished("C", 30).unwrap();
        drop(cp);

        let cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert_eq!(cp.done_items("A", 10, "fp"), a, "A's progress survives B's");
        assert_eq!(cp.done_items("B", 20, "fp"), b);
    }

    #[test]
    fn a_version_1_checkpoint_keeps_its_finished_objects_and_restarts_the_one_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let v1 = r#"{"version":1,"source":"s","target":"t","finished":{"k1":1},
            "partial":{"key":"k2","size":2,"done":{"prefix":3}}}"#;
        std::fs::write(&path, v1).unwrap();
        assert!(
            matches!(
                Checkpoint::open(&path, "s", "other"),
                Err(CheckpointError::OtherTarget { .. })
            ),
            "target checked"
        );
        let mut cp = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(cp.is_finished("k1", 1));
        // Its indexes name no fingerprint: they may point into another list than this version
        // reads, so the object is sent from its start (duplicates, never a loss).
        assert!(cp.done_items("k2", 2, "fp").is_empty());
        cp.record_finished("k3", 3).unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["version"], CHECKPOINT_VERSION);
        assert_eq!(saved["in_progress"]["k2"]["done"]["prefix"], 3);
        assert!(saved.get("partial").is_none());
    }

    #[test]
    fn a_garbage_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, "hello").unwrap();
        let err = Checkpoint::open(&path, "s", "t").unwrap_err();
        assert!(matches!(err, CheckpointError::Invalid { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
    }

    #[test]
    fn a_checkpoint_that_cannot_be_written_is_found_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir/cp.json");
        // The lock file beside it cannot be made either: the run stops at the start.
        let err = Checkpoint::open(&path, "s", "t").unwrap_err();
        assert!(matches!(err, CheckpointError::Lock { .. }), "{err}");
        // A directory that exists but cannot be written (root ignores permissions, so a file
        // stands in for it: nothing can be created under it).
        std::fs::write(dir.path().join("a-file"), "").unwrap();
        let err = Checkpoint::open(&dir.path().join("a-file/cp.json"), "s", "t").unwrap_err();
        assert!(matches!(err, CheckpointError::Lock { .. }), "{err}");
        let path = dir.path().join("cp.json");
        Checkpoint::open(&path, "s", "t")
            .unwrap()
            .ensure_writable()
            .unwrap();
        assert!(path.exists());
    }

    #[test]
    fn a_read_only_checkpoint_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut cp = Checkpoint::open_read_only(&path, "s", "t").unwrap();
        cp.record_finished("k", 1).unwrap();
        assert!(!path.exists());
        assert!(cp.is_finished("k", 1));
        assert!(!dir.path().join(".cp.json.lock").exists());
    }

    #[test]
    fn a_second_run_with_the_same_checkpoint_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let mut first = Checkpoint::open(&path, "s", "t").unwrap();
        first.record_finished("k", 1).unwrap();
        match Checkpoint::open(&path, "s", "t") {
            Err(e @ CheckpointError::Locked { .. }) => {
                let text = e.to_string();
                assert!(text.contains("another replay is using"), "{text}");
                assert!(text.contains(".cp.json.lock"), "{text}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        // A dry run reads it meanwhile.
        let dry = Checkpoint::open_read_only(&path, "s", "t").unwrap();
        assert!(dry.is_finished("k", 1));
        drop(first);
        let second = Checkpoint::open(&path, "s", "t").unwrap();
        assert!(second.is_finished("k", 1));
    }

    #[test]
    fn a_symlink_to_a_checkpoint_shares_its_lock_and_writes_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("cp.json");
        let alias = dir.path().join("alias.json");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        let mut first = Checkpoint::open(&real, "s", "t").unwrap();
        first.record_finished("k", 1).unwrap();
        assert!(
            matches!(
                Checkpoint::open(&alias, "s", "t"),
                Err(CheckpointError::Locked { .. })
            ),
            "the alias is the same checkpoint"
        );
        let spelled = dir.path().join(".").join("cp.json");
        assert!(matches!(
            Checkpoint::open(&spelled, "s", "t"),
            Err(CheckpointError::Locked { .. })
        ));
        drop(first);
        let mut through = Checkpoint::open(&alias, "s", "t").unwrap();
        assert!(through.is_finished("k", 1));
        through.record_finished("k2", 2).unwrap();
        drop(through);
        assert!(
            std::fs::symlink_metadata(&alias).unwrap().is_symlink(),
            "the link is kept"
        );
        assert!(
            Checkpoint::open(&real, "s", "t")
                .unwrap()
                .is_finished("k2", 2),
            "written to the file the link names"
        );
    }

    #[test]
    fn a_bare_file_name_locks_and_syncs_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("cp.json")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/tmp/cp.json")), Path::new("/tmp"));
    }
}
