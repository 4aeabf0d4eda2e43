//! Where backup objects are read from: an S3 location or a local directory.
//!
//! Both list objects as (key, size) in key order, which is time order for Firehose's
//! `YYYY/MM/dd/HH/` layout, and fetch one object's bytes. A local directory is what
//! `firehose-local` writes (its bucket directory, keys as relative paths), or a copy made with
//! `aws s3 sync`. S3 uses the standard credential chain and honours `AWS_ENDPOINT_URL`
//! (or `--endpoint-url`); path-style addressing is available for S3-compatible servers.
//!
//! An object is read into memory whole, so no more than [`MAX_DECODED_OBJECT_BYTES`] of it is
//! read ([`read_at_most`]): the same cap [`crate::read`] puts on a decompressed object, applied
//! to what is fetched (an uncompressed object is used as fetched).

use std::fmt;
use std::path::{Path, PathBuf};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use bytes::Bytes;

use crate::read::{CappedReadError, MAX_DECODED_OBJECT_BYTES, read_at_most};

/// One object to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the bucket (S3) or path relative to the directory, `/`-separated.
    pub key: String,
    /// Size in bytes as stored (compressed if compressed).
    pub size: u64,
}

/// Why listing or fetching failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A local file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An S3 call failed.
    #[error("S3 {operation} on s3://{bucket}/{key} failed: {message}")]
    S3 {
        /// `ListObjectsV2`, `HeadObject` or `GetObject`.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// AWS's error, with its code.
        message: String,
        /// AWS's error code, when S3 answered with one (`AccessDenied`, `InvalidObjectState`).
        code: Option<String>,
    },
    /// The source's prefix does not end in `/` and matches both a folder of that name and
    /// keys beside it (`firehose` matching `firehose/…` and `firehose-staging/…`): replaying
    /// them all would send another stream's backups.
    #[error(
        "s3://{bucket}/{prefix} matches the folder {prefix}/ and also keys beside it, e.g. {sibling}: \
         write s3://{bucket}/{prefix}/ for the folder (or the longer prefix you mean). Nothing was sent"
    )]
    AmbiguousPrefix {
        /// The bucket.
        bucket: String,
        /// The prefix, as given.
        prefix: String,
        /// A key that is not in the folder.
        sibling: String,
    },
    /// The object is larger than the cap ([`MAX_DECODED_OBJECT_BYTES`]); it was not read whole.
    #[error("{key} is larger than {cap} bytes; refusing to read it")]
    TooLarge {
        /// The key.
        key: String,
        /// The cap.
        cap: u64,
    },
}

/// S3 error codes that fetching the same object again cannot get past: a permission (a
/// bucket policy, or the KMS key of an SSE-KMS bucket the role may not decrypt with), an
/// account with all access disabled, an object archived by a lifecycle rule (Glacier: restore
/// it first). A re-run meets them again, so they need a fix (exit status 3), not a re-run.
const S3_CODES_NEEDING_A_FIX: &[&str] =
    &["AccessDenied", "AllAccessDisabled", "InvalidObjectState"];

impl SourceError {
    /// Whether fetching the object again, as it is, cannot succeed: it is over the size cap, or
    /// S3 refused it for a reason a re-run meets again ([`S3_CODES_NEEDING_A_FIX`]).
    #[must_use]
    pub fn is_for_good(&self) -> bool {
        match self {
            Self::TooLarge { .. } => true,
            Self::S3 {
                code: Some(code), ..
            } => S3_CODES_NEEDING_A_FIX.contains(&code.as_str()),
            Self::S3 { code: None, .. } | Self::Io { .. } | Self::AmbiguousPrefix { .. } => false,
        }
    }

    /// A task of the source's (a directory walk, an S3 lookup) that did not finish: only when
    /// the runtime shuts down.
    fn task(error: tokio::task::JoinError) -> Self {
        Self::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(error),
        }
    }

    /// A [`read_at_most`] of `key` that failed: over the cap, or `io` says how reading failed.
    fn capped(key: &str, error: CappedReadError, io: impl FnOnce(std::io::Error) -> Self) -> Self {
        match error {
            CappedReadError::TooLarge { cap } => Self::TooLarge {
                key: key.to_owned(),
                cap,
            },
            CappedReadError::Io(e) => io(e),
        }
    }
}

/// Where the source is, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix (may be empty).
        prefix: String,
    },
    /// A local directory.
    Dir(PathBuf),
}

impl Location {
    /// Parses `s3://bucket/prefix/` or a directory path.
    ///
    /// # Errors
    /// An `s3://` URL without a bucket.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("`{text}` has no bucket: write s3://BUCKET/PREFIX/"));
                }
                Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                })
            }
            None => Ok(Self::Dir(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Dir(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A source of backup objects.
#[derive(Debug, Clone)]
pub enum Source {
    /// An S3 bucket and prefix.
    S3 {
        /// The client (endpoint, region, credentials already resolved).
        client: aws_sdk_s3::Client,
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// A local directory.
    Dir(PathBuf),
}

impl Source {
    /// Every object under the source, sorted by key.
    ///
    /// The listing is complete when this returns (every `ListObjectsV2` page, the whole
    /// directory tree), before any object is fetched: the replay decides on the whole
    /// selection before sending anything ([`crate::replay::Selection::check_kinds`]). Keep it
    /// so; a listing paged lazily while sending would let that rule see only part of it.
    ///
    /// # Errors
    /// Listing failed.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, SourceError> {
        let mut objects = match self {
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let objects = list_s3(client, bucket, prefix).await?;
                check_prefix(bucket, prefix, &objects)?;
                objects
            }
            Self::Dir(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || list_dir(&root))
                    .await
                    .map_err(SourceError::task)??
            }
        };
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// The objects a replay reads: every object under the source ([`Source::list`]) when `keys`
    /// is empty, else only those of `keys` that exist there, sorted by key.
    ///
    /// For S3 the named keys are looked up with one `HeadObject` each ([`HEAD_CONCURRENCY`] at
    /// a time) instead of listing the prefix: replaying one object out of a year of backups
    /// must not page through millions of keys first. Keys are whole S3 keys (`crate::run` adds
    /// the source's prefix to a `--key` given below it). A key outside the prefix, or one naming a
    /// "folder" placeholder (ending in `/`), is not found, as the listing would not have found
    /// it. A local directory is listed as usual (its rules for hidden, partial and linked files
    /// stay in one place), which costs no request.
    ///
    /// # Errors
    /// Listing failed, or a lookup failed for another reason than the key not being there.
    pub async fn objects(&self, keys: &[String]) -> Result<Vec<ObjectInfo>, SourceError> {
        let Self::S3 {
            client,
            bucket,
            prefix,
        } = self
        else {
            return self.list().await;
        };
        if keys.is_empty() {
            return self.list().await;
        }
        let mut wanted: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(prefix.as_str()) && !k.ends_with('/'))
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut found = Vec::with_capacity(wanted.len());
        let mut lookups = tokio::task::JoinSet::new();
        let mut next = wanted.into_iter();
        loop {
            while lookups.len() < HEAD_CONCURRENCY {
                let Some(key) = next.next() else { break };
                let (client, bucket, key) = (client.clone(), bucket.clone(), key.clone());
                lookups.spawn(async move { head_s3(&client, &bucket, key).await });
            }
            let Some(done) = lookups.join_next().await else {
                break;
            };
            found.extend(done.map_err(SourceError::task)??);
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// The bytes of one object.
    ///
    /// # Errors
    /// The object cannot be fetched, or is larger than [`MAX_DECODED_OBJECT_BYTES`].
    pub async fn get(&self, key: &str) -> Result<Bytes, SourceError> {
        self.get_at_most(key, MAX_DECODED_OBJECT_BYTES).await
    }

    /// [`Source::get`] with the cap as a parameter, so tests need no 1 GiB object.
    async fn get_at_most(&self, key: &str, cap: u64) -> Result<Bytes, SourceError> {
        let too_large = || SourceError::TooLarge {
            key: key.to_owned(),
            cap,
        };
        let body = match self {
            Self::S3 { client, bucket, .. } => {
                let err = |message: String, code: Option<String>| SourceError::S3 {
                    operation: "GetObject",
                    bucket: bucket.clone(),
                    key: key.to_owned(),
                    message,
                    code,
                };
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| err(sdk_message(&e), sdk_code(&e)))?;
                let announced = out.content_length().and_then(|len| u64::try_from(len).ok());
                if announced.is_some_and(|len| len > cap) {
                    return Err(too_large());
                }
                // `Content-Length` is the server's word; the cap holds without it.
                read_at_most(out.body.into_async_read(), cap, announced)
                    .await
                    .map_err(|e| {
                        SourceError::capped(key, e, |e| err(format!("reading the body: {e}"), None))
                    })?
            }
            Self::Dir(root) => {
                let path = root.join(key);
                let io = |source| SourceError::Io {
                    path: path.clone(),
                    source,
                };
                let file = tokio::fs::File::open(&path).await.map_err(io)?;
                let len = file.metadata().await.map_err(io)?.len();
                if len > cap {
                    return Err(too_large());
                }
                // The file may grow while it is read: the cap holds anyway.
                read_at_most(file, cap, Some(len))
                    .await
                    .map_err(|e| SourceError::capped(key, e, io))?
            }
        };
        Ok(Bytes::from(body))
    }
}

/// S3's error code, when S3 answered.
fn sdk_code<E>(err: &aws_sdk_s3::error::SdkError<E>) -> Option<String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    err.as_service_error()?.code().map(str::to_owned)
}

fn sdk_message<E>(err: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("Unhandled"),
            service.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(err).to_string(),
    }
}

async fn list_s3(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectInfo>, SourceError> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut objects = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| SourceError::S3 {
            operation: "ListObjectsV2",
            bucket: bucket.to_owned(),
            key: prefix.to_owned(),
            message: sdk_message(&e),
            code: sdk_code(&e),
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            // "Folder" placeholder objects made by consoles hold nothing.
            if key.ends_with('/') {
                continue;
            }
            objects.push(ObjectInfo {
                key: key.to_owned(),
                size: object
                    .size()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            });
        }
    }
    Ok(objects)
}

/// Refuses a prefix without a final `/` that names a folder and also matches keys beside
/// it ([`SourceError::AmbiguousPrefix`]). One that matches no folder is taken as it is:
/// Firehose joins its prefix and the `YYYY/MM/dd/HH/` part as they are, so a stream with the
/// prefix `logs` writes `logs2026/11/25/09/…`.
fn check_prefix(bucket: &str, prefix: &str, objects: &[ObjectInfo]) -> Result<(), SourceError> {
    if prefix.is_empty() || prefix.ends_with('/') {
        return Ok(());
    }
    let in_folder = |key: &str| key.as_bytes().get(prefix.len()) == Some(&b'/');
    if !objects.iter().any(|o| in_folder(&o.key)) {
        return Ok(());
    }
    match objects.iter().find(|o| !in_folder(&o.key)) {
        Some(sibling) => Err(SourceError::AmbiguousPrefix {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            sibling: sibling.key.clone(),
        }),
        None => Ok(()),
    }
}

/// How many `HeadObject` lookups [`Source::objects`] has in flight.
pub const HEAD_CONCURRENCY: usize = 16;

/// The object at `key`, or `None` when S3 says there is none (404).
async fn head_s3(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: String,
) -> Result<Option<ObjectInfo>, SourceError> {
    match client.head_object().bucket(bucket).key(&key).send().await {
        Ok(head) => Ok(Some(ObjectInfo {
            size: head
                .content_length()
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
            key,
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(aws_sdk_s3::operation::head_object::HeadObjectError::is_not_found) =>
        {
            Ok(None)
        }
        Err(e) => Err(SourceError::S3 {
            operation: "HeadObject",
            bucket: bucket.to_owned(),
            message: sdk_message(&e),
            code: sdk_code(&e),
            key,
        }),
    }
}

/// Walks `root` recursively. Hidden files (names starting with `.`), `*.partial` files and
/// `*.tmp-<pid>` files are skipped: they are writers' temporary files (firehose-local writes an
/// object as `.partial` and renames it when complete; replay writes its checkpoint as
/// `<checkpoint>.tmp-<pid>`, left behind by a crash), not backup objects.
fn list_dir(root: &Path) -> Result<Vec<ObjectInfo>, SourceError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SourceError::Io { path, source }
    };
    let mut objects = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.ends_with(".partial") || is_tmp_file(&name) {
                continue;
            }
            let mut meta = entry.metadata().map_err(io(&path))?;
            if meta.file_type().is_symlink() {
                // A link to a file is read as that file (an object copied in as a link is an
                // object); a link to a directory is not followed (it could lead back up the
                // tree), and says so, rather than be left out without a word (helper-56, L7).
                match std::fs::metadata(&path) {
                    Ok(target) if target.is_file() => meta = target,
                    Ok(target) if target.is_dir() => {
                        tracing::warn!(path = %path.display(), "not following a symbolic link to a directory; pass the directory itself as the source");
                        continue;
                    }
                    _ => {
                        tracing::warn!(path = %path.display(), "skipping a symbolic link that leads to no file");
                        continue;
                    }
                }
            }
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                objects.push(ObjectInfo {
                    key,
                    size: meta.len(),
                });
            }
        }
    }
    Ok(objects)
}

/// `<name>.tmp-<digits>`: a checkpoint being written.
fn is_tmp_file(name: &str) -> bool {
    name.rsplit_once(".tmp-").is_some_and(|(stem, pid)| {
        !stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys_and_sizes(objects: &[ObjectInfo]) -> Vec<(&str, u64)> {
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect()
    }

    #[test]
    fn a_prefix_naming_a_folder_and_keys_beside_it_is_refused() {
        let listed = |keys: &[&str]| -> Vec<ObjectInfo> {
            keys.iter()
                .map(|k| ObjectInfo {
                    key: (*k).to_owned(),
                    size: 1,
                })
                .collect()
        };
        let both = listed(&[
            "firehose-staging/2026/11/25/09/a",
            "firehose/2026/11/25/09/b",
        ]);
        let err = check_prefix("b", "firehose", &both).unwrap_err();
        assert!(
            matches!(&err, SourceError::AmbiguousPrefix { sibling, .. } if sibling == "firehose-staging/2026/11/25/09/a"),
            "{err}"
        );
        assert!(err.to_string().contains("s3://b/firehose/"), "{err}");
        // With the `/`, or with no folder of that name (Firehose's own joined prefix), or only
        // the folder: taken.
        assert!(check_prefix("b", "firehose/", &both).is_ok());
        assert!(check_prefix("b", "logs", &listed(&["logs2026/11/25/09/a", "logs-x/a"])).is_ok());
        assert!(check_prefix("b", "firehose", &listed(&["firehose/a", "firehose/b"])).is_ok());
        assert!(check_prefix("b", "", &both).is_ok());
    }

    /// Which fetch failures a re-run cannot get past (exit 3) and which it may (exit 2).
    /// Named keys are looked up one `HeadObject` each, never by listing the prefix (the mocked
    /// client has no `ListObjectsV2` rule, so a listing would fail the call): a missing key and
    /// keys outside the prefix or naming a folder are left out, sizes come from the lookup.
    #[tokio::test]
    async fn named_keys_are_looked_up_not_listed() {
        use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let found = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| {
                r.key()
                    .is_some_and(|k| k.ends_with("/a") || k.ends_with("/b"))
            })
            .then_compute_output(|r| {
                HeadObjectOutput::builder()
                    .content_length(if r.key() == Some("backup/x/a") { 3 } else { 5 })
                    .build()
            });
        let missing = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| r.key() == Some("backup/x/gone"))
            .then_error(|| {
                HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build())
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&found, &missing]);
        let source = Source::S3 {
            client,
            bucket: "b".into(),
            prefix: "backup/".into(),
        };
        let keys = [
            "backup/x/b",
            "backup/x/gone",
            "backup/x/a",
            "other/x/a",
            "backup/x/",
            "backup/x/a",
        ]
        .map(str::to_owned);
        let objects = source.objects(&keys).await.unwrap();
        assert_eq!(
            keys_and_sizes(&objects),
            [("backup/x/a", 3), ("backup/x/b", 5)]
        );
        assert_eq!(
            found.num_calls(),
            2,
            "one lookup per distinct key in the prefix"
        );
        assert_eq!(missing.num_calls(), 1);
    }

    /// A lookup S3 refuses (not a 404) fails the selection rather than passing for a missing
    /// key: "no such key" would send the operator looking for a typo.
    #[tokio::test]
    async fn a_refused_lookup_is_an_error_not_a_missing_key() {
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        let forbidden = mock!(aws_sdk_s3::Client::head_object).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(403).unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            )
        });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&forbidden]);
        let source = Source::S3 {
            client,
            bucket: "b".into(),
            prefix: String::new(),
        };
        let err = source.objects(&["k".to_owned()]).await.unwrap_err();
        assert!(
            matches!(&err, SourceError::S3 { operation: "HeadObject", key, .. } if key == "k"),
            "{err}"
        );
    }

    #[test]
    fn permissions_and_archived_objects_are_for_good_the_rest_passing() {
        let s3 = |code: Option<&str>| SourceError::S3 {
            operation: "GetObject",
            bucket: "b".into(),
            key: "k".into(),
            message: "m".into(),
            code: code.map(str::to_owned),
        };
        for code in ["AccessDenied", "AllAccessDisabled", "InvalidObjectState"] {
            assert!(s3(Some(code)).is_for_good(), "{code}");
        }
        for code in [
            Some("SlowDown"),
            Some("InternalError"),
            Some("NoSuchKey"),
            None,
        ] {
            assert!(!s3(code).is_for_good(), "{code:?}");
        }
        assert!(
            SourceError::TooLarge {
                key: "k".into(),
                cap: 1
            }
            .is_for_good()
        );
        let io = SourceError::Io {
            path: PathBuf::from("x"),
            source: std::io::Error::other("disk"),
        };
        assert!(!io.is_for_good());
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("s3://b/p/q/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "p/q/".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert!(
            Location::parse("s3:///x")
                .unwrap_err()
                .contains("no bucket")
        );
        assert_eq!(
            Location::parse("./dir").unwrap(),
            Location::Dir("./dir".into())
        );
    }

    #[tokio::test]
    async fn a_directory_lists_as_sorted_slash_keys_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("processing-failed/2026/11/25/09");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("b"), "12").unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join(".cp.json.tmp-1"), "x").unwrap();
        // A crash while writing a checkpoint kept in the source directory leaves this.
        std::fs::write(dir.path().join("cp.json.tmp-4242"), "{}").unwrap();
        std::fs::write(deep.join("c.partial"), "half an object").unwrap();
        // Not a temporary file: the suffix is not a process id.
        std::fs::write(dir.path().join("b.tmp-x"), "123").unwrap();
        let source = Source::Dir(dir.path().to_owned());
        let objects = source.list().await.unwrap();
        assert_eq!(
            keys_and_sizes(&objects),
            [
                ("a", 1),
                ("b.tmp-x", 3),
                ("processing-failed/2026/11/25/09/b", 2)
            ]
        );
        assert_eq!(source.get("a").await.unwrap(), "1");
        assert!(matches!(
            source.get("nope").await,
            Err(SourceError::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_to_a_file_is_an_object_and_a_link_to_a_directory_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("real"), "123").unwrap();
        std::fs::create_dir(elsewhere.path().join("sub")).unwrap();
        std::fs::write(elsewhere.path().join("sub/inside"), "1").unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("real"), src.join("linked")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("sub"), src.join("linked-dir")).unwrap();
        std::os::unix::fs::symlink(src.join("gone"), src.join("dangling")).unwrap();
        // A loop: followed, it would list for ever.
        std::os::unix::fs::symlink(&src, src.join("loop")).unwrap();
        let source = Source::Dir(src);
        let objects = source.list().await.unwrap();
        assert_eq!(keys_and_sizes(&objects), [("linked", 3)]);
        assert_eq!(source.get("linked").await.unwrap(), "123");
    }

    #[tokio::test]
    async fn an_object_over_the_cap_is_refused_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), "12345").unwrap();
        let source = Source::Dir(dir.path().to_owned());
        assert_eq!(source.get_at_most("big", 5).await.unwrap(), "12345");
        let err = source.get_at_most("big", 4).await.unwrap_err();
        assert!(matches!(err, SourceError::TooLarge { .. }), "{err}");

        // An S3 body is read as it comes and given up on past the cap.
        let body = || aws_sdk_s3::primitives::ByteStream::from(b"12345".to_vec()).into_async_read();
        assert_eq!(read_at_most(body(), 5, Some(5)).await.unwrap(), b"12345");
        assert!(matches!(
            read_at_most(body(), 4, None).await,
            Err(CappedReadError::TooLarge { cap: 4 })
        ));
    }

    #[tokio::test]
    async fn a_stored_object_over_one_gib_is_refused() {
        // A sparse file: 1 GiB + 1 byte that takes no disk space. Reading it whole would.
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("huge")).unwrap();
        file.set_len(MAX_DECODED_OBJECT_BYTES + 1).unwrap();
        let source = Source::Dir(dir.path().to_owned());
        match source.get("huge").await {
            Err(SourceError::TooLarge { .. }) => {}
            Err(e) => panic!("refused for another reason: {e}"),
            // Not the bytes: their debug output would be gigabytes.
            Ok(body) => panic!("read whole: {} bytes in memory", body.len()),
        }
    }
}
