//! The benchmark's baseline: an axum handler that reads the body and answers 200, nothing else.
//! `scripts/bench-ingest.sh` loads it and `ingest` alike and prints the ratio.
//!
//!     cargo run --release -p ingest --example minimal -- 127.0.0.1:8081

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = Router::new()
        .route(
            "/v1/events",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(10 * 1024 * 1024));
    eprintln!("minimal on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
