//! End to end through the real pipeline: events put into a local Firehose (in-process transform,
//! HTTP endpoint delivery, S3-style backup) while the endpoint is down land in
//! `http-endpoint-failed/`; the endpoint comes back; the `replay` binary puts them back into the
//! stream, and the endpoint receives each of them once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine as _;
use firehose_local::config::{
    BackupConfig, BackupTarget, Compression, HttpEndpointConfig, S3BackupMode,
};
use replay::layout::ObjectKind;
use replay::read::read_object;
use tokio::sync::watch;

/// A New Relic stand-in speaking Firehose's HTTP endpoint protocol.
#[derive(Clone)]
struct Endpoint {
    up: Arc<Mutex<bool>>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    count: watch::Sender<usize>,
}

async fn deliver(
    State(endpoint): State<Endpoint>,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    let request_id = body["requestId"].clone();
    let answer = |status| {
        (
            status,
            Json(serde_json::json!({"requestId": request_id, "timestamp": 1_764_000_000_000_i64})),
        )
    };
    if !*endpoint.up.lock().expect("lock") {
        return answer(StatusCode::SERVICE_UNAVAILABLE);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut received = endpoint.received.lock().expect("lock");
    for record in body["records"].as_array().into_iter().flatten() {
        let data = b64
            .decode(record["data"].as_str().unwrap_or_default())
            .expect("base64 record");
        received.push(serde_json::from_slice(&data).expect("a JSON event"));
    }
    endpoint.count.send_replace(received.len());
    answer(StatusCode::OK)
}

fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("<none>").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_backed_up_while_the_endpoint_was_down_are_delivered_once_by_replay() {
    // The endpoint, down.
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let endpoint = Endpoint {
        up: Arc::new(Mutex::new(false)),
        received: Arc::default(),
        count: count_tx,
    };
    let app = axum::Router::new()
        .route("/firehose/v1", post(deliver))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind endpoint");
    let endpoint_url = format!(
        "http://{}/firehose/v1",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("endpoint") });

    // The local Firehose: transform, delivery with no retries (a retry duration of 0 backs a
    // failed batch up at once), GZIP backup in a directory.
    let tmp = tempfile::tempdir().expect("tempdir");
    let backup_dir = tmp.path().join("backup");
    let mut config = firehose_local::Config::local_default(tmp.path());
    let stream = &mut config.streams[0];
    stream.buffering.interval_secs = 1;
    stream.http_endpoint = Some(HttpEndpointConfig {
        url: endpoint_url,
        name: None,
        access_key: None,
        common_attributes: Default::default(),
        content_encoding: Compression::None,
        retry_duration_secs: 0,
        s3_backup_mode: S3BackupMode::FailedDataOnly,
        request_timeout_secs: 5,
    });
    stream.backup = BackupConfig {
        target: BackupTarget::LocalDir {
            dir: backup_dir.clone(),
        },
        compression: Compression::Gzip,
        ..BackupConfig::default()
    };
    let stream_name = stream.name.clone();
    let firehose = firehose_local::spawn_embedded(config)
        .await
        .expect("local Firehose starts");

    // Five events in, through the real API.
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(firehose.endpoint_url())
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"),
        ))
        .build();
    let client = aws_sdk_firehose::Client::new(&sdk);
    let wanted: Vec<String> = (1..=5).map(|i| format!("e2e-{i}")).collect();
    let records = wanted
        .iter()
        .map(|id| {
            aws_sdk_firehose::types::Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new(format!(
                    "{{\"id\":\"{id}\"}}\n"
                )))
                .build()
                .expect("record")
        })
        .collect::<Vec<_>>();
    let put = Box::pin(
        client
            .put_record_batch()
            .delivery_stream_name(&stream_name)
            .set_records(Some(records))
            .send(),
    )
    .await
    .expect("PutRecordBatch");
    assert_eq!(put.failed_put_count(), 0);

    // Wait (bounded) for the failed batch to land in http-endpoint-failed/.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let backed_up = loop {
        let mut found = Vec::new();
        for object in replay::source::Source::Dir(backup_dir.clone())
            .list()
            .await
            .unwrap_or_default()
        {
            let kind = ObjectKind::of_key(&object.key);
            assert_ne!(
                kind,
                ObjectKind::ProcessingFailed,
                "the transform accepted every event"
            );
            let body = std::fs::read(backup_dir.join(&object.key)).expect("read backup object");
            let read = read_object(&kind, body.into()).expect("a readable backup object");
            found.extend(read.records.iter().map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.data).expect("JSON rawData")
            }));
        }
        if found.len() >= wanted.len() {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no http-endpoint-failed backup after 60 s (found {})",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut backed_up_ids = ids(&backed_up);
    backed_up_ids.sort();
    assert_eq!(backed_up_ids, wanted);
    assert!(endpoint.received.lock().expect("lock").is_empty());

    // The endpoint is back; replay the backup into the stream with the binary.
    *endpoint.up.lock().expect("lock") = true;
    let out = crate::support::replay_command()
        .arg(&backup_dir)
        .args([
            "--to-stream",
            &stream_name,
            "--error-type",
            "http-endpoint-failed",
        ])
        .arg("--checkpoint")
        .arg(tmp.path().join("cp.json"))
        .env("AWS_ENDPOINT_URL", firehose.endpoint_url())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("replay starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 sent"), "{stdout}");

    // The endpoint gets each event once, transformed once more (one copy of each added field).
    tokio::time::timeout(
        Duration::from_secs(60),
        count_rx.wait_for(|n| *n >= wanted.len()),
    )
    .await
    .expect("the replayed events reach the endpoint within 60 s")
    .expect("endpoint alive");
    let delivered = endpoint.received.lock().expect("lock").clone();
    let mut delivered_ids = ids(&delivered);
    delivered_ids.sort();
    assert_eq!(delivered_ids, wanted, "each event exactly once");
    for event in &delivered {
        assert_eq!(event["transformed"], true);
        assert!(event["_transformed_ts"].is_i64());
        let text = event.to_string();
        assert_eq!(text.matches("\"_record_id\"").count(), 1, "{text}");
    }
    firehose.shutdown().await.expect("local Firehose stops");
}
