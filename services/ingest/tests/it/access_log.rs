//! The access log through the built binary: one JSON line per request, carrying the request's
//! ids itself (the request span is not in the log at INFO), never the API key.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::binary::{Ingest, start_fake_firehose, wait_log};
use crate::support::KeyFile;

const KEY: &str = "access-log-test-key";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

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
    assert!(line.get("key_id").is_none_or(Value::is_null), "{line}");
    assert!(line.get("trace_id").is_none_or(Value::is_null), "{line}");

    // A bad event from a known key: the key id is there.
    let invalid = http
        .post(&url)
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .header("x-request-id", "req-invalid")
        .body("[1]")
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(invalid.status(), 400);
    let line = access_line(&mut ingest, "req-invalid").await;
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(line["key_id"], key_id, "{line}");

    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
    // Nothing written, start to end, holds the key: every line, including the access lines
    // of the requests that carried it.
    let all = ingest.transcript().await;
    let access = all.iter().filter(|l| l.contains(r#""target":"access""#));
    assert_eq!(access.count(), 3, "three access lines in {all:#?}");
    for line in &all {
        assert!(!line.contains(KEY), "key in the log: {line}");
    }
}
