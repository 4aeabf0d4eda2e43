//! The Firehose data-transformation Lambda that prepares JSON events for New Relic.
//!
//! Amazon Data Firehose hands a Lambda a batch of base64 records and expects, for every record,
//! the same `recordId` back with a `result` of `Ok`, `Dropped` or `ProcessingFailed` and base64
//! `data`. This crate is that contract, kept pure so that the Lambda binary, the local Firehose
//! (`firehose-local`) and the tests all run the same code:
//!
//! - [`transform_record`]: one record in, one [`RecordOutput`] out (the per-record rules below).
//! - [`process_event`]: the raw Firehose event JSON in, the raw response JSON out, with the 6 MB
//!   response budget enforced; [`InvocationError`] only when the event is not a Firehose event.
//! - `lambda` (cargo feature, on by default): the `lambda_runtime` handler behind the `transform`
//!   binary, which is the custom-runtime `bootstrap`.
//!
//! # Per-record rules
//!
//! 1. `data` is base64-decoded, then checked as UTF-8. Either failing gives `ProcessingFailed`
//!    with the data unchanged, so Firehose writes the record to `processing-failed/` in S3.
//! 2. Empty or whitespace-only data gives `Dropped`.
//! 3. A JSON object comes back as the same object, member for member and byte for byte, plus
//!    `"transformed":true`, `"_transformed_ts":<epoch ms>` and `"_record_id":"<recordId>"`.
//!    Members with one of those three names are removed first, so the output has them once.
//! 4. Several objects in one record (one per line, or a JSON array of objects) come back one
//!    per line, each enriched. Any other JSON value, or text that is not JSON, becomes
//!    `{"message":<value or text>}` plus the same three members. One trailing line ending is
//!    not part of the text.
//! 5. A record that does not fit enriched (in Lambda's 6 MB response, or in Firehose's record
//!    limit) comes back `Ok` as it came, without the three members ([`UnenrichedReason`]):
//!    delivered rather than backed up.
//!
//! # Layout
//!
//! - [`record`]: the per-record rules and their outcomes.
//! - `enrich` (private): the byte-splicing of a decoded payload into the enriched object.
//! - `scan` (private): the validating object scanner that tells `enrich` where members end.
//! - [`event`]: the invocation (event parsing, response writing, the response budget).
//! - [`json`]: JSON string escaping, as serde_json does it, for text that was not a literal.
//! - [`telemetry`]: the per-invocation log line and the rate-limited failure reasons.
//! - `lambda` (feature): the `lambda_runtime` glue.

mod enrich;
pub mod event;
pub mod json;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod record;
mod scan;
pub mod telemetry;

pub use event::{InvocationError, InvocationStats, process_event, process_event_with_stats};
pub use record::{FailureReason, RecordOutput, RecordResult, UnenrichedReason, transform_record};
pub use telemetry::{EventSource, FailureSamples};

/// The member names the transform adds to every enriched object, in output order.
pub const ADDED_KEYS: [&str; 3] = ["transformed", "_transformed_ts", "_record_id"];
