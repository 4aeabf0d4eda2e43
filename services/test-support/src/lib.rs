//! What the workspace's integration tests share, so each crate's `tests/` does not start the
//! same third-party server its own way. A dev-dependency only: nothing here is shipped.
//!
//! * [`moto`]: the real Firehose and S3 APIs (`moto_server`) for the `aws-sdk` wiring tests.

pub mod moto;
