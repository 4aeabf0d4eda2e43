//! The errors that end a replay before or outside the replay loop, each worded as what to fix.
//!
//! Problems inside the loop (an unreadable line, a refused record, a target that stays down) are
//! not errors: they are counted and reported in the [`crate::summary::Summary`].

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::replay::ReplayError;
use crate::target::TargetError;

/// Why `replay` could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The command line does not make sense.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No AWS region could be found for an S3 source or a stream target.
    #[error("no AWS region: set AWS_REGION or pass --region")]
    NoRegion,
    /// The target cannot be used (stream missing or inactive, bad key).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The checkpoint file cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The replay could not go on (listing failed, checkpoint not writable).
    #[error(transparent)]
    Replay(#[from] ReplayError),
}
