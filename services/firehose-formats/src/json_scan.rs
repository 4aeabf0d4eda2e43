//! A JSON (RFC 8259) grammar scanner: is this text valid JSON, and where do its values end.
//! Nothing is decoded and nothing is allocated (but a stack of open containers, reused).
//!
//! `serde_json` answers the same questions through a general deserializer (`&RawValue`) that
//! walks strings eight bytes at a time: ~1.2–1.9 GB/s on realistic log events, the largest cost
//! of the transform Lambda's invocation and of the front door's validation. Log events are
//! mostly string bytes (a long `message`, ids, paths), so this is a small grammar whose string
//! loop is as fast as the machine allows without `unsafe` (see `string_stop`).
//!
//! It accepts exactly what `serde_json` accepts for UTF-8 text (property tests here and in the
//! transform keep the two in step): the RFC 8259 grammar, unlimited nesting (iterative, never
//! recursive), escapes checked for form (`\uXXXX` needs four hex digits). It says only
//! *whether* text is valid; callers that must explain an error ask `serde_json` then, for its
//! line and column.
//!
//! Used by the transform (`services/transform/src/scan.rs`: top-level members of a record,
//! the Firehose event itself) and the front door (`ingest`'s event validation).

use std::borrow::Cow;

/// The text broke the JSON grammar (or, for the transform's `ObjectScan::scan`, is not one
/// object). Which rule failed does not matter to the callers: a record is then wrapped as
/// text, an event is refused with the byte offset ([`Cursor::pos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidJson;

pub type Scan<T> = Result<T, InvalidJson>;

/// The text of a JSON string literal (quotes included) that holds escapes. The rare path:
/// `serde_json` does the unescaping; a `\u` escape that is not valid UTF-16 is an error.
pub fn unescape(literal: &[u8]) -> Scan<String> {
    serde_json::from_slice(literal).map_err(|_| InvalidJson)
}

/// The bytes that end a plain run inside a JSON string (the closing quote, the start of an
/// escape, and the control characters JSON forbids raw) among eight bytes read little-endian,
/// as the high bit of each byte. Exact for the lowest flagged byte (the borrow of the
/// subtraction can only mark bytes above a real hit), which is the only one used.
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

/// A position in JSON text, and the grammar rules that move it.
#[derive(Debug)]
pub struct Cursor<'t> {
    bytes: &'t [u8],
    /// Offset of the next byte to read.
    pub pos: usize,
}

impl<'t> Cursor<'t> {
    #[inline]
    pub fn new(bytes: &'t [u8], pos: usize) -> Self {
        Self { bytes, pos }
    }

    /// The next byte, not consumed.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Whether only whitespace is left.
    #[inline]
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.bytes.len()
    }

    /// Consumes a string whose opening quote was just consumed; returns the offsets of the
    /// whole literal (quotes included) and whether it holds an escape.
    #[inline]
    pub fn string_literal(&mut self) -> Scan<(usize, usize, bool)> {
        let start = self.opening_quote()?;
        let escaped = self.skip_string()?;
        Ok((start, self.pos, escaped))
    }

    #[inline]
    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and consumes the next byte.
    #[inline]
    pub fn next_non_ws(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    pub fn expect(&mut self, want: u8) -> Scan<()> {
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
    /// Always inlined, like `skip_string`: called once per member on the hot path
    /// (callgrind: 104.5 M instructions per three invocations as a call, 100.8 M inlined).
    #[inline]
    pub fn member_name(&mut self) -> Scan<Cow<'t, [u8]>> {
        let start = self.opening_quote()?;
        let escaped = self.skip_string()?;
        let quoted = &self.bytes[start..self.pos];
        if escaped {
            Ok(Cow::Owned(unescape(quoted)?.into_bytes()))
        } else {
            Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]))
        }
    }

    /// The offset of the quote just consumed; an error if the byte before `pos` is not one (a
    /// caller that did not consume it gets an error, not a panic or a bogus offset).
    #[inline]
    fn opening_quote(&self) -> Scan<usize> {
        let start = self.pos.checked_sub(1).ok_or(InvalidJson)?;
        if self.bytes.get(start) == Some(&b'"') {
            Ok(start)
        } else {
            Err(InvalidJson)
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
    #[inline]
    pub fn skip_value(&mut self, stack: &mut Vec<bool>) -> Scan<()> {
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

/// Checks that `text` is exactly one JSON value with only JSON whitespace around it.
///
/// # Errors
/// [`InvalidJson`] when it is not.
pub fn one_value(text: &str) -> Scan<()> {
    let mut cursor = Cursor::new(text.as_bytes(), 0);
    cursor.skip_value(&mut Vec::new())?;
    if cursor.at_end() {
        Ok(())
    } else {
        Err(InvalidJson)
    }
}

/// The elements of `text`, which must be exactly one JSON array with only JSON whitespace
/// around it, as slices of `text` (each element's own text, no whitespace around it).
///
/// # Errors
/// [`InvalidJson`] when `text` is not one valid array.
pub fn array_elements(text: &str) -> Scan<Vec<&str>> {
    array_elements_up_to(text, usize::MAX)
}

/// As [`array_elements`], but stops at the element after the first `max`: then it returns
/// those `max + 1` elements without looking at the rest of `text` (valid or not), which is
/// enough for a caller to refuse a body with too many elements without listing them all.
///
/// # Errors
/// [`InvalidJson`] when `text` is not one valid array (as far as it was read).
pub fn array_elements_up_to(text: &str, max: usize) -> Scan<Vec<&str>> {
    let mut cursor = Cursor::new(text.as_bytes(), 0);
    let mut stack = Vec::new();
    let mut elements = Vec::new();
    if cursor.next_non_ws() != Some(b'[') {
        return Err(InvalidJson);
    }
    cursor.skip_ws();
    if cursor.peek() == Some(b']') {
        cursor.pos += 1;
    } else {
        loop {
            cursor.skip_ws();
            let start = cursor.pos;
            cursor.skip_value(&mut stack)?;
            // Both ends are at ASCII bytes (a value's first and last), so on char boundaries.
            elements.push(text.get(start..cursor.pos).ok_or(InvalidJson)?);
            if elements.len() > max {
                return Ok(elements);
            }
            match cursor.next_non_ws() {
                Some(b',') => {}
                Some(b']') => break,
                _ => return Err(InvalidJson),
            }
        }
    }
    if cursor.at_end() {
        Ok(elements)
    } else {
        Err(InvalidJson)
    }
}

/// Turns the line breaks of valid JSON `text` into spaces, in place: the same value on one
/// line, of the same length.
///
/// In valid JSON a raw `\n` or `\r` can only be whitespace between tokens (RFC 8259 §7: inside
/// strings they must be escaped), so a space means the same. Records are read line by line
/// downstream (S3 backup objects, error output, the replay tool, New Relic's endpoint), so the
/// front door (its records) and the transform (its output) both keep a pretty-printed event to
/// one line with this.
pub fn line_breaks_to_spaces(text: &mut [u8]) {
    if memchr::memchr2(b'\n', b'\r', text).is_none() {
        return;
    }
    for byte in text.iter_mut() {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn line_breaks_become_spaces_and_nothing_else_changes() {
        let mut text = b"{\r\n \"a\": \"x\\ny\",\t\"b\":\n[1]\n}".to_vec();
        line_breaks_to_spaces(&mut text);
        assert_eq!(text, b"{   \"a\": \"x\\ny\",\t\"b\": [1] }");
        let mut one_line = b"{\"a\":1}".to_vec();
        line_breaks_to_spaces(&mut one_line);
        assert_eq!(one_line, b"{\"a\":1}");
    }

    #[test]
    fn a_string_without_its_opening_quote_is_an_error_not_a_panic() {
        assert_eq!(Cursor::new(b"ab\"", 0).member_name(), Err(InvalidJson));
        assert_eq!(Cursor::new(b"ab\"", 0).string_literal(), Err(InvalidJson));
        assert_eq!(Cursor::new(b"xab\"", 1).member_name(), Err(InvalidJson));
        let mut c = Cursor::new(b"\"ab\"", 1);
        assert_eq!(c.string_literal(), Ok((0, 4, false)));
    }

    const fn stops_string(b: u8) -> bool {
        b == b'"' || b == b'\\' || b < 0x20
    }

    /// The oracle: serde_json's verdict and element texts.
    fn serde_elements(text: &str) -> Option<Vec<&str>> {
        serde_json::from_str::<Vec<&RawValue>>(text)
            .ok()
            .map(|items| items.into_iter().map(RawValue::get).collect())
    }

    /// The scanner splits `text` as serde_json's `RawValue` does, and takes it as one value when
    /// serde_json does.
    fn agrees_with_serde_json(text: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            array_elements(text).ok(),
            serde_elements(text),
            "{:?}",
            text
        );
        prop_assert_eq!(
            one_value(text).is_ok(),
            serde_json::from_str::<&RawValue>(text).is_ok(),
            "{:?}",
            text
        );
        Ok(())
    }

    /// Pieces of JSON and of near-JSON: every literal, number part, escape (good and bad),
    /// whitespace, control and non-ASCII character the scanner treats specially.
    fn json_token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            "\"",
            "\\",
            "\\u",
            "\\n",
            "\\/",
            "\\x",
            "00e9",
            "d83d",
            "dc00",
            "zz",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "0",
            "1",
            "9",
            "01",
            "-",
            "+",
            ".",
            "e",
            "E",
            "1e",
            "a",
            " ",
            "\t",
            "\n",
            "\r",
            "\u{c}",
            "\u{1}",
            "\u{7f}",
            "\u{a0}",
            "\u{2028}",
            "\u{feff}",
            "é",
            "😀",
            "abcdefghijklmnopqrstuvwxyz0123456789",
        ])
    }

    /// Any JSON value, strings long enough to reach the scanner's `memchr` path among them.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,120}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn arrays_split_into_their_elements() {
        assert_eq!(
            array_elements(" [ {\"a\":[1,2]} , \"x\",3.5e-1,null ]\n").unwrap(),
            vec!["{\"a\":[1,2]}", "\"x\"", "3.5e-1", "null"]
        );
        assert_eq!(array_elements("[]").unwrap(), Vec::<&str>::new());
        for bad in ["[", "[1,]", "[,1]", "[1 2]", "[1]x", "{}", "", "[\"\\x\"]"] {
            assert_eq!(array_elements(bad), Err(InvalidJson), "{bad:?}");
            assert_eq!(serde_elements(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_capped_split_stops_at_the_element_over_the_cap() {
        assert_eq!(
            array_elements_up_to("[1, 2, 3, not json", 2),
            Ok(vec!["1", "2", "3"])
        );
        // At or under the cap it is the whole check, as array_elements.
        assert_eq!(array_elements_up_to("[1, 2]", 2), Ok(vec!["1", "2"]));
        assert_eq!(array_elements_up_to("[1, 2] x", 2), Err(InvalidJson));
        assert_eq!(array_elements_up_to("[1, x, 3]", 2), Err(InvalidJson));
    }

    #[test]
    fn one_value_is_one_value() {
        for good in ["{}", " {\"a\": \"\\u00e9\"} ", "[]", "1", "\"s\"", "true"] {
            assert_eq!(one_value(good), Ok(()), "{good:?}");
        }
        for bad in ["", "{} {}", "{\"a\":}", "01", "\"\u{1}\"", "nul"] {
            assert_eq!(one_value(bad), Err(InvalidJson), "{bad:?}");
            assert!(serde_json::from_str::<&RawValue>(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
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
        fn arrays_agree_with_serde_json(text in r#"[ \[\]{},:"a0.e\-\\]{0,24}"#) {
            agrees_with_serde_json(&text)?;
        }

        #[test]
        fn token_soup_agrees_with_serde_json(
            tokens in prop::collection::vec(json_token(), 0..40),
        ) {
            agrees_with_serde_json(&tokens.concat())?;
        }

        #[test]
        fn valid_arrays_split_as_serde_json_does(
            items in prop::collection::vec(json_value(), 0..8),
            pretty in any::<bool>(),
        ) {
            let array = serde_json::Value::Array(items);
            let text = if pretty {
                serde_json::to_string_pretty(&array)
            } else {
                serde_json::to_string(&array)
            }
            .expect("serializes");
            let ours = array_elements(&text);
            prop_assert!(ours.is_ok(), "{:?}", text);
            prop_assert_eq!(ours.ok(), serde_elements(&text), "{:?}", text);
            prop_assert_eq!(one_value(&text), Ok(()));
        }

        #[test]
        fn any_text_agrees_with_serde_json(text in any::<String>()) {
            agrees_with_serde_json(&text)?;
        }
    }
}
