//! HTTP endpoint delivery against a test endpoint on 127.0.0.1, checked against the spec, and
//! the failure paths into `http-endpoint-failed/` and `processing-failed/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use common::{Behaviour, Endpoint, b64, config, files, firehose_client, unb64};
use firehose_formats::backup::ErrorRecord;
use firehose_local::config::{
    Compression, HttpEndpointConfig, ProcessorConfig, S3BackupMode, Secret,
};
use firehose_local::delivery::error_code::SHUTDOWN_BEFORE_ATTEMPT;
use firehose_local::{InvokeError, Processor, Server, spawn_embedded, spawn_server};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

fn rec(data: &[u8]) -> Record {
    Record::builder().data(Blob::new(data)).build().unwrap()
}

fn endpoint_config(url: &str, retry_duration_secs: u64) -> HttpEndpointConfig {
    HttpEndpointConfig {
        url: url.to_owned(),
        name: None,
        access_key: Some(Secret::new("0123456789abcdef0123456789abcdef01234567")),
        common_attributes: [
            ("env".to_owned(), "test".to_owned()),
            ("team".to_owned(), "obs".to_owned()),
        ]
        .into(),
        content_encoding: Compression::Gzip,
        retry_duration_secs,
        s3_backup_mode: S3BackupMode::FailedDataOnly,
        request_timeout_secs: 180,
    }
}

/// Puts one record with `data` into stream `s`; it must be accepted.
async fn put(client: &aws_sdk_firehose::Client, data: &[u8]) {
    client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(data))
        .send()
        .await
        .unwrap();
}

fn error_records(dir: &std::path::Path) -> Vec<ErrorRecord> {
    common::lines(dir)
        .iter()
        .map(|l| ErrorRecord::parse_tolerant(l.as_bytes()).unwrap())
        .collect()
}

#[tokio::test]
async fn delivery_requests_follow_the_spec_header_by_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Accept).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 60));
    let fh = spawn_embedded(c).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    client
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(b"{\"a\":1}"))
        .records(rec(b""))
        .records(rec(b"{\"b\":2}"))
        .send()
        .await
        .unwrap();

    let seen = ep.seen.recv().await.unwrap();
    let h = &seen.headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(
        h["content-length"],
        seen.raw_body.len().to_string().as_str()
    );
    assert_eq!(seen.raw_body[..2], [0x1f, 0x8b], "body is gzip");
    assert_eq!(h["x-amz-firehose-protocol-version"], "1.0");
    assert_eq!(
        h["x-amz-firehose-request-id"],
        seen.body.request_id.as_str()
    );
    assert!(
        uuid::Uuid::parse_str(&seen.body.request_id).is_ok(),
        "request id is a GUID"
    );
    assert_eq!(
        h["x-amz-firehose-access-key"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        h["x-amz-firehose-source-arn"],
        "arn:aws:firehose:us-east-1:000000000000:deliverystream/s"
    );
    let attrs: serde_json::Value =
        serde_json::from_slice(h["x-amz-firehose-common-attributes"].as_bytes()).unwrap();
    assert_eq!(
        attrs,
        serde_json::json!({"commonAttributes": {"env": "test", "team": "obs"}})
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ts = u128::try_from(seen.body.timestamp).unwrap();
    assert!(
        now - ts < 60_000,
        "timestamp is epoch milliseconds, not seconds"
    );
    let datas: Vec<Vec<u8>> = seen.body.records.iter().map(|r| unb64(&r.data)).collect();
    assert_eq!(
        datas,
        [b"{\"a\":1}".to_vec(), Vec::new(), b"{\"b\":2}".to_vec()],
        "one element per record, no delimiters, empty allowed"
    );
    fh.shutdown().await.unwrap();
    assert!(
        files(&dir.path().join("backup")).is_empty(),
        "nothing failed, nothing backed up"
    );
}

#[tokio::test]
async fn uncompressed_requests_have_no_content_encoding_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Accept).await;
    let mut c = config(dir.path());
    let mut h = endpoint_config(&ep.url, 60);
    h.content_encoding = Compression::None;
    h.common_attributes.clear();
    h.access_key = None;
    c.streams[0].http_endpoint = Some(h);
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"x").await;
    let seen = ep.seen.recv().await.unwrap();
    assert!(!seen.headers.contains_key("content-encoding"));
    assert!(!seen.headers.contains_key("x-amz-firehose-access-key"));
    assert_eq!(seen.raw_body[0], b'{');
    fh.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_endpoint_lands_in_http_endpoint_failed_after_the_retry_duration() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Fail).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 1));
    let fh = spawn_embedded(c).await.unwrap();
    let out = firehose_client(&fh.endpoint_url())
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(b"one"))
        .records(rec(b"two"))
        .send()
        .await
        .unwrap();
    let producer_ids: Vec<String> = out
        .request_responses()
        .iter()
        .map(|r| r.record_id().unwrap().to_owned())
        .collect();
    let first = ep.seen.recv().await.unwrap();
    let second = ep.seen.recv().await.unwrap();
    assert_eq!(
        first.body.request_id, second.body.request_id,
        "retries reuse the request id"
    );
    fh.shutdown().await.unwrap();
    let mut attempts = 2;
    while ep.seen.try_recv().is_ok() {
        attempts += 1;
    }
    let backup = dir.path().join("backup");
    let objects = files(&backup);
    assert_eq!(objects.len(), 1);
    let key = objects[0]
        .strip_prefix(&backup)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(key.starts_with("http-endpoint-failed/"), "{key}");
    let recs = error_records(&backup);
    assert_eq!(recs.len(), 2);
    for (r, data) in recs.iter().zip([&b"one"[..], b"two"]) {
        assert_eq!(r.error_code, "HttpEndpoint.DestinationException");
        assert!(
            r.error_message.contains("500") && r.error_message.contains("test endpoint says no"),
            "{}",
            r.error_message
        );
        assert_eq!(
            r.attempts_made, attempts,
            "attemptsMade counts every request"
        );
        assert!(r.attempt_ending_timestamp >= r.arrival_timestamp);
        assert_eq!(r.raw_data, b64(data));
        assert_eq!(r.subsequence_number, Some(0));
        let data_id = r.data_id.as_deref().unwrap();
        let sequence = data_id
            .strip_suffix(".0")
            .unwrap_or_else(|| panic!("{data_id}"));
        assert!(
            sequence.len() == 56 && sequence.bytes().all(|b| b.is_ascii_digit()),
            "dataId is a sequence number and .0, as in AWS's example: {data_id}"
        );
        assert!(!producer_ids.iter().any(|p| data_id.starts_with(p.as_str())));
    }
    assert!(
        (2..=3).contains(&attempts),
        "1 s retry duration allows one or two retries, saw {attempts} requests"
    );
}

/// A 413 is not retried, however long the retry duration: the batch goes to the backup after
/// one attempt (AWS's 2023 spec: permanent, and not even backed up; here it is backed up).
#[tokio::test]
async fn a_413_is_backed_up_after_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::TooLarge).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 600));
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"big").await;
    ep.seen.recv().await.unwrap();
    // Backed up while the 600 s retry duration has hardly begun: not retried. (A retryable
    // failure would wait 1 s and try again, for 600 s, before any backup.)
    let backup = dir.path().join("backup");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while files(&backup).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no backup 30 s after the 413"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ep.seen.try_recv().is_err(), "a 413 is not retried");
    fh.shutdown().await.unwrap();
    assert!(ep.seen.try_recv().is_err(), "nor sent again at shutdown");
    let recs = error_records(&backup);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].error_code, "HttpEndpoint.DestinationException");
    assert_eq!(recs[0].attempts_made, 1);
    assert!(
        recs[0].error_message.contains("413"),
        "{}",
        recs[0].error_message
    );
    assert_eq!(recs[0].raw_data, b64(b"big"));
}

/// Backoff is 1 s, 2 s, then 4 s (±15 %): with a 4 s retry duration the first two waits
/// (2.55–3.45 s) leave 0.55–1.45 s, and the third wait is cut to that, so the fourth and last
/// request goes out 4 s after the first; uncut, the third wait alone would be 3.4–4.6 s. (With
/// a 2 s duration and three requests, the gap between cut and uncut was 0.55 s, less than a
/// busy host can add to three requests; here it is 1.95 s, and measured on one wait.)
#[tokio::test]
async fn the_last_wait_is_cut_to_the_retry_duration() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Fail).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 4));
    let fh = spawn_embedded(c).await.unwrap();
    firehose_client(&fh.endpoint_url())
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(b"one"))
        .send()
        .await
        .unwrap();
    // Timed where the endpoint got each request, so a test task that wakes late on a busy host
    // does not move the figure.
    let first = ep.seen.recv().await.unwrap().at;
    ep.seen.recv().await.unwrap();
    let third = ep.seen.recv().await.unwrap().at;
    let fourth = ep.seen.recv().await.unwrap().at;
    fh.shutdown().await.unwrap();
    assert!(ep.seen.try_recv().is_err(), "no fifth request");
    let last = fourth - first;
    assert!(
        last >= Duration::from_millis(3950),
        "the last request {last:?} after the first: the whole retry duration is waited"
    );
    let last_wait = fourth - third;
    assert!(
        last_wait < Duration::from_millis(3350),
        "the last request {last_wait:?} after the one before: the wait is cut (to at most \
         1.45 s), not the uncut 3.4 s or more"
    );
    assert_eq!(
        error_records(&dir.path().join("backup"))[0].attempts_made,
        4
    );
}

/// A 200 that breaks the response rules: the wrong request id, or no `Content-Length` (AWS
/// requires it with a body: firehose-facts §1.4).
#[tokio::test]
async fn a_200_that_breaks_the_response_rules_is_not_success() {
    for behaviour in [Behaviour::WrongRequestId, Behaviour::Chunked] {
        a_200_is_refused(behaviour, "HttpEndpoint.InvalidResponseFromDestination").await;
    }
}

/// A response must be under 1 MiB headers included (firehose-facts §1.4); one just under it
/// is success.
#[tokio::test]
async fn a_response_of_1_mib_headers_included_is_too_large() {
    const MIB: usize = 1024 * 1024;
    let too_large = "HttpEndpoint.ResponseTooLarge";
    a_200_is_refused(
        Behaviour::Padded {
            body: MIB,
            header: 0,
        },
        too_large,
    )
    .await;
    // The body alone is under the limit; with its headers it is not.
    let body = MIB - 1024;
    a_200_is_refused(Behaviour::Padded { body, header: 2048 }, too_large).await;

    let delivered = one_delivery(Behaviour::Padded { body, header: 512 }).await;
    assert!(delivered.is_empty(), "delivered: {delivered:?}");
}

/// One record delivered (retry duration 0: one attempt) to an endpoint that answers as
/// `behaviour` says; the error records it left in the backup.
async fn one_delivery(behaviour: Behaviour) -> Vec<ErrorRecord> {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(behaviour).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 0));
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"x").await;
    ep.seen.recv().await.unwrap();
    fh.shutdown().await.unwrap();
    assert!(ep.seen.try_recv().is_err(), "retry duration 0: no retries");
    error_records(&dir.path().join("backup"))
}

async fn a_200_is_refused(behaviour: Behaviour, code: &str) {
    let recs = one_delivery(behaviour).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].error_code, code, "{behaviour:?}");
    assert_eq!(recs[0].attempts_made, 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_connection_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (reserved, closed) = test_support::refusing_address();
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&format!("http://{closed}/v1"), 0));
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"x").await;
    fh.shutdown().await.unwrap();
    drop(reserved);
    let recs = error_records(&dir.path().join("backup"));
    assert_eq!(recs[0].error_code, "HttpEndpoint.ConnectionFailed");
}

#[tokio::test]
async fn the_real_transform_delivers_good_records_and_backs_up_rejected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Accept).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 60));
    c.streams[0].processor = Some(ProcessorConfig {
        buffer_interval_secs: 0,
        ..ProcessorConfig::default()
    });
    let fh = spawn_embedded(c).await.unwrap();
    let out = firehose_client(&fh.endpoint_url())
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(br#"{"level":"INFO","msg":"hello"}"#))
        .records(rec(b"\xff\xfe not utf-8"))
        .records(rec(b"   "))
        .records(rec(br#"{"level":"WARN","msg":"again"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_put_count(), 0);
    let seen = ep.seen.recv().await.unwrap();
    fh.shutdown().await.unwrap();
    let delivered: Vec<serde_json::Value> = seen
        .body
        .records
        .iter()
        .map(|r| serde_json::from_slice(&unb64(&r.data)).unwrap())
        .collect();
    assert_eq!(
        delivered.len(),
        2,
        "the rejected and the blank (Dropped) records are not delivered"
    );
    assert_eq!(delivered[0]["msg"], "hello");
    assert_eq!(delivered[1]["msg"], "again");
    assert!(
        delivered.iter().all(|d| d.get("_transformed_ts").is_some()),
        "records were transformed: {delivered:?}"
    );
    // The transform saw Firehose's own record ids, not the RecordIds the producer got: on AWS
    // nothing ties the two together, so nothing here may either.
    let lambda_ids: Vec<&str> = delivered
        .iter()
        .map(|d| d["_record_id"].as_str().unwrap())
        .collect();
    let producer_ids: Vec<&str> = out
        .request_responses()
        .iter()
        .map(|r| r.record_id().unwrap())
        .collect();
    assert!(
        lambda_ids.iter().all(|id| !producer_ids.contains(id)),
        "{lambda_ids:?} vs {producer_ids:?}"
    );
    assert!(
        lambda_ids
            .iter()
            .all(|id| id.len() == 56 && id.bytes().all(|b| b.is_ascii_digit())),
        "sequence-number-shaped, as in AWS's example event: {lambda_ids:?}"
    );
    assert!(
        lambda_ids[0] < lambda_ids[1],
        "ids grow in arrival order: {lambda_ids:?}"
    );
    let backup = dir.path().join("backup");
    let key = files(&backup)[0]
        .strip_prefix(&backup)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(key.starts_with("processing-failed/"), "{key}");
    let recs = error_records(&backup);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].error_code, "Lambda.ProcessingFailedStatus");
    assert_eq!(
        recs[0].raw_data,
        b64(b"\xff\xfe not utf-8"),
        "rawData is the original record"
    );
    assert_eq!(
        recs[0].lambda_arn.as_deref(),
        Some("arn:aws:lambda:us-east-1:000000000000:function:transform:$LATEST")
    );
}

#[tokio::test]
async fn all_data_backs_up_every_source_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Accept).await;
    let mut c = config(dir.path());
    let mut h = endpoint_config(&ep.url, 60);
    h.s3_backup_mode = S3BackupMode::AllData;
    c.streams[0].http_endpoint = Some(h);
    c.streams[0].backup.compression = Compression::Gzip;
    let fh = spawn_embedded(c).await.unwrap();
    firehose_client(&fh.endpoint_url())
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(b"a\n"))
        .records(rec(b"b\n"))
        .send()
        .await
        .unwrap();
    ep.seen.recv().await.unwrap();
    fh.shutdown().await.unwrap();
    let objects = files(&dir.path().join("backup"));
    assert_eq!(objects.len(), 1);
    let name = objects[0].to_string_lossy().into_owned();
    assert!(name.ends_with(".gz") && !name.contains("failed"), "{name}");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&objects[0]).unwrap()),
        &mut text,
    )
    .unwrap();
    assert_eq!(text, "a\nb\n", "source records, concatenated as sent");
}

#[tokio::test]
async fn failing_invocations_are_retried_then_backed_up_as_function_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.faults.transform_failure_share = 1.0;
    c.streams[0].processor = Some(ProcessorConfig {
        buffer_interval_secs: 0,
        number_of_retries: 2,
        ..ProcessorConfig::default()
    });
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"{\"a\":1}").await;
    let metrics_url = format!("{}/metrics", fh.endpoint_url());
    fh.shutdown().await.unwrap();
    assert!(
        reqwest::get(&metrics_url).await.is_err(),
        "the API is down after shutdown"
    );
    assert!(files(&dir.path().join("delivered")).is_empty());
    let recs = error_records(&dir.path().join("backup"));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].error_code, "Lambda.FunctionError");
    assert_eq!(recs[0].attempts_made, 3, "1 invocation + NumberOfRetries 2");
    assert_eq!(recs[0].raw_data, b64(b"{\"a\":1}"));
}

/// Shuts `fh` (configured with a 1 s grace period) down and checks that this ends soon after
/// it, not after `instead` (what an uncut wait would take: a minute or more). "Soon" leaves a
/// busy host room for the backup writes (each synced to disk) after the grace period.
async fn shut_down_soon_after_the_grace_period(fh: firehose_local::EmbeddedHandle, instead: &str) {
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), fh.shutdown())
        .await
        .unwrap_or_else(|_| {
            panic!("shutdown ends soon after the 1 s grace period, not after {instead}")
        })
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
}

/// The error records backed up under `<dir>/backup`, all of which must be under `kind/`, with
/// their data, sorted by it.
fn backed_up_under(dir: &std::path::Path, kind: &str) -> Vec<(Vec<u8>, ErrorRecord)> {
    let backup = dir.join("backup");
    let all = files(&backup);
    assert!(
        all.iter()
            .all(|f| f.strip_prefix(&backup).unwrap().starts_with(kind)),
        "not all under {kind}/: {all:?}"
    );
    let mut recs: Vec<(Vec<u8>, ErrorRecord)> = error_records(&backup)
        .into_iter()
        .map(|r| (unb64(&r.raw_data), r))
        .collect();
    recs.sort_by(|a, b| a.0.cmp(&b.0));
    recs
}

/// README: "a delivery still failing after `shutdown_grace_secs` goes to `http-endpoint-failed/`
/// at once". Against an endpoint that never answers, the request in progress is cut off at the
/// end of the grace period and the queued batches are not attempted at all, so shutdown takes
/// the grace period, not grace + one request timeout per batch.
#[tokio::test]
async fn shutdown_backs_up_queued_batches_at_once_when_the_endpoint_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Hang).await;
    let mut c = config(dir.path());
    c.shutdown_grace_secs = 1;
    let mut h = endpoint_config(&ep.url, 3600);
    // Longer than the wait for a shutdown, so that one ended by a request timeout fails it.
    h.request_timeout_secs = 60;
    c.streams[0].http_endpoint = Some(h);
    let fh = spawn_embedded(c).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    put(&client, b"one").await;
    ep.seen
        .recv()
        .await
        .expect("the first batch is being delivered");
    // Interval 0: each put is its own batch, queued behind the hanging one.
    put(&client, b"two").await;
    put(&client, b"three").await;

    shut_down_soon_after_the_grace_period(fh, "3 × 60 s request timeouts").await;

    let recs = backed_up_under(dir.path(), "http-endpoint-failed");
    let got: Vec<&[u8]> = recs.iter().map(|(data, _)| data.as_slice()).collect();
    assert_eq!(got, [&b"one"[..], b"three", b"two"], "nothing lost");
    for (data, r) in &recs {
        if data == b"one" {
            assert_eq!(r.attempts_made, 1);
            assert_eq!(r.error_code, "HttpEndpoint.RequestTimeout");
        } else {
            assert_eq!(r.attempts_made, 0, "queued batches are not attempted");
        }
    }
    assert!(
        ep.seen.try_recv().is_err(),
        "the queued batches never reached the endpoint"
    );
    assert_eq!(
        files(&dir.path().join("backup")).len(),
        2,
        "one object for the abandoned batch, one for both queued ones (not one write per batch)"
    );
}

/// `shutdown_grace_secs = 0`: nothing is attempted after the signal, not even the batch the
/// flush makes of what was buffered; it goes straight to the backup.
#[tokio::test]
async fn a_zero_grace_backs_up_the_final_flush_without_an_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut ep = Endpoint::start(Behaviour::Accept).await;
    let mut c = config(dir.path());
    c.shutdown_grace_secs = 0;
    c.streams[0].buffering.interval_secs = 900;
    c.streams[0].http_endpoint = Some(endpoint_config(&ep.url, 60));
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"buffered").await;
    fh.shutdown().await.unwrap();
    assert!(ep.seen.try_recv().is_err(), "no request after the signal");
    let recs = backed_up_under(dir.path(), "http-endpoint-failed");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].0, b"buffered");
    assert_eq!(recs[0].1.error_code, SHUTDOWN_BEFORE_ATTEMPT);
    assert_eq!(recs[0].1.attempts_made, 0);
}

/// A transform that never returns within its timeout: `invoked` yields once per invocation.
#[derive(Debug)]
struct HangingFunction {
    invoked: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Processor for HangingFunction {
    fn invoke(
        &self,
        _event: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, InvokeError>> {
        let _ = self.invoked.send(());
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            Err(InvokeError::TimedOut(timeout))
        })
    }
}

/// The processor stage honours the grace period as delivery does: the invocation in progress is
/// abandoned (not retried) and the batch still waiting is not invoked; both go to
/// `processing-failed/`, so shutdown takes the grace period, not (1 + retries) function timeouts.
#[tokio::test]
async fn shutdown_backs_up_transform_batches_at_once_when_the_function_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.shutdown_grace_secs = 1;
    c.streams[0].processor = Some(ProcessorConfig {
        buffer_interval_secs: 0,
        number_of_retries: 3,
        timeout_secs: 300,
        ..ProcessorConfig::default()
    });
    let (invoked, mut invocations) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::new(c)
        .unwrap()
        .with_processor("s", Arc::new(HangingFunction { invoked }));
    let fh = spawn_server(server).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    put(&client, b"one").await;
    invocations
        .recv()
        .await
        .expect("the first batch is being transformed");
    // Waits behind the hanging invocation.
    put(&client, b"two").await;

    shut_down_soon_after_the_grace_period(fh, "4 × 300 s function timeouts").await;
    assert!(
        invocations.try_recv().is_err(),
        "no retry and no invocation after the grace period"
    );

    let recs = backed_up_under(dir.path(), "processing-failed");
    let got: Vec<&[u8]> = recs.iter().map(|(data, _)| data.as_slice()).collect();
    assert_eq!(got, [&b"one"[..], b"two"], "nothing lost");
    for (data, r) in &recs {
        assert!(r.lambda_arn.is_some(), "{r:?}");
        if data == b"one" {
            assert_eq!(r.error_code, "Lambda.FunctionTimedOut");
            assert_eq!(r.attempts_made, 1, "abandoned, not retried");
            assert!(r.error_message.contains("shutdown grace period"), "{r:?}");
        } else {
            assert_eq!(r.error_code, SHUTDOWN_BEFORE_ATTEMPT);
            assert_eq!(r.attempts_made, 0, "the waiting batch is not invoked");
        }
    }
    assert!(files(&dir.path().join("delivered")).is_empty());
}

/// An `https://` endpoint whose port does not speak TLS (here, a plain HTTP answer to the
/// ClientHello) fails the handshake: `SSLHandshakeFailure`, as Firehose reports it, not a
/// connection failure, so the operator looks at the certificate and the URL, not the network.
#[tokio::test]
async fn a_failed_tls_handshake_is_an_ssl_handshake_failure() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Retry duration 0: one attempt, one connection.
    let plain = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 512];
        let _ = socket.read(&mut hello).await;
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(endpoint_config(&format!("https://127.0.0.1:{port}/v1"), 0));
    let fh = spawn_embedded(c).await.unwrap();
    put(&firehose_client(&fh.endpoint_url()), b"x").await;
    fh.shutdown().await.unwrap();
    plain.await.unwrap();
    let recs = error_records(&dir.path().join("backup"));
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].error_code, "HttpEndpoint.SSLHandshakeFailure",
        "{recs:?}"
    );
    assert!(
        recs[0].error_message.contains("TLS handshake"),
        "{}",
        recs[0].error_message
    );
}
