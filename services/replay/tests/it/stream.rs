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
use replay::checkpoint::Checkpoint;
use replay::progress::Progress;
use replay::replay::{Options, Run, replay};
use replay::source::Source;
use replay::stream::StreamTarget;
use replay::summary::Summary;
use tokio_util::sync::CancellationToken;

use crate::support::{GOOD_IDS, assert_each_good_record_once, fixture_dir};

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
    calls: AtomicUsize,
}

impl RecordSink for FakeFirehose {
    fn put_batch<'a>(&'a self, _stream: &'a str, records: Vec<Bytes>) -> Answer<'a, BatchOutcome> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.access_denied.load(Ordering::SeqCst) {
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
    let target = StreamTarget::start(sink, "events", quick_producer())
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
        &Options::default(),
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
    // AllData records keep their newline; error records are rawData exactly.
    let accepted = fake.accepted.lock().expect("lock").clone();
    let by_id: BTreeMap<String, Bytes> = fake.ids().into_iter().zip(accepted).collect();
    assert!(by_id["ad-1"].ends_with(b"}\n"));
    assert!(
        by_id["he-1"].ends_with(b"\"_record_id\":\"rec-he-1\"}"),
        "transformed data as it was"
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
        first
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("Slow down")),
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
    let stopped = summary.stopped.clone().unwrap_or_default();
    assert!(stopped.contains("AccessDeniedException"), "{summary}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "not retried");

    let sink: Arc<dyn RecordSink> = fake;
    let err = StreamTarget::start(sink, "missing", quick_producer())
        .await
        .expect_err("a missing stream is refused");
    assert!(err.to_string().contains("check --to-stream"), "{err}");
}
