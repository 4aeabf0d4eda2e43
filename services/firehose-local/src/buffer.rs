//! Size-and-interval buffering, the rule Firehose applies before each stage.
//!
//! Firehose holds records until a size or an interval hint is reached, whichever comes first.
//! This module is that rule and nothing else: it never reads a clock itself (the caller passes
//! `tokio::time::Instant`s), so the stream engine drives it with Tokio's pausable clock and tests
//! step time exactly.

use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

/// One record as Firehose holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The id returned to the producer (`RecordId`).
    pub id: String,
    /// Epoch ms when the API accepted it (`approximateArrivalTimestamp`).
    pub arrival_ms: i64,
    /// The record's bytes.
    pub data: Bytes,
}

/// A buffer that fills to a byte size, a record count, or an age.
#[derive(Debug)]
pub(crate) struct Buffer {
    records: Vec<Record>,
    bytes: usize,
    opened_at: Option<Instant>,
    size_limit: usize,
    max_records: usize,
    interval: Duration,
}

impl Buffer {
    /// A buffer flushing at `size_limit` bytes, `max_records` records, or `interval` after its
    /// first record arrived.
    pub(crate) fn new(size_limit: usize, max_records: usize, interval: Duration) -> Self {
        Self {
            records: Vec::new(),
            bytes: 0,
            opened_at: None,
            size_limit,
            max_records,
            interval,
        }
    }

    /// Adds a record. Returns a full batch to flush first when the record would push the buffer
    /// past its size, so a batch stays within the hint unless one record alone exceeds it.
    pub(crate) fn push(&mut self, record: Record, now: Instant) -> Option<Vec<Record>> {
        let overflow = !self.records.is_empty() && self.bytes + record.data.len() > self.size_limit;
        let flushed = if overflow { Some(self.take()) } else { None };
        self.bytes += record.data.len();
        self.records.push(record);
        self.opened_at.get_or_insert(now);
        flushed
    }

    /// Whether the size or count hint is reached.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= self.size_limit || self.records.len() >= self.max_records
    }

    /// When the interval hint expires, if anything is buffered.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.interval)
    }

    /// Empties the buffer, returning its records in arrival order.
    pub(crate) fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        self.opened_at = None;
        std::mem::take(&mut self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> Record {
        Record {
            id: n.to_string(),
            arrival_ms: 0,
            data: Bytes::from(vec![b'x'; n]),
        }
    }

    #[test]
    fn fills_by_size_and_never_splits_past_the_hint() {
        let now = Instant::now();
        let mut b = Buffer::new(10, 100, Duration::from_secs(60));
        assert!(b.push(rec(4), now).is_none());
        assert!(b.push(rec(4), now).is_none());
        assert!(!b.is_full());
        let flushed = b
            .push(rec(4), now)
            .expect("8 + 4 > 10 flushes the first two");
        assert_eq!(flushed.len(), 2);
        assert_eq!(b.push(rec(6), now), None);
        assert!(b.is_full());
        assert_eq!(b.take().len(), 2);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn fills_by_count() {
        let now = Instant::now();
        let mut b = Buffer::new(1000, 2, Duration::from_secs(60));
        b.push(rec(1), now);
        assert!(!b.is_full());
        b.push(rec(1), now);
        assert!(b.is_full());
    }

    #[test]
    fn deadline_starts_at_the_first_record() {
        let t0 = Instant::now();
        let mut b = Buffer::new(1000, 10, Duration::from_secs(5));
        assert_eq!(b.deadline(), None);
        b.push(rec(1), t0 + Duration::from_secs(1));
        b.push(rec(1), t0 + Duration::from_secs(3));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(6)));
        b.take();
        assert_eq!(b.deadline(), None);
    }
}
