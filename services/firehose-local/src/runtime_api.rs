//! The Lambda Runtime API, hosted here, driving the real `transform` binary as a child process.
//!
//! AWS Lambda runs a custom runtime by starting the binary with `AWS_LAMBDA_RUNTIME_API` set and
//! answering its long-polls: `GET /2018-06-01/runtime/invocation/next` returns the next event
//! with `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//! `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`; the runtime answers with
//! `POST …/invocation/{id}/response` or `…/{id}/error`, and reports start-up failures to
//! `POST …/init/error`. This module plays the Lambda side of that protocol on 127.0.0.1, so the
//! binary under test is the one that ships. The child is restarted if it exits, as Lambda starts
//! a fresh execution environment. Protocol: <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>.

use crate::processor::{InvokeError, Processor};
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
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

struct Invocation {
    event: Vec<u8>,
    deadline_ms: i64,
    reply: Reply,
}

#[derive(Clone)]
struct ApiState {
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Invocation>>>,
    in_flight: Arc<Mutex<HashMap<String, Reply>>>,
    function_arn: String,
}

/// A [`Processor`] that runs the function binary under a hosted Runtime API.
#[derive(Debug)]
pub struct RuntimeApiProcessor {
    sender: mpsc::Sender<Invocation>,
    endpoint: String,
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
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
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
        tokio::spawn(supervise(
            binary,
            extra_env,
            endpoint.clone(),
            function_arn,
            region,
            stop,
        ));
        Ok(Self { sender, endpoint })
    }

    /// The `host:port` the child sees as `AWS_LAMBDA_RUNTIME_API`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Runs the child, restarting it (after 1 s) whenever it exits, until `stop`.
async fn supervise(
    binary: PathBuf,
    extra_env: BTreeMap<String, String>,
    endpoint: String,
    function_arn: String,
    region: String,
    stop: CancellationToken,
) {
    let name = function_arn
        .split(':')
        .nth(6)
        .unwrap_or("transform")
        .to_owned();
    loop {
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.env("AWS_LAMBDA_RUNTIME_API", &endpoint)
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "firehose-local")
            .env("AWS_REGION", &region)
            .env("AWS_DEFAULT_REGION", &region)
            .envs(&extra_env)
            .kill_on_drop(true);
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(binary = %binary.display(), runtime_api = endpoint, "started Lambda runtime child");
                tokio::select! {
                    status = child.wait() => tracing::warn!(?status, "Lambda runtime child exited; restarting"),
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
    let id = uuid::Uuid::new_v4().to_string();
    state
        .in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id.clone(), inv.reply);
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

fn take(state: &ApiState, id: &str) -> Option<Reply> {
    state
        .in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(id)
}

async fn response(State(state): State<ApiState>, Path(id): Path<String>, body: Bytes) -> Response {
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
    body: Bytes,
) -> Response {
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

async fn init_error(headers: HeaderMap, body: Bytes) -> Response {
    tracing::error!(
        error = describe_error(&headers, &body),
        "Lambda runtime reported an init error"
    );
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
            let inv = Invocation {
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
            waited.unwrap_or(Err(InvokeError::TimedOut(timeout)))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Plays the runtime side of the protocol with plain HTTP, as a custom runtime does.
    #[tokio::test]
    async fn next_response_and_error_follow_the_protocol() {
        let stop = CancellationToken::new();
        // `true` exits at once: the supervisor restarts it; the test plays the runtime itself.
        let p = Arc::new(
            RuntimeApiProcessor::start(
                PathBuf::from("true"),
                BTreeMap::new(),
                "arn:aws:lambda:us-east-1:0:function:f".into(),
                "us-east-1".into(),
                stop.clone(),
            )
            .await
            .unwrap(),
        );
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

        let invoker = {
            let p = p.clone();
            tokio::spawn(async move { p.invoke(b"{}".to_vec(), Duration::from_secs(10)).await })
        };
        let next = client
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        let id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
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
        let p = RuntimeApiProcessor::start(
            PathBuf::from("true"),
            BTreeMap::new(),
            "arn:aws:lambda:us-east-1:0:function:f".into(),
            "us-east-1".into(),
            stop.clone(),
        )
        .await
        .unwrap();
        let r = p.invoke(b"{}".to_vec(), Duration::from_millis(200)).await;
        assert_eq!(r, Err(InvokeError::TimedOut(Duration::from_millis(200))));
        stop.cancel();
    }
}
