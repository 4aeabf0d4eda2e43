//! The log thread's writer: lines are buffered and written out at most once per
//! [`LOG_WRITE_INTERVAL`], so a busy service makes one `write` for many lines.
//!
//! Log lines (one access line per request) go through `tracing-appender`'s queue to one
//! writer thread, which drains the queue into its writer and then flushes it. Under load the
//! thread drains the queue as fast as lines come, so each drain held one line and each flush
//! was a `write`: `strace -f` on ingest pinned to one core under 1,024 connections counted
//! about one `write` and one `sched_yield` (the thread spinning for its next line) per request.
//! [`Paced::flush`] waits until [`LOG_WRITE_INTERVAL`] has passed since the previous write, so
//! the lines of that interval are written together; a flush after a quiet spell writes at
//! once. A line therefore reaches stdout at most one interval after it was logged, and the
//! guard's flush at shutdown still writes everything.
//!
//! A write that fails (stdout closed or failing) is counted ([`write_errors`], exported as
//! `ingest_log_write_errors_total`): `tracing-appender`'s thread drops such errors, so without
//! the count lost log lines would leave no trace anywhere.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Writes to stdout that failed, since the process started.
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// How many writes of log lines have failed (the lines in them may be lost).
#[must_use]
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// Counts `result` if it is an error, and passes it on.
fn counted<T>(result: io::Result<T>) -> io::Result<T> {
    if result.is_err() {
        WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// Least time between two writes of the log thread.
pub const LOG_WRITE_INTERVAL: Duration = Duration::from_millis(2);

/// Buffers what it is given and writes it to `W` when flushed, at most once per `interval`.
#[derive(Debug)]
pub struct Paced<W: Write> {
    inner: BufWriter<W>,
    interval: Duration,
    last_write: Option<Instant>,
}

impl<W: Write> Paced<W> {
    /// A writer to `inner` with a buffer of `capacity` bytes (a fuller buffer is written
    /// through at once), paced at [`LOG_WRITE_INTERVAL`].
    pub fn new(inner: W, capacity: usize) -> Self {
        Self::with_interval(inner, capacity, LOG_WRITE_INTERVAL)
    }

    fn with_interval(inner: W, capacity: usize, interval: Duration) -> Self {
        Self {
            inner: BufWriter::with_capacity(capacity, inner),
            interval,
            last_write: None,
        }
    }
}

/// How long a flush at `now` waits: what is left of `interval` since the last write.
fn wait(last_write: Option<Instant>, now: Instant, interval: Duration) -> Duration {
    last_write.map_or(Duration::ZERO, |last| {
        interval.saturating_sub(now.saturating_duration_since(last))
    })
}

impl<W: Write> Paced<W> {
    /// After `added` bytes went into a buffer that held `before`: if it holds less than both,
    /// the buffer (or the bytes) went through to `W` just now, and that write counts for the
    /// pacing like a flush's.
    fn note_write_through(&mut self, before: usize, added: usize) {
        if self.inner.buffer().len() < before + added {
            self.last_write = Some(Instant::now());
        }
    }
}

impl<W: Write> Write for Paced<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let before = self.inner.buffer().len();
        let added = counted(self.inner.write(buf))?;
        self.note_write_through(before, added);
        Ok(added)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let before = self.inner.buffer().len();
        counted(self.inner.write_all(buf))?;
        self.note_write_through(before, buf.len());
        Ok(())
    }

    /// Waits out the interval (the lines logged meanwhile queue for the next flush), then
    /// writes the buffer. Nothing buffered: nothing to wait for.
    fn flush(&mut self) -> io::Result<()> {
        if self.inner.buffer().is_empty() {
            return counted(self.inner.flush());
        }
        let pause = wait(self.last_write, Instant::now(), self.interval);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        counted(self.inner.flush())?;
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Records each `write` it gets.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Fails every write, as a closed stdout does.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_writes_are_counted_and_exported() {
        let metrics = crate::metrics::Metrics::new().unwrap();
        let before = write_errors();
        let mut out = Paced::with_interval(Broken, 1024, Duration::ZERO);
        out.write_all(b"a line\n").unwrap();
        assert!(out.flush().is_err());
        assert!(write_errors() > before, "the failed flush is counted");
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("ingest_log_write_errors_total "))
            .unwrap_or_else(|| panic!("exported: {text}"));
        let shown: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(shown > before, "{line}");
    }

    #[test]
    fn the_first_write_and_one_after_a_quiet_spell_do_not_wait() {
        let now = Instant::now();
        let interval = Duration::from_millis(2);
        assert_eq!(wait(None, now, interval), Duration::ZERO);
        let long_ago = now.checked_sub(Duration::from_secs(1)).unwrap();
        assert_eq!(wait(Some(long_ago), now, interval), Duration::ZERO);
        let just_now = now.checked_sub(Duration::from_millis(1)).unwrap();
        assert_eq!(
            wait(Some(just_now), now, interval),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn lines_are_buffered_until_a_flush_and_flushes_are_an_interval_apart() {
        let interval = Duration::from_millis(50);
        let mut out = Paced::with_interval(Writes::default(), 1024, interval);
        out.write_all(b"one\n").unwrap();
        out.write_all(b"two\n").unwrap();
        assert!(
            out.inner.get_ref().0.is_empty(),
            "nothing written before a flush"
        );
        let before_first = Instant::now();
        out.flush().unwrap();
        assert_eq!(out.inner.get_ref().0, [b"one\ntwo\n".to_vec()]);

        // Flushing an empty buffer neither waits nor writes.
        out.flush().unwrap();
        assert_eq!(out.inner.get_ref().0.len(), 1);

        out.write_all(b"three\n").unwrap();
        out.flush().unwrap();
        assert!(
            before_first.elapsed() >= interval,
            "the second write waited for the interval"
        );
        assert_eq!(out.inner.get_ref().0[1], b"three\n");
    }

    #[test]
    fn a_full_buffer_is_written_through_without_waiting_for_a_flush() {
        let interval = Duration::from_millis(50);
        let mut out = Paced::with_interval(Writes::default(), 8, interval);
        out.write_all(b"0123456789\n").unwrap();
        assert_eq!(out.inner.get_ref().0, [b"0123456789\n".to_vec()]);
        // That write counts: the next flush waits an interval after it.
        let written = Instant::now();
        out.write_all(b"ab\n").unwrap();
        out.flush().unwrap();
        assert!(written.elapsed() >= interval, "{:?}", written.elapsed());
        assert_eq!(out.inner.get_ref().0[1], b"ab\n");
    }
}
