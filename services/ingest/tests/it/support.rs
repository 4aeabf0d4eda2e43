//! Test helpers: a scriptable fake sink, an app builder, a request helper that checks every
//! answer against the OpenAPI document.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use ingest::auth::{Auth, KeyStore};
use ingest::metrics::Metrics;
use ingest::producer::{Producer, ProducerConfig};
use ingest::ratelimit::RateLimiter;
use ingest::sink::{BatchOutcome, RecordOutcome, RecordSink, SinkError};
use ingest::state::{AppState, HttpSettings};
use ingest::validate::Schema;
use serde_json::Value;
use tower::ServiceExt;

pub type Rule = Box<dyn Fn(&[u8], usize) -> Option<&'static str> + Send + Sync>;

/// A sink that keeps what it is sent; `rule(record, call)` fails records with an error code.
pub struct FakeSink {
    pub calls: Mutex<Vec<Vec<Bytes>>>,
    rule: Rule,
    /// What `check` (DescribeDeliveryStream) answers: `None` is ACTIVE.
    pub check_error: Mutex<Option<SinkError>>,
    /// `check` calls made.
    pub checks: std::sync::atomic::AtomicUsize,
    /// `check` never answers.
    pub check_hangs: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for FakeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FakeSink")
    }
}

impl FakeSink {
    pub fn new(rule: Rule) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            rule,
            check_error: Mutex::new(None),
            checks: std::sync::atomic::AtomicUsize::new(0),
            check_hangs: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn ok() -> Arc<Self> {
        Self::new(Box::new(|_, _| None))
    }

    pub fn records(&self) -> Vec<Bytes> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl RecordSink for FakeSink {
    fn put_batch<'a>(
        &'a self,
        _stream: &'a str,
        records: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<BatchOutcome, SinkError>> {
        Box::pin(async move {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(records.clone());
                calls.len()
            };
            let records = records
                .iter()
                .enumerate()
                .map(|(i, r)| match (self.rule)(r, call) {
                    Some(code) => RecordOutcome::Failed {
                        error_code: code.to_owned(),
                        message: "refused".to_owned(),
                    },
                    None => RecordOutcome::Accepted {
                        record_id: format!("id-{call}-{i}"),
                    },
                })
                .collect();
            Ok(BatchOutcome { records })
        })
    }

    fn check<'a>(&'a self, _stream: &'a str) -> BoxFuture<'a, Result<(), SinkError>> {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = self.check_error.lock().unwrap().clone();
        let hangs = self.check_hangs.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            answer.map_or(Ok(()), Err)
        })
    }
}

/// Knobs of a test app.
pub struct Options {
    pub keys: Option<&'static str>,
    pub rate: (f64, Option<u32>),
    pub schema: Option<Value>,
    pub max_body_bytes: usize,
    pub max_events: usize,
    pub max_event_bytes: usize,
    pub producer: ProducerConfig,
    /// The send window (`INGEST_REQUEST_TIMEOUT` - call timeout - 1 s in the service).
    pub send_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            keys: None,
            rate: (0.0, None),
            schema: None,
            max_body_bytes: 10 * 1024 * 1024,
            max_events: 100_000,
            max_event_bytes: ingest::validate::MAX_EVENT_BYTES,
            producer: ProducerConfig {
                retry_budget: Duration::from_millis(300),
                initial_backoff: Duration::from_millis(5),
                linger: Duration::from_millis(2),
                ..ProducerConfig::default()
            },
            send_window: Duration::from_secs(30),
        }
    }
}

pub struct TestApp {
    pub router: Router,
    pub admin: Router,
    pub state: AppState,
    pub sink: Arc<FakeSink>,
    _key_file: Option<KeyFile>,
}

/// An API-key file with the given contents in a directory of its own (removed on drop).
pub struct KeyFile {
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl KeyFile {
    pub fn new(contents: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api-keys");
        std::fs::write(&path, contents).expect("key file");
        Self { path, _dir: dir }
    }

    /// Replaces the file atomically, as a careful operator (or a Kubernetes Secret volume)
    /// does: write a sibling, rename it over.
    pub fn replace(&self, contents: &str) {
        let next = self.path.with_extension("next");
        std::fs::write(&next, contents).expect("write the new key file");
        std::fs::rename(&next, &self.path).expect("rename over the key file");
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }
}

pub fn app_with(sink: Arc<FakeSink>, options: Options) -> TestApp {
    let key_file = options.keys.map(KeyFile::new);
    let auth = match &key_file {
        Some(file) => Auth::Keys(Arc::new(KeyStore::load(&file.path).unwrap())),
        None => Auth::Off,
    };
    let schema = options
        .schema
        .map(|s| Schema::compile(&s, "test schema").unwrap());
    let metrics = Metrics::new().unwrap();
    let producer = Producer::spawn_with_metrics(
        Arc::clone(&sink) as Arc<dyn RecordSink>,
        "test-stream",
        options.producer,
        metrics.producer.clone(),
    );
    let settings = HttpSettings {
        auth,
        limiter: RateLimiter::new(options.rate.0, options.rate.1),
        schema,
        max_body_bytes: options.max_body_bytes,
        max_events: options.max_events,
        max_event_bytes: options.max_event_bytes,
        send_window: options.send_window,
    };
    let state = AppState::new(producer, settings, metrics);
    TestApp {
        router: ingest::app(state.clone()),
        admin: ingest::admin_app(state.clone()),
        state,
        sink,
        _key_file: key_file,
    }
}

pub fn app() -> TestApp {
    app_with(FakeSink::ok(), Options::default())
}

pub fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

/// A POST to `/v1/events` of `body` as `content_type`, compressed as `coding` says.
pub fn encoded(content_type: &str, coding: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/events")
        .header("content-type", content_type)
        .header("content-encoding", coding)
        .body(body.into())
        .unwrap()
}

pub fn json(body: &str) -> Request<Body> {
    post("/v1/events", "application/json", body.to_owned())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Sends `request` to `router` and checks the answer against the OpenAPI document.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_lowercase();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    crate::openapi::check_response(&path, &method, status, &headers, &body, &text);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A zstd frame of `data` whose header declares a window of 2^`window_log` bytes.
pub fn zstd_with_window(data: &[u8], window_log: u32) -> Vec<u8> {
    use std::io::Write;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(window_log).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
