//! The HTTP-endpoint delivery protocol: what Firehose POSTs to a destination and what it accepts back.
//!
//! Firehose's side of the contract lives here once, so the local Firehose (which sends) and any
//! test endpoint or receiver (which answers) cannot drift apart. Source for every rule:
//! <https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html> and
//! <https://docs.aws.amazon.com/firehose/latest/dev/http_troubleshooting.html>.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `X-Amz-Firehose-Protocol-Version`: always [`PROTOCOL_VERSION`].
pub const HEADER_PROTOCOL_VERSION: &str = "x-amz-firehose-protocol-version";
/// `X-Amz-Firehose-Request-Id`: the batch's GUID, equal to the body's `requestId` and reused on retries.
pub const HEADER_REQUEST_ID: &str = "x-amz-firehose-request-id";
/// `X-Amz-Firehose-Access-Key`: the configured access key, copied verbatim.
pub const HEADER_ACCESS_KEY: &str = "x-amz-firehose-access-key";
/// `X-Amz-Firehose-Common-Attributes`: `{"commonAttributes": {...}}` as JSON.
pub const HEADER_COMMON_ATTRIBUTES: &str = "x-amz-firehose-common-attributes";
/// `X-Amz-Firehose-Source-Arn`: the delivery stream's ARN.
pub const HEADER_SOURCE_ARN: &str = "x-amz-firehose-source-arn";
/// The only protocol version Firehose has shipped.
pub const PROTOCOL_VERSION: &str = "1.0";

/// How long the endpoint has to answer before `HttpEndpoint.RequestTimeout`: 3 minutes.
pub const RESPONSE_TIMEOUT_SECS: u64 = 180;
/// Largest response Firehose reads: below 1 MiB, else `HttpEndpoint.ResponseTooLarge`.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Most records in one request body.
pub const MAX_RECORDS_PER_REQUEST: usize = 10_000;
/// Most characters of `errorMessage` in a response.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 8192;
/// Retry duration range (`RetryOptions.DurationInSeconds`), 0–7200 s; 0 means "no retries".
/// <https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointRetryOptions.html>
pub const MAX_RETRY_DURATION_SECS: u64 = 7200;
/// First backoff delay (before ±15 % jitter); doubles each retry.
pub const BACKOFF_INITIAL_MS: u64 = 1000;
/// Backoff cap. The page writes `MAX(120sec, …)`, which can only mean a cap (MIN).
pub const BACKOFF_CAP_MS: u64 = 120_000;
/// Jitter applied to every backoff delay: ±15 %.
pub const BACKOFF_JITTER: f64 = 0.15;
/// Most common attributes on one stream; name 1–256 chars, value 0–1024 chars.
/// <https://docs.aws.amazon.com/firehose/latest/APIReference/API_HttpEndpointCommonAttribute.html>
pub const MAX_COMMON_ATTRIBUTES: usize = 50;
/// Longest access key Firehose accepts, in bytes.
pub const MAX_ACCESS_KEY_BYTES: usize = 4096;

/// The JSON body Firehose POSTs: `{"requestId", "timestamp", "records":[{"data"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRequest {
    /// GUID, equal to the `X-Amz-Firehose-Request-Id` header.
    pub request_id: String,
    /// Epoch milliseconds when the request was built.
    pub timestamp: i64,
    /// One element per Firehose record, no delimiters added.
    pub records: Vec<RequestRecord>,
}

/// One record in a [`DeliveryRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Base64 of the record's bytes.
    pub data: String,
}

/// The `X-Amz-Firehose-Common-Attributes` header value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommonAttributes {
    /// Attribute name → value.
    pub common_attributes: BTreeMap<String, String>,
}

/// A response body that meets the spec: `requestId` matches, `timestamp` is a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResponse {
    /// Echo of the request's id.
    pub request_id: String,
    /// Epoch milliseconds from the endpoint.
    pub timestamp: i64,
    /// Optional failure reason, copied to the error output on final failure.
    pub error_message: Option<String>,
}

/// Why a response body breaks the spec (Firehose logs `HttpEndpoint.InvalidResponseFromDestination`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResponse {
    /// Not a JSON object.
    #[error("response body is not a JSON object: {0}")]
    NotJson(String),
    /// `requestId` missing or not a string.
    #[error("response has no string `requestId`")]
    MissingRequestId,
    /// `requestId` differs from the request's.
    #[error("response `requestId` {got:?} does not match the request's {expected:?}")]
    RequestIdMismatch {
        /// The id sent.
        expected: String,
        /// The id received.
        got: String,
    },
    /// `timestamp` missing or not an integer number.
    #[error("response `timestamp` is missing or not an integer number")]
    BadTimestamp,
    /// `errorMessage` present but not a string.
    #[error("response `errorMessage` is not a string")]
    BadErrorMessage,
    /// A field the spec does not define.
    #[error("response has unexpected field {0:?}")]
    UnexpectedField(String),
}

/// Validates a response body against the request id it answers.
///
/// # Errors
/// Every way the body can break the spec, as [`InvalidResponse`].
pub fn parse_response(
    body: &[u8],
    expected_request_id: &str,
) -> Result<DeliveryResponse, InvalidResponse> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| InvalidResponse::NotJson(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(InvalidResponse::NotJson(
            "top level is not an object".into(),
        ));
    };
    if let Some(key) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "requestId" | "timestamp" | "errorMessage"))
    {
        return Err(InvalidResponse::UnexpectedField(key.clone()));
    }
    let request_id = map
        .get("requestId")
        .and_then(serde_json::Value::as_str)
        .ok_or(InvalidResponse::MissingRequestId)?;
    if request_id != expected_request_id {
        return Err(InvalidResponse::RequestIdMismatch {
            expected: expected_request_id.to_owned(),
            got: request_id.to_owned(),
        });
    }
    let timestamp = map
        .get("timestamp")
        .and_then(serde_json::Value::as_i64)
        .ok_or(InvalidResponse::BadTimestamp)?;
    let error_message = match map.get("errorMessage") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(s.chars().take(MAX_ERROR_MESSAGE_CHARS).collect())
        }
        Some(_) => return Err(InvalidResponse::BadErrorMessage),
    };
    Ok(DeliveryResponse {
        request_id: request_id.to_owned(),
        timestamp,
        error_message,
    })
}

/// The success body an endpoint returns (and test endpoints write): `{"requestId","timestamp"}`.
#[must_use]
pub fn success_body(request_id: &str, timestamp_ms: i64) -> String {
    serde_json::json!({ "requestId": request_id, "timestamp": timestamp_ms }).to_string()
}

/// The failure body: `{"requestId","timestamp","errorMessage"}`, `timestamp` always a number.
#[must_use]
pub fn failure_body(request_id: &str, timestamp_ms: i64, error_message: &str) -> String {
    serde_json::json!({ "requestId": request_id, "timestamp": timestamp_ms, "errorMessage": error_message })
        .to_string()
}

/// The backoff delay before retry number `retry` (0-based), before jitter: 1 s doubling, capped at 2 min.
#[must_use]
pub fn backoff_base_ms(retry: u32) -> u64 {
    BACKOFF_INITIAL_MS
        .saturating_mul(1u64.checked_shl(retry).unwrap_or(u64::MAX))
        .min(BACKOFF_CAP_MS)
}

/// Applies jitter to a base delay; `unit` in `[-1, 1]` picks the point in the ±15 % band (a
/// NaN from a broken random source counts as 0: the base delay, never no delay).
#[must_use]
pub fn jittered_ms(base_ms: u64, unit: f64) -> u64 {
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(-1.0, 1.0)
    };
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let ms = (base_ms as f64 * (1.0 + BACKOFF_JITTER * unit)).round() as u64;
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_matches_the_documented_shape() {
        let body = DeliveryRequest {
            request_id: "ed4acda5".into(),
            timestamp: 1_578_090_901_599,
            records: vec![RequestRecord {
                data: "aGVsbG8=".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&body).expect("serializes"),
            r#"{"requestId":"ed4acda5","timestamp":1578090901599,"records":[{"data":"aGVsbG8="}]}"#
        );
    }

    #[test]
    fn only_a_matching_id_and_numeric_timestamp_is_valid() {
        assert_eq!(
            parse_response(br#"{"requestId":"a","timestamp":5}"#, "a"),
            Ok(DeliveryResponse {
                request_id: "a".into(),
                timestamp: 5,
                error_message: None
            })
        );
        assert_eq!(
            parse_response(br#"{"requestId":"a","timestamp":"5"}"#, "a"),
            Err(InvalidResponse::BadTimestamp)
        );
        assert_eq!(
            parse_response(br#"{"timestamp":5}"#, "a"),
            Err(InvalidResponse::MissingRequestId)
        );
        assert!(matches!(
            parse_response(br#"{"requestId":"b","timestamp":5}"#, "a"),
            Err(InvalidResponse::RequestIdMismatch { .. })
        ));
        assert_eq!(
            parse_response(br#"{"requestId":"a","timestamp":5,"x":1}"#, "a"),
            Err(InvalidResponse::UnexpectedField("x".into()))
        );
        assert!(matches!(
            parse_response(b"ok", "a"),
            Err(InvalidResponse::NotJson(_))
        ));
        let failed = parse_response(failure_body("a", 7, "boom").as_bytes(), "a").expect("valid");
        assert_eq!(failed.error_message.as_deref(), Some("boom"));
        assert_eq!(
            parse_response(success_body("a", 7).as_bytes(), "a").map(|r| r.timestamp),
            Ok(7)
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_to_a_two_minute_cap() {
        let delays: Vec<u64> = (0..9).map(backoff_base_ms).collect();
        assert_eq!(
            delays,
            [
                1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 120_000, 120_000
            ]
        );
        assert_eq!(backoff_base_ms(200), BACKOFF_CAP_MS);
        assert_eq!(jittered_ms(1000, 1.0), 1150);
        assert_eq!(jittered_ms(1000, -1.0), 850);
        assert_eq!(jittered_ms(1000, 5.0), 1150);
        assert_eq!(
            jittered_ms(1000, f64::NAN),
            1000,
            "a NaN is the base delay, not 0"
        );
    }
}
