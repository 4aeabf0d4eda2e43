//! HTTP endpoint delivery, per Firehose's published request/response spec.
//!
//! One batch becomes one POST: the JSON body with `requestId`, a millisecond `timestamp` and one
//! base64 `data` per record; the `X-Amz-Firehose-*` headers; GZIP when configured. Only a 200
//! whose JSON body echoes the `requestId` with a numeric `timestamp` is success. Anything else is
//! retried with Firehose's backoff (1 s doubling, ±15 % jitter, 2 min cap) while the retry
//! duration lasts, which counts backoff time only, as the API reference says; the request id stays
//! the same on every retry. Once a shutdown's grace period is over, nothing more is attempted:
//! a request in progress is abandoned and the batch, like every batch still queued, goes to
//! backup at once. Spec: <https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html>.

use crate::backup::{b64, now_ms};
use crate::buffer::Record;
use crate::config::{Compression, HttpEndpointConfig};
use crate::destination::{DeliveryFailure, Destination};
use crate::metrics::Metrics;
use firehose_formats::http_endpoint::{
    self as spec, CommonAttributes, DeliveryRequest, RequestRecord,
};
use flate2::{Compression as Level, write::GzEncoder};
use futures::future::BoxFuture;
use rand::Rng as _;
use std::io::Write as _;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Firehose's error codes for HTTP endpoint failures.
pub mod error_code {
    /// No answer within the timeout.
    pub const REQUEST_TIMEOUT: &str = "HttpEndpoint.RequestTimeout";
    /// Response body of 1 MiB or more.
    pub const RESPONSE_TOO_LARGE: &str = "HttpEndpoint.ResponseTooLarge";
    /// A response that breaks the spec (even with status 200).
    pub const INVALID_RESPONSE: &str = "HttpEndpoint.InvalidResponseFromDestination";
    /// A non-200 status.
    pub const DESTINATION_EXCEPTION: &str = "HttpEndpoint.DestinationException";
    /// The connection could not be made.
    pub const CONNECTION_FAILED: &str = "HttpEndpoint.ConnectionFailed";
    /// The connection broke mid-request.
    pub const CONNECTION_RESET: &str = "HttpEndpoint.ConnectionReset";
    /// The TLS handshake failed: a certificate the client does not trust (self-signed, expired,
    /// for another name), or an `https://` URL's port answering in something else than TLS. (A
    /// port that closes on the ClientHello without a word is `ConnectionFailed`: nothing of TLS
    /// went wrong that the client could see.)
    pub const SSL_HANDSHAKE_FAILURE: &str = "HttpEndpoint.SSLHandshakeFailure";
    /// Not a Firehose code (Firehose keeps records for 24 h instead): the shutdown grace period
    /// ended before the batch was sent at all, so it went to backup with `attemptsMade` 0. The
    /// processor stage uses it too, for a batch never sent to the transform function
    /// (`processing-failed/`).
    pub const SHUTDOWN_BEFORE_ATTEMPT: &str = "Local.ShutdownBeforeAttempt";
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AttemptError {
    code: &'static str,
    message: String,
    /// Not retried: a 413, or an attempt abandoned at the end of the grace period.
    permanent: bool,
    /// The endpoint answered 413 (AWS's 2023 spec: not retried, and not backed up either).
    too_large: bool,
}

/// Delivers batches to one HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpDelivery {
    client: reqwest::Client,
    config: HttpEndpointConfig,
    stream: String,
    source_arn: String,
    metrics: Metrics,
}

impl HttpDelivery {
    /// A delivery client for `config`.
    ///
    /// # Errors
    /// If the TLS backend cannot start.
    pub fn new(
        config: HttpEndpointConfig,
        stream: String,
        source_arn: String,
        metrics: Metrics,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Firehose does not follow redirects and wants an uncompressed response.
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .build()?;
        Ok(Self {
            client,
            config,
            stream,
            source_arn,
            metrics,
        })
    }

    /// The request body and whether it is compressed.
    fn body(request: &DeliveryRequest, encoding: Compression) -> (Vec<u8>, usize) {
        // A struct of strings and integers always serializes.
        let json = serde_json::to_vec(request).unwrap_or_default();
        let plain = json.len();
        match encoding {
            Compression::None => (json, plain),
            Compression::Gzip => {
                let mut enc = GzEncoder::new(Vec::new(), Level::default());
                let _ = enc.write_all(&json);
                (enc.finish().unwrap_or_default(), plain)
            }
        }
    }

    /// One request. `body` is shared: each retry sends the same bytes without copying them
    /// (a batch's body is up to the buffer size, 64 MiB past the grace period).
    async fn attempt(&self, request_id: &str, body: bytes::Bytes) -> Result<(), AttemptError> {
        let mut req = self
            .client
            .post(&self.config.url)
            .timeout(Duration::from_secs(self.config.request_timeout_secs))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(spec::HEADER_PROTOCOL_VERSION, spec::PROTOCOL_VERSION)
            .header(spec::HEADER_REQUEST_ID, request_id)
            .header(spec::HEADER_SOURCE_ARN, &self.source_arn);
        if self.config.content_encoding == Compression::Gzip {
            req = req.header(http::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(key) = &self.config.access_key {
            req = req.header(spec::HEADER_ACCESS_KEY, key.expose());
        }
        if !self.config.common_attributes.is_empty() {
            let attrs = CommonAttributes {
                common_attributes: self.config.common_attributes.clone(),
            };
            req = req.header(
                spec::HEADER_COMMON_ATTRIBUTES,
                serde_json::to_string(&attrs).unwrap_or_default(),
            );
        }
        let mut resp = req.body(body).send().await.map_err(|e| classify(&e))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_encoding = resp.headers().contains_key(http::header::CONTENT_ENCODING);
        let content_length = resp.headers().contains_key(http::header::CONTENT_LENGTH);
        // "Less than 1 MiB including headers" (firehose-facts §1.4): the status line, each
        // header line with its `: ` and CRLF, and the blank line count with the body.
        let head_bytes = "HTTP/1.1 200 OK\r\n\r\n".len()
            + resp
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
            bytes.extend_from_slice(&chunk);
            if head_bytes + bytes.len() >= spec::MAX_RESPONSE_BYTES {
                return Err(AttemptError {
                    code: error_code::RESPONSE_TOO_LARGE,
                    message: "The response from the endpoint is too large (1 MiB or more, headers included).".into(),
                    permanent: false,
                    too_large: false,
                });
            }
        }
        let invalid = |why: String| AttemptError {
            code: error_code::INVALID_RESPONSE,
            message: format!("The response received from the endpoint is invalid: {why}"),
            permanent: false,
            too_large: false,
        };
        if status == http::StatusCode::OK {
            // Required with a body (firehose-facts §1.4): a chunked answer is not success.
            if !content_length && !bytes.is_empty() {
                return Err(invalid(
                    "Content-Length is required on a response with a body".into(),
                ));
            }
            if content_encoding {
                return Err(invalid(
                    "Content-Encoding must not be set on the response".into(),
                ));
            }
            if !content_type.as_deref().is_some_and(|c| {
                c.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            }) {
                return Err(invalid(format!(
                    "Content-Type is {content_type:?}, expected application/json"
                )));
            }
            return spec::parse_response(&bytes, request_id)
                .map(|_| ())
                .map_err(|e| invalid(e.to_string()));
        }
        // Non-200: the error message comes from the body when it follows the spec.
        let detail = spec::parse_response(&bytes, request_id)
            .ok()
            .and_then(|r| r.error_message)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned()
            });
        Err(AttemptError {
            code: error_code::DESTINATION_EXCEPTION,
            message: format!(
                "Received the following response from the endpoint destination. {}: {detail}",
                status.as_u16()
            ),
            permanent: status == http::StatusCode::PAYLOAD_TOO_LARGE,
            too_large: status == http::StatusCode::PAYLOAD_TOO_LARGE,
        })
    }
}

fn classify(e: &reqwest::Error) -> AttemptError {
    let (code, what) = if e.is_timeout() {
        (
            error_code::REQUEST_TIMEOUT,
            "The endpoint did not respond within the timeout",
        )
    } else if is_tls_failure(e) {
        (
            error_code::SSL_HANDSHAKE_FAILURE,
            "The TLS handshake with the endpoint failed",
        )
    } else if e.is_connect() {
        (
            error_code::CONNECTION_FAILED,
            "Could not connect to the endpoint",
        )
    } else {
        (
            error_code::CONNECTION_RESET,
            "The connection to the endpoint failed",
        )
    };
    let mut message = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message.push_str(&format!(": {s}"));
        src = s.source();
    }
    AttemptError {
        code,
        message,
        permanent: false,
        too_large: false,
    }
}

/// Whether `e` comes from TLS (rustls) rather than the network. The connector reports a
/// handshake failure as an `io::Error` wrapping an `io::Error` wrapping the `rustls::Error`, and
/// `io::Error::source` skips the error it wraps, so each source is also looked into. Only a
/// connection being set up has a handshake, so only connect errors count.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    fn is_rustls(mut error: &(dyn std::error::Error + 'static)) -> bool {
        loop {
            if error.is::<rustls::Error>() {
                return true;
            }
            match error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(inner) => error = inner,
                None => return false,
            }
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if is_rustls(s) {
            return e.is_connect();
        }
        source = s.source();
    }
    false
}

impl Destination for HttpDelivery {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Record],
        give_up: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<(), DeliveryFailure>> {
        Box::pin(async move {
            // Past the shutdown grace period nothing more is attempted: the README promises
            // that what is still undelivered goes to backup at once, and one more request per
            // queued batch could take a full request timeout each. Checked before the body is
            // built: past the grace period, queued batches arrive merged (up to 64 MiB), and
            // encoding them would only spend the backup window. (A batch already attempted gets
            // the same check after each failure, below, and keeps its last error.)
            if give_up.is_cancelled() {
                return Err(DeliveryFailure {
                    attempts: 0,
                    error_code: error_code::SHUTDOWN_BEFORE_ATTEMPT.to_owned(),
                    error_message: "firehose-local shut down and its grace period \
                                    (shutdown_grace_secs) ended before this batch was sent; it \
                                    was not attempted"
                        .to_owned(),
                    ended_ms: now_ms(),
                });
            }
            let stream = [self.stream.as_str()];
            let request_id = uuid::Uuid::new_v4().to_string();
            let request = DeliveryRequest {
                request_id: request_id.clone(),
                timestamp: now_ms(),
                records: batch
                    .iter()
                    .map(|r| RequestRecord { data: b64(&r.data) })
                    .collect(),
            };
            let (body, plain_len) = Self::body(&request, self.config.content_encoding);
            let body = bytes::Bytes::from(body);
            let data_bytes: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
            let retry_budget = Duration::from_secs(self.config.retry_duration_secs);
            let mut spent = Duration::ZERO;
            let mut attempts: u32 = 0;
            let failure = |attempts: u32, err: AttemptError| DeliveryFailure {
                attempts,
                error_code: err.code.to_owned(),
                error_message: err.message,
                ended_ms: now_ms(),
            };

            loop {
                attempts += 1;
                self.metrics.http_requests.with_label_values(&stream).inc();
                self.metrics
                    .http_processed_records
                    .with_label_values(&stream)
                    .inc_by(batch.len() as u64);
                self.metrics
                    .http_processed_bytes
                    .with_label_values(&stream)
                    .inc_by(data_bytes);
                // An attempt in progress when the grace period ends is abandoned: its outcome is
                // unknown, and the batch is backed up (delivery is at-least-once, so the endpoint
                // may also have it).
                let outcome = tokio::select! {
                    biased;
                    r = self.attempt(&request_id, body.clone()) => r,
                    () = give_up.cancelled() => Err(AttemptError {
                        code: error_code::REQUEST_TIMEOUT,
                        message: "The endpoint had not responded when the shutdown grace period \
                                  (shutdown_grace_secs) ended; the request was abandoned, so the \
                                  endpoint may have received it"
                            .into(),
                        permanent: true,
                        too_large: false,
                    }),
                };
                let err = match outcome {
                    Ok(()) => {
                        self.metrics.http_success.with_label_values(&stream).inc();
                        self.metrics
                            .http_records
                            .with_label_values(&stream)
                            .inc_by(batch.len() as u64);
                        self.metrics
                            .http_bytes
                            .with_label_values(&stream)
                            .inc_by(data_bytes);
                        let oldest = batch
                            .iter()
                            .map(|r| r.arrival_ms)
                            .min()
                            .unwrap_or_else(now_ms);
                        #[allow(clippy::cast_precision_loss)]
                        self.metrics
                            .http_data_freshness
                            .with_label_values(&stream)
                            .set((now_ms() - oldest).max(0) as f64 / 1000.0);
                        tracing::info!(
                            stream = self.stream,
                            request_id,
                            records = batch.len(),
                            bytes = plain_len,
                            attempts,
                            "delivered to HTTP endpoint"
                        );
                        return Ok(());
                    }
                    Err(e) => e,
                };
                tracing::warn!(
                    stream = self.stream,
                    request_id,
                    attempts,
                    code = err.code,
                    error_message = err.message,
                    "HTTP endpoint delivery attempt failed"
                );
                let out_of_time = spent >= retry_budget || retry_budget.is_zero();
                if !err.permanent && !out_of_time {
                    // The last wait is cut to what is left of the retry duration, so the last
                    // attempt starts when the duration ends, not up to a backoff step later.
                    let delay = Duration::from_millis(spec::jittered_ms(
                        spec::backoff_base_ms(attempts - 1),
                        rand::rng().random_range(-1.0..=1.0),
                    ))
                    .min(retry_budget.saturating_sub(spent));
                    if give_up
                        .run_until_cancelled(tokio::time::sleep(delay))
                        .await
                        .is_some()
                    {
                        spent += delay;
                    }
                }
                if err.too_large {
                    tracing::error!(
                        stream = self.stream,
                        request_id,
                        records = batch.len(),
                        bytes = plain_len,
                        "the HTTP endpoint answered 413 (request too large): not retried; backed \
                         up here, but AWS's 2023 spec says Firehose does not back such a batch up, \
                         so in AWS these records would most likely be lost: lower the buffer size \
                         (New Relic: 1 MiB with GZIP) or the largest record"
                    );
                }
                // Retries left, and the grace period not over (before, while or just after
                // waiting to retry): try again. Otherwise back up with this attempt's error.
                if err.permanent || out_of_time || give_up.is_cancelled() {
                    return Err(failure(attempts, err));
                }
            }
        })
    }
}
