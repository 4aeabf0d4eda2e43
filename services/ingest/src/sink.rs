//! The seam between the producer and Amazon Data Firehose.
//!
//! The producer never talks to the AWS SDK directly: it calls [`RecordSink::put_batch`], which
//! answers one outcome per record. That keeps the batching and retry logic testable with a fake
//! sink, and lets the real [`aws_sdk_firehose::Client`] implementation stay small: translate the
//! call, read `FailedPutCount` and the per-record answers, and classify errors in one place
//! ([`classify_error_code`]).

use std::fmt;

use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchError;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use bytes::Bytes;
use futures::future::BoxFuture;

/// What Firehose said about one record of a `PutRecordBatch` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Firehose accepted the record and gave it this id.
    Accepted {
        /// The `RecordId` Firehose assigned.
        record_id: String,
    },
    /// Firehose refused the record (`ErrorCode` set on its response entry).
    Failed {
        /// Firehose's per-record `ErrorCode`, e.g. `ServiceUnavailableException`.
        error_code: String,
        /// Firehose's per-record `ErrorMessage`.
        message: String,
    },
}

/// The answer to one `PutRecordBatch` call: one [`RecordOutcome`] per record, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Outcomes, index for index with the records sent.
    pub records: Vec<RecordOutcome>,
}

impl BatchOutcome {
    /// How many records failed (Firehose's `FailedPutCount`, recomputed from the entries).
    #[must_use]
    pub fn failed_count(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, RecordOutcome::Failed { .. }))
            .count()
    }
}

/// Whether trying the same call again later can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Throttling, service unavailable, timeouts, connection failures: try again after a backoff.
    Retriable,
    /// Wrong stream, bad credentials, invalid request: retrying cannot help.
    Permanent,
}

/// A whole call failed (no per-record answers).
///
/// Its `Display` (code and message) reaches clients in 503 bodies, so it stays short and says
/// nothing about the deployment; the transport's full account (addresses, OS errors) is in
/// [`detail`](Self::detail), for the service's own log only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SinkError {
    /// Error code: the AWS error code (`ResourceNotFoundException`, …) or a transport class
    /// (`Timeout`, `Dispatch`, `Credentials`, `Response`, `Construction`).
    pub code: String,
    /// Human-readable summary, fit for clients.
    pub message: String,
    /// Whether the call can be retried.
    pub retry: Retry,
    /// Everything the SDK said, for the log (never sent to clients).
    pub detail: Option<String>,
}

impl SinkError {
    /// An error with its retry class derived from `code` by [`classify_error_code`].
    #[must_use]
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        let retry = classify_error_code(&code);
        Self {
            code,
            message: message.into(),
            retry,
            detail: None,
        }
    }

    /// The same error with `detail` for the log.
    #[must_use]
    pub fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// The one place that decides which Firehose errors are worth retrying.
///
/// Per-record failures in a `PutRecordBatch` answer are `ServiceUnavailableException` (the
/// stream's throughput quota, i.e. throttling) or `InternalFailure`; both are retriable
/// (<https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html>).
/// Transport failures (timeouts, connection errors, unreadable responses) are retriable too.
/// So is `InvalidSignatureException`: it is what a skewed clock gets, and the SDK learns the
/// skew from that answer's `Date` header and signs the next attempt right (a wrong secret
/// fails every attempt and uses up the budget). Anything that means "this request can never
/// succeed as sent" is permanent.
#[must_use]
pub fn classify_error_code(code: &str) -> Retry {
    match code {
        "ResourceNotFoundException"
        | "InvalidArgumentException"
        | "InvalidKMSResourceException"
        | "InvalidSourceException"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "MissingAuthenticationToken"
        | "ValidationException"
        | "SerializationException"
        | "RecordTooLarge"
        | "Construction" => Retry::Permanent,
        _ => Retry::Retriable,
    }
}

/// The Firehose client for `sdk` (region, credentials, endpoint), with the SDK's own retries
/// off for Firehose calls only: the producer retries just the failed records within its
/// budget, and SDK retries inside each producer attempt would multiply attempts, hide
/// throttling from the producer's metrics and be cut off by its call timeout. `sdk` itself
/// keeps its retry settings, so the credential chain (IRSA's `AssumeRoleWithWebIdentity` call to
/// STS at each refresh) still retries a transient STS error.
#[must_use]
pub fn firehose_client(sdk: &aws_config::SdkConfig) -> aws_sdk_firehose::Client {
    let config = aws_sdk_firehose::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_firehose::Client::from_conf(config)
}

/// The error code of a [`RecordSink::check`] that found the stream, but not `ACTIVE`.
pub const STREAM_NOT_ACTIVE: &str = "StreamNotActive";

/// `call`, or a retriable `Timeout` error once `limit` has passed without its answer: the SDK
/// sets no read timeout, so every Firehose call the service waits for goes through this.
///
/// # Errors
/// `call`'s error, or the timeout.
pub async fn within<T>(
    limit: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(SinkError::new(
            "Timeout",
            format!("no answer within {limit:?}"),
        ))
    })
}

/// Where records go. Implemented for [`aws_sdk_firehose::Client`], and by fakes in tests.
///
/// Methods return boxed futures so the producer and the HTTP state can hold an
/// `Arc<dyn RecordSink>`.
pub trait RecordSink: Send + Sync + fmt::Debug {
    /// Sends `records` to `stream` in one call. `Ok` carries one outcome per record (a partial
    /// failure is an `Ok`); `Err` means the call as a whole failed.
    fn put_batch<'a>(
        &'a self,
        stream: &'a str,
        records: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<BatchOutcome, SinkError>>;

    /// Checks that `stream` exists and can take records (readiness).
    fn check<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<(), SinkError>>;
}

fn sdk_error<E>(err: &SdkError<E>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, message) = match err {
        // AWS's own message stays in `detail`: it can name the account, the role and the
        // stream's or key's ARN (an `AccessDeniedException` does), which clients must not see.
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("Unhandled");
            (code.to_owned(), describe_code(code).to_owned())
        }
        SdkError::TimeoutError(_) => ("Timeout".to_owned(), "call timed out".to_owned()),
        // Credentials are resolved in the send phase, so a failing credential chain (no
        // provider found, an STS error at an IRSA refresh) arrives as a dispatch failure. Its
        // own account (token file paths, role ARNs) stays in `detail`, for the log only.
        SdkError::DispatchFailure(e) => {
            if is_credentials_error(err) {
                (
                    "Credentials".to_owned(),
                    "the service has no AWS credentials for Firehose".to_owned(),
                )
            } else {
                let what = if e.is_timeout() {
                    "timed out connecting to Firehose"
                } else if e.is_io() {
                    "could not connect to Firehose"
                } else {
                    "could not send the request to Firehose"
                };
                ("Dispatch".to_owned(), what.to_owned())
            }
        }
        SdkError::ResponseError(_) => (
            "Response".to_owned(),
            "Firehose's answer could not be read".to_owned(),
        ),
        SdkError::ConstructionFailure(_) => (
            "Construction".to_owned(),
            "the request could not be built (check the AWS region and endpoint settings)"
                .to_owned(),
        ),
        _ => ("Unhandled".to_owned(), "unexpected SDK error".to_owned()),
    };
    SinkError::new(code, message).with_detail(format!("{err:?}"))
}

/// What an AWS error code means, in words fit for clients (AWS's messages are for the log).
fn describe_code(code: &str) -> &'static str {
    match code {
        "ServiceUnavailableException" | "ThrottlingException" => {
            "Firehose is throttling or unavailable"
        }
        "InternalFailure" => "Firehose had an internal failure",
        "ResourceNotFoundException" => "the delivery stream was not found",
        "InvalidSignatureException" => "Firehose refused the request's signature",
        _ => "Firehose refused the call",
    }
}

/// Whether the credential chain's error is among `err`'s sources.
fn is_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(err.source(), |e| e.source())
        .any(|e| e.is::<aws_credential_types::provider::error::CredentialsError>())
}

/// Like [`sdk_error`], but names modeled errors by their variant when the response carried no
/// code (so classification never depends on optional metadata).
fn put_error(err: &SdkError<PutRecordBatchError>) -> SinkError {
    let modeled = match err.as_service_error() {
        Some(PutRecordBatchError::ServiceUnavailableException(_)) => {
            Some("ServiceUnavailableException")
        }
        Some(PutRecordBatchError::ResourceNotFoundException(_)) => {
            Some("ResourceNotFoundException")
        }
        Some(PutRecordBatchError::InvalidArgumentException(_)) => Some("InvalidArgumentException"),
        Some(PutRecordBatchError::InvalidKmsResourceException(_)) => {
            Some("InvalidKMSResourceException")
        }
        Some(PutRecordBatchError::InvalidSourceException(_)) => Some("InvalidSourceException"),
        _ => None,
    };
    let mut error = sdk_error(err);
    if let Some(code) = modeled {
        error.code = code.to_owned();
        error.retry = classify_error_code(code);
    }
    error
}

impl RecordSink for aws_sdk_firehose::Client {
    fn put_batch<'a>(
        &'a self,
        stream: &'a str,
        records: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<BatchOutcome, SinkError>> {
        Box::pin(async move {
            let sent = records.len();
            let mut entries = Vec::with_capacity(sent);
            for data in records {
                let record = Record::builder()
                    .data(Blob::new(Vec::from(data)))
                    .build()
                    .map_err(|e| SinkError::new("Construction", e.to_string()))?;
                entries.push(record);
            }
            let out = self
                .put_record_batch()
                .delivery_stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| put_error(&e))?;
            let responses = out.request_responses();
            if responses.len() != sent {
                // Firehose promises one entry per record; without that we cannot tell which
                // records landed, so treat the call as failed (records may be sent twice,
                // never lost).
                return Err(SinkError::new(
                    "Response",
                    format!("{} response entries for {sent} records", responses.len()),
                ));
            }
            // `FailedPutCount` must agree with the entries that are not an acceptance (an id
            // without an error code): an answer that counts a failure none of its entries shows
            // cannot say which record failed, and taking the ids at their word would answer a
            // lost record as accepted. Treated as a call without a readable answer (records may
            // be sent twice, never lost).
            let not_accepted = responses
                .iter()
                .filter(|e| e.error_code().is_some() || e.record_id().is_none())
                .count();
            if usize::try_from(out.failed_put_count()).ok() != Some(not_accepted) {
                return Err(SinkError::new(
                    "Response",
                    format!(
                        "FailedPutCount {} but {not_accepted} of {sent} response entries are not an acceptance",
                        out.failed_put_count()
                    ),
                ));
            }
            let records = responses
                .iter()
                .map(|entry| match (entry.error_code(), entry.record_id()) {
                    (None, Some(id)) => RecordOutcome::Accepted {
                        record_id: id.to_owned(),
                    },
                    (Some(code), _) => {
                        // Throttling says "Slow down."; the rarer codes (KMS's) carry ARNs.
                        if !matches!(code, "ServiceUnavailableException" | "InternalFailure") {
                            tracing::warn!(
                                stream,
                                code,
                                error_message = entry.error_message().unwrap_or(""),
                                "Firehose refused a record"
                            );
                        }
                        RecordOutcome::Failed {
                            error_code: code.to_owned(),
                            message: describe_code(code).to_owned(),
                        }
                    }
                    // Neither an id nor an error: the record may have landed or not, like a
                    // call without a readable answer.
                    (None, None) => RecordOutcome::Failed {
                        error_code: "Response".to_owned(),
                        message: "Firehose's answer for the record had neither a record id nor an error code".to_owned(),
                    },
                })
                .collect();
            Ok(BatchOutcome { records })
        })
    }

    fn check<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let out = self
                .describe_delivery_stream()
                .delivery_stream_name(stream)
                .send()
                .await
                .map_err(|e| sdk_error(&e))?;
            let status = out
                .delivery_stream_description()
                .map(|d| d.delivery_stream_status().as_str().to_owned())
                .unwrap_or_default();
            // CREATING streams refuse PutRecordBatch; ACTIVE ones take it.
            if status == "ACTIVE" {
                Ok(())
            } else {
                Err(SinkError {
                    code: STREAM_NOT_ACTIVE.to_owned(),
                    message: format!("delivery stream {stream} is {status}"),
                    retry: Retry::Retriable,
                    detail: None,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_firehose_client_makes_one_attempt_and_leaves_the_shared_config_alone() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .build();
        let client = firehose_client(&sdk);
        let retries = client.config().retry_config().expect("a retry config");
        assert_eq!(
            retries.max_attempts(),
            1,
            "the producer retries, not the SDK"
        );
        // The credential chain (STS for IRSA) is built from `sdk`: its retries stay.
        assert_eq!(sdk.retry_config().map(|r| r.max_attempts()), Some(3));
        assert_eq!(
            client.config().region().map(ToString::to_string).as_deref(),
            Some("us-east-1")
        );
    }

    #[test]
    fn an_invalid_signature_is_retried_as_a_skewed_clock_gets_it() {
        assert_eq!(
            classify_error_code("InvalidSignatureException"),
            Retry::Retriable
        );
        assert_eq!(
            classify_error_code("UnrecognizedClientException"),
            Retry::Permanent
        );
    }

    use super::*;

    #[test]
    fn throttling_and_transport_errors_are_retriable() {
        for code in [
            "ServiceUnavailableException",
            "InternalFailure",
            "ThrottlingException",
            "Timeout",
            "Dispatch",
            "Response",
        ] {
            assert_eq!(classify_error_code(code), Retry::Retriable, "{code}");
        }
    }

    #[test]
    fn configuration_errors_are_permanent() {
        for code in [
            "ResourceNotFoundException",
            "InvalidArgumentException",
            "AccessDeniedException",
            "InvalidKMSResourceException",
        ] {
            assert_eq!(classify_error_code(code), Retry::Permanent, "{code}");
        }
    }

    #[test]
    fn failed_count_counts_failed_entries() {
        let outcome = BatchOutcome {
            records: vec![
                RecordOutcome::Accepted {
                    record_id: "a".into(),
                },
                RecordOutcome::Failed {
                    error_code: "ServiceUnavailableException".into(),
                    message: "slow down".into(),
                },
            ],
        };
        assert_eq!(outcome.failed_count(), 1);
    }
}
