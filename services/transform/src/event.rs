//! One invocation: the Firehose event in, the response out, inside Lambda's response limit.
//!
//! The event is read by the transform's own JSON scanner (`scan`), borrowing each
//! record's `recordId` and `data` string literals (no copy of the base64 data); each record goes
//! through [`crate::record`], and the response is written straight into one pre-sized buffer.
//! The literals are copied into the response verbatim (an unchanged record's `data`, every
//! `recordId`, and `_record_id`), so nothing is ever escaped twice and every length is known
//! before it is written.
//!
//! # The 6 MB response budget
//!
//! Lambda rejects a response over 6 MB, and Firehose would then retry and finally back up the
//! *whole* batch. Enrichment makes records bigger (tiny records grow by more than the input
//! leaves free), so the response is budgeted: before writing, the size of the worst case, every
//! record returned `ProcessingFailed` with its original data, is reserved. Each record may then
//! use its enriched form only if that still leaves room for the fallback of every record after
//! it; otherwise it falls back itself: returned `Ok` as it came, without our members
//! ([`UnenrichedReason`]), which is never longer than that reservation. The response therefore
//! never exceeds the budget, records keep their order, and every record that can be delivered
//! is: the ones that do not fit enriched reach New Relic without our three members, instead of
//! the S3 backup. (With the default 1 MB processor buffer, an invocation of 40-byte events
//! holds ~25,000 records, and enriching all of them would need ~8 MB.)

use std::borrow::Cow;

use base64_simd::STANDARD as BASE64;
use firehose_formats::limits::{LAMBDA_MAX_PAYLOAD_BYTES, LAMBDA_RESPONSE_BUDGET};

use crate::enrich::{Shape, Stamp};
use crate::record::{FailureReason, Outcome, RecordResult, Scratch, UnenrichedReason};
use crate::scan::{self, Cursor};
use crate::telemetry::{EventSource, FailureSamples};

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
    /// Even returning every record unchanged would exceed the response limit (6 MiB); only
    /// possible when the request itself is near 6 MiB and has no per-record metadata.
    #[error(
        "the event's {records} records need {needed} bytes even when returned unchanged, over \
         the {budget}-byte Lambda response limit; lower the Firehose processor's BufferSizeInMBs"
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
    /// `Ok` records that held several JSON objects, one per line or in a JSON array, each
    /// enriched on a line of its own.
    pub ok_lines: usize,
    /// `Ok` records that started like a JSON object but were not valid JSON (`NaN`, cut off),
    /// so were wrapped whole as the text of `message`.
    pub ok_broken_object: usize,
    /// Records returned `Dropped`.
    pub dropped: usize,
    /// Records returned `ProcessingFailed`, all reasons.
    pub failed: usize,
    /// `ProcessingFailed` because `data` was not base64.
    pub failed_invalid_base64: usize,
    /// `ProcessingFailed` because the decoded data was not UTF-8.
    pub failed_invalid_utf8: usize,
    /// `ProcessingFailed` because the decoded data was gzip.
    pub failed_gzip_compressed: usize,
    /// `Ok` records returned as they came, without our members, because the enriched record
    /// did not fit the response budget.
    pub unenriched_over_budget: usize,
    /// `Ok` records returned as they came, without our members, because the enriched record
    /// was over Firehose's record limit.
    pub unenriched_over_record_limit: usize,
    /// Size of the event JSON.
    pub event_bytes: usize,
    /// Total decoded size of the records' data that was valid base64.
    pub decoded_bytes: usize,
    /// Size of the response JSON.
    pub response_bytes: usize,
    /// The first failed records, for the log.
    pub failures: FailureSamples,
    /// The event's invocation id and delivery stream, for the log.
    pub source: EventSource,
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
            Some(FailureReason::GzipCompressed) => self.failed_gzip_compressed += 1,
            None => {}
        }
    }

    fn count_unenriched(&mut self, reason: UnenrichedReason) {
        self.ok += 1;
        match reason {
            UnenrichedReason::OverResponseBudget => self.unenriched_over_budget += 1,
            UnenrichedReason::OverRecordLimit => self.unenriched_over_record_limit += 1,
        }
    }
}

/// One record of the event, borrowed from it. Unknown members (`approximateArrivalTimestamp`,
/// `kinesisRecordMetadata`, …) are checked as JSON and skipped.
///
/// # UTF-8
///
/// The event is not validated as UTF-8 up front: [`parse_event`] validates everything except
/// the `data` literals, which are most of the event. A `data` that decodes as base64 is ASCII
/// by construction; only one that does not is validated, when it is about to be copied back
/// into the response ([`process_event_with_budget`]).
struct EventRecord<'a> {
    /// The `recordId` string literal, quotes and escapes included, as it appears in the event.
    id_json: &'a [u8],
    /// The `data` string literal, likewise: an unchanged record gets exactly these bytes back.
    data_json: &'a [u8],
    /// Offset of `data_json` in the event.
    data_at: usize,
    /// `data` unescaped: the inside of the literal unless it held an escape (base64 never needs
    /// one; an escape that is not valid UTF-16 is left in, and fails as base64).
    data: Cow<'a, [u8]>,
}

impl EventRecord<'_> {
    /// The record id as text, for the failure log.
    fn id(&self) -> String {
        let literal = String::from_utf8_lossy(self.id_json);
        scan::unescape(literal.as_bytes())
            .unwrap_or_else(|_| literal[1..literal.len() - 1].to_owned())
    }
}

const OPEN: &[u8] = b"{\"records\":[";
const CLOSE: &[u8] = b"]}";
const RECORD_ID: &[u8] = b"{\"recordId\":";
const RESULT: &[u8] = b",\"result\":\"";
const DATA: &[u8] = b"\",\"data\":";

/// Bytes one response record takes, given its id and data as JSON string literals (quotes
/// included).
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
/// record per input record, same `recordId`, same order. Records are enriched while it stays
/// within [`LAMBDA_RESPONSE_BUDGET`] bytes; returned as they came it may reach
/// [`LAMBDA_MAX_PAYLOAD_BYTES`] ([`process_event_with_limits`]).
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
    process_event_with_limits(
        event_json,
        now_ms,
        LAMBDA_RESPONSE_BUDGET,
        LAMBDA_MAX_PAYLOAD_BYTES,
    )
}

/// [`process_event_with_stats`] with an explicit response budget in bytes, for tests and for
/// emulators that model a different limit: records are enriched while the response stays
/// within `budget`, and an event whose all-unchanged response exceeds it is refused.
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
    process_event_with_limits(event_json, now_ms, budget, budget)
}

/// The transform with two limits: records are enriched only while the response stays within
/// `budget`; the invocation is refused only when returning every record unchanged would exceed
/// `ceiling` (at least `budget`). [`process_event`] uses the safe reading of Lambda's "6 MB"
/// (6,000,000) as the budget and 6 MiB as the ceiling: a response between the two carries no
/// enrichment but is sent, since refusing would fail the whole batch for certain, while Lambda
/// takes responses up to 6 MiB (and the 6 MiB event Firehose may send with a 3 MB processor
/// buffer of small records has an all-unchanged response about as large).
///
/// # Errors
///
/// As [`process_event`], plus [`InvocationError::ResponseOverBudget`] when even the
/// all-unchanged response exceeds `ceiling`.
pub fn process_event_with_limits(
    event_json: &[u8],
    now_ms: i64,
    budget: usize,
    ceiling: usize,
) -> Result<(Vec<u8>, InvocationStats), InvocationError> {
    let ceiling = ceiling.max(budget);
    let Event { records, source } = parse_event(event_json)?;

    // Worst case first: every record returned unchanged as ProcessingFailed.
    let fallback_len = |r: &EventRecord<'_>| {
        record_len(
            r.id_json.len(),
            RecordResult::ProcessingFailed,
            r.data_json.len(),
        )
    };
    let mut committed = OPEN.len() + CLOSE.len() + records.len().saturating_sub(1);
    let mut reserved: usize = records.iter().map(fallback_len).sum();
    if committed + reserved > ceiling {
        return Err(InvocationError::ResponseOverBudget {
            records: records.len(),
            needed: committed + reserved,
            budget: ceiling,
        });
    }

    let mut stats = InvocationStats {
        records: records.len(),
        event_bytes: event_json.len(),
        source,
        ..InvocationStats::default()
    };
    let stamp = Stamp::new(now_ms);
    let mut scratch = Scratch::default();
    // The response is never larger than the ceiling, and rarely smaller than the event.
    let mut out = Vec::with_capacity(ceiling.min(event_json.len() + event_json.len() / 4 + 64));
    out.extend_from_slice(OPEN);

    for (i, record) in records.iter().enumerate() {
        reserved -= fallback_len(record);
        if i > 0 {
            out.push(b',');
        }
        let outcome = scratch.transform(record.id_json, &record.data, &stamp);
        if matches!(outcome, Outcome::Failed(FailureReason::InvalidBase64))
            && simdutf8::basic::from_utf8(record.data_json).is_err()
        {
            return Err(not_utf8());
        }
        if !matches!(outcome, Outcome::Failed(FailureReason::InvalidBase64)) {
            stats.decoded_bytes += scratch.decoded_len();
        }
        let (unenriched, shape) = match outcome {
            Outcome::Transformed(shape) => {
                let len = ok_len(record.id_json, scratch.payload());
                if committed + len + reserved <= budget {
                    committed += len;
                    write_ok(&mut out, record.id_json, scratch.payload());
                    stats.count(RecordResult::Ok, None);
                    match shape {
                        Shape::Lines | Shape::Array => stats.ok_lines += 1,
                        Shape::BrokenObject => stats.ok_broken_object += 1,
                        Shape::Object | Shape::Value | Shape::Text => {}
                    }
                    continue;
                }
                (UnenrichedReason::OverResponseBudget, shape)
            }
            Outcome::Unenriched(reason, shape) => (reason, shape),
            Outcome::Dropped => {
                // Dropped is shorter than ProcessingFailed with the same data: it fits.
                write_unchanged(&mut out, record, RecordResult::Dropped, &mut committed);
                stats.count(RecordResult::Dropped, None);
                continue;
            }
            Outcome::Failed(reason) => {
                write_unchanged(
                    &mut out,
                    record,
                    RecordResult::ProcessingFailed,
                    &mut committed,
                );
                stats.count(RecordResult::ProcessingFailed, Some(reason));
                stats.failures.record(|| record.id(), reason);
                continue;
            }
        };
        // As it came: never longer than the original data, and `Ok` is shorter than
        // `ProcessingFailed`, so it fits in the reservation it replaces.
        if scratch.unenrich(shape) {
            committed += ok_len(record.id_json, scratch.payload());
            write_ok(&mut out, record.id_json, scratch.payload());
        } else {
            write_unchanged(&mut out, record, RecordResult::Ok, &mut committed);
        }
        stats.count_unenriched(unenriched);
    }
    out.extend_from_slice(CLOSE);
    debug_assert_eq!(
        out.len(),
        committed,
        "the budget accounting matches the bytes written"
    );
    stats.response_bytes = out.len();
    Ok((out, stats))
}

/// Length of a record answered `Ok` with `payload` (base64, quoted) under the id `id_json`.
fn ok_len(id_json: &[u8], payload: &[u8]) -> usize {
    record_len(
        id_json.len(),
        RecordResult::Ok,
        base64_len(payload.len()) + 2,
    )
}

/// Writes a record answered `Ok` with `payload`, base64-encoded; [`ok_len`] bytes.
fn write_ok(out: &mut Vec<u8>, id_json: &[u8], payload: &[u8]) {
    write_head(out, id_json, RecordResult::Ok);
    out.push(b'"');
    BASE64.encode_append(payload, out);
    out.extend_from_slice(b"\"}");
}

/// Writes `record` with `result` and its original `data` literal, and counts its length.
fn write_unchanged(
    out: &mut Vec<u8>,
    record: &EventRecord<'_>,
    result: RecordResult,
    committed: &mut usize,
) {
    *committed += record_len(record.id_json.len(), result, record.data_json.len());
    write_head(out, record.id_json, result);
    out.extend_from_slice(record.data_json);
    out.push(b'}');
}

/// `{"recordId":<id>,"result":"<result>","data":` — the caller writes the data and `}`.
fn write_head(out: &mut Vec<u8>, id_json: &[u8], result: RecordResult) {
    out.extend_from_slice(RECORD_ID);
    out.extend_from_slice(id_json);
    out.extend_from_slice(RESULT);
    out.extend_from_slice(result.as_str().as_bytes());
    out.extend_from_slice(DATA);
}

/// Reads the records of a Firehose event: a JSON object whose `records` member is an array of
/// objects, each with string members `recordId` and `data`. The whole event must be valid JSON.
///
/// Everything but the `data` literals is validated as UTF-8 here (see [`EventRecord`]).
/// A parsed event: its records, and where it came from.
struct Event<'a> {
    records: Vec<EventRecord<'a>>,
    source: EventSource,
}

fn parse_event(event_json: &[u8]) -> Result<Event<'_>, InvocationError> {
    let mut cursor = Cursor::new(event_json, 0);
    let mut reader = EventReader {
        text: event_json,
        stack: Vec::new(),
    };
    let event = reader
        .event(&mut cursor)
        .map_err(|problem| InvocationError::NotFirehoseEvent {
            detail: problem.describe(cursor.pos),
        })?;
    let mut checked = 0;
    for record in &event.records {
        utf8(&event_json[checked..record.data_at])?;
        checked = record.data_at + record.data_json.len();
    }
    utf8(&event_json[checked..])?;
    Ok(event)
}

fn utf8(bytes: &[u8]) -> Result<(), InvocationError> {
    simdutf8::basic::from_utf8(bytes)
        .map(drop)
        .map_err(|_| not_utf8())
}

fn not_utf8() -> InvocationError {
    InvocationError::NotFirehoseEvent {
        detail: "the payload is not UTF-8".to_owned(),
    }
}

/// What is wrong with an event; described without quoting it (it holds customer data).
#[derive(Debug)]
enum EventProblem {
    Syntax,
    NotAnObject,
    Missing(&'static str),
    Duplicate(&'static str),
    RecordsNotAnArray,
    RecordNotAnObject(usize),
    RecordMissing(usize, &'static str),
    RecordDuplicate(usize, &'static str),
    RecordNotAString(usize, &'static str),
}

impl From<scan::InvalidJson> for EventProblem {
    fn from(_: scan::InvalidJson) -> Self {
        Self::Syntax
    }
}

impl EventProblem {
    fn describe(&self, pos: usize) -> String {
        match self {
            Self::Syntax => format!("invalid JSON at byte {pos}"),
            Self::NotAnObject => "the payload is not a JSON object".to_owned(),
            Self::Missing(name) => format!("missing field `{name}`"),
            Self::Duplicate(name) => format!("duplicate field `{name}`"),
            Self::RecordsNotAnArray => "`records` is not an array".to_owned(),
            Self::RecordNotAnObject(i) => format!("record {i} is not an object"),
            Self::RecordMissing(i, name) => format!("record {i}: missing field `{name}`"),
            Self::RecordDuplicate(i, name) => format!("record {i}: duplicate field `{name}`"),
            Self::RecordNotAString(i, name) => format!("record {i}: `{name}` is not a string"),
        }
    }
}

/// The event's structure on top of the scanner's grammar.
struct EventReader<'a> {
    text: &'a [u8],
    /// Scratch for skipping members we do not read.
    stack: Vec<bool>,
}

impl<'a> EventReader<'a> {
    fn event(&mut self, c: &mut Cursor<'a>) -> Result<Event<'a>, EventProblem> {
        if c.next_non_ws() != Some(b'{') {
            return Err(EventProblem::NotAnObject);
        }
        let mut records = None;
        let mut source = EventSource::default();
        self.members(c, |reader, c, name| {
            let slot = match name {
                b"records" => {
                    if records.is_some() {
                        return Err(EventProblem::Duplicate("records"));
                    }
                    records = Some(reader.records(c)?);
                    return Ok(true);
                }
                b"invocationId" => &mut source.invocation_id,
                b"deliveryStreamArn" => &mut source.delivery_stream_arn,
                _ => return Ok(false),
            };
            // Only for the log: a member that is not a string is skipped, not an error.
            if c.peek() != Some(b'"') {
                return Ok(false);
            }
            c.pos += 1;
            let (start, end, _) = c.string_literal()?;
            *slot = scan::unescape(&reader.text[start..end]).ok();
            Ok(true)
        })?;
        if !c.at_end() {
            return Err(EventProblem::Syntax);
        }
        Ok(Event {
            records: records.ok_or(EventProblem::Missing("records"))?,
            source,
        })
    }

    /// Walks the members of an object whose `{` was just consumed. `read` is offered each
    /// name with the cursor before the value; it reads the value and returns true, or returns
    /// false to have the value skipped.
    fn members(
        &mut self,
        c: &mut Cursor<'a>,
        mut read: impl FnMut(&mut Self, &mut Cursor<'a>, &[u8]) -> Result<bool, EventProblem>,
    ) -> Result<(), EventProblem> {
        match c.next_non_ws() {
            Some(b'}') => return Ok(()),
            Some(b'"') => {}
            _ => return Err(EventProblem::Syntax),
        }
        loop {
            let name = c.member_name()?;
            c.skip_ws();
            c.expect(b':')?;
            c.skip_ws();
            if !read(self, c, &name)? {
                c.skip_value(&mut self.stack)?;
            }
            match c.next_non_ws() {
                Some(b',') if c.next_non_ws() == Some(b'"') => {}
                Some(b'}') => return Ok(()),
                _ => return Err(EventProblem::Syntax),
            }
        }
    }

    fn records(&mut self, c: &mut Cursor<'a>) -> Result<Vec<EventRecord<'a>>, EventProblem> {
        if c.next_non_ws() != Some(b'[') {
            return Err(EventProblem::RecordsNotAnArray);
        }
        let mut records = Vec::new();
        c.skip_ws();
        if c.peek() == Some(b']') {
            c.pos += 1;
            return Ok(records);
        }
        loop {
            records.push(self.record(c, records.len())?);
            match c.next_non_ws() {
                Some(b',') => {}
                Some(b']') => return Ok(records),
                _ => return Err(EventProblem::Syntax),
            }
        }
    }

    fn record(
        &mut self,
        c: &mut Cursor<'a>,
        index: usize,
    ) -> Result<EventRecord<'a>, EventProblem> {
        if c.next_non_ws() != Some(b'{') {
            return Err(EventProblem::RecordNotAnObject(index));
        }
        let (mut id, mut data) = (None, None);
        self.members(c, |reader, c, name| {
            let (slot, name) = match name {
                b"recordId" => (&mut id, "recordId"),
                b"data" => (&mut data, "data"),
                _ => return Ok(false),
            };
            if slot.is_some() {
                return Err(EventProblem::RecordDuplicate(index, name));
            }
            if c.peek() != Some(b'"') {
                return Err(EventProblem::RecordNotAString(index, name));
            }
            c.pos += 1;
            let (start, end, escaped) = c.string_literal()?;
            *slot = Some((start, &reader.text[start..end], escaped));
            Ok(true)
        })?;
        let (_, id_json, _) = id.ok_or(EventProblem::RecordMissing(index, "recordId"))?;
        let (data_at, data_json, escaped) =
            data.ok_or(EventProblem::RecordMissing(index, "data"))?;
        let inner = &data_json[1..data_json.len() - 1];
        let data = if escaped {
            scan::unescape(data_json).map_or(Cow::Borrowed(inner), |s| Cow::Owned(s.into_bytes()))
        } else {
            Cow::Borrowed(inner)
        };
        Ok(EventRecord {
            id_json,
            data_json,
            data_at,
            data,
        })
    }
}
