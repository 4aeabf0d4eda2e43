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

use firehose_formats::json_scan::Scan;
pub(crate) use firehose_formats::json_scan::{Cursor, InvalidJson, unescape};

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt;

    use proptest::prelude::*;
    use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
    use serde_json::value::RawValue;

    use super::*;

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
        fn agrees_with_serde_json_on_any_text(text in any::<String>()) {
            prop_assert_eq!(scan(&text), serde_scan(&text));
        }
    }
}
