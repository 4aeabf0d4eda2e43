//! API keys: loading, rotation without restart, constant-time checking.
//!
//! Keys live in a file (a mounted Kubernetes Secret, typically), one per line: the key itself or
//! `sha256:<hex>` of it (prefix in any case, or `sha-256:`), so the file need not hold usable
//! secrets, optionally followed by the key's own rate limit, `rps=<requests per second>` (0:
//! never limited) and `burst=<requests>`, in place of `INGEST_RATE_LIMIT_RPS`/`_BURST` (API
//! Gateway's usage plans give keys rates of their own). In memory only SHA-256 digests are kept, by [`KeyId`]: the first 4 bytes of the
//! digest, which no two keys of a set share (the file is refused otherwise). A presented key is
//! hashed, its id finds the one digest it can match, and the two are compared with
//! [`subtle::ConstantTimeEq`] (a key whose id is not in the set is compared with a fixed digest,
//! so a miss does the same work). Timing can thus tell at most whether 32 bits of the SHA-256 of
//! a key an attacker chose match some id, which does not help to find a key; it says nothing
//! about how many bytes of a digest matched. Comparing against every digest, as an earlier
//! version did, cost ~50 ns per key on every request: 50 µs at 1,000 keys, ten times the
//! handler's own work. Keys are never logged: a request is identified by its [`KeyId`], the
//! first 8 hex digits of the digest.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ratelimit::{KeyLimit, RateLimit};

/// A non-secret name for a key: the first 8 hex digits of its SHA-256, with the key's own rate
/// limit from the key file. Used for rate limits and logs; two ids are equal when their names
/// are (a rotation that changes a key's limit keeps its bucket).
/// Shared, so that handing it to a request, the rate limiter and the access log copies no text.
#[derive(Debug, Clone)]
pub struct KeyId(Arc<Named>);

#[derive(Debug)]
struct Named {
    name: Box<str>,
    limit: KeyLimit,
}

impl PartialEq for KeyId {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for KeyId {}

impl std::hash::Hash for KeyId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

/// [`KeyId::anonymous`], made once.
static ANONYMOUS: LazyLock<KeyId> = LazyLock::new(|| {
    KeyId(Arc::new(Named {
        name: "anonymous".into(),
        limit: KeyLimit::Default,
    }))
});

impl KeyId {
    /// The id used when authentication is off: everyone shares it.
    #[must_use]
    pub fn anonymous() -> Self {
        ANONYMOUS.clone()
    }

    /// The id of the key whose SHA-256 is `digest`, limited as `limit` says.
    fn of(digest: &[u8; 32], limit: KeyLimit) -> Self {
        Self(Arc::new(Named {
            name: hex::encode(key_id_bytes(digest)).into(),
            limit,
        }))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0.name
    }

    /// The key's own rate limit, if its line in the key file gives one.
    #[must_use]
    pub fn limit(&self) -> KeyLimit {
        self.0.limit
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading failed.
    #[error("cannot read API-key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `sha256:` line without 64 hex digits.
    #[error(
        "API-key file {path}, line {line}: after `sha256:` put 64 hex digits (the SHA-256 of the key)"
    )]
    BadDigest {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// Two different keys whose ids ([`KeyId`]: the first 8 hex digits of the SHA-256) are the
    /// same: the rate limit and the logs would take them for one caller.
    #[error(
        "API-key file {path}, lines {first} and {second}: two different keys share the id {id} (the first 8 hex digits of their SHA-256), so rate limits and logs could not tell them apart: replace one of them"
    )]
    SharedId {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first key.
        first: usize,
        /// 1-based line of the second.
        second: usize,
        /// The id they share.
        id: String,
    },
    /// A line that cannot be a key a client sends: whitespace inside (`sha256sum` output, a
    /// trailing comment), or bytes an HTTP header cannot carry.
    #[error("API-key file {path}, line {line}: {why}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what to write instead (never the line itself).
        why: &'static str,
    },
    /// No key at all: refusing to start with auth "on" and nobody able to call.
    #[error(
        "API-key file {path} holds no keys: add one key per line, or unset INGEST_API_KEYS_FILE to turn authentication off"
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Digests of the accepted keys, by the bytes of their [`KeyId`] (unique in a set).
#[derive(Clone, Default)]
pub struct KeySet {
    by_id: HashMap<[u8; 4], Known>,
}

/// An accepted key: its digest, and its id made once.
#[derive(Clone)]
struct Known {
    digest: [u8; 32],
    id: KeyId,
}

/// What a presented key whose id is in no set is compared with, so that a miss costs what a
/// check does. No key has it as its SHA-256 that anyone knows of.
const NO_DIGEST: [u8; 32] = [0; 32];

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.by_id.len())
            .finish()
    }
}

/// The hex after a digest prefix: `sha256:` in any case, or `sha-256:`. A line that only looks
/// like a digest (a mistyped `SHA256:…`) must not become a plain key, or the digest text itself,
/// which the file is meant to hold instead of a secret, would let its reader in.
fn digest_part(line: &str) -> Option<&str> {
    ["sha256:", "sha-256:"].into_iter().find_map(|prefix| {
        line.get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .map(|_| &line[prefix.len()..])
    })
}

/// Whether `line` (not a `sha256:` line) is 64 hex digits: a key made by `openssl rand -hex 32`,
/// or a digest whose `sha256:` prefix was forgotten, which as a key would let in whoever reads
/// the file. The two look the same, so such a key is taken, with a warning.
fn looks_like_a_digest(line: &str) -> bool {
    line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why `line` (not a `sha256:` line, and cut at its first ASCII whitespace: what follows is
/// [`key_limit`]'s, whose refusal says that a key holds no spaces or tabs) cannot be a key, if
/// it cannot.
fn unusable_key(line: &str) -> Option<&'static str> {
    if !line.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(
            "a key must be visible ASCII, as an HTTP header carries it; other characters could \
             never be sent",
        );
    }
    None
}

/// What a key line says after the key: `rps=<requests per second>` (0: never limited) and
/// `burst=<requests>` (with `rps=`; default one second's worth), separated by spaces or tabs.
/// Nothing is echoed back: a line that is not this may hold a secret.
fn key_limit(attributes: &str) -> Result<KeyLimit, &'static str> {
    const WHAT: &str = "after a key only rps=<requests per second> and burst=<requests> may follow; a key holds no spaces or tabs (for a digest from `sha256sum`, write `sha256:<digest>` without the file name; comments go on lines of their own)";
    let mut rps = None;
    let mut burst = None;
    for attribute in attributes.split_ascii_whitespace() {
        match attribute.split_once('=') {
            Some(("rps", value)) if rps.is_none() => {
                let value: f64 = value.parse().map_err(|_| WHAT)?;
                if !(value.is_finite() && value >= 0.0) {
                    return Err(
                        "rps= must be a number of requests per second, 0 or more (0: never limited)",
                    );
                }
                rps = Some(value);
            }
            Some(("burst", value)) if burst.is_none() => {
                let value: u32 = value
                    .parse()
                    .ok()
                    .filter(|&b| b >= 1)
                    .ok_or("burst= must be a whole number of requests, 1 or more")?;
                burst = Some(value);
            }
            _ => return Err(WHAT),
        }
    }
    match (rps, burst) {
        (None, None) => Ok(KeyLimit::Default),
        (None, Some(_)) => Err("burst= needs rps= on the same line"),
        // Checked to be 0 or more above.
        (Some(rps), _) if rps <= 0.0 => Ok(KeyLimit::Unlimited),
        (Some(rps), burst) => Ok(KeyLimit::Own(RateLimit::new(rps, burst))),
    }
}

/// The bytes of a key's SHA-256 that name it ([`KeyId`] is their hex).
fn key_id_bytes(digest: &[u8; 32]) -> [u8; 4] {
    [digest[0], digest[1], digest[2], digest[3]]
}

impl KeySet {
    /// Parses the file format described in the module docs.
    ///
    /// # Errors
    /// A malformed `sha256:` line, two different keys with the same [`KeyId`], or no key at all.
    pub fn parse(path: &Path, text: &str) -> Result<Self, KeyFileError> {
        // id -> (line, digest, limit) of the first key with that id.
        let mut ids: HashMap<[u8; 4], (usize, [u8; 32], KeyLimit)> = HashMap::new();
        // A file saved by an editor that writes a byte-order mark: not part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad_key = |why| KeyFileError::BadKey {
                path: path.to_owned(),
                line: n + 1,
                why,
            };
            // The key, then its own limit, if any (`rps=`, `burst=`).
            let (line, attributes) = line
                .split_once(|c: char| c.is_ascii_whitespace())
                .map_or((line, ""), |(key, rest)| (key, rest));
            let limit = key_limit(attributes).map_err(bad_key)?;
            let digest: [u8; 32] = if let Some(hex_digest) = digest_part(line) {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest.trim(), &mut digest).map_err(|_| {
                    KeyFileError::BadDigest {
                        path: path.to_owned(),
                        line: n + 1,
                    }
                })?;
                digest
            } else {
                if let Some(why) = unusable_key(line) {
                    return Err(bad_key(why));
                }
                if looks_like_a_digest(line) {
                    tracing::warn!(
                        path = %path.display(),
                        line = n + 1,
                        "an API key of 64 hex digits is taken as a key; if it is the SHA-256 of a key, write it as sha256:<digest>, or whoever reads this file can use it"
                    );
                }
                Sha256::digest(line.as_bytes()).into()
            };
            let id = key_id_bytes(&digest);
            match ids.get(&id) {
                // The same key twice (say as itself and as its digest) is still one caller,
                // with one limit.
                Some(&(_, known, known_limit)) if known == digest && known_limit == limit => {}
                Some(&(_, known, _)) if known == digest => {
                    return Err(bad_key(
                        "this key is on an earlier line with another rps=/burst=: give it one line, or the same limit",
                    ));
                }
                Some(&(first, _, _)) => {
                    return Err(KeyFileError::SharedId {
                        path: path.to_owned(),
                        first,
                        second: n + 1,
                        id: hex::encode(id),
                    });
                }
                None => {
                    ids.insert(id, (n + 1, digest, limit));
                }
            }
        }
        if ids.is_empty() {
            return Err(KeyFileError::Empty {
                path: path.to_owned(),
            });
        }
        let by_id = ids
            .into_iter()
            .map(|(id, (_, digest, limit))| {
                let known = Known {
                    digest,
                    id: KeyId::of(&digest, limit),
                };
                (id, known)
            })
            .collect();
        Ok(Self { by_id })
    }

    /// The key's id when it is one of the set: the one digest with its id, compared in constant
    /// time (see the module docs), whatever the number of keys.
    #[must_use]
    pub fn check(&self, presented: &[u8]) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let known = self.by_id.get(&key_id_bytes(&digest));
        let candidate = known.map_or(&NO_DIGEST, |k| &k.digest);
        let matched = bool::from(candidate.ct_eq(&digest));
        known.filter(|_| matched).map(|k| k.id.clone())
    }

    /// Number of different keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Authentication as the routes see it: off, or a key set that a watcher keeps current.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No key file configured: every request is let in (and the start log says so loudly).
    Off,
    /// Keys from a file, swapped in place when the file changes.
    Keys(Arc<KeyStore>),
}

/// Result of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Let in, as this key (or [`KeyId::anonymous`] with auth off).
    Allowed(KeyId),
    /// No key presented.
    Missing,
    /// An `Authorization` header of another form than `Bearer <key>` (and no `X-API-Key`).
    Malformed,
    /// A key that is not in the set.
    Invalid,
}

impl Auth {
    /// Checks `Authorization: Bearer <key>` and `X-API-Key: <key>`: either one holding a key
    /// in the set lets the request in. A client of the old API Gateway endpoint may send its
    /// key in `X-API-Key` beside a bearer token meant for something else (a Cognito or mesh
    /// JWT), so a bearer that is not a key does not refuse a good `X-API-Key`. An
    /// `Authorization` header of another scheme (or an empty bearer) with no `X-API-Key` is
    /// [`AuthOutcome::Malformed`].
    #[must_use]
    pub fn check(&self, headers: &http::HeaderMap) -> AuthOutcome {
        let Self::Keys(store) = self else {
            return AuthOutcome::Allowed(KeyId::anonymous());
        };
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let keys = store.current();
        let mut presented = false;
        for key in [bearer, api_key].into_iter().flatten() {
            if key.is_empty() {
                continue;
            }
            presented = true;
            if let Some(id) = keys.check(key.as_bytes()) {
                return AuthOutcome::Allowed(id);
            }
        }
        if presented {
            AuthOutcome::Invalid
        } else if headers.contains_key(http::header::AUTHORIZATION) {
            AuthOutcome::Malformed
        } else {
            AuthOutcome::Missing
        }
    }
}

/// The key set loaded from a file, reloaded when the file changes (see [`Stamp`]).
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<Arc<KeySet>>,
    /// The file's stamp when the keys in force were read.
    stamp: RwLock<Option<Stamp>>,
    /// A changed stamp seen at the previous look, not installed yet: a file is read only once it
    /// has kept the same stamp for one look, so a file being written in place is not read
    /// half-way.
    seen: RwLock<Option<Stamp>>,
}

impl KeyStore {
    /// Loads the file once.
    ///
    /// # Errors
    /// The file cannot be read or holds no valid keys.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, KeyFileError> {
        let path = path.into();
        let bytes = read_file(&path)?;
        let keys = parse_file(&path, &bytes)?;
        Ok(Self {
            path,
            keys: RwLock::new(Arc::new(keys)),
            stamp: RwLock::new(Some(Stamp::of(&bytes))),
            seen: RwLock::new(None),
        })
    }

    /// The keys in force.
    #[must_use]
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Re-reads the file if it changed and has not changed since the previous look (so a
    /// changed file is installed one look after the change, never while it is being written,
    /// say by an editor or `echo >` rewriting it in place: half a file can parse as fewer keys,
    /// or a key cut short). Returns whether new keys were installed. A file that no longer
    /// parses leaves the old keys in force (and is reported), so a bad edit cannot lock every
    /// client out or let everyone in.
    ///
    /// # Errors
    /// The changed file could not be read or parsed.
    pub fn reload_if_changed(&self) -> Result<bool, KeyFileError> {
        // One read per look: the bytes whose stamp has settled are the bytes parsed.
        let read = read_file(&self.path);
        let now = read.as_ref().ok().map(|bytes| Stamp::of(bytes));
        let settled = {
            let mut seen = self
                .seen
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now
                == *self
                    .stamp
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                *seen = None;
                return Ok(false);
            }
            let settled = *seen == now;
            *seen = now;
            settled
        };
        if !settled {
            return Ok(false);
        }
        let keys = parse_file(&self.path, &read?)?;
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        *self
            .stamp
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        Ok(true)
    }

    /// Sets `gauge` to the number of keys in force.
    pub fn show_count(&self, gauge: &prometheus::IntGauge) {
        gauge.set(crate::metrics::gauge_value(self.current().len()));
    }

    /// Polls the file every `every` until the task is aborted, keeping `keys` at the number of
    /// keys in force after each reload (the loader shows the first count, [`Self::show_count`])
    /// and counting in `errors` each look at a changed file that cannot be used (every look
    /// until it is fixed, so that an alert on the counter lasts as long as the problem).
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        keys: prometheus::IntGauge,
        errors: prometheus::IntCounter,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A broken file is retried every tick; its error is logged once, not every tick.
        let mut reported: Option<String> = None;
        loop {
            tick.tick().await;
            match self.reload_if_changed() {
                Ok(true) => {
                    reported = None;
                    self.show_count(&keys);
                    tracing::info!(
                        path = %self.path.display(),
                        keys = self.current().len(),
                        "API keys reloaded"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    errors.inc();
                    let message = e.to_string();
                    if reported.as_deref() == Some(message.as_str()) {
                        tracing::debug!(error = %message, "API-key file still cannot be used");
                    } else {
                        tracing::error!(error = %message, "API-key file changed but cannot be used; keeping the previous keys");
                        reported = Some(message);
                    }
                }
            }
        }
    }
}

/// What tells that the key file changed: the SHA-256 of its content. Metadata (size, mtime,
/// inode, ctime) misses a rotation to a key of the same length by a tool that keeps the old
/// mtime (`cp -p`, `rsync -t`) within one tick of the ctime clock, which is milliseconds on
/// many kernels and file systems; a key file is a few lines, so reading it whole at each look
/// (every `INGEST_API_KEYS_RELOAD`) costs nothing that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([u8; 32]);

impl Stamp {
    fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

/// The key file's bytes.
fn read_file(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The keys in the key file's `bytes`.
fn parse_file(path: &Path, bytes: &[u8]) -> Result<KeySet, KeyFileError> {
    let text = std::str::from_utf8(bytes).map_err(|e| KeyFileError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    KeySet::parse(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
        h
    }

    #[test]
    fn plain_and_hashed_keys_are_accepted() {
        let digest = hex::encode(Sha256::digest(b"hashed-key"));
        let text = format!("# team a\nplain-key\n\nsha256:{digest}\n");
        let set = KeySet::parse(Path::new("keys"), &text).expect("parses");
        assert_eq!(set.len(), 2);
        assert!(set.check(b"plain-key").is_some());
        assert!(set.check(b"hashed-key").is_some());
        assert!(set.check(b"other").is_none());
        assert!(set.check(b"").is_none());
    }

    #[test]
    fn a_key_may_carry_a_rate_limit_of_its_own() {
        use crate::ratelimit::{KeyLimit, RateLimit};
        let digest = hex::encode(Sha256::digest(b"hashed-key"));
        let text = format!(
            "plain\ngold rps=5 burst=20\nsilver\trps=0.5\ninternal rps=0\nsha256:{digest} burst=3 rps=2\n"
        );
        let set = KeySet::parse(Path::new("keys"), &text).expect("parses");
        let limit = |key: &[u8]| set.check(key).expect("a key of the set").limit();
        assert_eq!(limit(b"plain"), KeyLimit::Default);
        assert_eq!(
            limit(b"gold"),
            KeyLimit::Own(RateLimit {
                per_second: 5.0,
                burst: 20.0
            })
        );
        // No burst: one second's worth, at least 1.
        assert_eq!(limit(b"silver"), KeyLimit::Own(RateLimit::new(0.5, None)));
        assert_eq!(
            limit(b"silver"),
            KeyLimit::Own(RateLimit {
                per_second: 0.5,
                burst: 1.0
            })
        );
        assert_eq!(limit(b"internal"), KeyLimit::Unlimited);
        assert_eq!(
            limit(b"hashed-key"),
            KeyLimit::Own(RateLimit {
                per_second: 2.0,
                burst: 3.0
            })
        );
        // The same key twice with the same limit is one caller; with another, refused.
        assert!(KeySet::parse(Path::new("keys"), "k rps=1\nk rps=1\n").is_ok());
        for (text, says) in [
            ("k rps=1\nk rps=2\n", "another rps="),
            ("k burst=3\n", "needs rps="),
            ("k rps=-1\n", "0 or more"),
            ("k rps=inf\n", "0 or more"),
            ("k rps=1 burst=0\n", "1 or more"),
            ("k rps=fast\n", "only rps="),
            ("k rps=1 rps=2\n", "only rps="),
            ("k limit=1\n", "only rps="),
        ] {
            let err = KeySet::parse(Path::new("keys"), text).expect_err(text);
            let msg = err.to_string();
            assert!(
                matches!(err, KeyFileError::BadKey { .. }) && msg.contains(says),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn every_key_of_a_large_set_is_found_under_its_own_id() {
        let text: String = (0..5000).map(|i| format!("key-{i}\n")).collect();
        let set = KeySet::parse(Path::new("keys"), &text).expect("parses");
        assert_eq!(set.len(), 5000);
        for i in 0..5000 {
            let key = format!("key-{i}");
            let id = set.check(key.as_bytes()).expect("a key of the set");
            assert_eq!(id.as_str(), &hex::encode(Sha256::digest(&key))[..8]);
        }
        assert!(set.check(b"key-5000").is_none());
    }

    #[test]
    fn a_key_whose_id_is_in_the_set_but_not_its_digest_is_refused() {
        // The id only finds the one digest to compare with; the whole digest decides.
        for byte in [4, 31] {
            let mut digest: [u8; 32] = Sha256::digest(b"probe").into();
            digest[byte] ^= 1;
            let text = format!("sha256:{}\n", hex::encode(digest));
            let set = KeySet::parse(Path::new("keys"), &text).expect("parses");
            assert!(set.check(b"probe").is_none(), "differs in byte {byte}");
        }
    }

    #[test]
    fn lines_that_cannot_be_keys_are_refused_without_echoing_them() {
        let digest = hex::encode(Sha256::digest(b"the-real-key"));
        for (text, says) in [
            // `sha256sum` output, a trailing comment.
            (format!("ok-key\n{digest}  -\n"), "no spaces or tabs"),
            (
                "ok-key\nsecret-key # team a\n".to_owned(),
                "no spaces or tabs",
            ),
            // No HTTP header can carry it.
            ("ok-key\nsecret-kéy\n".to_owned(), "visible ASCII"),
        ] {
            let err = KeySet::parse(Path::new("keys"), &text).expect_err(&text);
            let msg = err.to_string();
            assert!(
                matches!(err, KeyFileError::BadKey { line: 2, .. }) && msg.contains(says),
                "{msg}"
            );
            assert!(!msg.contains("secret") && !msg.contains(&digest), "{msg}");
        }
        // The digest with its prefix is what the file is for.
        let set = KeySet::parse(Path::new("keys"), &format!("sha256:{digest}\n")).expect("parses");
        assert!(set.check(b"the-real-key").is_some());
        // 64 hex digits without it are a key (`openssl rand -hex 32` makes such keys), with a
        // warning in case it was a digest missing its prefix.
        assert!(looks_like_a_digest(&digest));
        let set = KeySet::parse(Path::new("keys"), &format!("{digest}\n")).expect("parses");
        assert!(set.check(digest.as_bytes()).is_some());
    }

    #[test]
    fn digest_prefixes_in_any_spelling_are_digests_never_keys() {
        let digest = hex::encode(Sha256::digest(b"other"));
        for prefix in ["SHA256:", "Sha256:", "sha-256:", "SHA-256:"] {
            let line = format!("{prefix}{digest}");
            let set = KeySet::parse(Path::new("k"), &line).expect("a digest");
            assert!(set.check(b"other").is_some(), "{prefix}");
            assert!(
                set.check(line.as_bytes()).is_none(),
                "{prefix}: the line is no key"
            );
            // Mistyped digits are refused, not taken as a plain key.
            let err = KeySet::parse(Path::new("k"), &format!("{prefix}{}", &digest[1..]))
                .expect_err("63 hex digits");
            assert!(err.to_string().contains("64 hex digits"), "{prefix}: {err}");
        }
    }

    #[test]
    fn two_keys_with_one_id_are_refused() {
        let path = Path::new("keys");
        let a = format!("sha256:abcdef01{}", "0".repeat(56));
        let b = format!("sha256:abcdef01{}", "1".repeat(56));
        let err = KeySet::parse(path, &format!("# keys\n{a}\n\n{b}\n")).expect_err("shared id");
        assert!(
            matches!(&err, KeyFileError::SharedId { first: 2, second: 4, id, .. } if id == "abcdef01"),
            "{err}"
        );
        assert!(err.to_string().contains("replace one of them"), "{err}");
        // One key written as itself and as its digest is one caller, not a clash.
        let digest = hex::encode(Sha256::digest(b"k-1"));
        let set = KeySet::parse(path, &format!("k-1\nsha256:{digest}\n")).expect("same key twice");
        assert!(set.check(b"k-1").is_some());
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        let set = KeySet::parse(Path::new("k"), "\u{feff}first\nsecond\n").expect("parses");
        assert!(set.check(b"first").is_some());
        assert!(set.check(b"second").is_some());
    }

    #[test]
    fn key_ids_do_not_reveal_the_key() {
        let set = KeySet::parse(Path::new("k"), "secret-value\n").expect("parses");
        let id = set.check(b"secret-value").expect("known");
        assert_eq!(id.to_string().len(), 8);
        assert!(!id.to_string().contains("secret"));
        assert!(!format!("{set:?}").contains("secret"));
    }

    #[test]
    fn malformed_and_empty_files_are_refused() {
        let err = KeySet::parse(Path::new("k"), "sha256:zz\n").expect_err("bad hex");
        assert!(err.to_string().contains("line 1"));
        let err = KeySet::parse(Path::new("k"), "# only comments\n").expect_err("empty");
        assert!(err.to_string().contains("INGEST_API_KEYS_FILE"));
    }

    #[test]
    fn bearer_and_x_api_key_headers_work() {
        let store = KeyStore {
            path: PathBuf::from("unused"),
            keys: RwLock::new(Arc::new(
                KeySet::parse(Path::new("k"), "k1\n").expect("parses"),
            )),
            stamp: RwLock::new(None),
            seen: RwLock::new(None),
        };
        let auth = Auth::Keys(Arc::new(store));
        assert!(matches!(
            auth.check(&headers("authorization", "Bearer k1")),
            AuthOutcome::Allowed(_)
        ));
        assert!(matches!(
            auth.check(&headers("authorization", "bearer   k1 ")),
            AuthOutcome::Allowed(_)
        ));
        assert!(matches!(
            auth.check(&headers("x-api-key", "k1")),
            AuthOutcome::Allowed(_)
        ));
        for (value, expected) in [
            ("Bearer nope", AuthOutcome::Invalid),
            ("Basic azE6", AuthOutcome::Malformed),
            ("k1", AuthOutcome::Malformed),
            ("Bearer ", AuthOutcome::Malformed),
        ] {
            assert_eq!(
                auth.check(&headers("authorization", value)),
                expected,
                "{value}"
            );
        }
        // Both headers: either one holding a key lets the request in (an API Gateway client may
        // send a JWT as its bearer and the key in X-API-Key); another scheme is ignored.
        let both = |authorization: &str, api_key: &str| {
            let mut h = headers("authorization", authorization);
            h.insert("x-api-key", api_key.parse().expect("header value"));
            auth.check(&h)
        };
        assert!(matches!(both("Basic azE6", "k1"), AuthOutcome::Allowed(_)));
        assert!(matches!(both("Bearer ", "k1"), AuthOutcome::Allowed(_)));
        assert!(matches!(
            both("Bearer eyJhbGciOi.jwt", "k1"),
            AuthOutcome::Allowed(_)
        ));
        assert!(matches!(both("Bearer k1", "nope"), AuthOutcome::Allowed(_)));
        assert_eq!(both("Bearer nope", "nope"), AuthOutcome::Invalid);
        assert_eq!(both("Basic azE6", "nope"), AuthOutcome::Invalid);
        assert_eq!(auth.check(&http::HeaderMap::new()), AuthOutcome::Missing);
        assert!(matches!(
            Auth::Off.check(&http::HeaderMap::new()),
            AuthOutcome::Allowed(_)
        ));
    }

    #[test]
    fn rotation_is_picked_up_and_bad_edits_keep_old_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "old\n").expect("write");
        let store = KeyStore::load(&path).expect("loads");
        assert!(store.current().check(b"old").is_some());
        assert!(!store.reload_if_changed().expect("unchanged"));

        // A different size guarantees a new stamp even on coarse mtime file systems.
        std::fs::write(&path, "new-key\n").expect("rotate");
        assert!(!store.reload_if_changed().expect("seen, not settled"));
        assert!(store.reload_if_changed().expect("reloads"));
        assert!(store.current().check(b"new-key").is_some());
        assert!(store.current().check(b"old").is_none());

        std::fs::write(&path, "sha256:not-hex-at-all\n").expect("bad edit");
        assert!(!store.reload_if_changed().expect("seen, not settled"));
        assert!(store.reload_if_changed().is_err());
        assert!(store.current().check(b"new-key").is_some());
    }

    #[test]
    fn a_file_still_being_written_is_not_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "old\n").expect("write");
        let store = KeyStore::load(&path).expect("loads");
        // Rewritten in place, caught half-way: "second-key" cut short, which parses.
        std::fs::write(&path, "first-key\nsec").expect("half written");
        assert!(!store.reload_if_changed().expect("not settled"));
        std::fs::write(&path, "first-key\nsecond-key\n").expect("written");
        assert!(
            !store
                .reload_if_changed()
                .expect("changed since the last look")
        );
        assert!(
            store.current().check(b"old").is_some(),
            "old keys still in force"
        );
        assert!(store.current().check(b"sec").is_none());
        assert!(store.reload_if_changed().expect("settled"));
        assert!(store.current().check(b"second-key").is_some());
        assert!(store.current().check(b"sec").is_none());
    }

    #[test]
    fn a_key_of_the_same_length_with_the_old_mtime_is_picked_up() {
        // `cp -p` / `rsync -t` / `touch -r`: same size, same mtime, other content.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "key-one\n").expect("write");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let store = KeyStore::load(&path).expect("loads");
        std::fs::write(&path, "key-two\n").expect("rotate");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime set back");
        assert!(!store.reload_if_changed().expect("seen, not settled"));
        assert!(store.reload_if_changed().expect("reloads"));
        assert!(store.current().check(b"key-two").is_some());
        assert!(store.current().check(b"key-one").is_none());
    }
}
