//! Runs the built `transform` binary against the Lambda Runtime API, served by a minimal host.
//!
//! The host speaks the protocol the Lambda service speaks to a custom runtime
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>): the binary long-polls
//! `GET /2018-06-01/runtime/invocation/next`, gets an event with the
//! `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn` and `-Trace-Id`
//! headers, and posts to `/invocation/{id}/response` or `/invocation/{id}/error`. One process
//! serves every invocation of a test, as in Lambda, so a bad event must not break the next one.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};

/// What the binary posted back for one invocation.
#[derive(Debug)]
enum Reply {
    Response(Bytes),
    Error(Value),
}

struct HostState {
    /// Events waiting for a `next` request: (request id, body).
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Vec<u8>)>>,
    replies: mpsc::UnboundedSender<(String, Reply)>,
    /// When the first `next` request arrived.
    first_next: Mutex<Option<oneshot::Sender<Instant>>>,
}

/// A Runtime API host on 127.0.0.1 plus the `transform` process attached to it.
struct Harness {
    events: mpsc::UnboundedSender<(String, Vec<u8>)>,
    replies: mpsc::UnboundedReceiver<(String, Reply)>,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    /// Changes with each line added to `logs`.
    lines_read: watch::Receiver<usize>,
    /// Spawn → first `GET /next`.
    startup: Duration,
    next_id: u32,
}

async fn next_invocation(State(state): State<Arc<HostState>>) -> (HeaderMap, Vec<u8>) {
    if let Some(tx) = state.first_next.lock().unwrap().take() {
        let _ = tx.send(Instant::now());
    }
    // Long poll: wait until the test queues an event (or the test ends).
    let (id, body) = state.events.lock().await.recv().await.unwrap_or_default();
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(60);
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from(deadline.as_millis() as u64),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:transform"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static(
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        ),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (headers, body)
}

async fn invocation_response(
    State(state): State<Arc<HostState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    state.replies.send((id, Reply::Response(body))).unwrap();
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(state): State<Arc<HostState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.replies.send((id, Reply::Error(value))).unwrap();
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<Arc<HostState>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .replies
        .send(("init".to_owned(), Reply::Error(value)))
        .unwrap();
    StatusCode::ACCEPTED
}

impl Harness {
    async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// [`Self::start`], with `env` added to the binary's environment.
    async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let state = Arc::new(HostState {
            events: tokio::sync::Mutex::new(events_rx),
            replies: replies_tx,
            first_next: Mutex::new(Some(first_tx)),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            // Responses go up to 6 MB; axum's default request limit is 2 MB.
            .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_transform"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "transform")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/25/[$LATEST]0123456789abcdef",
            )
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/transform")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = Arc::clone(&logs);
        let (read_tx, lines_read) = watch::channel(0);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
                read_tx.send_modify(|n| *n += 1);
            }
        });
        let first_next = tokio::time::timeout(Duration::from_secs(30), first_rx)
            .await
            .expect("the binary asks for an invocation")
            .unwrap();
        let startup = first_next - spawned;
        println!("process start -> first /invocation/next: {startup:?}");
        Self {
            events: events_tx,
            replies: replies_rx,
            child,
            logs,
            lines_read,
            startup,
            next_id: 0,
        }
    }

    /// The request id of the invocation [`Self::invoke`] sent last.
    fn last_request_id(&self) -> String {
        format!("8476a536-e9f4-11e8-9739-{:012}", self.next_id)
    }

    /// Queues one event and waits for the binary's reply to it.
    async fn invoke(&mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.next_id += 1;
        let id = self.last_request_id();
        self.events.send((id.clone(), body.into())).unwrap();
        let (reply_id, reply) = tokio::time::timeout(Duration::from_secs(60), self.replies.recv())
            .await
            .expect("the binary replies")
            .unwrap();
        assert_eq!(
            reply_id, id,
            "the reply goes to the invocation's own request id"
        );
        reply
    }

    async fn invoke_ok(&mut self, body: impl Into<Vec<u8>>) -> Value {
        match self.invoke(body).await {
            Reply::Response(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Reply::Error(error) => panic!("expected a response, got error {error}"),
        }
    }

    /// The process must still be serving: no crash after whatever it was fed.
    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the runtime process exited"
        );
    }

    /// Every log line of the invocations so far, parsed. The binary writes an invocation's lines
    /// before it replies, but this test's reader of its stdout may lag behind the reply. So one
    /// more invocation is sent, with a record that fails (its summary line is written at every
    /// level short of `off`), and lines are read until that summary: everything the binary
    /// wrote before it has been read by then, lines written after a reply included. The
    /// barrier's own lines, from the first that names its request id, are left out.
    async fn settled_logs(&mut self) -> Vec<Value> {
        let barrier =
            r#"{"invocationId":"log-barrier","records":[{"recordId":"barrier","data":"*"}]}"#;
        self.invoke_ok(barrier).await;
        let id = self.last_request_id();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.lines_read.borrow_and_update();
            {
                let logs = self.logs.lock().unwrap();
                let named = |l: &&String| l.contains(id.as_str());
                if logs
                    .iter()
                    .filter(named)
                    .any(|l| l.contains(r#""invocation done""#))
                {
                    return logs
                        .iter()
                        .take_while(|l| !named(l))
                        .map(|l| {
                            serde_json::from_str(l)
                                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
                        })
                        .collect();
                }
            }
            tokio::time::timeout_at(deadline, self.lines_read.changed())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no summary line for the barrier invocation {id} within 30 s: {:?}",
                        self.logs.lock().unwrap()
                    )
                })
                .expect("the binary's stdout is still open");
        }
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn records(value: &Value) -> &Vec<Value> {
    value["records"].as_array().unwrap()
}

fn decoded(record: &Value) -> Vec<u8> {
    STANDARD.decode(record["data"].as_str().unwrap()).unwrap()
}

/// The response answers every input record, in order, with a valid result and base64 data;
/// every `Ok` record enriched.
fn assert_contract(event: &[u8], response: &Value) {
    check_contract(event, response, false);
}

/// [`assert_contract`], but an `Ok` record may be the record as sent, unenriched (it did not
/// fit the response budget): for events built to be too large to enrich whole.
fn assert_contract_allowing_unenriched(event: &[u8], response: &Value) {
    check_contract(event, response, true);
}

fn check_contract(event: &[u8], response: &Value, unenriched_allowed: bool) {
    let event: Value = serde_json::from_slice(event).unwrap();
    let inputs = records(&event);
    let outputs = records(response);
    assert_eq!(outputs.len(), inputs.len());
    for (input, output) in inputs.iter().zip(outputs) {
        assert_eq!(output["recordId"], input["recordId"]);
        let result = output["result"].as_str().unwrap();
        assert!(
            ["Ok", "Dropped", "ProcessingFailed"].contains(&result),
            "{result}"
        );
        if result == "Ok" {
            let bytes = decoded(output);
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(payload) if payload.get("_record_id").is_some() => {
                    assert_eq!(payload["transformed"], true);
                    assert_eq!(payload["_record_id"], input["recordId"]);
                    assert!(payload["_transformed_ts"].is_i64());
                }
                // Delivered as it came (it did not fit enriched): the same JSON value, or the
                // same text without its BOM and line ending.
                payload => {
                    assert!(
                        unenriched_allowed,
                        "record {} is Ok but not enriched",
                        input["recordId"]
                    );
                    let sent = decoded(input);
                    let sent = sent.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&sent);
                    match (payload, serde_json::from_slice::<Value>(sent)) {
                        (Ok(payload), Ok(sent)) => assert_eq!(payload, sent),
                        _ => {
                            let sent = sent.strip_suffix(b"\n").unwrap_or(sent);
                            let sent = sent.strip_suffix(b"\r").unwrap_or(sent);
                            assert_eq!(bytes, sent, "an unenriched record is the record as sent");
                        }
                    }
                }
            }
        } else {
            assert_eq!(
                output["data"], input["data"],
                "non-Ok records keep their data"
            );
        }
    }
}

#[tokio::test]
async fn realistic_event_round_trips() {
    let mut host = Harness::start().await;
    let event = fixture("realistic-firehose-event.json");
    let response = host.invoke_ok(event.clone()).await;
    assert_contract(&event, &response);
    let results: Vec<&str> = records(&response)
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "ProcessingFailed").count(),
        3,
        "the fixture's 3 bad records"
    );
    assert!(results.iter().filter(|r| **r == "Ok").count() >= 50);
    // Why the event is not read with aws_lambda_events' typed `KinesisFirehoseEvent`: its `data`
    // is decoded while parsing, so one record that is not base64 fails the whole batch.
    let typed =
        serde_json::from_slice::<aws_lambda_events::event::firehose::KinesisFirehoseEvent>(&event);
    assert!(typed.is_err());

    // One JSON log line for the invocation, with the counts. terraform/alarms.tf's
    // transform_failed_records metric filter reads `message` and `failed` from this line, at the
    // top level: keep them there.
    let logs = host.settled_logs().await;
    let summaries: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == "invocation done")
        .collect();
    assert_eq!(summaries.len(), 1, "{logs:?}");
    assert_eq!(summaries[0]["records"], 57);
    assert_eq!(summaries[0]["failed"], 3);
    assert!(summaries[0]["response_bytes"].as_u64().unwrap() > 0);
    assert!(summaries[0]["duration_us"].is_u64());
    println!("startup {:?}", host.startup);
    host.assert_alive();
}

/// The alarm on ProcessingFailed records (terraform/alarms.tf) counts the invocation line's
/// `failed`: a log level turned down to `warn` or `error` must not silence it when there are
/// failures (helper-65 L2: at `error` it did).
#[tokio::test]
async fn at_error_the_invocation_line_is_still_written_when_records_failed() {
    // ERROR (and FATAL, which counts as error) is as low as the level goes short of off.
    let mut host = Harness::start_with_env(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR")]).await;
    let event = fixture("realistic-firehose-event.json");
    host.invoke_ok(event).await;
    let clean = serde_json::json!({
        "invocationId": "clean",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/s",
        "region": "us-east-1",
        "records": [{"recordId": "r1", "approximateArrivalTimestamp": 1, "data": "eyJhIjoxfQ=="}]
    });
    host.invoke_ok(serde_json::to_vec(&clean).unwrap()).await;
    let logs = host.settled_logs().await;
    let summaries: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == "invocation done")
        .collect();
    assert_eq!(
        summaries.len(),
        1,
        "only the invocation with failures: {logs:?}"
    );
    assert_eq!(summaries[0]["failed"], 3);
    assert_eq!(summaries[0]["level"], "ERROR");
    host.assert_alive();
}

#[tokio::test]
async fn aws_documented_sample_events_are_answered() {
    let mut host = Harness::start().await;
    for name in [
        "aws-lambda-guide-firehose-event.json",
        "rust-runtime-firehose-event.json",
    ] {
        let event = fixture(name);
        if name.starts_with("rust-runtime") {
            // The aws_lambda_events fixture is a valid event for its own types too.
            let typed: aws_lambda_events::event::firehose::KinesisFirehoseEvent =
                serde_json::from_slice(&event).unwrap();
            assert_eq!(typed.records.len(), 2);
        }
        let response = host.invoke_ok(event.clone()).await;
        assert_contract(&event, &response);
        for record in records(&response) {
            assert_eq!(record["result"], "Ok");
            let payload: Value = serde_json::from_slice(&decoded(record)).unwrap();
            assert_eq!(payload["message"], "Hello World", "{name}");
        }
    }
    host.assert_alive();
}

#[tokio::test]
async fn edge_cases_follow_the_per_record_rules() {
    let mut host = Harness::start().await;
    let event = fixture("edge-cases-firehose-event.json");
    let response = host.invoke_ok(event.clone()).await;
    assert_contract(&event, &response);
    let out = records(&response);
    let by_id = |id: &str| out.iter().find(|r| r["recordId"] == id).unwrap();
    let text = |id: &str| String::from_utf8(decoded(by_id(id))).unwrap();

    assert!(
        text("obj-bignum").starts_with(r#"{"id":123456789012345678901234567890,"price":1.10,"name":"caf\u00e9","transformed":true,"_transformed_ts":"#),
        "{}",
        text("obj-bignum")
    );
    assert!(text("obj-ours").starts_with(r#"{"a":1,"transformed":true,"_transformed_ts":"#));
    assert!(text("obj-ours").ends_with(r#","_record_id":"obj-ours"}"#));
    assert!(
        text("text-newline").starts_with(r#"{"message":"plain text line 東京","transformed":true"#)
    );
    assert!(text("json-array").starts_with(r#"{"message":[1,2,3],"#));
    assert!(text("json-string").starts_with(r#"{"message":"just a string","#));
    assert_eq!(by_id("empty")["result"], "Dropped");
    assert_eq!(by_id("whitespace")["result"], "Dropped");
    assert_eq!(by_id("bad-base64")["result"], "ProcessingFailed");
    assert_eq!(by_id("bad-utf8")["result"], "ProcessingFailed");
    let quoted: Value =
        serde_json::from_slice(&decoded(by_id(r#"id with "quotes" and \ backslash"#))).unwrap();
    assert_eq!(quoted["_record_id"], r#"id with "quotes" and \ backslash"#);

    // Failure reasons are logged by record id and reason, never with the payload.
    let logs = host.settled_logs().await;
    let failures: Vec<&Value> = logs
        .iter()
        .filter(|l| l["level"] == "ERROR" && l["reason"].is_string())
        .collect();
    assert_eq!(failures.len(), 2, "{logs:?}");
    let reasons: Vec<&str> = failures
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["invalid_base64", "invalid_utf8"]);
    // Each failure line names its invocation, as the invocation line does, and that line says
    // which invocation and stream the event was.
    let done: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == "invocation done")
        .collect();
    assert_eq!(done.len(), 1, "{logs:?}");
    let request_id = done[0]["request_id"].as_str().expect("a request id");
    assert!(!request_id.is_empty());
    for failure in &failures {
        assert_eq!(failure["request_id"], request_id, "{failure}");
    }
    assert_eq!(done[0]["invocation_id"], "edge-cases");
    assert_eq!(
        done[0]["delivery_stream_arn"],
        "arn:aws:firehose:us-east-1:123456789012:deliverystream/events"
    );
    assert_eq!(done[0]["failed_invalid_utf8"], 1);
    assert_eq!(done[0]["failed_gzip_compressed"], 0);
    // And the same counts as CloudWatch metrics (EMF), on a line of their own.
    let emf: Vec<&Value> = logs.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 1, "{logs:?}");
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "FirehoseTransform"
    );
    assert_eq!(emf[0]["FunctionName"], "transform");
    assert_eq!(emf[0]["DeliveryStream"], "events");
    assert_eq!(emf[0]["Failed"], done[0]["failed"]);
    assert_eq!(emf[0]["Records"], done[0]["records"]);
    let all_logs = host.logs.lock().unwrap().join("\n");
    assert!(
        !all_logs.contains("not*valid*base64"),
        "payloads never reach the logs"
    );
    host.assert_alive();
}

/// At TRACE (Lambda's advanced logging controls), `lambda_runtime` would log every raw event,
/// every record's data; those lines are left out, the rest of the verbose output is not.
#[tokio::test]
async fn payloads_stay_out_of_the_log_at_trace_level() {
    let mut host = Harness::start_with_env(&[("AWS_LAMBDA_LOG_LEVEL", "TRACE")]).await;
    // {"secret":"hunter2-payload"}
    let data = "eyJzZWNyZXQiOiJodW50ZXIyLXBheWxvYWQifQ==";
    let event = format!(
        r#"{{"invocationId":"t","records":[{{"recordId":"r1","approximateArrivalTimestamp":1770249600000,"data":"{data}"}}]}}"#
    );
    let response = host.invoke_ok(event.clone()).await;
    assert_eq!(records(&response)[0]["result"], "Ok");
    let logs = host.settled_logs().await;
    assert!(
        logs.iter()
            .any(|l| l["level"] == "DEBUG" || l["level"] == "TRACE"),
        "verbose logging is on: {logs:?}"
    );
    let all_logs = host.logs.lock().unwrap().join("\n");
    assert!(
        !all_logs.contains(data) && !all_logs.contains("hunter2"),
        "no payload in the logs: {all_logs}"
    );
    host.assert_alive();
}

/// `TRANSFORM_EMF=off`: no metrics line, the log as before.
#[tokio::test]
async fn emf_metrics_can_be_turned_off() {
    let mut host = Harness::start_with_env(&[("TRANSFORM_EMF", "off")]).await;
    let event = r#"{"invocationId":"t","records":[{"recordId":"r1","data":"e30="}]}"#;
    let response = host.invoke_ok(event.to_owned()).await;
    assert_eq!(records(&response)[0]["result"], "Ok");
    let logs = host.settled_logs().await;
    assert!(
        logs.iter().any(|l| l["message"] == "invocation done"),
        "{logs:?}"
    );
    assert!(logs.iter().all(|l| l.get("_aws").is_none()), "{logs:?}");
    host.assert_alive();
}

#[tokio::test]
async fn many_tiny_records_stay_under_the_response_limit() {
    let mut host = Harness::start().await;
    // 60,000 records of `{}`: ~3.5 MB in, but ~9 MB if every record were enriched.
    let records_json: Vec<String> = (0..60_000)
        .map(|i| format!(r#"{{"recordId":"r{i:06}","approximateArrivalTimestamp":1770249600000,"data":"e30="}}"#))
        .collect();
    let event = format!(
        r#"{{"invocationId":"tiny","records":[{}]}}"#,
        records_json.join(",")
    );
    let bytes = match host.invoke(event.clone()).await {
        Reply::Response(bytes) => bytes,
        Reply::Error(error) => panic!("expected a response, got error {error}"),
    };
    assert!(
        bytes.len() <= 6_000_000,
        "response is {} bytes",
        bytes.len()
    );
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    assert_contract_allowing_unenriched(event.as_bytes(), &response);
    let results: Vec<&str> = records(&response)
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    // Every record is delivered: the ones that do not fit enriched as they came (`{}`).
    assert!(results.iter().all(|r| *r == "Ok"), "every record Ok");
    let enriched = records(&response)
        .iter()
        .filter(|r| decoded(r) != b"{}")
        .count();
    assert!(
        enriched > 0 && enriched < results.len(),
        "some fit enriched, some do not: {enriched} enriched"
    );
    println!(
        "{enriched} of {} tiny records fit enriched; response {} bytes",
        results.len(),
        bytes.len()
    );
    host.assert_alive();
}

#[tokio::test]
async fn non_firehose_events_are_invocation_errors() {
    let mut host = Harness::start().await;
    for (body, error_type) in [
        (r#"{"hello":"world"}"#, "NotFirehoseEvent"),
        (r#"{"records":[{"data":"e30="}]}"#, "NotFirehoseEvent"),
        ("[1,2,3]", "NotFirehoseEvent"),
    ] {
        match host.invoke(body).await {
            Reply::Error(error) => {
                assert_eq!(error["errorType"], error_type, "{body}: {error}");
                assert!(
                    error["errorMessage"]
                        .as_str()
                        .unwrap()
                        .contains("`records` array")
                );
            }
            Reply::Response(r) => panic!("{body} must fail, got {r:?}"),
        }
    }
    // Not even JSON: the runtime's own deserializer rejects it, and the process keeps serving.
    assert!(matches!(host.invoke("not json").await, Reply::Error(_)));
    let event = fixture("aws-lambda-guide-firehose-event.json");
    assert_contract(&event, &host.invoke_ok(event.clone()).await);
    host.assert_alive();
    // Each invocation that failed whole logged one ERROR "invocation failed" line and no
    // "invocation done" line (that is the answered one's).
    let count =
        |logs: &[Value], message: &str| logs.iter().filter(|l| l["message"] == message).count();
    let logs = host.settled_logs().await;
    assert_eq!(count(&logs, "invocation done"), 1, "{logs:?}");
    let failed: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == "invocation failed")
        .collect();
    assert_eq!(failed.len(), 3, "{logs:?}");
    assert!(failed.iter().all(|l| l["level"] == "ERROR"), "{failed:?}");
}

#[tokio::test]
async fn outside_lambda_it_says_what_is_missing() {
    let output = Command::new(env!("CARGO_BIN_EXE_transform"))
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("AWS_LAMBDA_RUNTIME_API is not set"),
        "{stdout}"
    );
}

/// Peak resident memory (`VmHWM`) of a running process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_six_megabyte_event_stays_under_64_mib() {
    // The realistic records, repeated under fresh ids up to ~6 MB of event JSON (the request limit).
    let template: Value =
        serde_json::from_slice(&fixture("realistic-firehose-event.json")).unwrap();
    let mut all = Vec::new();
    let mut size = 0;
    'fill: for round in 0.. {
        for record in records(&template) {
            let mut record = record.clone();
            record["recordId"] = Value::from(format!(
                "{round:04}-{}",
                record["recordId"].as_str().unwrap()
            ));
            size += serde_json::to_string(&record).unwrap().len() + 1;
            if size > 6_000_000 {
                break 'fill;
            }
            all.push(record);
        }
    }
    let event =
        serde_json::to_vec(&serde_json::json!({"invocationId": "big", "records": all})).unwrap();
    assert!(event.len() <= 6 * 1024 * 1024);

    let mut host = Harness::start().await;
    let response = host.invoke_ok(event.clone()).await;
    // ~6 MB of event: not every record fits enriched in a 6 MB response.
    assert_contract_allowing_unenriched(&event, &response);
    let pid = host.child.id().unwrap();
    let Some(peak) = peak_rss_kib(pid) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "no /proc/{pid}/status under CI"
        );
        println!("skipped: no /proc/{pid}/status to read peak memory from");
        return;
    };
    println!(
        "{} byte event, {} records: peak RSS {} KiB ({:.1} MiB); startup {:?}",
        event.len(),
        all.len(),
        peak,
        peak as f64 / 1024.0,
        host.startup
    );
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB is over the 64 MiB target"
    );
    host.assert_alive();
}
