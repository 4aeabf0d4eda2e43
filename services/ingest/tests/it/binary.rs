//! The built `ingest` binary over real sockets: end to end against `moto_server` (Firehose
//! writes raw records to S3, which we read back byte for byte), and a SIGTERM under load
//! against the fake Firehose (every acknowledged event must have reached Firehose).

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::fake_firehose::FakeFirehose;

/// A running `ingest` and its log lines.
pub(super) struct Ingest {
    child: Child,
    pub(super) logs: mpsc::UnboundedReceiver<Value>,
    pub(super) url: String,
    /// The log lines written up to "ingest listening".
    pub(super) startup: Vec<Value>,
    /// Every line written to stdout, whether or not a test waited for it.
    transcript: Option<Transcript>,
}

/// Every line a child writes to stdout, kept by the task that reads them.
pub(super) struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
    /// Held for writing: the reader stops after its current line, so the child's stdout
    /// stalls once the pipe is full.
    gate: Arc<tokio::sync::RwLock<()>>,
}

impl Transcript {
    /// Every line, once the child has closed its stdout (it exited).
    pub(super) async fn all(self) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(60), self.reader)
            .await
            .expect("stdout closes when the process exits")
            .expect("the reader task does not panic");
        std::mem::take(&mut *self.lines.lock().expect("lock"))
    }
}

impl Ingest {
    /// Starts `ingest` against the Firehose API at `endpoint` with `extra` settings, and waits
    /// until it listens and `stream` answered `DescribeDeliveryStream`.
    pub(super) async fn start(endpoint: &str, stream: &str, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FIREHOSE_DELIVERY_STREAM", stream)
            .env("INGEST_LISTEN", "127.0.0.1:0")
            .env("INGEST_ADMIN_LISTEN", "127.0.0.1:0")
            .env("INGEST_READINESS_INTERVAL", "1s")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            command.env(k, v);
        }
        let (child, mut logs, transcript) = spawn_logged(command);
        let (listening, startup) = wait_started(&mut logs).await;
        let url = format!(
            "http://{}",
            listening["listen"].as_str().expect("listen addr")
        );
        Self {
            child,
            logs,
            url,
            startup,
            transcript: Some(transcript),
        }
    }

    /// Every line written to stdout from the start; call after the process exited.
    pub(super) async fn transcript(&mut self) -> Vec<String> {
        self.transcript
            .take()
            .expect("the transcript is taken once")
            .all()
            .await
    }

    /// Stops reading ingest's stdout until the guard is dropped: once the pipe is full, its
    /// writes block, as under a stalled log pipeline.
    pub(super) async fn pause_stdout(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        let gate = Arc::clone(&self.transcript.as_ref().expect("stdout is read").gate);
        gate.write_owned().await
    }

    /// POSTs one JSON `body` to `/v1/events`.
    pub(super) async fn post_json(&self, body: &'static str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/events", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the request is answered")
    }

    /// Waits until the lines ingest has written to stdout so far hold at least `want` that
    /// `count` counts (60 s at most; the reader must not be paused).
    pub(super) async fn wait_written(&self, count: impl Fn(&[String]) -> usize, want: usize) {
        let lines = Arc::clone(&self.transcript.as_ref().expect("stdout is read").lines);
        let counted = || count(&lines.lock().expect("lock"));
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            while counted() < want {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{} of {want} lines written to stdout within 60 s",
            counted()
        );
    }

    /// Sends SIGTERM. `kill` is awaited, not run blocking: this runtime's one thread also
    /// reads ingest's stdout, and a log thread stuck on a full pipe at exit has only
    /// `tracing-appender`'s 100 ms (then 1 s) to write what is queued.
    pub(super) async fn sigterm(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit.
    pub(super) async fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm().await;
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("ingest exits after SIGTERM")
            .expect("wait")
    }
}

/// Spawns `command` (an `ingest` invocation) with stdout piped and returns the child, its
/// JSON log lines, and the transcript of every line; a line that is not JSON is printed for
/// the test log.
pub(super) fn spawn_logged(
    mut command: Command,
) -> (Child, mpsc::UnboundedReceiver<Value>, Transcript) {
    command.stdout(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().expect("ingest binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, logs) = mpsc::unbounded_channel();
    let all = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&all);
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let open = Arc::clone(&gate);
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            drop(open.read().await);
            kept.lock().expect("lock").push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            } else {
                println!("ingest (not JSON): {line}");
            }
        }
    });
    (
        child,
        logs,
        Transcript {
            lines: all,
            reader,
            gate,
        },
    )
}

/// Waits until ingest logged both "ingest listening" and "delivery stream reachable", in either
/// order: the readiness check runs beside the start-up, and on a busy host it can answer before
/// the listeners are bound. Returns the listening line and every line up to it.
pub(super) async fn wait_started(logs: &mut mpsc::UnboundedReceiver<Value>) -> (Value, Vec<Value>) {
    let reachable = |v: &Value| v["message"] == "delivery stream reachable";
    let mut startup = Vec::new();
    let listening = wait_log(logs, |v| {
        startup.push(v.clone());
        v["message"] == "ingest listening"
    })
    .await;
    if !startup.iter().any(reachable) {
        wait_log(logs, reachable).await;
    }
    (listening, startup)
}

pub(super) async fn wait_log(
    logs: &mut mpsc::UnboundedReceiver<Value>,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(v) = logs.recv().await {
            if pred(&v) {
                return v;
            }
        }
        panic!("ingest exited before the expected log line");
    })
    .await
    .expect("expected log line within 60 s")
}

fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"),
        ))
        .build()
}

#[tokio::test]
async fn events_arrive_in_s3_byte_for_byte_through_moto() {
    let Some(moto) = tokio::task::spawn_blocking(test_support::moto::Moto::get)
        .await
        .unwrap()
    else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let bucket = format!("ingest-e2e-{}", &id[..12]);
    let stream = format!("ingest-e2e-{}", &id[..12]);
    let config = sdk_config(&moto.endpoint);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let firehose = aws_sdk_firehose::Client::new(&config);
    Box::pin(
        firehose
            .create_delivery_stream()
            .delivery_stream_name(&stream)
            .delivery_stream_type(aws_sdk_firehose::types::DeliveryStreamType::DirectPut)
            .extended_s3_destination_configuration(
                aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
                    .role_arn("arn:aws:iam::123456789012:role/firehose")
                    .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                    .prefix("events/")
                    // moto leaves CompressionFormat out of DescribeDeliveryStream unless it was set,
                    // and the SDK refuses a description without it.
                    .compression_format(aws_sdk_firehose::types::CompressionFormat::Uncompressed)
                    .build()
                    .expect("destination"),
            )
            .send(),
    )
    .await
    .expect("delivery stream");

    let mut ingest = Ingest::start(&moto.endpoint, &stream, &[]).await;
    let http = reqwest::Client::new();
    let post = |body: &'static str, ct: &'static str| {
        http.post(format!("{}/v1/events", ingest.url))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let accepted = [
        (
            r#"  {"id": 1, "text": "héllo wörld ✓"}  "#,
            "application/json",
        ),
        (
            r#"[{"id":2},  {"id" : 3, "nested": {"a": [1, 2]}}]"#,
            "application/json",
        ),
        (
            "{\"id\":4}\n\n{\"id\":5,\"s\":\"tab\\there\"}\n",
            "application/x-ndjson",
        ),
    ];
    for (body, ct) in accepted {
        let r = post(body, ct).await.expect("post");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let r = post(r#"[{"id":6,"marker":"REJECTED"}, 7]"#, "application/json")
        .await
        .expect("post");
    assert_eq!(r.status(), 400);

    let expected: Vec<&str> = vec![
        r#"{"id": 1, "text": "héllo wörld ✓"}"#,
        r#"{"id":2}"#,
        r#"{"id" : 3, "nested": {"a": [1, 2]}}"#,
        r#"{"id":4}"#,
        r#"{"id":5,"s":"tab\there"}"#,
    ];
    // moto writes each PutRecordBatch straight to S3: gather every object's bytes.
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let mut stored = Vec::new();
    for object in listed.contents() {
        let key = object.key().expect("key");
        assert!(key.starts_with("events/"), "{key}");
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .expect("get");
        stored.extend_from_slice(&body.body.collect().await.expect("read").into_bytes());
    }
    let text = String::from_utf8(stored).expect("utf8");
    let mut got: Vec<&str> = text.split_terminator('\n').collect();
    got.sort_unstable();
    let mut want = expected.clone();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "S3 holds exactly the accepted events, newline-terminated"
    );
    assert!(!text.contains("REJECTED"));
    assert!(text.ends_with('\n'));

    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
    wait_log(&mut ingest.logs, |v| v["message"] == "shutdown complete").await;
}

/// Starts the fake Firehose (keeping records) on a loopback port: its endpoint URL and what it
/// has seen.
pub(super) async fn start_fake_firehose() -> (String, Arc<FakeFirehose>) {
    let fake = FakeFirehose::new(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let router = fake.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (endpoint, fake)
}

/// The Helm chart points Firehose calls elsewhere with `AWS_ENDPOINT_URL_FIREHOSE`, not the
/// global `AWS_ENDPOINT_URL`, which would also move STS (IRSA's web-identity exchange). Here
/// the global one leads nowhere, so the readiness check and the event can only have reached
/// Firehose through the service-specific variable.
#[tokio::test]
async fn aws_endpoint_url_firehose_alone_moves_the_firehose_client() {
    let (endpoint, fake) = start_fake_firehose().await;
    let ingest = Ingest::start(
        "http://127.0.0.1:9",
        "only-firehose",
        &[("AWS_ENDPOINT_URL_FIREHOSE", &endpoint)],
    )
    .await;
    let response = ingest
        .post_json(r#"{"via":"AWS_ENDPOINT_URL_FIREHOSE"}"#)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        fake.kept(),
        vec![b"{\"via\":\"AWS_ENDPOINT_URL_FIREHOSE\"}\n".to_vec()]
    );
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    let (endpoint, fake) = start_fake_firehose().await;

    let mut ingest = Ingest::start(&endpoint, "load", &[("INGEST_LINGER", "20ms")]).await;
    let acked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let (enough_tx, mut enough_rx) = mpsc::channel::<()>(1);
    let mut clients = Vec::new();
    for c in 0..16 {
        let url = format!("{}/v1/events", ingest.url);
        let acked = Arc::clone(&acked);
        let answered = Arc::clone(&answered);
        let enough = enough_tx.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for r in 0.. {
                let events: Vec<String> = (0..10)
                    .map(|e| format!("{{\"client\":{c},\"request\":{r},\"event\":{e}}}"))
                    .collect();
                let body = format!("[{}]", events.join(","));
                let Ok(response) = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                else {
                    break; // listener closed
                };
                let status = response.status();
                let Ok(answer) = response.json::<Value>().await else {
                    break;
                };
                if status == 200 {
                    assert_eq!(answer["accepted"], 10);
                    acked.lock().unwrap().extend(events);
                } else {
                    assert_eq!(status, 503, "{answer}");
                    // Whatever is not listed as unaccepted was accepted.
                    let unaccepted: HashSet<usize> = answer["unaccepted"]
                        .as_array()
                        .expect("unaccepted list")
                        .iter()
                        .filter_map(Value::as_u64)
                        .map(|i| i as usize)
                        .collect();
                    let kept = events
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| !unaccepted.contains(i))
                        .map(|(_, e)| e);
                    acked.lock().unwrap().extend(kept);
                    break;
                }
                if answered.fetch_add(1, Ordering::SeqCst) == 300 {
                    let _ = enough.try_send(());
                }
            }
        }));
    }
    drop(enough_tx);
    enough_rx
        .recv()
        .await
        .expect("load reached 300 answered requests");
    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
    for client in clients {
        client.await.expect("client task");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3000, "{} events acknowledged", acked.len());
    let received: HashSet<Vec<u8>> = fake.kept().into_iter().collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|e| !received.contains(format!("{e}\n").as_bytes()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events never reached Firehose, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    let calls = fake.calls.load(Ordering::Relaxed) as usize;
    println!(
        "{} events acknowledged, {} received, {calls} PutRecordBatch calls",
        acked.len(),
        received.len()
    );
}

#[tokio::test]
async fn bad_config_fails_at_start_saying_what_to_fix() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        // No stream: the embedded local Firehose, whose own bad config must stop the start too.
        (
            &[(
                "INGEST_LOCAL_FIREHOSE_CONFIG",
                "/nonexistent/firehose-local.toml",
            )],
            "cannot read config file /nonexistent/firehose-local.toml",
        ),
        (
            &[("FIREHOSE_DELIVERY_STREAM", "has space")],
            "1-64 characters",
        ),
        (
            &[
                ("FIREHOSE_DELIVERY_STREAM", "s"),
                ("INGEST_MAX_INFLIGHT_BYTES", "10"),
            ],
            "INGEST_MAX_INFLIGHT_BYTES",
        ),
        // A value that does not parse: the variable is named, not only the flag.
        (
            &[("FIREHOSE_DELIVERY_STREAM", "s"), ("INGEST_LINGER", "abc")],
            "INGEST_LINGER",
        ),
        // No region anywhere (no env, no profile, no instance metadata): every call would fail
        // inside the SDK as a dispatch error, and the pod would never be ready, unexplained.
        (
            &[
                ("FIREHOSE_DELIVERY_STREAM", "s"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
            "no AWS region: set AWS_REGION",
        ),
    ];
    for (env, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .await
            .expect("ingest runs");
        assert!(!out.status.success(), "{env:?} must not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}

/// The admin address from the start-up line.
pub(super) fn admin_addr(ingest: &Ingest) -> String {
    ingest
        .startup
        .iter()
        .find_map(|v| v["admin"].as_str())
        .expect("the listening line names the admin address")
        .to_owned()
}

/// A raw connection to `addr` that has sent `bytes`.
async fn connect_and_send(addr: &str, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// `axum::serve` has no header-read timeout, and graceful shutdown waits for every open
/// connection: an admin connection holding half a request head kept the process from ever
/// exiting (so the pod was SIGKILLed, unflushed). The admin listener now gets `ADMIN_DRAIN`.
#[tokio::test]
async fn a_stalled_admin_connection_does_not_hold_the_exit() {
    use tokio::io::AsyncReadExt as _;
    let (endpoint, _fake) = start_fake_firehose().await;
    let mut ingest = Ingest::start(&endpoint, "stalled-admin", &[]).await;
    let admin = admin_addr(&ingest);
    // Half a request head, never finished, on a new connection.
    let stalled = connect_and_send(&admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
    // A whole request on a later connection: once it is answered, the listener (which accepts
    // in order) has taken the stalled connection too.
    let mut probe = connect_and_send(&admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = [0_u8; 12];
    probe.read_exact(&mut answer).await.expect("answered");
    assert_eq!(&answer, b"HTTP/1.1 200");
    drop(probe);
    let started = std::time::Instant::now();
    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exit took {:?}",
        started.elapsed()
    );
    wait_log(&mut ingest.logs, |v| {
        v["message"] == "no longer waiting for admin connections still open"
    })
    .await;
    drop(stalled);
}

/// A client that closes its connection before the answer: hyper drops the handler's future, yet
/// the request gets its access line (status 499, reason `client_closed`) and its count, and its
/// event, already handed to the producer, is still delivered.
#[tokio::test]
async fn a_client_that_goes_away_is_logged_and_counted() {
    let (endpoint, fake) = start_fake_firehose().await;
    // The linger is all that holds the handler pending until the client goes away: long, so a
    // slow host cannot see the event sent and the request answered first. It must be shorter
    // than the request timeout - the call timeout (10 s) - 1 s, and the grace at least the
    // request timeout.
    let mut ingest = Ingest::start(
        &endpoint,
        "gone",
        &[
            ("INGEST_LINGER", "20s"),
            ("INGEST_REQUEST_TIMEOUT", "40s"),
            ("INGEST_SHUTDOWN_GRACE", "40s"),
        ],
    )
    .await;
    let metrics_url = format!("http://{}/metrics", admin_addr(&ingest));
    let body = r#"{"left":"early"}"#;
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Request-Id: gone-1\r\n\r\n{body}",
        body.len()
    );
    let client =
        connect_and_send(ingest.url.trim_start_matches("http://"), request.as_bytes()).await;
    // The event is with the producer (lingering 20 s) once it holds in-flight bytes.
    let http = reqwest::Client::new();
    let scrape = || async {
        http.get(&metrics_url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while !scrape()
            .await
            .lines()
            .any(|l| l.starts_with("ingest_inflight_bytes ") && !l.ends_with(" 0"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the event reached the producer");
    drop(client);
    let line = wait_log(&mut ingest.logs, |v| {
        v["target"] == "access" && v["request_id"] == "gone-1"
    })
    .await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["reason"], "client_closed", "{line}");
    assert_eq!(line["route"], "/v1/events", "{line}");
    // Whose it was and what it handed to the producer, as an answered line says.
    assert_eq!(line["key_id"], "anonymous", "{line}");
    assert_eq!(line["events"], 1, "{line}");
    let text = scrape().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("ingest_http_requests_total")
                && l.contains("status=\"499\"")
                && l.ends_with(" 1")),
        "no 499 in:\n{text}"
    );
    // Not a refusal.
    assert!(
        !text.contains("reason=\"client_closed\""),
        "counted as a refusal:\n{text}"
    );
    // Sent when the 20 s linger ends.
    tokio::time::timeout(Duration::from_secs(60), async {
        while !fake.kept().contains(&format!("{body}\n").into_bytes()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the event is still delivered");
}

/// A second SIGTERM (or Ctrl-C) ends the wait for in-flight requests: here one whose body
/// never finishes, which would otherwise hold the process for the whole grace period.
#[tokio::test]
async fn a_second_signal_ends_the_grace_period() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (firehose, _fake) = start_fake_firehose().await;
    let mut ingest = Ingest::start(
        &firehose,
        "second-signal",
        &[
            ("INGEST_REQUEST_TIMEOUT", "60s"),
            ("INGEST_SHUTDOWN_GRACE", "120s"),
        ],
    )
    .await;
    let addr = ingest.url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stalled
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("head");
    // `100 Continue` once the handler reads the body: the request is in flight.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut byte))
            .await
            .expect("ingest reads the request")
            .expect("read");
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&interim));
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{interim:?}");
    stalled
        .write_all(b"{\"half\":")
        .await
        .expect("part of the body");

    ingest.sigterm().await;
    wait_log(&mut ingest.logs, |v| {
        v["message"] == "listener closed; finishing in-flight requests"
    })
    .await;
    let started = std::time::Instant::now();
    ingest.sigterm().await;
    let status = tokio::time::timeout(Duration::from_secs(30), ingest.child.wait())
        .await
        .expect("ingest exits soon after the second signal, not after the 120 s grace")
        .expect("wait");
    // Not a clean stop: the stalled request got no answer.
    assert_eq!(status.code(), Some(3), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let all = ingest.transcript().await;
    assert!(
        all.iter().any(
            |l| l.contains("no longer waiting for in-flight requests") && l.contains("SIGTERM")
        ),
        "the second signal is logged, with its name: {all:#?}"
    );
    drop(stalled);
}
