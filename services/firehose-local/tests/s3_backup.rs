//! Backup to S3 through `aws-sdk-s3`, against a real `moto_server` (`MOTO_ENDPOINT`, exported by
//! scripts/test.sh; else started here by [`test_support::moto::Moto`] when it is installed;
//! otherwise skipped, or failed under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use common::{Behaviour, Endpoint, config, firehose_client};
use firehose_formats::backup::ErrorRecord;
use firehose_local::config::{BackupTarget, Compression, HttpEndpointConfig, S3BackupMode};
use firehose_local::spawn_embedded;
use std::io::Read as _;

fn s3(url: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn failed_deliveries_are_written_to_an_s3_bucket() {
    let Some(moto) = tokio::task::spawn_blocking(test_support::moto::Moto::get)
        .await
        .unwrap()
    else {
        return;
    };
    let bucket = format!("fh-local-{}", uuid::Uuid::new_v4().simple());
    let client = s3(&moto.endpoint);
    client.create_bucket().bucket(&bucket).send().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::start(Behaviour::Fail).await;
    let mut c = config(dir.path());
    c.streams[0].http_endpoint = Some(HttpEndpointConfig {
        url: ep.url.clone(),
        name: None,
        access_key: None,
        common_attributes: Default::default(),
        content_encoding: Compression::None,
        retry_duration_secs: 0,
        s3_backup_mode: S3BackupMode::FailedDataOnly,
        request_timeout_secs: 180,
    });
    c.streams[0].backup.target = BackupTarget::S3 {
        bucket: bucket.clone(),
        endpoint_url: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
    };
    c.streams[0].backup.error_output_prefix =
        Some("fh/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/".into());
    c.streams[0].backup.compression = Compression::Gzip;
    let fh = spawn_embedded(c).await.unwrap();
    firehose_client(&fh.endpoint_url())
        .put_record()
        .delivery_stream_name("s")
        .record(
            Record::builder()
                .data(Blob::new(&b"{\"x\":1}"[..]))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    fh.shutdown().await.unwrap();

    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("fh/http-endpoint-failed/") && keys[0].ends_with(".gz"),
        "{}",
        keys[0]
    );
    let name = keys[0].rsplit('/').next().unwrap();
    assert!(name.starts_with("s-1-"), "{name}");
    let object = client
        .get_object()
        .bucket(&bucket)
        .key(keys[0])
        .send()
        .await
        .unwrap();
    let gz = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(gz[..2], [0x1f, 0x8b]);
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let rec = ErrorRecord::parse_tolerant(text.trim_end().as_bytes()).unwrap();
    assert_eq!(rec.error_code, "HttpEndpoint.DestinationException");
    assert_eq!(rec.raw_data, common::b64(b"{\"x\":1}"));
}
