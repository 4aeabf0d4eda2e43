//! Logs, request metrics and the access log.
//!
//! * [`init_tracing`]: JSON logs on stdout, filtered by `RUST_LOG`.
//! * [`request_span`]: one span per request carrying the request id (`x-request-id`, set by
//!   tower-http when the client sent none) and the W3C `traceparent` trace id, so every log
//!   line of a request can be joined with the caller's trace.
//! * [`track`]: middleware that counts and times each request by route template, method and
//!   status, counts refusals by reason, and writes the one access-log line per request.
//!
//! OpenTelemetry export (OTLP) is not wired yet; see the README.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;

use crate::error::RejectReason;
use crate::state::AppState;

/// Installs the JSON log subscriber. Call once, from `main`.
///
/// # Errors
/// A bad filter expression, or a subscriber already installed.
pub fn init_tracing(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("RUST_LOG={filter:?} is not a valid log filter: {e}"))?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|e| e.to_string())
}

/// The trace id of a valid W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
#[must_use]
pub fn trace_id(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then_some(trace)
}

/// The span of one request (used with `tower_http::trace::TraceLayer`).
pub fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = trace_id(request.headers()).unwrap_or(""),
        key_id = tracing::field::Empty,
    )
}

fn method_label(method: &Method) -> &'static str {
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

/// Request metrics and the access log line.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let length = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let m = state.metrics();
    m.http_requests
        .with_label_values(&[&route, method, status.as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[&route, method])
        .observe(elapsed.as_secs_f64());
    let reason = response.extensions().get::<RejectReason>().map(|r| r.0);
    if let Some(reason) = reason {
        m.requests_rejected.with_label_values(&[reason]).inc();
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(
            target: "access",
            method,
            route = %route,
            status = status.as_u16(),
            reason,
            duration_ms = ms,
            request_bytes = length,
            "request"
        );
    } else {
        tracing::info!(
            target: "access",
            method,
            route = %route,
            status = status.as_u16(),
            reason,
            duration_ms = ms,
            request_bytes = length,
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
