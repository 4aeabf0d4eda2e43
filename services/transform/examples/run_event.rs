//! Runs the transform on a Firehose event file, without Lambda.
//!
//! ```text
//! cargo run -p transform --example run_event -- EVENT.json > response.json
//! cargo run --release -p transform --example run_event -- --repeat 20 EVENT.json
//! ```
//!
//! The first form writes the response JSON to stdout and the invocation counts to stderr. With
//! `--repeat N` it runs the event N times and prints, instead of the response, one line in the
//! format of `../shared/bench/reference_transform.py` (best time, MB/s of decoded input), so
//! the two can be compared on the same event in the same run (`scripts/bench-transform.sh`).

#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (repeat, path) = match args.as_slice() {
        [path] => (None, path),
        [flag, n, path] if flag == "--repeat" => match n.parse::<u32>() {
            Ok(n) if n > 0 => (Some(n), path),
            _ => return usage("--repeat needs a positive whole number"),
        },
        _ => return usage("expected an event file"),
    };
    let event = match std::fs::read(path) {
        Ok(event) => event,
        Err(error) => return usage(&format!("cannot read {path}: {error}")),
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));

    let Some(repeat) = repeat else {
        return match transform::process_event_with_stats(&event, now_ms) {
            Ok((response, stats)) => {
                eprintln!("{stats:?}");
                match std::io::stdout().write_all(&response) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => usage(&format!("cannot write the response: {error}")),
                }
            }
            Err(error) => {
                eprintln!("invocation error: {error}");
                ExitCode::FAILURE
            }
        };
    };

    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeat {
        let started = Instant::now();
        let result = transform::process_event_with_stats(std::hint::black_box(&event), now_ms);
        best = best.min(started.elapsed().as_secs_f64());
        last = Some(result);
    }
    match last {
        Some(Ok((_, stats))) => {
            println!(
                "records={} ok={} event_bytes={} decoded_bytes={} seconds={best:.6} decoded_MBps={:.1}",
                stats.records,
                stats.ok,
                stats.event_bytes,
                stats.decoded_bytes,
                stats.decoded_bytes as f64 / best / 1e6
            );
            ExitCode::SUCCESS
        }
        Some(Err(error)) => {
            eprintln!("invocation error: {error}");
            ExitCode::FAILURE
        }
        None => usage("nothing ran"),
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("run_event: {problem}\nusage: run_event [--repeat N] EVENT.json");
    ExitCode::from(2)
}
