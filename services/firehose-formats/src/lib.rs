//! Firehose's vocabulary, written once for every crate in the workspace.
//!
//! The front door (`ingest`), the transform Lambda (`transform`), the local Firehose
//! (`firehose-local`) and the replay tool all speak the same wire formats and obey the same
//! service limits. Keeping them here, with a link to the page that states each one, means a
//! limit changes in one place and nobody re-derives a number from memory. This crate does no
//! I/O: it is types, constants and pure functions only.
//!
//! - [`limits`]: API and Lambda limits.
//! - [`http_endpoint`]: the HTTP-endpoint delivery request, response and headers.
//! - [`backup`]: S3 backup keys, prefix expressions and error-output records.
//! - [`transform`]: the Lambda transformation event and the response contract.
//! - [`json_scan`]: a fast JSON validity scanner for records and events (the one piece of
//!   JSON grammar both the front door and the transform need).

pub mod backup;
pub mod http_endpoint;
pub mod json_scan;
pub mod limits;
pub mod transform;
