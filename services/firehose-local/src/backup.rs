//! The S3-style backup: error output and `AllData` source backup, as Firehose lays them out.
//!
//! Objects get Firehose's keys (`firehose_formats::backup`), optional GZIP with a `.gz` name, and
//! error output is NDJSON [`ErrorRecord`] lines. Two stores sit behind [`BackupStore`]: a local
//! directory (the default: keys become relative paths) and an S3 bucket through `aws-sdk-s3`.
//! A failed write is retried with backoff, as Firehose keeps retrying S3. Only a shutdown stops
//! that: once its grace period is over, the backups of the deliveries and transforms it cut off
//! are written while the store keeps taking objects; when the backup has made no progress for
//! [`SHUTDOWN_BACKUP_WINDOW`] (no write landed or started; a started write also gets its size at
//! [`MIN_BACKUP_BYTES_PER_SEC`]), a write that has not landed, even one still waiting for a
//! hanging store, is abandoned and its loss logged with the record count. So a store that fails
//! or hangs holds a graceful stop up for `shutdown_grace_secs` plus that window (and the
//! allowance of the writes started), and one that takes objects at 1 MiB/s or more for as long
//! as the backlog takes to write.

use crate::config::{BackupConfig, BackupTarget, Compression};
use crate::metrics::Metrics;
use base64::Engine as _;
use firehose_formats::backup::{self as layout, ErrorOutputType, ErrorRecord};
use flate2::{Compression as Level, write::GzEncoder};
use futures::future::BoxFuture;
use rand::Rng as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How long, once a shutdown's grace period is over, the backup may go without progress before
/// the writes still waiting are abandoned and their records logged as lost (README, "What a
/// crash loses"). Counted from the end of the grace period, from each write that lands, and from
/// each write that starts, which also gets its size at [`MIN_BACKUP_BYTES_PER_SEC`]: a store that
/// keeps taking objects at that pace drains the whole backlog however long that takes (at
/// 64 MiB per object, 256 MiB held is four objects), and one that hangs or keeps failing holds
/// the stop up by this much (plus the allowance of the writes started) only.
pub const SHUTDOWN_BACKUP_WINDOW: Duration = Duration::from_secs(10);

/// The slowest pace at which a backup store still counts as taking objects during a shutdown:
/// 1 MiB/s (8 Mbit/s), so a 90 MiB object gets 90 s on top of [`SHUTDOWN_BACKUP_WINDOW`]. Only
/// a write's first attempt gets it: retries of a store that keeps failing do not extend the
/// wait.
pub const MIN_BACKUP_BYTES_PER_SEC: u64 = 1024 * 1024;

/// When a shutdown stops waiting for backup writes: shared by every stream's [`Backup`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Cutoff {
    token: CancellationToken,
    /// The backup has made progress: writes still waiting are not abandoned before this.
    wait_until: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl Cutoff {
    /// Abandons the writes that have not landed.
    pub(crate) fn cancel(&self) {
        self.token.cancel();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// `wait`, cut short by the cutoff.
    async fn or_cut_short(&self, wait: impl std::future::Future<Output = ()>) {
        let _ = self.token.run_until_cancelled(wait).await;
    }

    /// Progress: no cutoff before `by` from now.
    fn extend(&self, by: Duration) {
        let until = tokio::time::Instant::now() + by;
        let mut wait_until = self
            .wait_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if wait_until.is_none_or(|t| t < until) {
            *wait_until = Some(until);
        }
    }

    fn wait_until(&self) -> Option<tokio::time::Instant> {
        *self
            .wait_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A write landed: the store is taking objects.
    fn landed(&self) {
        self.extend(SHUTDOWN_BACKUP_WINDOW);
    }

    /// A write of `bytes` starts (compression and its first attempt).
    fn starting(&self, bytes: usize) {
        let allowance = Duration::from_secs_f64(bytes as f64 / MIN_BACKUP_BYTES_PER_SEC as f64);
        self.extend(SHUTDOWN_BACKUP_WINDOW + allowance);
    }

    /// Cancels once the backup has made no progress for [`SHUTDOWN_BACKUP_WINDOW`] (from now,
    /// from each write that lands, from each write that starts plus its allowance), and returns.
    pub(crate) async fn when_quiet(&self) {
        self.extend(SHUTDOWN_BACKUP_WINDOW);
        while let Some(until) = self.wait_until() {
            if tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep_until(until).await;
        }
        self.cancel();
    }
}

/// Why one object write failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The local directory write failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// S3 refused or could not be reached.
    #[error("S3 PutObject s3://{bucket}/{key}: {message}")]
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The SDK's error, with its source chain.
        message: String,
    },
    /// The configured prefix does not evaluate.
    #[error("backup prefix: {0}")]
    Prefix(#[from] layout::PrefixError),
}

/// Somewhere objects can be written.
pub trait BackupStore: Send + Sync + std::fmt::Debug {
    /// Writes one object.
    fn put(&self, key: String, body: bytes::Bytes) -> BoxFuture<'_, Result<(), BackupError>>;
}

/// Objects as files under a directory.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    dir: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `dir` (created on first write).
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl BackupStore for LocalDirStore {
    fn put(&self, key: String, body: bytes::Bytes) -> BoxFuture<'_, Result<(), BackupError>> {
        Box::pin(async move {
            let path = self.dir.join(&key);
            let io = |source| BackupError::Io {
                path: path.clone(),
                source,
            };
            // `Config::validate` refuses prefixes that would make such keys.
            if !crate::config::stays_inside(&key) {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the object key would leave the backup directory",
                )));
            }
            write_durably(self.dir.clone(), path.clone(), body)
                .await
                .map_err(io)
        })
    }
}

/// Writes `body` as the file `path` (under the store's `root`) whole or not at all, and
/// durably, as an S3 `PUT` is once answered: under its [`partial_path`] name (a reader never
/// sees half an object), flushed to disk, renamed, then every directory from the object's up
/// to `root` flushed, and `root`'s own entry, so the names of new directories survive a crash
/// or power loss too. Without the flushes, a file reported written could be empty or missing
/// after a power loss: the records in it, acknowledged long before, lost.
///
/// The whole chain is flushed every time, not only the directories this write created: an
/// earlier attempt that failed, or another writer, may have created them without their
/// entries reaching the disk yet. A failed write removes its `.partial` file (best effort).
/// On the blocking pool, as `tokio::fs` would run each step.
pub(crate) async fn write_durably(
    root: PathBuf,
    path: PathBuf,
    body: bytes::Bytes,
) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let parent = directory_of(&path);
        std::fs::create_dir_all(parent)?;
        let tmp = partial_path(&path);
        let written = std::fs::File::create(&tmp)
            .and_then(|mut file| {
                file.write_all(&body)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let mut dir = parent;
        loop {
            sync_dir(dir)?;
            if dir == root.as_path() {
                return sync_dir(directory_of(&root));
            }
            match dir.parent() {
                Some(up) if dir.starts_with(&root) && !up.as_os_str().is_empty() => dir = up,
                _ => return Ok(()),
            }
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The directory `path` is in (`.` for a bare name).
fn directory_of(path: &std::path::Path) -> &std::path::Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    }
}

/// Flushes a directory's entries to disk.
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The temporary name an object is written under before its rename: the whole file name plus
/// `.partial`. (Not `with_extension`: stream names may contain `.`, and two objects of such a
/// stream would then share one temporary file.)
pub(crate) fn partial_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    std::path::PathBuf::from(name)
}

/// How many of the leftover `.partial` paths [`report_leftover_partials`] names.
const PARTIALS_NAMED: usize = 5;

/// The `.partial` files under `root` (recursively): their count, and the first `limit` paths.
/// A missing `root` (nothing written yet) has none; an unreadable directory is skipped.
fn leftover_partials(root: &std::path::Path, limit: usize) -> (usize, Vec<PathBuf>) {
    let (mut count, mut named) = (0, Vec::new());
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(path),
                Ok(kind) if kind.is_file() && path.extension() == Some("partial".as_ref()) => {
                    count += 1;
                    if named.len() < limit {
                        named.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    named.sort();
    (count, named)
}

/// Logs, as an error, the `.partial` files left in the local directories `dirs` (backup stores
/// and local destinations) by writes a crash interrupted. Their records were acknowledged but
/// never counted as delivered or backed up, and nothing else reads them (the replay tool skips
/// them), so each start says so until someone looks. They are not deleted: one may hold every
/// record of its object.
pub(crate) async fn report_leftover_partials(dirs: Vec<PathBuf>) {
    let found = tokio::task::spawn_blocking(move || {
        dirs.into_iter()
            .map(|dir| {
                let (count, named) = leftover_partials(&dir, PARTIALS_NAMED);
                (dir, count, named)
            })
            .filter(|(_, count, _)| *count > 0)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (dir, count, named) in found {
        tracing::error!(
            dir = %dir.display(),
            count,
            first = ?named,
            "files left by interrupted writes (.partial): their records were acknowledged but \
             never delivered or backed up; check each one (a complete file ends with a newline \
             or is whole GZIP) and rename it without .partial to keep it, or delete it"
        );
    }
}

/// Objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    /// A store for `bucket`, with credentials and region from the AWS chain; `endpoint_url` (for
    /// `moto_server`, `MinIO`) switches to path-style addressing and, when the environment has no
    /// AWS credentials, to a dummy key pair.
    pub async fn connect(
        bucket: String,
        endpoint_url: Option<String>,
        region: Option<String>,
    ) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        // An emulator (moto, MinIO) accepts any signature: without credentials in the
        // environment, sign with a dummy pair rather than fail to find any.
        if endpoint_url.is_some()
            && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
        {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "firehose-local",
                "firehose-local",
                None,
                None,
                "firehose-local-dummy",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            builder = builder.region(aws_config::Region::new(crate::config::DEFAULT_REGION));
        }
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket,
        }
    }
}

impl BackupStore for S3Store {
    fn put(&self, key: String, body: bytes::Bytes) -> BoxFuture<'_, Result<(), BackupError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| BackupError::S3 {
                    bucket: self.bucket.clone(),
                    key,
                    message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                })
        })
    }
}

/// Builds the store a [`BackupConfig`] names.
pub(crate) async fn store_for(config: &BackupConfig) -> Arc<dyn BackupStore> {
    match &config.target {
        BackupTarget::LocalDir { dir } => Arc::new(LocalDirStore::new(dir.clone())),
        BackupTarget::S3 {
            bucket,
            endpoint_url,
            region,
        } => Arc::new(S3Store::connect(bucket.clone(), endpoint_url.clone(), region.clone()).await),
    }
}

/// Writes one stream's backup objects.
#[derive(Debug, Clone)]
pub(crate) struct Backup {
    pub(crate) store: Arc<dyn BackupStore>,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) config: BackupConfig,
    pub(crate) metrics: Metrics,
    /// Cancelled once the backup has made no progress for [`SHUTDOWN_BACKUP_WINDOW`] after a
    /// shutdown's grace period ([`Cutoff::when_quiet`]): abandon writes.
    pub(crate) cutoff: Cutoff,
}

fn random_string() -> String {
    let mut rng = rand::rng();
    (0..layout::RANDOM_STRING_LEN)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

/// `ms` since the Unix epoch as a UTC time (the epoch itself if out of range).
pub(crate) fn datetime_from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Level::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

impl Backup {
    /// Writes failed records as one NDJSON error-output object.
    pub(crate) async fn write_errors(&self, kind: ErrorOutputType, records: &[ErrorRecord]) {
        if records.is_empty() {
            return;
        }
        let oldest = records
            .iter()
            .map(|r| r.arrival_timestamp)
            .min()
            .unwrap_or_else(now_ms);
        let body: String = records.iter().map(ErrorRecord::to_ndjson_line).collect();
        let prefix = self
            .config
            .error_output_prefix
            .clone()
            .unwrap_or_else(|| self.config.prefix.clone());
        if self
            .write(
                &prefix,
                Some(kind),
                oldest,
                body.into_bytes(),
                records.len(),
            )
            .await
        {
            self.metrics
                .error_output_records
                .with_label_values(&[self.stream.as_str(), kind.as_str()])
                .inc_by(records.len() as u64);
        }
    }

    /// Writes source records (`AllData`): raw bytes concatenated, no delimiter, as Firehose writes S3.
    pub(crate) async fn write_source(&self, records: &[crate::buffer::Record]) {
        if records.is_empty() {
            return;
        }
        let oldest = records
            .iter()
            .map(|r| r.arrival_ms)
            .min()
            .unwrap_or_else(now_ms);
        let body: Vec<u8> = records
            .iter()
            .flat_map(|r| r.data.iter().copied())
            .collect();
        self.write(
            &self.config.prefix.clone(),
            None,
            oldest,
            body,
            records.len(),
        )
        .await;
    }

    /// Writes one object, retrying until it lands or the shutdown cutoff. Returns whether it landed.
    async fn write(
        &self,
        prefix: &str,
        kind: Option<ErrorOutputType>,
        oldest_ms: i64,
        body: Vec<u8>,
        count: usize,
    ) -> bool {
        let stream = self.stream.as_str();
        let key = match layout::evaluate_prefix(
            prefix,
            kind,
            datetime_from_ms(oldest_ms),
            &mut random_string,
        ) {
            Ok(p) => {
                let ext = match self.config.compression {
                    Compression::Gzip => layout::GZIP_EXTENSION,
                    Compression::None => "",
                };
                // The name's time is the oldest record's arrival too, like the prefix's: in the
                // real processing-failed object of facts §2.2 (UKHO), the name says 11-48-32,
                // the record's arrivalTimestamp is 11:48:32.364, and Firehose stopped trying at
                // 11:50:07 (attemptEndingTimestamp), so the write came later still.
                format!(
                    "{p}{}",
                    layout::object_name(
                        stream,
                        self.version,
                        datetime_from_ms(oldest_ms),
                        &uuid::Uuid::new_v4().to_string(),
                        ext
                    )
                )
            }
            Err(e) => {
                // `Config::validate` evaluates every configured prefix at start, so only a config
                // that skipped validation gets here.
                tracing::error!(stream, error = %e, records = count, "backup prefix does not evaluate; records LOST");
                return false;
            }
        };
        let abandoned = |stage: &str| {
            tracing::error!(
                stream,
                key,
                records = count,
                "backup write abandoned {stage}: the backup had made no progress for shutdown's backup window; records LOST"
            );
        };
        if self.cutoff.is_cancelled() {
            abandoned("before it started");
            return false;
        }
        self.cutoff.starting(body.len());
        // Shared: each retry of the write hands the store the same bytes without copying them.
        // Compressed on the blocking pool: 64 MiB take seconds, which on the runtime would stall
        // the other streams' tasks (and, at shutdown, the other backup writes).
        let body = bytes::Bytes::from(match self.config.compression {
            Compression::Gzip => {
                let compressing = tokio::task::spawn_blocking(move || gzip(&body));
                tokio::select! {
                    biased;
                    () = self.cutoff.cancelled() => {
                        abandoned("while it was compressed");
                        return false;
                    }
                    done = compressing => done
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                }
            }
            Compression::None => body,
        });
        let len = body.len() as u64;
        let mut delay = Duration::from_millis(500);
        loop {
            self.metrics
                .backup_attempts
                .with_label_values(&[stream])
                .inc();
            // Past the cutoff a write in progress is abandoned: a hanging store must not hold
            // shutdown up for as long as it hangs.
            // Checked first, so that no put starts after the cutoff (a local write would still
            // land, on the blocking pool, while its records are logged as lost).
            let put = tokio::select! {
                biased;
                () = self.cutoff.cancelled() => {
                    abandoned("while the store had not answered");
                    return false;
                }
                r = self.store.put(key.clone(), body.clone()) => r,
            };
            match put {
                Ok(()) => {
                    self.cutoff.landed();
                    self.metrics
                        .backup_success
                        .with_label_values(&[stream])
                        .inc();
                    self.metrics
                        .backup_records
                        .with_label_values(&[stream])
                        .inc_by(count as u64);
                    self.metrics
                        .backup_bytes
                        .with_label_values(&[stream])
                        .inc_by(len);
                    #[allow(clippy::cast_precision_loss)]
                    let age = (now_ms() - oldest_ms).max(0) as f64 / 1000.0;
                    self.metrics
                        .backup_data_freshness
                        .with_label_values(&[stream])
                        .set(age);
                    tracing::info!(stream, key, records = count, "backup object written");
                    return true;
                }
                Err(e) if self.cutoff.is_cancelled() => {
                    tracing::error!(stream, key, error = %e, records = count, "backup write failed during shutdown; records LOST");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(stream, key, error = %e, retry_in_ms = delay.as_millis(), "backup write failed; retrying");
                    // Cut short by the cutoff, after which the next attempt ends the loop.
                    self.cutoff.or_cut_short(tokio::time::sleep(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Base64 of bytes, as `rawData` carries them.
pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read as _;
    use std::path::Path;

    fn backup(dir: &std::path::Path, compression: Compression) -> Backup {
        Backup {
            store: Arc::new(LocalDirStore::new(dir.to_owned())),
            stream: "events".into(),
            version: 1,
            config: BackupConfig {
                compression,
                ..BackupConfig::default()
            },
            metrics: Metrics::new().unwrap(),
            cutoff: Cutoff::default(),
        }
    }

    /// Every file under `dir`, at any depth.
    pub(crate) fn files(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    out.push(p)
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn durable_writes_create_directories_and_leave_no_partial_file() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("store");
        let path = store.join("a/b/c/object");
        let write = |path: &Path, body: &'static [u8]| {
            write_durably(
                store.clone(),
                path.to_owned(),
                bytes::Bytes::from_static(body),
            )
        };
        write(&path, b"first").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // Over an existing object.
        write(&path, b"second").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(files(root.path()), vec![path.clone()]);
        // A failed write says so and leaves nothing behind: a file where a directory must be,
        // or a directory (not empty) where the object goes, which the rename cannot replace.
        assert!(write(&path.join("inside"), b"x").await.is_err());
        let taken = store.join("a/taken");
        std::fs::create_dir_all(taken.join("full")).unwrap();
        assert!(write(&taken, b"x").await.is_err());
        assert_eq!(files(root.path()), vec![path]);
        assert_eq!(directory_of(Path::new("bare")), Path::new("."));
        assert_eq!(directory_of(Path::new("a/bare")), Path::new("a"));
    }

    #[tokio::test]
    async fn the_local_store_writes_no_key_outside_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("backup");
        let store = LocalDirStore::new(dir.clone());
        for key in ["../outside", "/abs", "a/../../outside", "./a"] {
            let err = store
                .put(key.to_owned(), bytes::Bytes::from_static(b"x"))
                .await;
            assert!(err.is_err(), "{key}");
        }
        assert!(!root.path().join("outside").exists());
        store
            .put("a/b..c/d".to_owned(), bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.join("a/b..c/d")).unwrap(), b"x");
    }

    #[tokio::test]
    async fn error_output_lands_under_the_error_type_as_ndjson() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(dir.path(), Compression::None);
        let rec = ErrorRecord {
            attempts_made: 1,
            arrival_timestamp: 1_741_088_912_364,
            error_code: "X".into(),
            raw_data: b64(b"hi"),
            ..ErrorRecord::default()
        };
        b.write_errors(
            ErrorOutputType::ProcessingFailed,
            &[rec.clone(), rec.clone()],
        )
        .await;
        let f = files(dir.path());
        assert_eq!(f.len(), 1);
        let rel = f[0]
            .strip_prefix(dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            rel.starts_with("processing-failed/2025/03/04/11/events-1-"),
            "{rel}"
        );
        let text = std::fs::read_to_string(&f[0]).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(
            ErrorRecord::parse_tolerant(text.lines().next().unwrap().as_bytes()).unwrap(),
            rec
        );
    }

    /// A store whose writes never finish; `started` yields once per write.
    #[derive(Debug)]
    struct HangingStore(tokio::sync::mpsc::UnboundedSender<()>);

    impl BackupStore for HangingStore {
        fn put(&self, _key: String, _body: bytes::Bytes) -> BoxFuture<'_, Result<(), BackupError>> {
            let _ = self.0.send(());
            Box::pin(std::future::pending())
        }
    }

    /// A write to a store that hangs used to wait as long as the store did, however long after
    /// the shutdown grace period, and shutdown with it. Past the cutoff it is abandoned (the loss
    /// logged), and a write that starts after it does not wait either.
    #[tokio::test(start_paused = true)]
    async fn a_write_to_a_hanging_store_is_abandoned_at_the_shutdown_cutoff() {
        let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let cutoff = Cutoff::default();
        let b = Backup {
            store: Arc::new(HangingStore(tx)),
            cutoff: cutoff.clone(),
            ..backup(std::path::Path::new("/nonexistent"), Compression::None)
        };
        let rec = ErrorRecord {
            arrival_timestamp: 1_741_088_912_364,
            raw_data: b64(b"hi"),
            ..ErrorRecord::default()
        };
        let write = {
            let (b, rec) = (b.clone(), rec.clone());
            tokio::spawn(async move {
                b.write_errors(ErrorOutputType::HttpEndpointFailed, &[rec])
                    .await;
            })
        };
        started.recv().await.expect("the write reached the store");
        cutoff.cancel();
        tokio::time::timeout(Duration::from_secs(3600), write)
            .await
            .expect("the write is abandoned at the cutoff, not left waiting for the store")
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(3600),
            b.write_errors(ErrorOutputType::HttpEndpointFailed, &[rec]),
        )
        .await
        .expect("a write after the cutoff returns at once");
        assert_eq!(
            b.metrics
                .backup_success
                .with_label_values(&["events"])
                .get(),
            0
        );
        assert_eq!(
            b.metrics
                .error_output_records
                .with_label_values(&["events", "http-endpoint-failed"])
                .get(),
            0,
            "abandoned records are not counted as written"
        );
    }

    /// A store that takes each object after `delay` (a healthy store, slow for large objects).
    #[derive(Debug)]
    struct SlowStore {
        delay: Duration,
        taken: std::sync::Mutex<Vec<String>>,
    }

    impl BackupStore for SlowStore {
        fn put(&self, key: String, _body: bytes::Bytes) -> BoxFuture<'_, Result<(), BackupError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                self.taken.lock().unwrap().push(key);
                Ok(())
            })
        }
    }

    /// A backup to `store`, its grace period over now: the backup, the start, and the task that
    /// returns when the cutoff comes.
    fn shutting_down(
        store: Arc<dyn BackupStore>,
    ) -> (
        Backup,
        tokio::time::Instant,
        tokio::task::JoinHandle<tokio::time::Instant>,
    ) {
        let b = Backup {
            store,
            ..backup(std::path::Path::new("/nonexistent"), Compression::None)
        };
        let cutoff = b.cutoff.clone();
        let cut = tokio::spawn(async move {
            cutoff.when_quiet().await;
            tokio::time::Instant::now()
        });
        (b, tokio::time::Instant::now(), cut)
    }

    /// [`shutting_down`] with a [`SlowStore`] taking `delay` per object, and that store.
    fn shutting_down_with(
        delay: Duration,
    ) -> (
        Backup,
        Arc<SlowStore>,
        tokio::time::Instant,
        tokio::task::JoinHandle<tokio::time::Instant>,
    ) {
        let store = Arc::new(SlowStore {
            delay,
            taken: std::sync::Mutex::default(),
        });
        let (b, start, cut) = shutting_down(store.clone());
        (b, store, start, cut)
    }

    /// helper-88: at shutdown, a backlog of several large objects to a healthy store took longer
    /// than the fixed 10 s window, and the objects not written by then were abandoned as lost.
    /// Now the window runs from each write that lands: five writes of 4 s each (20 s) all land,
    /// and the cutoff comes one window after the last.
    #[tokio::test(start_paused = true)]
    async fn a_backlog_that_keeps_landing_is_written_whole_however_long_it_takes() {
        let (b, store, start, cut) = shutting_down_with(Duration::from_secs(4));
        let rec = ErrorRecord {
            raw_data: b64(b"hi"),
            ..ErrorRecord::default()
        };
        for _ in 0..5 {
            b.write_errors(
                ErrorOutputType::HttpEndpointFailed,
                std::slice::from_ref(&rec),
            )
            .await;
        }
        assert_eq!(store.taken.lock().unwrap().len(), 5, "every object landed");
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert!(!b.cutoff.is_cancelled());
        let cut_at = cut.await.unwrap();
        assert_eq!(
            cut_at - start,
            Duration::from_secs(20) + SHUTDOWN_BACKUP_WINDOW
        );
        assert!(b.cutoff.is_cancelled());
        assert_eq!(
            b.metrics
                .error_output_records
                .with_label_values(&["events", "http-endpoint-failed"])
                .get(),
            5
        );
    }

    /// helper-90: a single large object to a slow but working store (a thin link to S3) took
    /// longer than the window by itself. A write gets its size at `MIN_BACKUP_BYTES_PER_SEC` on
    /// top: 30 MiB get 30 s more, so an upload of 25 s lands; a store that hangs is cut off
    /// once that allowance is spent too.
    #[tokio::test(start_paused = true)]
    async fn a_large_write_gets_time_for_its_size_and_no_more() {
        let body = vec![b'x'; 30 * 1024 * 1024];
        let allowance = Duration::from_secs(30);
        for (delay, lands) in [
            (Duration::from_secs(25), true),
            (Duration::from_secs(3600), false),
        ] {
            let (b, store, start, cut) = shutting_down_with(delay);
            let landed = b
                .write(&b.config.prefix.clone(), None, 0, body.clone(), 1)
                .await;
            assert_eq!(landed, lands, "{delay:?}");
            assert_eq!(store.taken.lock().unwrap().len(), usize::from(lands));
            let cut_at = cut.await.unwrap() - start;
            // The allowance given at the start stands even once the write has landed (here it
            // is later than one window after the landing).
            assert_eq!(cut_at, SHUTDOWN_BACKUP_WINDOW + allowance);
            if lands {
                assert!(delay + SHUTDOWN_BACKUP_WINDOW < cut_at);
            }
        }
    }

    /// A store that keeps failing: its retries do not extend the wait, so the cutoff comes one
    /// window (plus the write's allowance) after the write started.
    #[tokio::test(start_paused = true)]
    async fn retries_of_a_failing_store_do_not_hold_the_stop_up() {
        #[derive(Debug)]
        struct Failing;
        impl BackupStore for Failing {
            fn put(&self, key: String, _: bytes::Bytes) -> BoxFuture<'_, Result<(), BackupError>> {
                Box::pin(async move {
                    Err(BackupError::S3 {
                        bucket: "b".into(),
                        key,
                        message: "SlowDown".into(),
                    })
                })
            }
        }
        let (b, start, cut) = shutting_down(Arc::new(Failing));
        let landed = b
            .write(&b.config.prefix.clone(), None, 0, b"x".to_vec(), 1)
            .await;
        assert!(!landed);
        // 1 byte: an allowance of about a microsecond (the paused clock steps by 1 ms).
        let took = cut.await.unwrap() - start;
        assert!(
            took >= SHUTDOWN_BACKUP_WINDOW
                && took < SHUTDOWN_BACKUP_WINDOW + Duration::from_millis(10),
            "{took:?}"
        );
        assert!(
            b.metrics
                .backup_attempts
                .with_label_values(&["events"])
                .get()
                > 3
        );
    }

    /// With nothing landing (a store that hangs or fails), the cutoff comes one window after the
    /// call; a landing from before the call does not extend it.
    #[tokio::test(start_paused = true)]
    async fn with_nothing_landing_the_cutoff_comes_one_window_after_the_grace_period() {
        let cutoff = Cutoff::default();
        cutoff.landed(); // during the grace period
        let start = tokio::time::Instant::now();
        cutoff.when_quiet().await;
        assert_eq!(start.elapsed(), SHUTDOWN_BACKUP_WINDOW);
        assert!(cutoff.is_cancelled());
    }

    #[tokio::test]
    async fn gzip_objects_get_gz_and_decompress_to_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(dir.path(), Compression::Gzip);
        let recs = vec![crate::buffer::Record::new(
            "1",
            0,
            bytes::Bytes::from_static(b"{\"a\":1}\n"),
        )];
        b.write_source(&recs).await;
        let f = files(dir.path());
        assert!(f[0].to_string_lossy().ends_with(".gz"));
        assert!(
            f[0].strip_prefix(dir.path())
                .unwrap()
                .starts_with("1970/01/01/00")
        );
        let mut out = String::new();
        GzDecoder::new(std::fs::File::open(&f[0]).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "{\"a\":1}\n");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod leftover_partials_tests {
    use super::leftover_partials;

    #[test]
    fn finds_partial_files_at_any_depth_and_names_the_first_few() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("processing-failed/2026/11/28/03");
        std::fs::create_dir_all(&deep).unwrap();
        for name in ["a.partial", "b.partial", "c.partial", "whole-object"] {
            std::fs::write(deep.join(name), b"{}\n").unwrap();
        }
        std::fs::write(dir.path().join("top.partial"), b"").unwrap();
        // A directory named like one is not a file left by a write.
        std::fs::create_dir(dir.path().join("dir.partial")).unwrap();

        let (count, named) = leftover_partials(dir.path(), 2);
        assert_eq!(count, 4);
        assert_eq!(named.len(), 2);
        assert!(named.iter().all(|p| p.extension().unwrap() == "partial"));

        assert_eq!(
            leftover_partials(&dir.path().join("missing"), 2),
            (0, vec![])
        );
    }
}

#[cfg(test)]
mod partial_path_tests {
    use super::partial_path;
    use std::path::Path;

    #[test]
    fn keeps_the_whole_object_name() {
        let a = partial_path(Path::new("/b/2026/my.stream-1-2026-11-25-10-00-00-aaaa"));
        let b = partial_path(Path::new("/b/2026/my.stream-1-2026-11-25-10-00-00-bbbb"));
        assert_eq!(
            a,
            Path::new("/b/2026/my.stream-1-2026-11-25-10-00-00-aaaa.partial")
        );
        assert_ne!(a, b);
    }
}
