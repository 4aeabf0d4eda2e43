//! One invocation: the Firehose event in, the response out, inside Lambda's response limit.
//!
//! The event is parsed with borrowed fields (no copy of the base64 data), each record goes
//! through [`crate::record`], and the response is written straight into one pre-sized buffer.
//!
//! # The 6 MB response budget
//!
//! Lambda rejects a response over 6 MB, and Firehose would then retry and finally back up the
//! *whole* batch. Enrichment makes records bigger (tiny records grow by more than the input
//! leaves free), so the response is budgeted: before writing, the size of the worst case, every
//! record returned `ProcessingFailed` with its original data, is reserved. Each record may then
//! use its transformed form only if that still leaves room for the fallback of every record
//! after it; otherwise it falls back itself. The response therefore never exceeds the budget,
//! records keep their order, and only the records that do not fit go to the S3 backup.

use std::borrow::Cow;

use base64_simd::STANDARD as BASE64;
use firehose_formats::limits::LAMBDA_RESPONSE_BUDGET;
use serde::Deserialize;

use crate::enrich::Stamp;
use crate::json;
use crate::record::{FailureReason, Outcome, RecordResult, Scratch};
use crate::telemetry::FailureLog;

/// The event is not something this function can answer record by record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvocationError {
    /// Not a Firehose data-transformation event at all. `detail` never contains event data.
    #[error(
        "the event is not a Firehose data-transformation event ({detail}): expected a JSON \
         object with a `records` array whose items have string `recordId` and `data` members"
    )]
    NotFirehoseEvent {
        /// What the parser found wrong, and where.
        detail: String,
    },
    /// Even returning every record unchanged would exceed the response limit; only possible
    /// when the request itself is near 6 MB and has no per-record metadata.
    #[error(
        "the event's {records} records need {needed} bytes even when returned unchanged, over \
         the {budget}-byte Lambda response budget; lower the Firehose processor's BufferSizeInMBs"
    )]
    ResponseOverBudget {
        /// Records in the event.
        records: usize,
        /// Bytes of the all-unchanged response.
        needed: usize,
        /// The budget in force.
        budget: usize,
    },
}

/// Counts for one invocation, for the log line and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InvocationStats {
    /// Records in the event (= records in the response).
    pub records: usize,
    /// Records returned `Ok`.
    pub ok: usize,
    /// Records returned `Dropped`.
    pub dropped: usize,
    /// Records returned `ProcessingFailed`, all reasons.
    pub failed: usize,
    /// `ProcessingFailed` because `data` was not base64.
    pub failed_invalid_base64: usize,
    /// `ProcessingFailed` because the decoded data was not UTF-8.
    pub failed_invalid_utf8: usize,
    /// `ProcessingFailed` because the transformed record did not fit the response budget.
    pub failed_over_budget: usize,
    /// Size of the event JSON.
    pub event_bytes: usize,
    /// Total decoded size of the records' data that was valid base64.
    pub decoded_bytes: usize,
    /// Size of the response JSON.
    pub response_bytes: usize,
}

impl InvocationStats {
    fn count(&mut self, result: RecordResult, failure: Option<FailureReason>) {
        match result {
            RecordResult::Ok => self.ok += 1,
            RecordResult::Dropped => self.dropped += 1,
            RecordResult::ProcessingFailed => self.failed += 1,
        }
        match failure {
            Some(FailureReason::InvalidBase64) => self.failed_invalid_base64 += 1,
            Some(FailureReason::InvalidUtf8) => self.failed_invalid_utf8 += 1,
            Some(FailureReason::OverResponseBudget) => self.failed_over_budget += 1,
            None => {}
        }
    }
}

/// The part of the event we read; unknown members (`invocationId`, `region`,
/// `approximateArrivalTimestamp`, `kinesisRecordMetadata`, …) are skipped.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    records: Vec<EventRecord<'a>>,
}

#[derive(Deserialize)]
struct EventRecord<'a> {
    #[serde(rename = "recordId", borrow)]
    record_id: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
}

const OPEN: &[u8] = b"{\"records\":[";
const CLOSE: &[u8] = b"]}";
const RECORD_ID: &[u8] = b"{\"recordId\":";
const RESULT: &[u8] = b",\"result\":\"";
const DATA: &[u8] = b"\",\"data\":";

/// Bytes one response record takes, given its id and data as JSON strings (quotes included).
const fn record_len(id_json: usize, result: RecordResult, data_json: usize) -> usize {
    RECORD_ID.len() + id_json + RESULT.len() + result.as_str().len() + DATA.len() + data_json + 1
}

/// Length of base64 (padded) for `n` bytes.
const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Transforms a Firehose→Lambda event (raw JSON) into the response (raw JSON).
///
/// `now_ms` is stamped into every enriched record's `_transformed_ts`. The response has one
/// record per input record, same `recordId`, same order, and is at most
/// [`LAMBDA_RESPONSE_BUDGET`] bytes.
///
/// # Errors
///
/// [`InvocationError`] when the event is not a Firehose event; a bad *record* never is one.
pub fn process_event(event_json: &[u8], now_ms: i64) -> Result<Vec<u8>, InvocationError> {
    process_event_with_stats(event_json, now_ms).map(|(response, _)| response)
}

/// [`process_event`], also returning the invocation's counts.
///
/// # Errors
///
/// As [`process_event`].
pub fn process_event_with_stats(
    event_json: &[u8],
    now_ms: i64,
) -> Result<(Vec<u8>, InvocationStats), InvocationError> {
    process_event_with_budget(event_json, now_ms, LAMBDA_RESPONSE_BUDGET)
}

/// [`process_event_with_stats`] with an explicit response budget in bytes, for tests and for
/// emulators that model a different limit.
///
/// # Errors
///
/// As [`process_event`], plus [`InvocationError::ResponseOverBudget`] when even the
/// all-unchanged response exceeds `budget`.
pub fn process_event_with_budget(
    event_json: &[u8],
    now_ms: i64,
    budget: usize,
) -> Result<(Vec<u8>, InvocationStats), InvocationError> {
    let event = parse_event(event_json)?;
    let records = &event.records;

    // Worst case first: every record returned unchanged as ProcessingFailed.
    let fallback: Vec<usize> = records
        .iter()
        .map(|r| {
            record_len(
                json::escaped_len(&r.record_id),
                RecordResult::ProcessingFailed,
                data_json_len(&r.data),
            )
        })
        .collect();
    let mut committed = OPEN.len() + CLOSE.len() + records.len().saturating_sub(1);
    let mut reserved: usize = fallback.iter().sum();
    if committed + reserved > budget {
        return Err(InvocationError::ResponseOverBudget {
            records: records.len(),
            needed: committed + reserved,
            budget,
        });
    }

    let mut stats = InvocationStats {
        records: records.len(),
        event_bytes: event_json.len(),
        ..InvocationStats::default()
    };
    let mut failures = FailureLog::default();
    let stamp = Stamp::new(now_ms);
    let mut scratch = Scratch::default();
    // The response is never larger than the budget, and rarely smaller than the event.
    let mut out = Vec::with_capacity(budget.min(event_json.len() + event_json.len() / 4 + 64));
    out.extend_from_slice(OPEN);

    for (i, (record, fallback_len)) in records.iter().zip(&fallback).enumerate() {
        reserved -= fallback_len;
        if i > 0 {
            out.push(b',');
        }
        let id = &*record.record_id;
        let outcome = scratch.transform(id, &record.data, &stamp);
        if !matches!(outcome, Outcome::Failed(FailureReason::InvalidBase64)) {
            stats.decoded_bytes += scratch.decoded_len();
        }
        let outcome = match outcome {
            Outcome::Transformed => {
                let len = record_len(
                    json::escaped_len(id),
                    RecordResult::Ok,
                    base64_len(scratch.payload().len()) + 2,
                );
                if committed + len + reserved <= budget {
                    committed += len;
                    write_head(&mut out, id, RecordResult::Ok);
                    out.push(b'"');
                    BASE64.encode_append(scratch.payload(), &mut out);
                    out.extend_from_slice(b"\"}");
                    stats.count(RecordResult::Ok, None);
                    continue;
                }
                Outcome::Failed(FailureReason::OverResponseBudget)
            }
            other => other,
        };
        let (result, failure) = match outcome {
            Outcome::Dropped => (RecordResult::Dropped, None),
            Outcome::Failed(reason) => (RecordResult::ProcessingFailed, Some(reason)),
            // Handled above; kept total without a panic path.
            Outcome::Transformed => (
                RecordResult::ProcessingFailed,
                Some(FailureReason::OverResponseBudget),
            ),
        };
        // Dropped is shorter than ProcessingFailed with the same data, so this always fits.
        committed += record_len(json::escaped_len(id), result, data_json_len(&record.data));
        write_head(&mut out, id, result);
        json::write_escaped(&mut out, &record.data);
        out.push(b'}');
        stats.count(result, failure);
        if let Some(reason) = failure {
            failures.record(id, reason);
        }
    }
    out.extend_from_slice(CLOSE);
    failures.finish();
    debug_assert_eq!(
        out.len(),
        committed,
        "the budget accounting matches the bytes written"
    );
    stats.response_bytes = out.len();
    Ok((out, stats))
}

/// Length of a record's original `data` written back as a JSON string.
///
/// A string serde_json could borrow from the event had no escape sequences, and valid JSON
/// cannot hold a raw `"`, backslash or control character, so it needs none on the way out: its length
/// plus the quotes, without scanning megabytes of base64. Only unescaped (owned) strings are
/// measured byte by byte.
#[allow(
    clippy::ptr_arg,
    reason = "whether the string was borrowed is the point"
)]
fn data_json_len(data: &Cow<'_, str>) -> usize {
    match data {
        Cow::Borrowed(raw) => {
            debug_assert_eq!(raw.len() + 2, json::escaped_len(raw));
            raw.len() + 2
        }
        Cow::Owned(unescaped) => json::escaped_len(unescaped),
    }
}

/// `{"recordId":<id>,"result":"<result>","data":` — the caller writes the data and `}`.
fn write_head(out: &mut Vec<u8>, record_id: &str, result: RecordResult) {
    out.extend_from_slice(RECORD_ID);
    json::write_escaped(out, record_id);
    out.extend_from_slice(RESULT);
    out.extend_from_slice(result.as_str().as_bytes());
    out.extend_from_slice(DATA);
}

fn parse_event(event_json: &[u8]) -> Result<Event<'_>, InvocationError> {
    // serde would also read a struct from a JSON array; a Firehose event is always an object.
    let first = event_json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(InvocationError::NotFirehoseEvent {
            detail: "the payload is not a JSON object".to_owned(),
        });
    }
    // Validating UTF-8 once with SIMD and parsing a `&str` is faster than letting serde_json
    // check every string of the (mostly base64) event on its own.
    let event_json =
        simdutf8::basic::from_utf8(event_json).map_err(|_| InvocationError::NotFirehoseEvent {
            detail: "the payload is not UTF-8".to_owned(),
        })?;
    serde_json::from_str(event_json).map_err(|e| InvocationError::NotFirehoseEvent {
        detail: describe(&e),
    })
}

/// A parse error described without quoting the event (serde's data errors can echo values).
fn describe(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let message = error.to_string();
    let what = match error.classify() {
        Category::Data if message.starts_with("missing field") => message
            .split(" at line")
            .next()
            .unwrap_or("missing field")
            .to_owned(),
        Category::Data => "a member has the wrong type".to_owned(),
        Category::Syntax => "invalid JSON".to_owned(),
        Category::Eof => "the JSON ends early".to_owned(),
        Category::Io => "unreadable input".to_owned(),
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}
