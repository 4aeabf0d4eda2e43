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
//!
//! When stdout stalls (the node's log pipeline stuck, a full disk under the container runtime,
//! a wrapper that stopped reading), the writer thread blocks and the queue fills. What happens
//! then is [`WhenFull`]: by default the lines that do not fit are dropped and counted
//! ([`dropped_lines`], `ingest_log_lines_dropped_total`), so a log pipeline's fault costs log
//! lines and never intake; `block` keeps every line by making the requests that log wait.

use std::io::{self, BufWriter, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

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

/// What logging does when the queue to the writer thread is full (`INGEST_LOG_WHEN_FULL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WhenFull {
    /// Drop the line and count it: requests never wait for stdout.
    Drop,
    /// Wait until the line fits: no line is lost, but a stalled stdout stops every request
    /// that logs (all of them: each gets an access line).
    Block,
}

/// The dropped-line count of the process's log queue (the first one [`queue`] built).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// How many log lines were dropped because the queue was full, since the process started
/// (always 0 with [`WhenFull::Block`]).
#[must_use]
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counter| {
        u64::try_from(counter.dropped_lines()).unwrap_or(u64::MAX)
    })
}

/// The queue of at most `lines` lines (at least 1) to a thread that writes them to `out`,
/// paced, in a buffer of `buffer_bytes`; `when_full` says what a line that does not fit does.
/// The first queue built in a process is the one [`dropped_lines`] reports on.
pub fn queue<W: Write + Send + 'static>(
    out: W,
    lines: usize,
    buffer_bytes: usize,
    when_full: WhenFull,
) -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(when_full == WhenFull::Drop)
        .buffered_lines_limit(lines.max(1))
        .thread_name("ingest-log")
        .finish(Paced::new(out, buffer_bytes));
    // Already set: a second queue (tests only); the process's first one keeps reporting.
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// Longest wait at exit for the log thread to write what is queued.
pub const EXIT_FLUSH: Duration = Duration::from_secs(5);

/// Lets the log thread write what is queued and stop (dropping `guard` does both), waiting at
/// most `within`.
///
/// With a stalled stdout the drop may never return: when its shutdown message does not fit
/// the full queue within 100 ms, `tracing-appender` `println!`s a complaint, which waits for
/// the stdout lock the blocked writer holds (when the message fits, it waits 1 s for the
/// thread and gives up). Dropped on the calling thread, that kept the process from exiting
/// until it was killed (helper-57, L1). So the guard is dropped on a thread of its own;
/// past `within` the process exits without it (the lines still queued are lost, as they are
/// to any stalled stdout). Returns whether the log thread finished in time.
pub fn finish(guard: WorkerGuard, within: Duration) -> bool {
    let (done_tx, done) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ingest-log-exit".to_owned())
        .spawn(move || {
            drop(guard);
            let _ = done_tx.send(());
        });
    spawned.is_ok() && done.recv_timeout(within).is_ok()
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
    use std::sync::{Arc, Condvar, Mutex};

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

    /// What a [`Stalled`] stdout has: whether it takes bytes yet, and the bytes it took.
    #[derive(Default)]
    struct Taken {
        open: bool,
        /// Writes that have begun (and, while closed, wait).
        writes: usize,
        bytes: Vec<u8>,
    }

    /// A stdout that takes nothing until opened, then keeps what it is given.
    #[derive(Clone, Default)]
    struct Stalled {
        state: Arc<(Mutex<Taken>, Condvar)>,
    }

    impl Stalled {
        fn open(&self) {
            self.state.0.lock().unwrap().open = true;
            self.state.1.notify_all();
        }

        /// Waits until a write has begun (and so, while closed, is stuck).
        fn wait_for_a_write(&self) {
            let taken = self.state.0.lock().unwrap();
            let (_taken, timeout) = self
                .state
                .1
                .wait_timeout_while(taken, Duration::from_secs(30), |t| t.writes == 0)
                .unwrap();
            assert!(!timeout.timed_out(), "the log thread never wrote");
        }

        fn lines(&self) -> usize {
            let taken = self.state.0.lock().unwrap();
            taken.bytes.iter().filter(|b| **b == b'\n').count()
        }

        /// Waits (30 s at most) until it holds `n` lines. Before a guard is dropped: the
        /// guard's shutdown message must fit the queue within 100 ms and the log thread then
        /// finish within 1 s, which a slow host does not promise for a full queue.
        fn wait_for_lines(&self, n: usize) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.lines() < n {
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} lines written within 30 s",
                    self.lines()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut taken = self.state.0.lock().unwrap();
            taken.writes += 1;
            self.state.1.notify_all();
            while !taken.open {
                taken = self.state.1.wait(taken).unwrap();
            }
            taken.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `n` lines through `writer`, each written whole as the log layers write them.
    fn log_lines(writer: &NonBlocking, n: usize) {
        for i in 0..n {
            let mut w = writer.clone();
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
    }

    #[test]
    fn with_drop_a_stalled_stdout_costs_counted_lines_and_never_blocks_the_logger() {
        let stdout = Stalled::default();
        // A 1-byte buffer: every line goes straight to the stalled stdout.
        let (writer, guard) = queue(stdout.clone(), 4, 1, WhenFull::Drop);
        let counter = writer.error_counter();
        let logger = std::thread::spawn(move || log_lines(&writer, 1000));
        // Returns although nothing can be written: the lines that did not fit were dropped.
        logger.join().unwrap();
        let dropped = counter.dropped_lines();
        assert!(dropped >= 1000 - 4 - 2, "dropped {dropped}");
        stdout.open();
        // The lines that were not dropped are written while the guard still lives.
        stdout.wait_for_lines(1000 - dropped);
        drop(guard);
        // Every line is either written or counted as dropped.
        assert_eq!(stdout.lines() + dropped, 1000, "written {}", stdout.lines());
    }

    #[test]
    fn with_block_a_stalled_stdout_holds_the_logger_and_loses_nothing() {
        let stdout = Stalled::default();
        let (writer, guard) = queue(stdout.clone(), 4, 1, WhenFull::Block);
        let counter = writer.error_counter();
        let (done_tx, done) = std::sync::mpsc::channel();
        let logger = std::thread::spawn(move || {
            log_lines(&writer, 100);
            done_tx.send(()).unwrap();
        });
        // Absence can only be shown by waiting: 100 lines do not fit a queue of 4.
        assert!(
            done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the logger waits for the stalled stdout"
        );
        stdout.open();
        done.recv_timeout(Duration::from_secs(30))
            .expect("the logger goes on once stdout takes lines");
        logger.join().unwrap();
        // Up to 4 lines may still be queued: written while the guard still lives.
        stdout.wait_for_lines(100);
        drop(guard);
        assert_eq!(counter.dropped_lines(), 0);
        assert_eq!(stdout.lines(), 100);
    }

    #[test]
    fn finishing_returns_in_time_with_a_stalled_stdout_and_writes_everything_with_a_live_one() {
        // The log thread holds one line, stuck in `write`, and two more wait in a queue of 4,
        // so the guard's shutdown message fits; the guard then waits 1 s for the thread to
        // end, and gives up (measured: the drop takes ~1.1 s here). With stdout itself stalled
        // and the queue full, the drop never returns (the binary test
        // `a_stalled_stdout_does_not_hold_the_exit`); here it is enough that it outlasts the
        // bound. The first line must be in `write` before the others are logged: with a full
        // queue the message does not fit, `tracing-appender` gives up after 100 ms (with a
        // complaint on the test's captured stdout) and the drop returns in time after all,
        // which CI once saw when the log thread started late.
        let stalled = Stalled::default();
        let (writer, guard) = queue(stalled.clone(), 4, 1, WhenFull::Drop);
        log_lines(&writer, 1);
        stalled.wait_for_a_write();
        log_lines(&writer, 2);
        let started = Instant::now();
        assert!(
            !finish(guard, Duration::from_millis(300)),
            "the log thread is stuck"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        stalled.open(); // let the stuck threads end

        // The guard waits 1 s for the log thread to write what is queued: the thread is seen
        // running (its first write) before the rest is queued, so that second is not spent
        // waiting for a new thread to be scheduled on a busy host.
        let live = Stalled::default();
        live.open();
        let (writer, guard) = queue(live.clone(), 1024, 1, WhenFull::Drop);
        log_lines(&writer, 1);
        live.wait_for_a_write();
        log_lines(&writer, 99);
        assert!(finish(guard, Duration::from_secs(30)));
        assert_eq!(live.lines(), 100, "everything queued is written");
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
        // Taken before the write-through, which notes its own (later) time for the pacing:
        // the flush waits an interval from that, so at least an interval from this.
        let written = Instant::now();
        out.write_all(b"0123456789\n").unwrap();
        assert_eq!(out.inner.get_ref().0, [b"0123456789\n".to_vec()]);
        // That write counts: the next flush waits an interval after it.
        out.write_all(b"ab\n").unwrap();
        out.flush().unwrap();
        assert!(written.elapsed() >= interval, "{:?}", written.elapsed());
        assert_eq!(out.inner.get_ref().0[1], b"ab\n");
    }
}
