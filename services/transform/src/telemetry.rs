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

/// CloudWatch embedded metric format (EMF) for the invocation's counts: where the metrics go.
///
/// One JSON line per invocation on stdout, which CloudWatch Logs turns into metrics in
/// `namespace` with the dimension `FunctionName` (and `DeliveryStream` when the event names its
/// stream), no API call and no permission needed: `Records`, `Ok`, `OkLines`,
/// `OkBrokenObject`, `Dropped`, `Failed`, one `Failed…` per reason (Count) and
/// `ResponseBytes` (Bytes). Each metric-and-dimensions pair is a CloudWatch custom metric.
/// <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emf {
    /// The metrics' namespace.
    pub namespace: String,
    /// The `FunctionName` dimension.
    pub function_name: String,
}

/// Default [`Emf::namespace`].
pub const EMF_NAMESPACE: &str = "FirehoseTransform";

impl Emf {
    /// From the environment: `TRANSFORM_EMF=off` (or `false`, `0`) turns the metrics off;
    /// `TRANSFORM_EMF_NAMESPACE` names the namespace (default [`EMF_NAMESPACE`]); the function
    /// name is Lambda's `AWS_LAMBDA_FUNCTION_NAME`. `get` reads one variable.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        if get("TRANSFORM_EMF").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "off" | "false" | "0"
            )
        }) {
            return None;
        }
        Some(Self {
            namespace: get("TRANSFORM_EMF_NAMESPACE")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| EMF_NAMESPACE.to_owned()),
            function_name: get("AWS_LAMBDA_FUNCTION_NAME")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "unknown".to_owned()),
        })
    }

    /// The EMF document for `stats`, timestamped `now_ms` (one line, no newline).
    #[must_use]
    pub fn line(&self, stats: &InvocationStats, now_ms: i64) -> String {
        let metrics = [
            ("Records", "Count", stats.records),
            ("Ok", "Count", stats.ok),
            ("OkLines", "Count", stats.ok_lines),
            ("OkBrokenObject", "Count", stats.ok_broken_object),
            ("Dropped", "Count", stats.dropped),
            ("Failed", "Count", stats.failed),
            ("FailedInvalidBase64", "Count", stats.failed_invalid_base64),
            ("FailedInvalidUtf8", "Count", stats.failed_invalid_utf8),
            (
                "FailedGzipCompressed",
                "Count",
                stats.failed_gzip_compressed,
            ),
            (
                "UnenrichedOverBudget",
                "Count",
                stats.unenriched_over_budget,
            ),
            (
                "UnenrichedOverRecordLimit",
                "Count",
                stats.unenriched_over_record_limit,
            ),
            ("ResponseBytes", "Bytes", stats.response_bytes),
        ];
        let definitions: Vec<serde_json::Value> = metrics
            .iter()
            .map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit}))
            .collect();
        // The stream's name: the ARN's resource after `deliverystream/`.
        let stream = stats
            .source
            .delivery_stream_arn
            .as_deref()
            .and_then(|arn| arn.rsplit_once('/'))
            .map(|(_, name)| name)
            .filter(|name| !name.is_empty());
        let dimensions = if stream.is_some() {
            serde_json::json!([["FunctionName", "DeliveryStream"]])
        } else {
            serde_json::json!([["FunctionName"]])
        };
        let mut root = serde_json::Map::new();
        root.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": dimensions,
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert("FunctionName".to_owned(), self.function_name.clone().into());
        if let Some(stream) = stream {
            root.insert("DeliveryStream".to_owned(), stream.into());
        }
        for (name, _, value) in metrics {
            root.insert(name.to_owned(), value.into());
        }
        serde_json::Value::Object(root).to_string()
    }
}

/// Emits the invocation's failure lines (at most [`MAX_FAILURE_LINES_PER_INVOCATION`], then
/// one with the number left out), each with the request id, then the one structured line that
/// summarises it.
pub fn log_invocation(request_id: &str, stats: &InvocationStats, duration: Duration) {
    // ERROR like the invocation line they precede: the alarm's text sends operators to them.
    for (record_id, reason) in &stats.failures.listed {
        tracing::error!(
            request_id,
            record_id,
            reason = reason.code(),
            "record returned ProcessingFailed: {reason}"
        );
    }
    if stats.failures.unlisted > 0 {
        tracing::error!(
            request_id,
            suppressed = stats.failures.unlisted,
            "more records returned ProcessingFailed; counts by reason are in the invocation line"
        );
    }
    // One line per invocation, with the counts; terraform/alarms.tf's `transform_failed_records`
    // metric filter reads its `message` and `failed`. With failures it is an ERROR (records
    // went to the S3 backup instead of New Relic), so a log level turned down to `warn` or
    // `error` (RUST_LOG, or Lambda's AWS_LAMBDA_LOG_LEVEL) does not silence the one signal that
    // records came back ProcessingFailed (no Firehose metric counts them). (Lambda's own
    // filtering at FATAL would drop it: see the README.) Records delivered unenriched make it a
    // WARN: nothing was lost.
    macro_rules! invocation_line {
        ($level:ident) => {
            tracing::$level!(
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
                unenriched_over_budget = stats.unenriched_over_budget,
                unenriched_over_record_limit = stats.unenriched_over_record_limit,
                event_bytes = stats.event_bytes,
                decoded_bytes = stats.decoded_bytes,
                response_bytes = stats.response_bytes,
                duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
                "invocation done"
            )
        };
    }
    if stats.failed > 0 {
        invocation_line!(error);
    } else if stats.unenriched_over_budget + stats.unenriched_over_record_limit > 0 {
        invocation_line!(warn);
    } else {
        invocation_line!(info);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn emf_is_on_by_default_and_can_be_turned_off_or_renamed() {
        let on = Emf::from_env(env(&[("AWS_LAMBDA_FUNCTION_NAME", "fn-1")])).unwrap();
        assert_eq!(
            on,
            Emf {
                namespace: EMF_NAMESPACE.to_owned(),
                function_name: "fn-1".to_owned()
            }
        );
        for off in ["off", "OFF", "false", " 0 "] {
            assert_eq!(Emf::from_env(env(&[("TRANSFORM_EMF", off)])), None, "{off}");
        }
        let named = Emf::from_env(env(&[
            ("TRANSFORM_EMF_NAMESPACE", "Team/Pipe"),
            ("TRANSFORM_EMF", "on"),
        ]))
        .unwrap();
        assert_eq!(named.namespace, "Team/Pipe");
        assert_eq!(named.function_name, "unknown");
    }

    /// The document follows the EMF specification: every metric a directive names is a number
    /// at the root, every dimension a string there.
    #[test]
    fn the_emf_line_holds_every_metric_it_declares() {
        let emf = Emf {
            namespace: "NS".to_owned(),
            function_name: "fn-\"1\"".to_owned(),
        };
        let stats = InvocationStats {
            records: 9,
            ok: 5,
            ok_lines: 1,
            dropped: 1,
            failed: 3,
            failed_invalid_base64: 2,
            failed_gzip_compressed: 1,
            unenriched_over_budget: 1,
            response_bytes: 1234,
            source: EventSource {
                invocation_id: None,
                delivery_stream_arn: Some(
                    "arn:aws:firehose:eu-west-1:123456789012:deliverystream/events".to_owned(),
                ),
            },
            ..InvocationStats::default()
        };
        let doc: serde_json::Value =
            serde_json::from_str(&emf.line(&stats, 1_770_249_600_000)).expect("one JSON object");
        assert_eq!(doc["_aws"]["Timestamp"], 1_770_249_600_000_i64);
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        assert_eq!(directives[0]["Namespace"], "NS");
        assert_eq!(
            directives[0]["Dimensions"],
            serde_json::json!([["FunctionName", "DeliveryStream"]])
        );
        assert_eq!(doc["FunctionName"], "fn-\"1\"");
        assert_eq!(doc["DeliveryStream"], "events");
        let metrics = directives[0]["Metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 12);
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(
                doc[name].is_u64(),
                "{name} is declared but not a number at the root"
            );
            assert!(matches!(metric["Unit"].as_str(), Some("Count" | "Bytes")));
        }
        for (name, value) in [
            ("Records", 9),
            ("Ok", 5),
            ("OkLines", 1),
            ("OkBrokenObject", 0),
            ("Dropped", 1),
            ("Failed", 3),
            ("FailedInvalidBase64", 2),
            ("FailedInvalidUtf8", 0),
            ("FailedGzipCompressed", 1),
            ("UnenrichedOverBudget", 1),
            ("UnenrichedOverRecordLimit", 0),
            ("ResponseBytes", 1234),
        ] {
            assert_eq!(doc[name], value, "{name}");
        }
        // Without a stream ARN: the function alone.
        let doc: serde_json::Value =
            serde_json::from_str(&emf.line(&InvocationStats::default(), 0)).unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["FunctionName"]])
        );
        assert!(doc.get("DeliveryStream").is_none());
    }
}
