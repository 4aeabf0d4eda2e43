//! A fast local Firehose stand-in for the load benchmark (`scripts/bench-ingest.sh`):
//! answers `PutRecordBatch` instantly, counts calls and records (`GET /stats`).
//!
//!     cargo run --release -p ingest --example fake-firehose -- 127.0.0.1:4599
//!
//! `FAKE_FIREHOSE_DELAY_MS` holds each answer back that long (a slow Firehose).

#[path = "../tests/support/fake_firehose.rs"]
mod fake_firehose;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4599".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // FAKE_FIREHOSE_DELAY_MS: hold each answer back, as a slow Firehose would (memory tests).
    let delay = std::env::var("FAKE_FIREHOSE_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis);
    let fake = fake_firehose::FakeFirehose::slow(delay);
    eprintln!("fake-firehose on {}", listener.local_addr()?);
    axum::serve(listener, fake.router()).await
}
