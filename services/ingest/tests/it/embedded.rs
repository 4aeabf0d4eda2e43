//! The embedded default: the built `ingest` binary with no `FIREHOSE_DELIVERY_STREAM` starts
//! the local Firehose in-process and runs the whole pipeline — front door → buffering → the
//! Rust transform → an HTTP endpoint (checked header by header against the Firehose
//! HTTP-endpoint spec) or local files — and a SIGTERM right after the acknowledgements loses
//! nothing. Through the same binary: throttling (firehose-local's fault injection) makes
//! `ingest` retry only the refused records, and a failing endpoint lands the events in
//! `http-endpoint-failed/`.

use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use test_support::{files_under, refusing_address};

use crate::binary::{spawn_logged, wait_log, wait_started};

struct Ingest {
    child: Child,
    url: String,
    admin: String,
    /// Its log lines after start-up.
    logs: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

/// Starts `ingest` with no delivery stream, in `dir`, with `extra` settings, and waits until
/// it is listening and the embedded stream answered `DescribeDeliveryStream`.
async fn start_embedded(dir: &Path, extra: &[(&str, &str)]) -> Ingest {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INGEST_LISTEN", "127.0.0.1:0")
        .env("INGEST_ADMIN_LISTEN", "127.0.0.1:0")
        .env("INGEST_LOCAL_DIR", dir)
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        command.env(k, v);
    }
    let (child, mut logs, _transcript) = spawn_logged(command);
    let warned = wait_log(&mut logs, |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("using the embedded local Firehose"))
    })
    .await;
    assert_eq!(
        warned["level"], "WARN",
        "the embedded default is announced loudly"
    );
    let (listening, _) = wait_started(&mut logs).await;
    let url = format!("http://{}", listening["listen"].as_str().expect("listen"));
    let admin = format!("http://{}", listening["admin"].as_str().expect("admin"));
    Ingest {
        child,
        url,
        admin,
        logs,
    }
}

impl Ingest {
    async fn post(&self, body: &str) -> (u16, Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}/v1/events", self.url))
            .header("content-type", "application/x-ndjson")
            .body(body.to_owned())
            .send()
            .await
            .expect("ingest answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.expect("JSON answer"))
    }

    /// The value of an unlabelled counter in `/metrics`, or the sum over its label sets.
    async fn counter(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.admin))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("running").to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill runs")
                .success()
        );
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("ingest exits after SIGTERM")
            .expect("wait")
    }
}

/// One request the endpoint received: headers and the decompressed body.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct Endpoint {
    received: Arc<Mutex<Vec<Received>>>,
    count: watch::Sender<usize>,
}

/// A New Relic stand-in that speaks the Firehose HTTP-endpoint protocol correctly.
async fn endpoint(State(state): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let mut text = String::new();
    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("gzip body");
        text
    } else {
        String::from_utf8(body.to_vec()).expect("utf-8 body")
    };
    let body: Value = serde_json::from_str(&raw).expect("JSON body");
    let request_id = body["requestId"].clone();
    let records = body["records"].as_array().map_or(0, Vec::len);
    state
        .received
        .lock()
        .expect("lock")
        .push(Received { headers, body });
    state.count.send_modify(|n| *n += records);
    axum::Json(json!({"requestId": request_id, "timestamp": 1_795_000_000_000_u64}))
}

type Response = axum::Json<Value>;

#[tokio::test]
async fn events_reach_an_http_endpoint_transformed_and_per_spec() {
    let (count, mut seen) = watch::channel(0_usize);
    let state = Endpoint {
        received: Arc::default(),
        count,
    };
    let app = Router::new()
        .route("/firehose/v1", post(endpoint))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/firehose/v1",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest = start_embedded(
        dir.path(),
        &[
            ("INGEST_LOCAL_ENDPOINT_URL", url.as_str()),
            ("INGEST_LOCAL_ENDPOINT_ACCESS_KEY", "license-key-123"),
        ],
    )
    .await;
    let events = [
        r#"{"service":"checkout","big":123456789012345678901234567890,"price":1.10}"#,
        r#"{"service":"auth","transformed":"theirs","nested":{"k":[1,2]}}"#,
    ];
    let (status, answer) = ingest.post(&events.join("\n")).await;
    assert_eq!(status, 200, "{answer}");
    let ids: Vec<String> = serde_json::from_value(answer["recordIds"].clone()).expect("ids");
    assert_eq!(ids.len(), 2);

    tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|n| *n >= 2))
        .await
        .expect("the endpoint receives both records within the buffer interval")
        .expect("watch");
    let received = state.received.lock().expect("lock").clone();
    let mut delivered = Vec::new();
    for r in &received {
        let h = &r.headers;
        assert_eq!(h["x-amz-firehose-protocol-version"], "1.0");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["x-amz-firehose-access-key"], "license-key-123");
        assert_eq!(
            h["x-amz-firehose-request-id"].to_str().expect("ascii"),
            r.body["requestId"].as_str().expect("requestId string"),
            "the header and the body carry the same request id"
        );
        assert!(
            h["x-amz-firehose-source-arn"]
                .to_str()
                .expect("ascii")
                .ends_with(":deliverystream/events")
        );
        assert!(r.body["timestamp"].is_u64(), "timestamp in epoch ms");
        for rec in r.body["records"].as_array().expect("records") {
            let data = base64::engine::general_purpose::STANDARD
                .decode(rec["data"].as_str().expect("data"))
                .expect("base64");
            delivered.push(String::from_utf8(data).expect("utf-8"));
        }
    }
    delivered.sort();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    // The transform appended its fields and kept every byte of the event, numbers included.
    let auth = &delivered[0];
    assert!(
        auth.starts_with(r#"{"service":"auth","nested":{"k":[1,2]},"transformed":true,"#),
        "{auth}"
    );
    let checkout = &delivered[1];
    assert!(
        checkout.starts_with(
            r#"{"service":"checkout","big":123456789012345678901234567890,"price":1.10,"transformed":true,"#
        ),
        "{checkout}"
    );
    for line in [auth, checkout] {
        let v: Value = serde_json::from_str(line).expect("JSON");
        // Firehose's own id for the record, which (as on AWS) is not the RecordId ingest got.
        let record_id = v["_record_id"].as_str().expect("_record_id");
        assert!(!record_id.is_empty() && !ids.iter().any(|id| id == record_id));
        assert!(v["_transformed_ts"].is_u64());
    }
    assert!(ingest.terminate().await.success());
}

#[tokio::test]
async fn sigterm_right_after_the_acknowledgements_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest = start_embedded(dir.path(), &[]).await;
    let mut acknowledged = Vec::new();
    for batch in 0..5 {
        acknowledged.extend(post_events(&ingest, &format!("b{batch}"), 40).await);
    }
    // Records are still in the local Firehose's 5 s buffer: the shutdown must flush them.
    assert!(ingest.terminate().await.success());

    let delivered = event_ids_under(&dir.path().join("delivered"));
    acknowledged.sort();
    assert_eq!(acknowledged.len(), 200);
    assert_eq!(
        delivered, acknowledged,
        "every acknowledged event delivered once"
    );
}

/// Every event's `id` in the NDJSON files under `dir`, recursively. Events are matched by their
/// content: the local Firehose, like AWS, gives the transform its own record ids, not the
/// `RecordId`s ingest answered with.
fn event_ids_under(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for path in files_under(dir) {
        if path.to_string_lossy().ends_with(".partial") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).expect("JSON line");
            ids.push(v["id"].as_str().expect("id").to_owned());
        }
    }
    ids.sort();
    ids
}

/// Posts `n` events (`{"id":"<prefix>-<i>"}`) in one NDJSON request, checks that all were
/// acknowledged, and returns their `id`s.
async fn post_events(ingest: &Ingest, prefix: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let body: Vec<String> = ids.iter().map(|id| format!(r#"{{"id":"{id}"}}"#)).collect();
    let (status, answer) = ingest.post(&body.join("\n")).await;
    assert_eq!(status, 200, "{answer}");
    let record_ids: Vec<String> =
        serde_json::from_value(answer["recordIds"].clone()).expect("recordIds");
    assert_eq!(record_ids.len(), n, "{answer}");
    ids
}

/// ingest on an embedded local Firehose whose one stream (`stream`, delivering under
/// `<dir>/delivered`) injects `faults` (the lines of a `[faults]` table), with a retry budget
/// long enough to get through them.
async fn start_with_faults(dir: &Path, stream: &str, faults: &str) -> Ingest {
    let config = dir.join("firehose-local.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[faults]
{faults}

[[streams]]
name = "{stream}"
buffering = {{ size_mb = 1, interval_secs = 1 }}
processor = {{ mode = "in-process", buffer_interval_secs = 0 }}
local_destination = {{ dir = "{dir}/delivered" }}
backup = {{ target = {{ kind = "local-dir", dir = "{dir}/backup" }} }}
"#,
            dir = dir.display()
        ),
    )
    .expect("config written");
    let config = config.to_string_lossy().into_owned();
    start_embedded(
        dir,
        &[
            ("INGEST_LOCAL_FIREHOSE_CONFIG", config.as_str()),
            ("INGEST_RETRY_BUDGET", "20s"),
            ("INGEST_REQUEST_TIMEOUT", "60s"),
            ("INGEST_SHUTDOWN_GRACE", "60s"),
        ],
    )
    .await
}

#[tokio::test]
async fn throttled_records_are_retried_alone_until_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest =
        start_with_faults(dir.path(), "throttled", "throttle_share = 0.5\nseed = 7").await;
    let mut acknowledged = post_events(&ingest, "t", 100).await;
    // Half of the records were refused at least once, and only those were sent again.
    let failed = ingest.counter("ingest_firehose_records_failed_total").await;
    let retried = ingest
        .counter("ingest_firehose_records_retried_total")
        .await;
    assert!(failed > 0.0, "the fault injection throttled records");
    assert!(
        (retried - failed).abs() < f64::EPSILON,
        "exactly the failed records were retried: failed {failed}, retried {retried}"
    );
    assert!(ingest.terminate().await.success());
    acknowledged.sort();
    assert_eq!(
        event_ids_under(&dir.path().join("delivered")),
        acknowledged,
        "every acknowledged event delivered exactly once"
    );
}

/// Whole calls refused (503 `ServiceUnavailableException`, nothing taken), through the real SDK
/// (whose own retries ingest turns off) and HTTP: the producer retries them, and every event is
/// delivered once. The SDK-mock tests cover the error's classification; this covers the wire.
#[tokio::test]
async fn refused_calls_are_retried_until_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest = start_with_faults(
        dir.path(),
        "refusing",
        "call_failure_share = 0.5\nseed = 11",
    )
    .await;
    let mut acknowledged = Vec::new();
    for call in 0..5 {
        acknowledged.extend(post_events(&ingest, &format!("c{call}"), 20).await);
    }
    let calls = |outcome: &'static str| {
        let ingest = &ingest;
        async move {
            ingest
                .counter(&format!(
                    "ingest_firehose_put_batch_calls_total{{outcome=\"{outcome}\"}}"
                ))
                .await
        }
    };
    assert!(
        calls("error").await > 0.0,
        "the fault injection refused calls"
    );
    assert!(calls("ok").await > 0.0);
    assert!(ingest.terminate().await.success());
    acknowledged.sort();
    assert_eq!(acknowledged.len(), 100);
    assert_eq!(
        event_ids_under(&dir.path().join("delivered")),
        acknowledged,
        "every acknowledged event delivered exactly once"
    );
}

/// As with the standalone firehose-local, a second signal ends the embedded Firehose's grace
/// period: what it could not deliver is backed up at once instead of being retried for the rest
/// of the grace period (helper-88: it kept retrying until a third signal, which loses it).
#[tokio::test]
async fn a_second_signal_backs_up_at_once_what_the_local_firehose_could_not_deliver() {
    // Every delivery attempt is refused.
    let (_reserved, closed) = refusing_address();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest = start_with_endpoint(
        dir.path(),
        "shutdown_grace_secs: 600",
        &format!("http://{closed}/firehose/v1"),
        60,
        3600,
    )
    .await;
    let mut acknowledged = post_events(&ingest, "h", 3).await;
    ingest.sigterm();
    // The local Firehose is flushing and retrying the refused endpoint.
    wait_log(&mut ingest.logs, |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("delivery attempt failed"))
    })
    .await;
    ingest.sigterm();
    let status = tokio::time::timeout(Duration::from_secs(60), ingest.child.wait())
        .await
        .expect("ingest exits soon after the second signal, not after the 600 s grace")
        .expect("wait");
    assert!(status.success(), "{status}");
    acknowledged.sort();
    assert_eq!(
        backed_up_event_ids(&dir.path().join("backup")),
        acknowledged,
        "every acknowledged event backed up once"
    );
}

#[tokio::test]
async fn a_failing_endpoint_lands_in_http_endpoint_failed() {
    // Every delivery attempt fails to connect.
    let (_reserved, closed) = refusing_address();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest = start_with_endpoint(
        dir.path(),
        "",
        &format!("http://{closed}/firehose/v1"),
        1,
        0,
    )
    .await;
    let mut acknowledged = post_events(&ingest, "f", 3).await;
    // The shutdown flushes the buffers; with no retry duration left, the batch is backed up.
    assert!(ingest.terminate().await.success());

    acknowledged.sort();
    assert_eq!(
        backed_up_event_ids(&dir.path().join("backup")),
        acknowledged,
        "every acknowledged event is in the backup"
    );
}

/// The `id` of every event in the error-output objects under `backup`, sorted; they must all be
/// `http-endpoint-failed/` records with an `HttpEndpoint.*` error code.
fn backed_up_event_ids(backup: &Path) -> Vec<String> {
    let mut backed_up = Vec::new();
    for path in files_under(backup) {
        assert!(
            path.to_string_lossy().contains("http-endpoint-failed/"),
            "{}",
            path.display()
        );
        let mut text = String::new();
        let bytes = std::fs::read(&path).expect("read");
        if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("gzip");
        } else {
            text = String::from_utf8(bytes).expect("utf-8");
        }
        for line in text.lines().filter(|l| !l.is_empty()) {
            let record: Value = serde_json::from_str(line).expect("error record");
            assert!(
                record["errorCode"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("HttpEndpoint.")),
                "{record}"
            );
            let raw = base64::engine::general_purpose::STANDARD
                .decode(record["rawData"].as_str().expect("rawData"))
                .expect("base64");
            let event: Value = serde_json::from_slice(&raw).expect("transformed event");
            backed_up.push(event["id"].as_str().expect("id").to_owned());
        }
    }
    backed_up.sort();
    backed_up
}

/// [`start_embedded`] with a local Firehose config of one stream `events` (the in-process
/// transform, a local-dir backup under `dir`) delivering to `url`, with the destination buffer's
/// interval and the endpoint's retry duration in seconds, and `top` (top-level settings) first.
async fn start_with_endpoint(
    dir: &Path,
    top: &str,
    url: &str,
    interval_secs: u64,
    retry_secs: u64,
) -> Ingest {
    let config = dir.join("firehose-local.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
{top}
streams:
  - name: events
    buffering: {{ size_mb: 1, interval_secs: {interval_secs} }}
    processor: {{ mode: in-process, buffer_interval_secs: 0 }}
    http_endpoint: {{ url: "{url}", retry_duration_secs: {retry_secs} }}
    backup: {{ target: {{ kind: local-dir, dir: "{dir}/backup" }} }}
"#,
            dir = dir.display()
        ),
    )
    .expect("config written");
    let config = config.to_string_lossy().into_owned();
    start_embedded(dir, &[("INGEST_LOCAL_FIREHOSE_CONFIG", config.as_str())]).await
}
