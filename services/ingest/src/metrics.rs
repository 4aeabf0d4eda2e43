//! The metrics contract of `docs/metrics.md`, in code.
//!
//! Every metric lives in a [`prometheus::Registry`] owned by the service state (not the global
//! default registry), so each test gets its own isolated set. [`ProducerMetrics`] is the subset
//! the Firehose producer updates; it is separate so the producer can run without the HTTP layer
//! (the replay tool) and still be observed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// A count as a gauge's value (`i64`), saturating: counts of keys, calls, bytes and records
/// never come near `i64::MAX`, but a cast would wrap silently if one did.
pub(crate) fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reasons for `ingest_events_rejected_total`.
pub mod event_reason {
    /// Not valid JSON (or not UTF-8).
    pub const INVALID_JSON: &str = "invalid_json";
    /// Valid JSON, but not an object.
    pub const NOT_OBJECT: &str = "not_object";
    /// Larger than a Firehose record may be.
    pub const TOO_LARGE: &str = "too_large";
    /// Fails the configured JSON Schema.
    pub const SCHEMA: &str = "schema";
}

/// Reasons for `ingest_requests_rejected_total`.
pub mod request_reason {
    /// Missing or unknown API key (401).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Per-key rate limit exceeded (429).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Unsupported `Content-Type` or `Content-Encoding` (415).
    pub const CONTENT_TYPE: &str = "content_type";
    /// Body over the cap, before or after decompression (413).
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// Invalid events, empty body, bad gzip or deflate data (400).
    pub const BAD_REQUEST: &str = "bad_request";
    /// The body did not arrive before the request's send deadline (408).
    pub const TIMEOUT: &str = "timeout";
    /// In-flight byte cap reached (503, load shedding).
    pub const SHED: &str = "shed";
    /// Firehose did not accept every record within the retry budget (503).
    pub const FIREHOSE_UNAVAILABLE: &str = "firehose_unavailable";
    /// The service is draining (503).
    pub const SHUTTING_DOWN: &str = "shutting_down";
}

/// Outcome label values of `ingest_firehose_put_batch_calls_total`.
pub mod call_outcome {
    /// Every record accepted.
    pub const OK: &str = "ok";
    /// Some records failed (`FailedPutCount > 0`).
    pub const PARTIAL: &str = "partial";
    /// The call failed as a whole.
    pub const ERROR: &str = "error";
}

/// The `reason` label of `ingest_firehose_records_unaccepted_total`: why records were answered
/// as not accepted. Each points at another thing to fix.
pub mod unaccepted_reason {
    /// Still failing (throttled, unavailable, no answer) when the retry budget ran out: Firehose.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// Withdrawn at the request's send deadline, never sent or waiting for a retry: every call
    /// slot stayed busy, or the upload took the request's time.
    pub const DEADLINE: &str = "deadline";
    /// Refused for good: an error code no retry gets past (permissions, a missing stream, a
    /// record over 1,000 KiB).
    pub const PERMANENT: &str = "permanent";
    /// Left when the producer stopped (the runtime shutting down).
    pub const STOPPED: &str = "stopped";
}

/// The metrics the producer updates.
#[derive(Debug, Clone)]
pub struct ProducerMetrics {
    /// `ingest_firehose_put_batch_calls_total{outcome}`.
    pub put_batch_calls: IntCounterVec,
    /// `ingest_firehose_put_batch_duration_seconds`.
    pub put_batch_duration: Histogram,
    /// `ingest_firehose_batch_records`.
    pub batch_records: Histogram,
    /// `ingest_firehose_batch_bytes`.
    pub batch_bytes: Histogram,
    /// `ingest_firehose_records_failed_total{error_code}`.
    pub records_failed: IntCounterVec,
    /// `ingest_firehose_records_retried_total`.
    pub records_retried: IntCounter,
    /// `ingest_firehose_records_unaccepted_total{reason}` ([`unaccepted_reason`]).
    pub records_unaccepted: IntCounterVec,
    /// `ingest_inflight_bytes`.
    pub inflight_bytes: InflightBytes,
    /// `ingest_inflight_bytes_limit`.
    pub inflight_bytes_limit: IntGauge,
    /// `ingest_firehose_calls_in_flight`.
    pub calls_in_flight: IntGauge,
    /// `ingest_firehose_calls_limit`.
    pub calls_limit: IntGauge,
}

/// `ingest_inflight_bytes`, read from the producer's own counter when scraped.
///
/// The producer counts what it holds in an atomic it must update anyway (the cap is decided on
/// it); mirroring every change into a gauge as well doubled the atomic updates on the hot
/// path, several per request. The value is copied into the exported gauge at scrape time
/// instead. Until a producer is attached ([`Self::watch`]) it reads 0.
#[derive(Debug, Clone)]
pub struct InflightBytes {
    shown: IntGauge,
    source: Arc<OnceLock<Arc<AtomicUsize>>>,
}

impl InflightBytes {
    /// Makes `counter` the value of this metric. Only the first call counts: one set of
    /// producer metrics describes one producer.
    pub fn watch(&self, counter: Arc<AtomicUsize>) {
        if self.source.set(counter).is_err() {
            tracing::warn!(
                "ingest_inflight_bytes already shows another producer's bytes; a second producer \
                 given the same metrics is not shown"
            );
        }
    }

    /// The current value, as a scrape would show it.
    #[must_use]
    pub fn get(&self) -> i64 {
        let bytes = self
            .source
            .get()
            .map_or(0, |counter| counter.load(Ordering::Acquire));
        gauge_value(bytes)
    }
}

impl Collector for InflightBytes {
    fn desc(&self) -> Vec<&Desc> {
        self.shown.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.shown.set(self.get());
        self.shown.collect()
    }
}

/// A counter of the log writer's, read at each scrape (the log thread and its queue count; they
/// have no handle on a registry): `ingest_log_write_errors_total` from
/// [`crate::log_writer::write_errors`], `ingest_log_lines_dropped_total` from
/// [`crate::log_writer::dropped_lines`].
#[derive(Debug, Clone)]
struct LogCounter {
    shown: IntCounter,
    read: fn() -> u64,
    /// One scrape at a time sets `shown` (a counter has no `set`: reset, then add).
    scraping: Arc<std::sync::Mutex<()>>,
}

impl Collector for LogCounter {
    fn desc(&self) -> Vec<&Desc> {
        self.shown.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self
            .scraping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.shown.reset();
        self.shown.inc_by((self.read)());
        self.shown.collect()
    }
}

/// Every metric of the contract, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `ingest_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `ingest_http_request_duration_seconds{route,method,status_class}`.
    pub http_duration: HistogramVec,
    /// `ingest_events_accepted_total`.
    pub events_accepted: IntCounter,
    /// `ingest_event_bytes_accepted_total`.
    pub event_bytes_accepted: IntCounter,
    /// `ingest_events_rejected_total{reason}`.
    pub events_rejected: IntCounterVec,
    /// `ingest_event_bytes_rejected_total{reason}`.
    pub event_bytes_rejected: IntCounterVec,
    /// `ingest_requests_rejected_total{reason}`.
    pub requests_rejected: IntCounterVec,
    /// `ingest_ready`.
    pub ready: IntGauge,
    /// `ingest_api_keys`.
    pub api_keys: IntGauge,
    /// `ingest_api_key_file_errors_total`.
    pub api_key_file_errors: IntCounter,
    /// The producer's share.
    pub producer: ProducerMetrics,
    /// Handles of the series almost every request updates.
    hot: Arc<HotSeries>,
}

/// `ingest_http_requests_total` and `ingest_http_request_duration_seconds` for a 200 to a POST
/// on an intake route, taken once: looking a series up by its label values hashes them and
/// takes the family's lock, on every request.
#[derive(Debug, Default)]
struct HotSeries {
    v1_events: OnceLock<(IntCounter, Histogram)>,
    root: OnceLock<(IntCounter, Histogram)>,
}

/// Registering a metric twice or with a bad name: a programming error caught by the unit tests.
pub type MetricsError = prometheus::Error;

/// The `status_class` label of a status: `2xx`, `4xx`, … (499, a client that went away, is
/// `4xx` like the 408 of one too slow to send).
fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl ProducerMetrics {
    /// Counts `records` answered as not accepted for `reason` ([`unaccepted_reason`]).
    pub fn unaccepted(&self, reason: &str, records: u64) {
        self.records_unaccepted
            .with_label_values(&[reason])
            .inc_by(records);
    }

    /// Creates the producer metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When a metric with the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let put_batch_calls = IntCounterVec::new(
            Opts::new(
                "ingest_firehose_put_batch_calls_total",
                "PutRecordBatch calls made, by outcome (ok, partial, error)",
            ),
            &["outcome"],
        )?;
        let put_batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_firehose_put_batch_duration_seconds",
                "Latency of one PutRecordBatch call",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let batch_records = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_firehose_batch_records",
                "Records per PutRecordBatch call (batch fill)",
            )
            .buckets(vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 400.0, 500.0]),
        )?;
        let batch_bytes = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_firehose_batch_bytes",
                "Bytes per PutRecordBatch call (batch fill)",
            )
            // Fine where a full call ends (a batch is at most SAFE_BATCH_BYTES = 4,000,000
            // record bytes), coarse below: ×4 buckets up to 16 MiB put every call from 1 to 4 MiB
            // in one bucket, and the last was out of reach.
            .buckets(vec![
                1024.0,
                16_384.0,
                65_536.0,
                262_144.0,
                524_288.0,
                1_048_576.0,
                2_000_000.0,
                3_000_000.0,
                3_500_000.0,
                4_000_000.0,
            ]),
        )?;
        let records_failed = IntCounterVec::new(
            Opts::new(
                "ingest_firehose_records_failed_total",
                "Records Firehose refused in a call, by error code",
            ),
            &["error_code"],
        )?;
        let records_retried = IntCounter::new(
            "ingest_firehose_records_retried_total",
            "Records sent again after a failure",
        )?;
        let records_unaccepted = IntCounterVec::new(
            Opts::new(
                "ingest_firehose_records_unaccepted_total",
                "Records answered as not accepted (the client is told to send them again), by \
                 reason: retries_exhausted, deadline, permanent, stopped",
            ),
            &["reason"],
        )?;
        // Every reason from the start, at 0: an alert on one of them needs its series.
        for reason in [
            unaccepted_reason::RETRIES_EXHAUSTED,
            unaccepted_reason::DEADLINE,
            unaccepted_reason::PERMANENT,
            unaccepted_reason::STOPPED,
        ] {
            records_unaccepted.with_label_values(&[reason]);
        }
        let inflight_bytes = InflightBytes {
            shown: IntGauge::new(
                "ingest_inflight_bytes",
                "Bytes held against the in-flight cap: request bodies being received or \
                 inflated, and events not yet let go of by the producer",
            )?,
            source: Arc::default(),
        };
        let inflight_bytes_limit = IntGauge::new(
            "ingest_inflight_bytes_limit",
            "The configured cap on ingest_inflight_bytes",
        )?;
        let calls_in_flight = IntGauge::new(
            "ingest_firehose_calls_in_flight",
            "PutRecordBatch calls running (a call holds its slot through its retries' backoff)",
        )?;
        let calls_limit = IntGauge::new(
            "ingest_firehose_calls_limit",
            "The configured most PutRecordBatch calls at a time (INGEST_MAX_CONCURRENT_CALLS)",
        )?;
        registry.register(Box::new(put_batch_calls.clone()))?;
        registry.register(Box::new(put_batch_duration.clone()))?;
        registry.register(Box::new(batch_records.clone()))?;
        registry.register(Box::new(batch_bytes.clone()))?;
        registry.register(Box::new(records_failed.clone()))?;
        registry.register(Box::new(records_retried.clone()))?;
        registry.register(Box::new(records_unaccepted.clone()))?;
        registry.register(Box::new(inflight_bytes.clone()))?;
        registry.register(Box::new(inflight_bytes_limit.clone()))?;
        registry.register(Box::new(calls_in_flight.clone()))?;
        registry.register(Box::new(calls_limit.clone()))?;
        Ok(Self {
            put_batch_calls,
            put_batch_duration,
            batch_records,
            batch_bytes,
            records_failed,
            records_retried,
            records_unaccepted,
            inflight_bytes,
            inflight_bytes_limit,
            calls_in_flight,
            calls_limit,
        })
    }

    /// A set registered nowhere: for a producer nobody scrapes.
    #[must_use]
    pub fn unregistered() -> Self {
        // A fresh registry cannot already hold these names.
        match Self::register(&Registry::new()) {
            Ok(m) => m,
            Err(e) => unreachable!("metric definitions are static and valid: {e}"),
        }
    }
}

impl Metrics {
    /// Creates every metric in a new registry and sets `ingest_build_info`.
    ///
    /// # Errors
    /// Only on a programming error in the metric definitions (duplicate or invalid name).
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ingest_http_requests_total",
                "HTTP requests answered on the public listener",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ingest_http_request_duration_seconds",
                "Time from request head to response head",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            // The class, not the status: enough to leave the client's own slowness (408, 499)
            // out of a latency alert, at a third of the series the status would cost.
            &["route", "method", "status_class"],
        )?;
        let events_accepted = IntCounter::new(
            "ingest_events_accepted_total",
            "Events Firehose accepted (answered as accepted to the client)",
        )?;
        let event_bytes_accepted = IntCounter::new(
            "ingest_event_bytes_accepted_total",
            "Record bytes of accepted events, with the trailing newline",
        )?;
        let events_rejected = IntCounterVec::new(
            Opts::new(
                "ingest_events_rejected_total",
                "Events refused before sending, by reason",
            ),
            &["reason"],
        )?;
        let event_bytes_rejected = IntCounterVec::new(
            Opts::new(
                "ingest_event_bytes_rejected_total",
                "Bytes of events refused before sending (as received), by reason",
            ),
            &["reason"],
        )?;
        let requests_rejected = IntCounterVec::new(
            Opts::new(
                "ingest_requests_rejected_total",
                "Whole requests refused, by reason",
            ),
            &["reason"],
        )?;
        let ready = IntGauge::new("ingest_ready", "1 when /readyz answers 200, else 0")?;
        let api_keys = IntGauge::new(
            "ingest_api_keys",
            "API keys in force (0 with authentication off)",
        )?;
        let api_key_file_errors = IntCounter::new(
            "ingest_api_key_file_errors_total",
            "Looks at a changed API-key file that could not be used (the previous keys stay in force)",
        )?;
        let build_info = IntGauge::with_opts(
            Opts::new("ingest_build_info", "Build information (always 1)")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(events_accepted.clone()))?;
        registry.register(Box::new(event_bytes_accepted.clone()))?;
        registry.register(Box::new(events_rejected.clone()))?;
        registry.register(Box::new(event_bytes_rejected.clone()))?;
        registry.register(Box::new(requests_rejected.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(api_keys.clone()))?;
        registry.register(Box::new(api_key_file_errors.clone()))?;
        registry.register(Box::new(LogCounter {
            shown: IntCounter::new(
                "ingest_log_write_errors_total",
                "Writes of log lines to stdout that failed (their lines may be lost)",
            )?,
            read: crate::log_writer::write_errors,
            scraping: Arc::default(),
        }))?;
        registry.register(Box::new(LogCounter {
            shown: IntCounter::new(
                "ingest_log_lines_dropped_total",
                "Log lines dropped because the log queue was full (stdout stalled)",
            )?,
            read: crate::log_writer::dropped_lines,
            scraping: Arc::default(),
        }))?;
        registry.register(Box::new(build_info))?;
        let producer = ProducerMetrics::register(&registry)?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            events_accepted,
            event_bytes_accepted,
            events_rejected,
            event_bytes_rejected,
            requests_rejected,
            ready,
            api_keys,
            api_key_file_errors,
            producer,
            hot: Arc::default(),
        })
    }

    /// Counts and times one answered request (`route` is the route template, or `unmatched`).
    pub fn observe_request(&self, route: &str, method: &str, status: http::StatusCode, secs: f64) {
        let hot = match route {
            _ if status != http::StatusCode::OK || method != "POST" => None,
            "/v1/events" => Some(&self.hot.v1_events),
            "/" => Some(&self.hot.root),
            _ => None,
        };
        let look_up = || {
            (
                self.http_requests
                    .with_label_values(&[route, method, status.as_str()]),
                self.http_duration
                    .with_label_values(&[route, method, status_class(status)]),
            )
        };
        let looked_up;
        let (count, duration) = match hot {
            Some(cell) => cell.get_or_init(look_up),
            None => {
                looked_up = look_up();
                &looked_up
            }
        };
        count.inc();
        duration.observe(secs);
    }

    /// The registry, for the `/metrics` handler.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on inconsistent metric families, which the registry
        // rules out; an empty answer is the safe fallback.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name and label set of docs/metrics.md, in that table's order.
    const CONTRACT: &[(&str, &str)] = &[
        ("ingest_http_requests_total", "counter"),
        ("ingest_http_request_duration_seconds", "histogram"),
        ("ingest_events_accepted_total", "counter"),
        ("ingest_event_bytes_accepted_total", "counter"),
        ("ingest_events_rejected_total", "counter"),
        ("ingest_event_bytes_rejected_total", "counter"),
        ("ingest_requests_rejected_total", "counter"),
        ("ingest_firehose_put_batch_calls_total", "counter"),
        ("ingest_firehose_put_batch_duration_seconds", "histogram"),
        ("ingest_firehose_batch_records", "histogram"),
        ("ingest_firehose_batch_bytes", "histogram"),
        ("ingest_firehose_records_failed_total", "counter"),
        ("ingest_firehose_records_retried_total", "counter"),
        ("ingest_firehose_records_unaccepted_total", "counter"),
        ("ingest_inflight_bytes", "gauge"),
        ("ingest_inflight_bytes_limit", "gauge"),
        ("ingest_firehose_calls_in_flight", "gauge"),
        ("ingest_firehose_calls_limit", "gauge"),
        ("ingest_ready", "gauge"),
        ("ingest_api_keys", "gauge"),
        ("ingest_api_key_file_errors_total", "counter"),
        ("ingest_log_write_errors_total", "counter"),
        ("ingest_log_lines_dropped_total", "counter"),
        ("ingest_build_info", "gauge"),
    ];

    #[test]
    fn exports_exactly_the_documented_names_and_types() {
        let m = Metrics::new().expect("metrics register");
        // Labelled families only appear once a child exists.
        m.http_requests
            .with_label_values(&["/v1/events", "POST", "200"]);
        m.http_duration
            .with_label_values(&["/v1/events", "POST", "2xx"]);
        m.events_rejected.with_label_values(&[event_reason::SCHEMA]);
        m.event_bytes_rejected
            .with_label_values(&[event_reason::SCHEMA]);
        m.requests_rejected
            .with_label_values(&[request_reason::SHED]);
        m.producer
            .put_batch_calls
            .with_label_values(&[call_outcome::OK]);
        m.producer
            .records_failed
            .with_label_values(&["InternalFailure"]);
        let text = m.render();
        for (name, kind) in CONTRACT {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} ({kind}) missing from:\n{text}"
            );
        }
        let exported = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(exported, CONTRACT.len(), "extra metrics exported:\n{text}");
        assert!(text.contains(&format!(
            "ingest_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn observed_requests_land_in_their_series_taken_once_or_looked_up() {
        let m = Metrics::new().expect("metrics register");
        let ok = http::StatusCode::OK;
        m.observe_request("/v1/events", "POST", ok, 0.002);
        m.observe_request("/v1/events", "POST", ok, 0.02);
        m.observe_request("/", "POST", ok, 0.002);
        m.observe_request("/v1/events", "POST", http::StatusCode::BAD_REQUEST, 0.001);
        m.observe_request("unmatched", "GET", http::StatusCode::NOT_FOUND, 0.001);
        let count = |labels: &[&str]| m.http_requests.with_label_values(labels).get();
        assert_eq!(count(&["/v1/events", "POST", "200"]), 2);
        assert_eq!(count(&["/", "POST", "200"]), 1);
        assert_eq!(count(&["/v1/events", "POST", "400"]), 1);
        assert_eq!(count(&["unmatched", "GET", "404"]), 1);
        let timed = |labels: &[&str]| m.http_duration.with_label_values(labels).get_sample_count();
        assert_eq!(timed(&["/v1/events", "POST", "2xx"]), 2);
        assert_eq!(timed(&["/v1/events", "POST", "4xx"]), 1);
        assert_eq!(timed(&["/", "POST", "2xx"]), 1);
        assert_eq!(timed(&["unmatched", "GET", "4xx"]), 1);
    }

    #[test]
    fn batch_fill_separates_full_calls_from_half_full_ones() {
        let m = Metrics::new().expect("metrics register");
        m.producer.batch_bytes.observe(1_500_000.0);
        m.producer.batch_bytes.observe(3_900_000.0);
        let text = m.render();
        // Cumulative counts: the half-full call is below 2 MB, the full one only at 4 MB.
        for (le, count) in [("2000000", 1), ("3500000", 1), ("4000000", 2)] {
            let line = format!("ingest_firehose_batch_bytes_bucket{{le=\"{le}\"}} {count}\n");
            assert!(text.contains(&line), "no {line} in:\n{text}");
        }
    }

    #[test]
    fn the_docs_table_lists_the_same_names() {
        let doc = include_str!("../../../docs/metrics.md");
        for (name, _) in CONTRACT {
            assert!(
                doc.contains(&format!("| `{name}` |")),
                "{name} not in docs/metrics.md"
            );
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `ingest_")).count();
        assert_eq!(rows, CONTRACT.len());
    }
}
