//! What the workspace's integration tests share, so each crate's `tests/` does not write the
//! same helper its own way. A dev-dependency only: nothing here is shipped.
//!
//! * [`moto`]: the real Firehose and S3 APIs (`moto_server`) for the `aws-sdk` wiring tests.
//! * [`files_under`]: what a backup or delivery directory holds.
//! * [`refusing_address`]: an endpoint that refuses every connection.

pub mod moto;

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, sorted; none when `dir` does not exist (a backup
/// directory nothing was written to).
///
/// # Panics
///
/// When a directory entry cannot be read.
#[must_use]
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// An address that refuses connections: a socket bound to 127.0.0.1 and never listening. Keep
/// the socket while the address is in use: the port stays taken, so a listener of a test
/// running beside this one cannot get it (bind-then-drop could hand the port to one).
///
/// # Panics
///
/// When no socket can be bound.
#[must_use]
pub fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("its address");
    (socket, addr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_under_walks_every_level_sorted_and_a_missing_dir_is_empty() {
        let dir = std::env::temp_dir().join(format!("test-support-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("z"), "").unwrap();
        std::fs::write(dir.join("a/b/c"), "").unwrap();
        let found = files_under(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, [dir.join("a/b/c"), dir.join("z")]);
        assert!(files_under(&dir).is_empty());
    }

    #[tokio::test]
    async fn a_refusing_address_refuses() {
        let (_socket, addr) = refusing_address();
        let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
