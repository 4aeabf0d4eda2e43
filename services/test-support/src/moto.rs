//! `moto_server`, the real Firehose and S3 APIs, for the tests of the `aws-sdk` wiring.
//!
//! `scripts/test.sh` starts one for the whole run and exports `MOTO_ENDPOINT`; a test run
//! outside it (`cargo nextest run` by hand) starts its own here. That one is asked for port 0
//! and its address is read from its own start-up line (`Running on http://127.0.0.1:PORT`), so
//! no other process can take the port between a pick and moto's bind, and the test cannot end
//! up talking to whatever else answered on a picked port.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a started `moto_server` has to say where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What `moto_server` (werkzeug) writes to stderr once it listens, before its URL.
const RUNNING_ON: &str = "Running on ";

/// A `moto_server` to send requests to: `MOTO_ENDPOINT`'s, or one started for this test and
/// stopped when this is dropped.
#[derive(Debug)]
pub struct Moto {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Option<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Moto {
    /// `MOTO_ENDPOINT`'s moto, else one started from the tools venv (`TOOLS_VENV`, else
    /// scripts/setup.sh's default) or `PATH`. `None`, after printing why, when there is none;
    /// under `CI=true` that fails the test instead, so CI cannot skip the wiring tests.
    ///
    /// # Panics
    ///
    /// Under `CI=true` without moto, and when a moto that started does not say where it
    /// listens within [`START_TIMEOUT`] (a broken install, not a missing one).
    #[must_use]
    pub fn get() -> Option<Self> {
        if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
            return Some(Self {
                endpoint,
                child: None,
            });
        }
        if let Some(program) = program() {
            return Some(Self::start(&program));
        }
        let reason = "skipped: MOTO_ENDPOINT is unset and moto_server is not installed (run \
                      scripts/setup.sh, then `source scripts/env.sh`)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and {reason}"
        );
        eprintln!("{reason}");
        None
    }

    /// Starts `program` on 127.0.0.1, port 0, and waits for the address it announces.
    fn start(program: &PathBuf) -> Self {
        let mut child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let Some(stderr) = child.stderr.take() else {
            unreachable!("stderr is piped")
        };
        let (tx, rx) = mpsc::channel();
        // Reads the start-up line, then keeps reading: moto logs every request to stderr, and
        // a pipe nobody reads would stall it once full.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            // Bytes, not `lines()`: a line that is not UTF-8 must not end the reading.
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end();
                if let Some(sender) = tx.take() {
                    match announced_endpoint(line) {
                        Some(endpoint) => {
                            let _ = sender.send(Ok(endpoint));
                        }
                        None => {
                            seen.push(line.to_owned());
                            tx = Some(sender);
                        }
                    }
                }
            }
            if let Some(sender) = tx {
                let _ = sender.send(Err(seen.join("\n")));
            }
        });
        let mut moto = Self {
            endpoint: String::new(),
            child: Some(child),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(endpoint)) => moto.endpoint = endpoint,
            Ok(Err(output)) => panic!(
                "{} exited before it listened; it wrote:\n{output}",
                program.display()
            ),
            Err(_) => panic!(
                "{} did not say where it listens within {START_TIMEOUT:?}",
                program.display()
            ),
        }
        moto
    }
}

/// The base URL in moto's start-up line, e.g. `http://127.0.0.1:33847` from
/// ` * Running on http://127.0.0.1:33847`; `None` for any other line.
fn announced_endpoint(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(RUNNING_ON)?;
    let url = rest.split_whitespace().next()?;
    let port = url.strip_prefix("http://127.0.0.1:")?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then(|| url.to_owned())
}

/// The `moto_server` to start: the tools venv's (`TOOLS_VENV`, else scripts/setup.sh's default
/// `~/.cache/firehose-nr/venv`), else the first on `PATH`.
fn program() -> Option<PathBuf> {
    let venv = std::env::var_os("TOOLS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/firehose-nr/venv"))
        });
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("moto_server"));
    venv.map(|v| v.join("bin/moto_server"))
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_read_from_the_start_up_line_only() {
        assert_eq!(
            announced_endpoint(" * Running on http://127.0.0.1:33847").as_deref(),
            Some("http://127.0.0.1:33847")
        );
        assert_eq!(
            announced_endpoint(" * Running on http://127.0.0.1:5000 (Press CTRL+C to quit)")
                .as_deref(),
            Some("http://127.0.0.1:5000")
        );
        for other in [
            "WARNING: This is a development server.",
            "Press CTRL+C to quit",
            " * Running on http://127.0.0.1:",
            " * Running on http://127.0.0.1:0x1",
            " * Running on http://[::1]:5000",
            r#"127.0.0.1 - - [28/Nov/2026 19:00:00] "GET /moto-api/ HTTP/1.1" 200 -"#,
        ] {
            assert_eq!(announced_endpoint(other), None, "{other}");
        }
    }

    /// Two started at once get two ports of their own, and each answers moto's own API. (Run
    /// whether or not `MOTO_ENDPOINT` is set, so CI, which sets it, runs this path too.)
    #[test]
    fn a_started_moto_answers_on_the_port_it_announced() {
        let Some(program) = program() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no moto_server to start"
            );
            eprintln!("skipped: moto_server is not installed");
            return;
        };
        let (a, b) = (Moto::start(&program), Moto::start(&program));
        assert_ne!(a.endpoint, b.endpoint);
        for moto in [&a, &b] {
            let addr = moto.endpoint.strip_prefix("http://").unwrap();
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(
                &mut stream,
                b"GET /moto-api/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            let mut answer = String::new();
            std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
}
