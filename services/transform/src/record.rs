//! The per-record rules: what happens to one Firehose record, and why.
//!
//! [`transform_record`] is the pure, self-contained form that tests and other crates call.
//! `Scratch` (crate-private) is the same logic with buffers reused across the records of one invocation,
//! which is what [`crate::event`] uses on the hot path.

use base64_simd::STANDARD as BASE64;

use firehose_formats::limits::MAX_RECORD_BYTES;

use crate::enrich::{self, Shape, Stamp};
use crate::json;
use crate::scan::ObjectScan;
use serde_json::value::RawValue;

/// The per-record status Firehose accepts: exactly these three strings.
///
/// <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html>
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordResult {
    /// Transformed; Firehose delivers the new `data`.
    Ok,
    /// Intentionally discarded (blank data); Firehose counts it as processed.
    Dropped,
    /// Not transformable; Firehose writes the original `data` to the `processing-failed/` backup.
    ProcessingFailed,
}

impl RecordResult {
    /// The wire spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "Ok",
            Self::Dropped => "Dropped",
            Self::ProcessingFailed => "ProcessingFailed",
        }
    }
}

/// Why a record came back `ProcessingFailed`. Logged by name; never with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FailureReason {
    /// `data` is not canonical, padded base64.
    #[error("data is not valid base64")]
    InvalidBase64,
    /// The decoded bytes are not UTF-8.
    #[error("decoded data is not valid UTF-8")]
    InvalidUtf8,
    /// The decoded bytes are gzip (they start with its magic bytes `1f 8b`), as a CloudWatch
    /// Logs subscription sends them: not UTF-8 either, but this says what to do.
    #[error(
        "decoded data is gzip-compressed: turn on the delivery stream's Decompression processor \
         (CloudWatch Logs sources), or send the data uncompressed"
    )]
    GzipCompressed,
}

impl FailureReason {
    /// A stable, machine-friendly name for logs and metrics.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidBase64 => "invalid_base64",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::GzipCompressed => "gzip_compressed",
        }
    }
}

/// Why a record was returned `Ok` as it came, without our members: delivering an event
/// unenriched is better than sending it to the S3 backup, where it reaches New Relic only if
/// someone replays it (and a replay through the same stream can meet the same limit again).
/// "As it came" means its decoded text with a leading byte order mark and one trailing line
/// ending left out, and, when it is JSON, its line breaks made spaces (the same value, on one
/// line, as New Relic reads records line by line). It is never longer than the original, so it
/// fits wherever the original did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum UnenrichedReason {
    /// The enriched record did not fit in Lambda's 6 MB response (many small records in one
    /// invocation grow past it: our members add ~130 bytes to each).
    #[error("the enriched record does not fit in the Lambda response budget")]
    OverResponseBudget,
    /// The enriched record is larger than a Firehose record may be (1,024,000 bytes,
    /// [`firehose_formats::limits::MAX_RECORD_BYTES`]; an HTTP-endpoint request carries no
    /// larger record): our members push a record near the limit over it, and escaping can
    /// double text. What Firehose does with an `Ok` record over the limit is not documented.
    #[error("the enriched record is larger than Firehose's 1,024,000-byte record limit")]
    OverRecordLimit,
}

impl UnenrichedReason {
    /// A stable, machine-friendly name for logs and metrics.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::OverResponseBudget => "over_response_budget",
            Self::OverRecordLimit => "over_record_limit",
        }
    }
}

/// One output record, as [`transform_record`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutput {
    /// The status for Firehose.
    pub result: RecordResult,
    /// Base64 data: the enriched payload for `Ok` (or the record as it came, see
    /// `unenriched`), the input unchanged otherwise.
    pub data: String,
    /// Set exactly when `result` is `ProcessingFailed`.
    pub failure: Option<FailureReason>,
    /// Set when `result` is `Ok` but the record is returned as it came, without our members.
    pub unenriched: Option<UnenrichedReason>,
}

/// Applies the per-record rules (see the crate docs) to one record.
///
/// `data` is the record's base64 `data` as Firehose sent it; `now_ms` is stamped into
/// `_transformed_ts`. Never panics, whatever `data` holds.
#[must_use]
pub fn transform_record(record_id: &str, data: &str, now_ms: i64) -> RecordOutput {
    let mut scratch = Scratch::default();
    let stamp = Stamp::new(now_ms);
    let mut id_json = Vec::with_capacity(record_id.len() + 2);
    json::write_escaped(&mut id_json, record_id);
    let mut unenriched = None;
    let (result, data, failure) = match scratch.transform(&id_json, data.as_bytes(), &stamp) {
        Outcome::Transformed(_) => (
            RecordResult::Ok,
            BASE64.encode_to_string(scratch.payload()),
            None,
        ),
        Outcome::Unenriched(reason, shape) => {
            unenriched = Some(reason);
            let data = if scratch.unenrich(shape) {
                BASE64.encode_to_string(scratch.payload())
            } else {
                data.to_owned()
            };
            (RecordResult::Ok, data, None)
        }
        Outcome::Dropped => (RecordResult::Dropped, data.to_owned(), None),
        Outcome::Failed(reason) => (
            RecordResult::ProcessingFailed,
            data.to_owned(),
            Some(reason),
        ),
    };
    RecordOutput {
        result,
        data,
        failure,
        unenriched,
    }
}

/// What [`Scratch::transform`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The enriched payload (not yet base64) is in [`Scratch::payload`]; what the record was.
    Transformed(Shape),
    /// The record is to be returned as it came ([`Scratch::unenrich`]): why, and what it was.
    Unenriched(UnenrichedReason, Shape),
    Dropped,
    Failed(FailureReason),
}

/// Buffers reused from record to record.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    decoded: Vec<u8>,
    payload: Vec<u8>,
    scanner: ObjectScan,
}

impl Scratch {
    /// Decodes and classifies one record; on [`Outcome::Transformed`] the new payload is in
    /// [`Self::payload`]. `id_json` is the record id as a JSON string literal.
    pub(crate) fn transform(&mut self, id_json: &[u8], data: &[u8], stamp: &Stamp) -> Outcome {
        self.decoded.clear();
        self.payload.clear();
        if BASE64.decode_append(data, &mut self.decoded).is_err() {
            return Outcome::Failed(FailureReason::InvalidBase64);
        }
        let Ok(text) = simdutf8::basic::from_utf8(&self.decoded) else {
            return Outcome::Failed(if self.decoded.starts_with(&[0x1f, 0x8b]) {
                FailureReason::GzipCompressed
            } else {
                FailureReason::InvalidUtf8
            });
        };
        // A leading byte order mark (some Windows tools write one) is not content: RFC 8259
        // §8.1 lets a parser ignore it, and `ingest` does, so an object behind one is an object.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Outcome::Dropped;
        }
        let shape = enrich::enrich(text, id_json, stamp, &mut self.scanner, &mut self.payload);
        if self.payload.len() > MAX_RECORD_BYTES {
            return Outcome::Unenriched(UnenrichedReason::OverRecordLimit, shape);
        }
        Outcome::Transformed(shape)
    }

    /// Puts the last transformed record, which was `shape`, as it came into [`Self::payload`]
    /// (see [`UnenrichedReason`]), replacing its enriched form. False when that is the decoded
    /// data byte for byte: the original `data` literal is then the answer, with no new base64.
    pub(crate) fn unenrich(&mut self, shape: Shape) -> bool {
        let mut text: &[u8] = &self.decoded;
        text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        if let Some(rest) = text.strip_suffix(b"\n") {
            text = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        // JSON on one line: a JSON value's line breaks, and the CRs inside the lines of several
        // objects one per line (each line is an object, so a CR in it is whitespace), become
        // spaces, as on the enriched path. Text stays as it came, line breaks included: New
        // Relic then reads each of its lines as a log line of its own.
        let (breaks, lines): (&[u8], _) = match shape {
            Shape::Object | Shape::Value | Shape::Array => (b"\n\r", false),
            Shape::Lines => (b"\r", true),
            Shape::Text | Shape::BrokenObject => (b"", false),
        };
        // An array of objects goes out as its objects one per line, the shape it has enriched
        // (and the one ingest gives such a batch): as one array line it would reach New Relic
        // as one event or another, depending on how full the invocation was. That drops the
        // brackets and turns each comma into a line break, so it is never longer.
        if shape == Shape::Array
            && let Ok(items) = std::str::from_utf8(text)
                .map_err(|_| ())
                .and_then(|t| serde_json::from_str::<Vec<&RawValue>>(t).map_err(|_| ()))
        {
            self.payload.clear();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.payload.push(b'\n');
                }
                let from = self.payload.len();
                self.payload.extend_from_slice(item.get().as_bytes());
                firehose_formats::json_scan::line_breaks_to_spaces(&mut self.payload[from..]);
            }
            return true;
        }
        let changed = text.len() != self.decoded.len() || text.iter().any(|b| breaks.contains(b));
        if !changed {
            return false;
        }
        self.payload.clear();
        self.payload.extend_from_slice(text);
        if lines {
            for b in &mut self.payload {
                if *b == b'\r' {
                    *b = b' ';
                }
            }
        } else if !breaks.is_empty() {
            firehose_formats::json_scan::line_breaks_to_spaces(&mut self.payload);
        }
        true
    }

    /// Length of the decoded input of the last [`Self::transform`] call.
    pub(crate) fn decoded_len(&self) -> usize {
        self.decoded.len()
    }

    /// The enriched payload of the last [`Outcome::Transformed`].
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use serde_json::Value;

    const NOW: i64 = 1_770_249_600_000;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn decoded(output: &RecordOutput) -> String {
        String::from_utf8(STANDARD.decode(&output.data).unwrap()).unwrap()
    }

    #[test]
    fn result_strings_are_the_ones_firehose_accepts() {
        assert_eq!(RecordResult::Ok.as_str(), "Ok");
        assert_eq!(RecordResult::Dropped.as_str(), "Dropped");
        assert_eq!(RecordResult::ProcessingFailed.as_str(), "ProcessingFailed");
    }

    #[test]
    fn a_json_object_is_enriched() {
        let out = transform_record("rec-1", &b64(br#"{"level":"INFO","n":1.10}"#), NOW);
        assert_eq!(out.result, RecordResult::Ok);
        assert_eq!(out.failure, None);
        assert_eq!(
            decoded(&out),
            r#"{"level":"INFO","n":1.10,"transformed":true,"_transformed_ts":1770249600000,"_record_id":"rec-1"}"#
        );
    }

    #[test]
    fn a_record_enriched_past_the_record_limit_is_delivered_as_it_came() {
        // An object that fits the limit by itself, and our three members take it over. As
        // `ingest` sends it: one line, then `\n`, which is left out as from an enriched record.
        let object = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_RECORD_BYTES - 11));
        assert_eq!(object.len() + 1, MAX_RECORD_BYTES);
        let out = transform_record("rec-1", &b64(format!("{object}\n").as_bytes()), NOW);
        assert_eq!(out.result, RecordResult::Ok);
        assert_eq!(out.failure, None);
        assert_eq!(out.unenriched, Some(UnenrichedReason::OverRecordLimit));
        assert_eq!(decoded(&out), object);
        // Pretty-printed: delivered on one line, the same value.
        let pretty = format!(
            "{{\r\n  \"pad\": \"{}\"\n}}",
            "x".repeat(MAX_RECORD_BYTES - 40)
        );
        let out = transform_record("rec-2", &b64(pretty.as_bytes()), NOW);
        assert_eq!(out.unenriched, Some(UnenrichedReason::OverRecordLimit));
        let flat = decoded(&out);
        assert!(!flat.contains(['\n', '\r']), "one line");
        assert_eq!(flat.len(), pretty.len());
        assert_eq!(
            serde_json::from_str::<Value>(&flat).unwrap(),
            serde_json::from_str::<Value>(&pretty).unwrap()
        );
        // Text that escaping doubles: 600,000 quotes are 1,200,000 bytes once escaped. Text
        // needs no change: the original `data` comes back as it was.
        let data = b64("\"".repeat(600_000).as_bytes());
        let out = transform_record("rec-3", &data, NOW);
        assert_eq!(out.result, RecordResult::Ok);
        assert_eq!(out.unenriched, Some(UnenrichedReason::OverRecordLimit));
        assert_eq!(out.data, data);
        // The largest record that still fits is enriched.
        let fits = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_RECORD_BYTES - 200));
        let out = transform_record("rec-4", &b64(fits.as_bytes()), NOW);
        assert_eq!(out.result, RecordResult::Ok);
        assert_eq!(out.unenriched, None);
        assert!(decoded(&out).len() <= MAX_RECORD_BYTES);
        assert!(decoded(&out).contains("\"_record_id\":\"rec-4\""));
    }

    #[test]
    fn invalid_base64_fails_with_the_data_unchanged() {
        for data in ["not*valid*base64==", "aGVsbG8", "aGVsbG8=\n", "aGVsbG9=x"] {
            let out = transform_record("r", data, NOW);
            assert_eq!(out.result, RecordResult::ProcessingFailed, "{data:?}");
            assert_eq!(out.failure, Some(FailureReason::InvalidBase64));
            assert_eq!(out.data, data);
        }
    }

    #[test]
    fn invalid_utf8_fails_with_the_data_unchanged() {
        let data = b64(b"\xff\xfe invalid utf-8 \xc3\x28");
        let out = transform_record("r", &data, NOW);
        assert_eq!(out.result, RecordResult::ProcessingFailed);
        assert_eq!(out.failure, Some(FailureReason::InvalidUtf8));
        assert_eq!(out.data, data);
    }

    #[test]
    fn gzip_data_fails_saying_so() {
        // A CloudWatch Logs subscription's record: gzip, not text.
        let data =
            b64(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\x56\x4a\x54\xb2\x32\xac\x05\x00");
        let out = transform_record("r", &data, NOW);
        assert_eq!(out.result, RecordResult::ProcessingFailed);
        assert_eq!(out.failure, Some(FailureReason::GzipCompressed));
        assert_eq!(
            out.failure.map(FailureReason::code),
            Some("gzip_compressed")
        );
        assert!(
            FailureReason::GzipCompressed
                .to_string()
                .contains("Decompression")
        );
        assert_eq!(out.data, data);
    }

    #[test]
    fn blank_data_is_dropped() {
        for blank in ["", " ", "\n", " \t\r\n ", "\u{a0}\u{2003}"] {
            let data = b64(blank.as_bytes());
            let out = transform_record("r", &data, NOW);
            assert_eq!(out.result, RecordResult::Dropped, "{blank:?}");
            assert_eq!(out.failure, None);
            assert_eq!(out.data, data, "Dropped records keep their (valid) data");
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_not_content() {
        let out = transform_record("r", &b64("\u{feff}{\"a\":1}".as_bytes()), NOW);
        assert_eq!(out.result, RecordResult::Ok);
        assert_eq!(
            decoded(&out),
            r#"{"a":1,"transformed":true,"_transformed_ts":1770249600000,"_record_id":"r"}"#
        );
        let out = transform_record("r", &b64("\u{feff}hello".as_bytes()), NOW);
        let v: Value = serde_json::from_str(&decoded(&out)).unwrap();
        assert_eq!(v["message"], "hello");
        let out = transform_record("r", &b64("\u{feff}\n".as_bytes()), NOW);
        assert_eq!(out.result, RecordResult::Dropped);
        // Only a leading one: elsewhere it is text.
        let out = transform_record("r", &b64("{\"a\":1}\u{feff}".as_bytes()), NOW);
        let v: Value = serde_json::from_str(&decoded(&out)).unwrap();
        assert_eq!(v["message"], "{\"a\":1}\u{feff}");
    }

    #[test]
    fn text_and_other_values_are_wrapped_as_message() {
        let out = transform_record("r", &b64("hello 東京\n".as_bytes()), NOW);
        let v: Value = serde_json::from_str(&decoded(&out)).unwrap();
        assert_eq!(v["message"], "hello 東京");
        assert_eq!(v["transformed"], true);
        assert_eq!(v["_transformed_ts"], NOW);
        assert_eq!(v["_record_id"], "r");

        let out = transform_record("r", &b64(b"[1,2,3]"), NOW);
        assert!(decoded(&out).starts_with(r#"{"message":[1,2,3],"transformed":true"#));
    }

    /// JSON text generators for the property tests: objects printed compactly, with arbitrary
    /// names (including ours) and number spellings serde_json would not print itself.
    fn json_number() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,40})",
            "-?(0|[1-9][0-9]{0,5})\\.[0-9]{1,20}",
            "-?[1-9]\\.[0-9]{1,3}[eE][+-]?[0-9]{1,3}",
        ]
    }

    fn json_scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            json_number(),
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
        ]
    }

    fn json_value() -> impl Strategy<Value = String> {
        json_scalar().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((member_name(), inner), 0..6).prop_map(|m| object(&m)),
            ]
        })
    }

    fn member_name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => any::<String>(),
            1 => prop::sample::select(crate::ADDED_KEYS.to_vec()).prop_map(str::to_owned),
        ]
    }

    fn member(name: &str, value: &str) -> String {
        format!("{}:{value}", serde_json::to_string(name).unwrap())
    }

    fn object(members: &[(String, String)]) -> String {
        let body: Vec<String> = members.iter().map(|(k, v)| member(k, v)).collect();
        format!("{{{}}}", body.join(","))
    }

    proptest! {
        #[test]
        fn any_object_keeps_its_members_byte_identical_plus_ours(
            members in prop::collection::vec((member_name(), json_value()), 0..12),
            record_id in any::<String>(),
            now in any::<i64>(),
        ) {
            let input = object(&members);
            let out = transform_record(&record_id, &b64(input.as_bytes()), now);
            prop_assert_eq!(out.result, RecordResult::Ok);
            let kept: Vec<String> = members
                .iter()
                .filter(|(k, _)| !crate::ADDED_KEYS.contains(&k.as_str()))
                .map(|(k, v)| member(k, v))
                .collect();
            let mut expected = kept;
            expected.push(format!("\"transformed\":true,\"_transformed_ts\":{now}"));
            expected.push(member("_record_id", &serde_json::to_string(&record_id).unwrap()));
            prop_assert_eq!(decoded(&out), format!("{{{}}}", expected.join(",")));
        }

        #[test]
        fn any_non_object_value_is_the_message_verbatim(value in json_scalar(), now in any::<i64>()) {
            let out = transform_record("id", &b64(format!("{value}\n").as_bytes()), now);
            prop_assert_eq!(out.result, RecordResult::Ok);
            prop_assert_eq!(
                decoded(&out),
                format!(r#"{{"message":{value},"transformed":true,"_transformed_ts":{now},"_record_id":"id"}}"#)
            );
        }

        #[test]
        fn any_bytes_give_a_valid_answer(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let data = b64(&bytes);
            let out = transform_record("id", &data, NOW);
            match out.result {
                RecordResult::Ok => {
                    let v: Value = serde_json::from_str(&decoded(&out)).unwrap();
                    prop_assert_eq!(&v["_record_id"], "id");
                }
                RecordResult::Dropped | RecordResult::ProcessingFailed => prop_assert_eq!(out.data, data),
            }
        }

        /// Valid UTF-8 (random bytes almost never are, so the test above rarely reaches `Ok`):
        /// any text, JSON values, and objects packed one per line or in an array. Text is
        /// delivered (`Ok`; `Dropped` only when blank), as JSON objects one per line, each with
        /// our members.
        #[test]
        fn any_text_is_delivered_as_enriched_json_lines(
            text in prop_oneof![
                any::<String>(),
                json_value(),
                prop::collection::vec(json_value(), 1..4).prop_map(|v| v.join("\n")),
                prop::collection::vec(json_value(), 1..4).prop_map(|v| format!("[{}]", v.join(","))),
            ],
        ) {
            let out = transform_record("id", &b64(text.as_bytes()), NOW);
            match out.result {
                RecordResult::Ok => {
                    let decoded = decoded(&out);
                    for line in decoded.split('\n') {
                        // Raw members: numbers pass byte for byte, beyond what `Value` holds.
                        let members: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
                            serde_json::from_str(line).map_err(|e| {
                                TestCaseError::fail(format!("{e}: {line:?} from {text:?}"))
                            })?;
                        prop_assert_eq!(members.get("_record_id").map(|v| v.get()), Some("\"id\""));
                        prop_assert_eq!(members.get("transformed").map(|v| v.get()), Some("true"));
                    }
                }
                RecordResult::Dropped => {
                    let rest = text.trim_start_matches('\u{feff}');
                    prop_assert!(rest.trim().is_empty(), "{text:?} dropped");
                }
                RecordResult::ProcessingFailed => {
                    prop_assert!(false, "valid UTF-8 text failed: {text:?}");
                }
            }
        }

        #[test]
        fn any_string_as_data_never_panics(data in any::<String>()) {
            let out = transform_record("id", &data, NOW);
            if out.result != RecordResult::Ok {
                prop_assert_eq!(out.data, data);
            }
        }

        #[test]
        fn base64_validity_agrees_with_the_base64_crate(data in "[A-Za-z0-9+/=]{0,12}") {
            let ours = transform_record("id", &data, NOW).failure != Some(FailureReason::InvalidBase64);
            prop_assert_eq!(ours, STANDARD.decode(&data).is_ok());
        }
    }
}
