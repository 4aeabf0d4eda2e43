//! The S3 backup layout: object keys, prefix expressions and the error-output records.
//!
//! Firehose writes backups and error output under keys built from a prefix and a generated object
//! name, and writes failed records as NDJSON lines with a fixed set of fields. The local Firehose
//! writes them and the replay tool reads them, so both sides share this one definition. Readers
//! are tolerant (real objects differ from the documented template in key case and order); writers
//! emit the documented shape exactly.
//!
//! Sources: <https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html> (HTTP-endpoint error record).

use serde::Serialize;
use time::OffsetDateTime;

/// Longest evaluated prefix, in characters.
pub const MAX_EVALUATED_PREFIX_CHARS: usize = 512;
/// Length of one `!{firehose:random-string}` value.
pub const RANDOM_STRING_LEN: usize = 11;
/// The default time part of a key: `YYYY/MM/dd/HH/` in UTC.
pub const DEFAULT_TIME_PREFIX: &str = "!{timestamp:yyyy/MM/dd/HH/}";
/// Extension Firehose gives GZIP objects.
pub const GZIP_EXTENSION: &str = ".gz";

/// The `!{firehose:error-output-type}` values this project produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorOutputType {
    /// The Lambda processor failed or returned `ProcessingFailed`.
    ProcessingFailed,
    /// The HTTP endpoint did not accept the batch within the retry duration.
    HttpEndpointFailed,
}

impl ErrorOutputType {
    /// The folder name Firehose uses.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProcessingFailed => "processing-failed",
            Self::HttpEndpointFailed => "http-endpoint-failed",
        }
    }
}

/// Why a prefix cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// `!{` without a closing `}`.
    #[error("unterminated expression in prefix {0:?}")]
    Unterminated(String),
    /// A namespace or name Firehose does not define (or this crate does not implement).
    #[error("unsupported expression !{{{0}}} in prefix")]
    UnsupportedExpression(String),
    /// `!{firehose:error-output-type}` used outside an error-output prefix.
    #[error("!{{firehose:error-output-type}} is only allowed in an error-output prefix")]
    ErrorTypeNotAllowed,
    /// An error-output prefix without `!{firehose:error-output-type}`.
    #[error("an error-output prefix must contain !{{firehose:error-output-type}}")]
    ErrorTypeMissing,
    /// A timestamp pattern letter outside `yyyy yy MM dd HH mm ss` (unquoted), an unclosed
    /// `'`, or a character Java reserves (`[ ] # { }`).
    #[error(
        "unsupported timestamp pattern {0:?} (supported: yyyy, yy, MM, dd, HH, mm, ss, text in single quotes, and characters other than letters and [ ] # {{ }})"
    )]
    BadTimestampPattern(String),
    /// The evaluated prefix is longer than 512 characters.
    #[error("evaluated prefix is {0} characters, more than 512")]
    TooLong(usize),
}

/// Formats `at` with a Java `DateTimeFormatter` pattern, the subset Firehose users write:
/// `yyyy yy MM dd HH mm ss`, text in single quotes copied without them (`'year='yyyy`,
/// `yyyy'-'MM`), `''` for a quote, and any other character that is not a letter copied as it is.
///
/// Other pattern letters (`H`, `YYYY`, `MMM`, …), which Java and so AWS may accept, are refused
/// rather than formatted differently from AWS; so are Java's optional-section and reserved
/// characters `[ ] # { }`, and an unclosed quote (Java refuses both).
///
/// # Errors
/// [`PrefixError::BadTimestampPattern`] for anything outside that subset.
pub fn format_timestamp(pattern: &str, at: OffsetDateTime) -> Result<String, PrefixError> {
    let bad = || PrefixError::BadTimestampPattern(pattern.to_owned());
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Java's rule (`DateTimeFormatterBuilder.parsePattern`): the literal runs to the
            // first quote not followed by another; `''` inside it is a quote, and an empty
            // literal (`''`) is a quote too. So `''''` is one quote, as in Java.
            let start = i + 1;
            i = start;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(bad());
            }
            let text: String = chars[start..i].iter().collect();
            if text.is_empty() {
                out.push('\'');
            } else {
                out.push_str(&text.replace("''", "'"));
            }
            i += 1;
            continue;
        }
        if matches!(c, '[' | ']' | '#' | '{' | '}') {
            return Err(bad());
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let piece = match (c, run) {
            ('y', 4) => format!("{:04}", at.year()),
            ('y', 2) => format!("{:02}", at.year().rem_euclid(100)),
            ('M', 2) => format!("{:02}", u8::from(at.month())),
            ('d', 2) => format!("{:02}", at.day()),
            ('H', 2) => format!("{:02}", at.hour()),
            ('m', 2) => format!("{:02}", at.minute()),
            ('s', 2) => format!("{:02}", at.second()),
            _ => return Err(bad()),
        };
        out.push_str(&piece);
        i += run;
    }
    Ok(out)
}

/// Evaluates a configured prefix.
///
/// `at` is the approximate arrival time of the oldest record in the object (every `!{timestamp}`
/// in one prefix uses it); `error_type` is `Some` for error output; `random` yields a fresh
/// [`RANDOM_STRING_LEN`]-character string for each `!{firehose:random-string}`. A prefix without
/// expressions gets [`DEFAULT_TIME_PREFIX`] appended, and a missing error-output prefix becomes
/// `<prefix><error-output-type>/YYYY/MM/dd/HH/` (the layout seen on real buckets).
///
/// # Errors
/// See [`PrefixError`].
pub fn evaluate_prefix(
    prefix: &str,
    error_type: Option<ErrorOutputType>,
    at: OffsetDateTime,
    random: &mut dyn FnMut() -> String,
) -> Result<String, PrefixError> {
    let mut template = prefix.to_owned();
    if !template.contains("!{") {
        if let Some(kind) = error_type {
            template = format!("{template}{}/{DEFAULT_TIME_PREFIX}", kind.as_str());
        } else {
            template.push_str(DEFAULT_TIME_PREFIX);
        }
    } else if error_type.is_some() && !template.contains("!{firehose:error-output-type}") {
        return Err(PrefixError::ErrorTypeMissing);
    }
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| PrefixError::Unterminated(prefix.to_owned()))?;
        let expr = &after[..end];
        match expr.split_once(':') {
            Some(("timestamp", pattern)) => out.push_str(&format_timestamp(pattern, at)?),
            Some(("firehose", "error-output-type")) => match error_type {
                Some(kind) => out.push_str(kind.as_str()),
                None => return Err(PrefixError::ErrorTypeNotAllowed),
            },
            Some(("firehose", "random-string")) => out.push_str(&random()),
            _ => return Err(PrefixError::UnsupportedExpression(expr.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let len = out.chars().count();
    if len > MAX_EVALUATED_PREFIX_CHARS {
        return Err(PrefixError::TooLong(len));
    }
    Ok(out)
}

/// The object name after the prefix: `<stream>-<version>-YYYY-MM-dd-HH-mm-ss-<uuid><extension>`.
///
/// `at` is the approximate arrival time of the oldest record in the object, in UTC, as for the
/// prefix: the one real sample at hand (facts §2.2, a `processing-failed` object) names its
/// record's arrival second, not the later write time. `extension` is `""` or e.g.
/// [`GZIP_EXTENSION`].
#[must_use]
pub fn object_name(
    stream: &str,
    version: u64,
    at: OffsetDateTime,
    uuid: &str,
    extension: &str,
) -> String {
    format!(
        "{stream}-{version}-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}-{uuid}{extension}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// One line of an error-output object, for either error type.
///
/// Writers emit the documented fields in the documented order (the ARN's key as real records
/// spell it now, see `lambda_arn`); `lambda_arn` is written for
/// `processing-failed`, `subsequence_number`/`data_id` for `http-endpoint-failed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    /// Delivery or invocation attempts made.
    pub attempts_made: u32,
    /// When Firehose received the record (epoch ms).
    pub arrival_timestamp: i64,
    /// E.g. `Lambda.FunctionError`, `HttpEndpoint.DestinationException`.
    pub error_code: String,
    /// Human-readable reason.
    pub error_message: String,
    /// When Firehose stopped trying (epoch ms).
    pub attempt_ending_timestamp: i64,
    /// Base64 of the record: the untransformed input for `processing-failed`, the data as sent for
    /// `http-endpoint-failed`.
    pub raw_data: String,
    /// The function ARN (`processing-failed` only). Written `lambdaARN`, as real records have it
    /// since 2025; AWS's template and older records say `lambdaArn` (firehose-facts §2.3), so a
    /// reader must match keys case-insensitively, as [`ErrorRecord::parse_tolerant`] does.
    #[serde(rename = "lambdaARN", skip_serializing_if = "Option::is_none")]
    pub lambda_arn: Option<String>,
    /// Sub-sequence number (`http-endpoint-failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsequence_number: Option<u64>,
    /// The record's id in the stream (`http-endpoint-failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_id: Option<String>,
}

/// Why a line is not an error record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorRecordParseError {
    /// Not a JSON object.
    #[error("error record is not a JSON object: {0}")]
    NotJson(String),
    /// A required field is missing or has the wrong type.
    #[error("error record field {0:?} is missing or has the wrong type")]
    Field(&'static str),
}

impl ErrorRecord {
    /// The record as one NDJSON line, with the trailing `\n`.
    #[must_use]
    pub fn to_ndjson_line(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Reads one line tolerantly: keys in any case and order (`lambdaArn` or `lambdaARN`), unknown
    /// keys ignored, numbers accepted as JSON numbers or numeric strings. Only `rawData` is
    /// needed to send the record again, so only `rawData` can make a line unreadable: any other
    /// field with an unexpected type or value (a timestamp written `1.741088912364E12`, an
    /// `errorMessage` that is an object, a negative `attemptsMade`) reads as absent (0 or empty
    /// for the non-optional ones), since dropping a record whose data is intact over a field
    /// nobody sends would be a loss. Of several spellings of a key, the first with a usable
    /// value counts.
    ///
    /// # Errors
    /// [`ErrorRecordParseError`] when the line is not an object or lacks a string `rawData`.
    pub fn parse_tolerant(line: &[u8]) -> Result<Self, ErrorRecordParseError> {
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| ErrorRecordParseError::NotJson(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(ErrorRecordParseError::NotJson(
                "top level is not an object".into(),
            ));
        };
        // The values under any spelling of `name`.
        let values = |name: &'static str| {
            map.iter()
                .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let int = |name| {
            values(name).find_map(|v| match v {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
        };
        let text = |name| values(name).find_map(|v| v.as_str().map(str::to_owned));
        let raw_data = text("rawData").ok_or(ErrorRecordParseError::Field("rawData"))?;
        Ok(Self {
            attempts_made: int("attemptsMade")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            arrival_timestamp: int("arrivalTimestamp").unwrap_or(0),
            error_code: text("errorCode").unwrap_or_default(),
            error_message: text("errorMessage").unwrap_or_default(),
            attempt_ending_timestamp: int("attemptEndingTimestamp").unwrap_or(0),
            raw_data,
            lambda_arn: text("lambdaArn"),
            subsequence_number: int("subsequenceNumber").and_then(|n| u64::try_from(n).ok()),
            data_id: text("dataId"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn no_random() -> String {
        "RANDOMSTR11".to_owned()
    }

    #[test]
    fn default_prefix_is_year_month_day_hour() {
        let at = datetime!(2026-03-04 11:48:32 UTC);
        assert_eq!(
            evaluate_prefix("", None, at, &mut no_random),
            Ok("2026/03/04/11/".into())
        );
        assert_eq!(
            evaluate_prefix("backup/", None, at, &mut no_random),
            Ok("backup/2026/03/04/11/".into())
        );
    }

    #[test]
    fn error_prefixes_carry_the_error_output_type() {
        let at = datetime!(2026-03-04 11:48:32 UTC);
        let kind = Some(ErrorOutputType::ProcessingFailed);
        assert_eq!(
            evaluate_prefix("", kind, at, &mut no_random),
            Ok("processing-failed/2026/03/04/11/".into())
        );
        assert_eq!(
            evaluate_prefix(
                "retries/",
                Some(ErrorOutputType::HttpEndpointFailed),
                at,
                &mut no_random
            ),
            Ok("retries/http-endpoint-failed/2026/03/04/11/".into())
        );
        assert_eq!(
            evaluate_prefix(
                "fh/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/!{firehose:random-string}/",
                kind,
                at,
                &mut no_random
            ),
            Ok("fh/processing-failed/2026/03/04/RANDOMSTR11/".into())
        );
        assert_eq!(
            evaluate_prefix("!{timestamp:yyyy}/", kind, at, &mut no_random),
            Err(PrefixError::ErrorTypeMissing)
        );
        assert_eq!(
            evaluate_prefix("!{firehose:error-output-type}/", None, at, &mut no_random),
            Err(PrefixError::ErrorTypeNotAllowed)
        );
        assert!(matches!(
            evaluate_prefix("!{nope:x}", None, at, &mut no_random),
            Err(PrefixError::UnsupportedExpression(_))
        ));
        assert!(matches!(
            evaluate_prefix("!{timestamp:yyyy", None, at, &mut no_random),
            Err(PrefixError::Unterminated(_))
        ));
        assert!(matches!(
            evaluate_prefix("!{timestamp:QQ}", None, at, &mut no_random),
            Err(PrefixError::BadTimestampPattern(_))
        ));
        // At the limit exactly: the default time part is added to a prefix without `!{`.
        let added = evaluate_prefix("", None, at, &mut no_random)
            .expect("empty prefix")
            .len();
        let fits = evaluate_prefix(&"a".repeat(512 - added), None, at, &mut no_random)
            .expect("512 characters fit");
        assert_eq!(fits.len(), 512);
        assert!(matches!(
            evaluate_prefix(&"a".repeat(513 - added), None, at, &mut no_random),
            Err(PrefixError::TooLong(513))
        ));
    }

    #[test]
    fn quoted_text_in_timestamp_patterns_is_copied_without_its_quotes() {
        let at = datetime!(2026-03-04 11:48:32 UTC);
        let cases = [
            ("yyyy'-'MM'-'dd", "2026-03-04"),
            ("'year='yyyy/'month='MM", "year=2026/month=03"),
            ("yyyy/MM/dd/HH/", "2026/03/04/11/"),
            ("''yy''", "'26'"),
            ("'it''s' HH", "it's 11"),
            // As java.time prints them: a literal of one escaped quote, then a year.
            ("''''", "'"),
            ("''''yy", "'26"),
            ("'''x'", "'x"),
            ("'dt='yyyy-MM-dd' 'HH:mm:ss", "dt=2026-03-04 11:48:32"),
        ];
        for (pattern, want) in cases {
            assert_eq!(
                format_timestamp(pattern, at).as_deref(),
                Ok(want),
                "{pattern}"
            );
        }
        for pattern in [
            "yyyy'", "'open", "yyyy[MM]", "yyyy#", "H", "YYYY", "MMM", "year",
        ] {
            assert!(
                matches!(
                    format_timestamp(pattern, at),
                    Err(PrefixError::BadTimestampPattern(_))
                ),
                "{pattern}"
            );
        }
        assert_eq!(
            evaluate_prefix("!{timestamp:'dt='yyyy'-'MM}/", None, at, &mut no_random),
            Ok("dt=2026-03/".into())
        );
    }

    #[test]
    fn object_names_follow_the_documented_layout() {
        let at = datetime!(2025-03-04 11:48:32 UTC);
        assert_eq!(
            object_name("fh-cw2splunk", 9, at, "c7cc019b-aaaa", ""),
            "fh-cw2splunk-9-2025-03-04-11-48-32-c7cc019b-aaaa"
        );
        assert_eq!(
            object_name("s", 1, at, "u", GZIP_EXTENSION),
            "s-1-2025-03-04-11-48-32-u.gz"
        );
    }

    #[test]
    fn writer_emits_documented_fields_in_order_and_the_current_arn_key() {
        let rec = ErrorRecord {
            attempts_made: 4,
            arrival_timestamp: 1,
            error_code: "Lambda.FunctionError".into(),
            error_message: "m".into(),
            attempt_ending_timestamp: 2,
            raw_data: "cg==".into(),
            lambda_arn: Some("arn:x".into()),
            ..ErrorRecord::default()
        };
        assert_eq!(
            rec.to_ndjson_line(),
            "{\"attemptsMade\":4,\"arrivalTimestamp\":1,\"errorCode\":\"Lambda.FunctionError\",\"errorMessage\":\"m\",\"attemptEndingTimestamp\":2,\"rawData\":\"cg==\",\"lambdaARN\":\"arn:x\"}\n"
        );
        // And what is written reads back.
        let line = rec.to_ndjson_line();
        assert_eq!(
            ErrorRecord::parse_tolerant(line.trim_end().as_bytes()).expect("parses"),
            rec
        );
    }

    #[test]
    fn reader_tolerates_real_world_variants() {
        let real = br#"{"rawData":"H4sI","errorCode":"Lambda.FunctionError","errorMessage":"e","attemptsMade":4,"arrivalTimestamp":1741088912364,"attemptEndingTimestamp":1741089007666,"lambdaARN":"arn:aws:lambda:x:$LATEST","future":true}"#;
        let rec = ErrorRecord::parse_tolerant(real).expect("parses");
        assert_eq!(rec.attempts_made, 4);
        assert_eq!(rec.lambda_arn.as_deref(), Some("arn:aws:lambda:x:$LATEST"));
        assert_eq!(rec.arrival_timestamp, 1_741_088_912_364);
        let http = br#"{"attemptsMade":"5","arrivalTimestamp":1594265943615,"errorCode":"HttpEndpoint.DestinationException","errorMessage":"x","attemptEndingTimestamp":1594266081318,"rawData":"c2Ft","subsequenceNumber":0,"dataId":"4960.0"}"#;
        let rec = ErrorRecord::parse_tolerant(http).expect("parses");
        assert_eq!(rec.attempts_made, 5);
        assert_eq!(rec.data_id.as_deref(), Some("4960.0"));
        assert_eq!(rec.subsequence_number, Some(0));
        assert_eq!(
            ErrorRecord::parse_tolerant(b"{}"),
            Err(ErrorRecordParseError::Field("rawData"))
        );
        assert!(ErrorRecord::parse_tolerant(b"[1]").is_err());
        let round =
            ErrorRecord::parse_tolerant(rec.to_ndjson_line().as_bytes()).expect("round trip");
        assert_eq!(round, rec);
    }

    #[test]
    fn only_raw_data_can_make_a_line_unreadable() {
        let rec = ErrorRecord::parse_tolerant(
            br#"{"rawData":"e30=","arrivalTimestamp":1.741088912364E12,"attemptsMade":-1,
                 "errorMessage":{"nested":1},"lambdaARN":["a"],"lambdaArn":"arn:x","errorCode":7}"#,
        )
        .expect("rawData is intact");
        assert_eq!(rec.raw_data, "e30=");
        assert_eq!((rec.arrival_timestamp, rec.attempts_made), (0, 0));
        assert_eq!(
            (rec.error_code.as_str(), rec.error_message.as_str()),
            ("", "")
        );
        assert_eq!(
            rec.lambda_arn.as_deref(),
            Some("arn:x"),
            "the usable spelling counts"
        );
        assert_eq!(
            ErrorRecord::parse_tolerant(br#"{"rawData":5}"#),
            Err(ErrorRecordParseError::Field("rawData"))
        );
    }
}
