//! Integration tests of `replay`: one test binary (`it`), one module per area.
//!
//! - `local`: the library end to end from a local directory into a recording front door.
//! - `pipeline`: end to end through firehose-local: endpoint down, backup, replay, delivered.
//! - `binary`: the real `replay` binary: exit status, summary, interrupt and resume.
//! - `checkpoint_target`: the binary refuses a checkpoint of a same-named stream in another
//!   region or behind another endpoint, and a dry run without a target names the file's one.
//! - `s3`: objects in moto_server's S3, into the front door and into a moto Firehose stream.
//! - `stream`: `--to-stream` through the real producer over a throttling fake Firehose.
//! - `transform_again`: replayed transformed data through the real transform rules.

mod binary;
mod checkpoint_target;
mod local;
mod pipeline;
mod s3;
mod stream;
mod support;
mod transform_again;
