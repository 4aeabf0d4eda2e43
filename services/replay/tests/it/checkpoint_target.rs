//! Which target a checkpoint belongs to, as the `replay` binary checks it: a stream is named
//! with its region and endpoint, and a dry run without a target names the file's target.

use std::path::Path;
use std::process::Output;

use crate::support::{Behaviour, EVERY_KIND, FrontDoor, GOOD_IDS, fixture_dir};

/// Runs the binary on the fixture directory (every kind of object in it) with `args`, AWS
/// settings for a local Firehose at `endpoint` (if any) and `region`.
async fn replay(cp: &Path, endpoint: Option<&str>, region: &str, args: &[&str]) -> Output {
    let mut cmd = crate::support::replay_command();
    cmd.arg(fixture_dir())
        .arg("--checkpoint")
        .arg(cp)
        .args(["--region", region])
        .args(EVERY_KIND)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if let Some(endpoint) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", endpoint);
    }
    cmd.output().await.expect("the replay binary starts")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_checkpoint_is_refused_for_the_same_name_in_another_region_or_endpoint() {
    // A local Firehose answers for any region: the same stream name "exists" in every one, as a
    // same-named stream can in two real regions.
    let tmp = tempfile::tempdir().expect("tempdir");
    let firehose = firehose_local::spawn_embedded(firehose_local::Config::local_default(
        &tmp.path().join("firehose"),
    ))
    .await
    .expect("local Firehose starts");
    let stream = firehose_local::config::DEFAULT_STREAM_NAME;
    let endpoint = firehose.endpoint_url();
    let cp = tmp.path().join("cp.json");
    let to_stream = ["--to-stream", stream];

    let out = replay(&cp, Some(&endpoint), "us-east-1", &to_stream).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} sent", GOOD_IDS.len())),
        "{stdout}"
    );
    let before = std::fs::read(&cp).expect("the checkpoint is written");

    // Another region: nothing was delivered there, so the file must not say it was.
    let out = replay(&cp, Some(&endpoint), "eu-west-1", &to_stream).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "resumed in eu-west-1 a checkpoint written in us-east-1: {}",
        show(&out)
    );
    assert!(stderr.contains("belongs to a replay to"), "{stderr}");
    assert!(stderr.contains("region us-east-1"), "{stderr}");
    assert!(stderr.contains("region eu-west-1"), "{stderr}");
    assert_eq!(
        std::fs::read(&cp).expect("read"),
        before,
        "the file is untouched"
    );

    // Another endpoint, same region: another Firehose.
    let other = firehose_local::spawn_embedded(firehose_local::Config::local_default(
        &tmp.path().join("other"),
    ))
    .await
    .expect("a second local Firehose starts");
    let out = replay(&cp, Some(&other.endpoint_url()), "us-east-1", &to_stream).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("endpoint {endpoint}")),
        "{}",
        show(&out)
    );

    // The same region and endpoint resume: everything is already done.
    let out = replay(&cp, Some(&endpoint), "us-east-1", &to_stream).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 already done"),
        "{}",
        show(&out)
    );
    other.shutdown().await.expect("local Firehose stops");
    firehose.shutdown().await.expect("local Firehose stops");
}

#[tokio::test]
async fn a_dry_run_without_a_target_names_the_checkpoints_target() {
    let (_door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let out = replay(&cp, None, "us-east-1", &["--to-http", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let before = std::fs::read(&cp).expect("the checkpoint is written");

    let out = replay(&cp, None, "us-east-1", &["--dry-run"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains(&format!("belongs to a replay to http:{url}/v1/events")),
        "names the file's target: {stderr}"
    );
    assert!(
        stderr.contains("run the dry run with that target"),
        "says how to see what it would still send: {stderr}"
    );
    assert!(
        !stderr.contains("none (dry run)"),
        "no advice about sending to the dry run's non-target: {stderr}"
    );
    assert_eq!(
        std::fs::read(&cp).expect("read"),
        before,
        "the file is untouched"
    );

    // With the file's target, the dry run honours it.
    let out = replay(&cp, None, "us-east-1", &["--dry-run", "--to-http", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 already done"),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn a_second_replay_with_the_same_checkpoint_is_refused_while_the_first_runs() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let source = std::path::absolute(fixture_dir()).expect("absolute");
    let target = format!("http:{url}/v1/events");
    // A run in progress (this test holds its lock as the run would).
    let running = replay::checkpoint::Checkpoint::open(&cp, &source.display().to_string(), &target)
        .expect("the first run opens the checkpoint");

    let out = replay(&cp, None, "us-east-1", &["--to-http", &url]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr.contains("another replay is using the checkpoint"),
        "{stderr}"
    );
    assert!(door.ids().is_empty(), "nothing sent: {:?}", door.ids());

    // A dry run writes nothing and takes no lock.
    let out = replay(&cp, None, "us-east-1", &["--dry-run", "--to-http", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(door.ids().is_empty(), "a dry run sends nothing");

    drop(running);
    let out = replay(&cp, None, "us-east-1", &["--to-http", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(door.ids().len(), GOOD_IDS.len());
}
