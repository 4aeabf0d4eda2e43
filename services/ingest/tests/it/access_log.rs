//! The access log through the built binary: one JSON line per request, carrying the request's
//! ids itself (the request span is not in the log at INFO), never the API key.

use serde_json::Value;
use sha2::{Digest, Sha256};

use futures::StreamExt as _;

use crate::binary::{Ingest, admin_addr, start_fake_firehose, wait_log};
use crate::support::KeyFile;

const KEY: &str = "access-log-test-key";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// SIGTERM, a clean exit, and every line ingest wrote to stdout.
async fn exit_and_read(ingest: &mut Ingest) -> Vec<String> {
    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
    ingest.transcript().await
}

/// How many of `lines` are access-log lines.
fn access_lines(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.contains(r#""target":"access""#))
        .count()
}

/// The next access line of the request with id `request_id`.
async fn access_line(ingest: &mut Ingest, request_id: &str) -> Value {
    wait_log(&mut ingest.logs, |v| {
        v["target"] == "access" && v["request_id"] == request_id
    })
    .await
}

#[tokio::test]
async fn every_request_gets_one_access_line_with_its_ids_and_no_key() {
    let (firehose, _fake) = start_fake_firehose().await;
    let keys = KeyFile::new(&format!("{KEY}\n"));
    let mut ingest = Ingest::start(
        &firehose,
        "access",
        &[("INGEST_API_KEYS_FILE", keys.path_str())],
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/events", ingest.url);
    let body = r#"{"access":"log"}"#;

    let accepted = http
        .post(&url)
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .header("x-request-id", "req-accepted")
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .header("user-agent", "fluent-bit/3.2")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.3")
        .header(
            "x-amzn-trace-id",
            "Root=1-67891233-abcdef012345678912345678",
        )
        .body(body)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(accepted.status(), 200);
    let line = access_line(&mut ingest, "req-accepted").await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["message"], "request", "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["route"], "/v1/events", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["request_bytes"], body.len(), "{line}");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    let key_id = &hex::encode(Sha256::digest(KEY.as_bytes()))[..8];
    assert_eq!(line["key_id"], key_id, "{line}");
    assert!(line.get("reason").is_none_or(Value::is_null), "{line}");
    // Who sent it: the peer, and what the request says about itself.
    assert_eq!(line["events"], 1, "{line}");
    assert_eq!(line["peer"], "127.0.0.1", "{line}");
    assert_eq!(line["user_agent"], "fluent-bit/3.2", "{line}");
    assert_eq!(line["forwarded_for"], "203.0.113.7, 10.0.0.3", "{line}");
    assert_eq!(
        line["amzn_trace_id"], "Root=1-67891233-abcdef012345678912345678",
        "{line}"
    );
    // At INFO with trace export off, no request span is created, so none is in the line.
    assert!(line.get("span").is_none(), "{line}");

    // A refusal before the key is known: no key id; the generated request id is the one the
    // client got back; no trace id without a `traceparent`.
    let refused = http
        .post(&url)
        .bearer_auth("not-a-key")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(refused.status(), 401);
    let generated = refused.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let line = access_line(&mut ingest, &generated).await;
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["reason"], "unauthorized", "{line}");
    // Nothing accepted: no count. reqwest sends no User-Agent of its own.
    assert!(line.get("events").is_none_or(Value::is_null), "{line}");
    assert!(line.get("user_agent").is_none_or(Value::is_null), "{line}");
    assert_eq!(line["peer"], "127.0.0.1", "{line}");
    assert!(line.get("key_id").is_none_or(Value::is_null), "{line}");
    assert!(line.get("trace_id").is_none_or(Value::is_null), "{line}");

    // A bad event from a known key: the key id is there.
    let invalid = http
        .post(&url)
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .header("x-request-id", "req-invalid")
        // Cut at 256 bytes in the line.
        .header("user-agent", "u".repeat(300))
        .body("[1]")
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(invalid.status(), 400);
    let line = access_line(&mut ingest, "req-invalid").await;
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(line["key_id"], key_id, "{line}");
    assert_eq!(line["user_agent"], "u".repeat(256), "{line}");

    // Nothing written, start to end, holds the key: every line, including the access lines
    // of the requests that carried it.
    let all = exit_and_read(&mut ingest).await;
    assert_eq!(access_lines(&all), 3, "three access lines in {all:#?}");
    for line in &all {
        assert!(!line.contains(KEY), "key in the log: {line}");
    }
}

/// A stalled stdout (the node's log pipeline stuck) must not stop intake: with the default
/// `INGEST_LOG_WHEN_FULL=drop`, the lines that do not fit the log queue are dropped and counted
/// on `/metrics`, and every request is answered as usual.
#[tokio::test]
async fn a_stalled_stdout_costs_counted_log_lines_not_requests() {
    // Enough requests to fill the pipe (64 KiB), the writer's buffer (64 KiB) and the queue
    // (16 lines) with access lines of ≈ 250 bytes several times over.
    const REQUESTS: usize = 1500;
    let (mut ingest, _fake) = start_with_a_short_log_queue("stalled-stdout", &[]).await;
    let admin = admin_addr(&ingest);
    let paused = ingest.pause_stdout().await;

    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        post_many(&ingest.url, REQUESTS),
    )
    .await
    .expect("requests are answered while stdout is stalled");
    assert_eq!(answers.len(), REQUESTS);
    assert_all_accepted(&answers);

    let metrics = reqwest::Client::new()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("the admin listener answers")
        .text()
        .await
        .expect("metrics text");
    let dropped: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ingest_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("exported: {metrics}"))
        .parse()
        .expect("a count");
    assert!(dropped > 0, "lines were dropped, and counted");

    drop(paused);
    // Every line not dropped reaches stdout once it takes lines again, with ingest still
    // running: read them before SIGTERM, so the exit does not hinge on the log thread writing
    // a full queue through a full pipe within `tracing-appender`'s 100 ms (then 1 s) at exit.
    ingest.wait_written(access_lines, REQUESTS - dropped).await;
    let access = access_lines(&exit_and_read(&mut ingest).await);
    assert!(access < REQUESTS, "{access} access lines");
    // Every access line is either in the log or counted as dropped (only access lines are
    // logged while stdout is stalled).
    assert_eq!(
        access + dropped,
        REQUESTS,
        "{access} written, {dropped} dropped"
    );
}

/// `ingest` against a fake Firehose with a log queue of 16 lines (so a paused stdout fills it
/// within a few hundred requests) and a 1 ms linger, with `extra` settings.
async fn start_with_a_short_log_queue(
    stream: &str,
    extra: &[(&str, &str)],
) -> (Ingest, std::sync::Arc<crate::fake_firehose::FakeFirehose>) {
    let (firehose, fake) = start_fake_firehose().await;
    let mut settings = vec![("INGEST_LOG_QUEUE_LINES", "16"), ("INGEST_LINGER", "1ms")];
    settings.extend_from_slice(extra);
    (Ingest::start(&firehose, stream, &settings).await, fake)
}

/// Every answer of [`post_many`] is 200.
fn assert_all_accepted(answers: &[Result<u16, String>]) {
    let refused: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(200))).collect();
    assert!(
        refused.is_empty(),
        "not accepted: {:?}",
        &refused[..refused.len().min(5)]
    );
}

/// `n` small events, one per request, 16 at a time; each request's status or error.
async fn post_many(url: &str, n: usize) -> Vec<Result<u16, String>> {
    post_many_counted(url, n, &std::sync::atomic::AtomicUsize::new(0)).await
}

/// [`post_many`], adding one to `answered` as each request gets its answer.
async fn post_many_counted(
    url: &str,
    n: usize,
    answered: &std::sync::atomic::AtomicUsize,
) -> Vec<Result<u16, String>> {
    let http = reqwest::Client::new();
    let url = format!("{url}/v1/events");
    futures::stream::iter(0..n)
        .map(|i| {
            let request = http
                .post(&url)
                .header("content-type", "application/json")
                .body(format!(r#"{{"stalled":{i}}}"#));
            async move {
                let answer = request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// With a stdout that never takes another line, SIGTERM still ends the process: the log
/// thread's flush at exit is bounded (helper-57, L1: it waited for ever on the stdout lock).
#[tokio::test]
async fn a_stalled_stdout_does_not_hold_the_exit() {
    let (mut ingest, _fake) = start_with_a_short_log_queue("stalled-exit", &[]).await;
    let _paused = ingest.pause_stdout().await;
    let answers = post_many(&ingest.url, 1500).await;
    assert_all_accepted(&answers);
    // `terminate` waits 60 s at most; the flush gives up after 5.
    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
}

/// `INGEST_LOG_WHEN_FULL=block` keeps every line by making requests wait for stdout: while it
/// is stalled they are not answered, and once it takes lines again they all are, and every
/// access line is written.
#[tokio::test]
async fn with_block_a_stalled_stdout_holds_requests_until_it_takes_lines_again() {
    const REQUESTS: usize = 1500;
    let (mut ingest, _fake) =
        start_with_a_short_log_queue("stalled-block", &[("INGEST_LOG_WHEN_FULL", "block")]).await;
    let paused = ingest.pause_stdout().await;
    let url = ingest.url.clone();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let requests = tokio::spawn(async move { post_many_counted(&url, REQUESTS, &counter).await });
    // The pipe, the writer's buffer and the queue hold about 550 access lines: the answers
    // must stop coming well short of 1,500 and stay stopped. Waited for as "no new answer for
    // a second", however slow the host (a fixed wait could end before a slow debug build had
    // answered the ≈ 550, or pass while answers were still coming).
    let read = || answered.load(std::sync::atomic::Ordering::SeqCst);
    let plateau = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        let mut last = read();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = read();
            if now == last && now > 0 {
                return now;
            }
            last = now;
        }
    })
    .await
    .expect("the answers stop while stdout is stalled");
    assert!(
        plateau <= 700,
        "{plateau} of {REQUESTS} requests answered while stdout was stalled"
    );
    drop(paused);
    let answers = tokio::time::timeout(std::time::Duration::from_secs(90), requests)
        .await
        .expect("answered once stdout takes lines")
        .expect("the task does not panic");
    assert_all_accepted(&answers);
    // As above: every line is written while ingest runs, before SIGTERM.
    ingest.wait_written(access_lines, REQUESTS).await;
    let access = access_lines(&exit_and_read(&mut ingest).await);
    assert_eq!(access, REQUESTS, "no line dropped");
}
