//! Size-and-interval buffering, the rule Firehose applies before each stage.
//!
//! Firehose holds records until a size or an interval hint is reached, whichever comes first.
//! This module is that rule and nothing else: it never reads a clock itself (the caller passes
//! `tokio::time::Instant`s), so the stream engine drives it with Tokio's pausable clock and tests
//! step time exactly.

//!
//! It also keeps the account of how much record data the process holds ([`Holding`]), so the
//! API can refuse records past `max_held_mb` instead of growing without end.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// One record as Firehose holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Firehose's own id for the record: the `recordId` the transform Lambda sees and, with
    /// `.0` appended, the `dataId` of its delivery-failure record. Not the `RecordId` the
    /// producer got back, which is a separate opaque string (see `api::producer_record_id`),
    /// as on AWS, where nothing ties the two together.
    pub id: String,
    /// Epoch ms when the API accepted it (`approximateArrivalTimestamp`).
    pub arrival_ms: i64,
    /// The record's bytes.
    pub data: Bytes,
    /// Its share of [`Holding`], given back when the record is dropped (delivered, backed up
    /// or dropped by the transform). A transformed record inherits its source's share.
    pub(crate) held: Held,
}

impl Record {
    /// A record outside the holding account (tests and custom destinations).
    #[must_use]
    pub fn new(id: impl Into<String>, arrival_ms: i64, data: impl Into<Bytes>) -> Self {
        Self {
            id: id.into(),
            arrival_ms,
            data: data.into(),
            held: Held::default(),
        }
    }
}

/// Bytes charged per record on top of its data: about what the process keeps for it besides the
/// data (its id, the `Record`, its slot in a batch), so a flood of empty records is capped too.
pub(crate) const RECORD_OVERHEAD: usize = 128;

/// The bytes of accepted records the process holds, from the API's `200` until each record is
/// delivered, written to backup or dropped, against a limit (`max_held_mb`). A record is
/// counted at its size as received plus [`RECORD_OVERHEAD`]; a transform that makes it larger
/// is not charged.
#[derive(Debug)]
pub(crate) struct Holding {
    bytes: AtomicUsize,
    limit: usize,
    gauge: prometheus::IntGauge,
}

impl Holding {
    /// An empty account with room for `limit` bytes, mirrored in `gauge`.
    pub(crate) fn new(limit: usize, gauge: prometheus::IntGauge) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicUsize::new(0),
            limit,
            gauge,
        })
    }

    /// Takes room for a record of `data_len` bytes (plus [`RECORD_OVERHEAD`]), or `None` when
    /// that would pass the limit.
    pub(crate) fn hold_record(self: &Arc<Self>, data_len: usize) -> Option<Held> {
        self.hold(data_len.saturating_add(RECORD_OVERHEAD))
    }

    /// Takes `len` bytes of room, or `None` when that would pass the limit. A
    /// record larger than the whole limit is still taken when nothing is held, so a small
    /// limit cannot refuse a valid record for ever.
    pub(crate) fn hold(self: &Arc<Self>, len: usize) -> Option<Held> {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let total = held.checked_add(len)?;
                (total <= self.limit || held == 0).then_some(total)
            })
            .ok()?;
        self.gauge.add(i64::try_from(len).unwrap_or(i64::MAX));
        Some(Held(Some((Arc::clone(self), len))))
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// One record's share of a [`Holding`]; dropping it gives the bytes back. A clone is not
/// counted (only the original gives back), and every share compares equal: it is accounting,
/// not data.
#[derive(Debug, Default)]
pub(crate) struct Held(Option<(Arc<Holding>, usize)>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((holding, len)) = self.0.take() {
            holding.bytes.fetch_sub(len, Ordering::AcqRel);
            holding.gauge.sub(i64::try_from(len).unwrap_or(i64::MAX));
        }
    }
}

impl Clone for Held {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Held {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Held {}

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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(n: usize) -> Record {
        Record::new(n.to_string(), 0, vec![b'x'; n])
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

    #[test]
    fn holding_refuses_past_its_limit_and_gets_bytes_back_on_drop() {
        let gauge = prometheus::IntGauge::new("held", "held").unwrap();
        let h = Holding::new(10, gauge.clone());
        let a = h.hold(6).expect("room");
        assert!(h.hold(5).is_none(), "6 + 5 > 10");
        let b = h.hold(4).expect("6 + 4 = 10 fits");
        assert_eq!((h.bytes(), gauge.get()), (10, 10));
        let copy = b.clone();
        drop(copy);
        assert_eq!(h.bytes(), 10, "a clone gives nothing back");
        drop(a);
        assert_eq!((h.bytes(), gauge.get()), (4, 4));
        drop(b);
        assert_eq!((h.bytes(), gauge.get()), (0, 0));
        let big = h
            .hold(11)
            .expect("one record over the limit is taken when nothing is held");
        assert!(h.hold(1).is_none());
        drop(big);
        assert_eq!(h.bytes(), 0);
    }
}
