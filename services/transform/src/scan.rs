//! Validates one JSON object and finds where its top-level members end: the transform's hot loop.
//!
//! Enrichment ([`crate::enrich`]) needs three things from a record that starts with `{`: is it
//! exactly one valid JSON object, where does each top-level member's value end, and is the
//! member's name one of [`ADDED_KEYS`]. Nothing is decoded and nothing is allocated.
//!
//! `serde_json` answered the same questions (a map visitor over `&RawValue` values) and was
//! the largest cost of the whole invocation: ~1.2–1.9 GB/s on realistic logs, spent walking
//! strings eight bytes at a time through a general deserializer. `sonic-rs` (SIMD) measured
//! slower still on these small objects (`to_object_iter`: ~0.8 GB/s). Log records are mostly
//! string bytes (a long `message`, ids, paths), so this scanner is a small RFC 8259 grammar
//! whose string loop is as fast as the machine allows without `unsafe` (see [`string_stop`]).
//!
//! It accepts exactly what the `serde_json` scan accepted (a property test keeps the two in
//! step): the RFC 8259 grammar, unlimited nesting (iterative, never recursive), escapes
//! checked for form (`\uXXXX` needs four hex digits), UTF-8 already guaranteed by the caller.
//! Member names are unescaped only when they contain a backslash, to compare them with ours;
//! like `serde_json`, a name whose `\u` escapes are not valid UTF-16 makes the object invalid.
//!
//! The same [`Cursor`] reads the Firehose event itself ([`crate::event`]), where the long
//! base64 `data` strings are exactly what the `memchr` path of [`string_stop`] is fastest on.

use std::borrow::Cow;

use crate::ADDED_KEYS;

/// Where one top-level member of an object starts and ends, and whether it is one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// Byte offset just past the `{` or `,` before the member (any whitespace before its name
    /// belongs to the member).
    pub(crate) start: usize,
    /// Byte offset just past the member's value.
    pub(crate) value_end: usize,
    /// The member's (unescaped) name is one of [`ADDED_KEYS`].
    pub(crate) ours: bool,
}

/// The text broke the JSON grammar (or, for [`ObjectScan::scan`], is not one object). Which
/// rule failed does not matter to the callers: a record is then wrapped as text, an event is
/// refused with the byte offset ([`Cursor::pos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidJson;

pub(crate) type Scan<T> = Result<T, InvalidJson>;

/// Buffers reused from record to record.
#[derive(Debug, Default)]
pub(crate) struct ObjectScan {
    /// The top-level members of the last successful [`Self::scan`], in order.
    pub(crate) members: Vec<Member>,
    /// Open containers while skipping a value: `true` for an object, `false` for an array.
    stack: Vec<bool>,
}

impl ObjectScan {
    /// Checks that `text` is one JSON object, with only JSON whitespace around it, whose `{`
    /// is at `open`; on success [`Self::members`] lists its top-level members.
    pub(crate) fn scan(&mut self, text: &str, open: usize) -> Scan<()> {
        self.members.clear();
        let mut cursor = Cursor::new(text.as_bytes(), open);
        cursor.expect(b'{')?;
        let mut start = cursor.pos;
        match cursor.next_non_ws() {
            Some(b'}') => {}
            Some(b'"') => loop {
                let name = cursor.member_name()?;
                let ours = ADDED_KEYS.iter().any(|ours| ours.as_bytes() == &*name);
                cursor.skip_ws();
                cursor.expect(b':')?;
                cursor.skip_value(&mut self.stack)?;
                self.members.push(Member {
                    start,
                    value_end: cursor.pos,
                    ours,
                });
                match cursor.next_non_ws() {
                    Some(b',') => {
                        start = cursor.pos;
                        if cursor.next_non_ws() != Some(b'"') {
                            return Err(InvalidJson);
                        }
                    }
                    Some(b'}') => break,
                    _ => return Err(InvalidJson),
                }
            },
            _ => return Err(InvalidJson),
        }
        if cursor.at_end() {
            Ok(())
        } else {
            Err(InvalidJson)
        }
    }
}

/// The text of a JSON string literal (quotes included) that holds escapes. The rare path:
/// `serde_json` does the unescaping; a `\u` escape that is not valid UTF-16 is an error.
pub(crate) fn unescape(literal: &[u8]) -> Scan<String> {
    serde_json::from_slice(literal).map_err(|_| InvalidJson)
}

/// The bytes that end a plain run inside a JSON string (the closing quote, the start of an
/// escape, and the control characters JSON forbids raw) among eight bytes read little-endian,
/// as the high bit of each byte. Exact for the lowest flagged byte (the borrow of the subtraction can only mark
/// bytes above a real hit), which is the only one used.
const fn word_stops(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const fn below(word: u64, n: u8) -> u64 {
        word.wrapping_sub(ONES * n as u64) & !word & HIGHS
    }
    below(word ^ (ONES * b'"' as u64), 1)
        | below(word ^ (ONES * b'\\' as u64), 1)
        | below(word, 0x20)
}

/// Bytes looked at eight at a time before handing a string to `memchr`.
const SHORT: usize = 16;

/// Offset of the first byte of `bytes` that ends a plain run inside a JSON string: `"`, `\\`
/// or a control character.
///
/// Most strings in a log are short (names, levels, ids): their first [`SHORT`] bytes are
/// tested eight at a time with [`word_stops`]. The rest of a longer string (a `message`, a
/// record's base64 `data`) is searched for `"` and `\` by `memchr`, which picks AVX2 or SSE2
/// at run time, and the run before that hit is checked for control characters with a
/// branch-free minimum that the compiler vectorises.
#[inline]
fn string_stop(bytes: &[u8]) -> Option<usize> {
    let (words, _) = bytes.as_chunks::<8>();
    for (i, word) in words.iter().take(SHORT / 8).enumerate() {
        let stops = word_stops(u64::from_le_bytes(*word));
        if stops != 0 {
            return Some(i * 8 + (stops.trailing_zeros() / 8) as usize);
        }
    }
    let start = (words.len() * 8).min(SHORT);
    let rest = &bytes[start..];
    let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let run = &rest[..end];
    if run.iter().fold(u8::MAX, |low, &b| low.min(b)) < 0x20 {
        return run.iter().position(|&b| b < 0x20).map(|i| start + i);
    }
    (end < rest.len()).then_some(start + end)
}

/// A position in JSON text, and the grammar rules that move it. Also used by
/// [`crate::event`] to read the Firehose event itself.
#[derive(Debug)]
pub(crate) struct Cursor<'t> {
    bytes: &'t [u8],
    /// Offset of the next byte to read.
    pub(crate) pos: usize,
}

impl<'t> Cursor<'t> {
    pub(crate) fn new(bytes: &'t [u8], pos: usize) -> Self {
        Self { bytes, pos }
    }

    /// The next byte, not consumed.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.bytes.len()
    }

    /// Consumes a string whose opening quote was just consumed; returns the offsets of the
    /// whole literal (quotes included) and whether it holds an escape.
    pub(crate) fn string_literal(&mut self) -> Scan<(usize, usize, bool)> {
        let start = self.pos - 1;
        let escaped = self.skip_string()?;
        Ok((start, self.pos, escaped))
    }

    pub(crate) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and consumes the next byte.
    pub(crate) fn next_non_ws(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn expect(&mut self, want: u8) -> Scan<()> {
        if self.bytes.get(self.pos) == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(InvalidJson)
        }
    }

    /// Consumes the rest of a string whose opening quote was just consumed; returns whether it
    /// contained an escape.
    ///
    /// Always inlined: most strings are a few bytes long, and the call itself cost more than
    /// scanning them (−6 % instructions for the whole invocation under callgrind).
    #[inline(always)]
    fn skip_string(&mut self) -> Scan<bool> {
        let mut escaped = false;
        loop {
            let rest = self.bytes.get(self.pos..).ok_or(InvalidJson)?;
            let stop = string_stop(rest).ok_or(InvalidJson)?;
            self.pos += stop + 1;
            match rest[stop] {
                b'"' => return Ok(escaped),
                b'\\' => {
                    escaped = true;
                    self.skip_escape()?;
                }
                _ => return Err(InvalidJson),
            }
        }
    }

    /// Consumes an escape whose backslash was just consumed.
    fn skip_escape(&mut self) -> Scan<()> {
        match self.bytes.get(self.pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                let hex = self
                    .bytes
                    .get(self.pos + 1..self.pos + 5)
                    .ok_or(InvalidJson)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(InvalidJson);
                }
                self.pos += 5;
            }
            _ => return Err(InvalidJson),
        }
        Ok(())
    }

    /// Consumes a member name whose opening quote was just consumed; returns it unescaped
    /// (borrowed unless it held an escape). Like `serde_json`, a name whose `\u` escapes are
    /// not valid UTF-16 is an error.
    ///
    /// Always inlined, like [`Self::skip_string`]: called once per member on the hot path
    /// (callgrind: 104.5 M instructions per three invocations as a call, 100.8 M inlined).
    pub(crate) fn member_name(&mut self) -> Scan<Cow<'t, [u8]>> {
        let start = self.pos - 1;
        let escaped = self.skip_string()?;
        let quoted = &self.bytes[start..self.pos];
        if escaped {
            Ok(Cow::Owned(unescape(quoted)?.into_bytes()))
        } else {
            Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]))
        }
    }

    /// Consumes one number whose first byte (`-` or a digit) is at `pos`.
    fn skip_number(&mut self) -> Scan<()> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(InvalidJson),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.require_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        Ok(())
    }

    fn skip_digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Scan<()> {
        let start = self.pos;
        self.skip_digits();
        if self.pos == start {
            Err(InvalidJson)
        } else {
            Ok(())
        }
    }

    fn skip_literal(&mut self, literal: &[u8]) -> Scan<()> {
        if self
            .bytes
            .get(self.pos..)
            .is_some_and(|r| r.starts_with(literal))
        {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(InvalidJson)
        }
    }

    /// Consumes whitespace and then one complete value, iteratively: nesting depth costs heap
    /// (`stack`), never call stack.
    pub(crate) fn skip_value(&mut self, stack: &mut Vec<bool>) -> Scan<()> {
        stack.clear();
        loop {
            // A value is expected here.
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b'{') => {
                    self.pos += 1;
                    match self.next_non_ws() {
                        Some(b'}') => {}
                        Some(b'"') => {
                            self.skip_string()?;
                            self.skip_ws();
                            self.expect(b':')?;
                            stack.push(true);
                            continue;
                        }
                        _ => return Err(InvalidJson),
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.bytes.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                    } else {
                        stack.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    self.skip_string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                Some(b't') => self.skip_literal(b"true")?,
                Some(b'f') => self.skip_literal(b"false")?,
                Some(b'n') => self.skip_literal(b"null")?,
                _ => return Err(InvalidJson),
            }
            // A value just ended: close containers until one expects another element.
            loop {
                let Some(&in_object) = stack.last() else {
                    return Ok(());
                };
                match (self.next_non_ws(), in_object) {
                    (Some(b','), true) => {
                        if self.next_non_ws() != Some(b'"') {
                            return Err(InvalidJson);
                        }
                        self.skip_string()?;
                        self.skip_ws();
                        self.expect(b':')?;
                        break;
                    }
                    (Some(b','), false) => break,
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        stack.pop();
                    }
                    _ => return Err(InvalidJson),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt;

    use proptest::prelude::*;
    use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
    use serde_json::value::RawValue;

    use super::*;

    const fn stops_string(b: u8) -> bool {
        b == b'"' || b == b'\\' || b < 0x20
    }

    fn scan(text: &str) -> Option<Vec<Member>> {
        let open = text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len();
        let mut scanner = ObjectScan::default();
        scanner.scan(text, open).ok().map(|()| scanner.members)
    }

    /// The previous implementation, kept as the oracle: serde_json validates the object and
    /// each value is borrowed as a `&RawValue`, whose end is the member's end.
    fn serde_scan(text: &str) -> Option<Vec<Member>> {
        struct Members<'m> {
            base: usize,
            members: &'m mut Vec<Member>,
        }
        impl<'de> Visitor<'de> for Members<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(name) = map.next_key_seed(Name)? {
                    let value: &'de RawValue = map.next_value()?;
                    let raw = value.get();
                    self.members.push(Member {
                        start: 0, // derived below, from the text
                        value_end: raw.as_ptr().addr() + raw.len() - self.base,
                        ours: ADDED_KEYS.contains(&name.as_str()),
                    });
                }
                Ok(())
            }
        }
        struct Name;
        impl<'de> DeserializeSeed<'de> for Name {
            type Value = String;
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
                de::Deserialize::deserialize(d)
            }
        }
        let mut members = Vec::new();
        let mut de = serde_json::Deserializer::from_str(text);
        (&mut de)
            .deserialize_map(Members {
                base: text.as_ptr().addr(),
                members: &mut members,
            })
            .ok()?;
        de.end().ok()?;
        // A member starts after the object's `{`, or after the `,` that follows the previous
        // value and the whitespace after it.
        let bytes = text.as_bytes();
        let mut start = text.find('{')? + 1;
        for member in &mut members {
            member.start = start;
            let gap = bytes[member.value_end..]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            start = member.value_end + gap + 1;
        }
        Some(members)
    }

    #[test]
    fn finds_member_ends_and_our_names() {
        let text = r#" {"a":1, "transformed" : [true,{"x":"y"}] ,"_record_id":"q\"","b":{}} "#;
        let members = scan(text).unwrap();
        let ends: Vec<&str> = members.iter().map(|m| &text[..m.value_end]).collect();
        assert!(ends[0].ends_with(r#""a":1"#));
        assert!(ends[1].ends_with(r#"[true,{"x":"y"}]"#));
        assert!(ends[2].ends_with(r#""q\"""#));
        assert!(ends[3].ends_with(r#""b":{}"#));
        let ours: Vec<bool> = members.iter().map(|m| m.ours).collect();
        assert_eq!(ours, [false, true, true, false]);
        assert_eq!(scan(text), serde_scan(text));
    }

    #[test]
    fn escaped_names_are_compared_unescaped() {
        let members = scan(r#"{"_record\u005fid":1,"transforme\u0064x":2}"#).unwrap();
        assert_eq!(
            members.iter().map(|m| m.ours).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn rejects_what_json_forbids() {
        for text in [
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":[1,]}",
            "{\"a\":[1}",
            "{\"a\":{\"b\":1]}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":-}",
            "{\"a\":+1}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":NaN}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"unterminated}",
            "{\"\\ud800\":1}",
            "{\"a\":1}x",
            "{\"a\":1}{}",
            "{'a':1}",
            "{a:1}",
        ] {
            assert_eq!(scan(text), None, "{text:?}");
            assert_eq!(serde_scan(text), None, "oracle disagrees on {text:?}");
        }
    }

    #[test]
    fn accepts_what_json_allows() {
        for text in [
            "{}",
            " \t{ } \r\n",
            "{\"a\":-0.0e+10,\"b\":1E-2,\"c\":[[],{},\"\",null,false]}",
            "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud800\"}",
            "{\"\":\"\"}",
            "{\"é 東京\":\"✓\"}",
        ] {
            assert!(scan(text).is_some(), "{text:?}");
            assert_eq!(scan(text), serde_scan(text), "{text:?}");
        }
    }

    #[test]
    fn long_strings_cross_block_boundaries() {
        for len in [0, 1, 31, 32, 33, 63, 64, 65, 1000] {
            for stop in ["\"", "\\n\"", "\u{1}\""] {
                let text = format!("{{\"m\":\"{}{stop}}}", "x".repeat(len));
                assert_eq!(scan(&text), serde_scan(&text), "{len} {stop:?}");
            }
        }
    }

    #[test]
    fn nesting_depth_is_not_limited_by_the_call_stack() {
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[{\"b\":".repeat(50_000),
            "}]".repeat(50_000)
        );
        assert_eq!(scan(&deep).unwrap().len(), 1);
    }

    /// JSON-ish text: valid objects, then mutated (bytes dropped, duplicated or replaced with
    /// structural characters), so both valid and subtly invalid inputs are common.
    fn object_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            "\"([a-z]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4}){0,40}\"",
            Just("true".to_owned()),
            Just("null".to_owned()),
        ];
        let value = leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[ {} ]", v.join(" , "))),
                prop::collection::vec(("[a-z_]{0,16}", inner), 0..5).prop_map(|m| {
                    let body: Vec<String> =
                        m.iter().map(|(k, v)| format!("\"{k}\" :{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        });
        let name = prop_oneof![
            "[a-z_]{0,16}",
            prop::sample::select(ADDED_KEYS.to_vec()).prop_map(str::to_owned),
            Just("transforme\\u0064".to_owned()),
        ];
        prop::collection::vec((name, value), 0..8).prop_map(|m| {
            let body: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}\n", body.join(","))
        })
    }

    fn mutated() -> impl Strategy<Value = String> {
        (
            object_text(),
            prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<u8>()), 0..3),
        )
            .prop_map(|(text, edits)| {
                let mut bytes = text.into_bytes();
                for (at, kind, b) in edits {
                    if bytes.is_empty() {
                        break;
                    }
                    let i = at.index(bytes.len());
                    let structural = b"{}[]:,\"\\ 0e.-tn\x01"[usize::from(b) % 16];
                    match kind {
                        0 => {
                            bytes.remove(i);
                        }
                        1 => bytes.insert(i, structural),
                        2 => bytes[i] = structural,
                        _ => bytes.insert(i, bytes[i]),
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn agrees_with_serde_json_on_valid_objects(text in object_text()) {
            prop_assert!(scan(&text).is_some());
            prop_assert_eq!(scan(&text), serde_scan(&text));
        }

        #[test]
        fn agrees_with_serde_json_on_mutated_objects(text in mutated()) {
            prop_assert_eq!(scan(&text), serde_scan(&text), "{:?}", text);
        }

        #[test]
        fn word_and_long_tests_find_the_first_stop(bytes in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0..0x20u8, 0x20..0x80u8], 0..80,
        )) {
            let first = bytes.iter().position(|&b| stops_string(b));
            prop_assert_eq!(string_stop(&bytes), first);
            if let Some(word) = bytes.first_chunk::<8>() {
                let stops = word_stops(u64::from_le_bytes(*word));
                let in_word = first.filter(|&i| i < 8).unwrap_or(8);
                prop_assert_eq!((stops.trailing_zeros() / 8) as usize, in_word);
            }
        }

        #[test]
        fn agrees_with_serde_json_on_any_text(text in any::<String>()) {
            prop_assert_eq!(scan(&text), serde_scan(&text));
        }
    }
}
