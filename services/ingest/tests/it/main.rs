//! Integration tests of `ingest`, one binary (one link step) for all of them:
//! * `routes`: every status and bad input through the real router, with a fake sink;
//!   every answer is checked against `openapi.json`.
//! * `openapi`: the document and the router agree on paths and statuses.
//! * `sdk`: partial failure and throttling through the real `aws_sdk_firehose::Client`
//!   (`aws-smithy-mocks`).
//! * `embedded`: the built binary with no stream: the embedded local Firehose end to end.
//! * `binary`: the built `ingest` binary against `moto_server` (end to end, S3 byte for byte)
//!   and against a fake Firehose under load with SIGTERM (nothing acknowledged is lost).
//! * `otlp`: the built binary exporting traces to an OTLP/HTTP collector run by the test.
//! * `key_rotation`: the built binary picking up a rewritten API-key file while it runs.
//! * `access_log`: the built binary's access-log lines: the request's ids, never the key.

#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub)]

mod access_log;
mod binary;
mod embedded;
mod key_rotation;
mod openapi;
mod otlp;
mod routes;
mod sdk;
mod support;

#[path = "../support/fake_firehose.rs"]
mod fake_firehose;
