//! The access log: one JSON line per request, written by a tracing layer of its own.
//!
//! [`crate::middleware`] emits each line as a `tracing` event with target
//! [`ACCESS_TARGET`], so `RUST_LOG` filters it like any other line (`access=off` silences it).
//! The general JSON log formatter spent ~21,000 instructions on each such line (callgrind:
//! span lookups, a `serde_json::Value`-style map per event, `fmt` machinery), more than the
//! minimal handler's whole request (~18,000); this layer writes the same JSON object directly:
//! `timestamp` (UTC, microseconds, as the other lines), `level`, `message`, the event's fields in
//! the order given, then `target`. Strings are JSON-escaped (`serde_json`); numbers are written
//! as numbers, `None` fields are left out.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::IpAddr;

use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The target of access-log events.
pub const ACCESS_TARGET: &str = "access";

/// Writes [`ACCESS_TARGET`] events as JSON lines to `W` (give it a filter that passes only
/// those; it formats whatever event reaches it).
#[derive(Debug)]
pub struct AccessLog<W> {
    writer: W,
}

impl<W> AccessLog<W> {
    /// A layer writing to `writer`.
    pub const fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<S, W> Layer<S> for AccessLog<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let line = format_line(event, OffsetDateTime::now_utc());
        // A failed write to stdout has nowhere better to be reported.
        let _ = self.writer.make_writer().write_all(&line);
    }
}

/// The JSON line (with its `\n`) for `event` at `now`.
fn format_line(event: &Event<'_>, now: OffsetDateTime) -> Vec<u8> {
    let mut line = Vec::with_capacity(320);
    line.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(&mut line, now);
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(event.metadata().level().as_str().as_bytes());
    line.push(b'"');
    let mut fields = Fields {
        line: &mut line,
        scratch: String::new(),
    };
    event.record(&mut fields);
    line.extend_from_slice(b",\"target\":");
    push_json(&mut line, event.metadata().target());
    line.extend_from_slice(b"}\n");
    line
}

/// `2026-11-26T03:07:51.525485Z`, as `tracing-subscriber`'s JSON lines. Digits are pushed
/// directly: through `write!` the timestamp alone cost more than the rest of the line.
fn push_timestamp(line: &mut Vec<u8>, t: OffsetDateTime) {
    let year = u32::try_from(t.year()).unwrap_or(0).min(9999);
    push_digits(line, year, 4);
    line.push(b'-');
    push_digits(line, u32::from(u8::from(t.month())), 2);
    line.push(b'-');
    push_digits(line, u32::from(t.day()), 2);
    line.push(b'T');
    push_digits(line, u32::from(t.hour()), 2);
    line.push(b':');
    push_digits(line, u32::from(t.minute()), 2);
    line.push(b':');
    push_digits(line, u32::from(t.second()), 2);
    line.push(b'.');
    push_digits(line, t.microsecond(), 6);
    line.push(b'Z');
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(line: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = line.len();
    line.resize(start + width, b'0');
    for slot in line[start..].iter_mut().rev() {
        // n % 10 < 10: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        *slot = b'0' + digit;
        n /= 10;
    }
}

/// `value` as JSON: strings quoted and escaped (quotes, backslashes, control characters),
/// numbers as numbers (`serde_json`, through `itoa`/`ryu`).
fn push_json<T: serde::Serialize + ?Sized>(line: &mut Vec<u8>, value: &T) {
    // Serializing a str or a finite number into a Vec cannot fail.
    let _ = serde_json::to_writer(line, value);
}

/// Longest text of an IP address: an IPv4-mapped IPv6 address in full,
/// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255` (`INET6_ADDRSTRLEN` without the NUL).
const IP_TEXT_MAX: usize = 45;

/// An IP address as text in a stack buffer, for the access line's `peer`. IPv4 is written by
/// hand: through `Display` (four `u8` formats and the `fmt` machinery, into a growing `String`)
/// the field cost ~1,900 instructions per request (callgrind), a third of the whole line.
/// IPv6, rare behind an ingress, still goes through `Display`, into the same buffer.
pub struct IpText {
    buf: [u8; IP_TEXT_MAX],
    len: usize,
}

impl fmt::Debug for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IpText").field(&self.as_str()).finish()
    }
}

impl IpText {
    /// The text of `ip`, exactly as its `Display` writes it.
    pub fn new(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; IP_TEXT_MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text.buf[..];
                // Cannot fail: the longest text fits (IP_TEXT_MAX).
                let _ = write!(rest, "{v6}");
                let left = rest.len();
                text.len = IP_TEXT_MAX - left;
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        // At most 15 bytes for IPv4: always in bounds.
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Appends each field as `,"name":value`.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    /// Reused for fields only available through `Debug`.
    scratch: String,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(b',');
        push_json(self.line, field.name());
        self.line.push(b':');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        push_json(self.line, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        push_json(self.line, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            push_json(self.line, &value);
        } else {
            self.line.extend_from_slice(b"null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.scratch.clear();
        let _ = write!(self.scratch, "{value:?}");
        self.key(field);
        push_json(self.line, self.scratch.as_str());
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Sink {
        type Writer = Self;
        fn make_writer(&'w self) -> Self {
            self.clone()
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<Value> {
        let _serial = crate::scoped_subscriber_lock();
        let sink = Sink::default();
        let subscriber = tracing_subscriber::registry().with(AccessLog::new(sink.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let request_id = "quote\" backslash\\ newline\n tab\t \u{1}";
        let no_trace: Option<&str> = None;
        let got = lines(|| {
            tracing::warn!(
                target: "access",
                method = "POST",
                route = "/v1/events",
                status = 503_u16,
                reason = "firehose_unavailable",
                duration_ms = 12.5,
                request_bytes = Some(1000_u64),
                request_id,
                trace_id = no_trace,
                key_id = "ab12cd34",
                "request"
            );
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "request");
        assert_eq!(line["target"], "access");
        assert_eq!(line["method"], "POST");
        assert_eq!(line["route"], "/v1/events");
        assert_eq!(line["status"], 503);
        assert_eq!(line["reason"], "firehose_unavailable");
        assert_eq!(line["duration_ms"], 12.5);
        assert_eq!(line["request_bytes"], 1000);
        assert_eq!(line["request_id"], request_id, "escaped and read back");
        assert_eq!(line["key_id"], "ab12cd34");
        assert!(line.get("trace_id").is_none(), "None fields are left out");
        let ts = line["timestamp"].as_str().expect("timestamp");
        let parsed = OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339");
        assert!((OffsetDateTime::now_utc() - parsed).whole_seconds().abs() < 60);
        assert_eq!(ts.len(), "2026-11-26T03:07:51.525485Z".len(), "{ts}");
    }

    #[test]
    fn debug_and_display_fields_are_strings_and_odd_floats_null() {
        let got = lines(|| {
            tracing::info!(
                target: "access",
                shown = %"display \"text\"",
                debugged = ?vec![1, 2],
                ok = true,
                nan = f64::NAN,
                negative = -3_i64,
            );
        });
        let line = &got[0];
        assert_eq!(line["shown"], "display \"text\"");
        assert_eq!(line["debugged"], "[1, 2]");
        assert_eq!(line["ok"], true);
        assert!(line["nan"].is_null());
        assert_eq!(line["negative"], -3);
        assert!(
            line.get("message").is_none(),
            "no message given, none written"
        );
    }

    #[test]
    fn ip_text_is_what_display_writes() {
        let mut ips: Vec<IpAddr> = Vec::new();
        // Every octet width (1, 2 and 3 digits) in every position.
        for octet in [0_u8, 1, 9, 10, 42, 99, 100, 199, 200, 255] {
            ips.push(std::net::Ipv4Addr::new(octet, 255, 0, octet).into());
            ips.push(std::net::Ipv4Addr::new(7, octet, octet, 10).into());
        }
        for v6 in [
            "::",
            "::1",
            "fe80::1",
            "2001:db8:85a3::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "::ffff:10.0.0.1",
        ] {
            ips.push(v6.parse().expect("an IPv6 address"));
        }
        for ip in ips {
            assert_eq!(IpText::new(ip).as_str(), ip.to_string(), "{ip:?}");
        }
    }

    #[test]
    fn the_timestamp_has_microseconds_and_zero_padding() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000_006 UTC);
        let mut s = Vec::new();
        push_timestamp(&mut s, t);
        assert_eq!(s, b"2026-01-02T03:04:05.000006Z");
        let t = time::macros::datetime!(2026-12-31 23:59:59.999_999 UTC);
        s.clear();
        push_timestamp(&mut s, t);
        assert_eq!(s, b"2026-12-31T23:59:59.999999Z");
    }
}
