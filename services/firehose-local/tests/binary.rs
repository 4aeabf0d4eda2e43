//! The `firehose-local` binary end to end: config file in, SIGTERM during delivery, nothing lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use common::{Behaviour, Endpoint, firehose_client};
use firehose_formats::backup::ErrorRecord;
use firehose_local::delivery::error_code::SHUTDOWN_BEFORE_ATTEMPT;
use std::process::Stdio;
use tokio::io::AsyncBufReadExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_firehose-local");

/// The binary, without the `FIREHOSE_LOCAL_*` variables of the shell that runs the tests (each
/// is a setting, and would change what a test sees).
fn command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FIREHOSE_LOCAL_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Starts the binary and returns it with the address from its "listening" log line.
async fn start(
    config: &std::path::Path,
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = command()
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the binary exited before listening");
        if let Some(rest) = line.split("listening addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let (tx, rest) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, format!("http://{addr}"), rest)
}

/// Waits for a log line containing `needle`.
async fn line_with(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) {
    while let Some(line) = lines.recv().await {
        if line.contains(needle) {
            return;
        }
    }
    panic!("the binary exited without logging {needle:?}");
}

/// Sends `signal` (e.g. `-TERM`) to `child`.
async fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let sent = tokio::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
}

/// Writes `dir/firehose.toml`: stream `s` delivering to `endpoint_url` (which refuses) with an
/// hour of retries, buffering 1 MiB / `interval_secs`, backing up to `dir/backup`, and the
/// given shutdown grace period.
fn refused_stream_config(
    dir: &std::path::Path,
    endpoint_url: &str,
    grace_secs: u64,
    interval_secs: u64,
) -> std::path::PathBuf {
    let config = dir.join("firehose.toml");
    std::fs::write(
        &config,
        format!(
            r#"
shutdown_grace_secs = {grace_secs}
[[streams]]
name = "s"
buffering = {{ size_mb = 1, interval_secs = {interval_secs} }}
http_endpoint = {{ url = "{endpoint_url}", retry_duration_secs = 3600 }}
backup = {{ target = {{ kind = "local-dir", dir = "{}" }} }}
"#,
            dir.join("backup").display()
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn sigterm_during_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Fail).await;
    let config = refused_stream_config(dir.path(), &ep.url, 1, 900);
    let (child, endpoint, _logs) = start(&config).await;
    let client = firehose_client(&endpoint);
    // 600 KiB fills most of the 1 MiB buffer; the next record overflows it, so that batch is
    // in delivery (failing, retrying for an hour) while the small one waits in the buffer.
    let big = vec![b'a'; 600 * 1024];
    put(&client, big.clone()).await;
    put(&client, big.clone()).await;
    put(&client, b"small".to_vec()).await;
    ep.seen
        .recv()
        .await
        .expect("the first batch is being delivered");

    signal(&child, "-TERM").await;
    let mut child = child;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");

    let recs: Vec<ErrorRecord> = common::lines(&dir.path().join("backup"))
        .iter()
        .map(|l| ErrorRecord::parse_tolerant(l.as_bytes()).unwrap())
        .collect();
    let mut got: Vec<Vec<u8>> = recs.iter().map(|r| common::unb64(&r.raw_data)).collect();
    got.sort();
    let mut want = vec![big.clone(), big, b"small".to_vec()];
    want.sort();
    assert_eq!(got.len(), 3, "every accepted record is backed up");
    assert!(got == want);
    // The batch in delivery carries its last HTTP error; the one flushed at SIGTERM, still
    // queued behind it when the grace period ended, goes to backup without an attempt.
    // Exactly: the first 600 KiB record was in delivery; the second and the small one were
    // still buffered.
    let (failed, not_attempted): (Vec<_>, Vec<_>) = recs
        .iter()
        .partition(|r| r.error_code.starts_with("HttpEndpoint."));
    assert_eq!(failed.len(), 1, "{recs:?}");
    assert!(failed[0].attempts_made > 0, "{:?}", failed[0]);
    assert_eq!(common::unb64(&failed[0].raw_data).len(), 600 * 1024);
    assert_eq!(not_attempted.len(), 2, "{recs:?}");
    for r in &not_attempted {
        assert_eq!(r.error_code, SHUTDOWN_BEFORE_ATTEMPT, "{r:?}");
        assert_eq!(r.attempts_made, 0, "{r:?}");
    }
    assert!(
        not_attempted
            .iter()
            .any(|r| common::unb64(&r.raw_data) == b"small"),
        "the small record was buffered: {recs:?}"
    );
}

/// A second signal ends an hour-long grace period at once: the record New Relic keeps refusing
/// is backed up, and the process exits cleanly, long before the hour.
#[tokio::test]
async fn a_second_signal_backs_up_at_once_instead_of_retrying_out_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Fail).await;
    let config = refused_stream_config(dir.path(), &ep.url, 3600, 1);
    let (mut child, endpoint, mut logs) = start(&config).await;
    put(&firehose_client(&endpoint), b"refused".to_vec()).await;
    ep.seen.recv().await.expect("the record is being delivered");

    signal(&child, "-TERM").await;
    line_with(&mut logs, "shutting down").await;
    signal(&child, "-INT").await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("exits without waiting out the grace period")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let backed_up: Vec<Vec<u8>> = common::lines(&dir.path().join("backup"))
        .iter()
        .map(|l| common::unb64(&ErrorRecord::parse_tolerant(l.as_bytes()).unwrap().raw_data))
        .collect();
    assert_eq!(backed_up, [b"refused".to_vec()]);
}

/// A `.partial` file left by a crash in the backup directory is named at the next start.
#[tokio::test]
async fn a_file_left_by_an_interrupted_write_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let hour = dir.path().join("backup/2026/11/28/03");
    std::fs::create_dir_all(&hour).unwrap();
    let left = hour.join("s-1-2026-11-28-03-00-00-x.partial");
    std::fs::write(&left, b"{\"event\":1}\n").unwrap();
    let config = dir.path().join("firehose.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[streams]]
name = "s"
backup = {{ target = {{ kind = "local-dir", dir = "{}" }} }}
local_destination = {{ dir = "{}" }}
"#,
            dir.path().join("backup").display(),
            dir.path().join("delivered").display()
        ),
    )
    .unwrap();
    let (child, _endpoint, mut logs) = start(&config).await;
    // The walk runs beside serving: wait for its line (bounded), then stop the process.
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = logs.recv().await {
            if line.contains("files left by interrupted writes") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    signal(&child, "-TERM").await;
    let report = report.expect("the leftover file is reported");
    assert!(report.contains("count=1"), "{report}");
    assert!(report.contains(&left.display().to_string()), "{report}");
    let mut rest = Vec::new();
    while let Some(line) = logs.recv().await {
        rest.push(line);
    }
    assert!(
        !rest
            .iter()
            .any(|l| l.contains("files left by interrupted writes")),
        "reported once: {rest:#?}"
    );
    assert!(left.exists(), "it is not deleted");
}

/// Starts the binary on `config` (file `name` under a temporary directory; `{dir}` in it stands
/// for that directory) and returns its stderr once it has refused to start, as it must.
async fn refused_at_start(name: &str, config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(
        &path,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    let run = command()
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .kill_on_drop(true)
        .output();
    // Accepting the config would serve instead of exiting.
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the binary must refuse the config at start, not serve")
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_bad_config_fails_at_start_naming_the_field() {
    let stderr = refused_at_start(
        "bad.yaml",
        "streams:\n  - name: s\n    buffering: { size_mb: 100, interval_secs: 60 }\n",
    )
    .await;
    assert!(
        stderr.contains("streams[s].buffering.size_mb must be 1-64, got 100"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_backup_prefix_that_cannot_be_evaluated_fails_at_start() {
    // Accepting the prefix would serve and lose every backup.
    let stderr = refused_at_start(
        "bad-prefix.toml",
        r#"
[[streams]]
name = "s"
backup = { target = { kind = "local-dir", dir = "{dir}/backup" }, error_output_prefix = "e/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/H}/" }
"#,
    )
    .await;
    assert!(
        stderr.contains("streams[s].backup.error_output_prefix")
            && stderr.contains("unsupported timestamp pattern"),
        "{stderr}"
    );
}

/// One `PutRecord` of `data` into stream `s`, which must succeed.
async fn put(client: &aws_sdk_firehose::Client, data: Vec<u8>) {
    client
        .put_record()
        .delivery_stream_name("s")
        .record(Record::builder().data(Blob::new(data)).build().unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_value_in_the_environment_names_the_variable() {
    let out = command()
        .env("FIREHOSE_LOCAL_RETRY_DURATION_SECS", "forever")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // clap's usage error: status 2, the flag and the variable that set it both named.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("or FIREHOSE_LOCAL_RETRY_DURATION_SECS'"),
        "{stderr}"
    );
}

/// The function's environment comes from the flag (or its variable, comma-separated), and a key
/// Lambda reserves is refused at start, as Lambda refuses such a configuration.
#[tokio::test]
async fn the_function_environment_flag_refuses_reserved_keys_and_malformed_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |value: &str| {
        command()
            .args(["--listen", "127.0.0.1:0", "--processor", "runtime-api"])
            .args(["--transform-binary", BIN, "--dir"])
            .arg(dir.path())
            .env("FIREHOSE_LOCAL_TRANSFORM_ENV", value)
            .kill_on_drop(true)
            .output()
    };
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        run("RUST_LOG=debug,AWS_REGION=eu-west-1"),
    )
    .await
    .expect("refused at start, not served")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("processor.env sets AWS_REGION, which Lambda reserves"),
        "{stderr}"
    );
    let out = run("RUST_LOG").await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expected KEY=VALUE"), "{stderr}");
}
