//! `--rate`: keeps the replay at or under a number of items per second.
//!
//! A replay after an outage can hold hours of traffic; sent at full speed it would compete with
//! live traffic for the stream's throughput quota (and the front door's). The pacer lets batch
//! `n` start only once the items granted before it fit the rate, measured from the start of the
//! run, so the long-run rate is exact and short pauses (a slow batch) are not "made up" by a
//! burst larger than one batch. It uses Tokio's clock, so tests drive it with paused time.
//!
//! Hand-written rather than `governor`: the whole need is one division and a `sleep_until`,
//! and `governor`'s own clock does not follow `tokio::time::pause`, which the tests rely on.

use std::time::Duration;

use tokio::time::Instant;

/// Paces batches to a rate in items per second (or not at all).
#[derive(Debug)]
pub struct Pacer {
    per_second: Option<u32>,
    start: Option<Instant>,
    granted: u64,
}

impl Pacer {
    /// A pacer for `per_second` items per second; `None` means unlimited.
    #[must_use]
    pub fn new(per_second: Option<u32>) -> Self {
        Self {
            per_second: per_second.filter(|r| *r > 0),
            start: None,
            granted: 0,
        }
    }

    /// The largest batch worth sending at this rate: one second's worth, at least 1, at most
    /// `max`. Larger batches would make the rate bursty.
    #[must_use]
    pub fn batch_size(&self, max: usize) -> usize {
        match self.per_second {
            Some(rate) => usize::try_from(rate)
                .unwrap_or(usize::MAX)
                .clamp(1, max.max(1)),
            None => max.max(1),
        }
    }

    /// Waits until `n` more items may be sent.
    pub async fn acquire(&mut self, n: usize) {
        let Some(rate) = self.per_second else {
            return;
        };
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.granted as f64 / f64::from(rate));
        tokio::time::sleep_until(due).await;
        self.granted += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_long_run_rate_is_the_configured_one() {
        let mut pacer = Pacer::new(Some(100));
        let batch = pacer.batch_size(500);
        assert_eq!(batch, 100);
        let start = Instant::now();
        for _ in 0..10 {
            pacer.acquire(batch).await;
        }
        // 10 batches of 100 at 100/s: the first goes at once, the tenth after 9 s.
        assert_eq!(start.elapsed(), Duration::from_secs(9));
    }

    #[tokio::test(start_paused = true)]
    async fn no_rate_means_no_waiting() {
        let mut pacer = Pacer::new(None);
        assert_eq!(pacer.batch_size(500), 500);
        let start = Instant::now();
        for _ in 0..10 {
            pacer.acquire(500).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(Pacer::new(Some(0)).batch_size(7), 7, "0 means unlimited");
    }

    #[test]
    fn batches_are_one_second_of_items_within_bounds() {
        assert_eq!(Pacer::new(Some(1)).batch_size(500), 1);
        assert_eq!(Pacer::new(Some(10_000)).batch_size(500), 500);
    }
}
