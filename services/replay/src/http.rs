//! `--to-http`: POSTs replayed events to a front door (`ingest`'s `POST /v1/events`) as NDJSON.
//!
//! One record can hold several events (one per line, as the front door writes them), so a record
//! becomes one item per non-blank line (but one JSON object over several lines, which is one
//! event, on one line), and a batch is one NDJSON body. The front door answers
//! 2xx only once Firehose accepted every event, so 2xx means the whole batch is delivered.
//! Everything else is handled here, once:
//! - 503 naming the events Firehose did not accept: only those are sent again.
//! - 503 without that list, 429, 408, other 5xx, connection errors: the batch is sent again after
//!   a backoff (honouring `Retry-After`), up to the attempt limit; what is still not delivered
//!   then comes back [`ItemResult::Unaccepted`]. But a host name that does not exist and a
//!   failed TLS handshake stop the replay at once, as below: no attempt gets past them.
//! - 400, 422 and other 4xx that name events (`details[].index`, as the front door's 400 does):
//!   those come back [`ItemResult::Rejected`] with their own message, and the others are sent
//!   again in one request. A 413, or an answer whose indexes do not fit the batch: the batch is
//!   split in halves and each half sent again, until the refused events stand alone. Either way
//!   every good event is delivered.
//! - 401, 403, 404, 405, and the send errors above: the configuration is wrong (key, URL,
//!   certificate); [`TargetError`] stops the replay,
//!   with the events the call had already delivered reported as such ([`SendError`]).
//! - 3xx: redirects are not followed. A client following a 301/302 turns the POST into a GET
//!   without a body, and a page answering that GET with 200 would count the batch as delivered
//!   when nothing was; so a redirect is a configuration error that stops the replay, naming
//!   where it pointed.
//!
//! Answer bodies are read up to [`MAX_ANSWER_BYTES`] and no further: only a short JSON answer
//! (the 503's `unaccepted` list) or the start of an error message is needed, and a large or
//! endless error page must not grow memory.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::read::{Record, object_on_one_line};
use crate::target::{ItemResult, SendError, Target, TargetError};

/// Default events per POST: small enough to stay far under the front door's default 10 MiB
/// body limit with events of several KiB, large enough that a replay is not request-bound.
pub const DEFAULT_EVENTS_PER_REQUEST: usize = 500;

/// Most bytes of an answer's body that are read.
///
/// The front door's answers are small JSON objects; the largest, a 503 listing every event of a
/// batch as `unaccepted`, takes about 7 bytes per event, so 1 MiB covers batches of over 100,000
/// events. A body cut at the cap is still used for the error message; a cut `unaccepted` list
/// does not parse, and the whole batch is sent again (a possible duplicate, never a loss).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Settings of the HTTP target.
#[derive(Debug, Clone)]
pub struct HttpTargetConfig {
    /// The URL to POST to. A URL with an empty path gets `/v1/events`.
    pub url: reqwest::Url,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<SecretString>,
    /// Events per POST.
    pub events_per_request: usize,
    /// Attempts per batch for retriable answers (at least 1).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest backoff (and longest `Retry-After` honoured).
    pub max_backoff: Duration,
    /// Timeout of one POST.
    pub request_timeout: Duration,
}

impl HttpTargetConfig {
    /// Defaults for everything but the URL.
    #[must_use]
    pub fn new(mut url: reqwest::Url) -> Self {
        if url.path().is_empty() || url.path() == "/" {
            url.set_path("/v1/events");
        }
        Self {
            url,
            api_key: None,
            events_per_request: DEFAULT_EVENTS_PER_REQUEST,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Sends events to a front door.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    config: HttpTargetConfig,
    /// The run's stop (Ctrl-C, SIGTERM): it ends a wait before a retry, and the batch's
    /// unconfirmed events are left to the next run ([`HttpTarget::with_cancel`]).
    cancel: CancellationToken,
}

/// How one POST went, for the retry loop.
#[derive(Debug)]
enum Answer {
    /// Every event delivered.
    Delivered,
    /// The front door says these indexes (into the body) were not accepted; the rest were.
    Partly(Vec<usize>),
    /// Try the whole body again, after at least this long.
    Retry(String, Option<Duration>),
    /// The front door refused the body (4xx): isolate the bad events. `named`: the events the
    /// answer names (`details[].index`, each with its message), when it names them usably.
    Refused {
        /// The answer, for events refused without a name of their own.
        message: String,
        /// Index into the body, and why.
        named: Vec<(usize, String)>,
    },
    /// Configuration error.
    Fatal(String),
}

impl HttpTarget {
    /// A target for `config`.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots), or the key is not a valid header value.
    pub fn new(config: HttpTargetConfig) -> Result<Self, TargetError> {
        if let Some(key) = &config.api_key {
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| {
                TargetError("the API key contains characters not allowed in an HTTP header".into())
            })?;
            if key_sent_in_clear(&config.url) {
                tracing::warn!(
                    url = %config.url,
                    "REPLAY_HTTP_API_KEY goes to this URL over plain http://: anyone on the way can read it; use https:// (or a loopback address, e.g. through kubectl port-forward)"
                );
            }
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // See the module docs: a followed redirect can turn a POST into a body-less GET.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TargetError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            config,
            cancel: CancellationToken::new(),
        })
    }

    /// Stops waiting to retry once `cancel` fires: a batch that would wait out its retries
    /// (8 attempts with backoffs up to 20 s) ends at once with its unconfirmed events
    /// unaccepted, so a stopped run ends within one request's timeout rather than the whole
    /// retry schedule (a Kubernetes Job has 30 s between SIGTERM and SIGKILL by default). A
    /// request in flight is still waited for: its answer says what it delivered.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Waits `pause` before a retry; `false` when the run is stopped first.
    async fn pause(&self, pause: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = self.cancel.cancelled() => false,
        }
    }

    /// The URL events go to.
    #[must_use]
    pub fn url(&self) -> &reqwest::Url {
        &self.config.url
    }

    async fn post(&self, items: &[Bytes]) -> Answer {
        let mut body = BytesMut::with_capacity(items.iter().map(|i| i.len() + 1).sum());
        for item in items {
            body.extend_from_slice(item);
            body.extend_from_slice(b"\n");
        }
        let mut request = self
            .client
            .post(self.config.url.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body.freeze());
        if let Some(key) = &self.config.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {}", key.expose_secret()));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let failed = format!("POST {} failed: {}", self.config.url, error_chain(&e));
                return match beyond_retry(&e) {
                    Some(fix) => Answer::Fatal(format!("{failed}. {fix}")),
                    None => Answer::Retry(failed, None),
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (text, cut) = read_capped(response, MAX_ANSWER_BYTES).await;
        let detail = || format!("{status}: {}", truncate(&text, 300));
        match status {
            // Only the front door's own answer says the events were taken: `{"accepted": N}`
            // for all N of them. Any other 2xx (a different service at that URL, a gateway stub
            // answering 200 or 204) would mark every event done and lose it.
            s if s.is_success() => match accepted_count(&text) {
                Some(n) if n == items.len() => Answer::Delivered,
                // The answer broke off before its count: the events were most likely taken, but
                // nothing says so. Sent again, like a batch whose answer never came.
                None if cut => Answer::Retry(
                    format!("{status}, but the answer broke off before it said what was accepted"),
                    None,
                ),
                Some(n) => Answer::Fatal(format!(
                    "{} answered {status} with \"accepted\": {n} for {} events; the front door \
                     accepts all of a request or answers 503: nothing of it is marked done",
                    self.config.url,
                    items.len()
                )),
                None => Answer::Fatal(format!(
                    "{} answered {} without the front door's answer ({{\"accepted\": N, ...}}), \
                     so nothing says the events were taken: point --to-http at the front door's \
                     /v1/events; nothing of it is marked done",
                    self.config.url,
                    detail()
                )),
            },
            s if s.is_redirection() => Answer::Fatal(format!(
                "{} answered {status} redirecting to {}; replay does not follow redirects (a POST would \
                 become a GET without the events): point --to-http at the front door's /v1/events itself",
                self.config.url,
                location
                    .as_deref()
                    .unwrap_or("nowhere (no Location header)")
            )),
            StatusCode::SERVICE_UNAVAILABLE => match unaccepted_indexes(&text, items.len()) {
                Some(indexes) => Answer::Partly(indexes),
                None => Answer::Retry(detail(), retry_after),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Fatal(format!(
                "the front door refused the credentials ({}); set --http-api-key / REPLAY_HTTP_API_KEY to a valid key",
                detail()
            )),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Answer::Fatal(format!(
                "{} is not an event intake ({}); point --to-http at the front door's /v1/events",
                self.config.url,
                detail()
            )),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                Answer::Retry(detail(), retry_after)
            }
            // Too large: halves are smaller, and a single event this large is the event's own.
            StatusCode::PAYLOAD_TOO_LARGE => Answer::Refused {
                message: detail(),
                named: Vec::new(),
            },
            // The front door names the events it refuses (`details[].index`); a refusal that
            // names none is about the request itself (a content type, a proxy or firewall in
            // between), and splitting it would only "reject" every event, one POST each.
            s if s.is_client_error() => {
                let named = named_events(&text);
                if named.is_empty() {
                    Answer::Fatal(format!(
                        "{} refused the request as a whole ({}), not single events: nothing of \
                         it is marked done; fix the cause and re-run",
                        self.config.url,
                        detail()
                    ))
                } else {
                    Answer::Refused {
                        message: detail(),
                        named: in_batch(named, items.len())
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(index, why)| (index, format!("{status}: {why}")))
                            .collect(),
                    }
                }
            }
            _ => Answer::Retry(detail(), retry_after),
        }
    }

    fn backoff(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let step = self
            .config
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
            .min(self.config.max_backoff);
        hint.map_or(step, |h| h.min(self.config.max_backoff).max(step))
    }

    /// Sends `indexes` of `items`, writing each one's result into `results`.
    async fn deliver(
        &self,
        items: &[Bytes],
        indexes: Vec<usize>,
        results: &mut [ItemResult],
    ) -> Result<(), TargetError> {
        // Work list of index groups; a refused group is split in two and both halves queued.
        let mut groups = vec![indexes];
        while let Some(mut group) = groups.pop() {
            // Stopped: the groups not posted yet stay "not sent", for the next run.
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let body: Vec<Bytes> = group.iter().map(|&i| items[i].clone()).collect();
                match self.post(&body).await {
                    Answer::Delivered => {
                        for &i in &group {
                            results[i] = ItemResult::Accepted;
                        }
                        break;
                    }
                    Answer::Fatal(message) => return Err(TargetError(message)),
                    Answer::Refused { message, named } => {
                        if group.len() == 1 {
                            results[group[0]] = ItemResult::Rejected(message);
                        } else if named.is_empty() {
                            let second = group.split_off(group.len() / 2);
                            groups.push(second);
                            groups.push(group);
                        } else {
                            // The front door names the events it refuses (its first problems,
                            // up to 100): those are refused for good, and the others go again
                            // in one request. Halving alone took 999 POSTs to isolate a batch
                            // of 500 refused events (helper-56).
                            let mut refused = vec![false; group.len()];
                            for (index, why) in named {
                                if !refused[index] {
                                    refused[index] = true;
                                    results[group[index]] = ItemResult::Rejected(why);
                                }
                            }
                            let rest: Vec<usize> = group
                                .iter()
                                .zip(&refused)
                                .filter(|(_, refused)| !**refused)
                                .map(|(&i, _)| i)
                                .collect();
                            if !rest.is_empty() {
                                groups.push(rest);
                            }
                        }
                        break;
                    }
                    Answer::Partly(unaccepted) => {
                        let still: Vec<usize> = unaccepted.iter().map(|&u| group[u]).collect();
                        // Only the others are delivered: the unaccepted ones stay unaccepted
                        // until a retry settles them, so a target error or the end of the
                        // attempts in between never counts them as delivered.
                        for &i in &group {
                            results[i] = ItemResult::Accepted;
                        }
                        for &i in &still {
                            results[i] = ItemResult::Unaccepted(
                                "the front door answered 503 for it on every attempt".into(),
                            );
                        }
                        if attempt >= self.config.max_attempts {
                            break;
                        }
                        tracing::warn!(
                            unaccepted = still.len(),
                            "front door accepted part of the batch; re-sending the rest"
                        );
                        if !self.pause(self.backoff(attempt, None)).await {
                            return Ok(());
                        }
                        group = still;
                    }
                    Answer::Retry(message, hint) => {
                        if attempt >= self.config.max_attempts {
                            for &i in &group {
                                results[i] = ItemResult::Unaccepted(message.clone());
                            }
                            break;
                        }
                        tracing::warn!(attempt, error = %message, "front door did not take the batch; retrying");
                        if !self.pause(self.backoff(attempt, hint)).await {
                            for &i in &group {
                                results[i] = ItemResult::Unaccepted(format!(
                                    "stopped before a retry: {message}"
                                ));
                            }
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Target for HttpTarget {
    fn describe(&self) -> String {
        format!("http:{}", self.config.url)
    }

    fn max_batch(&self) -> usize {
        self.config.events_per_request.max(1)
    }

    fn prepare(&self, record: &Record) -> Result<Vec<Bytes>, String> {
        let text = std::str::from_utf8(&record.data).map_err(|_| {
            "the record is not UTF-8 text (compressed or binary data?); a front door takes JSON events: replay it with --to-stream".to_owned()
        })?;
        // One JSON value over several lines (an event pretty-printed by its client, in a
        // record stored so before the front door kept records to one line) is one event, sent
        // as one line: split at its line breaks it would be fragments the front door refuses,
        // each counted as done (helper-57, M2). Its line breaks are whitespace between tokens.
        if text.contains('\n')
            && let Some(one_line) = object_on_one_line(text.trim_start())
        {
            return Ok(vec![Bytes::from(one_line)]);
        }
        let mut events = Vec::new();
        let mut offset = 0;
        for line in text.split('\n') {
            let start = offset;
            offset += line.len() + 1;
            let trimmed = line.trim_end_matches('\r');
            if trimmed.trim().is_empty() {
                continue;
            }
            events.push(record.data.slice(start..start + trimmed.len()));
        }
        Ok(events)
    }

    async fn send(&self, items: Vec<Bytes>) -> Result<Vec<ItemResult>, SendError> {
        let mut results = vec![ItemResult::Unaccepted("not sent".into()); items.len()];
        match self
            .deliver(&items, (0..items.len()).collect(), &mut results)
            .await
        {
            Ok(()) => Ok(results),
            // Halves or 503 retries delivered before the error are in `results`.
            Err(error) => Err(SendError { error, results }),
        }
    }
}

/// The `accepted` count of a front door's 200 answer; `None` when the body is not one.
///
/// The answer also lists a record id per event, so for a large batch it can pass
/// [`MAX_ANSWER_BYTES`] and arrive cut: the front door writes `accepted` first, and a body that
/// does not parse whole is read for a leading `{"accepted":N`.
fn accepted_count(text: &str) -> Option<usize> {
    if let Ok(answer) = serde_json::from_str::<serde_json::Value>(text) {
        return usize::try_from(answer.get("accepted")?.as_u64()?).ok();
    }
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"accepted\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = rest[digits..].trim_start();
    // The number must be whole: followed by the next member or the end of the object.
    if digits == 0 || !(after.starts_with(',') || after.starts_with('}')) {
        return None;
    }
    rest[..digits].parse().ok()
}

/// A `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date, read as the time left
/// until it at `now` (none for one in the past); `None` when it is neither.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether a key sent to `url` crosses a network in clear: `http://` to a host that is not
/// loopback (`localhost`, 127.0.0.0/8, `::1`).
fn key_sent_in_clear(url: &reqwest::Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    let Some(host) = url.host_str() else {
        return true;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => !host.eq_ignore_ascii_case("localhost"),
    }
}

/// The events a refusal's body names, as the front door writes them (`{"details": [{"index":
/// N, "path": "…", "message": "…"}, …]}`): each index with its message (several for one event
/// joined), in the order first named. Empty when it names none (not JSON, no `details`, no
/// indexes): then the refusal is about the request itself.
fn named_events(body: &str) -> Vec<(u64, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(details) = map
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("details"))
        .and_then(|(_, details)| details.as_array())
    else {
        return Vec::new();
    };
    let mut named: Vec<(u64, String)> = Vec::new();
    for detail in details {
        let Some(index) = detail.get("index").and_then(serde_json::Value::as_u64) else {
            continue;
        };
        let why = detail
            .get("message")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("refused");
        let why = match detail.get("path").and_then(serde_json::Value::as_str) {
            Some(path) if !path.is_empty() => format!("{path}: {why}"),
            _ => why.to_owned(),
        };
        match named.iter_mut().find(|(i, _)| *i == index) {
            Some((_, all)) => {
                all.push_str("; ");
                all.push_str(&why);
            }
            None => named.push((index, why)),
        }
    }
    named
}

/// `named` as indexes into a body of `len` events; `None` when one is outside it (then nothing
/// named is trusted, and the body is split in halves instead).
fn in_batch(named: Vec<(u64, String)>, len: usize) -> Option<Vec<(usize, String)>> {
    named
        .into_iter()
        .map(|(index, why)| {
            let index = usize::try_from(index).ok().filter(|&i| i < len)?;
            Some((index, why))
        })
        .collect()
}

/// The indexes a 503 body says were not accepted, if it says so.
///
/// Tolerant about the shape: a JSON object with an array of integers under a key containing
/// `unaccepted` (any case, any nesting level of objects), e.g. `{"unaccepted":[3,7]}` or
/// `{"error":{"unaccepted_indexes":[3]}}`. Indexes outside the batch make the answer unusable
/// (`None`: the whole batch is retried, which can only duplicate, never lose).
fn unaccepted_indexes(body: &str, len: usize) -> Option<Vec<usize>> {
    fn find(value: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
        let serde_json::Value::Object(map) = value else {
            return None;
        };
        for (key, v) in map {
            if key.to_ascii_lowercase().contains("unaccepted")
                && let serde_json::Value::Array(items) = v
            {
                return Some(items);
            }
        }
        map.values().find_map(find)
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let list = find(&value)?;
    let mut indexes = Vec::with_capacity(list.len());
    for item in list {
        let index = usize::try_from(item.as_u64()?).ok()?;
        if index >= len {
            return None;
        }
        indexes.push(index);
    }
    indexes.sort_unstable();
    indexes.dedup();
    (!indexes.is_empty()).then_some(indexes)
}

/// The answer's body as text, reading at most `cap` bytes of it (see [`MAX_ANSWER_BYTES`]); a
/// body that cannot be read is empty, and only the status counts.
///
/// Also says whether reading failed before the end (the connection broke): the text is then
/// only what came.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> (String, bool) {
    let mut body = Vec::new();
    let mut cut = false;
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(cap - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    (String::from_utf8_lossy(&body).into_owned(), cut)
}

/// What to fix, when a POST failed in a way no retry gets past: the host name does not exist,
/// or the TLS handshake failed (a certificate the system does not trust, expired or for another
/// name; an `https://` URL on a port that does not speak TLS). Retried, each would cost the
/// whole attempt budget and end "run it again" (exit status 2), which a retry loop repeats for
/// ever; it needs a fix instead (exit status 3). Everything else a connection can meet (refused,
/// reset, timed out, a name server that does not answer) may pass, and is retried.
fn beyond_retry(error: &reqwest::Error) -> Option<&'static str> {
    for e in causes(error) {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Some(
                "The TLS handshake failed: check the URL's scheme and port, and that the \
                 front door's certificate is valid for that name and trusted here",
            );
        }
        if says_no_such_host(&e.to_string()) {
            return Some("The host name does not exist: check the URL");
        }
    }
    None
}

/// Whether a resolver's error text is getaddrinfo's EAI_NONAME or EAI_NODATA, in glibc's, musl's
/// or BSD's wording: the name server answered that the name does not exist. EAI_AGAIN (no
/// answer, "Temporary failure in name resolution") is not: it may pass later.
fn says_no_such_host(text: &str) -> bool {
    [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
        "nodename nor servname provided",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// `error`, then each error it wraps. `io::Error::source` skips the error an `io::Error` wraps
/// (rustls's comes wrapped twice), so the walk steps into it instead.
fn causes(error: &reqwest::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(
        Some(error as &(dyn std::error::Error + 'static)),
        |e| match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        },
    )
}

/// `error` and its causes, `: `-separated: reqwest's own text ("error sending request for
/// url") says nothing of why. A cause whose text is already there (an `io::Error` shows the
/// error it wraps) is not repeated.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::new();
    for e in causes(error) {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The count is read from a whole answer, and from one cut after it (a large batch's record
    /// ids pass the answer cap), never from a number that may be cut itself.
    #[test]
    fn the_accepted_count_is_read_from_a_whole_or_cut_answer() {
        assert_eq!(
            accepted_count(r#"{"accepted":3,"recordIds":["a","b","c"]}"#),
            Some(3)
        );
        assert_eq!(accepted_count(r#"{"recordIds":[],"accepted":2}"#), Some(2));
        assert_eq!(
            accepted_count(r#"{"accepted":20000,"recordIds":["4964091282"#),
            Some(20000)
        );
        assert_eq!(
            accepted_count(r#" { "accepted" : 7 , "recordIds": ["#),
            Some(7)
        );
        for not_one in [
            r#"{"accepted":20"#,
            r#"{"accepted":"#,
            "",
            "<html>",
            r#"{"ok":true}"#,
        ] {
            assert_eq!(accepted_count(not_one), None, "{not_one}");
        }
    }

    fn record(data: &'static str) -> Record {
        Record {
            line: 1,
            data: Bytes::from_static(data.as_bytes()),
            error_code: None,
        }
    }

    fn target() -> HttpTarget {
        HttpTarget::new(HttpTargetConfig::new(
            "http://127.0.0.1:9/".parse().unwrap(),
        ))
        .unwrap()
    }

    #[test]
    fn an_empty_path_means_the_event_intake() {
        assert_eq!(target().url().as_str(), "http://127.0.0.1:9/v1/events");
        let custom = HttpTargetConfig::new("http://h/custom/path".parse().unwrap());
        assert_eq!(custom.url.path(), "/custom/path");
    }

    #[test]
    fn a_key_over_plain_http_is_warned_about_unless_the_host_is_loopback() {
        let clear = |u: &str| key_sent_in_clear(&u.parse().unwrap());
        assert!(clear("http://ingest.example.com/v1/events"));
        assert!(clear("http://10.0.0.5:8080/"));
        assert!(!clear("https://ingest.example.com/v1/events"));
        assert!(!clear("http://localhost:8080/"));
        assert!(!clear("http://127.0.0.1:8080/"));
        assert!(!clear("http://[::1]:8080/"));
    }

    #[test]
    fn a_record_becomes_one_item_per_event_line() {
        let t = target();
        let items = t.prepare(&record("{\"a\":1}\n{\"b\":2}\r\n\n")).unwrap();
        assert_eq!(
            items,
            vec![Bytes::from("{\"a\":1}"), Bytes::from("{\"b\":2}")]
        );
        assert_eq!(
            t.prepare(&record("{\"c\":3}")).unwrap(),
            vec![Bytes::from("{\"c\":3}")]
        );
        let binary = Record {
            line: 1,
            data: Bytes::from_static(&[0x1f, 0x8b, 0xff]),
            error_code: None,
        };
        assert!(t.prepare(&binary).unwrap_err().contains("--to-stream"));
        // One event over several lines is one item, on one line (helper-57, M2).
        assert_eq!(
            t.prepare(&record("{\r\n  \"a\": [\n    1\n  ]\n}\n"))
                .unwrap(),
            vec![Bytes::from("{    \"a\": [     1   ] }")]
        );
    }

    #[test]
    fn refused_events_are_read_from_the_details_with_their_messages() {
        let body = r#"{"error":"2 of 5 events are invalid","details":[
            {"index":1,"path":"/user/id","message":"is not a string"},
            {"index":3,"message":"not an object"},
            {"index":1,"path":"/level","message":"is required"},
            {"line":2,"column":5,"message":"syntax"}]}"#;
        assert_eq!(
            in_batch(named_events(body), 5),
            Some(vec![
                (
                    1,
                    "/user/id: is not a string; /level: is required".to_owned()
                ),
                (3, "not an object".to_owned()),
            ])
        );
        // An index outside the body: nothing named is trusted.
        assert_eq!(in_batch(named_events(body), 3), None);
        assert!(named_events("not json").is_empty());
    }

    #[test]
    fn unaccepted_indexes_are_read_tolerantly() {
        assert_eq!(
            unaccepted_indexes(r#"{"unaccepted":[3,1,3]}"#, 5),
            Some(vec![1, 3])
        );
        assert_eq!(
            unaccepted_indexes(r#"{"error":{"Unaccepted_Indexes":[0]}}"#, 1),
            Some(vec![0])
        );
        assert_eq!(
            unaccepted_indexes(r#"{"unaccepted":[9]}"#, 5),
            None,
            "out of range"
        );
        assert_eq!(unaccepted_indexes(r#"{"unaccepted":["x"]}"#, 5), None);
        assert_eq!(unaccepted_indexes(r#"{"unaccepted":[]}"#, 5), None);
        assert_eq!(unaccepted_indexes("service unavailable", 5), None);
    }

    #[test]
    fn a_refusal_names_events_only_with_indexed_details() {
        let names_events = |body: &str| !named_events(body).is_empty();
        assert!(names_events(
            r#"{"error":"1 of 2 events are invalid","details":[{"index":1,"message":"x"}]}"#
        ));
        assert!(!names_events(r#"{"error":"unsupported media type"}"#));
        assert!(!names_events(r#"{"error":"x","details":[]}"#));
        assert!(!names_events(r#"{"details":[{"message":"no index"}]}"#));
        assert!(!names_events("<html>403 by the firewall</html>"));
    }

    #[tokio::test]
    async fn a_large_answer_is_read_only_up_to_the_cap() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // A 404 announcing 64 MiB of error page, sending 2 MiB of it and then nothing: a reader
        // without a cap waits for (and would keep) the rest; a capped one answers at once.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 67108864\r\n\r\n")
                .await
                .unwrap();
            // Write errors once the client has given up are expected.
            let _ = socket.write_all(&vec![b'x'; 2 * MAX_ANSWER_BYTES]).await;
            std::future::pending::<()>().await;
        });
        let mut config = HttpTargetConfig::new(format!("http://{addr}/").parse().unwrap());
        config.request_timeout = Duration::from_secs(300);
        let target = HttpTarget::new(config).unwrap();
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            target.send(vec![Bytes::from_static(b"{}")]),
        )
        .await
        .expect("the answer is read up to the cap, not to its end");
        let err = sent.unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        assert_eq!(err.results, vec![ItemResult::Unaccepted("not sent".into())]);
    }

    #[test]
    fn every_libc_wording_of_no_such_host_needs_a_fix_and_no_answer_is_retried() {
        for text in [
            "failed to lookup address information: Name or service not known", // glibc
            "failed to lookup address information: No address associated with hostname",
            "failed to lookup address information: Name does not resolve", // musl
            "failed to lookup address information: nodename nor servname provided, or not known",
        ] {
            assert!(says_no_such_host(text), "{text}");
        }
        for text in [
            "failed to lookup address information: Temporary failure in name resolution",
            "Connection refused (os error 111)",
            "",
        ] {
            assert!(!says_no_such_host(text), "{text}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(now + Duration::from_secs(60));
        assert_eq!(
            retry_after(&in_a_minute, now),
            Some(Duration::from_secs(60))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after_within_the_cap() {
        let t = target();
        assert_eq!(t.backoff(1, None), Duration::from_millis(200));
        assert_eq!(t.backoff(3, None), Duration::from_millis(800));
        assert_eq!(t.backoff(30, None), Duration::from_secs(20));
        assert_eq!(
            t.backoff(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            t.backoff(1, Some(Duration::from_secs(500))),
            Duration::from_secs(20)
        );
    }
}
