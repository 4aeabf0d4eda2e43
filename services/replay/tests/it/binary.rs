//! The real `replay` binary, as an operator runs it.

use std::process::Output;

use crate::support::{
    Behaviour, EVERY_KIND, FrontDoor, GOOD_IDS, MALFORMED, assert_each_good_record_once, counts,
    fixture_dir, replay_command,
};

fn replay() -> tokio::process::Command {
    let mut cmd = replay_command();
    cmd.env("RUST_LOG", "info");
    cmd
}

async fn run(args: &[&str]) -> Output {
    replay()
        .args(args)
        .output()
        .await
        .expect("the replay binary starts")
}

/// The fixture directory to `url` with checkpoint `cp`, every kind selected, then `extra`.
fn fixture_to_http(url: &str, cp: &std::path::Path, extra: &[&str]) -> Vec<String> {
    [
        fixture_dir().display().to_string(),
        "--to-http".into(),
        url.to_owned(),
        "--checkpoint".into(),
        cp.display().to_string(),
    ]
    .into_iter()
    .chain(EVERY_KIND.iter().chain(extra).map(|a| (*a).to_owned()))
    .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_binary_replays_a_directory_and_prints_the_summary() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let dir = fixture_dir();
    let args = [
        dir.to_str().expect("utf-8"),
        "--to-http",
        &url,
        "--checkpoint",
        cp.to_str().expect("utf-8"),
    ];
    let out = run(&[&args[..], &EVERY_KIND].concat()).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_each_good_record_once(&door.ids());
    assert!(
        stdout.contains(&format!("{} read", GOOD_IDS.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} sent", GOOD_IDS.len())),
        "{stdout}"
    );
    assert!(stdout.contains("2 skipped"), "{stdout}");
    for (key, line) in MALFORMED {
        assert!(
            stdout.contains(&format!("{key}:{line}")),
            "summary names {key}:{line}: {stdout}"
        );
        assert!(stderr.contains(key), "the log names {key}: {stderr}");
    }
    // no progress bar escape codes when stderr is not a terminal
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

/// A checkpoint in a directory that does not exist: the run fails before the first send, not
/// after it (when the next run, with the path fixed, would send that batch again).
#[tokio::test]
async fn a_checkpoint_that_cannot_be_written_stops_the_run_before_sending() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = fixture_to_http(&url, &tmp.path().join("no-such-dir/cp.json"), &[]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "names the file: {stderr}");
    assert_eq!(door.requests(), 0, "nothing sent");
}

/// Error output copied without its `http-endpoint-failed/` folder: its lines are error records,
/// not events, and are not sent as events.
#[tokio::test]
async fn error_output_without_its_folder_is_not_sent_as_events() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("hef");
    std::fs::create_dir_all(src.join("2026/11/25/09")).expect("mkdir");
    std::fs::write(
        src.join("2026/11/25/09/events-1-2026-11-25-09-10-00-x"),
        concat!(
            r#"{"attemptsMade":3,"arrivalTimestamp":1,"errorCode":"HttpEndpoint.DestinationException","#,
            r#""errorMessage":"x","attemptEndingTimestamp":2,"rawData":"eyJhIjoxfQo="}"#,
            "\n"
        ),
    )
    .expect("write");
    let cp = tmp.path().join("cp.json");
    let out = run(&[
        src.to_str().expect("utf-8"),
        "--to-http",
        &url,
        "--checkpoint",
        cp.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    // Not 2 ("run it again"): the same object would be refused the same way (helper-56, M2).
    assert_eq!(
        out.status.code(),
        Some(3),
        "an object failed for good: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("its lines are Firehose error records"),
        "the summary says why: {stdout}"
    );
    assert!(stdout.contains("fix or move them"), "{stdout}");
    assert_eq!(door.requests(), 0, "nothing sent");
}

/// A target error (here the front door refusing the key) holds for every call as configured:
/// exit status 3, not 2, so a retry loop does not run it for ever.
#[tokio::test]
async fn a_target_error_exits_3_not_2() {
    let (door, url) = FrontDoor::start(Behaviour {
        unauthorized_from_request: Some(1),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = fixture_to_http(&url, &tmp.path().join("cp.json"), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("fix that, then run"), "{stdout}");
    assert!(door.ids().is_empty());
}

#[tokio::test]
async fn bad_flags_fail_at_start_with_what_to_fix() {
    let out = run(&[fixture_dir().to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--to-stream STREAM or --to-http URL"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["/no/such/dir", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a directory"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn bad_or_missing_settings_name_their_variable() {
    let fixtures = fixture_dir();
    let fixtures = fixtures.to_str().expect("utf-8");
    let cases = [
        // A bad value set through the environment: the flag and the variable.
        (
            Some(("REPLAY_RATE", "fast")),
            &[fixtures, "--dry-run"][..],
            "'--rate <PER_SECOND> or REPLAY_RATE'",
        ),
        // A missing positional setting: its variable too.
        (None, &["--dry-run"][..], "<SOURCE> or REPLAY_SOURCE"),
    ];
    for (env, args, expected) in cases {
        let mut cmd = replay();
        if let Some((name, value)) = env {
            cmd.env(name, value);
        }
        let out = cmd
            .args(args)
            .output()
            .await
            .expect("the replay binary starts");
        // A usage error is a configuration error (1): 2 means "incomplete, run it again".
        assert_eq!(
            out.status.code(),
            Some(1),
            "{env:?} {args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(expected),
            "{env:?} {args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test]
async fn an_interrupted_run_exits_2_and_the_rerun_completes_it() {
    let (door, url) = FrontDoor::start(Behaviour {
        accept_limit: Some(5),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = fixture_to_http(
        &url,
        &tmp.path().join("cp.json"),
        &["--http-max-attempts", "1"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = run(&args).await;
    assert_eq!(first.status.code(), Some(2), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("run the same command again to resume"));
    assert_eq!(door.ids().len(), 5);

    door.set(Behaviour::default());
    let second = run(&args).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert_each_good_record_once(&door.ids());
}

/// Ctrl-C waits for the batch in flight; a second one stops at once (exit status 130).
#[tokio::test]
async fn a_second_ctrl_c_stops_at_once() {
    second_signal_stops_at_once("-INT", 130).await;
}

/// SIGTERM (a Kubernetes Job, systemd) is Ctrl-C's twin (helper-56, L3): it used to kill the
/// process mid-batch.
#[tokio::test]
async fn a_second_sigterm_stops_at_once() {
    second_signal_stops_at_once("-TERM", 143).await;
}

async fn second_signal_stops_at_once(signal: &str, status_code: i32) {
    use tokio::io::AsyncBufReadExt as _;
    let (door, url) = FrontDoor::start(Behaviour {
        hang_on_request: Some(1),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = fixture_to_http(&url, &tmp.path().join("cp.json"), &[]);
    let mut child = replay()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start replay");
    let pid = child.id().expect("running").to_string();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    door.hanging().await;
    let interrupt = || {
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill")
    };
    assert!(interrupt().success());
    // The second signal only once the first was taken (the line says so), and the replay is
    // still waiting for its batch: the first Ctrl-C alone does not stop it.
    let mut taken = false;
    while let Some(line) = stderr.next_line().await.expect("stderr") {
        if line.contains("again to stop now") {
            taken = true;
            break;
        }
    }
    assert!(
        taken,
        "the first Ctrl-C was not reported before stderr closed"
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the first Ctrl-C stopped the replay while its batch was in flight"
    );
    assert!(interrupt().success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("a second Ctrl-C stops the replay while its batch hangs")
        .expect("wait");
    assert_eq!(status.code(), Some(status_code));
}

#[tokio::test]
async fn a_replay_killed_mid_batch_loses_nothing_and_repeats_nothing_confirmed() {
    // Batches of 2: the AllData object goes in requests 1-2, the http-endpoint-failed object in
    // requests 3 (he-1, he-2) and 4 (he-3). Request 4 is delivered but never answered, and the
    // replay is killed (SIGKILL) while it waits.
    let (door, url) = FrontDoor::start(Behaviour {
        hang_on_request: Some(4),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let args = [
        fixture_dir().display().to_string(),
        "--to-http".into(),
        url,
        "--checkpoint".into(),
        cp.display().to_string(),
        "--http-batch".into(),
        "2".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).chain(EVERY_KIND).collect();
    let mut child = replay()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start replay");
    door.hanging().await;
    child.kill().await.expect("kill the replay");

    door.set(Behaviour::default());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let got = counts(&door.ids());
    for id in GOOD_IDS {
        let n = got.get(id).copied().unwrap_or(0);
        if id == "he-3" {
            // delivered, confirmation lost: sent again (at-least-once inside an unfinished object)
            assert_eq!(n, 2, "{got:?}");
        } else {
            assert_eq!(n, 1, "{id} exactly once: {got:?}");
        }
    }
}

#[tokio::test]
async fn a_mixed_source_without_error_type_is_refused_before_sending() {
    // The fixtures hold one AllData object and three error-output objects: with no
    // --error-type and no --key that is refused, real run and dry runs alike, before anything
    // is sent, shown or written.
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let dir = fixture_dir();
    let dir = dir.to_str().expect("utf-8");
    let cp_arg = cp.to_str().expect("utf-8");
    let with_target = [dir, "--to-http", &url, "--checkpoint", cp_arg];
    let dry_with_target = [&with_target[..], &["--dry-run"]].concat();
    let dry_without_target = [dir, "--dry-run", "--checkpoint", cp_arg];
    for args in [&with_target[..], &dry_with_target, &dry_without_target] {
        let out = run(args).await;
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}\n{stderr}");
        for part in [
            "AllData backup objects (1)",
            "error output (3: http-endpoint-failed, processing-failed)",
            "sends those twice",
            "--error-type all-data",
            "--error-type processing-failed",
            "--error-type http-endpoint-failed",
        ] {
            assert!(
                stderr.contains(part),
                "{args:?}: {part:?} missing: {stderr}"
            );
        }
        assert!(
            stdout.is_empty(),
            "{args:?}: no preview, no summary: {stdout}"
        );
        assert_eq!(door.requests(), 0, "{args:?}: nothing sent");
        assert!(!cp.exists(), "{args:?}: no checkpoint written");
    }
}

#[tokio::test]
async fn error_type_all_data_or_an_error_output_replays_a_mixed_source() {
    let dir = fixture_dir();
    let dir = dir.to_str().expect("utf-8");
    for (error_type, expected) in [
        ("all-data", ["ad-1", "ad-2", "ad-3"]),
        ("http-endpoint-failed", ["he-1", "he-2", "he-3"]),
    ] {
        let (door, url) = FrontDoor::start(Behaviour::default()).await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let cp = tmp.path().join("cp.json");
        let out = run(&[
            dir,
            "--to-http",
            &url,
            "--checkpoint",
            cp.to_str().expect("utf-8"),
            "--error-type",
            error_type,
        ])
        .await;
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{error_type}: {stdout}\n{}",
            text(&out.stderr)
        );
        let mut ids = door.ids();
        ids.sort();
        assert_eq!(ids, expected, "{error_type}: only those objects, once");
        assert!(
            stdout.contains("objects: 1 selected, 1 finished"),
            "{error_type}: {stdout}"
        );
        assert!(stdout.contains("3 filtered out"), "{error_type}: {stdout}");
    }
}

/// An object of many unreadable lines: the first few are warnings, the rest are counted, kept in
/// the problems file and logged at debug only (an object of a million bad lines logged a
/// million warnings).
#[tokio::test]
async fn an_object_of_many_bad_lines_logs_a_few_warnings_and_keeps_every_problem() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src/2026/11/25/09");
    std::fs::create_dir_all(&src).expect("source dir");
    let mut body = String::from("{\"id\":\"good\"}\n");
    for i in 0..50 {
        body.push_str(&format!("not json {i}\n"));
    }
    std::fs::write(
        src.join("events-1-2026-11-25-09-00-00-00000000-0000-4000-8000-000000000000"),
        body,
    )
    .expect("object");
    let cp = tmp.path().join("cp.json");
    let out = run(&[
        tmp.path().join("src").to_str().expect("utf-8"),
        "--to-http",
        &url,
        "--checkpoint",
        cp.to_str().expect("utf-8"),
    ])
    .await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(door.ids(), ["good"]);
    assert!(stdout.contains("1 sent"), "{stdout}");
    assert!(stdout.contains("50 skipped"), "{stdout}");
    let warned = stderr
        .lines()
        .filter(|l| l.contains("skipping a line that cannot be read"))
        .count();
    assert_eq!(warned, 10, "{stderr}");
    assert!(stderr.contains("logged at debug level only"), "{stderr}");
    let problems =
        std::fs::read_to_string(replay::checkpoint::problems_path(&cp)).expect("the problems file");
    assert_eq!(problems.lines().count(), 50, "{problems}");
}
