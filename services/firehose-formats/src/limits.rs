//! Documented service limits of Amazon Data Firehose and AWS Lambda.
//!
//! Every constant names the page that states it. Where AWS is vague about exact byte accounting,
//! the constant says which reading we chose and why (always the safe one).

/// Maximum records in one `PutRecordBatch` call.
///
/// <https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html>
pub const MAX_BATCH_RECORDS: usize = 500;

/// Maximum size of one `PutRecordBatch` call: "4 MiB per call, whichever limit is hit first".
///
/// AWS does not document whether the 4 MiB counts raw bytes or the base64-encoded request; users
/// have hit "Records size exceeds 4 MB limit" while counting 4 × 1024 × 1024 raw bytes. Producers
/// should budget with [`SAFE_BATCH_BYTES`].
///
/// <https://docs.aws.amazon.com/firehose/latest/dev/limits.html>
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The raw-byte budget a producer fills a batch to, at most: 4,000,000 record bytes, within
/// "4 MB" whether AWS means 4,000,000 or 4 × 1024 × 1024 raw bytes (the error users hit at
/// 4 × 1024 × 1024 suggests the decimal reading; one public client fills 4,194,000 raw
/// bytes). Base64 is not counted (`shared/docs/firehose-facts.md`, "Batch limits").
///
/// <https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html>
pub const SAFE_BATCH_BYTES: usize = 4_000_000;

/// Maximum size of one record's data before base64: 1,000 KiB (1,024,000 bytes).
///
/// <https://docs.aws.amazon.com/firehose/latest/APIReference/API_Record.html>
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// Lambda's synchronous invocation payload limit, for the request and for the response alike:
/// 6 MB. AWS states it as 6 MB; we read it as 6,291,456 bytes (6 MiB) for requests we accept
/// and as the most a response may take with every record returned unchanged, and keep the
/// enrichment of a response within the smaller 6,000,000 ([`LAMBDA_RESPONSE_BUDGET`]).
///
/// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
/// <https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html>
pub const LAMBDA_MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// The byte budget a transform's enrichment keeps its response under: 6,000,000 bytes, the
/// decimal reading of "6 MB", so an enriched response fits whichever reading Lambda applies.
/// Records returned as they came may take the response up to [`LAMBDA_MAX_PAYLOAD_BYTES`]:
/// Lambda's Runtime API refuses a response only above 6,291,556 bytes ("Exceeded maximum
/// allowed payload size (6291556 bytes)").
///
/// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
pub const LAMBDA_RESPONSE_BUDGET: usize = 6_000_000;

/// Delivery-stream name rules: 1–64 characters of `[a-zA-Z0-9_.-]`.
///
/// <https://docs.aws.amazon.com/firehose/latest/APIReference/API_CreateDeliveryStream.html>
pub const MAX_STREAM_NAME_LEN: usize = 64;

/// Whether `name` is a valid delivery-stream name (1–64 of `[a-zA-Z0-9_.-]`).
#[must_use]
pub fn is_valid_stream_name(name: &str) -> bool {
    (1..=MAX_STREAM_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_budget_is_below_every_reading_of_four_megabytes() {
        const {
            assert!(SAFE_BATCH_BYTES < 4_000_001);
            assert!(SAFE_BATCH_BYTES < MAX_BATCH_BYTES);
            assert!(MAX_RECORD_BYTES < SAFE_BATCH_BYTES);
            assert!(LAMBDA_RESPONSE_BUDGET < LAMBDA_MAX_PAYLOAD_BYTES);
        }
    }

    #[test]
    fn stream_names_follow_the_api_pattern() {
        assert!(is_valid_stream_name("events"));
        assert!(is_valid_stream_name("my_stream.v2-prod"));
        assert!(is_valid_stream_name(&"a".repeat(64)));
        assert!(!is_valid_stream_name(""));
        assert!(!is_valid_stream_name(&"a".repeat(65)));
        assert!(!is_valid_stream_name("has space"));
        assert!(!is_valid_stream_name("slash/name"));
    }
}
