//! Objects in moto_server's S3 (the real S3 API), replayed by the binary into a front door and
//! into a moto Firehose delivery stream whose S3 destination we read back.

use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, EncryptionConfiguration, ExtendedS3DestinationConfiguration,
    NoEncryptionConfig,
};

use crate::support::{
    Behaviour, EVERY_KIND, FrontDoor, GOOD_IDS, MALFORMED, Moto, assert_each_good_record_once,
    unique_bucket, upload_fixtures,
};

/// Runs the binary with `args` and every kind of object selected (the fixtures hold all three).
async fn replay(moto: &Moto, args: &[&str]) -> std::process::Output {
    crate::support::replay_command()
        .args(args)
        .args(EVERY_KIND)
        .envs(moto.env())
        .output()
        .await
        .expect("the replay binary starts")
}

#[tokio::test]
async fn replays_from_s3_into_the_front_door() {
    let Some(moto) = Moto::get().await else {
        return;
    };
    let bucket = unique_bucket("replay-src");
    upload_fixtures(&moto.s3(), &bucket, "backup/").await;
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let source = format!("s3://{bucket}/backup/");
    let args = [
        source.as_str(),
        "--to-http",
        &url,
        "--checkpoint",
        cp.to_str().expect("utf-8"),
    ];
    let out = replay(&moto, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_good_record_once(&door.ids());
    for (key, line) in MALFORMED {
        assert!(stdout.contains(&format!("backup/{key}:{line}")), "{stdout}");
    }

    // the checkpoint holds: a second run sends nothing
    let requests = door.requests();
    let again = replay(&moto, &args).await;
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(door.requests(), requests);
    assert!(String::from_utf8_lossy(&again.stdout).contains("4 already done"));
}

#[tokio::test]
async fn replays_from_s3_into_a_delivery_stream_byte_for_byte() {
    let Some(moto) = Moto::get().await else {
        return;
    };
    let s3 = moto.s3();
    let source_bucket = unique_bucket("replay-src");
    upload_fixtures(&s3, &source_bucket, "").await;
    let dest_bucket = unique_bucket("replay-dest");
    s3.create_bucket()
        .bucket(&dest_bucket)
        .send()
        .await
        .expect("create destination bucket");
    let stream = unique_bucket("replay-stream");
    let firehose = aws_sdk_firehose::Client::new(&moto.sdk_config());
    // Boxed: the SDK's request future is large (clippy::large_futures).
    Box::pin(
        firehose
            .create_delivery_stream()
            .delivery_stream_name(&stream)
            .extended_s3_destination_configuration(
                ExtendedS3DestinationConfiguration::builder()
                    .bucket_arn(format!("arn:aws:s3:::{dest_bucket}"))
                    .role_arn("arn:aws:iam::123456789012:role/firehose")
                    // moto echoes only what it was given, and the SDK needs these in the
                    // DescribeDeliveryStream answer the replay's readiness check reads.
                    .compression_format(CompressionFormat::Uncompressed)
                    .buffering_hints(
                        BufferingHints::builder()
                            .size_in_mbs(1)
                            .interval_in_seconds(60)
                            .build(),
                    )
                    .encryption_configuration(
                        EncryptionConfiguration::builder()
                            .no_encryption_config(NoEncryptionConfig::NoEncryption)
                            .build(),
                    )
                    .build()
                    .expect("destination config"),
            )
            .send(),
    )
    .await
    .expect("create delivery stream in moto");

    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let source = format!("s3://{source_bucket}/");
    let out = replay(
        &moto,
        &[
            &source,
            "--to-stream",
            &stream,
            "--checkpoint",
            cp.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // moto writes what PutRecordBatch received, record bytes concatenated, to the destination.
    let listed = s3
        .list_objects_v2()
        .bucket(&dest_bucket)
        .send()
        .await
        .expect("list destination");
    let mut delivered = Vec::new();
    for object in listed.contents() {
        let body = s3
            .get_object()
            .bucket(&dest_bucket)
            .key(object.key().expect("key"))
            .send()
            .await
            .expect("get delivered object")
            .body
            .collect()
            .await
            .expect("read delivered object")
            .into_bytes();
        delivered.extend_from_slice(&body);
    }
    let text = String::from_utf8(delivered).expect("utf-8 records");
    // Firehose (and moto) concatenate records with no delimiter, so read a stream of JSON values.
    let ids: Vec<String> = serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .map(|v| {
            v.expect("the records are JSON events")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_each_good_record_once(&ids);
    // Exactly the bytes that were backed up: an AllData/processing-failed record is the event
    // JSON and its newline, as the front door wrote it; http-endpoint-failed data is the
    // transformed event as it was, which the transform left without its newline: replay puts
    // it back, so every record in the stream's objects is one line again.
    assert!(
        text.contains("{\"id\":\"pf-1\",\"message\":\"event pf-1\",\"level\":\"error\",\"service\":\"checkout\"}\n"),
        "{text}"
    );
    assert!(
        text.contains("\"_record_id\":\"rec-he-1\"}\n{\"id\":\"he-2\""),
        "{text}"
    );
    assert_eq!(
        text.lines().count(),
        GOOD_IDS.len(),
        "one record per line: {text}"
    );
    assert_eq!(ids.len(), GOOD_IDS.len());
}

/// An object archived by a lifecycle rule (GLACIER, not restored) cannot be fetched by a re-run
/// either: the replay ends "needs a fix" (exit 3), not "run it again" (2), which a retry loop
/// would repeat for ever (helper-69). moto answers its GetObject with S3's InvalidObjectState.
#[tokio::test]
async fn an_archived_object_needs_a_fix_not_a_rerun() {
    let Some(moto) = Moto::get().await else {
        return;
    };
    let bucket = unique_bucket("replay-archived");
    let s3 = moto.s3();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let key = "backup/http-endpoint-failed/2026/11/25/09/s-1-2026-11-25-09-30-00-archived";
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"{}\n"))
        .send()
        .await
        .expect("put an archived object");
    let (_door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let source = format!("s3://{bucket}/backup/");
    let out = replay(
        &moto,
        &[
            source.as_str(),
            "--to-http",
            &url,
            "--checkpoint",
            cp.to_str().expect("utf-8"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("InvalidObjectState"), "{stdout}");
}

/// `--key` looks the named objects up in S3 (`HeadObject`) instead of listing the prefix: the
/// real S3 API's answers for a present and a missing key give the same selection a listing did.
#[tokio::test]
async fn named_keys_are_found_in_s3_and_a_missing_one_is_an_error() {
    let Some(moto) = Moto::get().await else {
        return;
    };
    let bucket = unique_bucket("replay-keys");
    upload_fixtures(&moto.s3(), &bucket, "backup/").await;
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = format!("s3://{bucket}/backup/");
    // Through `replay` above: its --error-type flags admit every kind, so --key alone selects.
    let run = |cp: &'static str, keys: &[&str]| {
        let checkpoint = tmp.path().join(cp).display().to_string();
        let mut args = vec![
            source.clone(),
            "--to-http".to_owned(),
            url.clone(),
            "--checkpoint".to_owned(),
            checkpoint,
        ];
        for key in keys {
            args.extend(["--key".to_owned(), (*key).to_owned()]);
        }
        let moto = &moto;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            replay(moto, &args).await
        }
    };
    let missing_key = "backup/no/such/object";
    let out = run("none.json", &[missing_key]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(missing_key) && stderr.contains("Nothing was sent"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(door.requests(), 0);

    let he = "backup/http-endpoint-failed/2026/11/25/09/events-1-2026-11-25-09-30-00-3c2d8e4f-6a7b-4c9d-8e0f-2a3b4c5d6e7f.gz";
    // One key of two missing: an error naming it, nothing sent.
    let out = run("mixed.json", &[he, missing_key]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 of the 2 keys") && stderr.contains(missing_key),
        "{stderr}"
    );
    assert_eq!(door.requests(), 0);
    // The key below the source (as a directory source's summary prints it) is the same object.
    let below = he.strip_prefix("backup/").expect("under the prefix");
    let out = run("one.json", &[below]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids = door.ids();
    ids.sort();
    assert_eq!(ids, ["he-1", "he-2", "he-3"], "{stdout}");
}

/// A source prefix without its final `/` lists, on real S3, the folder and every key beside
/// it (`backup-staging/…` under `backup`): another stream's backups. Refused before anything
/// is sent (helper-82); with the `/` the same bucket replays the folder alone.
#[tokio::test]
async fn a_prefix_that_also_matches_keys_beside_its_folder_is_refused() {
    let Some(moto) = Moto::get().await else {
        return;
    };
    let bucket = unique_bucket("replay-sibling");
    let s3 = moto.s3();
    upload_fixtures(&s3, &bucket, "backup/").await;
    let sibling = "backup-staging/2026/11/25/08/events-1-2026-11-25-08-00-00-staging";
    s3.put_object()
        .bucket(&bucket)
        .key(sibling)
        .body(b"{\"id\":\"staging-1\"}\n".to_vec().into())
        .send()
        .await
        .expect("upload to moto");
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let run = |source: String| {
        let (moto, url, cp) = (&moto, url.clone(), cp.display().to_string());
        async move {
            let args = [source.as_str(), "--to-http", &url, "--checkpoint", &cp];
            replay(moto, &args).await
        }
    };
    let out = run(format!("s3://{bucket}/backup")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(sibling) && stderr.contains(&format!("write s3://{bucket}/backup/")),
        "{stderr}"
    );
    assert_eq!(door.requests(), 0);

    let out = run(format!("s3://{bucket}/backup/")).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_good_record_once(&door.ids());
}
