//! What the transform tells operators: one line per invocation, and a few failure reasons.
//!
//! Everything goes through `tracing`; the Lambda binary renders it as one JSON object per line
//! (CloudWatch Logs Insights can query the fields directly). Record payloads are never logged:
//! a failure names the request id, the record id and the reason only, and at most
//! [`MAX_FAILURE_LINES_PER_INVOCATION`] such lines are written per invocation, so a batch of
//! 10,000 bad records costs a handful of lines, not 10,000. The invocation line carries the
//! full counts by reason, and the event's invocation id and delivery stream. The processing
//! collects what to say ([`FailureSamples`], [`EventSource`]); only [`log_invocation`], at the
//! handler, writes it.

use std::time::Duration;

use crate::event::InvocationStats;
use crate::record::FailureReason;

/// Per-record failure lines written per invocation before the rest are only counted.
pub const MAX_FAILURE_LINES_PER_INVOCATION: usize = 5;

/// The first [`MAX_FAILURE_LINES_PER_INVOCATION`] records of an invocation that returned
/// `ProcessingFailed`, by id and reason, and how many more there were: what
/// [`log_invocation`] writes a line for. Kept with the counts, so the processing itself logs
/// nothing and the lines carry the invocation's request id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FailureSamples {
    /// Record id and reason, in record order.
    pub listed: Vec<(String, FailureReason)>,
    /// Failed records past the listed ones.
    pub unlisted: usize,
}

impl FailureSamples {
    pub(crate) fn record(&mut self, record_id: impl FnOnce() -> String, reason: FailureReason) {
        if self.listed.len() < MAX_FAILURE_LINES_PER_INVOCATION {
            self.listed.push((record_id(), reason));
        } else {
            self.unlisted += 1;
        }
    }
}

/// Where an invocation came from, as the event names it (absent members are `None`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// The event's `invocationId`.
    pub invocation_id: Option<String>,
    /// The event's `deliveryStreamArn`: which stream, when one function serves several.
    pub delivery_stream_arn: Option<String>,
}

/// Emits the invocation's failure lines (at most [`MAX_FAILURE_LINES_PER_INVOCATION`], then
/// one with the number left out), each with the request id, then the one structured line that
/// summarises it.
pub fn log_invocation(request_id: &str, stats: &InvocationStats, duration: Duration) {
    for (record_id, reason) in &stats.failures.listed {
        tracing::warn!(
            request_id,
            record_id,
            reason = reason.code(),
            "record returned ProcessingFailed: {reason}"
        );
    }
    if stats.failures.unlisted > 0 {
        tracing::warn!(
            request_id,
            suppressed = stats.failures.unlisted,
            "more records returned ProcessingFailed; counts by reason are in the invocation line"
        );
    }
    tracing::info!(
        request_id,
        invocation_id = stats.source.invocation_id.as_deref(),
        delivery_stream_arn = stats.source.delivery_stream_arn.as_deref(),
        records = stats.records,
        ok = stats.ok,
        ok_lines = stats.ok_lines,
        ok_broken_object = stats.ok_broken_object,
        dropped = stats.dropped,
        failed = stats.failed,
        failed_invalid_base64 = stats.failed_invalid_base64,
        failed_invalid_utf8 = stats.failed_invalid_utf8,
        failed_gzip_compressed = stats.failed_gzip_compressed,
        failed_over_budget = stats.failed_over_budget,
        failed_over_record_limit = stats.failed_over_record_limit,
        event_bytes = stats.event_bytes,
        decoded_bytes = stats.decoded_bytes,
        response_bytes = stats.response_bytes,
        duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        "invocation done"
    );
}
