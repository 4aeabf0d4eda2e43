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

/// `<target>/debug/transform`, next to this test's own `<target>/debug/deps/…` executable.
fn transform_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let candidate = profile_dir.join("transform");
    candidate.is_file().then_some(candidate)
}

#[tokio::test]
async fn the_transform_binary_runs_under_the_hosted_runtime_api() {
    let Some(binary) = transform_binary() else {
        assert!(
            !common::in_ci(),
            "target/debug/transform is missing under CI: `cargo nextest run --workspace` should have built it"
        );
        eprintln!("skipped: target/debug/transform not built (run `cargo build -p transform`)");
        return;
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
