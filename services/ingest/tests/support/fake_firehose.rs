//! A tiny stand-in for the Firehose API: answers `PutRecordBatch` (every record accepted) and
//! `DescribeDeliveryStream` over the real AWS JSON 1.1 protocol the SDK speaks, instantly.
//!
//! Shared by the integration tests (which keep what arrives, to compare with what clients were
//! told) and the `fake-firehose` example that the load benchmark runs (which only counts).

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;

/// What the fake has seen.
#[derive(Debug, Default)]
pub struct FakeFirehose {
    /// `PutRecordBatch` calls answered.
    pub calls: AtomicU64,
    /// Records accepted.
    pub records: AtomicU64,
    /// Decoded record data, in arrival order (only when `keep` is set).
    pub kept: Mutex<Vec<Vec<u8>>>,
    keep: bool,
}

impl FakeFirehose {
    /// A fake that keeps records (`keep`) or only counts them.
    pub fn new(keep: bool) -> Arc<Self> {
        Arc::new(Self {
            keep,
            ..Self::default()
        })
    }

    /// The router: `POST /` (the AWS JSON protocol) and `GET /stats`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", post(handle))
            .route("/stats", get(stats))
            .with_state(Arc::clone(self))
    }

    /// Kept records.
    pub fn kept(&self) -> Vec<Vec<u8>> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

// Borrowed: the load benchmark runs this on the same cores as the service under test, so it
// should not copy every record's base64 to count it.
#[derive(Deserialize)]
struct PutRecordBatch<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "Data", borrow)]
    data: std::borrow::Cow<'a, str>,
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}

async fn stats(State(fake): State<Arc<FakeFirehose>>) -> Response {
    json(
        StatusCode::OK,
        format!(
            "{{\"calls\":{},\"records\":{}}}",
            fake.calls.load(Ordering::Relaxed),
            fake.records.load(Ordering::Relaxed)
        ),
    )
}

async fn handle(
    State(fake): State<Arc<FakeFirehose>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match target {
        "Firehose_20150804.PutRecordBatch" => {
            let Ok(req) = serde_json::from_slice::<PutRecordBatch<'_>>(&body) else {
                return json(
                    StatusCode::BAD_REQUEST,
                    r#"{"__type":"SerializationException","message":"bad body"}"#.to_owned(),
                );
            };
            let call = fake.calls.fetch_add(1, Ordering::Relaxed);
            let n = req.records.len();
            fake.records.fetch_add(n as u64, Ordering::Relaxed);
            if fake.keep {
                let engine = base64::engine::general_purpose::STANDARD;
                let decoded: Vec<Vec<u8>> = req
                    .records
                    .iter()
                    .map(|r| engine.decode(r.data.as_bytes()).unwrap_or_default())
                    .collect();
                if let Ok(mut kept) = fake.kept.lock() {
                    kept.extend(decoded);
                }
            }
            let mut out = String::with_capacity(64 + n * 40);
            out.push_str(r#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":["#);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(r#"{{"RecordId":"fake-{call}-{i}"}}"#));
            }
            out.push_str("]}");
            json(StatusCode::OK, out)
        }
        "Firehose_20150804.DescribeDeliveryStream" => {
            let name = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["DeliveryStreamName"].as_str().map(str::to_owned))
                .unwrap_or_default();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "DeliveryStreamDescription": {
                        "DeliveryStreamName": name,
                        "DeliveryStreamARN": format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/{name}"),
                        "DeliveryStreamStatus": "ACTIVE",
                        "DeliveryStreamType": "DirectPut",
                        "VersionId": "1",
                        "Destinations": [],
                        "HasMoreDestinations": false
                    }
                })
                .to_string(),
            )
        }
        other => json(
            StatusCode::BAD_REQUEST,
            format!(r#"{{"__type":"UnknownOperationException","message":"{other}"}}"#),
        ),
    }
}
