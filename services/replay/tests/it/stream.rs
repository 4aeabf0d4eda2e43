//! `--to-stream` through the front door's real producer, over a fake `RecordSink` that behaves
//! like Firehose under throttling and outages (moto always answers `FailedPutCount: 0`, so the
//! partial-failure paths need a fake; it only stands in for the AWS call).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ingest::producer::ProducerConfig;
use ingest::sink::{BatchOutcome, RecordOutcome, RecordSink, SinkError};
use replay::checkpoint::{Checkpoint, CheckpointError};
use replay::http::{HttpTarget, HttpTargetConfig};
use replay::layout::ObjectKind;
use replay::progress::Progress;
use replay::replay::{Options, Run, Selection, replay};
use replay::source::Source;
use replay::stream::{StreamLocation, StreamTarget};
use replay::summary::{ProblemKind, Summary};
use replay::target::Target;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Behaviour, FrontDoor, GOOD_IDS, assert_each_good_record_once, fixture_dir, write_object,
};

type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, SinkError>> + Send + 'a>>;

/// A Firehose stand-in: records what it accepts.
#[derive(Debug, Default)]
struct FakeFirehose {
    accepted: Mutex<Vec<Bytes>>,
    /// Refuse every other record of each call with "Slow down." (throttling).
    throttle_odd: AtomicBool,
    /// Refuse every record (an outage).
    down: AtomicBool,
    /// The whole call fails with a permanent error.
    access_denied: AtomicBool,
    /// Calls from this one (0-based) on fail with a permanent error.
    deny_from_call: Mutex<Option<usize>>,
    /// How long each call takes to answer (a slow stream).
    call_time: Mutex<Duration>,
    calls: AtomicUsize,
}

impl RecordSink for FakeFirehose {
    fn put_batch<'a>(&'a self, _stream: &'a str, records: Vec<Bytes>) -> Answer<'a, BatchOutcome> {
        Box::pin(async move {
            let call_time = *self.call_time.lock().expect("lock");
            tokio::time::sleep(call_time).await;
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let denied = self
                .deny_from_call
                .lock()
                .expect("lock")
                .is_some_and(|from| call >= from);
            if denied || self.access_denied.load(Ordering::SeqCst) {
                return Err(SinkError::new("AccessDeniedException", "not allowed"));
            }
            let mut accepted = self.accepted.lock().expect("lock");
            let outcomes = records
                .into_iter()
                .enumerate()
                .map(|(i, data)| {
                    let throttled = self.throttle_odd.load(Ordering::SeqCst)
                        && call.is_multiple_of(2)
                        && i % 2 == 1;
                    if self.down.load(Ordering::SeqCst) || throttled {
                        RecordOutcome::Failed {
                            error_code: "ServiceUnavailableException".into(),
                            message: "Slow down.".into(),
                        }
                    } else {
                        accepted.push(data);
                        RecordOutcome::Accepted {
                            record_id: format!("r{}", accepted.len()),
                        }
                    }
                })
                .collect();
            Ok(BatchOutcome { records: outcomes })
        })
    }

    fn check<'a>(&'a self, stream: &'a str) -> Answer<'a, ()> {
        Box::pin(async move {
            if stream == "unanswered" {
                // A connection that stops answering: the SDK sets no read timeout.
                std::future::pending::<()>().await;
            }
            if stream == "missing" {
                Err(SinkError::new(
                    "ResourceNotFoundException",
                    "no such stream",
                ))
            } else {
                Ok(())
            }
        })
    }
}

impl FakeFirehose {
    fn ids(&self) -> Vec<String> {
        self.accepted
            .lock()
            .expect("lock")
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(r).expect("JSON record")["id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            })
            .collect()
    }
}

/// Where the fake stream is said to be.
fn location() -> StreamLocation {
    StreamLocation {
        region: "us-east-1".to_owned(),
        endpoint: None,
    }
}

fn quick_producer() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(1),
        retry_budget: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_concurrent_calls: 1,
        ..ProducerConfig::default()
    }
}

async fn run_into(fake: &Arc<FakeFirehose>, checkpoint_path: &std::path::Path) -> Summary {
    let source = Source::Dir(fixture_dir());
    let sink: Arc<dyn RecordSink> = Arc::clone(fake) as Arc<dyn RecordSink>;
    let target = StreamTarget::start(sink, "events", location(), quick_producer())
        .await
        .expect("the stream is active");
    let mut checkpoint =
        Checkpoint::open(checkpoint_path, "fixtures", "stream:events").expect("checkpoint");
    let mut preview = Vec::new();
    replay(
        Run {
            source: &source,
            target: &target,
            checkpoint: &mut checkpoint,
            progress: &Progress::hidden(),
            preview: &mut preview,
            cancel: &CancellationToken::new(),
        },
        // Every kind of object in the fixtures, as `support::EVERY_KIND` selects on the command
        // line: their AllData object holds other records than their error objects.
        &Options {
            selection: Selection {
                error_types: vec![
                    ObjectKind::Raw,
                    ObjectKind::ProcessingFailed,
                    ObjectKind::HttpEndpointFailed,
                ],
                ..Selection::default()
            },
            ..Options::default()
        },
    )
    .await
    .expect("the replay runs")
}

#[tokio::test]
async fn throttled_records_are_resent_by_the_producer_and_arrive_once() {
    let fake = Arc::new(FakeFirehose::default());
    fake.throttle_odd.store(true, Ordering::SeqCst);
    let tmp = tempfile::tempdir().expect("tempdir");
    let summary = run_into(&fake, &tmp.path().join("cp.json")).await;
    assert!(summary.complete(), "{summary}");
    assert_each_good_record_once(&fake.ids());
    assert!(
        fake.calls.load(Ordering::SeqCst) > 4,
        "partial failures were retried"
    );
    // AllData records keep their newline; error records are rawData exactly, but that a JSON
    // event the transform left without its newline gets it back (records stay one per line
    // in the stream's S3 objects).
    let accepted = fake.accepted.lock().expect("lock").clone();
    let by_id: BTreeMap<String, Bytes> = fake.ids().into_iter().zip(accepted).collect();
    assert!(by_id["ad-1"].ends_with(b"}\n"));
    assert!(
        by_id["he-1"].ends_with(b"\"_record_id\":\"rec-he-1\"}\n"),
        "transformed data as it was, and its newline"
    );
    assert_eq!(
        by_id["he-1"].iter().filter(|b| **b == b'\n').count(),
        1,
        "one line"
    );
}

#[tokio::test]
async fn a_stream_outage_stops_the_replay_and_the_rerun_delivers_the_rest_once() {
    let fake = Arc::new(FakeFirehose::default());
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    fake.down.store(true, Ordering::SeqCst);
    let first = run_into(&fake, &cp).await;
    assert!(
        first.stop_reason().is_some_and(|s| s.contains("Slow down")),
        "{first}"
    );
    assert_eq!(first.sent, 0);
    assert!(first.unsent > 0);

    fake.down.store(false, Ordering::SeqCst);
    let second = run_into(&fake, &cp).await;
    assert!(second.complete(), "{second}");
    assert_eq!(second.sent, GOOD_IDS.len());
    assert_each_good_record_once(&fake.ids());
}

#[tokio::test]
async fn a_permanent_error_stops_at_once_and_a_missing_stream_before_anything_is_read() {
    let fake = Arc::new(FakeFirehose::default());
    fake.access_denied.store(true, Ordering::SeqCst);
    let tmp = tempfile::tempdir().expect("tempdir");
    let summary = run_into(&fake, &tmp.path().join("cp.json")).await;
    let stopped = summary.stop_reason().unwrap_or_default();
    assert!(stopped.contains("AccessDeniedException"), "{summary}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "not retried");

    let sink: Arc<dyn RecordSink> = fake;
    let err = StreamTarget::start(sink, "missing", location(), quick_producer())
        .await
        .expect_err("a missing stream is refused");
    assert!(err.to_string().contains("check --to-stream"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_check_without_an_answer_ends_at_the_call_timeout() {
    let sink: Arc<dyn RecordSink> = Arc::new(FakeFirehose::default());
    let config = ProducerConfig {
        call_timeout: Duration::from_secs(10),
        ..quick_producer()
    };
    let err = tokio::time::timeout(
        Duration::from_secs(3600),
        StreamTarget::start(sink, "unanswered", location(), config),
    )
    .await
    .expect("the start gives up, it does not hang")
    .expect_err("an unanswered check is refused");
    assert!(err.to_string().contains("no answer within 10s"), "{err}");
}

#[tokio::test]
async fn records_accepted_before_a_permanent_error_are_not_sent_again() {
    // The first call of the first batch (the AllData object) gets ad-1 and ad-3 in and ad-2
    // throttled; the producer's retry of ad-2 is denied for good. The batch ends in a target
    // error, but ad-1 and ad-3 were delivered: the checkpoint must say so.
    let fake = Arc::new(FakeFirehose::default());
    fake.throttle_odd.store(true, Ordering::SeqCst);
    *fake.deny_from_call.lock().expect("lock") = Some(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let first = run_into(&fake, &cp).await;
    let stopped = first.stop_reason().unwrap_or_default();
    assert!(stopped.contains("AccessDeniedException"), "{first}");
    assert_eq!(fake.ids(), ["ad-1", "ad-3"]);
    assert_eq!(first.sent, 2, "{first}");

    fake.throttle_odd.store(false, Ordering::SeqCst);
    *fake.deny_from_call.lock().expect("lock") = None;
    let second = run_into(&fake, &cp).await;
    assert!(second.complete(), "{second}");
    assert_each_good_record_once(&fake.ids());
}

/// Runs a replay of `source` into `target` with the checkpoint `checkpoint`.
async fn replay_with<T: Target>(
    source: &Source,
    target: &T,
    checkpoint: &mut Checkpoint,
    selection: Selection,
) -> Summary {
    let options = Options {
        selection,
        ..Options::default()
    };
    replay(
        Run {
            source,
            target,
            checkpoint,
            progress: &Progress::hidden(),
            preview: &mut Vec::new(),
            cancel: &CancellationToken::new(),
        },
        &options,
    )
    .await
    .expect("the replay runs")
}

#[tokio::test]
async fn a_record_the_front_door_cannot_take_reaches_the_stream_with_its_own_checkpoint() {
    use base64::Engine as _;
    // One processing-failed object: two JSON events around a binary record (compressed data),
    // which a front door cannot take.
    let binary: &[u8] = &[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe];
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = "processing-failed/2026/11/25/09/events-1-2026-11-25-09-10-00-0b1a2c3d";
    let body = format!(
        "{{\"rawData\":\"{}\"}}\n{{\"rawData\":\"{}\"}}\n{{\"rawData\":\"{}\"}}\n",
        b64(br#"{"id":"x-1"}"#),
        b64(binary),
        b64(br#"{"id":"x-3"}"#)
    );
    write_object(&tmp.path().join("src"), key, body);
    let source = Source::Dir(tmp.path().join("src"));
    let cp = tmp.path().join("cp.json");

    // --to-http: the binary record is refused and reported with key and line; the object is
    // finished for this target.
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let http = HttpTarget::new(HttpTargetConfig::new(url.parse().expect("url"))).expect("target");
    let mut checkpoint = Checkpoint::open(&cp, "src", &http.describe()).expect("checkpoint");
    let to_http = replay_with(&source, &http, &mut checkpoint, Selection::default()).await;
    assert_eq!(door.ids(), ["x-1", "x-3"]);
    assert_eq!(to_http.rejected, 1, "{to_http}");
    let refused = to_http
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Rejected)
        .expect("the refused record is reported");
    assert_eq!((refused.key.as_str(), refused.line), (key, Some(2)));
    assert!(to_http.to_string().contains(&format!("rejected: {key}:2:")));
    drop(checkpoint); // the --to-http run ends, and with it its lock

    // --to-stream with the same checkpoint: refused at start, not "already done".
    let fake = Arc::new(FakeFirehose::default());
    let sink: Arc<dyn RecordSink> = Arc::clone(&fake) as Arc<dyn RecordSink>;
    let stream = StreamTarget::start(sink, "events", location(), quick_producer())
        .await
        .expect("the stream is active");
    match Checkpoint::open(&cp, "src", &stream.describe()) {
        Err(CheckpointError::OtherTarget { .. }) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a checkpoint of the --to-http replay was opened for --to-stream"),
    }

    // As the README says: another checkpoint file and --key for the reported object.
    let mut own = Checkpoint::open(
        &tmp.path().join("cp-stream.json"),
        "src",
        &stream.describe(),
    )
    .expect("a new checkpoint");
    let selection = Selection {
        keys: vec![refused.key.clone()],
        ..Selection::default()
    };
    let to_stream = replay_with(&source, &stream, &mut own, selection).await;
    assert!(to_stream.complete(), "{to_stream}");
    let accepted = fake.accepted.lock().expect("lock").clone();
    assert!(
        accepted.iter().any(|r| r == binary),
        "the binary record reached the stream: {accepted:?}"
    );
    // The object's other records go again too (duplicates the README warns about).
    assert_eq!(accepted.len(), 3);
}

/// A target that delivers through `inner` and, on its first batch, puts a directory where the
/// checkpoint writes its temporary file, so the checkpoint cannot be saved after that batch.
struct BreaksTheCheckpoint<T> {
    inner: T,
    obstacle: std::path::PathBuf,
}

impl<T: Target> Target for BreaksTheCheckpoint<T> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }

    fn prepare(&self, record: &replay::read::Record) -> Result<Vec<Bytes>, String> {
        self.inner.prepare(record)
    }

    async fn send(
        &self,
        items: Vec<Bytes>,
    ) -> Result<Vec<replay::target::ItemResult>, replay::target::SendError> {
        let _ = std::fs::create_dir(&self.obstacle);
        self.inner.send(items).await
    }
}

/// A checkpoint that cannot be written after a batch stops the run, and the summary still says
/// what the run did and why it stopped (helper-56, L6: the run used to end with the error
/// alone), as a stop that needs a fix (exit status 3).
#[tokio::test]
async fn a_checkpoint_that_cannot_be_saved_stops_the_run_with_its_summary() {
    let (door, url) = FrontDoor::start(Behaviour::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let cp = tmp.path().join("cp.json");
    let target = BreaksTheCheckpoint {
        inner: HttpTarget::new(HttpTargetConfig::new(url.parse().expect("url"))).expect("target"),
        obstacle: tmp
            .path()
            .join(format!("cp.json.tmp-{}", std::process::id())),
    };
    let mut checkpoint = Checkpoint::open(&cp, "src", &target.describe()).expect("checkpoint");
    // The checkpoint is written whole after each batch, so the obstacle makes that write fail.
    // (A journal append fails the same way, as the unit tests show, but an open file cannot be
    // made to fail from outside.)
    checkpoint.compact_after_every_change();
    let source = Source::Dir(fixture_dir());
    let summary = replay_with(
        &source,
        &target,
        &mut checkpoint,
        Selection {
            error_types: vec![
                ObjectKind::Raw,
                ObjectKind::ProcessingFailed,
                ObjectKind::HttpEndpointFailed,
            ],
            ..Selection::default()
        },
    )
    .await;
    let stopped = summary.stop_reason().expect("the run stopped");
    assert!(stopped.contains("cp.json"), "{stopped}");
    assert!(stopped.contains("may send them again"), "{stopped}");
    assert!(summary.needs_fix(), "{summary}");
    assert!(
        summary.to_string().contains("fix that, then run"),
        "{summary}"
    );
    // The first batch was delivered, and the summary counts it.
    assert!(summary.sent > 0, "{summary}");
    assert_eq!(summary.sent, door.ids().len(), "{summary}");
}

/// A target on `fake` that sends 2 records per call with a 300 ms retry budget, and a batch
/// of 10 records for it: five calls' worth.
async fn two_per_call(fake: &Arc<FakeFirehose>) -> (StreamTarget, Duration, Vec<Bytes>) {
    let sink: Arc<dyn RecordSink> = Arc::clone(fake) as Arc<dyn RecordSink>;
    let budget = Duration::from_millis(300);
    let config = ProducerConfig {
        max_batch_records: 2,
        retry_budget: budget,
        ..quick_producer()
    };
    let target = StreamTarget::start(sink, "events", location(), config)
        .await
        .expect("the stream is active");
    let items = (0..10)
        .map(|i| Bytes::from(format!("{{\"id\":\"e{i}\"}}\n")))
        .collect();
    (target, budget, items)
}

/// A replay batch that needs several `PutRecordBatch` calls (over 4 MiB, or here over 2 records
/// a call) on a stream that refuses them is answered after about one budget, not one per call:
/// its first call runs out of budget, and the rest is not tried (helper-69).
#[tokio::test(start_paused = true)]
async fn a_batch_of_several_calls_to_a_refusing_stream_takes_one_budget() {
    let fake = Arc::new(FakeFirehose::default());
    fake.down.store(true, Ordering::SeqCst);
    let (target, budget, items) = two_per_call(&fake).await;
    let started = tokio::time::Instant::now();
    let results = target.send(items).await.expect("no permanent error");
    let took = started.elapsed();
    assert_eq!(results.len(), 10);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, replay::target::ItemResult::Unaccepted(_))),
        "{results:?}"
    );
    // Five calls' worth of records; one budget (and a call's worth of slack), not five.
    assert!(
        took < budget * 2,
        "the batch took {took:?} for a {budget:?} budget"
    );
    assert!(fake.calls.load(Ordering::SeqCst) >= 1);
}

/// A stream that is slow but takes every record: a batch of several calls gets them all in,
/// though together they take longer than the budget: the budget is per call, not per batch
/// (helper-70).
#[tokio::test(start_paused = true)]
async fn a_slow_stream_gets_a_batch_of_several_calls_in_whole() {
    let fake = Arc::new(FakeFirehose::default());
    *fake.call_time.lock().expect("lock") = Duration::from_millis(200);
    let (target, budget, items) = two_per_call(&fake).await;
    let started = tokio::time::Instant::now();
    let results = target.send(items).await.expect("no permanent error");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, replay::target::ItemResult::Accepted)),
        "{results:?}"
    );
    assert!(started.elapsed() > budget, "five calls of 200 ms");
    assert_eq!(fake.accepted.lock().expect("lock").len(), 10);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 5);
}

/// A stop (Ctrl-C, SIGTERM) while a batch of several calls is on its way: the call in flight
/// finishes and its records are reported delivered, the next calls are not made, and their
/// records are left to the next run: a stopped run waits for one call, not one per call.
#[tokio::test(start_paused = true)]
async fn a_stop_ends_a_batch_of_several_calls_after_the_call_in_flight() {
    let fake = Arc::new(FakeFirehose::default());
    *fake.call_time.lock().expect("lock") = Duration::from_millis(200);
    let (target, _, items) = two_per_call(&fake).await;
    let cancel = CancellationToken::new();
    let target = target.with_cancel(cancel.clone());
    let stop = async {
        // During the first call.
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    };
    let (results, ()) = tokio::join!(target.send(items), stop);
    let results = results.expect("no permanent error");
    assert_eq!(results.len(), 10);
    assert!(
        results[..2]
            .iter()
            .all(|r| matches!(r, replay::target::ItemResult::Accepted)),
        "{results:?}"
    );
    assert!(
        results[2..].iter().all(
            |r| matches!(r, replay::target::ItemResult::Unaccepted(why) if why.contains("stopped"))
        ),
        "{results:?}"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fake.ids(), ["e0", "e1"]);
}
