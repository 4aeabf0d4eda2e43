//! Per-key request rate limits: one token bucket per API key, at the key's own rate when the
//! key file gives it one (`rps=`/`burst=`, [`KeyLimit`]), else at `INGEST_RATE_LIMIT_RPS`.
//!
//! A hand-written bucket rather than `governor`: it is twenty lines, reads time from
//! `tokio::time::Instant` (so tests drive it with `tokio::time::pause` instead of sleeping), and
//! answers the exact wait for the next token, which becomes the 429's `Retry-After`.
//! The map holds a bucket only while it is not full: a full bucket is the same as no bucket (a
//! new one starts full), so buckets that have refilled are dropped whenever the map has doubled
//! since the last sweep. Keys rotated out of the key file therefore leave nothing behind, and
//! the sweep costs O(1) per request, amortized.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::KeyId;

/// Rate and burst of a key's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: requests allowed back to back.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` with `burst` requests back to back (default: one second's worth, at least
    /// 1).
    #[must_use]
    pub fn new(per_second: f64, burst: Option<u32>) -> Self {
        Self {
            per_second,
            burst: burst.map_or(per_second.ceil().max(1.0), |b| f64::from(b.max(1))),
        }
    }
}

/// A key's own limit, from its line in the key file.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum KeyLimit {
    /// No `rps=`: the service's rate (`INGEST_RATE_LIMIT_RPS`), or none.
    #[default]
    Default,
    /// `rps=0`: never limited, whatever the service's rate.
    Unlimited,
    /// `rps=` (and `burst=`): this rate instead of the service's.
    Own(RateLimit),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// The limit it fills to: a key's limit may change when the key file is rotated.
    limit: RateLimit,
}

impl Bucket {
    /// The tokens at `now`.
    fn refilled(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst)
    }
}

/// Sweeps start once the map holds this many buckets.
const FIRST_SWEEP_AT: usize = 64;

#[derive(Debug)]
struct Buckets {
    map: HashMap<KeyId, Bucket>,
    /// The map's size that triggers the next sweep of full buckets.
    sweep_at: usize,
}

/// The buckets; `None` limit means unlimited (for keys without a limit of their own).
#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// A limiter with `per_second` requests per key and `burst` (default: one second's worth,
    /// at least 1). A rate of 0 turns limiting off.
    #[must_use]
    pub fn new(per_second: f64, burst: Option<u32>) -> Self {
        let limit = (per_second > 0.0).then(|| RateLimit::new(per_second, burst));
        Self {
            limit,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: FIRST_SWEEP_AT,
            }),
        }
    }

    /// Takes one token for `key`, at its own limit ([`KeyId::limit`]) or the service's.
    /// `Err(wait)` says how long until a token is available.
    ///
    /// # Errors
    /// The key's bucket is empty; the error is the time until the next token.
    pub fn check(&self, key: &KeyId) -> Result<(), Duration> {
        let limit = match (key.limit(), self.limit) {
            (KeyLimit::Own(own), _) => own,
            (KeyLimit::Default, Some(service)) => service,
            (KeyLimit::Unlimited, _) | (KeyLimit::Default, None) => return Ok(()),
        };
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.map.len() >= buckets.sweep_at {
            buckets
                .map
                .retain(|_, bucket| bucket.refilled(now) < bucket.limit.burst);
            buckets.sweep_at = (buckets.map.len() * 2).max(FIRST_SWEEP_AT);
        }
        let bucket = buckets.map.entry(key.clone()).or_insert(Bucket {
            tokens: limit.burst,
            updated: now,
            limit,
        });
        // At the key's current limit: a rotation that changed it counts from the key's previous
        // request (the limiter learns of it only now).
        bucket.limit = limit;
        bucket.tokens = bucket.refilled(now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second;
            // A rate so small that the wait overflows a `Duration` (INGEST_RATE_LIMIT_RPS=1e-20)
            // waits "forever" rather than panicking.
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_vanishingly_small_rate_refuses_without_panicking() {
        let limiter = RateLimiter::new(1e-20, Some(1));
        let key = KeyId::anonymous();
        assert!(limiter.check(&key).is_ok());
        assert_eq!(limiter.check(&key), Err(Duration::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(2.0, Some(3));
        let key = KeyId::anonymous();
        for _ in 0..3 {
            assert!(limiter.check(&key).is_ok());
        }
        let wait = limiter.check(&key).expect_err("bucket empty");
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limiter.check(&key).is_ok());
        assert!(limiter.check(&key).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keys_have_separate_buckets_and_zero_means_off() {
        let limiter = RateLimiter::new(1.0, Some(1));
        let a = KeyId::anonymous();
        let store = crate::auth::KeySet::parse(std::path::Path::new("k"), "b\n").expect("parses");
        let b = store.check(b"b").expect("known");
        assert!(limiter.check(&a).is_ok());
        assert!(limiter.check(&a).is_err());
        assert!(limiter.check(&b).is_ok());
        let off = RateLimiter::new(0.0, None);
        for _ in 0..1000 {
            assert!(off.check(&a).is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_keys_own_limit_replaces_the_services_and_follows_a_rotation() {
        let parse = |text: &str| {
            crate::auth::KeySet::parse(std::path::Path::new("k"), text).expect("parses")
        };
        // No service rate: only the key with its own is limited.
        let limiter = RateLimiter::new(0.0, None);
        let keys = parse("own rps=1 burst=1\nplain\n");
        let own = keys.check(b"own").expect("known");
        let plain = keys.check(b"plain").expect("known");
        assert!(limiter.check(&own).is_ok());
        assert_eq!(limiter.check(&own), Err(Duration::from_secs(1)));
        for _ in 0..100 {
            assert!(limiter.check(&plain).is_ok());
        }
        // A rotation that raises its burst: the same bucket, filling to the new size.
        let own = parse("own rps=1 burst=3\n").check(b"own").expect("known");
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..3 {
            assert!(limiter.check(&own).is_ok());
        }
        assert!(limiter.check(&own).is_err());
        // rps=0: never limited, whatever the service's rate.
        let strict = RateLimiter::new(1.0, Some(1));
        let free = parse("free rps=0\n").check(b"free").expect("known");
        for _ in 0..100 {
            assert!(strict.check(&free).is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refilled_buckets_are_swept_so_rotated_keys_leave_nothing() {
        let limiter = RateLimiter::new(1.0, Some(2));
        let text: String = (0..300).map(|i| format!("key-{i}\n")).collect();
        let keys = crate::auth::KeySet::parse(std::path::Path::new("k"), &text).expect("parses");
        let ids: Vec<KeyId> = (0..300)
            .map(|i| keys.check(format!("key-{i}").as_bytes()).expect("known"))
            .collect();
        let size = || limiter.buckets.lock().expect("lock").map.len();
        // 100 keys used once; then they are rotated out and their buckets refill.
        for id in &ids[1..=100] {
            assert!(limiter.check(id).is_ok());
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        // A key that used its whole burst just now: its bucket is empty, not full.
        let busy = &ids[0];
        assert!(limiter.check(busy).is_ok());
        assert!(limiter.check(busy).is_ok());
        assert!(limiter.check(busy).is_err());
        // New keys grow the map past the next sweep (at 128 buckets).
        for id in &ids[101..200] {
            assert!(limiter.check(id).is_ok());
        }
        assert!(
            size() < 101,
            "the 100 refilled buckets were swept: {} left",
            size()
        );
        // The empty bucket was kept: the busy key is still refused (a new bucket would let a
        // whole burst through).
        assert!(
            limiter.check(busy).is_err(),
            "a sweep forgot an empty bucket"
        );
    }
}
