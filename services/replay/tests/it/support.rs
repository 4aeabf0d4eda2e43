//! Shared test fixtures: the fixture backup, a recording front door, and moto_server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// The fixture bucket: one object per format (see tests/fixtures/make_fixtures.py).
pub(crate) fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backup")
}

/// `--error-type` for every kind of object in the fixtures, for the tests that send them all.
///
/// The fixtures' `AllData` object holds other records than their error objects (one object per
/// format, not a stream's real `AllData` backup), so sending all of them sends no record twice.
/// Without these flags `replay` refuses the mix (see `binary::a_mixed_source_…`).
pub(crate) const EVERY_KIND: [&str; 6] = [
    "--error-type",
    "all-data",
    "--error-type",
    "processing-failed",
    "--error-type",
    "http-endpoint-failed",
];

/// Every good record in the fixtures, by event id.
pub(crate) const GOOD_IDS: [&str; 11] = [
    "ad-1", "ad-2", "ad-3", "he-1", "he-2", "he-3", "pf-1", "pf-2", "pf-3", "pf-4", "pf-5",
];

/// The malformed lines in the fixtures: (key, line).
pub(crate) const MALFORMED: [(&str, usize); 2] = [
    (
        "2026/11/25/08/events-1-2026-11-25-08-55-00-4d3e9f5a-7b8c-4dae-9f10-3b4c5d6e7f80",
        3,
    ),
    (
        "processing-failed/2026/11/25/09/events-1-2026-11-25-09-10-00-1f0c6a2e-9a35-4b7e-8f11-0c4d8e2b7a01",
        3,
    ),
];

/// How the recording front door behaves.
#[derive(Debug, Default)]
pub(crate) struct Behaviour {
    /// Accept at most this many events in total, then answer 503 (partly accepting the batch
    /// that crosses the line, naming the rest in `unaccepted`).
    pub(crate) accept_limit: Option<usize>,
    /// Answer every other batch's first attempt with 503 naming its odd-indexed events.
    pub(crate) partial_503: bool,
    /// Events whose id is here make the whole body a 400 naming them (`details[].index`), as
    /// the front door does.
    pub(crate) reject_ids: BTreeSet<String>,
    /// Every request is refused with this status and a body naming no event (a proxy or
    /// firewall in between, a wrong content type).
    pub(crate) refuse_every_request: Option<StatusCode>,
    /// On this request (1-based), record the events as accepted but never answer: a batch
    /// delivered whose confirmation is lost (the replay is killed while waiting).
    pub(crate) hang_on_request: Option<usize>,
    /// From this request (1-based) on, answer 401 (the key was revoked mid-replay).
    pub(crate) unauthorized_from_request: Option<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    behaviour: Behaviour,
    accepted: Vec<serde_json::Value>,
    requests: usize,
}

/// A stand-in for the front door's `POST /v1/events` that records what it accepts.
#[derive(Debug, Clone, Default)]
pub(crate) struct FrontDoor {
    inner: Arc<Mutex<Inner>>,
    hanging: Arc<tokio::sync::Notify>,
}

impl FrontDoor {
    /// Starts it on 127.0.0.1:0; returns it and its base URL.
    pub(crate) async fn start(behaviour: Behaviour) -> (Self, String) {
        let door = Self::default();
        door.set(behaviour);
        let app = Router::new()
            .route("/v1/events", post(intake))
            .with_state(door.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test front door");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test front door");
        });
        (door, format!("http://{addr}"))
    }

    /// Changes the behaviour (e.g. the outage is over).
    pub(crate) fn set(&self, behaviour: Behaviour) {
        self.inner.lock().expect("front door lock").behaviour = behaviour;
    }

    /// Ids of the accepted events, in arrival order.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("front door lock")
            .accepted
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("<no id>").to_owned())
            .collect()
    }

    /// The accepted events.
    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        self.inner.lock().expect("front door lock").accepted.clone()
    }

    /// Resolves once a request hangs (see [`Behaviour::hang_on_request`]).
    pub(crate) async fn hanging(&self) {
        self.hanging.notified().await;
    }

    /// POSTs received.
    pub(crate) fn requests(&self) -> usize {
        self.inner.lock().expect("front door lock").requests
    }
}

async fn intake(
    State(door): State<FrontDoor>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-ndjson" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "want NDJSON").into_response();
    }
    let events: Vec<serde_json::Value> = match std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
                .collect()
        }) {
        Ok(events) => events,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let accepted = events.len();
    // Decide under the lock, answer after it is released.
    let (hang, unaccepted) = {
        let mut inner = door.inner.lock().expect("front door lock");
        inner.requests += 1;
        let request_no = inner.requests;
        if let Some(status) = inner.behaviour.refuse_every_request {
            return (status, "refused by the firewall").into_response();
        }
        if inner
            .behaviour
            .unauthorized_from_request
            .is_some_and(|from| request_no >= from)
        {
            return (StatusCode::UNAUTHORIZED, "bad key").into_response();
        }
        if inner.behaviour.hang_on_request == Some(request_no) {
            inner.accepted.extend(events);
            (true, Vec::new())
        } else {
            let refused: Vec<usize> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e["id"]
                        .as_str()
                        .is_some_and(|id| inner.behaviour.reject_ids.contains(id))
                })
                .map(|(i, _)| i)
                .collect();
            if !refused.is_empty() {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({
                        "error": "an event breaks the schema",
                        "details": refused
                            .iter()
                            .map(|i| serde_json::json!({"index": i, "message": "breaks the schema"}))
                            .collect::<Vec<_>>(),
                    })),
                )
                    .into_response();
            }
            let mut unaccepted = Vec::new();
            for (i, event) in events.into_iter().enumerate() {
                let over_limit = inner
                    .behaviour
                    .accept_limit
                    .is_some_and(|limit| inner.accepted.len() >= limit);
                let partial = inner.behaviour.partial_503 && request_no % 2 == 1 && i % 2 == 1;
                if over_limit || partial {
                    unaccepted.push(i);
                } else {
                    inner.accepted.push(event);
                }
            }
            (false, unaccepted)
        }
    };
    if hang {
        door.hanging.notify_one();
        std::future::pending::<()>().await;
    }
    if unaccepted.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"accepted": accepted, "recordIds": []})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            axum::Json(
                serde_json::json!({"error": "firehose unavailable", "unaccepted": unaccepted}),
            ),
        )
            .into_response()
    }
}

/// Counts of each id.
pub(crate) fn counts(ids: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    counts
}

/// Asserts that every good fixture record arrived exactly once.
pub(crate) fn assert_each_good_record_once(ids: &[String]) {
    let expected: BTreeMap<String, usize> =
        GOOD_IDS.iter().map(|id| ((*id).to_owned(), 1)).collect();
    assert_eq!(counts(ids), expected, "every good record exactly once");
}

/// moto_server for the S3 and Firehose tests ([`test_support::moto::Moto`]: `MOTO_ENDPOINT`'s,
/// or one started for the test), with the clients and the `replay` environment that talk to it.
pub(crate) struct Moto {
    /// Base URL.
    pub(crate) endpoint: String,
    /// Stops a moto started for this test when dropped.
    _server: test_support::moto::Moto,
}

impl Moto {
    /// See the type docs; `None` (after printing why) without moto, which fails under `CI=true`.
    pub(crate) async fn get() -> Option<Self> {
        // Starting one waits for its start-up line: off the runtime's thread.
        let server = tokio::task::spawn_blocking(test_support::moto::Moto::get)
            .await
            .expect("starting moto_server")?;
        Some(Self {
            endpoint: server.endpoint.clone(),
            _server: server,
        })
    }

    /// The SDK configuration tests use against moto: dummy credentials, us-east-1.
    pub(crate) fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"),
            ))
            .build()
    }

    /// An S3 client with path-style addressing.
    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Environment for the `replay` binary so it talks to this moto.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("REPLAY_S3_FORCE_PATH_STYLE", "true".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

/// A bucket name no other test uses.
pub(crate) fn unique_bucket(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0)
    )
}

/// Uploads the fixture tree to `bucket` under `prefix`.
pub(crate) async fn upload_fixtures(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket in moto");
    for (path, key) in fixture_files() {
        let body = std::fs::read(&path).expect("read fixture");
        s3.put_object()
            .bucket(bucket)
            .key(format!("{prefix}{key}"))
            .body(body.into())
            .send()
            .await
            .expect("upload fixture to moto");
    }
}

/// Every fixture object: its path, and its key (the path under the fixture directory, with `/`).
pub(crate) fn fixture_files() -> Vec<(PathBuf, String)> {
    let root = fixture_dir();
    let files = test_support::files_under(&root);
    assert!(!files.is_empty(), "no fixtures under {}", root.display());
    files
        .into_iter()
        .map(|path| {
            let key = path
                .strip_prefix(&root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            (path, key)
        })
        .collect()
}

/// The `replay` binary, without the `REPLAY_*` variables of the shell that runs the tests (each
/// is a setting, and would change what a test sees).
pub(crate) fn replay_command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REPLAY_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Writes `body` as the object `key` under the directory source `root`, with its folders; its
/// path.
pub(crate) fn write_object(
    root: &std::path::Path,
    key: &str,
    body: impl AsRef<[u8]>,
) -> std::path::PathBuf {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, body).expect("write the object");
    path
}
