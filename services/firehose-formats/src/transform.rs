//! The Lambda data-transformation contract: the event Firehose sends and the response it accepts.
//!
//! Firehose checks a transform's response before it delivers anything: every record it sent must
//! come back once, with a `result` of `Ok`, `Dropped` or `ProcessingFailed` and base64 `data`.
//! [`check_response`] is that check, written once, so the local Firehose applies exactly the
//! rules AWS states. Sources:
//! <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-logs.html> (error codes).

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Processor `BufferSizeInMBs` default: 1 MB (range 0.2–3).
pub const PROCESSOR_DEFAULT_BUFFER_MB: f64 = 1.0;
/// Smallest processor `BufferSizeInMBs`.
pub const PROCESSOR_MIN_BUFFER_MB: f64 = 0.2;
/// Largest processor `BufferSizeInMBs`.
pub const PROCESSOR_MAX_BUFFER_MB: f64 = 3.0;
/// Processor `BufferIntervalInSeconds` default: 60 s (range 0–900).
pub const PROCESSOR_DEFAULT_INTERVAL_SECS: u64 = 60;
/// Largest processor `BufferIntervalInSeconds`.
pub const PROCESSOR_MAX_INTERVAL_SECS: u64 = 900;
/// `NumberOfRetries` default: 3.
pub const PROCESSOR_DEFAULT_RETRIES: u32 = 3;
/// Longest function run Firehose supports: 5 minutes.
pub const MAX_FUNCTION_DURATION_SECS: u64 = 300;

/// Error codes for `processing-failed` records.
pub mod error_code {
    /// The invocation failed (function error, payload too large …) after all retries.
    pub const FUNCTION_ERROR: &str = "Lambda.FunctionError";
    /// The invocation ran past its deadline.
    pub const FUNCTION_TIMED_OUT: &str = "Lambda.FunctionTimedOut";
    /// A record sent was not in the response.
    pub const MISSING_RECORD_ID: &str = "Lambda.MissingRecordId";
    /// A record id came back more than once.
    pub const DUPLICATED_RECORD_ID: &str = "Lambda.DuplicatedRecordId";
    /// The response is not JSON or breaks the status model.
    pub const JSON_PROCESSING_EXCEPTION: &str = "Lambda.JsonProcessingException";
    /// The function returned `ProcessingFailed` for the record. Not in AWS's docs; the value
    /// emulators probed against AWS use.
    pub const PROCESSING_FAILED_STATUS: &str = "Lambda.ProcessingFailedStatus";
}

/// The invocation event: `{"invocationId","deliveryStreamArn","region","records":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformEvent {
    /// Unique per invocation.
    pub invocation_id: String,
    /// The stream's ARN.
    pub delivery_stream_arn: String,
    /// The stream's region.
    pub region: String,
    /// The records to transform (no `kinesisRecordMetadata`: Direct PUT).
    pub records: Vec<EventRecord>,
}

/// One record in a [`TransformEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Opaque id the response must echo.
    pub record_id: String,
    /// Epoch ms when Firehose received the record.
    pub approximate_arrival_timestamp: i64,
    /// Base64 of the record.
    pub data: String,
}

/// The per-record result of the status model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransformResult {
    /// Transformed; deliver `data`.
    Ok,
    /// Intentionally dropped; counts as processed.
    Dropped,
    /// Failed; the original record goes to `processing-failed/`.
    ProcessingFailed,
}

/// One checked record of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRecord {
    /// The echoed id.
    pub record_id: String,
    /// Its result.
    pub result: TransformResult,
    /// Base64 data (may be empty).
    pub data: String,
}

/// Why a response fails the contract; each maps to a Firehose error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// Unparseable, or a record breaks the status model.
    #[error("response does not follow the status model: {0}")]
    JsonProcessing(String),
    /// A record sent is not in the response.
    #[error("record id {0:?} is missing from the response")]
    MissingRecordId(String),
    /// A record id appears more than once.
    #[error("record id {0:?} appears more than once in the response")]
    DuplicatedRecordId(String),
}

impl ContractError {
    /// The Firehose error code for the error output.
    #[must_use]
    pub const fn error_code(&self) -> &'static str {
        match self {
            Self::JsonProcessing(_) => error_code::JSON_PROCESSING_EXCEPTION,
            Self::MissingRecordId(_) => error_code::MISSING_RECORD_ID,
            Self::DuplicatedRecordId(_) => error_code::DUPLICATED_RECORD_ID,
        }
    }
}

#[derive(Deserialize)]
struct RawResponse {
    records: Vec<RawRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord {
    record_id: Option<String>,
    result: Option<serde_json::Value>,
    data: Option<serde_json::Value>,
}

/// Checks a transform response against the ids sent, in Firehose's order of checks, and returns
/// the records in the order the ids were sent. Records with ids that were never sent are ignored
/// (AWS delivers only the original ids).
///
/// `data` is required on every record, `Dropped` ones included: AWS documents `recordId`,
/// `result` and `data` as required on all of them, and a response without them as a
/// transformation failure. Many functions leave it out of `Dropped` records, and whether AWS
/// lets that pass is not confirmed (`firehose-facts.md` §3.2), so the stand-in is the stricter
/// of the two: a function that passes here passes in AWS.
///
/// # Errors
/// The first contract break, as [`ContractError`].
pub fn check_response(
    sent_ids: &[String],
    body: &[u8],
) -> Result<Vec<ResponseRecord>, ContractError> {
    let raw: RawResponse =
        serde_json::from_slice(body).map_err(|e| ContractError::JsonProcessing(e.to_string()))?;
    let sent: HashSet<&str> = sent_ids.iter().map(String::as_str).collect();
    let mut seen: std::collections::HashMap<String, ResponseRecord> =
        std::collections::HashMap::new();
    for rec in raw.records {
        let id = rec
            .record_id
            .ok_or_else(|| ContractError::JsonProcessing("a record has no recordId".into()))?;
        let result = match rec.result.as_ref().and_then(serde_json::Value::as_str) {
            Some("Ok") => TransformResult::Ok,
            Some("Dropped") => TransformResult::Dropped,
            Some("ProcessingFailed") => TransformResult::ProcessingFailed,
            other => {
                return Err(ContractError::JsonProcessing(format!(
                    "record {id:?} has result {other:?}; expected Ok, Dropped or ProcessingFailed"
                )));
            }
        };
        let data = match rec.data {
            Some(serde_json::Value::String(s)) => s,
            _ => {
                return Err(ContractError::JsonProcessing(format!(
                    "record {id:?} has no string data (required on every record, Dropped ones included)"
                )));
            }
        };
        if !sent.contains(id.as_str()) {
            continue;
        }
        if seen.contains_key(&id) {
            return Err(ContractError::DuplicatedRecordId(id));
        }
        seen.insert(
            id.clone(),
            ResponseRecord {
                record_id: id,
                result,
                data,
            },
        );
    }
    sent_ids
        .iter()
        .map(|id| {
            seen.remove(id)
                .ok_or_else(|| ContractError::MissingRecordId(id.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn a_complete_response_comes_back_in_sent_order() {
        let body = br#"{"records":[{"recordId":"b","result":"Dropped","data":""},{"recordId":"a","result":"Ok","data":"eA==","metadata":{"partitionKeys":{}}},{"recordId":"zz","result":"Ok","data":""}]}"#;
        let recs = check_response(&ids(), body).expect("valid");
        assert_eq!(recs.len(), 2, "the unknown id zz is ignored: {recs:?}");
        assert_eq!(
            recs[0],
            ResponseRecord {
                record_id: "a".into(),
                result: TransformResult::Ok,
                data: "eA==".into()
            }
        );
        assert_eq!(recs[1].result, TransformResult::Dropped);

        // Without data, a Dropped record breaks the contract as documented (helper-76).
        let err = check_response(
            &ids(),
            br#"{"records":[{"recordId":"b","result":"Dropped"},{"recordId":"a","result":"Ok","data":""}]}"#,
        );
        assert!(
            matches!(err, Err(ContractError::JsonProcessing(ref m)) if m.contains("\"b\"")),
            "{err:?}"
        );
    }

    #[test]
    fn contract_breaks_map_to_firehose_codes() {
        let missing = check_response(
            &ids(),
            br#"{"records":[{"recordId":"a","result":"Ok","data":""}]}"#,
        );
        assert_eq!(
            missing.map_err(|e| e.error_code()),
            Err(error_code::MISSING_RECORD_ID)
        );
        let dup = check_response(
            &ids(),
            br#"{"records":[{"recordId":"a","result":"Ok","data":""},{"recordId":"a","result":"Ok","data":""},{"recordId":"b","result":"Ok","data":""}]}"#,
        );
        assert_eq!(
            dup.map_err(|e| e.error_code()),
            Err(error_code::DUPLICATED_RECORD_ID)
        );
        for bad in [
            &br#"not json"#[..],
            br#"{"records":[{"recordId":"a","result":"TransformedStateOk","data":""}]}"#,
            br#"{"records":[{"recordId":"a","result":"Ok"}]}"#,
            br#"{"records":[{"result":"Ok","data":""}]}"#,
        ] {
            assert_eq!(
                check_response(&ids(), bad).map_err(|e| e.error_code()),
                Err(error_code::JSON_PROCESSING_EXCEPTION)
            );
        }
    }
}
