//! Criterion benchmark: `process_event` on a realistic 3 MB Firehose event.
//!
//! The event comes from `../shared/bench/make_firehose_event.py` (the shared generator: mostly
//! 150–2000-byte JSON logs, some text, some bad records). `scripts/bench-transform.sh` writes it
//! and passes its path in `TRANSFORM_BENCH_EVENT`; without that variable this bench runs the
//! generator itself, or falls back to the committed fixture when `../shared` is absent. Throughput is reported per
//! byte of decoded record data, the unit the Python baseline prints.

#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NOW_MS: i64 = 1_770_249_600_000;

/// The bench event: `TRANSFORM_BENCH_EVENT`, else the shared generator's 3 MB event, else (no
/// `../shared` here, e.g. when a test run executes this bench once) the committed realistic
/// fixture's records repeated up to 3 MB of decoded data.
fn event() -> (String, Vec<u8>) {
    if let Some(path) = std::env::var_os("TRANSFORM_BENCH_EVENT") {
        let path = PathBuf::from(path);
        let event = std::fs::read(&path).expect("TRANSFORM_BENCH_EVENT is readable");
        return (path.display().to_string(), event);
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let generator = crate_dir.join("../../../shared/bench/make_firehose_event.py");
    let out = std::env::temp_dir().join(format!("transform-bench-{}.json", std::process::id()));
    if generator.exists() {
        let generated = Command::new("python3")
            .arg(&generator)
            .arg(&out)
            .arg("3000000")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if let (true, Ok(event)) = (generated, std::fs::read(&out)) {
            let _ = std::fs::remove_file(&out);
            return ("make_firehose_event.py, 3 MB".to_owned(), event);
        }
    }
    eprintln!("note: ../shared/bench not found; using the committed fixture repeated to 3 MB");
    let fixture = std::fs::read(crate_dir.join("tests/fixtures/realistic-firehose-event.json"))
        .expect("the committed fixture is readable");
    let fixture: serde_json::Value = serde_json::from_slice(&fixture).expect("the fixture is JSON");
    let template = fixture["records"].as_array().cloned().unwrap_or_default();
    let mut records = Vec::new();
    let mut decoded = 0;
    'fill: for round in 0.. {
        for record in &template {
            let mut record = record.clone();
            record["recordId"] = format!("{round}-{}", record["recordId"]).into();
            decoded += record["data"].as_str().map_or(0, |d| d.len() * 3 / 4);
            records.push(record);
            if decoded > 3_000_000 {
                break 'fill;
            }
        }
    }
    let event = serde_json::json!({ "records": records });
    (
        "fixture repeated, 3 MB".to_owned(),
        event.to_string().into_bytes(),
    )
}

fn bench(c: &mut Criterion) {
    let (source, event) = event();
    let (_, stats) = transform::process_event_with_stats(&event, NOW_MS).expect("a Firehose event");
    // stderr: `cargo nextest --all-targets` lists this bench by parsing its stdout.
    eprintln!(
        "event ({source}): {} records, {} decoded bytes, ok {} dropped {} failed {}",
        stats.records, stats.decoded_bytes, stats.ok, stats.dropped, stats.failed
    );
    let mut group = c.benchmark_group("process_event");
    group.throughput(Throughput::Bytes(stats.decoded_bytes as u64));
    group.bench_function("3mb_realistic", |b| {
        b.iter(|| transform::process_event(std::hint::black_box(&event), NOW_MS))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
