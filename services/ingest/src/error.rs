//! The HTTP layer's errors and how each one is answered.
//!
//! Every way a request can fail is one [`ApiError`] variant; [`ApiError::status`] and the
//! [`IntoResponse`] impl are the one exhaustive match from failure to status, headers and JSON
//! body. Bodies always have an `error` string; validation failures add `details` (which event,
//! where, what), and 503s list the indexes of the events to send again in `unaccepted` (absent
//! only from a shed request, [`ApiError::Overloaded`]: nothing of it was sent).

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::metrics::request_reason;

/// Where in the request a problem is, and what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    /// 0-based index of the event in the request (absent for whole-body syntax errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// JSON Pointer inside the event (schema errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based line in the (decompressed) body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column (byte offset in the line) in the (decompressed) body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// A request that is not answered 200.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No API key, or one that is not configured.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The key's rate limit is exhausted.
    #[error("rate limit exceeded for this API key")]
    RateLimited {
        /// Until a request would be let in.
        retry_after: Duration,
    },
    /// `Content-Type` or `Content-Encoding` not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body (as received or decompressed) is larger than the cap.
    #[error("request body is larger than {limit} bytes{after}")]
    BodyTooLarge {
        /// The cap.
        limit: usize,
        /// Empty, or a note that the cap was hit while decompressing.
        after: &'static str,
    },
    /// More events in the request than `INGEST_MAX_EVENTS`; nothing was sent.
    #[error(
        "more than {limit} events in one request; nothing was sent: send them in smaller requests"
    )]
    TooManyEvents {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive before the request's send deadline; nothing was sent.
    #[error("the request body did not arrive in time; nothing was sent")]
    RequestTimeout,
    /// The body or some events are invalid; nothing was sent.
    #[error("{message}")]
    BadRequest {
        /// Summary.
        message: String,
        /// One entry per problem (capped).
        details: Vec<Detail>,
    },
    /// The in-flight byte cap is reached; nothing was sent. Found while the body arrives or
    /// inflates, or when its events' bookkeeping is counted, always before anything is sent,
    /// so the answer has no `unaccepted` list: the whole request is to be sent again.
    #[error("the service is at its in-flight limit; nothing was sent, retry later")]
    Overloaded,
    /// Firehose did not accept every record within the retry budget.
    #[error("Firehose did not accept every event: {reason}")]
    FirehoseUnavailable {
        /// Firehose record ids for accepted events, `None` for events to send again.
        record_ids: Vec<Option<String>>,
        /// The last Firehose error.
        reason: String,
    },
    /// The service is draining for shutdown; nothing was sent.
    #[error("the service is shutting down; nothing was sent, retry on another instance")]
    ShuttingDown {
        /// Events in the request (all of them are unaccepted).
        events: usize,
    },
}

/// Wait suggested to clients after a 503.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(1);

/// Longest `Retry-After` sent (a day): a rate limit configured absurdly low must not produce a
/// value clients cannot parse (some read it as a signed 64-bit number) and so ignore.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [Detail]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unaccepted: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_ids: Option<&'a [Option<String>]>,
}

impl ApiError {
    /// A 400 about the body as a whole (unreadable, not valid in its coding), with no
    /// per-event details.
    #[must_use]
    pub fn bad_body(message: String) -> Self {
        Self::BadRequest {
            message,
            details: Vec::new(),
        }
    }

    /// The HTTP status of this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } | Self::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Overloaded | Self::FirehoseUnavailable { .. } | Self::ShuttingDown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The `reason` label of `ingest_requests_rejected_total`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => request_reason::UNAUTHORIZED,
            Self::RateLimited { .. } => request_reason::RATE_LIMITED,
            Self::UnsupportedMediaType(_) => request_reason::CONTENT_TYPE,
            Self::BodyTooLarge { .. } | Self::TooManyEvents { .. } => {
                request_reason::BODY_TOO_LARGE
            }
            Self::RequestTimeout => request_reason::TIMEOUT,
            Self::BadRequest { .. } => request_reason::BAD_REQUEST,
            Self::Overloaded => request_reason::SHED,
            Self::FirehoseUnavailable { .. } => request_reason::FIREHOSE_UNAVAILABLE,
            Self::ShuttingDown { .. } => request_reason::SHUTTING_DOWN,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::Overloaded | Self::FirehoseUnavailable { .. } | Self::ShuttingDown { .. } => {
                Some(RETRY_AFTER_UNAVAILABLE)
            }
            Self::Unauthorized(_)
            | Self::UnsupportedMediaType(_)
            | Self::BodyTooLarge { .. }
            | Self::TooManyEvents { .. }
            | Self::RequestTimeout
            | Self::BadRequest { .. } => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let mut body = ErrorBody {
            error: self.to_string(),
            details: None,
            unaccepted: None,
            record_ids: None,
        };
        match &self {
            Self::BadRequest { details, .. } => {
                body.details = (!details.is_empty()).then_some(details.as_slice());
            }
            Self::ShuttingDown { events } => {
                body.unaccepted = Some((0..*events).collect());
            }
            Self::FirehoseUnavailable { record_ids, .. } => {
                body.unaccepted = Some(
                    record_ids
                        .iter()
                        .enumerate()
                        .filter_map(|(i, id)| id.is_none().then_some(i))
                        .collect(),
                );
                body.record_ids = Some(record_ids);
            }
            Self::Unauthorized(_)
            | Self::RateLimited { .. }
            | Self::UnsupportedMediaType(_)
            | Self::BodyTooLarge { .. }
            | Self::TooManyEvents { .. }
            | Self::RequestTimeout
            | Self::Overloaded => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(wait) = retry_after {
            // Retry-After is whole seconds; round up so clients never come back too early.
            let secs = wait
                .as_secs()
                .saturating_add(u64::from(wait.subsec_nanos() > 0));
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(secs.clamp(1, MAX_RETRY_AFTER_SECS)),
            );
        }
        if matches!(self, Self::Unauthorized(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
            .extensions_mut()
            .insert(RejectReason(self.reason()));
        response
    }
}

/// Response extension naming why a request was refused, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct RejectReason(pub &'static str);
