//! `--to-stream`: puts replayed records into a delivery stream with `PutRecordBatch`, through the
//! front door's own producer (`ingest::producer`).
//!
//! Batching to Firehose's limits, resending only the records a partial failure refused, and the
//! backoff between attempts live in that producer, once, for the whole repository; this module
//! only adapts its answer to the replay's [`ItemResult`]s. Records go as they were read: for
//! `processing-failed` that is the original input, for `http-endpoint-failed` the data as it was
//! sent to the endpoint (see the README), for `AllData` the record bytes the producer wrote.
//!
//! A delivery stream's name is unique only within an account and region, so the target names
//! the region too, and the endpoint when one is set ([`StreamLocation`]): the checkpoint holds
//! that name, and a same-named stream elsewhere is another target (see [`crate::checkpoint`]).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use firehose_formats::limits::{MAX_BATCH_RECORDS, MAX_RECORD_BYTES, SAFE_BATCH_BYTES};
use ingest::producer::{NOT_SENT_IN_TIME, Producer, ProducerConfig, ProducerHandle, SubmitOutcome};
use ingest::sink::{RecordSink, Retry, classify_error_code};
use tokio_util::sync::CancellationToken;

use crate::read::{Record, is_json_object, object_on_one_line};
use crate::target::{ItemResult, SendError, Target, TargetError};

/// Where a delivery stream is, besides its name: the region, and the endpoint override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLocation {
    /// The region the Firehose client sends to.
    pub region: String,
    /// The endpoint override (`--endpoint-url`, `AWS_ENDPOINT_URL`, a profile's
    /// `endpoint_url`), when one is set.
    pub endpoint: Option<String>,
}

impl fmt::Display for StreamLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region {}", self.region)?;
        match &self.endpoint {
            Some(endpoint) => write!(f, ", endpoint {endpoint}"),
            None => Ok(()),
        }
    }
}

/// Sends records to one delivery stream.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    stream: String,
    location: StreamLocation,
    producer: ProducerHandle,
    max_batch: usize,
    /// How long one call's worth of records may take to get in (the producer's retry budget).
    budget: std::time::Duration,
    /// Records and bytes of one `PutRecordBatch` call (the producer's limits): a replay batch
    /// is submitted in pieces of this size, one after another ([`Target::send`]).
    call_records: usize,
    call_bytes: usize,
    /// The run's stop (Ctrl-C, SIGTERM): a batch of several calls ends before the next one
    /// ([`StreamTarget::with_cancel`]).
    cancel: CancellationToken,
}

impl StreamTarget {
    /// Checks that the stream exists and is active (so a typo fails before anything is read),
    /// then starts a producer for it. Must be called inside a Tokio runtime.
    ///
    /// `location` is where `sink` sends (its client's region and endpoint): it names the target.
    ///
    /// # Errors
    /// The stream cannot be described or is not active.
    pub async fn start(
        sink: Arc<dyn RecordSink>,
        stream: &str,
        location: StreamLocation,
        config: ProducerConfig,
    ) -> Result<Self, TargetError> {
        // The SDK sets no read timeout: a connection that stops answering must not hang the
        // start.
        let checked = ingest::sink::within(config.call_timeout, sink.check(stream)).await;
        checked.map_err(|e| {
            TargetError(format!(
                "delivery stream {stream} ({location}) cannot take records ({e}); check --to-stream, the region and the credentials"
            ))
        })?;
        let max_batch = config.max_batch_records;
        let budget = config.retry_budget;
        let call_records = config.max_batch_records.clamp(1, MAX_BATCH_RECORDS);
        let call_bytes = config.max_batch_bytes.clamp(1, SAFE_BATCH_BYTES);
        Ok(Self {
            stream: stream.to_owned(),
            location,
            producer: Producer::spawn(sink, stream, config),
            max_batch,
            budget,
            call_records,
            call_bytes,
            cancel: CancellationToken::new(),
        })
    }

    /// Ends a batch of several calls before its next call once `cancel` fires: a stopped run
    /// waits for one call (at most `--retry-budget-secs`), not one budget per call of the
    /// batch. What the calls made got in is reported, as always.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
}

impl Target for StreamTarget {
    fn describe(&self) -> String {
        format!("stream:{} ({})", self.stream, self.location)
    }

    fn max_batch(&self) -> usize {
        self.max_batch.max(1)
    }

    fn prepare(&self, record: &Record) -> Result<Vec<Bytes>, String> {
        let record = as_front_door_writes(&record.data);
        // The producer would refuse it too, but only as "not accepted", which would stop the
        // run; a record over the limit can never be sent, so it is refused here, for good.
        if record.len() > MAX_RECORD_BYTES {
            return Err(format!(
                "the record is {} bytes (its final `\\n` included); Firehose takes at most {MAX_RECORD_BYTES}",
                record.len()
            ));
        }
        Ok(vec![record])
    }

    async fn send(&self, items: Vec<Bytes>) -> Result<Vec<ItemResult>, SendError> {
        let count = items.len();
        let mut results = Vec::with_capacity(count);
        let mut rest = items.into_iter().peekable();
        while rest.peek().is_some() {
            // Stopped: what the earlier calls got in is reported, the rest left to the next run.
            if !results.is_empty() && self.cancel.is_cancelled() {
                results.resize(
                    count,
                    ItemResult::Unaccepted("stopped before the next call".to_owned()),
                );
                return Ok(results);
            }
            // One call's worth at a time, each with the retry budget: a batch over one call's 4,000,000 bytes needs
            // several calls, and one deadline for all of them would withdraw records of a
            // stream that is slow but taking them; with none, a stream refusing them would hold
            // the batch for the budget once per call (helper-69, helper-70). Records not inside
            // the call when its budget is spent are answered as not accepted, and the rest of
            // the batch is not tried: the run stops, and a re-run sends them.
            let mut piece = Vec::new();
            let mut bytes = 0;
            while let Some(next) = rest.peek() {
                if !piece.is_empty()
                    && (piece.len() == self.call_records || bytes + next.len() > self.call_bytes)
                {
                    break;
                }
                bytes += next.len();
                piece.extend(rest.next());
            }
            let sent = piece.len();
            let send_by = tokio::time::Instant::now() + self.budget;
            match self.producer.submit_until(piece, Some(send_by)).await {
                SubmitOutcome::Accepted { .. } => {
                    results.extend(std::iter::repeat_n(ItemResult::Accepted, sent));
                }
                SubmitOutcome::Incomplete { record_ids, error } => {
                    let error = if error == NOT_SENT_IN_TIME {
                        format!(
                            "not inside a PutRecordBatch call within --retry-budget-secs ({:?})",
                            self.budget
                        )
                    } else {
                        error
                    };
                    results.extend(record_ids.into_iter().map(|id| match id {
                        Some(_) => ItemResult::Accepted,
                        None => ItemResult::Unaccepted(error.clone()),
                    }));
                    results.resize(count, ItemResult::Unaccepted(format!("not sent: {error}")));
                    // The producer's error is "<code>: <message>"; a permanent code (no such
                    // stream, no permission) means nothing more will be accepted. The records
                    // an earlier call of the batch got in are still reported, for the
                    // checkpoint.
                    let code = error.split(':').next().unwrap_or_default().trim();
                    if classify_error_code(code) == Retry::Permanent {
                        return Err(SendError {
                            error: TargetError(format!(
                                "delivery stream {} refused the records: {error}",
                                self.stream
                            )),
                            results,
                        });
                    }
                    return Ok(results);
                }
                SubmitOutcome::Overloaded => {
                    results.resize(
                        count,
                        ItemResult::Unaccepted("the producer is overloaded".to_owned()),
                    );
                    return Ok(results);
                }
                SubmitOutcome::Closed => {
                    results.resize(count, ItemResult::Unaccepted("not sent".to_owned()));
                    return Err(SendError {
                        error: TargetError("the producer has stopped".to_owned()),
                        results,
                    });
                }
            }
        }
        Ok(results)
    }
}

/// The record as the front door writes one: JSON events one per line, ending in `\n`, so that
/// records stay separable in the stream's own S3 objects.
///
/// - A record of one line ending in `\n` goes as it is.
/// - One JSON object over several lines (an event pretty-printed by its client, stored so
///   before the front door kept records to one line) goes as one line: its line breaks are
///   whitespace between tokens.
/// - JSON objects, one per line, without the final `\n`: an http-endpoint-failed record (the
///   transform strips it from its output, one object or several lines of them). Sent as it
///   is, it would run into the next record in an AllData backup, where no reader could split
///   the two again (helper-56, M3; helper-57, L5). The transform strips it again, so New
///   Relic gets the same bytes.
/// - Anything else (binary, such as a CloudWatch Logs subscription's gzip) goes byte for byte.
fn as_front_door_writes(data: &Bytes) -> Bytes {
    let one_line = data.ends_with(b"\n") && !data[..data.len() - 1].contains(&b'\n');
    if one_line {
        return data.clone();
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return data.clone();
    };
    let mut out = if let Some(flat) = object_on_one_line(text) {
        flat
    } else if !data.ends_with(b"\n") && is_json_object_lines(text) {
        data.to_vec()
    } else {
        return data.clone();
    };
    out.push(b'\n');
    Bytes::from(out)
}

/// Whether every non-blank line of `text` is one JSON object.
fn is_json_object_lines(text: &str) -> bool {
    let mut lines = text.split('\n').filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some() && lines.all(is_json_object)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn prepared(data: &'static str) -> String {
        String::from_utf8(as_front_door_writes(&Bytes::from_static(data.as_bytes())).to_vec())
            .unwrap()
    }

    #[test]
    fn records_leave_as_the_front_door_writes_them() {
        // One line with its newline: as it is, CRLF included.
        assert_eq!(prepared("{\"a\":1}\n"), "{\"a\":1}\n");
        assert_eq!(prepared("{\"a\":1}\r\n"), "{\"a\":1}\r\n");
        // The transform's output, without the newline: one object, or several lines of them.
        assert_eq!(prepared("{\"a\":1}"), "{\"a\":1}\n");
        assert_eq!(prepared("{\"a\":1}\n{\"b\":2}"), "{\"a\":1}\n{\"b\":2}\n");
        // One object over several lines: one line.
        assert_eq!(prepared("{\n  \"a\": 1\n}\n"), "{   \"a\": 1 }\n");
        // Anything else: byte for byte.
        assert_eq!(prepared("plain text"), "plain text");
        assert_eq!(prepared("{\"a\":1}\nnot json"), "{\"a\":1}\nnot json");
        assert_eq!(prepared("[1,2]"), "[1,2]");
        let binary = Bytes::from_static(&[0x1f, 0x8b, 0x08, 0x00, b'\n', 0xff]);
        assert_eq!(as_front_door_writes(&binary), binary);
    }
}
