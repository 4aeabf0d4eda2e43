//! Fault injection: the failures a producer and a pipeline must survive, on demand.
//!
//! Real Firehose throttles individual records of a `PutRecordBatch` (HTTP 200 with per-record
//! `ServiceUnavailableException` / "Slow down."), refuses whole calls (HTTP 503
//! `ServiceUnavailableException`, which a producer whose SDK does not retry sees itself) and
//! real transforms fail. Tests and demos need
//! both without waiting for AWS to misbehave, so a share of records or invocations fails here,
//! decided by a seedable generator so a failing run can be replayed. A slow or failing endpoint
//! needs no switch: point the stream at a test endpoint that is slow or fails.

use crate::config::FaultsConfig;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use std::sync::{Arc, Mutex};

/// The fault dice, shared by every stream of a server.
#[derive(Debug, Clone)]
pub(crate) struct Faults {
    config: FaultsConfig,
    rng: Arc<Mutex<StdRng>>,
}

impl Faults {
    /// Dice for `config`, seeded from `config.seed` or from the OS.
    #[must_use]
    pub(crate) fn new(config: &FaultsConfig) -> Self {
        let rng = config
            .seed
            .map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        Self {
            config: *config,
            rng: Arc::new(Mutex::new(rng)),
        }
    }

    fn roll(&self, share: f64) -> bool {
        if share <= 0.0 {
            return false;
        }
        // A poisoned lock only means another thread panicked mid-roll; the generator is still usable.
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rng.random_bool(share.min(1.0))
    }

    /// Whether this `PutRecordBatch` record is throttled.
    #[must_use]
    pub(crate) fn throttle_record(&self) -> bool {
        self.roll(self.config.throttle_share)
    }

    /// Whether this `PutRecord`/`PutRecordBatch` call is refused whole.
    #[must_use]
    pub(crate) fn fail_call(&self) -> bool {
        self.roll(self.config.call_failure_share)
    }

    /// Whether this transform invocation fails.
    #[must_use]
    pub(crate) fn fail_transform(&self) -> bool {
        self.roll(self.config.transform_failure_share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_respected_and_seeds_replay() {
        let cfg = FaultsConfig {
            throttle_share: 0.3,
            transform_failure_share: 0.0,
            call_failure_share: 0.0,
            seed: Some(7),
        };
        let a: Vec<bool> = {
            let f = Faults::new(&cfg);
            (0..2000).map(|_| f.throttle_record()).collect()
        };
        let b: Vec<bool> = {
            let f = Faults::new(&cfg);
            (0..2000).map(|_| f.throttle_record()).collect()
        };
        assert_eq!(a, b, "same seed, same faults");
        let hits = a.iter().filter(|x| **x).count();
        assert!((450..750).contains(&hits), "about 30 % of 2000, got {hits}");
        let f = Faults::new(&cfg);
        assert!((0..100).all(|_| !f.fail_transform()));
        let all = Faults::new(&FaultsConfig {
            throttle_share: 1.0,
            ..cfg
        });
        assert!((0..100).all(|_| all.throttle_record()));
        assert!(
            (0..100).all(|_| !all.fail_call()),
            "each fault has its own share"
        );
        let calls = Faults::new(&FaultsConfig {
            call_failure_share: 1.0,
            ..cfg
        });
        assert!((0..100).all(|_| calls.fail_call()));
    }
}
