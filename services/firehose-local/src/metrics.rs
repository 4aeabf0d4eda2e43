//! Prometheus metrics named after Firehose's CloudWatch metrics.
//!
//! Dashboards and alerts written against `AWS/Firehose` should have a local twin, so each
//! CloudWatch metric maps to one Prometheus series with the `delivery_stream` label standing in
//! for the `DeliveryStreamName` dimension. CloudWatch ratios (`*.Success`) become a pair of
//! counters whose quotient is the ratio. The mapping table is in the README. Each server owns its
//! own registry, so an embedded instance never collides with its host's metrics.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every series this crate exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub(crate) incoming_records: IntCounterVec,
    pub(crate) incoming_bytes: IntCounterVec,
    pub(crate) incoming_put_requests: IntCounterVec,
    pub(crate) throttled_records: IntCounterVec,
    pub(crate) put_record_requests: IntCounterVec,
    pub(crate) put_record_batch_requests: IntCounterVec,
    pub(crate) processing_invocations: IntCounterVec,
    pub(crate) processing_success: IntCounterVec,
    pub(crate) processing_duration: HistogramVec,
    pub(crate) succeed_processing_records: IntCounterVec,
    pub(crate) succeed_processing_bytes: IntCounterVec,
    pub(crate) http_requests: IntCounterVec,
    pub(crate) http_success: IntCounterVec,
    pub(crate) http_records: IntCounterVec,
    pub(crate) http_bytes: IntCounterVec,
    pub(crate) http_processed_records: IntCounterVec,
    pub(crate) http_processed_bytes: IntCounterVec,
    pub(crate) http_data_freshness: GaugeVec,
    pub(crate) local_records: IntCounterVec,
    pub(crate) local_bytes: IntCounterVec,
    pub(crate) backup_records: IntCounterVec,
    pub(crate) backup_bytes: IntCounterVec,
    pub(crate) backup_success: IntCounterVec,
    pub(crate) backup_attempts: IntCounterVec,
    pub(crate) backup_data_freshness: GaugeVec,
    pub(crate) error_output_records: IntCounterVec,
    pub(crate) held_bytes: IntGauge,
}

const STREAM: &[&str] = &["delivery_stream"];

impl Metrics {
    /// Registers every series in a fresh registry.
    ///
    /// # Errors
    /// Only if two series share a name, a programming error caught by the unit test.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name, help), STREAM)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let processing_duration = HistogramVec::new(
            HistogramOpts::new(
                "firehose_execute_processing_duration_seconds",
                "ExecuteProcessing.Duration: time per Lambda invocation",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0,
            ]),
            STREAM,
        )?;
        registry.register(Box::new(processing_duration.clone()))?;
        let held_bytes = IntGauge::new(
            "firehose_local_held_bytes",
            "Bytes of accepted records (as received) held in memory until delivered, backed up or dropped; \
             capped by max_held_mb (local only, no CloudWatch twin)",
        )?;
        registry.register(Box::new(held_bytes.clone()))?;
        Ok(Self {
            incoming_records: counter(
                "firehose_incoming_records_total",
                "IncomingRecords: records accepted",
                STREAM,
            )?,
            incoming_bytes: counter(
                "firehose_incoming_bytes_total",
                "IncomingBytes: bytes accepted",
                STREAM,
            )?,
            incoming_put_requests: counter(
                "firehose_incoming_put_requests_total",
                "IncomingPutRequests: PutRecord and PutRecordBatch calls accepted",
                STREAM,
            )?,
            throttled_records: counter(
                "firehose_throttled_records_total",
                "ThrottledRecords: records refused with ServiceUnavailableException",
                STREAM,
            )?,
            put_record_requests: counter(
                "firehose_put_record_requests_total",
                "PutRecord.Requests",
                STREAM,
            )?,
            put_record_batch_requests: counter(
                "firehose_put_record_batch_requests_total",
                "PutRecordBatch.Requests",
                STREAM,
            )?,
            processing_invocations: counter(
                "firehose_execute_processing_invocations_total",
                "Lambda invocations attempted (denominator of ExecuteProcessing.Success)",
                STREAM,
            )?,
            processing_success: counter(
                "firehose_execute_processing_success_total",
                "ExecuteProcessing.Success numerator: invocations that returned a valid response",
                STREAM,
            )?,
            processing_duration,
            succeed_processing_records: counter(
                "firehose_succeed_processing_records_total",
                "SucceedProcessing.Records: records returned Ok or Dropped",
                STREAM,
            )?,
            succeed_processing_bytes: counter(
                "firehose_succeed_processing_bytes_total",
                "SucceedProcessing.Bytes: bytes of records returned Ok",
                STREAM,
            )?,
            http_requests: counter(
                "firehose_delivery_to_http_endpoint_requests_total",
                "HTTP endpoint requests attempted (denominator of DeliveryToHttpEndpoint.Success)",
                STREAM,
            )?,
            http_success: counter(
                "firehose_delivery_to_http_endpoint_success_total",
                "DeliveryToHttpEndpoint.Success numerator: requests answered 200 with a valid body",
                STREAM,
            )?,
            http_records: counter(
                "firehose_delivery_to_http_endpoint_records_total",
                "DeliveryToHttpEndpoint.Records: records delivered",
                STREAM,
            )?,
            http_bytes: counter(
                "firehose_delivery_to_http_endpoint_bytes_total",
                "DeliveryToHttpEndpoint.Bytes: bytes delivered (before compression)",
                STREAM,
            )?,
            http_processed_records: counter(
                "firehose_delivery_to_http_endpoint_processed_records_total",
                "DeliveryToHttpEndpoint.ProcessedRecords: records attempted, retries included",
                STREAM,
            )?,
            http_processed_bytes: counter(
                "firehose_delivery_to_http_endpoint_processed_bytes_total",
                "DeliveryToHttpEndpoint.ProcessedBytes: bytes attempted, retries included",
                STREAM,
            )?,
            http_data_freshness: gauge(
                "firehose_delivery_to_http_endpoint_data_freshness_seconds",
                "DeliveryToHttpEndpoint.DataFreshness: age of the oldest record in the last delivered request",
            )?,
            local_records: counter(
                "firehose_delivery_to_local_records_total",
                "Records written to the local NDJSON destination (the DeliveryToS3.Records analogue)",
                STREAM,
            )?,
            local_bytes: counter(
                "firehose_delivery_to_local_bytes_total",
                "Bytes written to the local NDJSON destination",
                STREAM,
            )?,
            backup_records: counter(
                "firehose_backup_to_s3_records_total",
                "BackupToS3.Records: records written to backup or error output",
                STREAM,
            )?,
            backup_bytes: counter(
                "firehose_backup_to_s3_bytes_total",
                "BackupToS3.Bytes: object bytes written",
                STREAM,
            )?,
            backup_success: counter(
                "firehose_backup_to_s3_success_total",
                "BackupToS3.Success numerator: objects written",
                STREAM,
            )?,
            backup_attempts: counter(
                "firehose_backup_to_s3_attempts_total",
                "Backup object writes attempted (denominator of BackupToS3.Success)",
                STREAM,
            )?,
            backup_data_freshness: gauge(
                "firehose_backup_to_s3_data_freshness_seconds",
                "BackupToS3.DataFreshness: age of the oldest record in the last backup object",
            )?,
            error_output_records: counter(
                "firehose_error_output_records_total",
                "Records written to error output, by !{firehose:error-output-type}",
                &["delivery_stream", "error_output_type"],
            )?,
            held_bytes,
            registry,
        })
    }

    /// The Prometheus text exposition of every series.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Creates every per-stream series at zero so dashboards see them before traffic.
    pub(crate) fn init_stream(&self, stream: &str) {
        for c in [
            &self.incoming_records,
            &self.incoming_bytes,
            &self.incoming_put_requests,
            &self.throttled_records,
            &self.put_record_requests,
            &self.put_record_batch_requests,
            &self.processing_invocations,
            &self.processing_success,
            &self.succeed_processing_records,
            &self.succeed_processing_bytes,
            &self.http_requests,
            &self.http_success,
            &self.http_records,
            &self.http_bytes,
            &self.http_processed_records,
            &self.http_processed_bytes,
            &self.local_records,
            &self.local_bytes,
            &self.backup_records,
            &self.backup_bytes,
            &self.backup_success,
            &self.backup_attempts,
        ] {
            c.with_label_values(&[stream]);
        }
        for kind in ["processing-failed", "http-endpoint-failed"] {
            self.error_output_records.with_label_values(&[stream, kind]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_registers_and_renders() {
        let m = Metrics::new().expect("unique names");
        m.init_stream("events");
        m.incoming_records.with_label_values(&["events"]).inc_by(3);
        let text = m.render();
        assert!(text.contains("firehose_incoming_records_total{delivery_stream=\"events\"} 3"));
        assert!(text.contains("firehose_error_output_records_total{delivery_stream=\"events\",error_output_type=\"processing-failed\"} 0"));
    }
}
