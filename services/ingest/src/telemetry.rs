//! Logs and traces: the subscriber, OTLP export, the request span.
//!
//! * [`init_tracing`]: JSON logs on stdout, filtered by `RUST_LOG`. When
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are
//!   also exported as OpenTelemetry traces over OTLP/HTTP (protobuf), configured by the
//!   standard `OTEL_*` variables (service name `ingest` unless `OTEL_SERVICE_NAME` says
//!   otherwise). It returns a [`Telemetry`] guard: [`Telemetry::shutdown`] (or dropping it)
//!   flushes the spans still buffered, so the last requests before exit are not lost. A bad
//!   OTLP setting is logged at ERROR and the service runs without export.
//! * [`request_span`]: one span per request carrying the request id (`x-request-id`, set by
//!   [`crate::middleware`] when the client sent none) and the W3C `traceparent` trace id. It
//!   exists only when something records it: trace export (the exported span,
//!   `POST /v1/events`, kind server, is a child of the caller's `traceparent` span) or DEBUG
//!   logging (so the lines inside a request carry its ids). The producer's `PutRecordBatch`
//!   calls have spans of their own (`put_record_batch`).
//!
//! [`crate::middleware`] builds the request span, counts and times each request and emits its
//! access-log line.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use bytes::Bytes;
use http::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Key, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::access_log::{ACCESS_TARGET, AccessLog};
use crate::log_writer::{self, WhenFull};

/// `service.name` of the exported spans when neither `OTEL_SERVICE_NAME` nor a `service.name`
/// in `OTEL_RESOURCE_ATTRIBUTES` names the service.
pub const DEFAULT_SERVICE_NAME: &str = "ingest";

/// Why logging cannot start. Fatal: `main` exits.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG={filter:?} is not a valid log filter: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// The parse error.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed.
    #[error("cannot install the log subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Why OTLP trace export stays off although it was asked for. Not fatal: [`init_tracing`]
/// logs it at ERROR and the service runs without export.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error(
        "{var}={value:?} is not an OTLP/HTTP endpoint: use http://host:port or https://host:port (e.g. http://otel-collector:4318)"
    )]
    Endpoint {
        /// The variable that held it.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A transport other than HTTP/protobuf was asked for.
    #[error(
        "{var}={value:?} is not supported: ingest exports OTLP over http/protobuf only (unset it, or set it to http/protobuf and point the endpoint at the collector's HTTP port, usually 4318)"
    )]
    Protocol {
        /// The variable that held it.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// [`init_tracing`] was called outside a Tokio runtime.
    #[error("OTLP trace export needs a Tokio runtime: call init_tracing from inside one")]
    NoRuntime,
    /// No usable CA certificates for an `https://` endpoint.
    #[error("cannot set up TLS for the OTLP endpoint: {0}")]
    Tls(#[source] std::io::Error),
    /// The SDK refused the exporter configuration (e.g. `OTEL_EXPORTER_OTLP_*` values).
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// `url` as it may be logged: a password or token in its user info (`https://user:pass@host`)
/// or its query (`?api-key=…`) replaced by `***`; the fragment left out.
fn redacted(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let (url, query) = match url.split_once('?') {
        Some((before, _)) => (before, "?***"),
        None => (url, ""),
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    format!("{scheme}{host}{path}{query}")
}

/// Where and how traces are exported, from the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OtlpConfig {
    /// The variable that set the endpoint, and its value (checked to be http or https).
    var: &'static str,
    endpoint: String,
    /// Deadline of one export request (the HTTP client enforces it).
    timeout: Duration,
}

impl OtlpConfig {
    /// Reads the settings through `var` (which returns set, non-empty variables). `Ok(None)`:
    /// export is off, because no endpoint is set or `OTEL_SDK_DISABLED=true`.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, OtlpError> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        // The traces-specific endpoint wins (the SDK uses it as is; the general one gets
        // `/v1/traces` appended by the SDK).
        let Some((name, endpoint)) = [
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT,
        ]
        .into_iter()
        .find_map(|name| var(name).map(|value| (name, value))) else {
            return Ok(None);
        };
        let valid = endpoint.trim().parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        });
        if !valid {
            return Err(OtlpError::Endpoint {
                var: name,
                value: redacted(&endpoint),
            });
        }
        for protocol_var in [
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_PROTOCOL,
        ] {
            if let Some(protocol) = var(protocol_var) {
                if protocol.trim() != opentelemetry_otlp::OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_PROTOBUF
                {
                    return Err(OtlpError::Protocol {
                        var: protocol_var,
                        value: protocol,
                    });
                }
                break;
            }
        }
        // Milliseconds, traces-specific first, as the SDK reads it for its own deadline.
        let timeout = [
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT,
        ]
        .into_iter()
        .find_map(|name| var(name)?.trim().parse::<u64>().ok())
        .map_or(
            opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT,
            Duration::from_millis,
        );
        Ok(Some(Self {
            var: name,
            endpoint: endpoint.trim().to_owned(),
            timeout,
        }))
    }

    fn is_https(&self) -> bool {
        self.endpoint
            .get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https:"))
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Keeps OpenTelemetry trace export running. [`Telemetry::shutdown`], or dropping the guard,
/// exports the spans still buffered and stops the exporter; call it once the server has
/// drained, while the Tokio runtime still runs.
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The log writer's thread: dropping it (after the provider has stopped, so the last
    /// lines about that are included) writes out the lines still queued.
    logs: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Whether spans are being exported.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the buffered spans (waiting up to 5 s) and stops export.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // The batch processor's thread hands its last export to the runtime (see
        // `OnRuntime`) and this call waits for it: on a runtime worker, let the runtime move
        // its other tasks away first. (A current-thread runtime cannot run the export while
        // blocked here: shut down outside it, or the flush times out after 5 s.)
        let on_worker = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        let result = if on_worker {
            tokio::task::block_in_place(|| provider.shutdown())
        } else {
            provider.shutdown()
        };
        match result {
            Ok(()) => tracing::info!("OpenTelemetry trace export stopped"),
            Err(e) => tracing::warn!(error = %e, "flushing OpenTelemetry traces at exit failed"),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
        // Last: the lines about stopping the export are queued by now. Bounded: a stalled
        // stdout must not keep the process from exiting (`log_writer::finish`).
        if let Some(guard) = self.logs.take() {
            log_writer::finish(guard, log_writer::EXIT_FLUSH);
        }
    }
}

/// Sends the exporter's HTTP requests on the service's Tokio runtime.
///
/// The SDK's batch span processor exports from a thread of its own, outside any runtime, and
/// hyper needs one; so each request is spawned onto the runtime that was current at start and
/// awaited from the processor's thread.
#[derive(Debug)]
struct OnRuntime {
    client: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// An HTTP connector that also speaks TLS (rustls with the aws-lc-rs provider, the one the AWS
/// SDK uses). The system's CA certificates are loaded only for an `https://` endpoint.
fn connector(https: bool) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, OtlpError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = if https {
        builder
            .with_provider_and_native_roots(provider)
            .map_err(OtlpError::Tls)?
    } else {
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OtlpError::Tls(std::io::Error::other(e)))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        builder.with_tls_config(tls)
    };
    Ok(builder.https_or_http().enable_http1().build())
}

/// The resource of the exported spans: what the SDK detects from `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`, with [`DEFAULT_SERVICE_NAME`] when neither names the service,
/// and `service.version`.
fn resource() -> Resource {
    let version = KeyValue::new("service.version", env!("CARGO_PKG_VERSION"));
    if names_service(&Resource::builder().build()) {
        Resource::builder().with_attribute(version).build()
    } else {
        Resource::builder()
            .with_service_name(DEFAULT_SERVICE_NAME)
            .with_attribute(version)
            .build()
    }
}

/// Whether `resource` has a `service.name` of its own (not the SDK's `unknown_service`).
fn names_service(resource: &Resource) -> bool {
    resource
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"))
}

fn tracer_provider(config: &OtlpConfig) -> Result<SdkTracerProvider, OtlpError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
    let client = HyperClient::new(connector(config.is_https())?, config.timeout, None);
    // Endpoint, headers, compression and timeout come from the OTEL_EXPORTER_OTLP_* variables,
    // read by the SDK; the batch settings from OTEL_BSP_*; sampling from OTEL_TRACES_SAMPLER.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client, runtime })
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// How log lines get to stdout: `RUST_LOG`, `INGEST_LOG_QUEUE_LINES` and
/// `INGEST_LOG_WHEN_FULL` (see [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The filter, in `tracing` env-filter syntax.
    pub filter: String,
    /// Lines that may wait for the writer thread.
    pub queue_lines: usize,
    /// What a line that does not fit the queue does.
    pub when_full: WhenFull,
}

/// Installs the JSON log subscriber and, when the OTLP variables ask for it, trace export.
/// Call once, from `main`, inside the Tokio runtime; keep the returned guard until the server
/// has drained.
///
/// # Errors
/// A bad log filter, or a subscriber already installed. A bad OTLP setting is no error: it
/// is logged, and the service runs without export.
pub fn init_tracing(log: &LogSettings) -> Result<Telemetry, TelemetryError> {
    let otlp = OtlpConfig::from_vars(env_var).and_then(|config| match config {
        Some(config) => Ok(Some((tracer_provider(&config)?, config))),
        None => Ok(None),
    });
    let (provider, config, problem) = match otlp {
        Ok(Some((provider, config))) => (Some(provider), Some(config), None),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    // Lines queue for a writer thread, which writes them in batches at most once per
    // `LOG_WRITE_INTERVAL` (`log_writer`), not a `write` per access-log line. A queue that
    // fills (stdout stalled) drops and counts lines, or makes the loggers wait: `when_full`.
    let (writer, log_guard) = log_writer::queue(
        std::io::stdout(),
        log.queue_lines,
        LOG_WRITE_BYTES,
        log.when_full,
    );
    let base = tracing_subscriber::registry().with(log_layers(&log.filter, writer)?);
    // Our own spans go out whatever RUST_LOG says: a quieter log must not thin the traces.
    // Two branches, not an `Option` layer: an absent `Option` layer answers "always" for every
    // callsite, which made every DEBUG and TRACE callsite of hyper and the AWS SDK, and the
    // request span, live (built, entered, dropped, filtered out per layer) on every request.
    match &provider {
        Some(provider) => base
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("ingest"))
                    .with_filter(Targets::new().with_target("ingest", LevelFilter::INFO)),
            )
            .try_init()?,
        None => base.try_init()?,
    }
    if let Some(config) = &config {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing::info!(
            endpoint_var = config.var,
            endpoint = %redacted(&config.endpoint),
            "OpenTelemetry trace export on (OTLP over http/protobuf)"
        );
    }
    if let Some(e) = problem {
        tracing::error!(error = %e, "OpenTelemetry trace export is OFF: fix the OTEL_* setting named here");
    }
    Ok(Telemetry {
        provider,
        logs: Some(log_guard),
    })
}

/// The JSON log layer and the access-log layer (one layer), both filtered by `filter`
/// (`RUST_LOG` syntax), both writing to `writer`.
///
/// The request span exists for trace export. The log records it only when DEBUG is on, where
/// other lines happen inside a request; at INFO the only such line is the access line, which
/// carries `request_id`, `trace_id` and `key_id` itself. Creating, formatting and entering the
/// span for every request was ~12 % of a single-event request's CPU (perf). Access-log lines
/// go to the [`AccessLog`] layer only.
fn log_layers<S, W>(
    filter: &str,
    writer: W,
) -> Result<impl tracing_subscriber::Layer<S> + Send + Sync + 'static, TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let env_filter = parse_filter(filter)?;
    let spans_in_log = env_filter
        .max_level_hint()
        .is_none_or(|max| max >= LevelFilter::DEBUG);
    let log_filter = env_filter.and(filter_fn(move |meta| {
        if meta.is_span() {
            spans_in_log || meta.name() != REQUEST_SPAN
        } else {
            meta.target() != ACCESS_TARGET
        }
    }));
    // (`EnvFilter` is not `Clone`: each layer parses its own.)
    let access_filter = parse_filter(filter)?.and(filter_fn(|meta| {
        meta.is_event() && meta.target() == ACCESS_TARGET
    }));
    let access = AccessLog::new(writer.clone()).with_filter(access_filter);
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(log_filter);
    Ok(logs.and_then(access))
}

/// `RUST_LOG` parsed, or the error that names it.
fn parse_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, TelemetryError> {
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|source| TelemetryError::Filter {
        filter: filter.to_owned(),
        source,
    })
}

/// The writer thread's buffer: written through when full, before its interval is up.
const LOG_WRITE_BYTES: usize = 64 * 1024;

/// Name of the per-request span.
const REQUEST_SPAN: &str = "request";

/// The request-id header: set by [`crate::middleware`] when the client sent none, echoed in
/// the answer.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The W3C trace-context header.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The trace id of a valid W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
#[must_use]
pub fn trace_id(headers: &http::HeaderMap) -> Option<&str> {
    traceparent_trace_id(headers.get(TRACEPARENT)?)
}

/// The trace id of one `traceparent` value, if it is valid: by the rules of W3C trace context
/// as the OpenTelemetry propagator applies them (lowercase ids and flags, neither id all zeros,
/// exactly four fields in version `00`, version `ff` invalid), so the trace id on log lines is
/// the one the exported span continues, or none when the span starts a new trace.
pub(crate) fn traceparent_trace_id(value: &http::HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let mut parts = value.trim().split_terminator('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let more = parts.next().is_some();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    let valid = hex(version, 2)
        && !version.eq_ignore_ascii_case("ff")
        && !(version == "00" && more)
        && lower_hex(trace, 32)
        && not_zero(trace)
        && lower_hex(parent, 16)
        && not_zero(parent)
        && lower_hex(flags, 2);
    valid.then_some(trace)
}

/// The span of one request (built by [`crate::middleware`], after routing).
///
/// With trace export on, its parent is the caller's span from `traceparent` (W3C trace
/// context), so the exported span carries the caller's trace id.
pub fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method());
    let span = tracing::info_span!(
        REQUEST_SPAN,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        // Field values are read only when the span is enabled: the middleware has already read
        // both headers for the access line, and a disabled span should not read them again.
        request_id = %request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        trace_id = trace_id(request.headers()).unwrap_or(""),
        key_id = tracing::field::Empty,
    );
    // Nothing below matters for a span that no layer records (trace export off, logs above
    // DEBUG): skip the work, including the route's allocation.
    if span.is_disabled() {
        return span;
    }
    // The global propagator is W3C trace context only while export is on (a no-op otherwise).
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    if parent.span().span_context().is_valid() {
        // Fails only when the span is not exported (no OpenTelemetry layer): nothing to link.
        let _ = span.set_parent(parent);
    }
    span.set_attribute("http.request.method", method);
    span.set_attribute("http.route", route.to_owned());
    span
}

pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variable lookup over `pairs`, as `env_var` reads the environment.
    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Option<OtlpConfig> {
        OtlpConfig::from_vars(vars(pairs)).expect("valid settings")
    }

    #[test]
    fn otlp_export_is_on_only_with_an_endpoint() {
        assert_eq!(config(&[]), None);
        assert_eq!(config(&[("OTEL_SERVICE_NAME", "x")]), None);
        let on = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).expect("on");
        assert_eq!(on.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert_eq!(on.endpoint, "http://collector:4318");
        assert_eq!(on.timeout, Duration::from_secs(10));
        assert!(!on.is_https());

        let both = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "HTTPS://traces.example:443/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .expect("on");
        assert_eq!(both.var, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        assert!(both.is_https());
        assert_eq!(both.timeout, Duration::from_millis(2500));

        let timeouts = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
        ])
        .expect("on");
        assert_eq!(timeouts.timeout, Duration::from_millis(700));

        assert_eq!(
            config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ]),
            None
        );
        assert!(
            config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ])
            .is_some()
        );
    }

    #[test]
    fn endpoints_are_logged_without_credentials() {
        for (url, shown) in [
            ("http://collector:4318", "http://collector:4318"),
            (
                "https://user:pa55@otlp.example.com:4318/v1/traces",
                "https://***@otlp.example.com:4318/v1/traces",
            ),
            (
                "https://otlp.example.com/v1/traces?api-key=t0k3n#x",
                "https://otlp.example.com/v1/traces?***",
            ),
            ("ftp://u:p@collector", "ftp://***@collector"),
            ("not a url", "not a url"),
            ("u:p@collector:4318", "***@collector:4318"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
        let err = OtlpConfig::from_vars(vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "ftp://user:pa55@collector",
        )]))
        .expect_err("not http");
        assert!(!err.to_string().contains("pa55"), "{err}");
    }

    #[test]
    fn bad_otlp_settings_name_the_variable_to_fix() {
        for endpoint in ["collector:4318", "ftp://collector", "http://", "not a url"] {
            let err = OtlpConfig::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)]))
                .expect_err(endpoint);
            assert!(
                matches!(err, OtlpError::Endpoint { .. }),
                "{endpoint}: {err}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint:?}")),
                "{err}"
            );
        }
        for (var, protocol) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ] {
            let err = OtlpConfig::from_vars(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (var, protocol),
            ]))
            .expect_err(protocol);
            assert!(matches!(err, OtlpError::Protocol { .. }), "{err}");
            assert!(err.to_string().contains(var), "{err}");
        }
        // The traces-specific protocol wins over the general one.
        assert!(
            config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ])
            .is_some()
        );
    }

    #[test]
    fn only_a_real_service_name_overrides_the_default() {
        let named = |name: &str| {
            names_service(
                &Resource::builder_empty()
                    .with_service_name(name.to_owned())
                    .build(),
            )
        };
        assert!(named("checkout"));
        assert!(!named("unknown_service"));
        assert!(!named("unknown_service:ingest"));
        assert!(!names_service(&Resource::builder_empty().build()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_guard_shuts_down_at_once_on_a_runtime_worker() {
        let config = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]).expect("on");
        let telemetry = Telemetry {
            provider: Some(tracer_provider(&config).expect("provider")),
            logs: None,
        };
        assert!(telemetry.exporting());
        // On a runtime worker (where `block_in_place` is allowed), nothing buffered: returns
        // well within the SDK's 5 s shutdown timeout.
        let started = std::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::spawn(async move { telemetry.shutdown() }),
        )
        .await
        .expect("shutdown returns")
        .expect("no panic");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn building_the_exporter_outside_a_runtime_is_an_error_not_a_panic() {
        let config = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]).expect("on");
        assert!(matches!(
            tracer_provider(&config),
            Err(OtlpError::NoRuntime)
        ));
    }

    /// A request with `headers` on `/v1/events`.
    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method("POST").uri("/v1/events");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(axum::body::Body::empty())
            .expect("valid request")
    }

    #[test]
    fn at_info_no_request_span_is_built_and_library_debug_callsites_are_off() {
        let _serial = crate::scoped_subscriber_lock();
        let layers = log_layers("info", std::io::sink).expect("valid filter");
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            assert!(request_span(&request(&[("x-request-id", "r-1")])).is_disabled());
            assert!(!tracing::event_enabled!(target: "hyper::proto::h1", tracing::Level::DEBUG));
            assert!(!tracing::event_enabled!(target: "aws_smithy_runtime", tracing::Level::DEBUG));
            assert!(tracing::event_enabled!(target: ACCESS_TARGET, tracing::Level::INFO));
        });
    }

    #[test]
    fn at_debug_the_request_span_is_built_for_the_log() {
        let _serial = crate::scoped_subscriber_lock();
        let layers = log_layers("debug", std::io::sink).expect("valid filter");
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            assert!(!request_span(&request(&[("x-request-id", "r-1")])).is_disabled());
        });
    }

    #[test]
    fn traceparent_is_parsed_strictly() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("hv"),
        );
        assert_eq!(trace_id(&h), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            h.insert("traceparent", bad.parse().expect("hv"));
            assert_eq!(trace_id(&h), None, "{bad}");
        }
    }

    #[test]
    fn the_logged_trace_id_is_the_one_the_propagator_continues() {
        use opentelemetry::propagation::TextMapPropagator as _;
        use opentelemetry::trace::TraceContextExt as _;
        let propagator = TraceContextPropagator::new();
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        for value in [
            format!("00-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}-00f067aa0ba902b7-00"),
            format!(" 00-{id}-00f067aa0ba902b7-01 "),
            format!("01-{id}-00f067aa0ba902b7-01-future"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00F067AA0BA902B7-01"),
            format!("00-{id}-00f067aa0ba902b7-0A"),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}-00f067aa0ba902b7"),
            "garbage".to_owned(),
        ] {
            let carrier =
                std::collections::HashMap::from([(TRACEPARENT.to_owned(), value.clone())]);
            let context = propagator.extract(&carrier);
            let span = context.span();
            let continued = span.span_context();
            let theirs = continued
                .is_valid()
                .then(|| continued.trace_id().to_string());
            let header = http::HeaderValue::from_str(&value).expect("header value");
            let ours = traceparent_trace_id(&header).map(str::to_owned);
            assert_eq!(ours, theirs, "{value:?}");
        }
    }
}
