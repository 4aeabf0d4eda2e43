//! `aws-sdk-firehose`, unchanged, against firehose-local: every operation and every error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_firehose::error::ProvideErrorMetadata as _;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use common::{config, files, firehose_client};
use firehose_local::spawn_embedded;
use std::sync::Arc;
use std::time::Duration;

/// The server's `/metrics` page.
async fn metrics_text(endpoint: &str) -> String {
    reqwest::get(format!("{endpoint}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn rec(data: &[u8]) -> Record {
    Record::builder().data(Blob::new(data)).build().unwrap()
}

#[tokio::test]
async fn put_record_and_put_record_batch_deliver_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let fh = spawn_embedded(config(dir.path())).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());

    let one = client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(b"{\"n\":0}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.record_id().len(), 32);
    assert_eq!(one.encrypted(), Some(false));

    let batch = client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some(
            (1..=3)
                .map(|n| rec(format!("{{\"n\":{n}}}\n").as_bytes()))
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.failed_put_count(), 0);
    assert_eq!(batch.request_responses().len(), 3);
    assert!(
        batch
            .request_responses()
            .iter()
            .all(|r| r.record_id().is_some() && r.error_code().is_none())
    );

    fh.shutdown().await.unwrap();
    // Interval 0: each put is its own object and names sort by uuid, so compare sorted lines.
    let mut delivered = common::lines(&dir.path().join("delivered"));
    delivered.sort();
    assert_eq!(
        delivered,
        ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]
    );
    let file = files(&dir.path().join("delivered"))[0].clone();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("s-1-") && name.ends_with(".ndjson"),
        "{name}"
    );
}

#[tokio::test]
async fn describe_and_list_report_the_configured_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    let mut second = c.streams[0].clone();
    second.name = "t".into();
    second.http_endpoint = Some(firehose_local::config::HttpEndpointConfig {
        url: "http://127.0.0.1:9/v1".into(),
        name: Some("New Relic".into()),
        access_key: None,
        common_attributes: [("env".to_owned(), "dev".to_owned())].into(),
        content_encoding: firehose_local::config::Compression::Gzip,
        retry_duration_secs: 60,
        s3_backup_mode: firehose_local::config::S3BackupMode::FailedDataOnly,
        request_timeout_secs: 180,
    });
    c.streams.push(second);
    let fh = spawn_embedded(c).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());

    let list = client.list_delivery_streams().send().await.unwrap();
    assert_eq!(list.delivery_stream_names(), ["s", "t"]);
    assert!(!list.has_more_delivery_streams());
    let page = client
        .list_delivery_streams()
        .limit(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.delivery_stream_names(), ["s"]);
    assert!(page.has_more_delivery_streams());
    let next = client
        .list_delivery_streams()
        .exclusive_start_delivery_stream_name("s")
        .send()
        .await
        .unwrap();
    assert_eq!(next.delivery_stream_names(), ["t"]);

    let d = client
        .describe_delivery_stream()
        .delivery_stream_name("t")
        .send()
        .await
        .unwrap();
    let d = d.delivery_stream_description().unwrap();
    assert_eq!(d.delivery_stream_name(), "t");
    assert_eq!(
        d.delivery_stream_arn(),
        "arn:aws:firehose:us-east-1:000000000000:deliverystream/t"
    );
    assert_eq!(d.delivery_stream_status().as_str(), "ACTIVE");
    assert_eq!(d.delivery_stream_type().as_str(), "DirectPut");
    assert_eq!(d.version_id(), "1");
    let http = d.destinations()[0]
        .http_endpoint_destination_description()
        .unwrap();
    assert_eq!(
        http.endpoint_configuration().unwrap().url(),
        Some("http://127.0.0.1:9/v1")
    );
    assert_eq!(http.buffering_hints().unwrap().size_in_mbs(), Some(1));
    assert_eq!(
        http.retry_options().unwrap().duration_in_seconds(),
        Some(60)
    );
    let req = http.request_configuration().unwrap();
    assert_eq!(req.content_encoding().unwrap().as_str(), "GZIP");
    assert_eq!(req.common_attributes()[0].attribute_name(), "env");
    fh.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_have_aws_codes() {
    let dir = tempfile::tempdir().unwrap();
    let fh = spawn_embedded(config(dir.path())).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());

    let missing = client
        .put_record()
        .delivery_stream_name("nope")
        .record(rec(b"x"))
        .send()
        .await
        .unwrap_err();
    let missing = missing.into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
    // A request the API model refuses is refused as such, stream or no stream (501 records).
    let too_many = client
        .put_record_batch()
        .delivery_stream_name("nope")
        .set_records(Some((0..501).map(|_| rec(b"x")).collect()))
        .send()
        .await
        .unwrap_err();
    let too_many = too_many.into_service_error();
    assert_eq!(
        too_many.meta().code(),
        Some("ValidationException"),
        "{too_many:?}"
    );
    let oversized = client
        .put_record()
        .delivery_stream_name("nope")
        .record(rec(&vec![b'x'; 1_024_001]))
        .send()
        .await
        .unwrap_err();
    let oversized = oversized.into_service_error();
    assert_eq!(
        oversized.meta().code(),
        Some("ValidationException"),
        "{oversized:?}"
    );
    assert_eq!(
        missing.message(),
        Some("Firehose nope under account 000000000000 not found.")
    );
    let described = client
        .describe_delivery_stream()
        .delivery_stream_name("nope")
        .send()
        .await
        .unwrap_err();
    assert!(
        described
            .into_service_error()
            .is_resource_not_found_exception()
    );
    let batch_missing = client
        .put_record_batch()
        .delivery_stream_name("nope")
        .records(rec(b"x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        batch_missing
            .into_service_error()
            .is_resource_not_found_exception()
    );

    let too_many = client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some((0..501).map(|_| rec(b"x")).collect()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(too_many.code(), Some("ValidationException"));
    assert!(
        too_many
            .message()
            .unwrap()
            .contains("less than or equal to 500")
    );

    let big = vec![b'x'; 1_024_001];
    let too_big = client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(&big))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(too_big.code(), Some("ValidationException"));
    assert!(too_big.message().unwrap().contains("1024000"));
    let exactly = vec![b'x'; 1_024_000];
    client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(&exactly))
        .send()
        .await
        .expect("1,024,000 bytes is allowed");

    let five_mib: Vec<Record> = (0..5).map(|_| rec(&exactly)).collect();
    let over_batch = client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some(five_mib))
        .send()
        .await
        .unwrap_err();
    let over_batch = over_batch.into_service_error();
    assert!(over_batch.is_invalid_argument_exception(), "{over_batch:?}");
    // "4 MB" read strictly: 4,000,000 record bytes pass, one more does not (still under 4 MiB).
    let million = vec![b'x'; 1_000_000];
    let four_mb: Vec<Record> = (0..4).map(|_| rec(&million)).collect();
    client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some(four_mb.clone()))
        .send()
        .await
        .expect("4,000,000 bytes is allowed");
    let mut one_more = four_mb;
    one_more.push(rec(b"x"));
    let over = client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some(one_more))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(over.is_invalid_argument_exception(), "{over:?}");
    assert!(
        over.message().is_some_and(|m| m.contains("exceeds 4 MB")),
        "{over:?}"
    );

    let bad_name = client
        .put_record()
        .delivery_stream_name("bad name")
        .record(rec(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        bad_name.into_service_error().code(),
        Some("ValidationException")
    );
    fh.shutdown().await.unwrap();
}

#[tokio::test]
async fn throttling_fails_single_records_with_slow_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.faults.throttle_share = 0.5;
    c.faults.seed = Some(42);
    let fh = spawn_embedded(c).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    let out = client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some(
            (0..200).map(|n| rec(format!("{n}\n").as_bytes())).collect(),
        ))
        .send()
        .await
        .expect("throttling is a partial failure, not an error");
    let failed: Vec<_> = out
        .request_responses()
        .iter()
        .filter(|r| r.error_code().is_some())
        .collect();
    assert_eq!(
        usize::try_from(out.failed_put_count()).unwrap(),
        failed.len()
    );
    assert!(
        (50..150).contains(&failed.len()),
        "about half throttled, got {}",
        failed.len()
    );
    assert!(
        failed
            .iter()
            .all(|r| r.error_code() == Some("ServiceUnavailableException")
                && r.error_message() == Some("Slow down.")
                && r.record_id().is_none())
    );
    fh.shutdown().await.unwrap();
    assert_eq!(
        common::lines(&dir.path().join("delivered")).len(),
        200 - failed.len(),
        "only accepted records are delivered"
    );
}

#[tokio::test]
async fn metrics_are_served_with_cloudwatch_names() {
    let dir = tempfile::tempdir().unwrap();
    let fh = spawn_embedded(config(dir.path())).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    client
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(b"a\n"))
        .records(rec(b"bb\n"))
        .send()
        .await
        .unwrap();
    let text = metrics_text(&fh.endpoint_url()).await;
    assert!(
        text.contains("firehose_incoming_records_total{delivery_stream=\"s\"} 2"),
        "{text}"
    );
    assert!(text.contains("firehose_incoming_bytes_total{delivery_stream=\"s\"} 5"));
    assert!(text.contains("firehose_put_record_batch_requests_total{delivery_stream=\"s\"} 1"));
    fh.shutdown().await.unwrap();
}

/// A body over the API's read limit gets an AWS JSON 1.1 error (what the SDKs parse), not a
/// plain-text 413.
#[tokio::test]
async fn an_oversized_request_body_gets_an_aws_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let fh = spawn_embedded(config(dir.path())).await.unwrap();
    let resp = reqwest::Client::new()
        .post(fh.endpoint_url())
        .header("x-amz-target", "Firehose_20150804.PutRecordBatch")
        .header("content-type", "application/x-amz-json-1.1")
        .body(vec![b' '; 9 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.1");
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "RequestEntityTooLargeException"
    );
    let body: serde_json::Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["__type"], "RequestEntityTooLargeException");
    assert!(
        body["message"].as_str().unwrap().contains("8388608"),
        "{body}"
    );

    // What an SDK sees: 7 records of 1,000,000 bytes are over 8 MiB as base64.
    let client = firehose_client(&fh.endpoint_url());
    let million = vec![b'x'; 1_000_000];
    let err = client
        .put_record_batch()
        .delivery_stream_name("s")
        .set_records(Some((0..7).map(|_| rec(&million)).collect()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.code(),
        Some("RequestEntityTooLargeException"),
        "{err:?}"
    );
    fh.shutdown().await.unwrap();
}

/// Delivers a batch only when the test adds a permit; tells the test each time it is called.
#[derive(Debug)]
struct Gate {
    open: tokio::sync::Semaphore,
    called: tokio::sync::mpsc::UnboundedSender<usize>,
}

impl firehose_local::Destination for Gate {
    fn deliver<'a>(
        &'a self,
        batch: &'a [firehose_local::Record],
        _give_up: &'a tokio_util::sync::CancellationToken,
    ) -> futures::future::BoxFuture<'a, Result<(), firehose_local::DeliveryFailure>> {
        Box::pin(async move {
            let _ = self.called.send(batch.len());
            self.open.acquire().await.unwrap().forget();
            Ok(())
        })
    }
}

async fn held_bytes(endpoint: &str) -> String {
    metrics_text(endpoint)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("firehose_local_held_bytes "))
        .expect("the held-bytes gauge")
        .to_owned()
}

/// Past `max_held_mb`, records are refused with "Slow down." instead of piling up in memory
/// behind a destination that does not keep up; they fit again once delivery frees room.
#[tokio::test]
async fn records_past_the_memory_cap_are_refused_until_delivery_frees_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_held_mb = 1;
    let (called_tx, mut called) = tokio::sync::mpsc::unbounded_channel();
    let gate = Arc::new(Gate {
        open: tokio::sync::Semaphore::new(0),
        called: called_tx,
    });
    let server = firehose_local::Server::new(c)
        .unwrap()
        .with_destination("s", gate.clone());
    let fh = firehose_local::spawn_server(server).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    // The SDK retries a 503 on its own; this test wants to see each answer.
    let client = aws_sdk_firehose::Client::from_conf(
        client
            .config()
            .to_builder()
            .retry_config(aws_sdk_firehose::config::retry::RetryConfig::disabled())
            .build(),
    );
    let kib400 = vec![b'x'; 400 * 1024];
    let out = client
        .put_record_batch()
        .delivery_stream_name("s")
        .records(rec(&kib400))
        .records(rec(&kib400))
        .records(rec(&kib400))
        .send()
        .await
        .unwrap();
    let codes: Vec<_> = out
        .request_responses()
        .iter()
        .map(|r| (r.record_id().is_some(), r.error_message()))
        .collect();
    assert_eq!(
        codes,
        [(true, None), (true, None), (false, Some("Slow down."))],
        "two records fit under 1 MiB, the third does not"
    );
    assert_eq!(out.failed_put_count(), 1);
    assert_eq!(called.recv().await, Some(2), "the two are being delivered");
    assert_eq!(
        held_bytes(&fh.endpoint_url()).await,
        (2 * (400 * 1024 + 128)).to_string(),
        "each record's data plus 128 bytes of bookkeeping"
    );

    let refused = client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(&kib400))
        .send()
        .await
        .expect_err("PutRecord past the cap fails");
    assert_eq!(refused.code(), Some("ServiceUnavailableException"));
    assert_eq!(refused.message(), Some("Slow down."));
    let small = client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(b"small\n"))
        .send()
        .await;
    assert!(
        small.is_ok(),
        "a record that fits is still taken: {small:?}"
    );

    // Delivery frees the room; the held bytes fall back to what is still queued.
    gate.open.add_permits(1);
    assert_eq!(called.recv().await, Some(1), "the small record's batch");
    gate.open.add_permits(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held_bytes(&fh.endpoint_url()).await != "0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "held bytes never fell to 0"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(&kib400))
        .send()
        .await
        .expect("room again after delivery");
    let text = metrics_text(&fh.endpoint_url()).await;
    assert!(
        text.contains("firehose_throttled_records_total{delivery_stream=\"s\"} 2"),
        "both refusals count as ThrottledRecords: {text}"
    );
    gate.open.add_permits(10);
    fh.shutdown().await.unwrap();
}

/// A client stalled mid-request (here: a body that never finishes) does not hold up shutdown:
/// intake closes and the buffers flush at once, and shutdown stops waiting for the connection
/// after `SERVER_DRAIN`.
#[tokio::test]
async fn a_stalled_client_does_not_hold_up_the_flush() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.streams[0].buffering.interval_secs = 900;
    // Past the wait below: a shutdown that waited out the grace period fails it too.
    c.shutdown_grace_secs = 60;
    let fh = spawn_embedded(c).await.unwrap();
    let client = firehose_client(&fh.endpoint_url());
    client
        .put_record()
        .delivery_stream_name("s")
        .record(rec(b"kept\n"))
        .send()
        .await
        .unwrap();
    let addr = fh.endpoint_url().trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    // `Expect: 100-continue`: hyper answers `100 Continue` when the handler starts reading the
    // body, which says the request is in progress (shutdown before that would only close an
    // idle connection and prove nothing).
    stalled
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.PutRecord\r\n\
              Content-Type: application/x-amz-json-1.1\r\nContent-Length: 1000\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut byte))
            .await
            .expect("the server reads the request")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&interim)
        );
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    stalled.write_all(b"{\"Deli").await.unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), fh.shutdown())
        .await
        .expect("shutdown finishes with a stalled client connected")
        .unwrap();
    let took = started.elapsed();
    // The upper bound leaves a busy host room for the flush (a file synced to disk); without
    // the drain's cut the wait would never end (the timeout above), and the grace is 60 s.
    assert!(
        took >= firehose_local::SERVER_DRAIN && took < Duration::from_secs(20),
        "shutdown took {took:?}: it waits SERVER_DRAIN for the stalled request, then no longer"
    );
    assert_eq!(
        common::lines(&dir.path().join("delivered")),
        ["kept"],
        "the buffered record was flushed"
    );
    drop(stalled);
}
