//! Turns a decoded record's text into the enriched JSON object, without building a tree.
//!
//! Parsing an event into `serde_json::Value` and printing it again would reorder nothing only by
//! luck, would round big numbers through `f64` (a 30-digit integer or `1.10` would change), and
//! would cost most of the transform's time. Instead [`crate::scan`] *validates* the object and
//! reports where each top-level member ends; the output is then spliced from the input bytes:
//! every member we keep is copied verbatim, members named like ours are cut out, and our three
//! members are appended. Values that are not objects are checked by `serde_json` (`&RawValue`,
//! borrowed, no tree) and copied as they are into `message`.

use firehose_formats::json_scan;
use serde_json::value::RawValue;

use crate::scan::{Member, ObjectScan};
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

    /// Appends the three members and the closing brace; `id_json` is the record id as a JSON
    /// string literal (as it appeared in the event).
    fn finish(&self, id_json: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(id_json);
        out.push(b'}');
    }
}

/// What [`enrich`] made of a record's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A JSON object, enriched.
    Object,
    /// Several JSON objects, one per line (NDJSON in one record), each enriched, still one
    /// per line.
    Lines,
    /// A JSON array of objects (events batched in one record), each object enriched on a line
    /// of its own, as for [`Shape::Lines`].
    Array,
    /// Another JSON value, kept as `message`.
    Value,
    /// Not JSON: the text as `message`.
    Text,
    /// Text as `message` although it starts like an object: broken JSON (`NaN`, an object cut
    /// off, lines that are not all objects). Counted, so that attributes missing in New Relic
    /// can be traced to their cause.
    BrokenObject,
}

/// Writes the enriched object for `text` (valid UTF-8, not blank) into `out`, and says what
/// it was.
///
/// `id_json` is the record id as a JSON string literal; `scanner` is scratch space reused
/// across records.
pub(crate) fn enrich(
    text: &str,
    id_json: &[u8],
    stamp: &Stamp,
    scanner: &mut ObjectScan,
    out: &mut Vec<u8>,
) -> Shape {
    let body = strip_line_ending(text);
    let start = body.len() - body.trim_start_matches(is_json_whitespace).len();
    let shape = if body.as_bytes().get(start) == Some(&b'{') {
        if object(body, start, id_json, stamp, scanner, out) {
            one_line(out);
            return Shape::Object;
        }
        out.clear();
        if enrich_lines(body, id_json, stamp, scanner, out) {
            return Shape::Lines;
        }
        out.clear();
        Shape::BrokenObject
    } else if let Ok(value) = serde_json::from_str::<&RawValue>(body) {
        if enrich_array(value.get(), id_json, stamp, scanner, out) {
            return Shape::Array;
        }
        out.clear();
        out.extend_from_slice(b"{\"message\":");
        out.extend_from_slice(value.get().as_bytes());
        out.push(b',');
        stamp.finish(id_json, out);
        one_line(out);
        return Shape::Value;
    } else {
        Shape::Text
    };
    out.extend_from_slice(b"{\"message\":");
    json::write_escaped(out, body);
    out.push(b',');
    stamp.finish(id_json, out);
    shape
}

/// Enriches `body` as several JSON objects, one per line (blank lines left out), each with
/// our members and still one per line: New Relic's Firehose endpoint reads such a record line
/// by line (`newrelic-logs.md` §1b), so wrapping it whole as text would turn its events into
/// one. False, with `out` to be cleared, unless every non-blank line is an object and there
/// are at least two.
fn enrich_lines(
    body: &str,
    id_json: &[u8],
    stamp: &Stamp,
    scanner: &mut ObjectScan,
    out: &mut Vec<u8>,
) -> bool {
    let mut objects = 0usize;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let start = line.len() - line.trim_start_matches(is_json_whitespace).len();
        if start == line.len() {
            continue;
        }
        if line.as_bytes()[start] != b'{' {
            return false;
        }
        if objects > 0 {
            out.push(b'\n');
        }
        let from = out.len();
        if !object(line, start, id_json, stamp, scanner, out) {
            return false;
        }
        // A bare `\r` between tokens (the line was split at `\n` only) becomes a space too,
        // as in a single object: a reader that breaks lines at `\r` would split the event.
        one_line(&mut out[from..]);
        objects += 1;
    }
    objects >= 2
}

/// Enriches `value` (valid JSON) as an array of objects: each object with our members, on a
/// line of its own, as several objects one per line are. New Relic keeps an array in an
/// attribute as one unparsed string, so `{"message":[…]}` would hide every event in it, where a
/// front door that splits a JSON array into events (as `ingest` does) would have sent each on
/// its own. False, with `out` to be cleared, for anything else: another value, an empty array,
/// an array with an element that is not an object.
fn enrich_array(
    value: &str,
    id_json: &[u8],
    stamp: &Stamp,
    scanner: &mut ObjectScan,
    out: &mut Vec<u8>,
) -> bool {
    // An array whose first element is not an object is a `message` whatever follows: decided
    // before the whole array is parsed (a 1 MB array of numbers would be parsed for nothing).
    if !value.starts_with('[') || !value[1..].trim_start().starts_with('{') {
        return false;
    }
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(value) else {
        return false;
    };
    if items.is_empty() {
        return false;
    }
    for (i, item) in items.iter().enumerate() {
        let item = item.get();
        if !item.starts_with('{') {
            return false;
        }
        if i > 0 {
            out.push(b'\n');
        }
        let from = out.len();
        if !object(item, 0, id_json, stamp, scanner, out) {
            return false;
        }
        one_line(&mut out[from..]);
    }
    true
}

/// Appends the object that opens at `start` of `text` with our members (the record id as the
/// JSON literal `id_json`); false, with `out` to be cleared, if `text` is not one object.
fn object(
    text: &str,
    start: usize,
    id_json: &[u8],
    stamp: &Stamp,
    scanner: &mut ObjectScan,
    out: &mut Vec<u8>,
) -> bool {
    if scanner.scan(text, start).is_err() || !splice(text, &scanner.members, out) {
        return false;
    }
    stamp.finish(id_json, out);
    true
}

/// Turns the line breaks of valid JSON `out` into spaces
/// ([`json_scan::line_breaks_to_spaces`]), so a pretty-printed event leaves as one line, as the
/// seed's `json.dumps` wrote it, with no value and no length changed: the response budget
/// computed for the record still holds.
///
/// New Relic's Firehose endpoint appears to split a record on newlines and read each line as
/// an event (`newrelic-logs.md` §1b: seen for NDJSON records, unconfirmed for multi-line
/// objects); an object spread over lines would then arrive as broken fragments.
fn one_line(out: &mut [u8]) {
    json_scan::line_breaks_to_spaces(out);
}

/// `text` without one trailing `\n` or `\r\n`.
fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix('\n')
        .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t))
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Copies the members we keep from `body` into `out` as `{m1,m2,...,` (or `{` when none).
///
/// Returns false if the offsets do not fit the text, which cannot happen after a successful
/// [`ObjectScan::scan`]; the caller then wraps the text.
fn splice(body: &str, members: &[Member], out: &mut Vec<u8>) -> bool {
    let bytes = body.as_bytes();
    out.reserve(bytes.len() + 96);
    out.push(b'{');
    // Kept members that follow each other with nothing but a `,` between them are copied as
    // one run, so a typical record (none of its members named like ours) is a single copy.
    let mut kept_any = false;
    let mut copy = |(start, end): (usize, usize), out: &mut Vec<u8>| {
        let Some(text) = bytes.get(start..end) else {
            return false;
        };
        if kept_any {
            out.push(b',');
        }
        out.extend_from_slice(text);
        kept_any = true;
        true
    };
    let mut run = None;
    for member in members.iter().filter(|m| !m.ours) {
        run = match run {
            Some((start, end)) if member.start == end + 1 => Some((start, member.value_end)),
            previous => {
                if previous.is_some_and(|done| !copy(done, out)) {
                    return false;
                }
                Some((member.start, member.value_end))
            }
        };
    }
    if run.is_some_and(|done| !copy(done, out)) {
        return false;
    }
    if kept_any {
        out.push(b',');
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STAMP_MS: i64 = 1_770_249_600_123;

    fn run(text: &str) -> String {
        run_shaped(text).0
    }

    fn run_shaped(text: &str) -> (String, Shape) {
        let mut out = Vec::new();
        let shape = enrich(
            text,
            b"\"id-1\"",
            &Stamp::new(STAMP_MS),
            &mut ObjectScan::default(),
            &mut out,
        );
        (String::from_utf8(out).unwrap(), shape)
    }

    #[test]
    fn ndjson_in_one_record_is_enriched_line_by_line() {
        let input = "{\"a\":1}\r\n\n  {\"b\":\"x\",\"transformed\":0}\n{}\n";
        let (out, shape) = run_shaped(input);
        assert_eq!(shape, Shape::Lines);
        assert_eq!(
            out,
            format!("{{\"a\":1,{OURS}\n{{\"b\":\"x\",{OURS}\n{{{OURS}")
        );
        for line in out.lines() {
            let _: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        }
        // A bare `\r` inside a line (between tokens) becomes a space, as in a single object.
        let (out, shape) = run_shaped("{\"a\":1,\r\"b\":2}\n{\"c\":3}\n");
        assert_eq!(shape, Shape::Lines);
        assert_eq!(out, format!("{{\"a\":1, \"b\":2,{OURS}\n{{\"c\":3,{OURS}"));
        // One line that is not an object, or is broken: the record is text, counted as such.
        for broken in [
            "{\"a\":1}\n[2]\n",
            "{\"a\":1}\n{\"b\":\n",
            "{\"latency\":NaN}",
        ] {
            let (out, shape) = run_shaped(broken);
            assert_eq!(shape, Shape::BrokenObject, "{broken:?}");
            assert!(out.starts_with("{\"message\":\"{"), "{out}");
        }
        assert_eq!(run_shaped("{\"a\":1}").1, Shape::Object);
        assert_eq!(run_shaped("[1]").1, Shape::Value);
        assert_eq!(run_shaped("plain words").1, Shape::Text);
    }

    const OURS: &str = r#""transformed":true,"_transformed_ts":1770249600123,"_record_id":"id-1"}"#;

    #[test]
    fn an_array_of_objects_is_enriched_one_object_per_line() {
        let (out, shape) =
            run_shaped("[{\"a\":1},\n  {\"b\":{\"c\":[1,2]},\n   \"transformed\":0}]\n");
        assert_eq!(shape, Shape::Array);
        assert_eq!(
            out,
            format!("{{\"a\":1,{OURS}\n{{\"b\":{{\"c\":[1,2]}},{OURS}")
        );
        for line in out.lines() {
            let _: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        }
        assert_eq!(run_shaped(" [ {\"a\":1} ] ").0, format!("{{\"a\":1,{OURS}"));
        // Not an array of objects: the value goes in `message`, as any other.
        for (value, message) in [
            ("[]", "[]"),
            ("[1,2,3]", "[1,2,3]"),
            ("[{\"a\":1},2]", "[{\"a\":1},2]"),
            ("[{\"a\":1},[{\"b\":2}]]", "[{\"a\":1},[{\"b\":2}]]"),
        ] {
            let (out, shape) = run_shaped(value);
            assert_eq!(shape, Shape::Value, "{value}");
            assert_eq!(out, format!("{{\"message\":{message},{OURS}"), "{value}");
        }
    }

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
        let input = "  {\t  \"a\" : 1 ,\t  \"b\":[ 2 ]\t}\n";
        assert_eq!(
            run(input),
            format!("{{\t  \"a\" : 1,\t  \"b\":[ 2 ],{OURS}")
        );
    }

    #[test]
    fn a_pretty_printed_event_leaves_as_one_line_with_its_values_unchanged() {
        let input = "{\r\n  \"a\": 1,\n  \"s\": \"line\\nbreak\",\n  \"b\": [1,\n 2]\n}\n";
        let out = run(input);
        assert_eq!(
            out,
            format!("{{    \"a\": 1,   \"s\": \"line\\nbreak\",   \"b\": [1,  2],{OURS}")
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed["s"], "line\nbreak",
            "an escaped newline is data and stays"
        );
        assert_eq!(parsed["b"], serde_json::json!([1, 2]));
        // The same for a value that is not an object, and for text (escaped, as before).
        assert_eq!(run("[1,\n2]"), format!("{{\"message\":[1, 2],{OURS}"));
        assert_eq!(
            run("two\nlines"),
            format!("{{\"message\":\"two\\nlines\",{OURS}")
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
    fn the_record_id_literal_is_copied_as_it_came() {
        let mut out = Vec::new();
        enrich(
            "{}",
            br#""id\"\\\u00e9""#,
            &Stamp::new(1),
            &mut ObjectScan::default(),
            &mut out,
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["_record_id"], "id\"\\é");
        assert!(out.ends_with(br#""_record_id":"id\"\\\u00e9"}"#));
    }
}
