//! What the transform tells operators: one line per invocation, and a few failure reasons.
//!
//! Everything goes through `tracing`; the Lambda binary renders it as one JSON object per line
//! (CloudWatch Logs Insights can query the fields directly). Record payloads are never logged:
//! a failure names the record id and the reason only, and at most
//! [`MAX_FAILURE_LINES_PER_INVOCATION`] such lines are written per invocation, so a batch of
//! 10,000 bad records costs a handful of lines, not 10,000. The invocation line carries the
//! full counts by reason.

use std::time::Duration;

use crate::event::InvocationStats;
use crate::record::FailureReason;

/// Per-record failure lines written per invocation before the rest are only counted.
pub const MAX_FAILURE_LINES_PER_INVOCATION: usize = 5;

/// Rate limiter for per-record failure lines within one invocation.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    written: usize,
    suppressed: usize,
}

impl FailureLog {
    pub(crate) fn record(&mut self, record_id: &str, reason: FailureReason) {
        if self.written < MAX_FAILURE_LINES_PER_INVOCATION {
            self.written += 1;
            tracing::warn!(
                record_id,
                reason = reason.code(),
                "record returned ProcessingFailed: {reason}"
            );
        } else {
            self.suppressed += 1;
        }
    }

    pub(crate) fn finish(self) {
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "more records returned ProcessingFailed; counts by reason are in the invocation line"
            );
        }
    }
}

/// Emits the one structured line that summarises an invocation.
pub fn log_invocation(request_id: &str, stats: &InvocationStats, duration: Duration) {
    tracing::info!(
        request_id,
        records = stats.records,
        ok = stats.ok,
        dropped = stats.dropped,
        failed = stats.failed,
        failed_invalid_base64 = stats.failed_invalid_base64,
        failed_invalid_utf8 = stats.failed_invalid_utf8,
        failed_over_budget = stats.failed_over_budget,
        failed_over_record_limit = stats.failed_over_record_limit,
        event_bytes = stats.event_bytes,
        decoded_bytes = stats.decoded_bytes,
        response_bytes = stats.response_bytes,
        duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        "invocation done"
    );
}
