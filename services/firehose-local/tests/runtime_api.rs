//! The real `transform` binary as a child process, driven through the Lambda Runtime API that
//! firehose-local hosts. The binary is the one `cargo nextest run --workspace` builds; run alone,
//! build it first with `cargo build -p transform`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use common::{b64, config, files, firehose_client};
use firehose_formats::backup::ErrorRecord;
use firehose_local::config::{ProcessorConfig, ProcessorMode};
use firehose_local::spawn_embedded;
use std::path::PathBuf;

/// `<target>/debug/transform`, next to this test's own `<target>/debug/deps/…` executable, if it
/// is there and newer than every source it is built from (else a test run for this package
/// alone would drive an old build and prove nothing about the current code).
fn transform_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or("no target directory")?;
    let candidate = profile_dir.join("transform");
    let built = std::fs::metadata(&candidate)
        .and_then(|m| m.modified())
        .map_err(|_| format!("{} is not built", candidate.display()))?;
    let services = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for crate_dir in ["transform", "firehose-formats"] {
        if let Some(newer) = newest_source(&services.join(crate_dir)).filter(|(t, _)| *t > built) {
            return Err(format!(
                "{} is older than {}",
                candidate.display(),
                newer.1.display()
            ));
        }
    }
    Ok(candidate)
}

/// The most recently modified file under `dir`'s `src/` and its `Cargo.toml`.
fn newest_source(dir: &std::path::Path) -> Option<(std::time::SystemTime, PathBuf)> {
    files(&dir.join("src"))
        .into_iter()
        .chain([dir.join("Cargo.toml")])
        .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .max_by_key(|(modified, _)| *modified)
}

#[tokio::test]
async fn the_transform_binary_runs_under_the_hosted_runtime_api() {
    let binary = match transform_binary() {
        Ok(binary) => binary,
        Err(why) => {
            assert!(
                !common::in_ci(),
                "{why} under CI: `cargo nextest run --workspace` should have built it"
            );
            eprintln!("skipped: {why} (run `cargo build -p transform`)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.streams[0].processor = Some(ProcessorConfig {
        mode: ProcessorMode::RuntimeApi,
        binary: Some(binary),
        buffer_interval_secs: 0,
        timeout_secs: 30,
        ..ProcessorConfig::default()
    });
    let fh = spawn_embedded(c).await.unwrap();
    let records = [
        &br#"{"msg":"one"}"#[..],
        b"\xc3\x28 bad utf-8",
        br#"{"msg":"two"}"#,
    ];
    firehose_client(&fh.endpoint_url())
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some(
            records
                .iter()
                .map(|d| Record::builder().data(Blob::new(*d)).build().unwrap())
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    // The batch is through the (freshly started, debug-built) transform before the shutdown,
    // whose grace period (5 s) a busy host may not give it.
    let backup = dir.path().join("backup");
    common::eventually(60, || {
        (common::lines_now(&dir.path().join("delivered")) >= 2 && common::lines_now(&backup) >= 1)
            .then_some(())
    })
    .await;
    fh.shutdown().await.unwrap();
    let delivered: Vec<serde_json::Value> = common::lines(&dir.path().join("delivered"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[0]["msg"], "one");
    assert!(
        delivered[0].get("_transformed_ts").is_some(),
        "{delivered:?}"
    );
    assert!(
        files(&backup)[0]
            .strip_prefix(&backup)
            .unwrap()
            .starts_with("processing-failed")
    );
    let failed: Vec<ErrorRecord> = common::lines(&backup)
        .iter()
        .map(|l| ErrorRecord::parse_tolerant(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].raw_data, b64(b"\xc3\x28 bad utf-8"));
    assert_eq!(failed[0].error_code, "Lambda.ProcessingFailedStatus");
}
