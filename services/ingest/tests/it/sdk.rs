//! Partial failure and throttling through the real `aws_sdk_firehose::Client` (its request
//! building, response parsing and error types), with responses from `aws-smithy-mocks`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_firehose::Client;
use aws_sdk_firehose::config::retry::RetryConfig;
use aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput;
use aws_sdk_firehose::operation::put_record_batch::{PutRecordBatchError, PutRecordBatchOutput};
use aws_sdk_firehose::types::error::{ResourceNotFoundException, ServiceUnavailableException};
use aws_sdk_firehose::types::{
    DeliveryStreamDescription, DeliveryStreamStatus, DeliveryStreamType,
    PutRecordBatchResponseEntry,
};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use bytes::Bytes;
use ingest::producer::{Producer, ProducerConfig, SubmitOutcome};
use ingest::sink::{RecordSink, Retry};

/// A 300 ms retry budget: the tests that use it run on tokio's paused clock
/// (`start_paused`), which the producer's budget, backoff and linger read, and the mocked
/// client does no I/O and takes its time from a fixed source, so only the producer's own
/// waits move the clock: a slow host (or the SDK's one-off set-up in its first call) cannot
/// spend the budget before a retry.
fn config() -> ProducerConfig {
    ProducerConfig {
        retry_budget: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    }
}

fn records(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("{{\"n\":{i}}}\n")))
        .collect()
}

fn entries(data: &[Vec<u8>], fail: impl Fn(&[u8]) -> bool, call: usize) -> PutRecordBatchOutput {
    let mut failed = 0;
    let entries = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if fail(d) {
                failed += 1;
                PutRecordBatchResponseEntry::builder()
                    .error_code("ServiceUnavailableException")
                    .error_message("Slow down.")
                    .build()
            } else {
                PutRecordBatchResponseEntry::builder()
                    .record_id(format!("rid-{call}-{i}"))
                    .build()
            }
        })
        .collect();
    PutRecordBatchOutput::builder()
        .failed_put_count(failed)
        .set_request_responses(Some(entries))
        .build()
        .expect("output has its required fields")
}

#[tokio::test(start_paused = true)]
async fn partial_failure_retries_only_the_failed_records_through_the_sdk() {
    let seen: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let rule = {
        let seen = Arc::clone(&seen);
        let calls = Arc::clone(&calls);
        mock!(Client::put_record_batch).then_compute_response(move |input| {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let data: Vec<Vec<u8>> = input
                .records()
                .iter()
                .map(|r| r.data().as_ref().to_vec())
                .collect();
            seen.lock().unwrap().push(data.clone());
            // First call: events 1 and 3 throttled (FailedPutCount = 2).
            let fail = |d: &[u8]| call == 1 && (d == b"{\"n\":1}\n" || d == b"{\"n\":3}\n");
            MockResponse::Output(entries(&data, fail, call))
        })
    };
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let producer = Producer::spawn(Arc::new(client), "stream", config());
    let outcome = producer.submit(records(5)).await;
    let SubmitOutcome::Accepted { record_ids } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        record_ids,
        vec!["rid-1-0", "rid-2-0", "rid-1-2", "rid-2-1", "rid-1-4"]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].len(), 5);
    assert_eq!(
        seen[1],
        vec![b"{\"n\":1}\n".to_vec(), b"{\"n\":3}\n".to_vec()]
    );
}

/// An answer whose `FailedPutCount` disagrees with its entries (a failure counted that no entry
/// shows) cannot say which record failed: the whole call is retried, never answered accepted
/// on the ids' word (helper-77).
#[tokio::test(start_paused = true)]
async fn an_answer_whose_failed_count_disagrees_with_its_entries_is_retried_whole() {
    let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
    let rule = {
        let seen = Arc::clone(&seen);
        mock!(Client::put_record_batch).then_compute_response(move |input| {
            let mut seen = seen.lock().unwrap();
            seen.push(input.records().len());
            let call = seen.len();
            let data: Vec<Vec<u8>> = input
                .records()
                .iter()
                .map(|r| r.data().as_ref().to_vec())
                .collect();
            let mut output = entries(&data, |_| false, call);
            if call == 1 {
                // Every entry has an id, yet one failure is counted.
                output = PutRecordBatchOutput::builder()
                    .failed_put_count(1)
                    .set_request_responses(Some(output.request_responses().to_vec()))
                    .build()
                    .expect("output has its required fields");
            }
            MockResponse::Output(output)
        })
    };
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let producer = Producer::spawn(Arc::new(client), "stream", config());
    let outcome = producer.submit(records(3)).await;
    let SubmitOutcome::Accepted { record_ids } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(record_ids, vec!["rid-2-0", "rid-2-1", "rid-2-2"]);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![3, 3],
        "the whole call sent again"
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_past_the_budget_leaves_only_failed_indexes_unaccepted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let rule = {
        let calls = Arc::clone(&calls);
        mock!(Client::put_record_batch).then_compute_response(move |input| {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let data: Vec<Vec<u8>> = input
                .records()
                .iter()
                .map(|r| r.data().as_ref().to_vec())
                .collect();
            MockResponse::Output(entries(&data, |d| d == b"{\"n\":2}\n", call))
        })
    };
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let producer = Producer::spawn(Arc::new(client), "stream", config());
    let outcome = producer.submit(records(4)).await;
    assert_eq!(outcome.unaccepted(4), vec![2]);
    assert!(
        calls.load(Ordering::SeqCst) > 2,
        "retried within the budget"
    );
}

/// The SDK resolves credentials in the send phase, so a failing chain arrives as a dispatch
/// failure; it is named for what it is, not "could not send the request to Firehose". (A real
/// client: the mocks answer before credentials are resolved. Nothing listens at the endpoint,
/// and nothing is sent: the chain fails first.)
#[tokio::test]
async fn a_failing_credential_chain_is_named_as_such() {
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(RetryConfig::disabled())
        // A credential chain that finds nothing (no IRSA token file, say).
        .credentials_provider(provide_credentials_fn(|| async {
            Err(CredentialsError::not_loaded("no web identity token file"))
        }))
        .build();
    let client = Client::from_conf(config);
    let err = client
        .put_batch("stream", records(1))
        .await
        .expect_err("no credentials");
    assert_eq!(err.code, "Credentials", "{err:?}");
    assert!(
        err.message.contains("no AWS credentials"),
        "{}",
        err.message
    );
    // Clients see the message; the chain's own account (paths, role ARNs) is for the log.
    assert!(!err.message.contains("web identity"), "{}", err.message);
    assert!(
        err.detail
            .as_deref()
            .is_some_and(|d| d.contains("no web identity token")),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_call_is_retriable_and_a_missing_stream_is_not() {
    let unavailable = mock!(Client::put_record_batch).then_error(|| {
        PutRecordBatchError::ServiceUnavailableException(
            ServiceUnavailableException::builder()
                .message("Slow down.")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&unavailable], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = client
        .put_batch("stream", records(1))
        .await
        .expect_err("mocked error");
    assert_eq!(err.code, "ServiceUnavailableException");
    assert_eq!(err.retry, Retry::Retriable);
    let producer = Producer::spawn(Arc::new(client), "stream", config());
    assert_eq!(producer.submit(records(2)).await.unaccepted(2), vec![0, 1]);
    assert!(unavailable.num_calls() > 2);

    let missing = mock!(Client::put_record_batch).then_error(|| {
        PutRecordBatchError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("no such stream")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&missing], |c| c
        .retry_config(RetryConfig::disabled()));
    let producer = Producer::spawn(Arc::new(client), "stream", config());
    assert_eq!(producer.submit(records(2)).await.unaccepted(2), vec![0, 1]);
    assert_eq!(missing.num_calls(), 1, "permanent errors are not retried");
}

#[tokio::test]
async fn readiness_check_uses_describe_delivery_stream() {
    let describe = |status: DeliveryStreamStatus| {
        mock!(Client::describe_delivery_stream).then_output(move || {
            DescribeDeliveryStreamOutput::builder()
                .delivery_stream_description(
                    DeliveryStreamDescription::builder()
                        .delivery_stream_name("stream")
                        .delivery_stream_arn(
                            "arn:aws:firehose:us-east-1:000000000000:deliverystream/stream",
                        )
                        .delivery_stream_status(status.clone())
                        .delivery_stream_type(DeliveryStreamType::DirectPut)
                        .version_id("1")
                        .set_destinations(Some(vec![]))
                        .has_more_destinations(false)
                        .build()
                        .expect("description has its required fields"),
                )
                .build()
        })
    };
    let active = describe(DeliveryStreamStatus::Active);
    let client = mock_client!(aws_sdk_firehose, [&active]);
    assert!(client.check("stream").await.is_ok());
    let creating = describe(DeliveryStreamStatus::Creating);
    let client = mock_client!(aws_sdk_firehose, [&creating]);
    let err = client.check("stream").await.expect_err("not active");
    assert!(err.message.contains("CREATING"), "{err}");
}

/// AWS's messages can name the account, the role and ARNs; what reaches clients (the error's
/// `Display`, which 503 bodies carry) is built from the code alone, and the message stays in
/// `detail` for the log.
#[tokio::test(start_paused = true)]
async fn aws_messages_stay_out_of_what_clients_see() {
    use aws_sdk_firehose::error::ErrorMetadata;
    const SECRETS: &str = "User: arn:aws:sts::123456789012:assumed-role/ingest/pod is not \
                           authorized to perform: firehose:PutRecordBatch";
    let denied = mock!(Client::put_record_batch).then_error(|| {
        PutRecordBatchError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message(SECRETS)
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&denied], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = client
        .put_batch("stream", records(1))
        .await
        .expect_err("mocked error");
    assert_eq!(err.code, "AccessDeniedException");
    assert_eq!(err.retry, Retry::Permanent);
    assert_eq!(
        err.to_string(),
        "AccessDeniedException: Firehose refused the call"
    );
    assert!(
        err.detail
            .as_deref()
            .is_some_and(|d| d.contains("123456789012")),
        "the log keeps AWS's account: {err:?}"
    );
    let producer = Producer::spawn(Arc::new(client), "stream", config());
    match producer.submit(records(1)).await {
        SubmitOutcome::Incomplete { error, .. } => {
            assert_eq!(error, "AccessDeniedException: Firehose refused the call");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Per record: a KMS refusal's message (with the key's ARN) is not passed on either, and an
    // entry with neither an id nor a code is an unreadable answer (`Response`).
    let mixed = mock!(Client::put_record_batch).then_output(|| {
        PutRecordBatchOutput::builder()
            .failed_put_count(2)
            .set_request_responses(Some(vec![
                PutRecordBatchResponseEntry::builder()
                    .error_code("KMSAccessDeniedException")
                    .error_message("arn:aws:kms:us-east-1:123456789012:key/abc")
                    .build(),
                PutRecordBatchResponseEntry::builder().build(),
            ]))
            .build()
            .expect("output has its required fields")
    });
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&mixed], |c| c
        .retry_config(RetryConfig::disabled()));
    let outcome = client
        .put_batch("stream", records(2))
        .await
        .expect("a partial failure is an answer");
    let described: Vec<_> = outcome
        .records
        .iter()
        .map(|r| match r {
            ingest::sink::RecordOutcome::Failed {
                error_code,
                message,
            } => (error_code.as_str(), message.as_str()),
            ingest::sink::RecordOutcome::Accepted { .. } => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(
        described,
        [
            ("KMSAccessDeniedException", "Firehose refused the call"),
            (
                "Response",
                "Firehose's answer for the record had neither a record id nor an error code"
            ),
        ]
    );
}
