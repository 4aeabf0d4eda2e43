//! Turns a decoded record's text into the enriched JSON object, without building a tree.
//!
//! Parsing an event into `serde_json::Value` and printing it again would reorder nothing only by
//! luck, would round big numbers through `f64` (a 30-digit integer or `1.10` would change), and
//! would cost most of the transform's time. Instead `serde_json` *validates* the object and
//! reports where each top-level member ends (each value is borrowed as a `&RawValue`, a slice of
//! the input); the output is then spliced from the input bytes: every member we keep is copied
//! verbatim, members named like ours are cut out, and our three members are appended.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::{ADDED_KEYS, json};

/// The three added members for one invocation, formatted once: everything up to the record id.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    /// `"transformed":true,"_transformed_ts":<ms>,"_record_id":`
    prefix: Vec<u8>,
}

impl Stamp {
    pub(crate) fn new(now_ms: i64) -> Self {
        let [transformed, ts, record_id] = ADDED_KEYS;
        let prefix = format!("\"{transformed}\":true,\"{ts}\":{now_ms},\"{record_id}\":");
        Self {
            prefix: prefix.into_bytes(),
        }
    }

    /// Appends the three members and the closing brace.
    fn finish(&self, record_id: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        json::write_escaped(out, record_id);
        out.push(b'}');
    }
}

/// Where one top-level member of an object ends, and whether it is one of ours.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// Byte offset just past the member's value.
    value_end: usize,
    /// The member's (unescaped) name is one of [`ADDED_KEYS`].
    ours: bool,
}

/// Writes the enriched object for `text` (valid UTF-8, not blank) into `out`.
///
/// `members` is scratch space reused across records.
pub(crate) fn enrich(
    text: &str,
    record_id: &str,
    stamp: &Stamp,
    members: &mut Vec<Member>,
    out: &mut Vec<u8>,
) {
    let body = strip_line_ending(text);
    let start = body.len() - body.trim_start_matches(is_json_whitespace).len();
    if body.as_bytes().get(start) == Some(&b'{') {
        if scan_object(body, members).is_ok() && splice(body, start, members, out) {
            stamp.finish(record_id, out);
            return;
        }
        out.clear();
    } else if let Ok(value) = serde_json::from_str::<&RawValue>(body) {
        out.extend_from_slice(b"{\"message\":");
        out.extend_from_slice(value.get().as_bytes());
        out.push(b',');
        stamp.finish(record_id, out);
        return;
    }
    out.extend_from_slice(b"{\"message\":");
    json::write_escaped(out, body);
    out.push(b',');
    stamp.finish(record_id, out);
}

/// `text` without one trailing `\n` or `\r\n`.
fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix('\n')
        .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t))
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Validates that `body` is exactly one JSON object and records where its members end.
fn scan_object(body: &str, members: &mut Vec<Member>) -> Result<(), serde_json::Error> {
    members.clear();
    let mut de = serde_json::Deserializer::from_str(body);
    (&mut de).deserialize_map(MemberVisitor {
        base: body.as_ptr().addr(),
        members,
    })?;
    de.end()
}

/// Copies the members we keep from `body` into `out` as `{m1,m2,...,` (or `{` when none).
///
/// `open` is the offset of the object's `{`. Returns false if the offsets do not fit the text,
/// which cannot happen after a successful [`scan_object`]; the caller then wraps the text.
fn splice(body: &str, open: usize, members: &[Member], out: &mut Vec<u8>) -> bool {
    let bytes = body.as_bytes();
    out.reserve(bytes.len() + 96);
    out.push(b'{');
    let mut member_start = open + 1;
    let mut kept_any = false;
    for member in members {
        let Some(member_text) = bytes.get(member_start..member.value_end) else {
            return false;
        };
        if !member.ours {
            if kept_any {
                out.push(b',');
            }
            out.extend_from_slice(member_text);
            kept_any = true;
        }
        // After a value come optional whitespace and then `,` or the closing `}`.
        let rest = &bytes[member.value_end..];
        let gap = rest
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
        member_start = member.value_end + gap + 1;
    }
    if kept_any {
        out.push(b',');
    }
    true
}

struct MemberVisitor<'m> {
    base: usize,
    members: &'m mut Vec<Member>,
}

impl<'de> Visitor<'de> for MemberVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(ours) = map.next_key_seed(IsOurKey)? {
            let value: &'de RawValue = map.next_value()?;
            let raw = value.get();
            let value_end = (raw.as_ptr().addr() + raw.len())
                .checked_sub(self.base)
                .ok_or_else(|| de::Error::custom("value outside the scanned text"))?;
            self.members.push(Member { value_end, ours });
        }
        Ok(())
    }
}

/// Deserializes a member name to "is it one of [`ADDED_KEYS`]?", without allocating.
struct IsOurKey;

impl<'de> DeserializeSeed<'de> for IsOurKey {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsOurKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<bool, E> {
        Ok(ADDED_KEYS.contains(&name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STAMP_MS: i64 = 1_770_249_600_123;

    fn run(text: &str) -> String {
        let mut out = Vec::new();
        enrich(
            text,
            "id-1",
            &Stamp::new(STAMP_MS),
            &mut Vec::new(),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    const OURS: &str = r#""transformed":true,"_transformed_ts":1770249600123,"_record_id":"id-1"}"#;

    #[test]
    fn object_members_are_copied_byte_for_byte() {
        let input = r#"{"b":1.10,"a":123456789012345678901234567890,"s":"caf\u00e9 \"q\"","n":{"x":[1e400,-0.0]}}"#;
        let expected = format!("{},{OURS}", &input[..input.len() - 1]);
        assert_eq!(run(input), expected);
    }

    #[test]
    fn empty_object_gets_only_our_members() {
        assert_eq!(run("{}"), format!("{{{OURS}"));
        assert_eq!(run(" { \n } \n"), format!("{{{OURS}"));
    }

    #[test]
    fn whitespace_inside_members_is_kept_and_around_the_object_is_not() {
        let input = "  {\n  \"a\" : 1 ,\n  \"b\":[ 2 ]\n}\n";
        assert_eq!(
            run(input),
            format!("{{\n  \"a\" : 1,\n  \"b\":[ 2 ],{OURS}")
        );
    }

    #[test]
    fn our_keys_replace_existing_ones_wherever_they_are() {
        let input = r#"{"transformed":false,"a":1,"_record_id":"old","b":2,"_transformed_ts":"x"}"#;
        assert_eq!(run(input), format!(r#"{{"a":1,"b":2,{OURS}"#));
        // Escaped spellings of our names are the same names.
        let input = r#"{"transforme\u0064":0,"c":3}"#;
        assert_eq!(run(input), format!(r#"{{"c":3,{OURS}"#));
        // Only ours: nothing else left.
        assert_eq!(run(r#"{"transformed":1}"#), format!("{{{OURS}"));
    }

    #[test]
    fn nested_members_named_like_ours_are_not_touched() {
        let input = r#"{"inner":{"transformed":false}}"#;
        assert_eq!(
            run(input),
            format!(r#"{{"inner":{{"transformed":false}},{OURS}"#)
        );
    }

    #[test]
    fn other_json_values_become_the_message_verbatim() {
        for (input, message) in [
            ("[1, 2.50]", "[1, 2.50]"),
            ("\"just a string\"\n", "\"just a string\""),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            (" 1.10 ", "1.10"),
            ("true", "true"),
            ("null\r\n", "null"),
        ] {
            assert_eq!(
                run(input),
                format!(r#"{{"message":{message},{OURS}"#),
                "{input:?}"
            );
        }
    }

    #[test]
    fn text_becomes_an_escaped_message_without_its_trailing_newline() {
        assert_eq!(
            run("GET /index.html 200 \"ok\"\n"),
            format!(r#"{{"message":"GET /index.html 200 \"ok\"",{OURS}"#)
        );
        assert_eq!(
            run("two\nlines\r\n"),
            format!(r#"{{"message":"two\nlines",{OURS}"#)
        );
        // Only one line ending is stripped.
        assert_eq!(run("x\n\n"), format!(r#"{{"message":"x\n",{OURS}"#));
    }

    #[test]
    fn broken_objects_are_text() {
        for input in [
            r#"{"a":1"#,
            r#"{"a":1} trailing"#,
            r#"{"a":1}{"b":2}"#,
            "{not json}",
            r#"{"a":NaN}"#,
        ] {
            let expected = format!(
                "{{\"message\":{},{OURS}",
                serde_json::to_string(input).unwrap()
            );
            assert_eq!(run(input), expected, "{input:?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        // Values are skipped iteratively (no recursion), so this is a valid object, kept as is.
        assert_eq!(run(&deep), format!("{},{OURS}", &deep[..deep.len() - 1]));
        let deep_array = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(run(&deep_array).starts_with("{\"message\":[[[["));
    }

    #[test]
    fn record_ids_are_escaped() {
        let mut out = Vec::new();
        enrich("{}", "id\"\\", &Stamp::new(1), &mut Vec::new(), &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["_record_id"], "id\"\\");
    }
}
