//! A tiny stand-in for the Firehose API: answers `PutRecordBatch` (every record accepted) and
//! `DescribeDeliveryStream` over the real AWS JSON 1.1 protocol the SDK speaks, instantly.
//!
//! Shared by the integration tests (which keep what arrives, to compare with what clients were
//! told) and the `fake-firehose` example that the load benchmark runs (which only counts).

#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
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
    /// How long each `PutRecordBatch` answer is held back (a slow Firehose).
    delay: std::time::Duration,
}

impl FakeFirehose {
    /// A fake that keeps records (`keep`) or only counts them.
    pub fn new(keep: bool) -> Arc<Self> {
        Arc::new(Self {
            keep,
            ..Self::default()
        })
    }

    /// A counting fake that holds each `PutRecordBatch` answer back for `delay`.
    pub fn slow(delay: std::time::Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            ..Self::default()
        })
    }

    /// The router: `POST /` (the AWS JSON protocol) and `GET /stats`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", post(handle))
            .route("/stats", get(stats))
            // axum's default 2 MiB would refuse a full call (4 MiB of records, base64 in JSON).
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
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
            let n = if fake.keep {
                let Ok(req) = serde_json::from_slice::<PutRecordBatch<'_>>(&body) else {
                    return json(
                        StatusCode::BAD_REQUEST,
                        r#"{"__type":"SerializationException","message":"bad body"}"#.to_owned(),
                    );
                };
                let engine = base64::engine::general_purpose::STANDARD;
                let decoded: Vec<Vec<u8>> = req
                    .records
                    .iter()
                    .map(|r| engine.decode(r.data.as_bytes()).unwrap_or_default())
                    .collect();
                let n = decoded.len();
                if let Ok(mut kept) = fake.kept.lock() {
                    kept.extend(decoded);
                }
                n
            } else {
                // Only counting (the load benchmark, on the cores of the service it measures):
                // the records' `"Data":` keys, found by a SIMD substring search, instead of a
                // JSON parse that scans every record's base64 byte by byte (1.1 µs of CPU per
                // event at 1 KB). A base64 value holds no `"`, so only keys match.
                memchr::memmem::find_iter(&body, br#""Data":"#).count()
            };
            // Not even a zero sleep otherwise: tokio rounds a timer up to the next millisecond.
            if !fake.delay.is_zero() {
                tokio::time::sleep(fake.delay).await;
            }
            let call = fake.calls.fetch_add(1, Ordering::Relaxed);
            fake.records.fetch_add(n as u64, Ordering::Relaxed);
            let mut out = String::with_capacity(64 + n * 40);
            out.push_str(r#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":["#);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, r#"{{"RecordId":"fake-{call}-{i}"}}"#);
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

/// The counting fake (the load benchmark's) and the keeping one (the tests') see the same
/// records in what `aws-sdk-firehose` sends, and answer one result per record.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::future::IntoFuture as _;

    use aws_sdk_firehose::primitives::Blob;
    use aws_sdk_firehose::types::Record;

    use super::*;

    #[tokio::test]
    async fn counting_and_keeping_agree_on_what_the_sdk_sends() {
        for keep in [false, true] {
            let fake = FakeFirehose::new(keep);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(axum::serve(listener, fake.router()).into_future());
            let config = aws_sdk_firehose::Config::builder()
                .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
                .region(aws_sdk_firehose::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_firehose::config::Credentials::for_tests())
                .endpoint_url(url)
                .build();
            let client = aws_sdk_firehose::Client::from_conf(config);
            // Record data that spells the key the counter looks for, base64-encoded by the SDK.
            let records = ["{\"Data\":1}\n", "x", "{\"Data\":\"Data\"}"]
                .map(|d| Record::builder().data(Blob::new(d)).build().unwrap());
            let out = client
                .put_record_batch()
                .delivery_stream_name("s")
                .set_records(Some(records.to_vec()))
                .send()
                .await
                .unwrap();
            assert_eq!(out.request_responses().len(), 3, "keep={keep}");
            assert_eq!(fake.records.load(Ordering::Relaxed), 3, "keep={keep}");
        }
    }
}
