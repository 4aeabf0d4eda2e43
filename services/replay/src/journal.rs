//! The checkpoint's journal: an append-only file of the changes made since the checkpoint was
//! last written whole, so that saving a batch costs the same however many objects are done.
//!
//! Rewriting the whole checkpoint after every batch made each save as large as the list of
//! finished objects, so a replay of `n` objects wrote O(n²) bytes: measured with the release
//! build, one small object per request to a local front door, 1,000 objects took 0.7 s of CPU,
//! 4,000 took 4.4 s and 16,000 took 44 s (1.5 MB written 16,000 times, each with two `fsync`s).
//! The journal takes one line per change and one `fdatasync`; during a run the checkpoint itself
//! is written whole only when the journal has outgrown it (and at the run's start and end: see
//! [`crate::checkpoint`]).
//!
//! The file is lines of JSON. The first line names the *tag* of the checkpoint the journal
//! continues (`{"journal_of":T}`): a random number the checkpoint stores, drawn anew each time
//! it takes its journal in (and for every new checkpoint). A journal with another tag is one
//! the checkpoint already took in (left by a crash between writing the checkpoint and starting
//! the new journal) or one of another checkpoint (a file swapped in beside it): it is ignored.
//! A last line that does not read is the write a crash cut short (without its line end, or, on
//! a filesystem that does not keep an append's pages in order, with zeros in it): it is left
//! out, with a warning when it was complete (its batch is sent again, as any batch whose
//! confirmation was not saved). Any other line that does not read is an error: the file is not
//! what this module wrote. So is anything but a regular file at the journal's path.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The journal beside the checkpoint at `checkpoint`: `<checkpoint>.journal`.
#[must_use]
pub fn path_of(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// The first line of a journal.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// The tag of the checkpoint this journal continues.
    journal_of: u64,
}

/// A tag for a checkpoint written whole: random, so that no other checkpoint's journal names
/// it (`RandomState` is seeded from the OS once per process and differs at each call).
#[must_use]
pub fn new_tag() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file exists but cannot be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A line (1-based) that is neither a change nor a torn last line.
    #[error("line {line} is not a checkpoint change: {reason}")]
    Invalid {
        /// The line number, from 1 (the header).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The changes in the journal at `path` that continue the checkpoint tagged `tag`, in the
/// order they were made: none when there is no file, when it continues another checkpoint, or
/// when even its header was cut short.
///
/// # Errors
/// The file cannot be read or is not a regular file, or a line other than the last does not
/// read.
pub fn read<T: DeserializeOwned>(path: &Path, tag: u64) -> Result<Vec<T>, ReadError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {}
        // Read, a FIFO would never end and a device (a link to /dev/zero) never stop.
        Ok(_) => {
            return Err(std::io::Error::other(
                "it is not a regular file (replay writes its journal as one)",
            )
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // Complete lines only: whatever follows the last line end is a write cut short.
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |end| &bytes[..end]);
    if complete.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines = complete.split(|&b| b == b'\n');
    let header: Header = lines
        .next()
        .map(serde_json::from_slice)
        .transpose()
        .map_err(|e| ReadError::Invalid {
            line: 1,
            reason: e.to_string(),
        })?
        .unwrap_or(Header { journal_of: tag });
    if header.journal_of != tag {
        return Ok(Vec::new());
    }
    let lines: Vec<&[u8]> = lines.collect();
    let mut changes = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice(line) {
            Ok(change) => changes.push(change),
            Err(e) if i + 1 == lines.len() => {
                tracing::warn!(
                    journal = %path.display(),
                    line = i + 2,
                    error = %e,
                    "the journal's last line does not read: taken for a write a crash cut short and left out (its batch is sent again)"
                );
            }
            Err(e) => {
                return Err(ReadError::Invalid {
                    line: i + 2,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(changes)
}

/// A journal being written: open for appending, its length known.
#[derive(Debug)]
pub struct Journal {
    file: std::fs::File,
    len: u64,
}

impl Journal {
    /// Starts the journal at `path` afresh (whatever was there is removed; a symlink, not what
    /// it names) for the checkpoint tagged `tag`, which must already be on disk: writes the
    /// header, and syncs the file and its directory, so the journal's changes are found after a
    /// power loss.
    ///
    /// # Errors
    /// The old file cannot be removed, or the new one created, written or synced.
    pub fn start(path: &Path, tag: u64) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut line =
            serde_json::to_vec(&Header { journal_of: tag }).map_err(std::io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_all()?;
        crate::checkpoint::sync_parent_dir(path)?;
        Ok(Self {
            file,
            len: line.len() as u64,
        })
    }

    /// Appends `change` as one line and waits until it is on disk (`fdatasync`).
    ///
    /// # Errors
    /// The line cannot be written or synced; part of it may be in the file (a torn last line,
    /// which [`read`] leaves out), so stop writing to this journal.
    pub fn append<T: Serialize>(&mut self, change: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(change).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// A journal whose every write fails as on a full disk (`/dev/full`).
    #[cfg(test)]
    pub(crate) fn full_disk() -> Self {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap_or_else(|e| panic!("/dev/full: {e}"));
        Self { file, len: 0 }
    }

    /// The journal's size in bytes, header included.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Change(u32);

    #[test]
    fn changes_are_read_back_in_order_for_their_tag_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_of(&dir.path().join("cp.json"));
        assert_eq!(path.file_name().unwrap(), "cp.json.journal");
        assert!(read::<Change>(&path, 0).unwrap().is_empty(), "no file");

        let mut journal = Journal::start(&path, 7).unwrap();
        let header_len = journal.bytes();
        journal.append(&Change(1)).unwrap();
        journal.append(&Change(2)).unwrap();
        assert_eq!(
            journal.bytes(),
            std::fs::metadata(&path).unwrap().len(),
            "the length kept is the file's"
        );
        assert!(journal.bytes() > header_len);
        assert_eq!(read::<Change>(&path, 7).unwrap(), [Change(1), Change(2)]);
        assert!(
            read::<Change>(&path, 8).unwrap().is_empty(),
            "a journal the checkpoint already took in"
        );

        // Starting afresh drops what it held.
        let journal = Journal::start(&path, 8).unwrap();
        assert_eq!(journal.bytes(), header_len);
        assert!(read::<Change>(&path, 8).unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_line_is_left_out_and_a_bad_line_before_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json.journal");
        let mut journal = Journal::start(&path, 0).unwrap();
        journal.append(&Change(1)).unwrap();
        drop(journal);

        let mut torn = std::fs::read(&path).unwrap();
        torn.extend_from_slice(b"4");
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(read::<Change>(&path, 0).unwrap(), [Change(1)]);

        // Only the header's start: nothing to take.
        std::fs::write(&path, b"{\"journal_of\":").unwrap();
        assert!(read::<Change>(&path, 0).unwrap().is_empty());

        // A complete last line that does not read: a crash's doing too (zeros where a page of
        // the append was lost).
        std::fs::write(&path, b"{\"journal_of\":0}\n1\n\0\0\n").unwrap();
        assert_eq!(read::<Change>(&path, 0).unwrap(), [Change(1)]);

        // One before the last is not.
        std::fs::write(&path, b"{\"journal_of\":0}\n[1,2]\n3\n").unwrap();
        let err = read::<Change>(&path, 0).unwrap_err();
        assert!(matches!(err, ReadError::Invalid { line: 2, .. }), "{err:?}");
        std::fs::write(&path, b"not a header\n3\n").unwrap();
        let err = read::<Change>(&path, 0).unwrap_err();
        assert!(matches!(err, ReadError::Invalid { line: 1, .. }), "{err:?}");
    }
}
