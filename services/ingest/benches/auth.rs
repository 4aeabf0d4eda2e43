//! Criterion benchmark: checking an API key against sets of 1 and 5,000 keys, a key of the set
//! and one that is not.
//!
//! A front door whose key file keeps every key ever issued (rotation adds keys; removing old
//! ones is left to the operator) must not pay per request for each of them. `cargo bench -p
//! ingest --bench auth` prints criterion's figures, then the cost with 5,000 keys as a ratio of
//! the cost with 1 key, measured in the same run (about 1 when the check does not grow with
//! the set).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::Criterion;
use ingest::auth::KeySet;

/// A set of `n` keys `key-0` … `key-{n-1}`.
fn keys(n: usize) -> KeySet {
    let text: String = (0..n).map(|i| format!("key-{i}\n")).collect();
    KeySet::parse(Path::new("bench-keys"), &text).unwrap()
}

/// Nanoseconds per check of `key` against `set`, over `rounds` checks.
fn ns_per_check(set: &KeySet, key: &[u8], rounds: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(set.check(black_box(key)));
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(rounds)
}

fn main() {
    let sets = [(1, keys(1)), (5000, keys(5000))];
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("api key check");
    for (n, set) in &sets {
        assert!(set.check(b"key-0").is_some() && set.check(b"not-a-key").is_none());
        group.bench_function(format!("{n} keys, a key of the set"), |b| {
            b.iter(|| set.check(black_box(b"key-0")));
        });
        group.bench_function(format!("{n} keys, another key"), |b| {
            b.iter(|| set.check(black_box(b"not-a-key")));
        });
    }
    group.finish();
    c.final_summary();

    // The ratio, only when benchmarking (a test run executes each bench once, quickly).
    if std::env::args().any(|a| a == "--bench") {
        let rounds = 200_000;
        for (name, key) in [
            ("a key of the set", &b"key-0"[..]),
            ("another key", b"not-a-key"),
        ] {
            let one = ns_per_check(&sets[0].1, key, rounds);
            let many = ns_per_check(&sets[1].1, key, rounds);
            println!(
                "{name}: 5,000 keys {many:.0} ns, 1 key {one:.0} ns per check: {:.2}x",
                many / one
            );
        }
    }
}
