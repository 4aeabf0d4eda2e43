//! The Lambda Runtime API, hosted here, driving the real `transform` binary as a child process.
//!
//! AWS Lambda runs a custom runtime by starting the binary with `AWS_LAMBDA_RUNTIME_API` set and
//! answering its long-polls: `GET /2018-06-01/runtime/invocation/next` returns the next event
//! with `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//! `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`; the runtime answers with
//! `POST …/invocation/{id}/response` or `…/{id}/error`, and reports start-up failures to
//! `POST …/init/error`. This module plays the Lambda side of that protocol on 127.0.0.1, so the
//! binary under test is the one that ships. The child is restarted if it exits, as Lambda starts
//! a fresh execution environment, and it is killed and restarted when an invocation it took
//! times out, as Lambda resets the execution environment after a timeout: a runtime stuck in one
//! batch's handler would otherwise never ask for the next event, and every later batch would
//! time out too. Protocol: <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>.

use crate::processor::{InvokeError, Processor};
use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use firehose_formats::limits::LAMBDA_MAX_PAYLOAD_BYTES;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Why the runtime API could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeApiError {
    /// Binding the loopback listener failed.
    #[error("cannot bind the Lambda Runtime API on 127.0.0.1: {0}")]
    Bind(std::io::Error),
}

type Reply = oneshot::Sender<Result<Vec<u8>, InvokeError>>;

/// The largest body the runtime may post: Lambda's 6 MB payload limit for a synchronous
/// invocation's response (`firehose_formats::limits::LAMBDA_MAX_PAYLOAD_BYTES`,
/// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>). axum's default
/// (2 MiB) would refuse legal transform responses, which may be up to 6 MiB.
///
/// Over it, the answer is what AWS's own Runtime Interface Emulator gives (the Runtime API page
/// and the facts doc do not say): 413 with `{"errorMessage": "Exceeded maximum allowed payload
/// size (N bytes).", "errorType": "RequestEntityTooLarge"}`, and the invocation fails at once
/// as `Function.ResponseSizeTooLarge`, a function error, so Firehose's `NumberOfRetries` applies
/// and then `Lambda.FunctionError` (observed for oversized responses, facts §3.3).
/// Source: aws/aws-lambda-runtime-interface-emulator, `lambda/rapi/handler/invocationresponse.go`
/// and `lambda/rapi/rendering/rendering.go`.
const MAX_RUNTIME_BODY_BYTES: usize = LAMBDA_MAX_PAYLOAD_BYTES;

struct Invocation {
    /// The `Lambda-Runtime-Aws-Request-Id` the runtime gets for it.
    id: String,
    event: Vec<u8>,
    deadline_ms: i64,
    reply: Reply,
}

#[derive(Clone, Debug)]
struct ApiState {
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Invocation>>>,
    in_flight: Arc<Mutex<HashMap<String, Reply>>>,
    function_arn: String,
    /// Invocations handed out by `GET …/next` so far: a child that exits without the count
    /// having moved failed to start.
    handed_out: Arc<std::sync::atomic::AtomicU64>,
    /// The last `POST …/init/error`, for the invocations an init failure fails.
    init_error: Arc<Mutex<Option<String>>>,
}

/// A [`Processor`] that runs the function binary under a hosted Runtime API.
#[derive(Debug)]
pub struct RuntimeApiProcessor {
    sender: mpsc::Sender<Invocation>,
    endpoint: String,
    /// The API's state: an invocation that timed out is taken back from its `in_flight`.
    state: ApiState,
    /// Tells the supervisor to reset the child: an invocation it took timed out.
    reset: Arc<tokio::sync::Notify>,
}

impl RuntimeApiProcessor {
    /// Binds the Runtime API on 127.0.0.1:0 and starts `binary` against it with the
    /// `AWS_LAMBDA_*` environment Lambda provides; both stop when `stop` is cancelled.
    ///
    /// # Errors
    /// [`RuntimeApiError::Bind`].
    pub async fn start(
        binary: PathBuf,
        extra_env: BTreeMap<String, String>,
        function_arn: String,
        region: String,
        stop: CancellationToken,
    ) -> Result<Self, RuntimeApiError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(RuntimeApiError::Bind)?;
        let addr = listener.local_addr().map_err(RuntimeApiError::Bind)?;
        let (sender, receiver) = mpsc::channel(16);
        let state = ApiState {
            queue: Arc::new(tokio::sync::Mutex::new(receiver)),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            function_arn: function_arn.clone(),
            handed_out: Arc::default(),
            init_error: Arc::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(DefaultBodyLimit::max(MAX_RUNTIME_BODY_BYTES))
            .with_state(state.clone());
        let server_stop = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(server_stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "Lambda Runtime API server failed");
            }
        });
        let endpoint = addr.to_string();
        let reset = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(supervise(
            Child {
                binary,
                extra_env,
                endpoint: endpoint.clone(),
                function_arn,
                region,
            },
            state.clone(),
            Arc::clone(&reset),
            stop,
        ));
        Ok(Self {
            sender,
            endpoint,
            state,
            reset,
        })
    }

    /// The `host:port` the child sees as `AWS_LAMBDA_RUNTIME_API`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// The environment every Lambda function on an OS-only runtime (`provided.al2023`) starts with,
/// apart from the function-specific `AWS_LAMBDA_*` variables, the region and the execution
/// role's credentials: <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>
/// (`AWS_EXECUTION_ENV` is not set for OS-only runtimes). `PATH` and `LANG` may be overridden
/// by the function's own variables, as on Lambda.
const LAMBDA_BASE_ENV: [(&str, &str); 7] = [
    ("_HANDLER", "bootstrap"),
    ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
    ("LAMBDA_TASK_ROOT", "/var/task"),
    ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
    ("TZ", ":UTC"),
    ("LANG", "en_US.UTF-8"),
    ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
];

/// Variables Lambda sets itself and refuses in a function's configuration ("reserved keys"),
/// same source as [`LAMBDA_BASE_ENV`]. `processor.env` may not set them either.
pub const LAMBDA_RESERVED_ENV: [&str; 19] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "TZ",
];

/// What the supervisor starts.
struct Child {
    binary: PathBuf,
    extra_env: BTreeMap<String, String>,
    endpoint: String,
    function_arn: String,
    region: String,
}

/// Runs the child, restarting it (after 1 s) whenever it exits or is reset, until `stop`.
///
/// When the child exits, the invocations it had taken and not answered fail at once, as Lambda
/// fails an invocation whose runtime exits (`Runtime.ExitError`); otherwise each would wait for
/// its full timeout and be retried as `Lambda.FunctionTimedOut`. Only one child runs at a time,
/// and the next starts after this, so every invocation in flight belonged to the one that exited.
///
/// `reset` (an invocation the child took timed out) kills the child, like Lambda resetting the
/// execution environment after a timeout; the next invocation gets a fresh one.
///
/// A child that exits before it took any invocation failed to start (it may have said why with
/// `POST …/init/error`): the invocations waiting for it fail at once with that error, as a
/// Lambda invoke fails when its environment cannot initialise, rather than each waiting out its
/// timeout as `Lambda.FunctionTimedOut`. Each retry then meets the next start.
async fn supervise(
    child_spec: Child,
    state: ApiState,
    reset: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let in_flight = &state.in_flight;
    let Child {
        binary,
        extra_env,
        endpoint,
        function_arn,
        region,
    } = child_spec;
    let name = function_arn
        .split(':')
        .nth(6)
        .unwrap_or("transform")
        .to_owned();
    loop {
        let mut cmd = tokio::process::Command::new(&binary);
        // Only what Lambda gives a function, and what the config adds: a child that inherited
        // this process's environment (its AWS credentials, RUST_LOG, ingest's settings, ...)
        // could work here only because of a variable it will not have on AWS.
        cmd.env_clear()
            .envs(LAMBDA_BASE_ENV)
            .env("AWS_LAMBDA_RUNTIME_API", &endpoint)
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "firehose-local")
            .env("AWS_REGION", &region)
            .env("AWS_DEFAULT_REGION", &region)
            .envs(&extra_env)
            .kill_on_drop(true);
        let handed_out_before = state.handed_out.load(Ordering::Acquire);
        // An init error belongs to the child that sent it.
        *locked(&state.init_error) = None;
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(binary = %binary.display(), runtime_api = endpoint, "started Lambda runtime child");
                tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(?status, "Lambda runtime child exited; restarting");
                        let how = match status {
                            Ok(s) => s.to_string(),
                            Err(e) => format!("cannot tell how: {e}"),
                        };
                        fail_in_flight(in_flight, &how);
                        if state.handed_out.load(Ordering::Acquire) == handed_out_before {
                            fail_waiting(&state, &how).await;
                        }
                    }
                    () = reset.notified() => {
                        tracing::warn!("an invocation timed out: resetting the Lambda runtime child, as Lambda resets the execution environment");
                        let _ = child.kill().await;
                        fail_in_flight(in_flight, "killed: the execution environment was reset after a timeout");
                    }
                    () = stop.cancelled() => {
                        let _ = child.kill().await;
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(binary = %binary.display(), error = %e, "cannot start Lambda runtime child")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn next(State(state): State<ApiState>) -> Response {
    let invocation = {
        let mut queue = state.queue.lock().await;
        loop {
            match queue.recv().await {
                // The invoker gave up (timed out) before a runtime asked: skip the stale event.
                Some(inv) if inv.reply.is_closed() => {}
                other => break other,
            }
        }
    };
    let Some(inv) = invocation else {
        // No more invocations will come (shutting down): like a frozen Lambda environment, never
        // answer; the child is stopped next.
        return std::future::pending().await;
    };
    let id = inv.id;
    state.handed_out.fetch_add(1, Ordering::AcqRel);
    locked(&state.in_flight).insert(id.clone(), inv.reply);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", inv.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{}",
            inv.deadline_ms / 1000,
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..24)
                .unwrap_or_default()
        ),
    );
    set("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, inv.event).into_response()
}

/// Fails the invocations waiting for a runtime that exited before taking any (`how`: its exit
/// status), with its `init/error` when it sent one. The queue's lock is held by a `GET …/next`
/// only while a runtime waits there; the dead child's request is dropped with its connection,
/// so the lock comes free at once (if not, the invocations keep waiting for their timeout).
async fn fail_waiting(state: &ApiState, how: &str) {
    let Ok(mut queue) = tokio::time::timeout(Duration::from_secs(1), state.queue.lock()).await
    else {
        return;
    };
    let reported = locked(&state.init_error).take();
    let message = match reported {
        Some(error) => format!("Runtime.InitError: {error} (runtime exited: {how})"),
        None => format!("Runtime.ExitError: the runtime exited before taking an event: {how}"),
    };
    while let Ok(inv) = queue.try_recv() {
        if inv.reply.is_closed() {
            continue;
        }
        tracing::warn!(
            request_id = inv.id,
            "invocation failed: its Lambda runtime did not start"
        );
        let _ = inv.reply.send(Err(InvokeError::Function(message.clone())));
    }
}

/// Fails every invocation taken by a runtime that exited (`how`: its exit status).
fn fail_in_flight(in_flight: &Mutex<HashMap<String, Reply>>, how: &str) {
    let orphans: Vec<(String, Reply)> = locked(in_flight).drain().collect();
    for (id, reply) in orphans {
        tracing::warn!(
            request_id = id,
            "invocation failed: its Lambda runtime exited"
        );
        let _ = reply.send(Err(InvokeError::Function(format!(
            "Runtime.ExitError: RequestId: {id} Error: Runtime exited with error: {how}"
        ))));
    }
}

fn take(state: &ApiState, id: &str) -> Option<Reply> {
    locked(&state.in_flight).remove(id)
}

/// `mutex` locked; a lock poisoned by a panic elsewhere still guards usable data (a map of
/// replies, an error message).
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn response(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(&state, &id, &headers, &rejection, "Response"),
    };
    match take(&state, &id) {
        Some(reply) => {
            let _ = reply.send(Ok(body.to_vec()));
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "OK"})),
            )
                .into_response()
        }
        None => unknown_request(&id),
    }
}

async fn error(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(&state, &id, &headers, &rejection, "Error"),
    };
    match take(&state, &id) {
        Some(reply) => {
            let _ = reply.send(Err(InvokeError::Function(describe_error(&headers, &body))));
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "OK"})),
            )
                .into_response()
        }
        None => unknown_request(&id),
    }
}

/// A `…/response` or `…/error` body that could not be read: over [`MAX_RUNTIME_BODY_BYTES`]
/// (413, see there) or cut off. Either way the runtime has answered and nothing more will come
/// for `id`, so its invocation fails now rather than at its timeout.
fn unreadable_body(
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
    rejection: &BytesRejection,
    what: &str,
) -> Response {
    let Some(reply) = take(state, id) else {
        return unknown_request(id);
    };
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The emulator's wording; the size is known only from a Content-Length.
        let size = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(|n| format!(" ({n} bytes)"))
            .unwrap_or_default();
        let _ = reply.send(Err(InvokeError::Function(format!(
            "Function.ResponseSizeTooLarge: {what} payload size{size} exceeded maximum allowed payload size ({MAX_RUNTIME_BODY_BYTES} bytes)."
        ))));
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "errorMessage": format!("Exceeded maximum allowed payload size ({MAX_RUNTIME_BODY_BYTES} bytes)."),
                "errorType": "RequestEntityTooLarge",
            })),
        )
            .into_response();
    }
    let _ = reply.send(Err(InvokeError::Function(format!(
        "Runtime.InvalidResponse: the runtime's {} body could not be read: {}",
        what.to_lowercase(),
        rejection.body_text()
    ))));
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "errorMessage": rejection.body_text(),
            "errorType": "TruncatedHTTPRequest",
        })),
    )
        .into_response()
}

async fn init_error(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let error = describe_error(&headers, &body);
    tracing::error!(error, "Lambda runtime reported an init error");
    *locked(&state.init_error) = Some(error);
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}

fn unknown_request(id: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"errorMessage": format!("unknown or already answered request id {id}"), "errorType": "InvalidRequestID"})),
    )
        .into_response()
}

/// `errorType: errorMessage` from an error body, falling back to the raw text.
fn describe_error(headers: &HeaderMap, body: &[u8]) -> String {
    let kind = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => format!(
            "{}: {}",
            v.get("errorType").and_then(|t| t.as_str()).unwrap_or(kind),
            v.get("errorMessage")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
        ),
        Err(_) => format!("{kind}: {}", String::from_utf8_lossy(body)),
    }
}

impl Processor for RuntimeApiProcessor {
    fn invoke(
        &self,
        event: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, InvokeError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let deadline_ms =
                crate::backup::now_ms() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            let id = uuid::Uuid::new_v4().to_string();
            let inv = Invocation {
                id: id.clone(),
                event,
                deadline_ms,
                reply,
            };
            let waited = tokio::time::timeout(timeout, async {
                self.sender.send(inv).await.map_err(|_| {
                    InvokeError::Function("the Lambda Runtime API has stopped".into())
                })?;
                answer.await.map_err(|_| {
                    InvokeError::Function("the runtime dropped the invocation".into())
                })?
            })
            .await;
            waited.unwrap_or_else(|_| {
                // Taken by the runtime and not answered: its environment is reset (its late
                // answer then finds no such request, as in Lambda). Still queued: only skipped.
                if take(&self.state, &id).is_some() {
                    self.reset.notify_one();
                }
                Err(InvokeError::TimedOut(timeout))
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An executable `sh` script with `body`, as the "runtime" child.
    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("runtime.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A processor for function `f` running `child` with `env` added, until `stop`.
    async fn start_child(
        child: PathBuf,
        env: BTreeMap<String, String>,
        stop: &CancellationToken,
    ) -> RuntimeApiProcessor {
        RuntimeApiProcessor::start(
            child,
            env,
            "arn:aws:lambda:us-east-1:0:function:f".into(),
            "us-east-1".into(),
            stop.clone(),
        )
        .await
        .unwrap()
    }

    /// A processor whose child idles (it never calls the API, and never exits: an exiting child
    /// fails the invocations handed out), so the test can play the runtime itself.
    async fn idle_child(dir: &std::path::Path, stop: &CancellationToken) -> RuntimeApiProcessor {
        start_child(script(dir, "exec sleep 600"), BTreeMap::new(), stop).await
    }

    /// The message of an invocation that failed as a function error; any other outcome fails
    /// the test.
    fn function_error(result: Result<Vec<u8>, InvokeError>) -> String {
        match result {
            Err(InvokeError::Function(m)) => m,
            other => panic!("expected a function error, got {other:?}"),
        }
    }

    /// Plays the runtime's `POST …/invocation/{id}/response` with `body`.
    async fn post_response(p: &RuntimeApiProcessor, id: &str, body: Vec<u8>) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!(
                "http://{}/2018-06-01/runtime/invocation/{id}/response",
                p.endpoint()
            ))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Invokes `p` in the background and plays `GET …/next`; returns the invoker and request id.
    async fn take_next(
        p: &Arc<RuntimeApiProcessor>,
        timeout: Duration,
    ) -> (
        tokio::task::JoinHandle<Result<Vec<u8>, InvokeError>>,
        String,
    ) {
        let invoker = {
            let p = p.clone();
            tokio::spawn(async move { p.invoke(b"{}".to_vec(), timeout).await })
        };
        // Bounded: an invocation that timed out while still queued is skipped, and a `next`
        // waiting for it would wait for ever.
        let next = tokio::time::timeout(
            Duration::from_secs(30),
            reqwest::get(format!(
                "http://{}/2018-06-01/runtime/invocation/next",
                p.endpoint()
            )),
        )
        .await
        .expect("the runtime gets the invocation before its timeout")
        .unwrap();
        let id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        (invoker, id)
    }

    /// Plays the runtime side of the protocol with plain HTTP, as a custom runtime does.
    #[tokio::test]
    async fn next_response_and_error_follow_the_protocol() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(idle_child(dir.path(), &stop).await);
        let base = format!("http://{}/2018-06-01/runtime", p.endpoint());
        let client = reqwest::Client::new();
        let invoker = {
            let p = p.clone();
            tokio::spawn(async move {
                p.invoke(b"{\"e\":1}".to_vec(), Duration::from_secs(10))
                    .await
            })
        };
        let next = client
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        assert_eq!(next.status(), 200);
        let id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let deadline: i64 = next.headers()["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(deadline > crate::backup::now_ms());
        assert_eq!(
            next.headers()["lambda-runtime-invoked-function-arn"],
            "arn:aws:lambda:us-east-1:0:function:f"
        );
        assert!(
            next.headers()["lambda-runtime-trace-id"]
                .to_str()
                .unwrap()
                .starts_with("Root=1-")
        );
        assert_eq!(next.bytes().await.unwrap().as_ref(), b"{\"e\":1}");
        let posted = client
            .post(format!("{base}/invocation/{id}/response"))
            .body("{\"records\":[]}")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
        assert_eq!(invoker.await.unwrap().unwrap(), b"{\"records\":[]}");
        let again = client
            .post(format!("{base}/invocation/{id}/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 400, "a request id is answered once");

        let (invoker, id) = take_next(&p, Duration::from_secs(10)).await;
        client
            .post(format!("{base}/invocation/{id}/error"))
            .header("lambda-runtime-function-error-type", "Runtime.Unhandled")
            .body(r#"{"errorType":"Boom","errorMessage":"it broke"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            invoker.await.unwrap(),
            Err(InvokeError::Function("Boom: it broke".into()))
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn an_unanswered_invocation_times_out() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let p = idle_child(dir.path(), &stop).await;
        let r = p.invoke(b"{}".to_vec(), Duration::from_millis(200)).await;
        assert_eq!(r, Err(InvokeError::TimedOut(Duration::from_millis(200))));
        stop.cancel();
    }

    /// A runtime that cannot start fails the invocations waiting for it at once, with its
    /// `init/error` when it sent one, instead of leaving each to time out.
    #[tokio::test]
    async fn a_runtime_that_cannot_start_fails_waiting_invocations_at_once() {
        for (body, expected) in [
            ("exit 2", "Runtime.ExitError"),
            (
                "curl -s -o /dev/null -X POST -d '{\"errorMessage\":\"bad config\",\"errorType\":\"ConfigError\"}' \
                 \"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error\"\nexit 2",
                "bad config",
            ),
        ] {
            let stop = CancellationToken::new();
            let dir = tempfile::tempdir().unwrap();
            let p = start_child(script(dir.path(), body), BTreeMap::new(), &stop).await;
            let result = tokio::time::timeout(
                Duration::from_secs(20),
                p.invoke(b"{}".to_vec(), Duration::from_secs(120)),
            )
            .await
            .expect("failed when the runtime exits, not after the 120 s timeout");
            let m = function_error(result);
            assert!(m.contains(expected), "{body}: {m}");
            stop.cancel();
        }
    }

    /// The child sees Lambda's variables and the function's own, and nothing of this
    /// process's environment (`HOME`, the test runner's `CARGO_*`, any AWS credentials).
    #[tokio::test]
    async fn the_child_gets_lambdas_environment_and_nothing_inherited() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("env");
        let child = script(
            dir.path(),
            "env > \"$ENV_DUMP.tmp\" && mv \"$ENV_DUMP.tmp\" \"$ENV_DUMP\"\nexec sleep 600",
        );
        let env = [("ENV_DUMP".to_owned(), dump.display().to_string())].into();
        let p = start_child(child, env, &stop).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&dump) {
                break text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the child never ran"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stop.cancel();
        let seen: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let mut expected: BTreeMap<&str, &str> = LAMBDA_BASE_ENV.into_iter().collect();
        expected.extend([
            ("AWS_LAMBDA_RUNTIME_API", p.endpoint()),
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/f"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "firehose-local"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]);
        let dump_path = dump.display().to_string();
        expected.insert("ENV_DUMP", &dump_path);
        // `sh` exports PWD itself.
        let without_pwd: BTreeMap<&str, &str> =
            seen.into_iter().filter(|(k, _)| *k != "PWD").collect();
        assert_eq!(without_pwd, expected);
        assert!(
            std::env::var_os("HOME").is_some(),
            "the test needs something to inherit"
        );
    }

    /// A runtime that took an invocation and never answers (stuck in the handler) would never
    /// ask for the next one: when the invocation times out the child is killed and restarted, as
    /// Lambda resets the execution environment, and a late answer finds no such request.
    #[tokio::test]
    async fn a_timed_out_invocation_resets_the_runtime() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let starts = dir.path().join("starts");
        // Every start of the child appends a line, then the child idles.
        let child = script(dir.path(), "echo started >> \"$STARTS\"\nexec sleep 600");
        let env = [("STARTS".to_owned(), starts.display().to_string())].into();
        let p = Arc::new(start_child(child, env, &stop).await);
        // Long enough for `next` to be served first on a busy host (the clock starts when the
        // invocation is queued, and the client must connect and ask for it first).
        let timeout = Duration::from_secs(5);
        let (invoker, id) = take_next(&p, timeout).await;
        assert_eq!(invoker.await.unwrap(), Err(InvokeError::TimedOut(timeout)));
        let count = || {
            std::fs::read_to_string(&starts)
                .unwrap_or_default()
                .lines()
                .count()
        };
        tokio::time::timeout(Duration::from_secs(30), async {
            while count() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the runtime child is restarted after the timeout");
        let late = post_response(&p, &id, b"{}".to_vec()).await;
        assert_eq!(
            late.status(),
            400,
            "the reset environment's request is gone"
        );
        stop.cancel();
    }

    /// Transform responses up to Lambda's 6 MB are legal; axum's default 2 MiB body limit used to
    /// refuse them with 413 and leave the invocation to time out.
    #[tokio::test]
    async fn a_three_megabyte_response_is_accepted() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(idle_child(dir.path(), &stop).await);
        let (invoker, id) = take_next(&p, Duration::from_secs(60)).await;
        let body = vec![b'x'; 3_000_000];
        let posted = post_response(&p, &id, body.clone()).await;
        assert_eq!(posted.status(), 202);
        assert_eq!(invoker.await.unwrap().unwrap(), body);
        stop.cancel();
    }

    /// Over the limit, the Runtime API answers 413 `RequestEntityTooLarge` and the invocation
    /// fails at once, as AWS's runtime interface emulator does, instead of timing out.
    #[tokio::test]
    async fn an_over_limit_response_is_refused_and_fails_the_invocation_at_once() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(idle_child(dir.path(), &stop).await);
        let (invoker, id) = take_next(&p, Duration::from_secs(120)).await;
        let posted = post_response(&p, &id, vec![b'x'; LAMBDA_MAX_PAYLOAD_BYTES + 1]).await;
        assert_eq!(posted.status(), 413);
        let answer: serde_json::Value = posted.json().await.expect("a JSON error body");
        assert_eq!(answer["errorType"], "RequestEntityTooLarge");
        let result = tokio::time::timeout(Duration::from_secs(10), invoker)
            .await
            .expect("the invocation fails at once, not after its 120 s timeout")
            .unwrap();
        let m = function_error(result);
        assert!(m.starts_with("Function.ResponseSizeTooLarge"), "{m}");
        stop.cancel();
    }

    /// A runtime that exits mid-invocation fails that invocation at once (Lambda reports
    /// `Runtime.ExitError`), rather than leaving it to time out.
    #[tokio::test]
    async fn a_child_that_dies_mid_invocation_fails_it_at_once() {
        let stop = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exit-now");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // The child blocks until the test writes the FIFO, then exits 3.
        let child = script(dir.path(), "read _ < \"$EXIT_FIFO\"\nexit 3");
        let env = [("EXIT_FIFO".to_owned(), fifo.display().to_string())].into();
        let p = Arc::new(start_child(child, env, &stop).await);
        let (invoker, _id) = take_next(&p, Duration::from_secs(120)).await;
        // Opening for writing waits for the child to open it for reading; closing it ends the
        // child's `read`.
        let opened = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .await
            .unwrap();
        drop(opened);
        let result = tokio::time::timeout(Duration::from_secs(10), invoker)
            .await
            .expect("the invocation fails when its runtime exits, not after its 120 s timeout")
            .unwrap();
        let m = function_error(result);
        assert!(m.starts_with("Runtime.ExitError"), "{m}");
        stop.cancel();
    }
}
