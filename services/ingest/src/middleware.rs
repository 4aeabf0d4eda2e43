//! The public router's per-request wrapper: one hand-written tower layer instead of five.
//!
//! For every request, [`Track`]:
//! * keeps the client's `x-request-id` (up to [`MAX_REQUEST_ID_BYTES`]) or sets a new UUID v4,
//!   and echoes it in the answer;
//! * runs the handler in the request span ([`telemetry::request_span`], built only when
//!   something records it);
//! * counts and times the request by route template, method and status, counts refusals by
//!   reason, and emits the one access-log line ([`crate::access_log`]) with the request's ids;
//! * does the same, with status [`CLIENT_CLOSED`] (499, nginx's "client closed request"), for a
//!   request whose client went away before the answer: hyper then drops the handler's future,
//!   and without this the request would leave no line and no count although its events may
//!   still be delivered (the producer sends what it was given).
//!
//! tower-http's `SetRequestId`, `PropagateRequestId`, `Trace` and `Timeout` layers plus an
//! `axum::middleware::from_fn` did the same in five nested services, each with its own future
//! and the last with a boxed clone of the rest of the stack: ~19,000 instructions per request
//! (callgrind, `scripts/callgrind-ingest.sh`), more than the minimal handler's whole request.
//! One service with one future does it for a fraction of that.
//!
//! There is no timeout here: cutting the handler off would answer a request whose events the
//! producer may still send. The intake handler enforces `INGEST_REQUEST_TIMEOUT` itself
//! ([`crate::routes`]), and its answers say which events were not accepted.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use futures::future::BoxFuture;
use http::HeaderValue;
use opentelemetry::trace::Status;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::access_log::ACCESS_TARGET;
use crate::auth::KeyId;
use crate::error::RejectReason;
use crate::state::AppState;
use crate::telemetry::{self, REQUEST_ID, TRACEPARENT};
use crate::validate;

/// Wraps a service in [`Track`].
#[derive(Debug, Clone)]
pub struct TrackLayer {
    state: AppState,
}

impl TrackLayer {
    /// Metrics go to `state`.
    #[must_use]
    pub const fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
    state: AppState,
}

/// What the access line and the metrics need from the request, taken before the handler gets it.
struct Seen {
    started: Instant,
    route: Option<MatchedPath>,
    method: &'static str,
    length: Option<u64>,
    request_id: HeaderValue,
    traceparent: Option<HeaderValue>,
    /// The connection's peer (the ingress or load balancer, or the client itself).
    peer: Option<std::net::IpAddr>,
    /// Who sent it, as the request says: `X-Forwarded-For` (the client and the proxies on the
    /// way, which any client can also write itself), `User-Agent`, and the ALB's
    /// `X-Amzn-Trace-Id` (to join the ALB's access log).
    forwarded_for: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    amzn_trace_id: Option<HeaderValue>,
}

/// Longest value of a client-written header (`X-Forwarded-For`, `User-Agent`,
/// `X-Amzn-Trace-Id`) written into the access line; a longer one is cut there. A client can
/// send kilobytes, and every byte would be written to the log of every request.
pub const MAX_LOGGED_HEADER_BYTES: usize = 256;

/// `value` as text for the access line, cut at [`MAX_LOGGED_HEADER_BYTES`]; `None` for a value
/// that is not visible ASCII (`HeaderValue::to_str`), which a log of text would garble.
fn logged(value: Option<&HeaderValue>) -> Option<&str> {
    let text = value?.to_str().ok()?;
    // Visible ASCII: every byte is a character boundary.
    Some(text.get(..MAX_LOGGED_HEADER_BYTES).unwrap_or(text))
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let headers = request.headers_mut();
        let request_id = match headers.get(REQUEST_ID) {
            // Only visible ASCII is kept (no spaces or tabs either, which a header value may
            // hold): other bytes would be echoed, but the log (which needs text) would lose the
            // id, and a space splits it in any log read as words. An empty one is no id: one is
            // generated.
            Some(id)
                if !id.is_empty()
                    && id.len() <= MAX_REQUEST_ID_BYTES
                    && id.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) =>
            {
                id.clone()
            }
            _ => {
                let id = new_request_id();
                headers.insert(REQUEST_ID, id.clone());
                id
            }
        };
        let seen = Seen {
            started,
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: telemetry::method_label(request.method()),
            length: validate::declared_length(request.headers()),
            request_id,
            traceparent: request.headers().get(TRACEPARENT).cloned(),
            peer: request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
            forwarded_for: request.headers().get("x-forwarded-for").cloned(),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            amzn_trace_id: request.headers().get("x-amzn-trace-id").cloned(),
        };
        let span = telemetry::request_span(&request);
        let progress = std::sync::Arc::new(Progress::default());
        request
            .extensions_mut()
            .insert(std::sync::Arc::clone(&progress));
        // Called here, not inside the future, on the service `poll_ready` was just asked about:
        // the tower contract holds without cloning the inner service for every request.
        let handler = self.inner.call(request);
        let mut tracked = Tracked {
            state: self.state.clone(),
            span,
            seen,
            progress,
            answered: false,
        };
        Box::pin(async move {
            let mut response = match handler.instrument(tracked.span.clone()).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            response
                .headers_mut()
                .insert(REQUEST_ID, tracked.seen.request_id.clone());
            tracked.answered = true;
            let answer = Answer {
                status: response.status(),
                reason: response.extensions().get::<RejectReason>().map(|r| r.0),
                key_id: response.extensions().get::<KeyId>().map(KeyId::as_str),
                events: response.extensions().get::<EventCount>().map(|n| n.0),
            };
            record(&tracked.state, &tracked.span, &tracked.seen, &answer);
            Ok(response)
        })
    }
}

/// Status recorded for a request whose client closed the connection before the answer
/// (nginx's 499, "client closed request"; no answer was sent).
pub const CLIENT_CLOSED: http::StatusCode = match http::StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a valid status code"),
};

/// The access line's `reason` for [`CLIENT_CLOSED`].
pub const CLIENT_CLOSED_REASON: &str = "client_closed";

/// How far the handler got, for the line of a request whose client goes away before the
/// answer ([`CLIENT_CLOSED`]): whose key it was, and how many events it handed to the producer,
/// which sends them as if the client had waited. [`Track`] puts it in the request's extensions
/// (an `Arc<Progress>`); the handler ([`crate::routes`]) fills it in. Without it such a line
/// had no `key_id` and no `events`, and what a key sent could not be counted from the log
/// (helper-91).
#[derive(Debug, Default)]
pub struct Progress {
    key_id: std::sync::OnceLock<KeyId>,
    submitted: std::sync::atomic::AtomicUsize,
}

impl Progress {
    /// The request's key was accepted.
    pub fn key_accepted(&self, key: &KeyId) {
        let _ = self.key_id.set(key.clone());
    }

    /// `events` events were handed to the producer.
    pub fn submitted(&self, events: usize) {
        self.submitted
            .store(events, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One request on its way: records it as [`CLIENT_CLOSED`] if dropped before it was answered.
struct Tracked {
    state: AppState,
    span: tracing::Span,
    seen: Seen,
    progress: std::sync::Arc<Progress>,
    answered: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.answered {
            let submitted = self
                .progress
                .submitted
                .load(std::sync::atomic::Ordering::Relaxed);
            let answer = Answer {
                status: CLIENT_CLOSED,
                reason: Some(CLIENT_CLOSED_REASON),
                key_id: self.progress.key_id.get().map(KeyId::as_str),
                events: (submitted > 0).then_some(submitted),
            };
            record(&self.state, &self.span, &self.seen, &answer);
        }
    }
}

/// What the access line and the metrics need from the answer.
struct Answer<'a> {
    status: http::StatusCode,
    /// A refusal's reason ([`RejectReason`]), or [`CLIENT_CLOSED_REASON`].
    reason: Option<&'static str>,
    /// The caller's key id, once the key was accepted.
    key_id: Option<&'a str>,
    /// The events Firehose accepted ([`EventCount`]); for [`CLIENT_CLOSED`], the events handed
    /// to the producer ([`Progress`]).
    events: Option<usize>,
}

/// The number of events a request's answer accepted, carried to the access line as a response
/// extension (like [`KeyId`]): with `key_id`, what a key sent can be counted from the log.
#[derive(Debug, Clone, Copy)]
pub struct EventCount(pub usize);

/// Longest client `x-request-id` kept. A longer one is replaced by a fresh id (in the request
/// as the handler sees it and in the answer): it would be echoed and written into every log
/// line of the request, and a client can send tens of kilobytes.
pub const MAX_REQUEST_ID_BYTES: usize = 200;

/// A fresh request id: a random UUID v4, hyphenated.
fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a hyphenated UUID is a valid header value")
}

/// Metrics, the exported span's status and the access-log line for one request.
fn record(state: &AppState, span: &tracing::Span, seen: &Seen, answer: &Answer<'_>) {
    let elapsed = seen.started.elapsed();
    let status = answer.status;
    let route = seen.route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = seen.method;
    // On the exported request span (no-ops when trace export is off).
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
    let m = state.metrics();
    m.observe_request(route, method, status, elapsed.as_secs_f64());
    let reason = answer.reason;
    // A client that went away was not refused.
    if let Some(reason) = reason.filter(|_| status != CLIENT_CLOSED) {
        m.requests_rejected.with_label_values(&[reason]).inc();
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    let request_id = seen.request_id.to_str().ok();
    let trace_id = seen
        .traceparent
        .as_ref()
        .and_then(telemetry::traceparent_trace_id);
    let key_id = answer.key_id;
    let length = seen.length;
    let events = answer.events;
    let peer_text = seen.peer.map(crate::access_log::IpText::new);
    let peer = peer_text.as_ref().map(crate::access_log::IpText::as_str);
    let forwarded_for = logged(seen.forwarded_for.as_ref());
    let user_agent = logged(seen.user_agent.as_ref());
    let amzn_trace_id = logged(seen.amzn_trace_id.as_ref());
    // One callsite per level (a callsite's level is fixed): the same fields at WARN or INFO.
    macro_rules! access_line {
        ($level:expr) => {
            tracing::event!(
                target: ACCESS_TARGET,
                $level,
                // A `str` field rather than the trailing format string: the same `message`, in
                // the same place, without formatting it through `Debug` for every line.
                message = "request",
                method,
                route,
                status = status.as_u16(),
                reason,
                duration_ms = ms,
                request_bytes = length,
                events,
                request_id,
                trace_id,
                amzn_trace_id,
                key_id,
                peer,
                forwarded_for,
                user_agent,
            )
        };
    }
    if status.is_server_error() {
        access_line!(tracing::Level::WARN);
    } else {
        access_line!(tracing::Level::INFO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.to_str().expect("ascii")).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
    }
}
