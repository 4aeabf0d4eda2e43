//! HTTP handlers: event intake on the public listener, health and metrics on the admin one.
//!
//! The intake handler runs the checks in the order that costs least first: key, rate limit,
//! content type, body size, then parsing and validation, then the producer. Only when the
//! producer says Firehose accepted every record does the client get 200.
//!
//! It also keeps the request timeout (`INGEST_REQUEST_TIMEOUT`), in a way that never leaves a
//! client guessing: the body must be in before the send deadline (start + the send window, see
//! [`crate::config::Config::send_window`]) or the answer is 408 and nothing was sent; events
//! not inside a `PutRecordBatch` call by the deadline are withdrawn and listed in a 503 as not
//! accepted, and a call in flight at the deadline is waited for (at most the call timeout). So
//! every answer says which events Firehose confirmed; the others are never sent again by the
//! service (one of them may still be in Firehose if its call ended without an answer: see
//! [`crate::producer`], step 4).

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;
use serde::Serialize;

use crate::auth::{AuthOutcome, KeyId};
use crate::error::ApiError;
use crate::producer::{Reservation, SubmitOutcome};
use crate::state::AppState;
use crate::validate;

/// The 200 answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Number of events accepted (all of the request's).
    pub accepted: usize,
    /// Firehose record ids, index for index with the request's events.
    pub record_ids: Vec<String>,
}

/// `POST /v1/events` and `POST /`: 200 with [`Accepted`], or every refusal as an [`ApiError`].
/// The response carries the caller's [`KeyId`] (when the key was accepted) as an extension, for
/// the access-log line. (It takes the whole request rather than a `HeaderMap` extractor, which
/// would clone every header of every request.)
///
/// Everything the request's head decides is decided before the first await, and the head is
/// dropped then: a request waits a linger or more for Firehose, and with a thousand requests
/// in flight its headers would be out of cache by the time they were freed after the answer.
pub async fn ingest(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let key = match authenticate(&state, &parts.headers) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    // For the access line, should the client go away before the answer.
    let progress = parts
        .extensions
        .remove::<std::sync::Arc<crate::middleware::Progress>>();
    if let Some(progress) = &progress {
        progress.key_accepted(&key);
    }
    let head = read_head(&state, &parts.headers, &key);
    drop(parts);
    let answer = match head {
        Ok(head) => accept(&state, head, body, progress.as_deref()).await,
        Err(refusal) => Err(refusal),
    };
    let events = answer.as_ref().ok().map(|accepted| accepted.accepted);
    let mut response = answer.into_response();
    response.extensions_mut().insert(key);
    if let Some(events) = events {
        response
            .extensions_mut()
            .insert(crate::middleware::EventCount(events));
    }
    response
}

/// The caller's key id, or the 401 that refuses it.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<KeyId, ApiError> {
    let key = match state.auth().check(headers) {
        AuthOutcome::Allowed(key) => key,
        AuthOutcome::Missing => {
            return Err(ApiError::Unauthorized(
                "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            ));
        }
        AuthOutcome::Malformed => {
            return Err(ApiError::Unauthorized(
                "malformed Authorization header: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            ));
        }
        AuthOutcome::Invalid => return Err(ApiError::Unauthorized("invalid API key")),
    };
    // On the exported request span (a no-op when trace export is off).
    tracing::Span::current().record("key_id", tracing::field::display(&key));
    Ok(key)
}

/// What the request's head (after authentication) says about its body.
struct Head {
    framing: validate::Framing,
    coding: Option<validate::Coding>,
    /// The body must be in before this, and the events inside a call (module docs).
    send_by: tokio::time::Instant,
}

/// The checks on the head for the caller `key`: rate limit, content type and encoding, a
/// declared length over the cap.
fn read_head(state: &AppState, headers: &HeaderMap, key: &KeyId) -> Result<Head, ApiError> {
    state
        .limiter()
        .check(key)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let framing = validate::framing(headers)?;
    let coding = validate::content_coding(headers)?;
    let send_by = tokio::time::Instant::now() + state.send_window();
    let limit = state.max_body_bytes();
    if validate::declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit, after: "" });
    }
    Ok(Head {
        framing,
        coding,
        send_by,
    })
}

/// Bytes counted against the in-flight cap for each event besides its own bytes, while its
/// request is handled: its record handle, the producer's slot and queue entry, its record id and
/// its part of the answer. Measured: one NDJSON request of 100,000 `{"i":N}` events (1.19 MB)
/// raised the peak RSS of a fresh `ingest` by 25.4 MB, ≈ 254 bytes per event with the body's
/// own ≈ 12 (`VmHWM` before and after, fake Firehose).
pub const EVENT_BOOKKEEPING_BYTES: usize = 256;

/// Largest (decompressed) body validated on the async worker that read it; larger ones go to
/// the blocking pool.
const INLINE_VALIDATION_BYTES: usize = 1024 * 1024;

/// Runs CPU work on the blocking pool. A panic there is the service's fault, not the body's:
/// it is logged and carried on into this request's task, as if the work had run inline (the
/// connection closes without an answer, and the client sends again), never a 400, after which
/// clients drop their events. `failed` names the work for the log. (Release builds abort on a
/// panic, see the workspace `Cargo.toml`; this is for unwinding builds: tests, embedders.)
async fn on_blocking_pool<T: Send + 'static>(
    failed: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => {
            tracing::error!(what = failed, "panicked on the blocking pool");
            std::panic::resume_unwind(e.into_panic())
        }
        // Cancelled: only when the runtime shuts down. Nothing was sent, and the events are
        // not counted yet: the answer without an `unaccepted` list (send it all again).
        Err(_) => Err(ApiError::Overloaded),
    }
}

/// Everything after the head: the body, its events, the producer.
async fn accept(
    state: &AppState,
    head: Head,
    body: Body,
    progress: Option<&crate::middleware::Progress>,
) -> Result<Json<Accepted>, ApiError> {
    let Head {
        framing,
        coding,
        send_by,
    } = head;
    let limit = state.max_body_bytes();
    // The body counts against the in-flight cap as it arrives (and as it inflates), so slow
    // or large uploads cannot hold memory the cap does not see.
    let mut held = state.producer().reservation();
    // `spare`: what `held` counts beyond the body's bytes (its buffer's spare room), let go of
    // with the body.
    let (raw, mut spare) = tokio::time::timeout_at(send_by, read_body(body, limit, &mut held))
        .await
        .map_err(|_| ApiError::RequestTimeout)??;
    let body = if let Some(coding) = coding {
        let raw_len = raw.len();
        // Inflating is CPU work whose size the compressed length does not tell (10 KB can
        // inflate to the 10 MiB cap): always off the async workers, or a few small bombs
        // would stall every other request.
        let (inflated, mut back) = on_blocking_pool("could not decompress the body", move || {
            // The decoder's own memory (a zstd window of up to 8 MB) is held while it works.
            let inflated = validate::decoder_memory(coding, &raw).and_then(|scratch| {
                if !held.grow(scratch) {
                    return Err(ApiError::Overloaded);
                }
                let inflated = validate::decompress(coding, &raw, limit, |n| held.grow(n));
                held.shrink(scratch);
                inflated
            });
            (inflated, held)
        })
        .await?;
        // The compressed bytes are gone.
        back.shrink(raw_len + spare);
        spare = 0;
        let inflated = inflated?;
        // What is left counts the output's capacity as it grew; the output was cut to its
        // length since.
        back.shrink(back.bytes().saturating_sub(inflated.len()));
        held = back;
        inflated
    } else {
        raw
    };

    // Validating is linear in the body, and a schema can make it costly: a large body is
    // checked on the blocking pool, so the async workers keep answering small requests. Up to
    // 1 MiB stays inline (about a millisecond at most without a schema): a pool hand-off
    // would cost a batch of 100 small events more than its check.
    //
    // The reservation goes with the work and comes back with it, like the decompressor's: if
    // the client goes away meanwhile (hyper drops this future), the work still holds the body
    // until it ends, and the cap must count it until then. Kept here, it was let go at once,
    // and clients that send large bodies and hang up could hold memory the cap did not see.
    let checked = if body.len() > INLINE_VALIDATION_BYTES {
        let body = body.clone();
        let state = state.clone();
        let (checked, back) = on_blocking_pool("could not validate the body", move || {
            let checked = validate::records(
                &body,
                framing,
                state.schema(),
                state.max_events(),
                state.max_event_bytes(),
            );
            (checked, held)
        })
        .await?;
        held = back;
        checked
    } else {
        validate::records(
            &body,
            framing,
            state.schema(),
            state.max_events(),
            state.max_event_bytes(),
        )
    };
    let records = checked.map_err(|invalid| {
        for &(reason, size) in &invalid.rejected {
            let m = state.metrics();
            m.events_rejected.with_label_values(&[reason]).inc();
            m.event_bytes_rejected
                .with_label_values(&[reason])
                .inc_by(size as u64);
        }
        invalid.error
    })?;
    // The records are a copy of the events: the body need not be held while they are sent
    // (what `held` keeps stands for the records, as large as the body).
    drop(body);
    held.shrink(spare);
    let events = records.len();
    // What each event costs besides its bytes counts too, or a body of tiny events (`{}` lines:
    // 100,000 of them are 300 KB) would hold many times what the cap sees. (So a request can
    // also be shed here, after its body arrived: still 503 with nothing sent.)
    if !held.grow(events.saturating_mul(EVENT_BOOKKEEPING_BYTES)) {
        return Err(ApiError::Overloaded);
    }
    if state.readiness().is_closing() {
        return Err(ApiError::ShuttingDown { events });
    }
    let bytes: usize = records.iter().map(bytes::Bytes::len).sum();
    let sizes: Vec<usize> = records.iter().map(bytes::Bytes::len).collect();
    if let Some(progress) = progress {
        progress.submitted(events);
    }
    match state
        .producer()
        .submit_reserved(records, Some(send_by), held)
        .await
    {
        SubmitOutcome::Accepted { record_ids } => {
            state.metrics().events_accepted.inc_by(events as u64);
            state.metrics().event_bytes_accepted.inc_by(bytes as u64);
            Ok(Json(Accepted {
                accepted: events,
                record_ids,
            }))
        }
        SubmitOutcome::Incomplete { record_ids, error } => {
            let accepted_bytes: usize = record_ids
                .iter()
                .zip(&sizes)
                .filter_map(|(id, size)| id.as_ref().map(|_| *size))
                .sum();
            let accepted = record_ids.iter().filter(|id| id.is_some()).count();
            state.metrics().events_accepted.inc_by(accepted as u64);
            state
                .metrics()
                .event_bytes_accepted
                .inc_by(accepted_bytes as u64);
            Err(ApiError::FirehoseUnavailable {
                record_ids,
                reason: error,
            })
        }
        // Not from a reserved submission; kept for completeness.
        SubmitOutcome::Overloaded => Err(ApiError::Overloaded),
        SubmitOutcome::Closed => Err(ApiError::ShuttingDown { events }),
    }
}

/// Reads the whole body, at most `limit` bytes, holding it against the in-flight cap (in
/// `held`) as it arrives.
///
/// Most bodies arrive in one piece: that one is kept as it came, without a copy. From the
/// second piece on, each is copied into one buffer as it arrives and let go of, and the
/// buffer's capacity is what the cap counts. A piece kept as it came is a slice of hyper's read
/// buffer and keeps that buffer alive, so a body kept as thousands of pieces (trickled a byte per
/// packet, or sent in 1-byte chunks) held a buffer each, hundreds of times the bytes counted
/// (helper-68). The copy is the one joining the pieces always took, made as they come.
///
/// Returns the body and the spare room of its buffer that `held` counts besides its bytes.
async fn read_body(
    mut body: Body,
    limit: usize,
    held: &mut Reservation,
) -> Result<(Bytes, usize), ApiError> {
    let mut first = Bytes::new();
    // The buffer the pieces are copied into, and the capacity `held` counts for it.
    let mut joined: Option<(BytesMut, usize)> = None;
    let mut total = 0_usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::bad_body("could not read the request body".to_owned()))?;
        // Trailers carry no events.
        let Ok(piece) = frame.into_data() else {
            continue;
        };
        if piece.is_empty() {
            continue;
        }
        total += piece.len();
        if total > limit {
            return Err(ApiError::BodyTooLarge { limit, after: "" });
        }
        match joined.as_mut() {
            None if first.is_empty() => {
                if !held.grow(piece.len()) {
                    return Err(ApiError::Overloaded);
                }
                first = piece;
            }
            None => {
                // The second piece: room for twice what came so far, up to the limit.
                let (buffer, counted) = joined.insert((BytesMut::new(), 0));
                if !regrow(buffer, counted, total.saturating_mul(2).min(limit), held) {
                    return Err(ApiError::Overloaded);
                }
                buffer.extend_from_slice(&first);
                buffer.extend_from_slice(&piece);
                held.shrink(first.len());
                first = Bytes::new();
            }
            Some((buffer, counted)) => {
                let needed = buffer.len() + piece.len();
                if *counted < needed
                    && !regrow(
                        buffer,
                        counted,
                        counted.saturating_mul(2).min(limit).max(needed),
                        held,
                    )
                {
                    return Err(ApiError::Overloaded);
                }
                buffer.extend_from_slice(&piece);
            }
        }
    }
    Ok(match joined {
        Some((buffer, counted)) => {
            let spare = counted - buffer.len();
            (buffer.freeze(), spare)
        }
        None => (first, 0),
    })
}

/// Moves `buffer` into one of exactly `wanted` bytes (at least what it holds), counted in
/// `held` before it is allocated (`BytesMut::reserve` would at least double, past the body
/// limit); `counted` is what `held` counts for the buffer. False, with nothing changed, when the
/// cap refuses the growth.
fn regrow(
    buffer: &mut BytesMut,
    counted: &mut usize,
    wanted: usize,
    held: &mut Reservation,
) -> bool {
    let wanted = wanted.max(buffer.len());
    if !held.grow(wanted.saturating_sub(*counted)) {
        return false;
    }
    let mut bigger = BytesMut::with_capacity(wanted);
    bigger.extend_from_slice(buffer);
    *buffer = bigger;
    *counted = wanted;
    true
}

/// A routing answer: `status` with the `{"error": ...}` body every error has.
fn routing_error(status: StatusCode, error: &'static str) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

/// Answer to anything the public router does not serve.
pub async fn not_found() -> Response {
    routing_error(
        StatusCode::NOT_FOUND,
        "not found: POST events to /v1/events",
    )
}

/// Answer to anything the admin router does not serve (JSON, as on the public listener).
pub async fn admin_not_found() -> Response {
    routing_error(
        StatusCode::NOT_FOUND,
        "not found: the admin listener serves GET /healthz, /readyz and /metrics",
    )
}

/// Answer to another method than POST on an intake path (axum adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    routing_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: POST events to /v1/events",
    )
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Body of `GET /readyz`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyBody {
    /// Whether this instance should get traffic.
    pub ready: bool,
    /// Whether the last `DescribeDeliveryStream` check succeeded.
    pub stream_reachable: bool,
    /// Whether SIGTERM was received.
    pub shutting_down: bool,
    /// The last check's error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /readyz`: 200 when the stream is reachable and the service is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.readiness();
    let body = ReadyBody {
        ready: r.is_ready(),
        stream_reachable: r.stream_reachable(),
        shutting_down: r.is_terminating(),
        last_error: r.last_error(),
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic on the blocking pool is the service's fault: it carries on into the request's
    /// task (no answer; the client sends again), never a 400 that tells the client to drop
    /// its events.
    #[tokio::test]
    async fn a_panic_on_the_blocking_pool_is_not_a_400() {
        let joined = tokio::spawn(async {
            on_blocking_pool("could not validate the body", || -> usize {
                panic!("a validation bug")
            })
            .await
        })
        .await;
        assert!(joined.expect_err("the task panics").is_panic());
        let fine = on_blocking_pool("x", || 7).await;
        assert_eq!(fine, Ok(7));
    }
}
