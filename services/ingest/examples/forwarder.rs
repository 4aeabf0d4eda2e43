//! A bare forwarder through `aws-sdk-firehose`, for the load benchmark
//! (`scripts/bench-ingest.sh`): it reads the body, splits a JSON array into its elements (the
//! shared scanner; a body that is not an array is one event), sends them as `PutRecordBatch`
//! calls of at most 500 records (each element plus `\n`, the bytes ingest sends) and answers
//! 200 once Firehose has accepted them all.
//!
//! Nothing else: no coalescing across requests, no retries, no validation beyond the split, no
//! auth, limits, metrics or logs. What is left is what every forwarder pays per byte: SigV4's
//! SHA-256 of the payload, base64 and JSON in the SDK's serializer, and the second HTTP hop,
//! plus the SDK's cost per call. Its batch figure against the minimal handler shows how far
//! the SDK alone is from a handler that only reads the body; ingest, which coalesces requests
//! into 500-record calls, can be cheaper per event than it. (For single events it says
//! nothing useful: one call per event costs far more than ingest's coalesced calls.) Same
//! environment as ingest: `FIREHOSE_DELIVERY_STREAM`, `AWS_ENDPOINT_URL`, region and
//! credentials.
//!
//!     cargo run --release -p ingest --example forwarder -- 127.0.0.1:8082

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use firehose_formats::json_scan::array_elements;
use firehose_formats::limits::MAX_BATCH_RECORDS;

struct Forwarder {
    client: aws_sdk_firehose::Client,
    stream: String,
}

async fn forward(State(fwd): State<Arc<Forwarder>>, body: Bytes) -> (StatusCode, &'static str) {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "not UTF-8\n");
    };
    let events = if text.trim_start().starts_with('[') {
        match array_elements(text) {
            Ok(events) => events,
            Err(_) => return (StatusCode::BAD_REQUEST, "not a JSON array\n"),
        }
    } else {
        vec![text.trim()]
    };
    for chunk in events.chunks(MAX_BATCH_RECORDS) {
        let records = chunk.iter().map(|event| {
            let mut data = Vec::with_capacity(event.len() + 1);
            data.extend_from_slice(event.as_bytes());
            data.push(b'\n');
            Record::builder().data(Blob::new(data)).build()
        });
        let Ok(records) = records.collect::<Result<Vec<_>, _>>() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "record\n");
        };
        let sent = fwd
            .client
            .put_record_batch()
            .delivery_stream_name(&fwd.stream)
            .set_records(Some(records))
            .send()
            .await;
        match sent {
            Ok(out) if out.failed_put_count() == 0 => {}
            Ok(_) => return (StatusCode::SERVICE_UNAVAILABLE, "some records failed\n"),
            Err(_) => return (StatusCode::BAD_GATEWAY, "PutRecordBatch failed\n"),
        }
    }
    (StatusCode::OK, "ok\n")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".to_owned());
    let stream = std::env::var("FIREHOSE_DELIVERY_STREAM").unwrap_or_else(|_| "bench".to_owned());
    // The client ingest uses: the SDK's own retries off for Firehose calls.
    let aws = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let forwarder = Arc::new(Forwarder {
        client: ingest::sink::firehose_client(&aws),
        stream,
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = Router::new()
        .route("/v1/events", post(forward))
        .layer(axum::extract::DefaultBodyLimit::max(10 * 1024 * 1024))
        .with_state(forwarder);
    eprintln!("forwarder on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
