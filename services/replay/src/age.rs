//! Events New Relic will drop for their age.
//!
//! New Relic takes a JSON log record's `timestamp` attribute as the record's time, in place of
//! the time it arrives, and drops records whose timestamp is more than 48 hours old
//! (<https://docs.newrelic.com/docs/logs/ui-data/timestamp-support/>: "a payload with
//! timestamps older than 48 hours are dropped"). A replay of failures older than that
//! delivers such events to the front door or the stream, which take them, and New Relic then
//! drops them without a word: the replay would report them sent. So the replay counts them
//! (dry runs too, before anything is sent) and says so in its summary.
//!
//! An event counts as too old from 47 hours ([`COUNTED_AGE`]): what the replay sends reaches New
//! Relic after Firehose's buffers (up to 15 minutes each) and any retries, so one 47 h 50 min
//! old when sent would arrive too old.
//!
//! Recognised here, as New Relic reads them: a top-level `timestamp` (spelt without escapes)
//! that is a number or a
//! string of digits (Unix time in milliseconds, or in seconds when below 10^11, i.e. before
//! the year 5138 in seconds, 1973 in milliseconds), or an RFC 3339 string. Anything else New
//! Relic ignores (it uses the arrival time), and so does this.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How old a record's `timestamp` may be before New Relic drops it.
pub const NEW_RELIC_MAX_AGE: Duration = Duration::from_secs(48 * 3600);

/// The age from which an event sent now is counted (and `--restamp`ed) as too old: New
/// Relic's limit ([`NEW_RELIC_MAX_AGE`]) less an hour for the way through Firehose (module
/// docs).
pub const COUNTED_AGE: Duration = Duration::from_secs(47 * 3600);

/// Below this, a numeric timestamp is read as seconds, at or above it as milliseconds.
const SECONDS_BELOW: f64 = 1e11;

/// The byte pattern an item must hold to be parsed at all: most events have no `timestamp`,
/// and a substring search is far cheaper than parsing them.
const KEY: &[u8] = b"\"timestamp\"";

/// The top-level `timestamp` of one JSON object, as Unix milliseconds; `None` when the line is
/// not a JSON object, has none, or has one New Relic would not read as a time.
#[must_use]
pub fn timestamp_ms(line: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Probe {
        timestamp: Option<serde_json::Value>,
    }
    // `Probe` would also be read from an array (`[1600000000000]`): objects only.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let value = serde_json::from_slice::<Probe>(line).ok()?.timestamp?;
    let number = match &value {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<f64>().ok()?
        }
        serde_json::Value::String(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
            return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
        }
        _ => return None,
    };
    if !number.is_finite() {
        return None;
    }
    let ms = if number.abs() < SECONDS_BELOW {
        number * 1000.0
    } else {
        number
    };
    // In range for any date New Relic takes; out of range saturates, which is still "old" or
    // "new" as it should be.
    #[allow(clippy::cast_possible_truncation)]
    Some(ms as i64)
}

/// Whether `item` (one event, or a record of JSON lines) holds an event whose `timestamp` is
/// more than [`COUNTED_AGE`] before `now_ms`.
#[must_use]
pub fn too_old_for_new_relic(item: &[u8], now_ms: i64) -> bool {
    if memchr::memmem::find(item, KEY).is_none() {
        return false;
    }
    let oldest_kept = now_ms.saturating_sub(duration_ms(COUNTED_AGE));
    item.split(|b| *b == b'\n')
        .filter_map(timestamp_ms)
        .any(|ms| ms < oldest_kept)
}

/// What `--restamp` renames an old event's `timestamp` to.
pub const RENAMED_TO: &str = "original_timestamp";

/// `item` with the top-level `timestamp` of each of its JSON lines that is more than
/// [`COUNTED_AGE`] before `now_ms` renamed to [`RENAMED_TO`] (`--restamp`): New Relic then
/// keeps the event, at its arrival time, and the original time stays in the event. Only the
/// member's name changes; every other byte is kept. A line that already has a member named
/// [`RENAMED_TO`] is left as it is (two members of one name would lose one of them), and so are
/// lines whose timestamp is not too old. Returns `None` when nothing was renamed.
#[must_use]
pub fn restamp(item: &[u8], now_ms: i64) -> Option<Vec<u8>> {
    memchr::memmem::find(item, KEY)?;
    let oldest_kept = now_ms.saturating_sub(duration_ms(COUNTED_AGE));
    let mut out: Option<Vec<u8>> = None;
    let mut line_start = 0;
    for line in item.split(|b| *b == b'\n') {
        let start = line_start;
        line_start += line.len() + 1;
        if timestamp_ms(line).is_none_or(|ms| ms >= oldest_kept) {
            continue;
        }
        let Some((name_start, name_end)) = top_level_names(line)
            .filter(|names| {
                !names
                    .iter()
                    .any(|(_, _, name)| name.as_ref() == RENAMED_TO.as_bytes())
            })
            .and_then(|names| {
                names
                    .into_iter()
                    .find(|(_, _, name)| name.as_ref() == b"timestamp")
                    .map(|(s, e, _)| (s, e))
            })
        else {
            continue;
        };
        // The renamed copy so far: every byte up to this line as it was (or as renamed before).
        let buf = out.get_or_insert_with(|| item.to_vec());
        let shift = buf.len() - item.len();
        let (from, to) = (start + name_start + shift, start + name_end + shift);
        buf.splice(from..to, format!("\"{RENAMED_TO}\"").into_bytes());
    }
    out
}

/// A member name's quoted span (start, end) in its line, and its decoded text.
type MemberName<'l> = (usize, usize, Cow<'l, [u8]>);

/// The top-level member names of one JSON object: each name's quoted span in `line` (start,
/// end) and its text, escapes decoded (`"timest\u0061mp"` is `timestamp`, as `serde_json`
/// reads it). `None` when the line is not one object.
fn top_level_names(line: &[u8]) -> Option<Vec<MemberName<'_>>> {
    use firehose_formats::json_scan::Cursor;
    let mut c = Cursor::new(line, 0);
    let mut stack = Vec::new();
    let mut names = Vec::new();
    if c.next_non_ws()? != b'{' {
        return None;
    }
    if c.next_non_ws()? == b'}' {
        return c.at_end().then_some(names);
    }
    loop {
        // Its opening quote was just consumed.
        let start = c.pos.checked_sub(1)?;
        let name = c.member_name().ok()?;
        names.push((start, c.pos, name));
        c.skip_ws();
        c.expect(b':').ok()?;
        c.skip_value(&mut stack).ok()?;
        match c.next_non_ws()? {
            b',' => {
                if c.next_non_ws()? != b'"' {
                    return None;
                }
            }
            b'}' => return c.at_end().then_some(names),
            _ => return None,
        }
    }
}

/// The current time as Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-28T12:00:00Z.
    const NOW_MS: i64 = 1_795_867_200_000;
    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn timestamps_are_read_as_new_relic_reads_them() {
        assert_eq!(
            timestamp_ms(br#"{"timestamp":1795867200000}"#),
            Some(NOW_MS)
        );
        assert_eq!(timestamp_ms(br#"{"timestamp":1795867200}"#), Some(NOW_MS));
        assert_eq!(
            timestamp_ms(br#"{"timestamp":1795867200.5}"#),
            Some(NOW_MS + 500)
        );
        assert_eq!(
            timestamp_ms(br#"{"timestamp":"1795867200000"}"#),
            Some(NOW_MS)
        );
        assert_eq!(
            timestamp_ms(br#"{"a":{"timestamp":1},"timestamp":"2026-11-28T12:00:00Z"}"#),
            Some(NOW_MS)
        );
        assert_eq!(
            timestamp_ms(br#"{"timestamp":"2026-11-28T13:00:00.250+01:00"}"#),
            Some(NOW_MS + 250)
        );
        for not_a_time in [
            &br#"{"message":"no timestamp"}"#[..],
            br#"{"timestamp":"yesterday"}"#,
            br#"{"timestamp":null}"#,
            br#"{"timestamp":[1]}"#,
            br#"{"timestamp":""}"#,
            br#"[{"timestamp":1}]"#,
            b"[1600000000000]",
            b"not json",
        ] {
            assert_eq!(
                timestamp_ms(not_a_time),
                None,
                "{}",
                String::from_utf8_lossy(not_a_time)
            );
        }
    }

    #[test]
    fn restamping_renames_only_an_old_top_level_timestamp() {
        let old = NOW_MS - 72 * HOUR_MS;
        let text = |item: &str| {
            restamp(item.as_bytes(), NOW_MS).map(|v| String::from_utf8(v).expect("UTF-8"))
        };
        assert_eq!(
            text(&format!(
                r#"{{"id":1, "timestamp" : {old},"n":{{"timestamp":1}}}}"#
            )),
            Some(format!(
                r#"{{"id":1, "original_timestamp" : {old},"n":{{"timestamp":1}}}}"#
            ))
        );
        // Several lines (a record for a stream): each old one, the others byte for byte.
        let record = format!(
            "{{\"timestamp\":{old}}}\n{{\"timestamp\":{NOW_MS}}}\n{{\"a\":\"\\\"timestamp\\\"\",\"timestamp\":\"2026-11-20T00:00:00Z\"}}\n"
        );
        assert_eq!(
            text(&record),
            Some(format!(
                "{{\"original_timestamp\":{old}}}\n{{\"timestamp\":{NOW_MS}}}\n{{\"a\":\"\\\"timestamp\\\"\",\"original_timestamp\":\"2026-11-20T00:00:00Z\"}}\n"
            ))
        );
        // A name spelt with escapes is the name it decodes to: an `original_timestamp` so
        // spelt is taken. (A `timestamp` so spelt is not looked for: only items holding the
        // plain `"timestamp"` are parsed.)
        assert_eq!(text(&format!(r#"{{"timest\u0061mp":{old}}}"#)), None);
        assert_eq!(
            text(&format!(
                r#"{{"original_timestam\u0070":1,"timestamp":{old}}}"#
            )),
            None
        );
        // Recent, absent, or the new name taken: nothing to do.
        assert_eq!(text(&format!(r#"{{"timestamp":{NOW_MS}}}"#)), None);
        assert_eq!(text(r#"{"id":1}"#), None);
        assert_eq!(
            text(&format!(r#"{{"original_timestamp":1,"timestamp":{old}}}"#)),
            None
        );
        // Two members of that name: not read as a time (as `serde_json` refuses it), left.
        assert_eq!(
            text(&format!(r#"{{"timestamp":1,"timestamp":{old}}}"#)),
            None
        );
        let renamed = text(&format!(r#"{{"id":1,"timestamp":{old}}}"#)).expect("renamed");
        assert!(!too_old_for_new_relic(renamed.as_bytes(), NOW_MS));
    }

    #[test]
    fn events_are_too_old_from_47_hours() {
        let old = |ms: i64| {
            too_old_for_new_relic(format!(r#"{{"id":1,"timestamp":{ms}}}"#).as_bytes(), NOW_MS)
        };
        let at = |ms: i64| format!(r#"{{"id":1,"timestamp":{ms}}}"#);
        assert!(old(NOW_MS - 49 * HOUR_MS));
        // From 47 hours (an hour for the way through Firehose), not from 48.
        assert!(old(NOW_MS - 47 * HOUR_MS - 1));
        assert!(!old(NOW_MS - 47 * HOUR_MS));
        assert!(!old(NOW_MS - 46 * HOUR_MS));
        assert!(!too_old_for_new_relic(at(NOW_MS).as_bytes(), NOW_MS));
        assert!(!too_old_for_new_relic(br#"{"id":1}"#, NOW_MS));
        // A record of several lines: any one of them.
        let record = format!(
            "{}\n{}\n",
            at(NOW_MS),
            r#"{"timestamp":"2026-11-20T00:00:00Z"}"#
        );
        assert!(too_old_for_new_relic(record.as_bytes(), NOW_MS));
    }
}
