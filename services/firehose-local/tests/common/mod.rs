//! Helpers shared by the integration tests: a recording HTTP endpoint, configs, file listings.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use axum::{
    Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse,
    routing::post,
};
use firehose_formats::http_endpoint::{self as spec, DeliveryRequest};
use firehose_local::config::{
    BackupConfig, BackupTarget, BufferingHints, Config, LocalDestinationConfig, StreamConfig,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One request the endpoint saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the endpoint's handler got the request (not when the test read it off the channel).
    pub at: std::time::Instant,
    pub headers: HeaderMap,
    pub raw_body: Vec<u8>,
    pub body: DeliveryRequest,
}

/// How the test endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with a valid body.
    Accept,
    /// 500 with a spec failure body.
    Fail,
    /// 413 with a spec failure body: the request was too large.
    TooLarge,
    /// 200 but echoing the wrong request id.
    WrongRequestId,
    /// 200 with a valid body, sent chunked: no `Content-Length`.
    Chunked,
    /// 200 with a valid body padded with spaces to `body` bytes and an `x-padding` header of
    /// `header` bytes.
    Padded { body: usize, header: usize },
    /// Never answers (the request is still recorded in `seen`, so a test knows it is in
    /// progress); the connection stays open until the client gives up.
    Hang,
}

#[derive(Clone)]
struct EndpointState {
    seen: mpsc::UnboundedSender<Seen>,
    behaviour: Arc<Mutex<Behaviour>>,
}

/// A test HTTP endpoint on 127.0.0.1:0 that records every request.
pub struct Endpoint {
    pub url: String,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub behaviour: Arc<Mutex<Behaviour>>,
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

async fn handle(
    State(state): State<EndpointState>,
    headers: HeaderMap,
    raw: Bytes,
) -> axum::response::Response {
    let at = std::time::Instant::now();
    let gzipped = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let json = if gzipped { gunzip(&raw) } else { raw.to_vec() };
    let body: DeliveryRequest = serde_json::from_slice(&json).expect("Firehose body");
    let id = body.request_id.clone();
    let _ = state.seen.send(Seen {
        at,
        headers,
        raw_body: raw.to_vec(),
        body,
    });
    let behaviour = *state.behaviour.lock().unwrap();
    let json_type = [("content-type", "application/json")];
    match behaviour {
        Behaviour::Accept => {
            (StatusCode::OK, json_type, spec::success_body(&id, 1)).into_response()
        }
        Behaviour::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json_type,
            spec::failure_body(&id, 1, "test endpoint says no"),
        )
            .into_response(),
        Behaviour::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            json_type,
            spec::failure_body(&id, 1, "payload too large"),
        )
            .into_response(),
        Behaviour::WrongRequestId => (
            StatusCode::OK,
            json_type,
            spec::success_body("not-the-id", 1),
        )
            .into_response(),
        Behaviour::Chunked => {
            let body = spec::success_body(&id, 1);
            let stream = futures::stream::iter([Ok::<_, std::io::Error>(body)]);
            (
                StatusCode::OK,
                json_type,
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Behaviour::Padded { body, header } => {
            let mut padded = spec::success_body(&id, 1);
            padded.extend(std::iter::repeat_n(' ', body.saturating_sub(padded.len())));
            (
                StatusCode::OK,
                [
                    ("content-type", "application/json".to_owned()),
                    ("x-padding", "p".repeat(header)),
                ],
                padded,
            )
                .into_response()
        }
        Behaviour::Hang => std::future::pending().await,
    }
}

impl Endpoint {
    pub async fn start(behaviour: Behaviour) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let behaviour = Arc::new(Mutex::new(behaviour));
        let app = Router::new()
            .route("/v1", post(handle))
            .with_state(EndpointState {
                seen: tx,
                behaviour: behaviour.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            seen: rx,
            behaviour,
        }
    }
}

/// A one-stream config named `s` under `dir`, flushing as soon as records arrive.
pub fn config(dir: &Path) -> Config {
    let mut c = Config::local_default(dir);
    c.shutdown_grace_secs = 5;
    c.streams = vec![StreamConfig {
        name: "s".into(),
        buffering: BufferingHints {
            size_mb: 1,
            interval_secs: 0,
        },
        processor: None,
        http_endpoint: None,
        local_destination: LocalDestinationConfig {
            dir: dir.join("delivered"),
        },
        backup: BackupConfig {
            target: BackupTarget::LocalDir {
                dir: dir.join("backup"),
            },
            ..BackupConfig::default()
        },
    }];
    c
}

/// Every file under `dir`, recursively, sorted.
pub use test_support::files_under as files;

/// Lines of every file under `dir`.
pub fn lines(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How many lines the files under `dir` hold right now, while firehose-local may be writing
/// there: a file renamed between the listing and the read (an object's temporary name) counts
/// as empty, where [`lines`] would panic.
pub fn lines_now(dir: &Path) -> usize {
    files(dir)
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}

/// An `aws-sdk-firehose` client for `endpoint` with dummy credentials.
pub fn firehose_client(endpoint: &str) -> aws_sdk_firehose::Client {
    let conf = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_firehose::Client::from_conf(conf)
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(data: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

/// Whether tests that need a tool must fail rather than skip (under CI).
pub fn in_ci() -> bool {
    // The same rule as the scripts and the other crates' tests: CI=true.
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Polls `check` every 20 ms for up to `secs` seconds (for files written by background tasks).
pub async fn eventually<T>(secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
