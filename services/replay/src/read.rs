//! Turns the bytes of one backup object into the records to send again.
//!
//! Firehose writes three shapes there (see `firehose-facts.md` §2): NDJSON error records whose
//! `rawData` is the base64 record, possibly GZIP-compressed with or without a `.gz` extension,
//! and `AllData` objects of raw records. The readers are tolerant where Firehose has been seen to
//! vary: keys are matched case-insensitively (`lambdaArn` and `lambdaARN` both occur), unknown
//! keys are ignored, key order does not matter, compression is detected by the magic bytes.
//! A line that cannot be read becomes an [`Unreadable`] with its line number, never an error
//! for the whole object: one bad line must not hold back the good ones.
//!
//! Of an error record only `rawData` is needed to send the record again, so only `rawData` can
//! make a line unreadable. The other fields (`errorCode`, `attemptsMade`, timestamps, ARNs, …)
//! are not needed and are read leniently (`firehose-formats`' `ErrorRecord::parse_tolerant`):
//! a field of an unexpected type (a timestamp written as `1.741088912364E12`, an `errorMessage`
//! that is an object) reads as absent; for a recovery tool, dropping a record whose data is
//! intact over a field it never sends would be a loss.
//!
//! An object is held in memory whole, so nothing reads more of one than a cap
//! ([`MAX_DECODED_OBJECT_BYTES`]): [`read_at_most`] for what is fetched (an S3 body, a file),
//! [`read_at_most_blocking`] for what the GZIP decoder makes of it. Both stop one byte past the
//! cap, whatever size the object claimed.

use std::io::Read;

use base64::Engine as _;
use bytes::Bytes;
use firehose_formats::backup::ErrorRecord;
use flate2::read::MultiGzDecoder;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::layout::ObjectKind;

/// The first two bytes of every GZIP member (RFC 1952 §2.3.1).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Largest decompressed object the reader accepts: 1 GiB.
///
/// Firehose's S3 buffer is at most 128 MiB before compression
/// (<https://docs.aws.amazon.com/firehose/latest/APIReference/API_BufferingHints.html>), so a
/// real object never comes near; the cap only stops a hostile or corrupt object from exhausting
/// memory.
pub const MAX_DECODED_OBJECT_BYTES: u64 = 1 << 30;

/// One record read from an object, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based line number in the (decompressed) object.
    pub line: usize,
    /// The record's bytes as Firehose received them from the producer.
    pub data: Bytes,
    /// The `errorCode` of an error record, when it has one.
    pub error_code: Option<String>,
}

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// 1-based line number in the (decompressed) object.
    pub line: usize,
    /// What is wrong with it, for the operator.
    pub reason: String,
}

/// Everything read from one object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadObject {
    /// The good records, in object order.
    pub records: Vec<Record>,
    /// The lines that could not be read, in object order.
    pub unreadable: Vec<Unreadable>,
}

/// Why a whole object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object starts like GZIP but does not decompress.
    #[error("the object starts with the GZIP magic bytes but does not decompress: {0}")]
    Gzip(#[source] std::io::Error),
    /// Compressed in a format replay does not read (Firehose also offers ZIP and Snappy).
    #[error(
        "the object is {0}-compressed, which replay does not read (only GZIP); decompress it and replay the result"
    )]
    Unsupported(&'static str),
    /// Not one line could be read, and the object is not text: most likely a compression
    /// without magic bytes (Hadoop-compatible Snappy) or not a Firehose backup at all.
    #[error(
        "not one line of the object could be read, and it is not UTF-8 text (compressed in a format replay does not read, e.g. Hadoop-compatible Snappy?)"
    )]
    NotText,
    /// A raw (`AllData`) object whose lines are Firehose error records: error output whose key
    /// lost its error-output-type folder (copied from below that folder, or written under an
    /// error prefix without a `/` after the type). Replayed as raw records, each whole error
    /// record would be sent as an event.
    #[error(
        "the object's key names no error output type, so it would be replayed as raw AllData records, but its lines are Firehose error records ({0}); keep its `processing-failed/` or `http-endpoint-failed/` folder in the path (replay the directory above that folder), or move it under one"
    )]
    ErrorOutputWithoutType(String),
    /// Text of which not one line could be read: most likely not the kind of object its key
    /// says (an `AllData` object of some other producer's records, an error record format
    /// replay does not know). Checked off as finished, it would never be read again.
    #[error(
        "not one line of the object could be read (line {line}: {reason}); it stays unfinished"
    )]
    NothingReadable {
        /// The first unreadable line.
        line: usize,
        /// Why it could not be read.
        reason: String,
    },
    /// Decompressed, the object is larger than [`MAX_DECODED_OBJECT_BYTES`].
    #[error(
        "the object decompresses to more than {MAX_DECODED_OBJECT_BYTES} bytes; refusing to read it"
    )]
    TooLarge,
}

/// Why [`read_at_most`] or [`read_at_most_blocking`] returned no bytes.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    /// There is more than `cap` bytes; reading stopped one byte past it.
    #[error("it is larger than {cap} bytes")]
    TooLarge {
        /// The cap.
        cap: u64,
    },
    /// The reader failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads `reader` to its end into memory, but never more than `cap + 1` bytes: past `cap` it
/// stops with [`CappedReadError::TooLarge`], however much the reader still holds (a size
/// announced beforehand is trusted by nobody here).
///
/// `expected` (the object's size as the store gave it) only sizes the buffer, up to the cap:
/// grown by doubling, a 100 MiB object held 128 MiB for as long as its records lived (they are
/// slices of it), and 192 MiB while it grew.
///
/// # Errors
/// [`CappedReadError::TooLarge`] past the cap, [`CappedReadError::Io`] when reading fails.
pub async fn read_at_most(
    reader: impl AsyncRead,
    cap: u64,
    expected: Option<u64>,
) -> Result<Vec<u8>, CappedReadError> {
    // Room past the expected end for the reads that find it (tokio reserves 32 bytes more,
    // which doubles a full buffer, when fewer are free).
    let capacity = expected
        .map_or(0, |len| len.min(cap).saturating_add(64))
        .try_into()
        .unwrap_or(0);
    let mut out = Vec::with_capacity(capacity);
    std::pin::pin!(reader.take(cap.saturating_add(1)))
        .read_to_end(&mut out)
        .await?;
    within(out, cap)
}

/// [`read_at_most`] for a blocking reader: the GZIP decoder over an object already in memory,
/// which never waits for I/O.
///
/// # Errors
/// As [`read_at_most`].
pub fn read_at_most_blocking(reader: impl Read, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    let mut out = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut out)?;
    within(out, cap)
}

/// `bytes` if within `cap`, without the spare room a buffer grown by doubling keeps (up to
/// half of it; the records read from it keep it alive).
fn within(mut bytes: Vec<u8>, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    if bytes.len() as u64 > cap {
        return Err(CappedReadError::TooLarge { cap });
    }
    if bytes.capacity() - bytes.len() > bytes.len() / 8 {
        bytes.shrink_to_fit();
    }
    Ok(bytes)
}

/// Whether `body` starts with the GZIP magic bytes.
#[must_use]
pub fn is_gzip(body: &[u8]) -> bool {
    body.starts_with(&GZIP_MAGIC)
}

/// Decompresses `body` if it is GZIP (by magic bytes, whatever the key's extension), else
/// returns it unchanged. Concatenated GZIP members are read to the end.
///
/// # Errors
/// [`ReadError::Gzip`] for a corrupt stream, [`ReadError::TooLarge`] past the cap.
pub fn decompress(body: Bytes) -> Result<Bytes, ReadError> {
    if !is_gzip(&body) {
        return Ok(body);
    }
    match read_at_most_blocking(MultiGzDecoder::new(&body[..]), MAX_DECODED_OBJECT_BYTES) {
        Ok(out) => Ok(Bytes::from(out)),
        Err(CappedReadError::TooLarge { .. }) => Err(ReadError::TooLarge),
        Err(CappedReadError::Io(e)) => Err(ReadError::Gzip(e)),
    }
}

/// Reads one object of the given kind.
///
/// - Error objects: every non-blank line must be a JSON object with a `rawData` string (any
///   case) holding base64; the decoded bytes are the record.
/// - Raw (`AllData`) objects: records are JSON objects, because the front door writes each
///   record as one event's JSON object followed by `\n` (see [`read_raw_records`]). A record is
///   sent with its `\n`, byte for byte what the producer sent, but that an event written over
///   several lines (by an older front door, or another producer) is sent as one line.
///
/// # Errors
/// Only for the object as a whole: see [`decompress`]; ZIP or Snappy magic bytes; binary data
/// of which not one line reads. Bad lines otherwise are in [`ReadObject::unreadable`].
pub fn read_object(kind: &ObjectKind, body: Bytes) -> Result<ReadObject, ReadError> {
    if body.starts_with(b"PK\x03\x04") {
        return Err(ReadError::Unsupported("ZIP"));
    }
    // snappy-java's stream header, and the framing format's stream identifier.
    if body.starts_with(b"\x82SNAPPY\x00") || body.starts_with(b"\xff\x06\x00\x00sNaPpY") {
        return Err(ReadError::Unsupported("Snappy"));
    }
    let body = decompress(body)?;
    let mut out = ReadObject::default();
    if kind.is_error_output() {
        for (index, line) in body.split(|b| *b == b'\n').enumerate() {
            let line_no = index + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match read_error_record(line) {
                Ok((data, error_code)) => out.records.push(Record {
                    line: line_no,
                    data,
                    error_code,
                }),
                Err(reason) => out.unreadable.push(Unreadable {
                    line: line_no,
                    reason,
                }),
            }
        }
    } else {
        read_raw_records(&body, &mut out);
    }
    // Checked off as finished, such an object would never be read again, even once replay
    // could read it: it fails instead, and stays for the next run. A raw object that is not
    // text and has more bad lines than good ones is binary too: in binary data an odd chunk
    // between two newlines is valid JSON now and then, and sending those would be worse than
    // sending nothing.
    let binary_raw = !kind.is_error_output() && out.unreadable.len() > out.records.len();
    let nothing_read = out.records.is_empty() && !out.unreadable.is_empty();
    if (nothing_read || binary_raw) && std::str::from_utf8(&body).is_err() {
        return Err(ReadError::NotText);
    }
    if let Some(first) = out.unreadable.first().filter(|_| nothing_read) {
        return Err(ReadError::NothingReadable {
            line: first.line,
            reason: first.reason.clone(),
        });
    }
    if !kind.is_error_output()
        && let Some(first) = out.records.first()
        && looks_like_error_record(&first.data)
    {
        return Err(ReadError::ErrorOutputWithoutType(format!(
            "line {} has `rawData`, `errorCode` and `attemptsMade`",
            first.line
        )));
    }
    Ok(out)
}

/// Whether a raw line is an error record Firehose wrote (`attemptsMade`, `errorCode` and
/// `rawData` at its top level), rather than an event.
fn looks_like_error_record(line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        attempts_made: Option<serde::de::IgnoredAny>,
        error_code: Option<serde::de::IgnoredAny>,
        raw_data: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Shape>(line)
        .is_ok_and(|s| s.attempts_made.is_some() && s.error_code.is_some() && s.raw_data.is_some())
}

/// One NDJSON error record → the record bytes and its error code.
///
/// Keys match in any case (`rawData`, `RAWDATA`); unknown keys and the fields not needed to
/// send the record are ignored whatever their type (see the module docs). Only a line that is
/// not a JSON object, or whose `rawData` is missing, not a string or not base64, is unreadable.
fn read_error_record(line: &[u8]) -> Result<(Bytes, Option<String>), String> {
    let record = ErrorRecord::parse_tolerant(line).map_err(|e| e.to_string())?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(record.raw_data.trim())
        .map_err(|e| format!("`rawData` is not base64: {e}"))?;
    let error_code = Some(record.error_code).filter(|code| !code.is_empty());
    Ok((Bytes::from(data), error_code))
}

/// Reads the records of an `AllData` object into `out`.
///
/// Firehose writes the records it received one after the other, adding nothing; the front door
/// ends each with `\n`. A record is a JSON object that starts a line (or follows the record
/// before it directly, for records sent without their `\n`) and is followed by a line break, the
/// end of the object, or the next record's `{`; it may span lines: an event pretty-printed
/// inside an array, sent by a front door older than the one that keeps records to one line, or
/// by another producer. It is sent as one line (its line breaks are whitespace between tokens,
/// made spaces: same value) followed by `\n`.
///
/// Anything else is unreadable, by line, and skipped: a line that starts with something other
/// than `{` (a JSON value that is not an object is not an event), an object that does not
/// parse, or one followed by more on its line. The rules matter most for what is left of an
/// object that does not parse (cut off, damaged): its remaining lines are fragments, and a
/// fragment must not be sent as an event. Pretty-printed fragments are indented and so start no
/// line, and a nested value inside one is followed by `,` or `:`; only in a broken event
/// written with `indent=0` could an object that ends an array (flush left, a line break after
/// it) pass, and it would be sent.
fn read_raw_records(body: &Bytes, out: &mut ReadObject) {
    let bytes = &body[..];
    let mut pos = 0;
    let mut line = 1;
    // Here `pos` is always where a record may start: at the start of a line, or right after a
    // record (which `raw_record_at` only accepts when a line break or a `{` follows it).
    while pos < bytes.len() {
        if bytes[pos] == b'\n' {
            line += 1;
            pos += 1;
            continue;
        }
        let parsed = match bytes[pos] {
            b'{' => raw_record_at(bytes, pos),
            b' ' | b'\t' | b'\r' if blank_to_line_end(&bytes[pos..]) => {
                // Straight to the line break: one pass over a blank line, however long.
                pos = line_end(bytes, pos);
                continue;
            }
            b' ' | b'\t' => Err(
                "not a record: it does not start its line (part of an event over several lines that does not parse?)"
                    .to_owned(),
            ),
            _ => Err("not a JSON object (an event is one)".to_owned()),
        };
        match parsed {
            Ok((end, after)) => {
                let value = &bytes[pos..end];
                let breaks = value.iter().filter(|b| **b == b'\n').count();
                let data =
                    if breaks == 0 && !value.contains(&b'\r') && bytes.get(after) == Some(&b'\n') {
                        // One line, as sent: byte for byte, its own line ending included.
                        body.slice(pos..=after)
                    } else {
                        let mut one_line = Vec::with_capacity(value.len() + 1);
                        one_line.extend_from_slice(value);
                        firehose_formats::json_scan::line_breaks_to_spaces(&mut one_line);
                        one_line.push(b'\n');
                        Bytes::from(one_line)
                    };
                out.records.push(Record {
                    line,
                    data,
                    error_code: None,
                });
                line += breaks;
                pos = after;
            }
            Err(reason) => {
                out.unreadable.push(Unreadable { line, reason });
                // Skip the rest of the line.
                pos = line_end(bytes, pos);
            }
        }
    }
}

/// `text` on one line when it is one JSON object (whitespace around it allowed): its line
/// breaks, whitespace between tokens, made spaces
/// ([`firehose_formats::json_scan::line_breaks_to_spaces`]: same value), the whitespace after
/// it left out. `None` for anything else. An event pretty-printed by its client is stored so in
/// records a front door older than the one that keeps records to one line wrote.
pub(crate) fn object_on_one_line(text: &str) -> Option<Vec<u8>> {
    if !is_json_object(text) {
        return None;
    }
    let mut flat = text.trim_end().as_bytes().to_vec();
    firehose_formats::json_scan::line_breaks_to_spaces(&mut flat);
    Some(flat)
}

/// Whether `text` is one JSON object (whitespace around it allowed).
pub(crate) fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{') && firehose_formats::json_scan::one_value(text).is_ok()
}

/// Where the line that `pos` is on ends: its `\n`, or the end of `bytes`.
fn line_end(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |n| pos + n)
}

/// Whether `rest` holds only spaces, tabs and `\r` up to its first line break (or its end).
fn blank_to_line_end(rest: &[u8]) -> bool {
    rest.iter()
        .take_while(|b| **b != b'\n')
        .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// The end of the JSON object that starts at `start`, and the end of the blanks after it (spaces,
/// tabs and `\r`, which belong to the record), if it parses and those blanks are followed by a
/// line break, the end, or another record's `{`.
fn raw_record_at(bytes: &[u8], start: usize) -> Result<(usize, usize), String> {
    let mut values =
        serde_json::Deserializer::from_slice(&bytes[start..]).into_iter::<serde::de::IgnoredAny>();
    match values.next() {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(format!("not a JSON event: {e}")),
        None => return Err("not a JSON event".to_owned()),
    }
    let end = start + values.byte_offset();
    let after = bytes[end..]
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
        .map_or(bytes.len(), |n| end + n);
    match bytes.get(after) {
        None | Some(b'\n' | b'{') => Ok((end, after)),
        Some(other) => Err(format!(
            "not a JSON event: {:?} after the object on its line (part of an event over several lines?)",
            char::from(*other)
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn b64(data: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn error_records_are_read_whatever_the_case_and_order_of_keys() {
        let body = format!(
            "{{\"attemptsMade\":4,\"rawData\":\"{}\",\"lambdaArn\":\"arn:a\",\"errorCode\":\"Lambda.FunctionError\"}}\n\
             {{\"RAWDATA\":\"{}\",\"lambdaARN\":\"arn:b\",\"someNewKey\":[1,2]}}\n",
            b64("{\"a\":1}"),
            b64("{\"b\":2}")
        );
        let read = read_object(&ObjectKind::ProcessingFailed, Bytes::from(body)).unwrap();
        assert_eq!(read.unreadable, vec![]);
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[0].data, "{\"a\":1}");
        assert_eq!(
            read.records[0].error_code.as_deref(),
            Some("Lambda.FunctionError")
        );
        assert_eq!(read.records[1].data, "{\"b\":2}");
        assert_eq!(read.records[1].line, 2);
    }

    #[test]
    fn bad_lines_are_reported_with_their_line_number_and_skipped() {
        let good = format!("{{\"rawData\":\"{}\"}}", b64("ok"));
        let body = format!(
            "{good}\nnot json\n\n{{\"rawData\":5}}\n{{\"errorCode\":\"x\"}}\n{{\"rawData\":\"!!!\"}}\n[1]\n{good}"
        );
        let read = read_object(&ObjectKind::HttpEndpointFailed, Bytes::from(body)).unwrap();
        let lines: Vec<usize> = read.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 8]);
        let bad: Vec<usize> = read.unreadable.iter().map(|u| u.line).collect();
        assert_eq!(bad, vec![2, 4, 5, 6, 7]);
        let reasons: Vec<&str> = read.unreadable.iter().map(|u| u.reason.as_str()).collect();
        assert!(reasons[0].contains("not a JSON object"), "{reasons:?}");
        assert!(reasons[1].contains("rawData"), "{reasons:?}");
        assert!(reasons[2].contains("rawData"), "{reasons:?}");
        assert!(reasons[3].contains("not base64"), "{reasons:?}");
        assert!(reasons[4].contains("not a JSON object"), "{reasons:?}");
    }

    #[test]
    fn fields_not_needed_to_send_never_make_a_line_unreadable() {
        // Each line has intact `rawData` and one optional field of an unexpected type.
        let data = b64("{\"a\":1}");
        let odd_fields = [
            r#""arrivalTimestamp":1.741088912364E12"#,
            r#""attemptsMade":-1"#,
            r#""attemptsMade":"four""#,
            r#""subsequenceNumber":-3"#,
            r#""attemptEndingTimestamp":true"#,
            r#""errorMessage":{"nested":"object"}"#,
            r#""lambdaArn":42"#,
            r#""lambdaARN":["a"]"#,
            r#""dataId":49607357361271740811418664280693044274821622880012337186"#,
            r#""errorCode":7"#,
        ];
        let body: String = odd_fields
            .iter()
            .map(|field| format!("{{\"rawData\":\"{data}\",{field}}}\n"))
            .collect();
        let read = read_object(&ObjectKind::ProcessingFailed, Bytes::from(body)).unwrap();
        assert_eq!(read.unreadable, vec![], "no line is lost");
        assert_eq!(read.records.len(), odd_fields.len());
        assert!(read.records.iter().all(|r| r.data == "{\"a\":1}"));
        assert_eq!(
            read.records[9].error_code, None,
            "a non-string errorCode is absent"
        );
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_not_by_name() {
        let plain = format!("{{\"rawData\":\"{}\"}}\n", b64("{\"z\":1}"));
        let read = read_object(
            &ObjectKind::ProcessingFailed,
            Bytes::from(gzip(plain.as_bytes())),
        )
        .unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].data, "{\"z\":1}");
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut body = gzip(b"{\"a\":1}\n");
        body.extend(gzip(b"{\"b\":2}\n"));
        let read = read_object(&ObjectKind::Raw, Bytes::from(body)).unwrap();
        assert_eq!(read.records.len(), 2);
    }

    #[tokio::test]
    async fn reading_stops_one_byte_past_the_cap_and_names_it() {
        assert_eq!(
            read_at_most(&b"12345"[..], 5, None).await.unwrap(),
            b"12345"
        );
        let err = read_at_most(&b"12345"[..], 4, Some(5)).await.unwrap_err();
        assert!(matches!(err, CappedReadError::TooLarge { cap: 4 }), "{err}");
        assert_eq!(err.to_string(), "it is larger than 4 bytes");
        // A reader that never ends is not read to its end.
        let endless = tokio::io::repeat(b'x');
        assert!(matches!(
            read_at_most(endless, 1000, Some(10)).await,
            Err(CappedReadError::TooLarge { cap: 1000 })
        ));

        let gz = gzip(b"123456");
        assert_eq!(
            read_at_most_blocking(MultiGzDecoder::new(&gz[..]), 6).unwrap(),
            b"123456"
        );
        assert!(matches!(
            read_at_most_blocking(MultiGzDecoder::new(&gz[..]), 5),
            Err(CappedReadError::TooLarge { cap: 5 })
        ));
        assert!(matches!(
            read_at_most_blocking(std::io::repeat(b'x'), 1000),
            Err(CappedReadError::TooLarge { cap: 1000 })
        ));
    }

    #[tokio::test]
    async fn an_object_read_at_its_announced_size_keeps_no_spare_room() {
        let body = vec![b'x'; 3 * 1024 * 1024 + 17];
        for expected in [Some(body.len() as u64), None] {
            let read = read_at_most(&body[..], 1 << 30, expected).await.unwrap();
            assert_eq!(read, body);
            // Grown by doubling, 3 MiB would sit in a 4 MiB buffer (or 6 MiB while growing).
            assert!(
                read.capacity() <= body.len() + body.len() / 8,
                "capacity {} for {} bytes ({expected:?} expected)",
                read.capacity(),
                body.len()
            );
        }
        // A wrong announcement only sizes the buffer: the bytes are what was read.
        let read = read_at_most(&body[..], 1 << 30, Some(10)).await.unwrap();
        assert_eq!(read.len(), body.len());
    }

    #[test]
    fn a_corrupt_gzip_object_is_an_object_error() {
        let mut body = gzip(b"{\"a\":1}\n");
        body.truncate(12);
        let err = read_object(&ObjectKind::Raw, Bytes::from(body)).unwrap_err();
        assert!(matches!(err, ReadError::Gzip(_)), "{err}");
    }

    #[test]
    fn objects_replay_cannot_decompress_are_object_errors_not_finished() {
        for (body, what) in [
            (b"PK\x03\x04\x14\x00rest".to_vec(), "ZIP"),
            (b"\x82SNAPPY\x00\x00\x00\x00\x01".to_vec(), "Snappy"),
            (b"\xff\x06\x00\x00sNaPpY\x01".to_vec(), "Snappy"),
        ] {
            let err = read_object(&ObjectKind::ProcessingFailed, Bytes::from(body)).unwrap_err();
            assert!(
                matches!(err, ReadError::Unsupported(w) if w == what),
                "{err}"
            );
        }
        // No magic bytes (Hadoop-compatible Snappy): binary, and not one line reads.
        let binary = Bytes::from_static(b"\x00\x00\x01\x2c\x93\xfe\n\xc3\x28\xa0\x01");
        let err = read_object(&ObjectKind::ProcessingFailed, binary).unwrap_err();
        assert!(matches!(err, ReadError::NotText), "{err}");
        // Text of which no line reads is not finished either (helper-56, M1): most likely not
        // the kind of object its key says, and checked off it would never be read again.
        for kind in [ObjectKind::ProcessingFailed, ObjectKind::Raw] {
            let text = Bytes::from_static(b"not json\nnor this\n");
            let err = read_object(&kind, text).unwrap_err();
            assert!(
                matches!(err, ReadError::NothingReadable { line: 1, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("stays unfinished"), "{err}");
        }
        // One good line is enough to read the object (the bad one is reported).
        let text = Bytes::from_static(b"not json\n{\"a\":1}\n");
        let read = read_object(&ObjectKind::Raw, text).unwrap();
        assert_eq!((read.records.len(), read.unreadable.len()), (1, 1));
    }

    /// Binary data with newlines: now and then a chunk between two is a lone digit, which is
    /// valid JSON. A raw object that is not text and reads mostly as junk is refused whole.
    #[test]
    fn binary_raw_objects_with_a_stray_json_line_are_refused() {
        let binary = Bytes::from_static(b"\x93\xfe\x01\n7\n\xc3\x28\xa0\n\x00\xff\n");
        let err = read_object(&ObjectKind::Raw, binary).unwrap_err();
        assert!(matches!(err, ReadError::NotText), "{err}");
        // Mostly events with one line that is not UTF-8: the events are read, the line skipped.
        let mixed = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n\xc3\x28\n");
        let read = read_object(&ObjectKind::Raw, mixed).unwrap();
        assert_eq!((read.records.len(), read.unreadable.len()), (2, 1));
    }

    /// Error output copied without its `http-endpoint-failed/` folder reads as raw: its lines
    /// would be sent whole, wrapper and all. Refused instead.
    #[test]
    fn error_records_in_a_raw_object_are_refused() {
        let line = br#"{"attemptsMade":3,"arrivalTimestamp":1,"errorCode":"HttpEndpoint.DestinationException","errorMessage":"x","attemptEndingTimestamp":2,"rawData":"eyJhIjoxfQo="}"#;
        let mut body = line.to_vec();
        body.push(b'\n');
        let err = read_object(&ObjectKind::Raw, Bytes::from(body.clone())).unwrap_err();
        assert!(
            matches!(err, ReadError::ErrorOutputWithoutType(ref m) if m.contains("line 1")),
            "{err}"
        );
        assert!(err.to_string().contains("http-endpoint-failed/"), "{err}");
        // The same object under its folder reads as error output.
        let read = read_object(&ObjectKind::HttpEndpointFailed, Bytes::from(body)).unwrap();
        assert_eq!(read.records[0].data, Bytes::from_static(b"{\"a\":1}\n"));
        // An event that merely has one of the names is an event.
        let event = Bytes::from_static(b"{\"rawData\":\"x\",\"user\":1}\n");
        assert_eq!(
            read_object(&ObjectKind::Raw, event).unwrap().records.len(),
            1
        );
    }

    #[test]
    fn raw_lines_keep_their_newline_and_bytes() {
        let body = Bytes::from_static(b"{\"a\":1}\n{\"b\": 2}\r\nnope\n{\"c\":3}");
        let read = read_object(&ObjectKind::Raw, body).unwrap();
        let data: Vec<&[u8]> = read.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(
            data,
            vec![&b"{\"a\":1}\n"[..], b"{\"b\": 2}\r\n", b"{\"c\":3}\n"]
        );
        assert_eq!(read.unreadable.len(), 1);
        assert_eq!(read.unreadable[0].line, 3);
    }

    /// An event written over several lines (pretty-printed by its client, stored so by a front
    /// door older than c741245, or by another producer) is one record, sent as one line; the
    /// fragments of one that does not parse are never sent (helper-56, H1).
    #[test]
    fn events_over_several_lines_are_one_record_and_fragments_are_never_sent() {
        let body = Bytes::from_static(
            b"{\"a\":1}\n{\n  \"b\": [\n    1,\n    2\n  ],\r\n  \"s\": \"x\\ny\"\n}\n{\"c\":3}{\"d\":4}\n",
        );
        let read = read_object(&ObjectKind::Raw, body).unwrap();
        let data: Vec<&[u8]> = read.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(
            data,
            vec![
                &b"{\"a\":1}\n"[..],
                b"{   \"b\": [     1,     2   ],    \"s\": \"x\\ny\" }\n",
                b"{\"c\":3}\n",
                b"{\"d\":4}\n",
            ]
        );
        let lines: Vec<usize> = read.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 2, 9, 9]);
        assert_eq!(read.unreadable, vec![]);

        // Cut off after its second element: the first line does not parse, and of what follows
        // nothing is sent, not even `2` or `{"x": 1}`, which are JSON on their own.
        let broken = Bytes::from_static(
            b"{\n  \"b\": [\n    1,\n    2\n  ],\n  \"o\": {\"x\": 1},\n  \"n\": [\n    {\"x\": 1}\n  ]\n{\"after\":1}\n",
        );
        let read = read_object(&ObjectKind::Raw, broken).unwrap();
        let data: Vec<&[u8]> = read.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(data, vec![&b"{\"after\":1}\n"[..]]);
        assert_eq!(read.records[0].line, 10);
        let bad: Vec<usize> = read.unreadable.iter().map(|u| u.line).collect();
        assert_eq!(bad, (1..=9).collect::<Vec<_>>());
        assert!(
            read.unreadable[1]
                .reason
                .contains("does not start its line"),
            "{:?}",
            read.unreadable
        );

        // A JSON value that is not an object is no event; nor is an object with more after it.
        let odd = Bytes::from_static(b"42\n\"s\"\n[1]\n{\"a\":1},\n{\"ok\":1}\n");
        let read = read_object(&ObjectKind::Raw, odd).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].data, Bytes::from_static(b"{\"ok\":1}\n"));
        let reasons: Vec<&str> = read.unreadable.iter().map(|u| u.reason.as_str()).collect();
        assert!(
            reasons[..3].iter().all(|r| r.contains("not a JSON object")),
            "{reasons:?}"
        );
        assert!(reasons[3].contains("after the object"), "{reasons:?}");

        // A long blank line is passed over once, not once per byte (helper-57, L6: 1 MB of
        // spaces took ~10^11 steps).
        let mut blank = b"{\"a\":1}\n".to_vec();
        blank.extend(std::iter::repeat_n(b' ', 4 << 20));
        blank.extend_from_slice(b"\n{\"b\":2}\n");
        let read = read_object(&ObjectKind::Raw, Bytes::from(blank)).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[1].line, 3);
    }
}
