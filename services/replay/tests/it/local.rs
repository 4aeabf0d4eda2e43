//! The library end to end: fixtures in a local directory, replayed into a recording front door.

use replay::checkpoint::CheckpointError;
use replay::config::Config;
use replay::error::AppError;
use replay::replay::ReplayError;
use replay::summary::{ProblemKind, Summary};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Behaviour, EVERY_KIND, FrontDoor, GOOD_IDS, MALFORMED, assert_each_good_record_once, counts,
    fixture_dir, fixture_files, write_object,
};

async fn run(args: &[&str]) -> (Summary, String) {
    try_run(args).await.expect("the replay runs")
}

async fn try_run(args: &[&str]) -> Result<(Summary, String), AppError> {
    try_run_config(&config_of(args)).await
}

/// The flags alone: a `REPLAY_*` variable in the developer's shell does not count.
fn config_of(args: &[&str]) -> Config {
    cli_env::parse_args_only(std::iter::once("replay").chain(args.iter().copied()))
        .expect("valid arguments")
}

async fn try_run_config(config: &Config) -> Result<(Summary, String), AppError> {
    let mut preview = Vec::new();
    let summary = replay::run(config, &mut preview, &CancellationToken::new()).await?;
    Ok((summary, String::from_utf8(preview).expect("utf-8 preview")))
}

/// Replays the fixture directory to the front door at `url`, checkpointing in `cp`, with
/// `extra` flags.
async fn run_to_http(url: &str, cp: &std::path::Path, extra: &[&str]) -> (Summary, String) {
    try_run_to_http(url, cp, extra)
        .await
        .expect("the replay runs")
}

async fn try_run_to_http(
    url: &str,
    cp: &std::path::Path,
    extra: &[&str],
) -> Result<(Summary, String), AppError> {
    try_run_dir_to_http(&fixture_dir(), url, cp, extra).await
}

/// Every kind of fixture object to `url`, checkpointing in `cp`.
fn to_http_config(url: &str, cp: &std::path::Path) -> Config {
    dir_to_http_config(&fixture_dir(), url, cp, &EVERY_KIND)
}

/// The objects under `src` to `url`, checkpointing in `cp`, with `extra` flags.
fn dir_to_http_config(
    src: &std::path::Path,
    url: &str,
    cp: &std::path::Path,
    extra: &[&str],
) -> Config {
    let (src, cp) = (src.to_str().expect("utf-8"), cp.to_str().expect("utf-8"));
    let args = [src, "--to-http", url, "--checkpoint", cp];
    config_of(&[&args[..], extra].concat())
}

/// [`run_to_http`] for the objects under `src`.
async fn run_dir_to_http(
    src: &std::path::Path,
    url: &str,
    cp: &std::path::Path,
    extra: &[&str],
) -> (Summary, String) {
    try_run_dir_to_http(src, url, cp, extra)
        .await
        .expect("the replay runs")
}

async fn try_run_dir_to_http(
    src: &std::path::Path,
    url: &str,
    cp: &std::path::Path,
    extra: &[&str],
) -> Result<(Summary, String), AppError> {
    try_run_config(&dir_to_http_config(src, url, cp, extra)).await
}

fn dir() -> String {
    fixture_dir().display().to_string()
}

#[tokio::test]
async fn every_good_record_arrives_once_and_malformed_lines_are_reported() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;

    assert_each_good_record_once(&door.ids());
    assert!(summary.complete(), "{summary}");
    assert_eq!(summary.objects, 4);
    assert_eq!(summary.objects_finished, 4);
    assert_eq!(summary.records, GOOD_IDS.len());
    assert_eq!(summary.sent, GOOD_IDS.len());
    assert_eq!(summary.skipped, 2);
    let reported: Vec<(String, usize)> = summary
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unreadable)
        .map(|p| (p.key.clone(), p.line.expect("a line number")))
        .collect();
    let expected: Vec<(String, usize)> = MALFORMED
        .iter()
        .map(|(k, l)| ((*k).to_owned(), *l))
        .collect();
    assert_eq!(reported, expected);
    let text = summary.to_string();
    assert!(text.contains(&format!("{}:3", MALFORMED[1].0)), "{text}");
}

#[tokio::test]
async fn records_go_back_byte_for_byte_as_read() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    run_to_http(&url, &cp, &EVERY_KIND).await;
    let events = door.events();
    // processing-failed: the original input, untouched
    let pf1 = events
        .iter()
        .find(|e| e["id"] == "pf-1")
        .expect("pf-1 arrived");
    assert_eq!(
        pf1,
        &serde_json::json!({"id":"pf-1","message":"event pf-1","level":"error","service":"checkout"})
    );
    // http-endpoint-failed: the data as it was sent to the endpoint (already transformed)
    let he1 = events
        .iter()
        .find(|e| e["id"] == "he-1")
        .expect("he-1 arrived");
    assert_eq!(he1["transformed"], true);
    assert_eq!(he1["_record_id"], "rec-he-1");
}

#[tokio::test]
async fn a_second_run_sends_nothing_from_finished_objects() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let args = [
        dir(),
        "--to-http".into(),
        url,
        "--checkpoint".into(),
        cp.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).chain(EVERY_KIND).collect();
    run(&args).await;
    let requests = door.requests();
    let (again, _) = run(&args).await;
    assert_eq!(
        door.requests(),
        requests,
        "no request at all on the second run"
    );
    assert_eq!(again.objects_already_done, 4);
    assert_eq!(again.sent, 0);
    assert!(again.complete());
    assert_each_good_record_once(&door.ids());
}

#[tokio::test]
async fn an_outage_stops_the_run_and_a_rerun_resumes_without_duplicates() {
    // The front door takes 4 events, then Firehose "goes down": 503 for the rest.
    let (door, url) = FrontDoor::start(Behaviour {
        accept_limit: Some(4),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let args = [
        dir(),
        "--to-http".into(),
        url,
        "--checkpoint".into(),
        cp.display().to_string(),
        "--http-max-attempts".into(),
        "1".into(),
        "--http-batch".into(),
        "3".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).chain(EVERY_KIND).collect();
    let (first, _) = run(&args).await;
    assert!(first.stopped.is_some(), "{first}");
    assert!(!first.complete());
    assert_eq!(first.sent, 4);
    assert!(first.unsent > 0, "{first}");
    assert_eq!(door.ids().len(), 4);

    door.set(Behaviour::default());
    let (second, _) = run(&args).await;
    assert!(second.complete(), "{second}");
    assert_eq!(second.sent, GOOD_IDS.len() - 4);
    assert_each_good_record_once(&door.ids());
}

#[tokio::test]
async fn a_partial_503_resends_only_the_unaccepted_events() {
    let (door, url) = FrontDoor::start(Behaviour {
        partial_503: true,
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    assert!(summary.complete(), "{summary}");
    assert_each_good_record_once(&door.ids());
}

#[tokio::test]
async fn an_event_the_front_door_refuses_is_isolated_and_the_rest_delivered() {
    let (door, url) = FrontDoor::start(Behaviour {
        reject_ids: ["pf-2".to_owned()].into(),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    let got = counts(&door.ids());
    assert_eq!(got.len(), GOOD_IDS.len() - 1);
    assert!(!got.contains_key("pf-2"));
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert_eq!(summary.rejected, 1);
    let rejected = summary
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Rejected)
        .expect("the refusal is reported");
    assert!(rejected.key.starts_with("processing-failed/2026/11/25/09/"));
    assert_eq!(rejected.line, Some(2));
    assert!(rejected.reason.contains("400"), "{}", rejected.reason);

    // The refusal is kept beside the checkpoint (helper-56, M4): the item counts as done, so
    // a re-run sends nothing, says nothing of it, and ends complete; the file still names it.
    let problems_file = replay::checkpoint::problems_path(&cp);
    assert_eq!(
        summary.problems_file.as_deref(),
        Some(problems_file.to_str().expect("utf-8"))
    );
    let (rerun, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    assert!(rerun.complete(), "{rerun}");
    assert_eq!(rerun.rejected, 0, "{rerun}");
    assert!(
        rerun
            .to_string()
            .contains(problems_file.to_str().expect("utf-8")),
        "the re-run's summary points at the file: {rerun}"
    );
    let kept: Vec<serde_json::Value> = std::fs::read_to_string(&problems_file)
        .expect("the problems file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // The first run's problems, once: the refusal and the fixtures' two unreadable lines (the
    // re-run reads no object again, so it adds none).
    assert_eq!(kept.len(), 1 + 2, "{kept:?}");
    let refused: Vec<&serde_json::Value> =
        kept.iter().filter(|p| p["kind"] == "rejected").collect();
    assert_eq!(refused.len(), 1, "{kept:?}");
    assert_eq!(refused[0]["key"], rejected.key.as_str());
    assert_eq!(refused[0]["line"], 2);
    assert!(
        refused[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("400")
    );
    assert!(refused[0]["at"].as_u64().expect("at") > 1_700_000_000);
    assert_eq!(kept.iter().filter(|p| p["kind"] == "unreadable").count(), 2);
}

/// The front door names the events it refuses (`details[].index`): they are refused for good
/// at once and the rest go again in one request, not isolated by halving (helper-56: 999 POSTs
/// for a batch of 500 refused events).
#[tokio::test]
async fn refused_events_named_by_the_front_door_cost_one_more_request_not_a_bisection() {
    let refused: std::collections::BTreeSet<String> = (0..200)
        .filter(|n| n % 2 == 0)
        .map(|n| format!("e-{n}"))
        .collect();
    let (door, url) = FrontDoor::start(Behaviour {
        reject_ids: refused.clone(),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("2026/11/25/10")).expect("mkdir");
    let events: String = (0..200)
        .map(|n| format!("{{\"id\":\"e-{n}\"}}\n"))
        .collect();
    std::fs::write(
        src.join("2026/11/25/10/events-1-2026-11-25-10-00-00-x"),
        events,
    )
    .expect("write");
    let cp = tmp.path().join("cp.json");
    let (summary, _) = run_dir_to_http(&src, &url, &cp, &["--http-batch", "200"]).await;
    assert_eq!(summary.objects_finished, 1, "{summary}");
    assert_eq!((summary.sent, summary.rejected), (100, 100), "{summary}");
    assert_eq!(
        door.requests(),
        2,
        "the refusal, then the other 100 at once"
    );
    let mut got = door.ids();
    got.sort();
    let mut want: Vec<String> = (0..200)
        .filter(|n| n % 2 == 1)
        .map(|n| format!("e-{n}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let reason = &summary
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Rejected)
        .expect("reported")
        .reason;
    assert!(
        reason.contains("400") && reason.contains("breaks the schema"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_refusal_of_the_whole_request_stops_the_run_and_marks_nothing_done() {
    // A firewall (or a wrong content type) refuses every request without naming an event:
    // splitting it would only "reject" every event, one POST each, and check them all off.
    let (door, url) = FrontDoor::start(Behaviour {
        refuse_every_request: Some(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    assert!(!summary.complete(), "{summary}");
    assert_eq!((summary.sent, summary.rejected), (0, 0), "{summary}");
    assert_eq!(door.requests(), 1, "no splitting");
    let stopped = summary.stop_reason().unwrap_or_default();
    assert!(
        stopped.contains("415") && stopped.contains("as a whole"),
        "{stopped}"
    );
    // Fixed: the re-run delivers everything, once.
    door.set(Behaviour::default());
    let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    assert!(summary.complete(), "{summary}");
    assert_each_good_record_once(&door.ids());
}

#[tokio::test]
async fn filters_select_by_error_type_and_hour() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let (summary, _) = run_to_http(&url, &cp, &["--error-type", "processing-failed"]).await;
    assert_eq!(summary.objects, 2);
    assert_eq!(summary.objects_filtered_out, 2);
    let mut ids = door.ids();
    ids.sort();
    assert_eq!(ids, ["pf-1", "pf-2", "pf-3", "pf-4", "pf-5"]);

    let tmp2 = tempfile::tempdir().expect("tempdir");
    let cp2 = tmp2.path().join("cp.json");
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    // No --error-type: hour 09 holds error output only (the AllData object is filed under 08),
    // so the default selection is taken as it is.
    run_to_http(
        &url,
        &cp2,
        &["--since", "2026-11-25T09", "--until", "2026/11/25/09"],
    )
    .await;
    let mut ids = door.ids();
    ids.sort();
    assert_eq!(ids, ["he-1", "he-2", "he-3", "pf-1", "pf-2", "pf-3"]);
}

#[tokio::test]
async fn a_dry_run_counts_and_shows_but_sends_and_writes_nothing() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let extra = [&EVERY_KIND[..], &["--dry-run", "--show", "3"]].concat();
    let (summary, preview) = run_to_http(&url, &cp, &extra).await;
    assert_eq!(door.requests(), 0);
    assert!(!cp.exists(), "a dry run leaves no checkpoint");
    assert!(
        !replay::checkpoint::problems_path(&cp).exists(),
        "nor a problems file, though the fixtures have unreadable lines"
    );
    assert_eq!(summary.sent, GOOD_IDS.len(), "counts what it would send");
    assert!(summary.dry_run);
    assert_eq!(preview.lines().count(), 3, "{preview}");
    // objects in key order: the AllData object (2026/...) comes first
    assert!(preview.starts_with("2026/11/25/08/"), "{preview}");
    assert!(preview.contains("\"id\":\"ad-1\""), "{preview}");

    // without a target at all
    let dir = dir();
    let args = [
        &dir,
        "--dry-run",
        "--checkpoint",
        cp.to_str().expect("utf-8"),
    ];
    let (summary, _) = run(&[&args[..], &EVERY_KIND].concat()).await;
    assert_eq!(summary.sent, GOOD_IDS.len());

    // `--rate` paces sends, and a dry run sends nothing: at 1 a second these events would
    // take over 10 s to send; the dry run reads them at once (helper-56, L2).
    let paced = [&args[..], &["--rate", "1"], &EVERY_KIND].concat();
    let (summary, _) = tokio::time::timeout(std::time::Duration::from_secs(5), run(&paced))
        .await
        .expect("a dry run is not held back by --rate");
    assert_eq!(summary.sent, GOOD_IDS.len());
}

#[tokio::test]
async fn the_rate_limit_caps_batches_and_spreads_the_sends() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let started = std::time::Instant::now();
    let extra = [&EVERY_KIND[..], &["--rate", "2"]].concat();
    let (summary, _) = run_to_http(&url, &cp, &extra).await;
    assert!(summary.complete(), "{summary}");
    assert_each_good_record_once(&door.ids());
    // Batches of at most one second's worth (2): the objects hold 3, 3, 3 and 2 events.
    assert_eq!(door.requests(), 2 + 2 + 2 + 1);
    // Batches of 2, 1, 2, 1, 2, 1, 2: the pacer lets the last one (2 events) go no earlier than
    // (11 - 2) / 2 = 4.5 s after the first. A lower bound only: a slow machine cannot break it.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(4500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_cancelled_run_stops_before_sending_and_a_rerun_sends_everything_once() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let config = to_http_config(&url, &cp);
    // Ctrl-C before the first batch: the run stops with everything unsent.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let stopped = replay::run(&config, &mut Vec::new(), &cancel)
        .await
        .expect("the replay runs");
    assert_eq!(stopped.stop_reason(), Some("interrupted"));
    assert_eq!(stopped.sent, 0);
    assert_eq!(door.requests(), 0);

    let (summary, _) = try_run_config(&config).await.expect("the replay runs");
    assert!(summary.complete(), "{summary}");
    assert_each_good_record_once(&door.ids());
}

/// Ctrl-C or SIGTERM while the front door keeps answering 503: the wait before the next retry
/// ends at once, instead of the rest of the schedule (8 attempts, ~25 s of backoff), which
/// outlasts a Kubernetes Job's 30 s grace period once the requests themselves take time
/// (helper-82). Nothing of the batch is counted as done; a re-run sends every record once.
#[tokio::test]
async fn a_stop_during_retries_ends_the_wait_and_a_rerun_sends_everything_once() {
    let (door, url) = FrontDoor::start(Behaviour {
        accept_limit: Some(0),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let config = to_http_config(&url, &cp);
    let cancel = CancellationToken::new();
    let started = std::time::Instant::now();
    let mut preview = Vec::new();
    let replaying = replay::run(&config, &mut preview, &cancel);
    let stop = async {
        // The first 503 is in: the run is now waiting to retry. Bounded, so that a run that
        // ends without a request fails here instead of hanging until the harness kills it.
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while door.requests() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the replay sent a first request within 30 s");
        cancel.cancel();
    };
    let (stopped, ()) = tokio::join!(replaying, stop);
    let stopped = stopped.expect("the replay runs");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the stop waited out the retries: {:?}",
        started.elapsed()
    );
    assert_eq!(stopped.stop_reason(), Some("interrupted"), "{stopped}");
    assert!(!stopped.complete(), "{stopped}");
    assert_eq!(stopped.sent, 0, "{stopped}");
    assert!(stopped.unsent > 0, "{stopped}");
    assert!(door.requests() <= 2, "{}", door.requests());
    assert!(door.ids().is_empty());

    door.set(Behaviour::default());
    let (summary, _) = try_run_config(&config).await.expect("the replay runs");
    assert!(summary.complete(), "{summary}");
    assert_each_good_record_once(&door.ids());
}

#[tokio::test]
async fn events_delivered_before_a_configuration_error_are_not_sent_again() {
    // The first POST (the AllData object's 3 events) is answered 503 naming event 1, so ad-1
    // and ad-3 are delivered; the retry of ad-2 is answered 401 (the key was revoked). The run
    // stops, and the checkpoint must still say that ad-1 and ad-3 were delivered.
    let (door, url) = FrontDoor::start(Behaviour {
        partial_503: true,
        unauthorized_from_request: Some(2),
        ..Behaviour::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (first, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    let stopped = first.stop_reason().unwrap_or_default();
    assert!(stopped.contains("credentials"), "{first}");
    assert_eq!(door.ids(), ["ad-1", "ad-3"]);
    assert_eq!(first.sent, 2, "{first}");

    door.set(Behaviour::default());
    let (second, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    assert!(second.complete(), "{second}");
    assert_eq!(second.already_sent, 2, "{second}");
    assert_each_good_record_once(&door.ids());
}

/// A 2xx that is not the front door's answer (another service at that URL, a gateway stub
/// answering 200 or 204) says nothing about the events: the run stops and marks nothing done,
/// rather than count them delivered and lose them (helper-69).
#[tokio::test]
async fn a_success_that_is_not_the_front_doors_answer_stops_the_run() {
    use axum::routing::post;
    for (status, body) in [
        (axum::http::StatusCode::NO_CONTENT, ""),
        (axum::http::StatusCode::OK, "<html>welcome</html>"),
        (axum::http::StatusCode::OK, "{\"accepted\": 1}"),
    ] {
        let app =
            axum::Router::new().route("/v1/events", post(move || async move { (status, body) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/v1/events", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let tmp = tempfile::tempdir().expect("tempdir");
        let cp = tmp.path().join("cp.json");
        let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
        assert_eq!(summary.sent, 0, "{status} {body}: {summary}");
        assert!(!summary.complete(), "{summary}");
        assert!(
            summary.needs_fix(),
            "a wrong URL is fixed, not retried: {summary}"
        );
        let stopped = summary.stop_reason().unwrap_or_default();
        assert!(stopped.contains(status.as_str()), "{summary}");
        assert!(stopped.contains("accepted"), "{summary}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_stops_the_run() {
    // A POST answered 302 must not become a GET that a page answers 200: nothing was delivered.
    use axum::routing::{get, post};
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&gets);
    let app = axum::Router::new()
        .route(
            "/v1/events",
            post(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "/welcome")],
                    "moved",
                )
            }),
        )
        .route(
            "/welcome",
            get(move || async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "welcome"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (summary, _) = run_to_http(&url, &cp, &EVERY_KIND).await;
    assert_eq!(summary.sent, 0, "{summary}");
    assert!(!summary.complete(), "{summary}");
    let stopped = summary.stop_reason().unwrap_or_default();
    assert!(
        stopped.contains("302") && stopped.contains("/welcome") && stopped.contains("redirect"),
        "{summary}"
    );
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 0, "no GET");
}

/// Copies the fixture objects whose key starts with one of `prefixes` into `to`.
fn copy_fixtures(to: &std::path::Path, prefixes: &[&str]) {
    for (path, key) in fixture_files() {
        if prefixes.iter().any(|p| key.starts_with(p)) {
            let dest = to.join(&key);
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&path, &dest).expect("copy fixture");
        }
    }
}

#[tokio::test]
async fn a_source_of_one_kind_is_replayed_without_error_type() {
    for (prefixes, expected) in [
        (&["2026/"][..], &["ad-1", "ad-2", "ad-3"][..]),
        (
            &["processing-failed/", "http-endpoint-failed/"][..],
            &[
                "he-1", "he-2", "he-3", "pf-1", "pf-2", "pf-3", "pf-4", "pf-5",
            ][..],
        ),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        copy_fixtures(&src, prefixes);
        let cp = tmp.path().join("cp.json");
        let (door, url) = FrontDoor::start(Behaviour::default()).await;
        let (summary, _) = run_dir_to_http(&src, &url, &cp, &[]).await;
        assert!(summary.complete(), "{prefixes:?}: {summary}");
        let mut ids = door.ids();
        ids.sort();
        assert_eq!(ids, expected, "{prefixes:?}");
    }
}

#[tokio::test]
async fn a_rerun_without_error_type_is_refused_though_the_all_data_objects_are_finished() {
    // Finished objects count for the rule: otherwise this re-run would quietly send the error
    // output, i.e. the failed records a second time.
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (first, _) = run_to_http(&url, &cp, &["--error-type", "all-data"]).await;
    assert!(first.complete(), "{first}");
    assert_eq!(first.objects_finished, 1);
    let requests = door.requests();
    // This checkpoint records its filters: other ones are another replay, refused as such.
    let err = try_run_to_http(&url, &cp, &[])
        .await
        .expect_err("other filters are refused");
    assert!(
        matches!(
            err,
            AppError::Replay(ReplayError::Checkpoint(
                CheckpointError::OtherSelection { .. }
            ))
        ),
        "{err}"
    );
    // A checkpoint written before the filters were recorded takes any: the rule on kinds is
    // what refuses this one.
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cp).expect("the checkpoint is written"))
            .expect("JSON");
    assert!(state["selection"].is_string(), "{state}");
    state
        .as_object_mut()
        .expect("an object")
        .remove("selection");
    std::fs::write(&cp, serde_json::to_vec_pretty(&state).expect("JSON")).expect("write");
    let before = std::fs::read(&cp).expect("the checkpoint is written");

    let err = try_run_to_http(&url, &cp, &[])
        .await
        .expect_err("the mix is refused");
    assert!(
        matches!(
            err,
            AppError::Replay(ReplayError::MixedKinds {
                all_data: 1,
                error_output: 3,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(door.requests(), requests, "nothing more sent");
    assert_eq!(
        std::fs::read(&cp).expect("read"),
        before,
        "checkpoint untouched"
    );
}

/// A re-run with the same checkpoint leaves out objects its first run did not select, filed
/// under an hour at or after that run began: when the stream that takes the replay backs it up
/// into the source (AllData), those are the replay's own records, and taking them would send
/// everything delivered a second time (helper-69). They are named in the summary. An object
/// the first run selected but did not finish is still taken, however recently it was written
/// (rewritten in place, restored). One written since into an hour well before the first run
/// began cannot hold the replay's records, and is taken (helper-82: Firehose files failures it
/// gives up on late under the hour the records arrived in). A new checkpoint takes everything.
#[tokio::test]
async fn a_rerun_leaves_out_objects_its_first_run_did_not_select() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    copy_fixtures(&src, &["2026/"]);
    let cp = tmp.path().join("cp.json");
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    // The first run stops at once (the front door refuses the key): it selected the fixture.
    door.set(Behaviour {
        unauthorized_from_request: Some(1),
        ..Behaviour::default()
    });
    let (first, _) = run_dir_to_http(&src, &url, &cp, &[]).await;
    assert!(!first.complete(), "{first}");
    assert_eq!(first.objects_new, 0, "{first}");
    assert_eq!(door.ids().len(), 0);
    door.set(Behaviour::default());

    // The fixture object, rewritten in place; what the stream backed up of a replay: the same
    // events in an object written since, filed under the hour they arrived in (now); and a
    // late failure of the replayed day, filed under its hour, three days before.
    let fixture = src.join(MALFORMED[0].0);
    let content = std::fs::read(&fixture).expect("read the fixture");
    std::fs::write(&fixture, &content).expect("rewrite the fixture in place");
    let now = time::OffsetDateTime::now_utc();
    let hour = firehose_formats::backup::format_timestamp("yyyy/MM/dd/HH", now).expect("pattern");
    let echo_key = format!("{hour}/events-1-replayed");
    write_object(
        &src,
        &echo_key,
        "{\"id\":\"ad-1\",\"message\":\"event ad-1\"}\n{\"id\":\"ad-2\",\"message\":\"event ad-2\"}\n",
    );
    write_object(
        &src,
        "2026/11/25/09/events-1-2026-11-25-09-59-00-late",
        "{\"id\":\"late-1\",\"message\":\"written late\"}\n",
    );

    let (again, _) = run_dir_to_http(&src, &url, &cp, &[]).await;
    assert!(again.complete(), "{again}");
    assert_eq!(again.objects_new, 1, "{again}");
    assert_eq!(again.objects_late, 1, "{again}");
    assert_eq!(again.left_out, std::slice::from_ref(&echo_key), "{again}");
    let mut ids = door.ids();
    ids.sort();
    assert_eq!(
        ids,
        ["ad-1", "ad-2", "ad-3", "late-1"],
        "the fixture once and the late object, not the echo: {again}"
    );
    let text = again.to_string();
    assert!(
        text.contains("1 objects this checkpoint's first run did not select were left out")
            && text.contains(&format!("  left out: {echo_key}"))
            && text.contains("1 objects this checkpoint's first run did not select were taken"),
        "{text}"
    );
    // Later runs still leave the echo out, and do not send the late object again.
    let (third, _) = run_dir_to_http(&src, &url, &cp, &[]).await;
    assert_eq!(third.objects_new, 1, "{third}");
    assert_eq!(door.ids().len(), 4);

    // A new checkpoint is a new replay: it takes the echo too.
    let (fresh, _) = run_dir_to_http(&src, &url, &tmp.path().join("cp2.json"), &[]).await;
    assert_eq!(fresh.objects_new, 0, "{fresh}");
    assert_eq!(door.ids().len(), 4 + 4 + 2, "{fresh}");
}

/// New Relic drops log records whose `timestamp` is more than 48 hours old; the front door
/// and Firehose take them. A replay of old failures counts the events it sends that New Relic
/// will drop, in a dry run before anything is sent too, and says so in the summary.
#[tokio::test]
async fn events_new_relic_drops_for_their_age_are_counted_and_named_in_the_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let now = time::OffsetDateTime::now_utc();
    let ms = |t: time::OffsetDateTime| t.unix_timestamp() * 1000;
    let lines = [
        format!(
            r#"{{"id":"old-ms","timestamp":{}}}"#,
            ms(now - time::Duration::hours(49))
        ),
        format!(
            r#"{{"id":"old-text","timestamp":"{}"}}"#,
            (now - time::Duration::days(6))
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339")
        ),
        format!(
            r#"{{"id":"recent","timestamp":{}}}"#,
            ms(now - time::Duration::hours(46))
        ),
        r#"{"id":"no-time"}"#.to_owned(),
    ];
    write_object(
        &src,
        "2026/11/25/08/events-1-2026-11-25-08-00-00-timestamps",
        lines.join("\n") + "\n",
    );
    let (door, url) = FrontDoor::start(Behaviour::default()).await;

    let (dry, _) = run_dir_to_http(&src, &url, &tmp.path().join("dry.json"), &["--dry-run"]).await;
    assert_eq!(dry.too_old_for_new_relic, 2, "{dry}");
    assert!(
        dry.to_string()
            .contains("2 items to send hold an event whose `timestamp` is more than 47 hours old"),
        "{dry}"
    );
    assert_eq!(door.requests(), 0);

    let (sent, _) = run_dir_to_http(&src, &url, &tmp.path().join("cp.json"), &[]).await;
    assert!(sent.complete(), "{sent}");
    assert_eq!(sent.sent, 4, "{sent}");
    assert_eq!(sent.too_old_for_new_relic, 2, "{sent}");
    assert!(
        sent.to_string().contains("2 items sent hold an event")
            && sent
                .to_string()
                .contains("New Relic drops log records more than 48 hours old"),
        "{sent}"
    );
    let by_id = |events: &[serde_json::Value], id: &str| {
        events
            .iter()
            .find(|e| e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} delivered"))
    };
    assert!(by_id(&door.events(), "old-ms")["timestamp"].is_number());

    // --restamp: the old ones go out with the member renamed, the others as they were (a new
    // checkpoint: the same items, another replay).
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let (restamped, _) = run_dir_to_http(
        &src,
        &url,
        &tmp.path().join("restamped.json"),
        &["--restamp"],
    )
    .await;
    assert!(restamped.complete(), "{restamped}");
    assert_eq!(restamped.restamped, 2, "{restamped}");
    assert_eq!(restamped.too_old_for_new_relic, 0, "{restamped}");
    assert!(
        restamped
            .to_string()
            .contains("2 items sent were restamped"),
        "{restamped}"
    );
    let events = door.events();
    for id in ["old-ms", "old-text"] {
        let event = by_id(&events, id);
        assert!(event.get("timestamp").is_none(), "{event}");
        assert!(!event["original_timestamp"].is_null(), "{event}");
    }
    assert!(by_id(&events, "recent")["timestamp"].is_number());
    assert!(by_id(&events, "recent").get("original_timestamp").is_none());
    assert_eq!(events.len(), 4);
}

/// A checkpoint belongs to one selection: a run with other filters is another replay, and
/// is refused before anything is listed or sent (helper-82: reused with another --since, the
/// checkpoint left out every object of the new window and the run ended with status 0). The
/// same filters resume it; a file without a recorded selection takes any.
#[tokio::test]
async fn a_checkpoint_refuses_a_run_with_other_filters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let window = ["--since", "2026-11-25T08", "--until", "2026-11-25T08"];
    let (first, _) = try_run_dir_to_http(&fixture_dir(), &url, &cp, &window)
        .await
        .expect("the first run");
    assert!(first.complete(), "{first}");
    let sent = door.requests();
    assert!(sent > 0, "{first}");

    let err = try_run_dir_to_http(&fixture_dir(), &url, &cp, &["--since", "2026-11-25T09"])
        .await
        .expect_err("other filters are refused");
    assert!(
        matches!(
            &err,
            AppError::Replay(ReplayError::Checkpoint(CheckpointError::OtherSelection { expected, found, .. }))
                if expected == "--since 2026-11-25T09"
                    && found == "--since 2026-11-25T08 --until 2026-11-25T08"
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("pass another --checkpoint"),
        "{err}"
    );
    assert_eq!(door.requests(), sent, "nothing sent");

    // The same filters, spelt another way, resume it (nothing left to send).
    let (again, _) = try_run_dir_to_http(
        &fixture_dir(),
        &url,
        &cp,
        &["--until", "2026-11-25T08:00Z", "--since", "2026/11/25/08"],
    )
    .await
    .expect("the same filters");
    assert!(again.complete(), "{again}");
    assert_eq!(door.requests(), sent, "{again}");
}

/// A --key that names no object (a typo, or a key written with the source's prefix) is an
/// error before anything is sent, not "0 selected" and status 0, which would pass for a replay
/// done (helper-69). One of several not found is an error too, naming only it, with nothing
/// sent: replaying the others and ending with status 0 would pass for all of them done
/// (helper-82).
#[tokio::test]
async fn a_key_that_names_no_object_is_an_error_not_an_empty_success() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let err = try_run_to_http(&url, &cp, &["--key", "2026/11/25/08/no-such-object"])
        .await
        .expect_err("no such key");
    let text = err.to_string();
    assert!(
        text.contains("2026/11/25/08/no-such-object") && text.contains("Nothing was sent"),
        "{text}"
    );
    assert_eq!(door.requests(), 0);

    let real = MALFORMED[0].0;
    let err = try_run_to_http(&url, &cp, &["--key", real, "--key", "typo"])
        .await
        .expect_err("one key of two has no object");
    let text = err.to_string();
    assert!(
        text.starts_with("1 of the 2 keys") && text.contains(": typo.") && !text.contains(real),
        "{text}"
    );
    assert_eq!(door.requests(), 0);

    let (summary, _) = run_to_http(&url, &cp, &["--key", real]).await;
    assert_eq!(summary.objects, 1, "{summary}");
    assert!(summary.complete(), "{summary}");
}

/// A `--key` this checkpoint already finished is done, not missing, once the object is gone
/// (a lifecycle rule deleted it): otherwise a replay stopped after it could never be resumed,
/// since dropping the key changes the filters the checkpoint was written for (helper-84).
#[tokio::test]
async fn a_finished_key_whose_object_is_gone_is_done_not_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    copy_fixtures(&src, &["2026/", "processing-failed/"]);
    let cp = tmp.path().join("cp.json");
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let (first_key, second_key) = (MALFORMED[0].0, MALFORMED[1].0);
    let keys = ["--key", first_key, "--key", second_key];
    let (first, _) = run_dir_to_http(&src, &url, &cp, &keys).await;
    assert!(first.complete(), "{first}");
    assert_eq!(first.objects_finished, 2, "{first}");
    let sent = door.requests();

    std::fs::remove_file(src.join(first_key)).expect("delete the first object");
    let (again, _) = run_dir_to_http(&src, &url, &cp, &keys).await;
    assert!(again.complete(), "{again}");
    assert_eq!(again.objects_already_done, 2, "{again}");
    assert_eq!(door.requests(), sent, "nothing sent again");

    // A key this checkpoint never finished is still an error when its object is gone.
    std::fs::remove_file(src.join(second_key)).expect("delete the second object");
    let err = try_run_dir_to_http(&src, &url, &tmp.path().join("other.json"), &keys)
        .await
        .expect_err("not finished by that checkpoint");
    assert!(err.to_string().starts_with("2 of the 2 keys"), "{err}");
}

/// `--restamp` adds 9 bytes to each renamed event: an event that would then no longer fit a
/// record is sent as it was (and counted as too old), not refused for good (helper-84).
#[tokio::test]
async fn restamping_never_pushes_an_event_over_the_record_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let old_ms =
        (time::OffsetDateTime::now_utc() - time::Duration::days(3)).unix_timestamp() * 1000;
    let head = format!(r#"{{"id":"big","timestamp":{old_ms},"pad":""#);
    // 1,023,995 bytes: within the front door's 1,023,999, over it once renamed.
    let pad = "x".repeat(1_023_995 - head.len() - 2);
    let event = format!("{head}{pad}\"}}");
    assert_eq!(event.len(), 1_023_995);
    write_object(
        &src,
        "2026/11/25/08/events-1-2026-11-25-08-00-00-big",
        format!("{event}\n"),
    );
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let (summary, _) =
        run_dir_to_http(&src, &url, &tmp.path().join("cp.json"), &["--restamp"]).await;
    assert!(summary.complete(), "{summary}");
    assert_eq!(summary.restamped, 0, "{summary}");
    assert_eq!(summary.too_old_for_new_relic, 1, "{summary}");
    let events = door.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["timestamp"], old_ms);
}

/// An `https://` URL whose port answers plain HTTP fails the TLS handshake on every attempt:
/// the run stops after the first one, "needs a fix" (exit status 3), naming TLS, instead of
/// spending the attempt budget and ending "run it again", which a retry loop repeats for ever.
#[tokio::test]
async fn a_failed_tls_handshake_needs_a_fix_not_a_rerun() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}/v1/events", listener.local_addr().expect("addr"));
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut hello = [0u8; 512];
            let _ = socket.read(&mut hello).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let (summary, _) = run_to_http(&url, &tmp.path().join("cp.json"), &EVERY_KIND).await;
    assert!(summary.needs_fix(), "{summary}");
    assert_eq!(summary.sent, 0, "{summary}");
    let stopped = summary.stop_reason().unwrap_or_default();
    assert!(stopped.contains("TLS handshake failed"), "{summary}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one attempt, not the retry budget"
    );
}

/// A host name that does not exist (`.invalid` is reserved for that, RFC 2606) needs a fix
/// too. Where no name server answers at all (EAI_AGAIN), resolution may pass later and is
/// retried: the test needs a resolver that says "no such name", and is skipped without one
/// (the wordings themselves are unit-tested in `src/http.rs`, whatever the resolver).
#[tokio::test]
async fn a_host_that_does_not_exist_needs_a_fix_not_a_rerun() {
    use std::net::ToSocketAddrs as _;
    // glibc, musl and BSD wordings of EAI_NONAME / EAI_NODATA.
    const NO_SUCH_HOST: [&str; 4] = [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
        "nodename nor servname provided",
    ];
    let wording = match ("no-such-host.invalid", 80).to_socket_addrs() {
        Err(e) => NO_SUCH_HOST.into_iter().find(|w| e.to_string().contains(w)),
        Ok(_) => None,
    };
    let Some(wording) = wording else {
        eprintln!(
            "skipped: this resolver does not answer \"no such name\" for no-such-host.invalid"
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (summary, _) = run_to_http(
        "http://no-such-host.invalid/v1/events",
        &tmp.path().join("cp.json"),
        &EVERY_KIND,
    )
    .await;
    assert!(summary.needs_fix(), "{summary}");
    let stopped = summary.stop_reason().unwrap_or_default();
    assert!(
        stopped.contains("host name does not exist") && stopped.contains(wording),
        "{summary}"
    );
}
