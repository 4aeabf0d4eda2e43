//! The Firehose producer: coalesces records from concurrent submitters into `PutRecordBatch`
//! calls, retries only the records Firehose refused, and tells each submitter exactly which of
//! its records were accepted.
//!
//! It has no HTTP in it, so the replay tool can reuse it: [`Producer::spawn`] starts one
//! dispatcher task per delivery stream and returns a cloneable [`ProducerHandle`];
//! [`ProducerHandle::submit`] returns a future that resolves once every record of *that*
//! submission is either accepted or given up on ([`SubmitOutcome`]).
//!
//! How a record travels:
//! 1. `submit` reserves the submission's bytes against the in-flight cap, or answers
//!    [`SubmitOutcome::Overloaded`] at once (load shedding: memory stays bounded).
//! 2. `submit` itself appends the records to the open batch (one lock, no task switch) and
//!    closes the batch when it holds [`MAX_BATCH_RECORDS`] records or when one more record
//!    would pass the byte budget ([`SAFE_BATCH_BYTES`]). The dispatcher task closes it when
//!    the linger since its first record has passed. So under load the task wakes once per
//!    batch, not once per request.
//! 3. The dispatcher starts one task per closed batch, at most `max_concurrent_calls` at a
//!    time; while all are busy, submitters keep filling batches and the next ones leave full.
//! 4. Per-record failures (Firehose's `FailedPutCount`, its throttling signal) and retriable call
//!    errors are sent again — only the failed records — after an exponential backoff with
//!    jitter, while the batch's retry budget lasts. Records still failing after it, and records
//!    whose own error says retrying cannot help, are answered as not accepted; nothing Firehose
//!    confirmed is ever sent again by the producer. One case is uncertain: a call that ends
//!    with no answer the producer can read (its timeout, a connection lost after the request
//!    went out, an answer without one entry per record) may have delivered its records. They
//!    count as failed, so they are sent again or answered as not accepted: never lost, but
//!    possibly delivered twice (at-least-once, as Firehose's own delivery; AWS: "retrying can
//!    create duplicates").
//! 5. A submission may carry a send deadline ([`ProducerHandle::submit_until`]). When it
//!    passes, every record of it that is not inside a `PutRecordBatch` call at that moment
//!    (still queued, or waiting to be retried) is withdrawn: answered as not accepted at once,
//!    and never sent afterwards. Records inside a call get that call's answer. So the submitter
//!    is answered at most one call timeout after its deadline, and a record reported as not
//!    accepted is never sent afterwards by this producer (if its last call ended without an
//!    answer, Firehose may have it anyway: step 4). The submitter's future does the
//!    withdrawing at the deadline; a call being filled checks the deadline of each record it
//!    takes as well, so even the records of a submitter that went away (a dropped future: the
//!    client disconnected) never go into a call after their deadline.
//!
//! A submission's bytes count against the in-flight cap until the producer lets go of the
//! last of its records (answered, or dropped after a withdrawal), so the cap bounds what is
//! held in memory: the records of a request are slices of one buffer, which lives until its
//! last slice is dropped, so releasing them record by record would undercount a large request
//! that waits for a retry of one record.
//! A caller can also count what it holds before submitting (a request body as it arrives) with
//! a [`Reservation`], and hand it over to the records with [`ProducerHandle::submit_reserved`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use firehose_formats::limits::{MAX_BATCH_RECORDS, MAX_RECORD_BYTES, SAFE_BATCH_BYTES};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::metrics::{ProducerMetrics, call_outcome, gauge_value, unaccepted_reason};
use crate::sink::{RecordOutcome, RecordSink, Retry, SinkError};

/// Tuning of a [`Producer`]. [`Default`] gives the service's defaults.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long an open batch waits for more records after its first one. Bounds the latency
    /// added to a lone request; under load batches fill before it passes.
    pub linger: Duration,
    /// How long a batch may keep retrying failed records, from the moment it is first sent.
    pub retry_budget: Duration,
    /// First backoff before a retry; doubles on each retry of the same batch.
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest wait for one `PutRecordBatch` answer before treating it as a retriable failure.
    pub call_timeout: Duration,
    /// Cap on bytes submitted and not yet answered, with the copies each call makes while it
    /// runs (`CALL_COPY_TENTHS`); past it submissions are shed.
    pub max_inflight_bytes: usize,
    /// `PutRecordBatch` calls in flight at once.
    pub max_concurrent_calls: usize,
    /// Records per call (at most [`MAX_BATCH_RECORDS`]).
    pub max_batch_records: usize,
    /// Bytes per call (at most [`SAFE_BATCH_BYTES`]).
    pub max_batch_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(10),
            retry_budget: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            max_inflight_bytes: 256 * 1024 * 1024,
            max_concurrent_calls: 32,
            max_batch_records: MAX_BATCH_RECORDS,
            max_batch_bytes: SAFE_BATCH_BYTES,
        }
    }
}

/// What became of one submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Firehose accepted every record; its record ids, index for index.
    Accepted {
        /// Firehose `RecordId`s in submission order.
        record_ids: Vec<String>,
    },
    /// Some records were not accepted within the retry budget (or could never be).
    Incomplete {
        /// `Some(id)` for accepted records, `None` for the ones to send again.
        record_ids: Vec<Option<String>>,
        /// The last error seen for an unaccepted record.
        error: String,
    },
    /// The in-flight byte cap is reached; nothing was sent. Try again shortly.
    Overloaded,
    /// The producer has stopped; nothing was sent.
    Closed,
}

impl SubmitOutcome {
    /// Indexes of the records that were not accepted.
    #[must_use]
    pub fn unaccepted(&self, submitted: usize) -> Vec<usize> {
        match self {
            Self::Accepted { .. } => Vec::new(),
            Self::Incomplete { record_ids, .. } => record_ids
                .iter()
                .enumerate()
                .filter_map(|(i, id)| id.is_none().then_some(i))
                .collect(),
            Self::Overloaded | Self::Closed => (0..submitted).collect(),
        }
    }
}

/// Starts producers. See the module docs.
#[derive(Debug)]
pub struct Producer;

impl Producer {
    /// Starts a producer for `stream` whose metrics are registered nowhere.
    #[must_use]
    pub fn spawn(
        sink: Arc<dyn RecordSink>,
        stream: impl Into<String>,
        config: ProducerConfig,
    ) -> ProducerHandle {
        Self::spawn_with_metrics(sink, stream, config, ProducerMetrics::unregistered())
    }

    /// Starts a producer for `stream` that updates `metrics`. Must be called inside a Tokio
    /// runtime. The dispatcher stops after the last [`ProducerHandle`] is dropped and every
    /// submitted record is answered.
    #[must_use]
    pub fn spawn_with_metrics(
        sink: Arc<dyn RecordSink>,
        stream: impl Into<String>,
        mut config: ProducerConfig,
        metrics: ProducerMetrics,
    ) -> ProducerHandle {
        config.max_batch_records = config.max_batch_records.clamp(1, MAX_BATCH_RECORDS);
        config.max_batch_bytes = config.max_batch_bytes.clamp(1, SAFE_BATCH_BYTES);
        config.max_concurrent_calls = config.max_concurrent_calls.max(1);
        metrics
            .calls_limit
            .set(gauge_value(config.max_concurrent_calls));
        metrics
            .inflight_bytes_limit
            .set(gauge_value(config.max_inflight_bytes));
        let inflight = Arc::new(AtomicUsize::new(0));
        metrics.inflight_bytes.watch(Arc::clone(&inflight));
        let shared = Arc::new(Shared {
            inflight,
            limit: config.max_inflight_bytes,
            metrics,
        });
        let config = Arc::new(config);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                open: Vec::new(),
                open_bytes: 0,
                due: None,
                closed: VecDeque::new(),
                handles: 1,
                stopped: false,
            }),
            wake: Notify::new(),
            config: Arc::clone(&config),
        });
        let (done_tx, done_rx) = watch::channel(false);
        let dispatcher = Dispatcher {
            sink,
            stream: Arc::from(stream.into()),
            shared: Arc::clone(&shared),
            config,
            queue: Arc::clone(&queue),
        };
        tokio::spawn(async move {
            dispatcher.run().await;
            let _ = done_tx.send(true);
        });
        ProducerHandle {
            queue,
            shared,
            done: done_rx,
        }
    }
}

/// Submits records to a running producer. Cheap to clone; the producer stops once every
/// handle is dropped and every record it was given is answered.
#[derive(Debug)]
pub struct ProducerHandle {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    done: watch::Receiver<bool>,
}

impl Clone for ProducerHandle {
    fn clone(&self) -> Self {
        self.queue.lock().handles += 1;
        Self {
            queue: Arc::clone(&self.queue),
            shared: Arc::clone(&self.shared),
            done: self.done.clone(),
        }
    }
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        let last = {
            let mut queue = self.queue.lock();
            queue.handles -= 1;
            queue.handles == 0
        };
        if last {
            // The dispatcher sends what is left at once, then stops.
            self.queue.wake.notify_one();
        }
    }
}

impl ProducerHandle {
    /// Hands `records` to the producer with no deadline: the returned future resolves when
    /// every record is answered (accepted, or given up on after the retry budget).
    pub fn submit(
        &self,
        records: Vec<Bytes>,
    ) -> impl Future<Output = SubmitOutcome> + Send + 'static + use<> {
        self.submit_until(records, None)
    }

    /// Hands `records` to the producer. The in-flight reservation happens now (so an
    /// [`SubmitOutcome::Overloaded`] answer is immediate), and so does queueing: the records
    /// are sent whether or not the returned future is polled. The future resolves when every
    /// record is answered. With `send_by`, records not inside a `PutRecordBatch` call when it
    /// passes are withdrawn (module docs, step 5), so the future resolves at most
    /// [`ProducerConfig::call_timeout`] after `send_by`. Dropping the future does not
    /// withdraw the records before their deadline (they may still be sent until then), and
    /// none is put into a call after it.
    pub fn submit_until(
        &self,
        records: Vec<Bytes>,
        send_by: Option<Instant>,
    ) -> impl Future<Output = SubmitOutcome> + Send + 'static + use<> {
        self.submit_inner(records, send_by, None)
    }

    /// As [`Self::submit_until`], for records whose bytes `held` already counts against the
    /// cap (the request body they were parsed from, and what the caller holds per event): the
    /// reservation becomes the submission's (grown to the records' size if they are larger)
    /// instead of a second one being taken, so the submission is never shed.
    pub fn submit_reserved(
        &self,
        records: Vec<Bytes>,
        send_by: Option<Instant>,
        held: Reservation,
    ) -> impl Future<Output = SubmitOutcome> + Send + 'static + use<> {
        self.submit_inner(records, send_by, Some(held))
    }

    /// An empty [`Reservation`] against this producer's in-flight cap.
    #[must_use]
    pub fn reservation(&self) -> Reservation {
        Reservation {
            shared: Arc::clone(&self.shared),
            bytes: 0,
        }
    }

    /// Counts `bytes` against the cap: by handing `held` over to them, or, without it, by a
    /// reservation that may be refused (load shedding). The bytes now counted, if admitted.
    fn reserve(&self, bytes: usize, held: Option<Reservation>) -> Option<usize> {
        match held {
            Some(held) => Some(held.hand_over(bytes)),
            None => self.shared.reserve(bytes, 0).then_some(bytes),
        }
    }

    fn submit_inner(
        &self,
        records: Vec<Bytes>,
        send_by: Option<Instant>,
        held: Option<Reservation>,
    ) -> impl Future<Output = SubmitOutcome> + Send + 'static + use<> {
        let bytes: usize = records.iter().map(Bytes::len).sum();
        // With nothing to submit, `held` (if any) is simply dropped, which releases it.
        let admitted = if records.is_empty() {
            Admission::Empty
        } else if send_by.is_some_and(|at| at <= Instant::now()) {
            // Already past its deadline (a long upload or validation): queued, its records
            // would hold their place in batches and the cap until a sender reached them, only
            // to be withdrawn. `held` is released with it.
            self.shared
                .metrics
                .unaccepted(unaccepted_reason::DEADLINE, records.len() as u64);
            Admission::Late(records.len())
        } else if let Some(reserved) = self.reserve(bytes, held) {
            let shared = Arc::clone(&self.shared);
            let pending = Arc::new(Pending::new(records.len(), reserved, send_by, shared));
            if self.queue.push(&pending, records) {
                Admission::Queued(Reply { pending })
            } else {
                self.shared.release(reserved);
                Admission::Closed
            }
        } else {
            Admission::Shed
        };
        async move {
            match admitted {
                Admission::Empty => SubmitOutcome::Accepted {
                    record_ids: Vec::new(),
                },
                Admission::Shed => SubmitOutcome::Overloaded,
                Admission::Closed => SubmitOutcome::Closed,
                Admission::Late(n) => SubmitOutcome::Incomplete {
                    record_ids: vec![None; n],
                    error: NOT_SENT_IN_TIME.to_owned(),
                },
                Admission::Queued(mut reply) => {
                    let Some(at) = reply.pending.send_by else {
                        return reply.await;
                    };
                    tokio::select! {
                        biased;
                        outcome = &mut reply => return outcome,
                        () = tokio::time::sleep_until(at) => reply.pending.withdraw(),
                    }
                    reply.await
                }
            }
        }
    }

    /// Bytes submitted and not yet let go of.
    #[must_use]
    pub fn inflight_bytes(&self) -> usize {
        self.shared.inflight.load(Ordering::Acquire)
    }

    /// Resolves once the dispatcher has stopped: every handle dropped and every record
    /// answered.
    pub async fn drained(self) {
        let mut done = self.done.clone();
        drop(self);
        let _ = done.wait_for(|done| *done).await;
    }
}

enum Admission {
    Empty,
    Shed,
    Closed,
    /// Past its send deadline already: `n` records, none sent.
    Late(usize),
    /// Queued: the answer (with the submission, and so its deadline).
    Queued(Reply),
}

#[derive(Debug)]
struct Shared {
    /// Bytes held against the cap; also what `ingest_inflight_bytes` shows when scraped.
    inflight: Arc<AtomicUsize>,
    limit: usize,
    metrics: ProducerMetrics,
}

impl Shared {
    /// Reserves `bytes` for a holder that has `own` bytes reserved already, unless that would
    /// pass the cap while others hold some too. So a holder alone is never starved: a
    /// submission larger than the cap is still admitted when nothing else is in flight.
    fn reserve(&self, bytes: usize, own: usize) -> bool {
        let mut current = self.inflight.load(Ordering::Acquire);
        loop {
            let next = current.saturating_add(bytes);
            if next > self.limit && current > own {
                return false;
            }
            match self.inflight.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Adds `bytes` whatever the cap (a holder's few bytes more than it had reserved).
    fn force(&self, bytes: usize) {
        self.inflight.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        self.inflight.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What a `PutRecordBatch` call's copies of its records cost while it runs, in tenths of the
/// batch's bytes: `aws-sdk-firehose` copies each record into a `Blob` (1×) and serializes them,
/// in base64, into the JSON body (≈ 1.37×). The records themselves are already counted (their
/// requests' reservations); the copies are held by a [`Reservation::forced`] for the call.
/// Uncounted, they let the peak RSS under overload reach 3-3.5 times the cap
/// (`scripts/mem-ingest.sh`); counted, requests are shed while calls hold them, and it stays at
/// 1.3-1.7 times for caps of 128 MiB and more.
const CALL_COPY_TENTHS: usize = 24;

/// Bytes counted against a producer's in-flight cap on behalf of something not yet submitted,
/// such as a request body being received: the cap bounds what the whole service holds, not
/// only what the producer queues. Released when dropped; [`ProducerHandle::submit_reserved`]
/// turns it into the reservation of the records parsed from it.
#[derive(Debug)]
pub struct Reservation {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Reservation {
    /// Holds `bytes` whatever the cap (what has started must finish).
    fn forced(shared: &Arc<Shared>, bytes: usize) -> Self {
        shared.force(bytes);
        Self {
            shared: Arc::clone(shared),
            bytes,
        }
    }

    /// Bytes held.
    #[must_use]
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `more` bytes too, unless that would pass the cap while anything else is in
    /// flight (alone, a holder always gets its bytes, as an oversized submission does).
    #[must_use]
    pub fn grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        let granted = self.shared.reserve(more, self.bytes);
        if granted {
            self.bytes += more;
        }
        granted
    }

    /// Lets go of `less` bytes (at most all of them).
    pub fn shrink(&mut self, less: usize) {
        let less = less.min(self.bytes);
        if less > 0 {
            self.shared.release(less);
            self.bytes -= less;
        }
    }

    /// Makes the reservation at least `bytes` (growing it whatever the cap: records are at
    /// most a few bytes larger than the body they came from) and gives it up without releasing
    /// it: the submission releases it when its last record is let go of. Returns what it
    /// holds. A larger reservation is kept whole: it stands for the buffer the records share
    /// and the holder's bookkeeping per record, which live as long as the submission.
    fn hand_over(mut self, bytes: usize) -> usize {
        if bytes > self.bytes {
            self.shared.force(bytes - self.bytes);
            self.bytes = bytes;
        }
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// One submission's answers so far.
#[derive(Debug)]
struct Pending {
    state: Mutex<PendingState>,
    /// The submission's send deadline. The submitter's future withdraws the records when it
    /// passes; [`Pending::claim`] checks it too, so a record is never put into a call after
    /// it, even when that future was dropped (a client that went away) or has not run yet.
    send_by: Option<Instant>,
    shared: Arc<Shared>,
    /// The submission's bytes against the in-flight cap, released by the last record let go of.
    bytes: usize,
    /// Records not let go of yet.
    held: AtomicUsize,
    /// The submitter's span, when it is exported: each call span carrying its records links
    /// to it, so a trace of a slow request leads to the calls it waited for.
    link: Option<opentelemetry::trace::SpanContext>,
}

/// Most span links a `PutRecordBatch` call span carries (one per submission of its records; a
/// call of 500 single-event requests would otherwise carry 500).
pub const MAX_CALL_SPAN_LINKS: usize = 128;

/// The current span's context, when it is exported (an invalid context, or a disabled span
/// when nothing records spans, links nothing), without its `tracestate`: that comes from the
/// caller's header (up to 32 entries of 512 bytes), and a call carries up to
/// [`MAX_CALL_SPAN_LINKS`] links, held while its records wait and then exported (helper-91).
/// A link needs the trace and span ids only.
fn exported_span() -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let current = cx.span().span_context().clone();
    current.is_valid().then(|| {
        SpanContext::new(
            current.trace_id(),
            current.span_id(),
            current.trace_flags(),
            current.is_remote(),
            TraceState::default(),
        )
    })
}

/// Where one record of a submission is.
#[derive(Debug)]
enum Slot {
    /// Queued, or waiting to be retried: withdrawn if the deadline passes now.
    Waiting,
    /// Inside a `PutRecordBatch` call: its answer decides.
    InCall,
    /// Accepted with this record id.
    Accepted(String),
    /// Answered as not accepted.
    Refused,
}

#[derive(Debug)]
struct PendingState {
    slots: Vec<Slot>,
    /// Records not answered yet.
    remaining: usize,
    /// The deadline passed: nothing of this submission is sent any more.
    withdrawn: bool,
    error: Option<String>,
    /// Set once, when the last record is answered; taken by the submitter's [`Reply`].
    outcome: Option<SubmitOutcome>,
    /// Whether `outcome` was set (it may have been taken since).
    replied: bool,
    /// The submitter waiting for `outcome`.
    waker: Option<Waker>,
}

/// Why withdrawn records were not accepted, when no call had failed for them (the error of a
/// [`SubmitOutcome::Incomplete`] then).
pub const NOT_SENT_IN_TIME: &str = "not sent before the request's send deadline: the upload and \
                                validation took up the request's time, or every PutRecordBatch \
                                slot stayed busy (Firehose slow or throttling)";

/// A record answered as not accepted: why (a [`unaccepted_reason`] label) and the message the
/// submitter's answer carries.
#[derive(Debug)]
struct Refusal {
    reason: &'static str,
    message: String,
}

impl Refusal {
    const fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// Why records were not accepted when the producer's task was torn down (runtime shutdown).
const STOPPED: &str = "the producer stopped before the record was sent";

impl Pending {
    fn new(records: usize, bytes: usize, send_by: Option<Instant>, shared: Arc<Shared>) -> Self {
        Self {
            link: exported_span(),
            send_by,
            state: Mutex::new(PendingState {
                slots: std::iter::repeat_with(|| Slot::Waiting)
                    .take(records)
                    .collect(),
                remaining: records,
                withdrawn: false,
                error: None,
                outcome: None,
                replied: false,
                waker: None,
            }),
            shared,
            bytes,
            held: AtomicUsize::new(records),
        }
    }

    /// One of the records was let go of; after the last, the submission's bytes are released.
    fn let_go(&self) {
        if self.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.release(self.bytes);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        // A poisoned lock only means another resolver panicked mid-update; the data is a plain
        // list of answers, still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the answer for record `index` (a second answer for it is ignored); the last
    /// answer replies to the submitter.
    fn resolve(&self, index: usize, answer: Result<String, Refusal>) {
        let mut state = self.lock();
        let Some(slot) = state.slots.get_mut(index) else {
            return;
        };
        if matches!(slot, Slot::Accepted(_) | Slot::Refused) {
            return;
        }
        match answer {
            Ok(id) => *slot = Slot::Accepted(id),
            Err(Refusal { reason, message }) => {
                *slot = Slot::Refused;
                state.error = Some(message);
                self.shared.metrics.unaccepted(reason, 1);
            }
        }
        state.remaining = state.remaining.saturating_sub(1);
        Self::reply_if_done(state);
    }

    /// Marks record `index` as inside a call, unless it was answered (withdrawn) already or the
    /// send deadline has passed at `now`, which withdraws the submission here and now.
    fn claim(&self, index: usize, now: Instant) -> bool {
        let mut state = self.lock();
        if state.withdrawn {
            return false;
        }
        if self.send_by.is_some_and(|at| now >= at) {
            self.withdraw_locked(state);
            return false;
        }
        match state.slots.get_mut(index) {
            Some(slot @ Slot::Waiting) => {
                *slot = Slot::InCall;
                true
            }
            _ => false,
        }
    }

    /// Record `index`'s call failed with `error`: it waits for a retry, unless the submission
    /// was withdrawn meanwhile, in which case it is answered now (`false`).
    fn requeue(&self, index: usize, error: &str) -> bool {
        let mut state = self.lock();
        let withdrawn = state.withdrawn;
        let Some(slot) = state.slots.get_mut(index) else {
            return false;
        };
        if !matches!(slot, Slot::InCall) {
            return false;
        }
        if !withdrawn {
            *slot = Slot::Waiting;
            // The answer's reason if the deadline withdraws it before the retry.
            state.error = Some(error.to_owned());
            return true;
        }
        *slot = Slot::Refused;
        state.error = Some(error.to_owned());
        state.remaining = state.remaining.saturating_sub(1);
        self.shared
            .metrics
            .unaccepted(unaccepted_reason::DEADLINE, 1);
        Self::reply_if_done(state);
        false
    }

    /// The deadline passed: answers every waiting record as not accepted; records inside a
    /// call keep waiting for it.
    fn withdraw(&self) {
        self.withdraw_locked(self.lock());
    }

    fn withdraw_locked(&self, mut state: std::sync::MutexGuard<'_, PendingState>) {
        state.withdrawn = true;
        let mut withdrawn = 0usize;
        for slot in &mut state.slots {
            if matches!(slot, Slot::Waiting) {
                *slot = Slot::Refused;
                withdrawn += 1;
            }
        }
        if withdrawn == 0 {
            return;
        }
        state.remaining = state.remaining.saturating_sub(withdrawn);
        if state.error.is_none() {
            state.error = Some(NOT_SENT_IN_TIME.to_owned());
        }
        self.shared
            .metrics
            .unaccepted(unaccepted_reason::DEADLINE, withdrawn as u64);
        Self::reply_if_done(state);
    }

    fn reply_if_done(mut state: std::sync::MutexGuard<'_, PendingState>) {
        if state.remaining > 0 || state.replied {
            return;
        }
        let ids: Vec<Option<String>> = std::mem::take(&mut state.slots)
            .into_iter()
            .map(|slot| match slot {
                Slot::Accepted(id) => Some(id),
                _ => None,
            })
            .collect();
        let outcome = if ids.iter().all(Option::is_some) {
            SubmitOutcome::Accepted {
                record_ids: ids.into_iter().flatten().collect(),
            }
        } else {
            SubmitOutcome::Incomplete {
                record_ids: ids,
                error: state
                    .error
                    .take()
                    .unwrap_or_else(|| NOT_SENT_IN_TIME.to_owned()),
            }
        };
        state.outcome = Some(outcome);
        state.replied = true;
        let waker = state.waker.take();
        drop(state);
        // The submitter may have gone away (client disconnected); its records were handled
        // all the same.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The submitter's side of a [`Pending`]: resolves with the outcome once every record is
/// answered. (A oneshot channel would do the same with one more allocation per submission;
/// the state it would guard is already behind `Pending`'s lock.)
struct Reply {
    pending: Arc<Pending>,
}

impl Future for Reply {
    type Output = SubmitOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SubmitOutcome> {
        let mut state = self.pending.lock();
        if let Some(outcome) = state.outcome.take() {
            return Poll::Ready(outcome);
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The records waiting for a call. Submitters append to the open batch themselves, under
/// the lock, and close it when it is full; the dispatcher closes it when its linger has
/// passed, and starts a call for each closed batch. A submission is one lock and no task
/// switch: the producer's task wakes once per batch, not once per request.
#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the dispatcher: a batch opened (its linger starts), a batch closed, or the last
    /// handle went away.
    wake: Notify,
    /// The batch limits and the linger (the dispatcher's config, shared).
    config: Arc<ProducerConfig>,
}

#[derive(Debug)]
struct QueueState {
    /// The batch records are appended to.
    open: Vec<Item>,
    open_bytes: usize,
    /// When the open batch leaves: its first record's arrival plus the linger. `None` while
    /// it is empty.
    due: Option<Instant>,
    /// Batches closed and waiting for a call slot, oldest first.
    closed: VecDeque<Vec<Item>>,
    /// Live [`ProducerHandle`]s.
    handles: usize,
    /// The dispatcher is gone: nothing is queued any more.
    stopped: bool,
}

impl QueueState {
    fn take_open(&mut self) -> Vec<Item> {
        self.open_bytes = 0;
        self.due = None;
        std::mem::take(&mut self.open)
    }

    fn close_open(&mut self) {
        let batch = self.take_open();
        self.closed.push_back(batch);
    }
}

/// What the dispatcher does next.
enum Next {
    /// Start a call for this batch.
    Send(Vec<Item>),
    /// Wait to be woken, or until the open batch is due.
    Wait(Option<Instant>),
    /// Every handle is gone and nothing is queued.
    Stop,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Poisoned only if a panic hit between two plain field updates; the queue stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `pending`'s records to the open batch, closing it whenever the next record
    /// would not fit. Records over Firehose's size limit are answered at once instead.
    /// `false` if the producer has stopped (nothing was queued).
    fn push(&self, pending: &Arc<Pending>, records: Vec<Bytes>) -> bool {
        let mut too_large = Vec::new();
        let mut wake = false;
        {
            let mut queue = self.lock();
            if queue.stopped {
                return false;
            }
            for (index, data) in records.into_iter().enumerate() {
                if data.len() > MAX_RECORD_BYTES {
                    too_large.push(Item::new(pending, index, data));
                    continue;
                }
                // (A batch is closed as soon as it holds `max_batch_records`, below, so only
                // the byte budget can leave the open one unable to take this record.)
                if !queue.open.is_empty()
                    && queue.open_bytes + data.len() > self.config.max_batch_bytes
                {
                    queue.close_open();
                    wake = true;
                }
                if queue.open.is_empty() {
                    queue.due = Some(Instant::now() + self.config.linger);
                    wake = true;
                }
                queue.open_bytes += data.len();
                queue.open.push(Item::new(pending, index, data));
                if queue.open.len() >= self.config.max_batch_records {
                    queue.close_open();
                    wake = true;
                }
            }
        }
        if wake {
            self.wake.notify_one();
        }
        for item in too_large {
            pending
                .shared
                .metrics
                .records_failed
                .with_label_values(&["RecordTooLarge"])
                .inc();
            let size = item.data.len();
            item.answer(Err(Refusal::new(
                unaccepted_reason::PERMANENT,
                format!("RecordTooLarge: {size} bytes, Firehose takes at most {MAX_RECORD_BYTES}"),
            )));
        }
        true
    }

    /// The dispatcher's next step at `now`: the oldest closed batch, else the open batch if it
    /// is due (or if no handle is left to add to it).
    fn next(&self, now: Instant) -> Next {
        let mut queue = self.lock();
        if let Some(batch) = queue.closed.pop_front() {
            return Next::Send(batch);
        }
        match queue.due {
            Some(due) if due <= now || queue.handles == 0 => Next::Send(queue.take_open()),
            Some(due) => Next::Wait(Some(due)),
            None if queue.handles == 0 => Next::Stop,
            None => Next::Wait(None),
        }
    }
}

/// Marks the queue stopped when the dispatcher ends, however it ends: if its task is torn
/// down (the runtime shutting down), the records still queued are answered instead of
/// leaving their submitters waiting.
struct StopOnDrop(Arc<Queue>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let (open, closed) = {
            let mut queue = self.0.lock();
            queue.stopped = true;
            let open = queue.take_open();
            (open, std::mem::take(&mut queue.closed))
        };
        for item in open.into_iter().chain(closed.into_iter().flatten()) {
            item.answer(Err(Refusal::new(
                unaccepted_reason::STOPPED,
                STOPPED.to_owned(),
            )));
        }
    }
}

/// One record on its way: where to report, which index, what to send. Its submission's bytes
/// stay reserved against the in-flight cap until it and its siblings are let go of, and an item
/// dropped unanswered (a bug, or a task torn down) answers its record as not accepted rather
/// than leaving the submitter waiting.
#[derive(Debug)]
struct Item {
    pending: Arc<Pending>,
    index: usize,
    data: Bytes,
    answered: bool,
    /// Not let go of yet (see [`Pending::let_go`]).
    held: bool,
}

impl Item {
    fn new(pending: &Arc<Pending>, index: usize, data: Bytes) -> Self {
        Self {
            pending: Arc::clone(pending),
            index,
            data,
            answered: false,
            held: true,
        }
    }

    /// Answers the record, letting go of it first (so a submitter that sees its answer also
    /// sees its bytes released).
    fn answer(mut self, answer: Result<String, Refusal>) {
        self.release();
        self.answered = true;
        self.pending.resolve(self.index, answer);
    }

    /// Marks the record as inside a call starting at `now`; `false` if it was withdrawn (then
    /// drop it).
    fn claim(&mut self, now: Instant) -> bool {
        let claimed = self.pending.claim(self.index, now);
        self.answered |= !claimed;
        claimed
    }

    /// After a failed call: `true` if the record waits for a retry, `false` if its submission
    /// was withdrawn and it has just been answered (then drop it).
    fn requeue(&mut self, error: &str) -> bool {
        let waiting = self.pending.requeue(self.index, error);
        self.answered |= !waiting;
        waiting
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            self.data = Bytes::new();
            self.pending.let_go();
        }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.release();
        if !self.answered {
            // Only when the task carrying it is torn down (the runtime stopping).
            self.pending.resolve(
                self.index,
                Err(Refusal::new(
                    unaccepted_reason::STOPPED,
                    "internal error: record dropped".to_owned(),
                )),
            );
        }
    }
}

/// The producer's task: closes the open batch when its linger passes and starts one call per
/// closed batch, at most `max_concurrent_calls` at a time.
struct Dispatcher {
    sink: Arc<dyn RecordSink>,
    stream: Arc<str>,
    config: Arc<ProducerConfig>,
    /// The cap and the metrics.
    shared: Arc<Shared>,
    queue: Arc<Queue>,
}

impl Dispatcher {
    async fn run(self) {
        let _stop = StopOnDrop(Arc::clone(&self.queue));
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_calls));
        let mut tasks = JoinSet::new();
        // One timer for the whole run, re-armed once per batch. Registering a timer that is
        // the runtime's earliest wakes its driver (an `eventfd` write): one per batch, not one
        // per submission.
        let linger = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(linger);
        let mut armed = None;
        loop {
            while tasks.try_join_next().is_some() {}
            match self.queue.next(Instant::now()) {
                Next::Send(batch) => self.start(batch, &permits, &mut tasks).await,
                Next::Wait(due) => {
                    // A wake-up sent since `next` looked is kept by `Notify` (one permit), so
                    // none is lost between the look and the wait.
                    let woken = self.queue.wake.notified();
                    match due {
                        Some(due) => {
                            if armed != Some(due) {
                                linger.as_mut().reset(due);
                                armed = Some(due);
                            }
                            tokio::select! {
                                biased;
                                () = woken => {}
                                () = &mut linger => {}
                            }
                        }
                        None => woken.await,
                    }
                }
                Next::Stop => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Starts the call for `items` once a call slot is free. Waiting here is the
    /// backpressure: while every slot is busy, submitters keep filling batches, so the next
    /// ones leave full.
    async fn start(&self, items: Vec<Item>, permits: &Arc<Semaphore>, tasks: &mut JoinSet<()>) {
        // The semaphore is never closed; were it, the items would be answered as dropped.
        let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
            return;
        };
        let sender = Sender {
            sink: Arc::clone(&self.sink),
            stream: Arc::clone(&self.stream),
            config: Arc::clone(&self.config),
            shared: Arc::clone(&self.shared),
        };
        // Counted per call (not per record): while it sits at the limit, calls wait for a slot.
        let in_flight = self.shared.metrics.calls_in_flight.clone();
        in_flight.inc();
        tasks.spawn(async move {
            // Given back however the task ends (a torn-down task included).
            let _slot = GaugeSlot(in_flight);
            sender.send(items).await;
            drop(permit);
        });
    }
}

/// Decrements `gauge` when dropped.
struct GaugeSlot(prometheus::IntGauge);

impl Drop for GaugeSlot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Sender {
    sink: Arc<dyn RecordSink>,
    stream: Arc<str>,
    config: Arc<ProducerConfig>,
    /// The cap, which also counts each call's copies of its records ([`CALL_COPY_TENTHS`]),
    /// and the metrics.
    shared: Arc<Shared>,
}

impl Sender {
    /// Sends one batch until every record is accepted or the budget is spent.
    async fn send(&self, mut items: Vec<Item>) {
        let budget_ends = Instant::now() + self.config.retry_budget;
        let mut attempt: u32 = 0;
        loop {
            // Records whose submission was withdrawn (or whose deadline has passed: it is
            // withdrawn now) are answered and must not be sent; the rest are marked as inside
            // this call.
            let now = Instant::now();
            items.retain_mut(|item| item.claim(now));
            if items.is_empty() {
                return;
            }
            if attempt > 0 {
                self.shared
                    .metrics
                    .records_retried
                    .inc_by(items.len() as u64);
            }
            // One span per call (exported when trace export is on). A batch mixes records of
            // many requests, so it starts a trace of its own rather than joining one of theirs.
            let span = tracing::info_span!(
                "put_record_batch",
                otel.name = "Firehose.PutRecordBatch",
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                stream = %self.stream,
                // i64: tracing-opentelemetry exports unsigned fields as strings.
                records = gauge_value(items.len()),
                retry = i64::from(attempt),
                failed = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            if !span.is_disabled() {
                use tracing_opentelemetry::OpenTelemetrySpanExt as _;
                let mut linked: Vec<&Arc<Pending>> = Vec::new();
                for item in &items {
                    if linked.len() == MAX_CALL_SPAN_LINKS {
                        break;
                    }
                    // One link per submission, however many of its records the call holds.
                    if let Some(link) = &item.pending.link
                        && !linked.iter().any(|p| Arc::ptr_eq(p, &item.pending))
                    {
                        linked.push(&item.pending);
                        span.add_link(link.clone());
                    }
                }
            }
            let (failed, error) = self.attempt(items).instrument(span.clone()).await;
            span.record("failed", gauge_value(failed.len()));
            if let Some(error) = &error {
                span.record("otel.status_code", "error");
                span.record("error", tracing::field::display(error));
            }
            drop(span);
            let Some(error) = error else { return };
            attempt = attempt.saturating_add(1);
            let backoff = self.backoff(attempt);
            let message = error.to_string();
            if error.retry == Retry::Permanent || Instant::now() + backoff >= budget_ends {
                let reason = if error.retry == Retry::Permanent {
                    unaccepted_reason::PERMANENT
                } else {
                    unaccepted_reason::RETRIES_EXHAUSTED
                };
                for item in failed {
                    item.answer(Err(Refusal::new(reason, message.clone())));
                }
                return;
            }
            let mut failed = failed;
            failed.retain_mut(|item| item.requeue(&message));
            if failed.is_empty() {
                return;
            }
            tokio::time::sleep(backoff).await;
            items = failed;
        }
    }

    /// One `PutRecordBatch` call. Accepted records are answered at once; the failed ones come
    /// back with the error that decides whether to retry them.
    async fn attempt(&self, items: Vec<Item>) -> (Vec<Item>, Option<SinkError>) {
        let data: Vec<Bytes> = items.iter().map(|i| i.data.clone()).collect();
        let bytes: usize = data.iter().map(Bytes::len).sum();
        self.shared
            .metrics
            .batch_records
            .observe(items.len() as f64);
        self.shared.metrics.batch_bytes.observe(bytes as f64);
        // Taken whatever the cap (a call that has started finishes), let go of when it ends.
        let _copies =
            Reservation::forced(&self.shared, bytes.saturating_mul(CALL_COPY_TENTHS) / 10);
        let started = Instant::now();
        let result = crate::sink::within(
            self.config.call_timeout,
            self.sink.put_batch(&self.stream, data),
        )
        .await;
        self.shared
            .metrics
            .put_batch_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) if outcome.records.len() == items.len() => {
                let mut failed = Vec::new();
                let mut last = None;
                let mut refused = 0usize;
                for (item, record) in items.into_iter().zip(outcome.records) {
                    match record {
                        RecordOutcome::Accepted { record_id } => item.answer(Ok(record_id)),
                        RecordOutcome::Failed {
                            error_code,
                            message,
                        } => {
                            self.shared
                                .metrics
                                .records_failed
                                .with_label_values(&[label(&error_code)])
                                .inc();
                            refused += 1;
                            // Each record by its own error: one that can never succeed is
                            // answered now, whatever the others' errors say.
                            let error = SinkError::new(error_code, message);
                            if error.retry == Retry::Permanent {
                                item.answer(Err(Refusal::new(
                                    unaccepted_reason::PERMANENT,
                                    error.to_string(),
                                )));
                            } else {
                                last = Some(error);
                                failed.push(item);
                            }
                        }
                    }
                }
                let outcome = if refused == 0 {
                    call_outcome::OK
                } else {
                    call_outcome::PARTIAL
                };
                self.shared
                    .metrics
                    .put_batch_calls
                    .with_label_values(&[outcome])
                    .inc();
                if refused == 0 {
                    tracing::debug!(stream = %self.stream, "batch accepted");
                } else {
                    tracing::warn!(stream = %self.stream, failed = refused, retriable = failed.len(), "partial batch failure, retrying the retriable records");
                }
                (failed, last)
            }
            Ok(outcome) => {
                let error = SinkError::new(
                    "Response",
                    format!(
                        "{} outcomes for {} records",
                        outcome.records.len(),
                        items.len()
                    ),
                );
                self.call_failed(items, error)
            }
            Err(error) => self.call_failed(items, error),
        }
    }

    fn call_failed(&self, items: Vec<Item>, error: SinkError) -> (Vec<Item>, Option<SinkError>) {
        self.shared
            .metrics
            .put_batch_calls
            .with_label_values(&[call_outcome::ERROR])
            .inc();
        self.shared
            .metrics
            .records_failed
            .with_label_values(&[label(&error.code)])
            .inc_by(items.len() as u64);
        tracing::warn!(
            stream = %self.stream,
            code = %error.code,
            error = %error.message,
            detail = error.detail.as_deref().unwrap_or(""),
            records = items.len(),
            "PutRecordBatch failed"
        );
        (items, Some(error))
    }

    /// Exponential backoff with "equal jitter": half the step is fixed (so retries always
    /// spread out), half is random (so throttled producers do not retry in lockstep).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        let step = self
            .config
            .initial_backoff
            .saturating_mul(factor)
            .min(self.config.max_backoff);
        let half = step / 2;
        let jitter_nanos = rand::rng().random_range(0..=half.as_nanos().min(u128::from(u64::MAX)));
        half + Duration::from_nanos(u64::try_from(jitter_nanos).unwrap_or(u64::MAX))
    }
}

/// Keeps the `error_code` label a bounded set: AWS error codes are short identifiers; anything
/// else is folded into `other`.
fn label(code: &str) -> &str {
    if !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
    {
        code
    } else {
        "other"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt;
    use std::sync::Mutex as StdMutex;

    use futures::FutureExt as _;
    use futures::future::{BoxFuture, join_all};

    use super::*;
    use crate::sink::BatchOutcome;

    /// Records answered as not accepted for `reason`.
    fn unaccepted(metrics: &ProducerMetrics, reason: &str) -> u64 {
        metrics
            .records_unaccepted
            .with_label_values(&[reason])
            .get()
    }

    type Rule = Box<dyn Fn(&[u8], usize) -> Option<&'static str> + Send + Sync>;

    /// What a whole call does, by call number (from 1).
    enum Call {
        /// Answer each record by `rule`.
        Answer,
        /// Fail as a whole with this code.
        Fail(&'static str),
        /// Never answer (the producer's call timeout must end it).
        Hang,
        /// Answer with no entries (fewer than the records sent).
        Short,
    }

    /// Records every call; `call(call_number)` decides the call as a whole, then
    /// `rule(record, call_number)` names an error code to fail a record with; `gate` holds
    /// calls until permits are added.
    struct FakeSink {
        calls: StdMutex<Vec<Vec<Bytes>>>,
        rule: Rule,
        call: fn(usize) -> Call,
        gate: Option<Arc<Semaphore>>,
    }

    impl fmt::Debug for FakeSink {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("FakeSink")
        }
    }

    impl FakeSink {
        fn new(rule: Rule) -> Arc<Self> {
            Arc::new(Self {
                calls: StdMutex::new(Vec::new()),
                rule,
                call: |_| Call::Answer,
                gate: None,
            })
        }
        fn ok() -> Arc<Self> {
            Self::new(Box::new(|_, _| None))
        }
        fn calls(&self) -> Vec<Vec<Bytes>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl RecordSink for FakeSink {
        fn put_batch<'a>(
            &'a self,
            _stream: &'a str,
            records: Vec<Bytes>,
        ) -> BoxFuture<'a, Result<BatchOutcome, SinkError>> {
            Box::pin(async move {
                if let Some(gate) = &self.gate {
                    gate.acquire().await.unwrap().forget();
                }
                let call = {
                    let mut calls = self.calls.lock().unwrap();
                    calls.push(records.clone());
                    calls.len()
                };
                match (self.call)(call) {
                    Call::Answer => {}
                    Call::Fail(code) => return Err(SinkError::new(code, "whole call failed")),
                    Call::Hang => std::future::pending::<()>().await,
                    Call::Short => return Ok(BatchOutcome { records: vec![] }),
                }
                let records = records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match (self.rule)(r, call) {
                        Some(code) => RecordOutcome::Failed {
                            error_code: code.to_owned(),
                            message: "refused".to_owned(),
                        },
                        None => RecordOutcome::Accepted {
                            record_id: format!("c{call}r{i}"),
                        },
                    })
                    .collect();
                Ok(BatchOutcome { records })
            })
        }

        fn check<'a>(&'a self, _stream: &'a str) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn recs(prefix: &str, n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| Bytes::from(format!("{{\"{prefix}\":{i}}}\n")))
            .collect()
    }

    /// A sink that accepts everything, but holds each call until `gate` gets a permit.
    fn gated() -> (Arc<FakeSink>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let sink = Arc::new(FakeSink {
            calls: StdMutex::new(Vec::new()),
            rule: Box::new(|_, _| None),
            call: |_| Call::Answer,
            gate: Some(Arc::clone(&gate)),
        });
        (sink, gate)
    }

    fn spawn(sink: &Arc<FakeSink>, config: ProducerConfig) -> (ProducerHandle, ProducerMetrics) {
        let metrics = ProducerMetrics::unregistered();
        let sink: Arc<dyn RecordSink> = Arc::clone(sink) as Arc<dyn RecordSink>;
        let handle = Producer::spawn_with_metrics(sink, "s", config, metrics.clone());
        (handle, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_submissions_share_one_call_and_get_their_own_ids() {
        let sink = FakeSink::ok();
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let outcomes = join_all((0..10).map(|r| producer.submit(recs(&format!("r{r}"), 3)))).await;
        let calls = sink.calls();
        assert_eq!(calls.len(), 1, "one PutRecordBatch for 10 requests");
        assert_eq!(calls[0].len(), 30);
        for (r, outcome) in outcomes.iter().enumerate() {
            let SubmitOutcome::Accepted { record_ids } = outcome else {
                panic!("request {r}: {outcome:?}");
            };
            let expected: Vec<String> = (0..3).map(|i| format!("c1r{}", r * 3 + i)).collect();
            assert_eq!(record_ids, &expected);
        }
        assert_eq!(metrics.put_batch_calls.with_label_values(&["ok"]).get(), 1);
        assert_eq!(producer.inflight_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_record_waits_only_the_linger() {
        let sink = FakeSink::ok();
        let config = ProducerConfig {
            linger: Duration::from_millis(25),
            ..ProducerConfig::default()
        };
        let (producer, _) = spawn(&sink, config);
        let started = Instant::now();
        let outcome = producer.submit(recs("a", 1)).await;
        assert!(matches!(outcome, SubmitOutcome::Accepted { .. }));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(25) && waited < Duration::from_millis(30),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batches_respect_the_record_count_limit() {
        let sink = FakeSink::ok();
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let outcome = producer.submit(recs("a", 1201)).await;
        let SubmitOutcome::Accepted { record_ids } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(record_ids.len(), 1201);
        let sizes: Vec<usize> = sink.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        assert_eq!(metrics.batch_records.get_sample_count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_respect_the_byte_limit() {
        let sink = FakeSink::ok();
        let (producer, _) = spawn(&sink, ProducerConfig::default());
        let big: Vec<Bytes> = (0..20).map(|_| Bytes::from(vec![b'x'; 300_000])).collect();
        assert!(matches!(
            producer.submit(big).await,
            SubmitOutcome::Accepted { .. }
        ));
        let calls = sink.calls();
        assert_eq!(calls.len(), 2);
        for call in &calls {
            let bytes: usize = call.iter().map(Bytes::len).sum();
            assert!(bytes <= SAFE_BATCH_BYTES, "{bytes}");
        }
        assert_eq!(calls[0].len(), 13);
        assert_eq!(calls[1].len(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_failure_retries_only_the_failed_records() {
        // First call: records 1 and 3 throttled. Later calls: all fine.
        let sink = FakeSink::new(Box::new(|r, call| {
            (call == 1 && (r.starts_with(b"{\"a\":1}") || r.starts_with(b"{\"a\":3}")))
                .then_some("ServiceUnavailableException")
        }));
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let outcome = producer.submit(recs("a", 5)).await;
        let SubmitOutcome::Accepted { record_ids } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(record_ids, vec!["c1r0", "c2r0", "c1r2", "c2r1", "c1r4"]);
        let calls = sink.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[1],
            vec![Bytes::from("{\"a\":1}\n"), Bytes::from("{\"a\":3}\n")]
        );
        assert_eq!(metrics.records_retried.get(), 2);
        assert_eq!(
            metrics
                .records_failed
                .with_label_values(&["ServiceUnavailableException"])
                .get(),
            2
        );
        assert_eq!(
            metrics
                .put_batch_calls
                .with_label_values(&["partial"])
                .get(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_budget_names_the_unaccepted_indexes() {
        let sink = FakeSink::new(Box::new(|r, _| {
            r.starts_with(b"{\"a\":2}")
                .then_some("ServiceUnavailableException")
        }));
        let config = ProducerConfig {
            retry_budget: Duration::from_secs(3),
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        let started = Instant::now();
        let outcome = producer.submit(recs("a", 4)).await;
        assert!(started.elapsed() <= Duration::from_secs(3) + Duration::from_millis(20));
        assert_eq!(outcome.unaccepted(4), vec![2]);
        let SubmitOutcome::Incomplete { record_ids, error } = outcome else {
            panic!()
        };
        assert!(record_ids[0].is_some() && record_ids[3].is_some());
        assert!(error.contains("ServiceUnavailableException"));
        let calls = sink.calls();
        assert!(
            calls.len() > 3,
            "retried with backoff: {} calls",
            calls.len()
        );
        // Accepted records were never sent again.
        assert!(calls[1..].iter().all(|c| c.len() == 1));
        assert_eq!(
            unaccepted(&metrics, unaccepted_reason::RETRIES_EXHAUSTED),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let sink = Arc::new(FakeSink {
            calls: StdMutex::new(Vec::new()),
            rule: Box::new(|_, _| None),
            call: |_| Call::Fail("ResourceNotFoundException"),
            gate: None,
        });
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let outcome = producer.submit(recs("a", 2)).await;
        assert_eq!(outcome.unaccepted(2), vec![0, 1]);
        assert_eq!(sink.calls().len(), 1);
        assert_eq!(
            metrics.put_batch_calls.with_label_values(&["error"]).get(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_failed_record_is_retried_or_given_up_by_its_own_error() {
        // In one call, `b` is throttled (first call only) and `a` is refused for good; `a`
        // comes last, so its error must not decide for `b`.
        let sink = FakeSink::new(Box::new(|r, call| {
            if r.starts_with(b"{\"a\"") {
                Some("InvalidArgumentException")
            } else {
                (call == 1).then_some("ServiceUnavailableException")
            }
        }));
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let (b, a) = tokio::join!(producer.submit(recs("b", 1)), producer.submit(recs("a", 1)));
        assert!(matches!(b, SubmitOutcome::Accepted { .. }), "{b:?}");
        let SubmitOutcome::Incomplete { error, .. } = a else {
            panic!("{a:?}")
        };
        assert!(error.starts_with("InvalidArgumentException"), "{error}");
        let calls = sink.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[1],
            recs("b", 1),
            "only the throttled record is sent again"
        );
        assert_eq!(metrics.records_retried.get(), 1);
        assert_eq!(unaccepted(&metrics, unaccepted_reason::PERMANENT), 1);
        assert_eq!(producer.inflight_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_records_are_retried_until_accepted() {
        let flaky = FakeSink::new(Box::new(|_, call| {
            (call < 3).then_some("ServiceUnavailableException")
        }));
        let (producer, _) = spawn(&flaky, ProducerConfig::default());
        assert!(matches!(
            producer.submit(recs("a", 3)).await,
            SubmitOutcome::Accepted { .. }
        ));
        assert_eq!(flaky.calls().len(), 3);
    }

    /// A sink whose first call does `first`, and whose later calls answer.
    fn first_call(first: fn(usize) -> Call) -> Arc<FakeSink> {
        Arc::new(FakeSink {
            calls: StdMutex::new(Vec::new()),
            rule: Box::new(|_, _| None),
            call: first,
            gate: None,
        })
    }

    /// Sends three records through `sink`: accepted by the second call, which resends them all.
    async fn accepted_on_the_second_call(
        sink: &Arc<FakeSink>,
        config: ProducerConfig,
    ) -> ProducerMetrics {
        let (producer, metrics) = spawn(sink, config);
        let outcome = producer.submit(recs("a", 3)).await;
        let SubmitOutcome::Accepted { record_ids } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(record_ids, vec!["c2r0", "c2r1", "c2r2"]);
        assert_eq!(sink.calls(), vec![recs("a", 3), recs("a", 3)]);
        assert_eq!(metrics.records_retried.get(), 3);
        assert_eq!(
            metrics.put_batch_calls.with_label_values(&["error"]).get(),
            1
        );
        assert_eq!(metrics.put_batch_calls.with_label_values(&["ok"]).get(), 1);
        assert_eq!(producer.inflight_bytes(), 0);
        metrics
    }

    #[tokio::test(start_paused = true)]
    async fn retriable_call_errors_are_retried() {
        let sink = first_call(|call| {
            if call == 1 {
                Call::Fail("ServiceUnavailableException")
            } else {
                Call::Answer
            }
        });
        let metrics = accepted_on_the_second_call(&sink, ProducerConfig::default()).await;
        let failed = metrics
            .records_failed
            .with_label_values(&["ServiceUnavailableException"]);
        assert_eq!(failed.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_call_timeout_is_retried() {
        let sink = first_call(|call| if call == 1 { Call::Hang } else { Call::Answer });
        let config = ProducerConfig {
            call_timeout: Duration::from_secs(1),
            ..ProducerConfig::default()
        };
        let started = Instant::now();
        let metrics = accepted_on_the_second_call(&sink, config).await;
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(
            metrics.records_failed.with_label_values(&["Timeout"]).get(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_without_one_entry_per_record_is_a_failed_call() {
        let sink = first_call(|call| if call == 1 { Call::Short } else { Call::Answer });
        let metrics = accepted_on_the_second_call(&sink, ProducerConfig::default()).await;
        assert_eq!(
            metrics
                .records_failed
                .with_label_values(&["Response"])
                .get(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_inflight_cap_sheds_at_once_and_recovers() {
        let (sink, gate) = gated();
        let config = ProducerConfig {
            max_inflight_bytes: 40,
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        let first = tokio::spawn(producer.submit(recs("a", 4))); // 4 × 8 = 32 bytes
        tokio::task::yield_now().await;
        assert_eq!(producer.inflight_bytes(), 32);
        assert_eq!(metrics.inflight_bytes.get(), 32);
        // 32 + 16 > 40: shed without waiting for anything.
        assert_eq!(
            producer.submit(recs("b", 2)).await,
            SubmitOutcome::Overloaded
        );
        gate.add_permits(10);
        assert!(matches!(
            first.await.unwrap(),
            SubmitOutcome::Accepted { .. }
        ));
        assert_eq!(producer.inflight_bytes(), 0);
        assert_eq!(metrics.inflight_bytes.get(), 0);
        assert!(matches!(
            producer.submit(recs("b", 2)).await,
            SubmitOutcome::Accepted { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_flight_are_counted_against_their_limit() {
        let (sink, gate) = gated();
        let config = ProducerConfig {
            max_concurrent_calls: 2,
            max_batch_records: 1,
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        assert_eq!(metrics.calls_limit.get(), 2);
        let outcome = tokio::spawn(producer.submit(recs("a", 3)));
        // Three one-record batches: two calls hold the slots, the third waits for one.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(metrics.calls_in_flight.get(), 2);
        gate.add_permits(10);
        assert!(matches!(
            outcome.await.unwrap(),
            SubmitOutcome::Accepted { .. }
        ));
        assert_eq!(sink.calls().len(), 3);
        assert_eq!(metrics.calls_in_flight.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_submission_counts_in_full_until_its_last_record_is_let_go_of() {
        // The records of a request share one buffer: one record waiting for a retry keeps all
        // of it in memory, so all of it stays counted.
        let sink = FakeSink::new(Box::new(|r, call| {
            (call == 1 && r == b"{\"a\":1}\n").then_some("ServiceUnavailableException")
        }));
        let config = ProducerConfig {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        let outcome = tokio::spawn(producer.submit(recs("a", 3))); // 3 × 8 = 24 bytes
        // The first call is over (record 1 refused), the retry is >= 5 s away.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sink.calls().len(), 1);
        assert!(!outcome.is_finished());
        assert_eq!(
            producer.inflight_bytes(),
            24,
            "two of three answered, all held"
        );
        assert_eq!(metrics.inflight_bytes.get(), 24);
        let SubmitOutcome::Accepted { record_ids } = outcome.await.unwrap() else {
            panic!("not accepted")
        };
        assert_eq!(record_ids, vec!["c1r0", "c2r0", "c1r2"]);
        assert_eq!(producer.inflight_bytes(), 0);
        assert_eq!(metrics.inflight_bytes.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_counts_until_dropped_or_handed_over_to_its_records() {
        let (sink, gate) = gated();
        let config = ProducerConfig {
            max_inflight_bytes: 40,
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        // Alone, a holder gets past the cap; beside another, it does not.
        let mut body = producer.reservation();
        assert!(body.grow(30));
        assert!(body.grow(20));
        assert_eq!(producer.inflight_bytes(), 50);
        let mut other = producer.reservation();
        assert!(!other.grow(1));
        assert_eq!((other.bytes(), producer.inflight_bytes()), (0, 50));
        body.shrink(45);
        assert!(other.grow(10));
        assert!(!body.grow(30), "5 + 10 + 30 > 40 while another holds bytes");
        drop(other);
        assert_eq!(producer.inflight_bytes(), 5);
        assert_eq!(metrics.inflight_bytes.get(), 5);
        // Handed over: grown to the records' 3 × 8 bytes, not shed, let go of once answered.
        let answer = tokio::spawn(producer.submit_reserved(recs("a", 3), None, body));
        tokio::task::yield_now().await;
        assert_eq!(producer.inflight_bytes(), 24);
        assert_eq!(metrics.inflight_bytes.get(), 24);
        gate.add_permits(10);
        assert!(matches!(
            answer.await.unwrap(),
            SubmitOutcome::Accepted { .. }
        ));
        assert_eq!(producer.inflight_bytes(), 0);
        assert_eq!(metrics.inflight_bytes.get(), 0);
        // Nothing to submit: the reservation is simply let go of.
        let mut empty = producer.reservation();
        assert!(empty.grow(7));
        let outcome = producer.submit_reserved(Vec::new(), None, empty).await;
        assert!(matches!(outcome, SubmitOutcome::Accepted { record_ids } if record_ids.is_empty()));
        assert_eq!(producer.inflight_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_larger_than_the_records_is_held_whole_until_they_are_answered() {
        let (sink, gate) = gated();
        let (producer, _) = spawn(&sink, ProducerConfig::default());
        let mut held = producer.reservation();
        assert!(held.grow(100)); // a body and its bookkeeping, more than the records' 24 bytes
        let answer = tokio::spawn(producer.submit_reserved(recs("a", 3), None, held));
        tokio::task::yield_now().await;
        assert_eq!(producer.inflight_bytes(), 100);
        gate.add_permits(1);
        assert!(matches!(
            answer.await.unwrap(),
            SubmitOutcome::Accepted { .. }
        ));
        assert_eq!(producer.inflight_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_records_are_refused_without_a_call() {
        let sink = FakeSink::ok();
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let records = vec![
            Bytes::from(vec![b'x'; MAX_RECORD_BYTES + 1]),
            Bytes::from("{}\n"),
        ];
        let outcome = producer.submit(records).await;
        assert_eq!(outcome.unaccepted(2), vec![0]);
        assert_eq!(sink.calls().iter().map(Vec::len).sum::<usize>(), 1);
        // Every record answered as not accepted is counted, whatever the reason.
        assert_eq!(unaccepted(&metrics, unaccepted_reason::PERMANENT), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_every_handle_drains_then_stops() {
        let sink = FakeSink::ok();
        let (producer, _) = spawn(&sink, ProducerConfig::default());
        let started = Instant::now();
        let pending = producer.submit(recs("a", 3));
        producer.drained().await;
        assert!(matches!(pending.await, SubmitOutcome::Accepted { .. }));
        assert_eq!(sink.calls().len(), 1);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "sent at once, not after the linger"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_every_clone_of_the_handle() {
        let sink = FakeSink::ok();
        let (producer, _) = spawn(&sink, ProducerConfig::default());
        let clone = producer.clone();
        let drained = tokio::spawn(producer.drained());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!drained.is_finished(), "a clone still submits");
        assert!(matches!(
            clone.submit(recs("late", 1)).await,
            SubmitOutcome::Accepted { .. }
        ));
        drop(clone);
        drained.await.unwrap();
        assert_eq!(sink.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_record_submissions_fill_batches_and_each_gets_its_own_id() {
        let sink = FakeSink::ok();
        let (producer, _) = spawn(&sink, ProducerConfig::default());
        let started = Instant::now();
        let submit = |r: usize| producer.submit(recs(&format!("r{r}"), 1));
        let mut first = vec![submit(0)];
        // The producer's task has seen the batch open and waits for its linger.
        tokio::task::yield_now().await;
        first.extend((1..500).map(submit));
        let mut outcomes = join_all(first).await;
        // The submitter that fills a batch closes it: it leaves without waiting for the linger.
        assert_eq!(started.elapsed(), Duration::ZERO);
        let second: Vec<_> = (500..1000).map(submit).collect();
        let last = producer.submit(recs("last", 1));
        outcomes.extend(join_all(second).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
        for (r, outcome) in outcomes.iter().enumerate() {
            let expected = format!("c{}r{}", r / 500 + 1, r % 500);
            assert_eq!(
                outcome,
                &SubmitOutcome::Accepted {
                    record_ids: vec![expected]
                }
            );
        }
        assert_eq!(
            last.await,
            SubmitOutcome::Accepted {
                record_ids: vec!["c3r0".to_owned()]
            }
        );
        assert_eq!(started.elapsed(), ProducerConfig::default().linger);
        let sizes: Vec<usize> = sink.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 1]);
    }

    #[test]
    fn records_queued_when_the_runtime_stops_are_answered_and_later_ones_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let sink = FakeSink::ok();
        let config = ProducerConfig {
            linger: Duration::from_secs(3600),
            ..ProducerConfig::default()
        };
        let (producer, metrics, answer) = runtime.block_on(async {
            let (producer, metrics) = spawn(&sink, config);
            let answer = producer.submit(recs("a", 2));
            // Let the dispatcher see the open batch and wait for its linger.
            tokio::task::yield_now().await;
            (producer, metrics, answer)
        });
        drop(runtime);
        let outcome = answer
            .now_or_never()
            .expect("answered when the producer's task went away");
        let SubmitOutcome::Incomplete { record_ids, error } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(record_ids, vec![None, None]);
        assert_eq!(error, STOPPED);
        assert_eq!(unaccepted(&metrics, unaccepted_reason::STOPPED), 2);
        assert_eq!(producer.inflight_bytes(), 0);
        assert_eq!(
            producer.submit(recs("b", 1)).now_or_never(),
            Some(SubmitOutcome::Closed)
        );
        assert!(sink.calls().is_empty());
    }

    /// A producer with one call slot, taken by the two records of `a` and held there until the
    /// gate gets a permit.
    async fn one_slot_held_by_a() -> (
        Arc<FakeSink>,
        Arc<Semaphore>,
        ProducerHandle,
        ProducerMetrics,
        tokio::task::JoinHandle<SubmitOutcome>,
    ) {
        let (sink, gate) = gated();
        let config = ProducerConfig {
            max_concurrent_calls: 1,
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        let a = tokio::spawn(producer.submit(recs("a", 2)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        (sink, gate, producer, metrics, a)
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_queued_records_are_withdrawn_and_never_sent() {
        let (sink, gate, producer, metrics, a) = one_slot_held_by_a().await;
        let started = Instant::now();
        let b = producer
            .submit_until(recs("b", 3), Some(started + Duration::from_secs(1)))
            .await;
        // Answered at its deadline, not when the slot frees.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1010),
            "{waited:?}"
        );
        let SubmitOutcome::Incomplete { record_ids, error } = b else {
            panic!("{b:?}")
        };
        assert_eq!(record_ids, vec![None, None, None]);
        assert!(error.contains("not sent"), "{error}");
        assert_eq!(unaccepted(&metrics, unaccepted_reason::DEADLINE), 3);
        // b's records are still held in the queue, so they still count against the cap, as do
        // a's (16) and the copies of them a's call holds while it runs (2.4 times 16).
        assert_eq!(
            producer.inflight_bytes(),
            16 + 24 + 16 * CALL_COPY_TENTHS / 10
        );
        gate.add_permits(10);
        assert!(matches!(a.await.unwrap(), SubmitOutcome::Accepted { .. }));
        // b's batch got the slot after a's call: none of it went out.
        producer.drained().await;
        assert_eq!(sink.calls(), vec![recs("a", 2)]);
        assert_eq!(metrics.inflight_bytes.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_deadline_no_record_goes_into_a_call_even_when_nobody_waits_for_it() {
        let (sink, gate, producer, metrics, a) = one_slot_held_by_a().await;
        // The client of `b` goes away: its future is dropped unpolled, so its own timer never
        // withdraws the records. They are queued all the same.
        drop(producer.submit_until(recs("b", 3), Some(Instant::now() + Duration::from_secs(1))));
        assert_eq!(
            producer.inflight_bytes(),
            16 + 24 + 16 * CALL_COPY_TENTHS / 10
        );
        // The slot frees long after b's deadline.
        tokio::time::sleep(Duration::from_secs(5)).await;
        gate.add_permits(10);
        assert!(matches!(a.await.unwrap(), SubmitOutcome::Accepted { .. }));
        producer.drained().await;
        assert_eq!(sink.calls(), vec![recs("a", 2)], "b was never sent");
        assert_eq!(unaccepted(&metrics, unaccepted_reason::DEADLINE), 3);
        assert_eq!(metrics.inflight_bytes.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_inside_a_call_at_the_deadline_gets_that_calls_answer() {
        let (sink, gate) = gated();
        let (producer, _) = spawn(&sink, ProducerConfig::default());
        let deadline = Instant::now() + Duration::from_secs(1);
        let outcome = tokio::spawn(producer.submit_until(recs("a", 2), Some(deadline)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!outcome.is_finished(), "it waits for the call it is in");
        gate.add_permits(1);
        let SubmitOutcome::Accepted { record_ids } = outcome.await.unwrap() else {
            panic!("not accepted")
        };
        assert_eq!(record_ids, vec!["c1r0", "c1r1"]);
        assert_eq!(producer.inflight_bytes(), 0);
    }

    /// A submission already past its deadline is answered at once, every record unaccepted,
    /// without taking a place in a batch or against the cap (helper-77).
    #[tokio::test(start_paused = true)]
    async fn a_submission_past_its_deadline_is_answered_at_once_and_never_queued() {
        let sink = FakeSink::ok();
        let (producer, metrics) = spawn(&sink, ProducerConfig::default());
        let late = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        let outcome = producer.submit_until(recs("a", 3), Some(late)).await;
        let SubmitOutcome::Incomplete { record_ids, error } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(record_ids, vec![None, None, None]);
        assert_eq!(error, NOT_SENT_IN_TIME);
        assert_eq!(producer.inflight_bytes(), 0);
        assert_eq!(unaccepted(&metrics, unaccepted_reason::DEADLINE), 3);
        producer.drained().await;
        assert!(sink.calls().is_empty());
    }

    /// A record inside a call when its deadline passes gets that call's answer; when the call
    /// then fails with a retriable error, the record is not retried (its deadline is gone):
    /// it is answered unaccepted, and no second call is made (helper-77's test gap).
    #[tokio::test(start_paused = true)]
    async fn a_record_whose_call_fails_after_its_deadline_is_unaccepted_and_not_retried() {
        let gate = Arc::new(Semaphore::new(0));
        let sink = Arc::new(FakeSink {
            calls: StdMutex::new(Vec::new()),
            rule: Box::new(|_, _| None),
            call: |n| {
                if n == 1 {
                    Call::Fail("ServiceUnavailableException")
                } else {
                    Call::Answer
                }
            },
            gate: Some(Arc::clone(&gate)),
        });
        let config = ProducerConfig {
            retry_budget: Duration::from_secs(60),
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        let deadline = Instant::now() + Duration::from_secs(1);
        let outcome = tokio::spawn(producer.submit_until(recs("a", 2), Some(deadline)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!outcome.is_finished(), "it waits for the call it is in");
        gate.add_permits(10);
        let SubmitOutcome::Incomplete { record_ids, .. } = outcome.await.unwrap() else {
            panic!("not incomplete")
        };
        assert_eq!(record_ids, vec![None, None]);
        producer.drained().await;
        assert_eq!(sink.calls().len(), 1, "nothing is sent after the deadline");
        assert_eq!(unaccepted(&metrics, unaccepted_reason::DEADLINE), 2);
        assert_eq!(metrics.inflight_bytes.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_waiting_for_a_retry_is_withdrawn_at_the_deadline_and_not_retried() {
        let sink = FakeSink::new(Box::new(|r, _| {
            r.starts_with(b"{\"a\"")
                .then_some("ServiceUnavailableException")
        }));
        let config = ProducerConfig {
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            retry_budget: Duration::from_secs(60),
            ..ProducerConfig::default()
        };
        let (producer, metrics) = spawn(&sink, config);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(1);
        // `b` shares the call; only `a` fails, and only `a` has a deadline.
        let (a, b) = tokio::join!(
            producer.submit_until(recs("a", 1), Some(deadline)),
            producer.submit(recs("b", 1)),
        );
        let waited = started.elapsed();
        let SubmitOutcome::Incomplete { record_ids, error } = a else {
            panic!("{a:?}")
        };
        assert_eq!(record_ids, vec![None]);
        assert!(error.contains("ServiceUnavailableException"), "{error}");
        assert!(matches!(b, SubmitOutcome::Accepted { .. }), "{b:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(sink.calls().len(), 1, "the withdrawn record is not retried");
        assert_eq!(unaccepted(&metrics, unaccepted_reason::DEADLINE), 1);
        assert_eq!(metrics.records_retried.get(), 0);
        assert_eq!(producer.inflight_bytes(), 0);
    }
}
