//! The Firehose API subset producers use, in AWS's JSON 1.1 protocol.
//!
//! `POST /` with `X-Amz-Target: Firehose_20150804.<Operation>`: `PutRecord`, `PutRecordBatch`,
//! `DescribeDeliveryStream`, `ListDeliveryStreams`. Signatures are accepted unchecked. Limits
//! are enforced as AWS enforces them (500 records and 4 MiB per batch, 1,000 KiB per record)
//! and every error has AWS's shape, `{"__type": "<Code>", "message": "…"}`, so `aws-sdk-firehose`
//! maps it to its typed error. `GET /metrics` serves the Prometheus metrics on the same port.
//! Model: botocore `firehose/2015-08-04/service-2.json`.

use crate::buffer::{Held, Holding, Record};
use crate::config::{Compression, Config};
use crate::engine::StreamHandle;
use crate::faults::Faults;
use crate::metrics::Metrics;
use axum::{
    Router,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use firehose_formats::limits::{
    MAX_BATCH_RECORDS, MAX_RECORD_BYTES, SAFE_BATCH_BYTES, is_valid_stream_name,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The JSON 1.1 target prefix.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";
/// Largest request body read (a full batch of base64 records plus JSON overhead). Larger bodies
/// are answered [`ApiError::RequestTooLarge`].
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared state of the API.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub(crate) streams: Arc<BTreeMap<String, StreamHandle>>,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Metrics,
    pub(crate) faults: Faults,
    /// Record data held in memory, against `max_held_mb`.
    pub(crate) holding: Arc<Holding>,
}

/// Every error the API answers, each with AWS's code and status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("Firehose {stream} under account {account} not found.")]
    ResourceNotFound { stream: String, account: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// The body is over [`MAX_BODY_BYTES`], so it was not read. What AWS answers then is not
    /// documented (not in `shared/docs/firehose-facts.md`); this is the JSON 1.1 error shape SDKs
    /// parse, with 413 and the code Lambda's API uses for an oversized request
    /// (`RequestEntityTooLargeException`), rather than axum's plain-text 413.
    #[error("{0}")]
    RequestTooLarge(String),
}

impl ApiError {
    const fn code_and_status(&self) -> (&'static str, StatusCode) {
        match self {
            Self::ResourceNotFound { .. } => ("ResourceNotFoundException", StatusCode::BAD_REQUEST),
            Self::InvalidArgument(_) => ("InvalidArgumentException", StatusCode::BAD_REQUEST),
            Self::Validation(_) => ("ValidationException", StatusCode::BAD_REQUEST),
            Self::Serialization(_) => ("SerializationException", StatusCode::BAD_REQUEST),
            Self::UnknownOperation(_) => ("UnknownOperationException", StatusCode::BAD_REQUEST),
            Self::ServiceUnavailable(_) => (
                "ServiceUnavailableException",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            Self::RequestTooLarge(_) => (
                "RequestEntityTooLargeException",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        let body = json!({ "__type": code, "message": self.to_string() }).to_string();
        (
            status,
            [
                (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
                (header::HeaderName::from_static("x-amzn-errortype"), code),
            ],
            body,
        )
            .into_response()
    }
}

/// The API router.
pub(crate) fn app(state: ApiState) -> Router {
    Router::new()
        .route("/", post(dispatch))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

fn ok(body: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

async fn dispatch(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
    let result = match body {
        Err(rejection) => Err(unreadable_body(&rejection)),
        Ok(body) => match op {
            "PutRecord" => put_record(&state, &body),
            "PutRecordBatch" => put_record_batch(&state, &body),
            "DescribeDeliveryStream" => describe(&state, &body),
            "ListDeliveryStreams" => list(&state, &body),
            _ => Err(ApiError::UnknownOperation(format!(
                "Operation {target:?} is not supported by firehose-local"
            ))),
        },
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let mut response = response;
    if let Ok(v) = uuid::Uuid::new_v4().to_string().parse() {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// The error for a body that was not read: over [`MAX_BODY_BYTES`], or cut off by the client.
fn unreadable_body(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::RequestTooLarge(format!(
            "The request body is larger than firehose-local reads ({MAX_BODY_BYTES} bytes). \
             A PutRecordBatch carries at most {SAFE_BATCH_BYTES} bytes of records \
             and a PutRecord at most {MAX_RECORD_BYTES}."
        ))
    } else {
        ApiError::Serialization(format!(
            "Cannot read the request body: {}",
            rejection.body_text()
        ))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Serialization(format!("Cannot parse the request: {e}")))
}

fn stream<'a>(state: &'a ApiState, name: &str) -> Result<&'a StreamHandle, ApiError> {
    if !is_valid_stream_name(name) {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 64"
        )));
    }
    state
        .streams
        .get(name)
        .ok_or_else(|| ApiError::ResourceNotFound {
            stream: name.to_owned(),
            account: state.config.account_id.clone(),
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordIn {
    data: String,
}

fn decode(record: &RecordIn, path: &str) -> Result<Vec<u8>, ApiError> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(&record.data)
        .map_err(|e| ApiError::Serialization(format!("{path}.Data is not valid base64: {e}")))?;
    if data.len() > MAX_RECORD_BYTES {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value at '{path}.data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}"
        )));
    }
    Ok(data)
}

/// Firehose's internal id for a new record, shaped like the 56-digit sequence number of AWS's
/// transform event example (`"recordId": "49546986683135544286507457936321625675700192471156785154"`):
/// `49`, 24 digits drawn once per process, then a 30-digit counter, so ids grow in arrival
/// order and two processes do not share them.
fn internal_record_id() -> String {
    static PREFIX: std::sync::LazyLock<u128> =
        std::sync::LazyLock::new(|| rand::random::<u128>() % 10u128.pow(24));
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("49{:024}{n:030}", *PREFIX)
}

/// The `RecordId` answered to the producer. AWS documents it only as an opaque string of at
/// least one character, and it is not the id the transform sees, so this is a fresh random one:
/// a producer or test that relates the two would work here and break on AWS.
fn producer_record_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn new_record(data: Vec<u8>, held: Held) -> Record {
    Record {
        id: internal_record_id(),
        arrival_ms: crate::backup::now_ms(),
        data: data.into(),
        held,
    }
}

/// The answer to a record that does not fit under `max_held_mb`, in the words Firehose uses for
/// a producer over its throughput limit.
const SLOW_DOWN: &str = "Slow down.";

fn put_record(state: &ApiState, body: &[u8]) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        delivery_stream_name: String,
        record: RecordIn,
    }
    let req: Req = parse(body)?;
    // The API model's constraints first, as AWS checks them before it looks for the stream.
    let data = decode(&req.record, "record")?;
    let s = stream(state, &req.delivery_stream_name)?;
    refuse_call_if_faulted(state, &req.delivery_stream_name, 1)?;
    let len = data.len() as u64;
    let name = [req.delivery_stream_name.as_str()];
    let Some(held) = state.holding.hold_record(data.len()) else {
        state
            .metrics
            .throttled_records
            .with_label_values(&name)
            .inc();
        return Err(ApiError::ServiceUnavailable(SLOW_DOWN.into()));
    };
    let record = new_record(data, held);
    s.accept(vec![record]).map_err(|_| shutting_down())?;
    state
        .metrics
        .put_record_requests
        .with_label_values(&name)
        .inc();
    state
        .metrics
        .incoming_put_requests
        .with_label_values(&name)
        .inc();
    state
        .metrics
        .incoming_records
        .with_label_values(&name)
        .inc();
    state
        .metrics
        .incoming_bytes
        .with_label_values(&name)
        .inc_by(len);
    Ok(ok(
        &json!({ "RecordId": producer_record_id(), "Encrypted": false }),
    ))
}

/// The `call_failure_share` fault: the whole call refused with 503 "Slow down.", its `records`
/// counted as throttled.
fn refuse_call_if_faulted(state: &ApiState, stream: &str, records: usize) -> Result<(), ApiError> {
    if !state.faults.fail_call() {
        return Ok(());
    }
    state
        .metrics
        .throttled_records
        .with_label_values(&[stream])
        .inc_by(records as u64);
    Err(ApiError::ServiceUnavailable(SLOW_DOWN.into()))
}

fn shutting_down() -> ApiError {
    ApiError::ServiceUnavailable(
        "The delivery stream is shutting down. Retry against a running instance.".into(),
    )
}

fn put_record_batch(state: &ApiState, body: &[u8]) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        delivery_stream_name: String,
        records: Vec<RecordIn>,
    }
    let req: Req = parse(body)?;
    // The API model's constraints (records 1-500, each at most 1,000 KiB) first: AWS answers a
    // malformed request ValidationException before it looks for the stream (helper-93).
    if req.records.is_empty() || req.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_BATCH_RECORDS} and greater than or equal to 1 (got {})",
            req.records.len()
        )));
    }
    let datas = req
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| decode(r, &format!("records.{}.member", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let s = stream(state, &req.delivery_stream_name)?;
    refuse_call_if_faulted(state, &req.delivery_stream_name, req.records.len())?;
    let total: usize = datas.iter().map(Vec::len).sum();
    // AWS's "4 MB" read strictly: 4,000,000 record bytes, not 4 MiB. Its accounting is not
    // documented and users have been refused below 4 MiB, so a producer that passes here
    // passes there (facts, "Batch limits").
    if total > SAFE_BATCH_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "Records size exceeds 4 MB limit ({total} bytes)"
        )));
    }
    let name = [req.delivery_stream_name.as_str()];
    let mut accepted = Vec::with_capacity(datas.len());
    let mut responses = Vec::with_capacity(datas.len());
    let mut failed = 0u64;
    let mut bytes = 0u64;
    for data in datas {
        let held = if state.faults.throttle_record() {
            None
        } else {
            state.holding.hold_record(data.len())
        };
        if let Some(held) = held {
            bytes += data.len() as u64;
            let r = new_record(data, held);
            responses.push(json!({ "RecordId": producer_record_id() }));
            accepted.push(r);
        } else {
            failed += 1;
            responses.push(
                json!({ "ErrorCode": "ServiceUnavailableException", "ErrorMessage": SLOW_DOWN }),
            );
        }
    }
    let accepted_count = accepted.len() as u64;
    if !accepted.is_empty() {
        s.accept(accepted).map_err(|_| shutting_down())?;
    }
    state
        .metrics
        .put_record_batch_requests
        .with_label_values(&name)
        .inc();
    state
        .metrics
        .incoming_put_requests
        .with_label_values(&name)
        .inc();
    state
        .metrics
        .incoming_records
        .with_label_values(&name)
        .inc_by(accepted_count);
    state
        .metrics
        .incoming_bytes
        .with_label_values(&name)
        .inc_by(bytes);
    state
        .metrics
        .throttled_records
        .with_label_values(&name)
        .inc_by(failed);
    Ok(ok(
        &json!({ "FailedPutCount": failed, "Encrypted": false, "RequestResponses": responses }),
    ))
}

fn list(state: &ApiState, body: &[u8]) -> Result<Response, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        limit: Option<i64>,
        delivery_stream_type: Option<String>,
        exclusive_start_delivery_stream_name: Option<String>,
    }
    let req: Req = if body.is_empty() {
        Req::default()
    } else {
        parse(body)?
    };
    let limit = req.limit.unwrap_or(10);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
        )));
    }
    let direct_put = req
        .delivery_stream_type
        .as_deref()
        .is_none_or(|t| t == "DirectPut");
    let names: Vec<&String> = if direct_put {
        state
            .streams
            .keys()
            .filter(|n| {
                req.exclusive_start_delivery_stream_name
                    .as_ref()
                    .is_none_or(|s| n.as_str() > s.as_str())
            })
            .collect()
    } else {
        Vec::new()
    };
    let limit = usize::try_from(limit).unwrap_or(10);
    let more = names.len() > limit;
    let page: Vec<&String> = names.into_iter().take(limit).collect();
    Ok(ok(
        &json!({ "DeliveryStreamNames": page, "HasMoreDeliveryStreams": more }),
    ))
}

fn describe(state: &ApiState, body: &[u8]) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Req {
        delivery_stream_name: String,
    }
    let req: Req = parse(body)?;
    let s = stream(state, &req.delivery_stream_name)?;
    let c = &s.config;
    let compression = |c: Compression| match c {
        Compression::None => "UNCOMPRESSED",
        Compression::Gzip => "GZIP",
    };
    let (bucket_arn, prefix) = match &c.backup.target {
        crate::config::BackupTarget::S3 { bucket, .. } => {
            (format!("arn:aws:s3:::{bucket}"), c.backup.prefix.clone())
        }
        crate::config::BackupTarget::LocalDir { dir } => (
            "arn:aws:s3:::firehose-local-backup".to_owned(),
            format!("{}/{}", dir.display(), c.backup.prefix),
        ),
    };
    let role = format!(
        "arn:aws:iam::{}:role/firehose-local",
        state.config.account_id
    );
    let s3 = json!({
        "RoleARN": role,
        "BucketARN": bucket_arn,
        "Prefix": prefix,
        "ErrorOutputPrefix": c.backup.error_output_prefix,
        "BufferingHints": { "SizeInMBs": 5, "IntervalInSeconds": 300 },
        "CompressionFormat": compression(c.backup.compression),
        "EncryptionConfiguration": { "NoEncryptionConfig": "NoEncryption" },
    });
    let processing = c.processor.as_ref().map(|p| {
        json!({ "Enabled": true, "Processors": [{ "Type": "Lambda", "Parameters": [
            { "ParameterName": "LambdaArn", "ParameterValue": crate::lambda_arn(&state.config, p) },
            { "ParameterName": "NumberOfRetries", "ParameterValue": p.number_of_retries.to_string() },
            { "ParameterName": "BufferSizeInMBs", "ParameterValue": p.buffer_size_mb.to_string() },
            { "ParameterName": "BufferIntervalInSeconds", "ParameterValue": p.buffer_interval_secs.to_string() },
        ]}]})
    });
    let hints =
        json!({ "SizeInMBs": c.buffering.size_mb, "IntervalInSeconds": c.buffering.interval_secs });
    let destination = match &c.http_endpoint {
        Some(h) => json!({
            "DestinationId": "destinationId-000000000001",
            "HttpEndpointDestinationDescription": {
                "EndpointConfiguration": { "Url": h.url, "Name": h.name.clone().unwrap_or_else(|| "firehose-local endpoint".into()) },
                "BufferingHints": hints,
                "RequestConfiguration": {
                    "ContentEncoding": match h.content_encoding { Compression::None => "NONE", Compression::Gzip => "GZIP" },
                    "CommonAttributes": h.common_attributes.iter().map(|(k, v)| json!({ "AttributeName": k, "AttributeValue": v })).collect::<Vec<_>>(),
                },
                "ProcessingConfiguration": processing.clone().unwrap_or_else(|| json!({ "Enabled": false, "Processors": [] })),
                "RetryOptions": { "DurationInSeconds": h.retry_duration_secs },
                "S3BackupMode": match h.s3_backup_mode { crate::config::S3BackupMode::FailedDataOnly => "FailedDataOnly", crate::config::S3BackupMode::AllData => "AllData" },
                "S3DestinationDescription": s3,
            }
        }),
        // The local NDJSON destination is described as the S3 destination it imitates.
        None => json!({
            "DestinationId": "destinationId-000000000001",
            "ExtendedS3DestinationDescription": {
                "RoleARN": role,
                "BucketARN": "arn:aws:s3:::firehose-local-destination",
                "Prefix": format!("{}/{}/", c.local_destination.dir.display(), c.name),
                "BufferingHints": hints,
                "CompressionFormat": "UNCOMPRESSED",
                "EncryptionConfiguration": { "NoEncryptionConfig": "NoEncryption" },
                "ProcessingConfiguration": processing.unwrap_or_else(|| json!({ "Enabled": false, "Processors": [] })),
                "S3BackupMode": "Disabled",
                "FileExtension": crate::destination::LOCAL_EXTENSION,
            }
        }),
    };
    #[allow(clippy::cast_precision_loss)]
    let created = s.created_at.unix_timestamp() as f64;
    Ok(ok(&json!({ "DeliveryStreamDescription": {
        "DeliveryStreamName": c.name,
        "DeliveryStreamARN": s.arn,
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": "DirectPut",
        "VersionId": s.version.to_string(),
        "CreateTimestamp": created,
        "DeliveryStreamEncryptionConfiguration": { "Status": "DISABLED" },
        "Destinations": [destination],
        "HasMoreDestinations": false,
    }})))
}
