//! From request body to Firehose records: content negotiation, gzip with a size cap, JSON
//! parsing with positions, per-event checks, optional JSON Schema.
//!
//! The rule is all-or-nothing: if any event is invalid the request is refused (400) with every
//! problem listed (up to [`MAX_DETAILS`]), and nothing is sent. Valid events become records:
//! the event's bytes as received (whitespace around it trimmed) followed by `\n`, so records
//! stay separable when Firehose concatenates them in S3. For that the record must be one line:
//! the line breaks inside a pretty-printed event become spaces ([`put_one_line`]).

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use firehose_formats::json_scan;
use firehose_formats::limits::MAX_RECORD_BYTES;
use http::{HeaderMap, header};
use serde_json::value::RawValue;

use crate::error::{ApiError, Detail};
use crate::metrics::event_reason;

/// At most this many problems are listed in one 400 answer.
pub const MAX_DETAILS: usize = 100;

/// Largest event: a Firehose record holds at most [`MAX_RECORD_BYTES`], and the record is the
/// event plus one `\n`.
pub const MAX_EVENT_BYTES: usize = MAX_RECORD_BYTES - 1;

/// Deepest nesting of arrays and objects accepted in an event: the most serde_json parses with
/// its default recursion limit (128, which refuses the 128th level), so every serde_json-based
/// consumer downstream can parse what was accepted, and the schema check (serde_json) agrees
/// with the scanner.
pub const MAX_DEPTH: usize = 127;

/// How the body frames events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: one object, or an array of objects.
    Json,
    /// `application/x-ndjson`: one object per non-empty line.
    Ndjson,
}

/// The names newline-delimited JSON goes by: NDJSON's own, and JSON Lines' (`.jsonl`), which
/// shippers and libraries send under several.
const NDJSON_TYPES: [&str; 6] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonl",
    "application/jsonlines",
    "application/x-jsonlines",
];

/// `application/<anything>+json`: a JSON document by the structured-syntax suffix (RFC 6839
/// section 3.1), e.g. `application/cloudevents+json`.
fn is_json_suffix_type(essence: &str) -> bool {
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && subtype.len() > "+json".len()
        && subtype
            .get(subtype.len() - "+json".len()..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

/// Reads the framing from `Content-Type`. A `charset` parameter, if any, must say UTF-8 (or
/// US-ASCII, a subset of it): JSON is UTF-8 (RFC 8259 section 8.1), and a body declared in
/// another charset would be read as something else than what its sender meant.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] for anything but JSON and NDJSON, or another charset.
pub fn framing(headers: &HeaderMap) -> Result<Framing, ApiError> {
    // No `Content-Type` at all is JSON, as API Gateway takes a request without one
    // (https://docs.aws.amazon.com/apigateway/latest/developerguide/integration-passthrough-behaviors.html):
    // old clients of its endpoint may never have sent the header. An empty or unreadable one
    // is refused below.
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Framing::Json);
    };
    let value = value.to_str().unwrap_or("");
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    for parameter in parts {
        let (name, charset) = parameter.split_once('=').unwrap_or((parameter, ""));
        let charset = charset.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|ok| charset.eq_ignore_ascii_case(ok))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "charset {charset:?} is not supported: send JSON as UTF-8 (charset=utf-8, or no charset)"
            )));
        }
    }
    if essence.eq_ignore_ascii_case("application/json") || is_json_suffix_type(essence) {
        Ok(Framing::Json)
    } else if NDJSON_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        Ok(Framing::Ndjson)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {value:?} is not supported: use application/json (an object or an array of objects; also application/<type>+json) or application/x-ndjson (one object per line; also application/jsonl)"
        )))
    }
}

/// A content coding the body may arrive in: the ones API Gateway decompresses
/// (`gzip`, `deflate`, `identity`), which its old clients may send, and `zstd`, which newer
/// shippers offer (Vector's `http` sink, Fluent Bit, the OpenTelemetry Collector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` or `x-gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950) as RFC 9110 §8.4.1.2 defines it; a raw deflate
    /// stream (RFC 1951), which some clients send under that name, is accepted too.
    Deflate,
    /// `zstd` (RFC 8878), with the 8 MB window limit RFC 9659 sets for HTTP
    /// ([`ZSTD_MAX_WINDOW`]).
    Zstd,
}

impl Coding {
    /// The coding's name in messages.
    const fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Zstd => "zstd",
        }
    }

    /// The end of the 413 message for a body over the cap once decompressed.
    const fn after_decompression(self) -> &'static str {
        match self {
            Self::Gzip => " after gzip decompression",
            Self::Deflate => " after deflate decompression",
            Self::Zstd => " after zstd decompression",
        }
    }
}

/// The coding to undo, from `Content-Encoding`: every field line of it and every coding listed
/// (RFC 9110 section 8.4: `gzip, identity` on one line and the same on two lines mean the
/// same). `identity` codings are ignored; one `gzip` (or `x-gzip`), `deflate` or `zstd` layer
/// is supported.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] for any other coding, or more than one layer.
pub fn content_coding(headers: &HeaderMap) -> Result<Option<Coding>, ApiError> {
    let mut layers = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let refuse = || {
            ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {value:?} is not supported: send gzip, deflate or zstd (once) or no encoding"
            ))
        };
        let text = value.to_str().map_err(|_| refuse())?;
        for coding in text.split(',').map(str::trim) {
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                layers.push(Coding::Gzip);
            } else if coding.eq_ignore_ascii_case("deflate") {
                layers.push(Coding::Deflate);
            } else if coding.eq_ignore_ascii_case("zstd") {
                layers.push(Coding::Zstd);
            } else if !(coding.is_empty() || coding.eq_ignore_ascii_case("identity")) {
                return Err(refuse());
            }
        }
    }
    match layers[..] {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding lists {} codings ({}): send the body compressed once",
            layers.len(),
            layers
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Undoes `coding` ([`gunzip`], [`inflate`] or [`unzstd`]). The decoder's own memory is
/// [`decoder_memory`]; `hold` is asked for the output as it grows.
///
/// # Errors
/// As those functions.
pub fn decompress(
    coding: Coding,
    body: &[u8],
    limit: usize,
    hold: impl FnMut(usize) -> bool,
) -> Result<Bytes, ApiError> {
    match coding {
        Coding::Gzip => gunzip(body, limit, hold),
        Coding::Deflate => inflate(body, limit, hold),
        Coding::Zstd => unzstd(body, limit, hold),
    }
}

/// What the decoder of `coding` holds while it decompresses `body`, besides its output: to be
/// counted against the in-flight cap for that time. For zstd that is the largest window a
/// frame of `body` declares plus [`ZSTD_DECODER_BYTES`]; this also checks the frames first
/// ([`zstd_window`]), so a body that is not zstd, or needs a window over RFC 9659's limit, is
/// refused before a decoder exists. gzip and deflate decoders keep a 32 KiB window and their
/// tables (under 64 KiB), which the output pieces' [`DECOMPRESS_PIECE`] slack covers: 0.
///
/// # Errors
/// 400 as [`zstd_window`].
pub fn decoder_memory(coding: Coding, body: &[u8]) -> Result<usize, ApiError> {
    match coding {
        Coding::Gzip | Coding::Deflate => Ok(0),
        Coding::Zstd => Ok(zstd_window(body)?.saturating_add(ZSTD_DECODER_BYTES)),
    }
}

/// Largest zstd window a body may need: RFC 9659 §3 makes 8 MB the limit for the `zstd`
/// content coding (decoders must support it, encoders must not need more); taken as 2^23
/// bytes, libzstd's window log 23. A frame needing more is refused with 400, and libzstd's
/// decoder is held to it too (`window_log_max`), so no body can make it allocate a larger
/// window (libzstd's own default allows 128 MiB).
/// <https://www.rfc-editor.org/rfc/rfc9659#section-3>
pub const ZSTD_MAX_WINDOW_LOG: u32 = 23;

/// [`ZSTD_MAX_WINDOW_LOG`] in bytes.
pub const ZSTD_MAX_WINDOW: usize = 1 << ZSTD_MAX_WINDOW_LOG;

/// libzstd's streaming decoder memory besides the window, rounded up: its context (entropy
/// tables, literal buffer) and its input and output block buffers of 128 KiB each
/// (`ZSTD_estimateDStreamSize(2^23)` is 8,877,880 bytes: the window plus about 478 KiB).
pub const ZSTD_DECODER_BYTES: usize = 512 * 1024;

/// Most zstd frames one body may be made of (skippable ones included), as
/// [`MAX_GZIP_MEMBERS`] for gzip: a client compresses a body as one frame, or a few when it
/// concatenates compressed pieces.
pub const MAX_ZSTD_FRAMES: usize = 1024;

/// The largest window the frames of a zstd `body` declare (RFC 8878 §3.1.1), after checking
/// that `body` is only zstd frames, each complete and needing at most [`ZSTD_MAX_WINDOW`].
/// Checksums and block contents are the decoder's to check.
///
/// # Errors
/// 400 saying what is wrong and at which byte.
pub fn zstd_window(body: &[u8]) -> Result<usize, ApiError> {
    let bad = ApiError::bad_body;
    if body.is_empty() {
        return Err(bad("body is not valid zstd: it is empty".to_owned()));
    }
    let mut rest = body;
    let mut largest = 0;
    let mut frames = 0usize;
    while !rest.is_empty() {
        let at = body.len() - rest.len();
        frames += 1;
        if frames > MAX_ZSTD_FRAMES {
            return Err(bad(format!(
                "body is more than {MAX_ZSTD_FRAMES} zstd frames one after the other: \
                 compress it as one zstd frame"
            )));
        }
        let window = match zstd_frame_header(rest) {
            Ok(FrameHeader {
                dictionary: 0,
                window,
            }) => window,
            Ok(FrameHeader { dictionary, .. }) => {
                return Err(bad(format!(
                    "body is not usable zstd: the frame at byte {at} needs dictionary \
                     {dictionary}, and ingest has no zstd dictionaries: compress without one"
                )));
            }
            Err(HeaderProblem::CutShort) => {
                return Err(bad(format!(
                    "body is not valid zstd: the frame header at byte {at} is cut short"
                )));
            }
            Err(HeaderProblem::NotZstd) if at == 0 => {
                return Err(bad(
                    "body is not valid zstd: it does not start with a zstd frame".to_owned(),
                ));
            }
            Err(HeaderProblem::NotZstd) => {
                return Err(bad(format!(
                    "body is not valid zstd: the {} bytes after the zstd data that ends at \
                     byte {at} are not another zstd frame",
                    rest.len()
                )));
            }
        };
        if window > ZSTD_MAX_WINDOW as u64 {
            return Err(bad(format!(
                "body is not valid zstd for HTTP: the frame at byte {at} needs a window of \
                 {window} bytes, over the 8 MB (8388608 bytes) RFC 9659 allows for \
                 Content-Encoding: zstd; compress with a window of at most 8 MB \
                 (`zstd` up to level 19 without --long does)"
            )));
        }
        let size = zstd::zstd_safe::find_frame_compressed_size(rest)
            .ok()
            .filter(|&size| size > 0 && size <= rest.len())
            .ok_or_else(|| {
                bad(format!(
                    "body is not valid zstd: the frame at byte {at} is incomplete or damaged"
                ))
            })?;
        largest = largest.max(window);
        rest = &rest[size..];
    }
    // At most ZSTD_MAX_WINDOW, checked above.
    Ok(usize::try_from(largest).unwrap_or(ZSTD_MAX_WINDOW))
}

/// What [`zstd_frame_header`] reads of a frame.
#[derive(Debug, PartialEq, Eq)]
struct FrameHeader {
    /// The window the frame needs: from its Window_Descriptor, or its Frame_Content_Size in a
    /// single-segment frame; 0 for a skippable frame.
    window: u64,
    /// Its Dictionary_ID (0: none).
    dictionary: u32,
}

/// Why the bytes at a frame's place are not a frame header.
#[derive(Debug, PartialEq, Eq)]
enum HeaderProblem {
    /// They start with neither the frame magic nor a skippable frame's.
    NotZstd,
    /// They start like a frame but end before its header does.
    CutShort,
}

/// The header of the zstd frame at the start of `data` (RFC 8878 §3.1.1.1; skippable frames
/// §3.1.2). The reserved bit and the rest of the frame are left to
/// `find_frame_compressed_size` and the decoder.
fn zstd_frame_header(data: &[u8]) -> Result<FrameHeader, HeaderProblem> {
    const FRAME_MAGIC: u32 = 0xFD2F_B528;
    const SKIPPABLE_MAGIC: u32 = 0x184D_2A50; // to 0x184D2A5F
    let magic = match data {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ if FRAME_MAGIC.to_le_bytes().starts_with(data) => return Err(HeaderProblem::CutShort),
        _ => return Err(HeaderProblem::NotZstd),
    };
    if magic & 0xFFFF_FFF0 == SKIPPABLE_MAGIC {
        return Ok(FrameHeader {
            window: 0,
            dictionary: 0,
        });
    }
    if magic != FRAME_MAGIC {
        return Err(HeaderProblem::NotZstd);
    }
    let field = |start: usize, len: usize| -> Result<u64, HeaderProblem> {
        let bytes = data
            .get(start..start + len)
            .ok_or(HeaderProblem::CutShort)?;
        let mut le = [0u8; 8];
        le[..len].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    };
    let descriptor = field(4, 1)?;
    let single_segment = descriptor & 0x20 != 0;
    let window_bytes = usize::from(!single_segment);
    let dictionary_bytes = [0, 1, 2, 4][(descriptor & 3) as usize];
    let dictionary = field(5 + window_bytes, dictionary_bytes)?;
    let window = if single_segment {
        let size_bytes = [1, 2, 4, 8][(descriptor >> 6) as usize];
        let size = field(5 + dictionary_bytes, size_bytes)?;
        // The 2-byte field is stored minus 256.
        if size_bytes == 2 { size + 256 } else { size }
    } else {
        // Window_Descriptor: exponent (5 bits) and mantissa (3 bits).
        let w = field(5, 1)?;
        let base = 1u64 << (10 + (w >> 3));
        base + base / 8 * (w & 7)
    };
    Ok(FrameHeader {
        window,
        // At most 4 bytes.
        dictionary: u32::try_from(dictionary).unwrap_or(u32::MAX),
    })
}

/// Decompresses a `zstd` body (one frame or several one after the other), with the same cap
/// and accounting as [`gunzip`], its decoder held to [`ZSTD_MAX_WINDOW`]. Check the body with
/// [`decoder_memory`] first for clear messages; without it, libzstd's errors are the message.
///
/// # Errors
/// 413 past the limit, 400 when the data is not zstd (or needs a larger window), 503
/// ([`ApiError::Overloaded`]) when `hold` refuses.
pub fn unzstd(
    body: &[u8],
    limit: usize,
    mut hold: impl FnMut(usize) -> bool,
) -> Result<Bytes, ApiError> {
    let not_zstd = |e: std::io::Error| ApiError::bad_body(format!("body is not valid zstd: {e}"));
    let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(not_zstd)?;
    decoder
        .window_log_max(ZSTD_MAX_WINDOW_LOG)
        .map_err(not_zstd)?;
    let mut out = Vec::new();
    // The first frame's Frame_Content_Size, which `zstd` writes when it knows the input's size.
    let declared = zstd::zstd_safe::get_frame_content_size(body)
        .ok()
        .flatten()
        .map(|size| usize::try_from(size).unwrap_or(usize::MAX));
    read_pieces(
        &mut decoder,
        &mut out,
        first_size(declared, body, MAX_ZSTD_RATIO),
        limit,
        Coding::Zstd,
        &mut hold,
        not_zstd,
    )?;
    out.shrink_to_fit();
    Ok(Bytes::from(out))
}

/// Decompresses a `deflate` body (zlib, or a raw deflate stream when it has no zlib header),
/// with the same cap and accounting as [`gunzip`]. Bytes after the compressed data are an
/// error.
///
/// # Errors
/// 413 past the limit, 400 when the data is not deflate, 503 ([`ApiError::Overloaded`]) when
/// `hold` refuses.
pub fn inflate(
    body: &[u8],
    limit: usize,
    mut hold: impl FnMut(usize) -> bool,
) -> Result<Bytes, ApiError> {
    let bad = ApiError::bad_body;
    let not_deflate = |e: std::io::Error| bad(format!("body is not valid deflate data: {e}"));
    let mut out = Vec::new();
    let rest = if has_zlib_header(body) {
        let mut decoder = flate2::bufread::ZlibDecoder::new(body);
        read_pieces(
            &mut decoder,
            &mut out,
            four_times(body),
            limit,
            Coding::Deflate,
            &mut hold,
            not_deflate,
        )?;
        decoder.into_inner()
    } else {
        let mut decoder = flate2::bufread::DeflateDecoder::new(body);
        read_pieces(
            &mut decoder,
            &mut out,
            four_times(body),
            limit,
            Coding::Deflate,
            &mut hold,
            not_deflate,
        )?;
        decoder.into_inner()
    };
    if !rest.is_empty() {
        return Err(bad(format!(
            "body is not valid deflate data: {} bytes follow the compressed data",
            rest.len()
        )));
    }
    out.shrink_to_fit();
    Ok(Bytes::from(out))
}

/// Whether `data` starts with a zlib header (RFC 1950 §2.2): method 8 (deflate), a window of
/// at most 32 KiB, and a check value that makes the first two bytes a multiple of 31. A raw
/// deflate stream can start with such bytes only by chance (1 in about 500); it would then
/// fail to decode as zlib and get a 400.
fn has_zlib_header(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// Reads `decoder` to its end into `out`, [`DECOMPRESS_PIECE`] bytes at a time, and stops past
/// `limit`; a decoder error is answered with `invalid`.
///
/// What is counted is the output's capacity, not its length: before each piece `out` is given
/// room for it ([`room_for_a_piece`]), and `hold` is asked for that room first. Left to
/// `read_to_end`, a full vector grows by doubling, uncounted: with pieces counted by length,
/// compressed uploads took the process to 2.2-2.55 times `INGEST_MAX_INFLIGHT_BYTES`
/// (helper-91, 40 clients of 10 MB NDJSON bodies sent gzip-, deflate- or zstd-compressed).
fn read_pieces(
    decoder: &mut impl Read,
    out: &mut Vec<u8>,
    first: usize,
    limit: usize,
    coding: Coding,
    hold: &mut impl FnMut(usize) -> bool,
    invalid: impl Fn(std::io::Error) -> ApiError,
) -> Result<(), ApiError> {
    loop {
        room_for_a_piece(out, first, limit, hold)?;
        let n = decoder
            .take(DECOMPRESS_PIECE)
            .read_to_end(out)
            .map_err(&invalid)?;
        if n == 0 {
            return Ok(());
        }
        if out.len() > limit {
            return Err(ApiError::BodyTooLarge {
                limit,
                after: coding.after_decompression(),
            });
        }
    }
}

/// A guess at what compressed `body` inflates to when it declares nothing: four times its
/// size (text compresses about that well).
fn four_times(body: &[u8]) -> usize {
    body.len().saturating_mul(4)
}

/// deflate's largest expansion, about 1032:1 (zlib's technical details: 258 bytes from each
/// 2-bit code at best). What a gzip body declares is believed up to that much of its size.
const MAX_DEFLATE_RATIO: usize = 1032;

/// zstd's largest expansion, 32768:1: an RLE block (RFC 8878 §3.1.1.2) turns its 3-byte
/// header and 1 byte into up to 128 KiB. What a zstd body declares is believed up to that.
const MAX_ZSTD_RATIO: usize = 32_768;

/// The output's first size: what `body` declares it inflates to, at most `max_ratio` times its
/// size (a tiny body declaring 4 GB takes no more of the in-flight cap than a real bomb of its
/// size), else [`four_times`] its size.
fn first_size(declared: Option<usize>, body: &[u8], max_ratio: usize) -> usize {
    declared.map_or_else(
        || four_times(body),
        |size| size.min(body.len().saturating_mul(max_ratio)),
    )
}

/// What a gzip `body` declares it inflates to: the ISIZE of its last member (RFC 1952 §2.3.1,
/// the size modulo 2^32 in its last 4 bytes), which is the whole output for the usual single
/// member. Only a first size for the output: a wrong one (several members, a lie) costs a
/// regrowth or a cut, and the output still stops at the limit. `None` for a body too short to
/// be gzip.
fn gzip_size(body: &[u8]) -> Option<usize> {
    // A member is at least a 10-byte header and an 8-byte trailer.
    let [.., a, b, c, d] = body else { return None };
    (body.len() >= 18).then(|| u32::from_le_bytes([*a, *b, *c, *d]) as usize)
}

/// Makes room for one more [`DECOMPRESS_PIECE`] in `out` when it has less, asking `hold` for
/// the capacity it adds before adding it. It starts at `first` (what the body declares it
/// inflates to, else a guess) plus a piece, then grows by half its capacity (at least by a
/// piece), and never past `limit` plus a piece: enough to see a body pass the limit. Each
/// regrowth leaves the old buffer to the allocator, which keeps such pages for a while, so a
/// body that declares its size is sized once (the README's "Sizing" has the peaks measured).
/// With that room `read_to_end` never grows `out` itself: a `Take` of one piece fills at most
/// the room there is, and then reads 0.
///
/// # Errors
/// [`ApiError::Overloaded`] when `hold` refuses.
fn room_for_a_piece(
    out: &mut Vec<u8>,
    first: usize,
    limit: usize,
    hold: &mut impl FnMut(usize) -> bool,
) -> Result<(), ApiError> {
    // 64 KiB: fits any usize.
    #[allow(clippy::cast_possible_truncation)]
    let piece = DECOMPRESS_PIECE as usize;
    let (len, capacity) = (out.len(), out.capacity());
    if capacity - len >= piece {
        return Ok(());
    }
    let wanted = capacity
        .saturating_add(capacity / 2)
        // With a first size that is exact, the read that finds the end still has its room.
        .max(first.saturating_add(piece))
        .min(limit.saturating_add(piece))
        // At least a piece of room, whatever the cap above (`len` is at most `limit`: the
        // caller stops past it).
        .max(len + piece);
    if !hold(wanted - capacity) {
        return Err(ApiError::Overloaded);
    }
    out.reserve_exact(wanted - len);
    Ok(())
}

/// The body length the client declared in `Content-Length`, if it gave a valid one (hyper
/// refuses a malformed one before the service sees the request).
#[must_use]
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Decompresses a gzip body, stopping as soon as it passes `limit` bytes (a gzip bomb costs at
/// most `limit` + 64 KiB of memory). Before the output grows it asks `hold` for the capacity
/// it adds (the in-flight cap, [`crate::producer::Reservation::grow`]; see [`read_pieces`]),
/// so what a body inflates to is counted before it is allocated.
///
/// Several gzip members one after the other are one body (RFC 1952 §2.2, as `gzip -d` reads
/// them), up to [`MAX_GZIP_MEMBERS`]. Bytes after a member that are not a valid member are an
/// error that says so, rather than the decoder's bare "unexpected end of file".
///
/// # Errors
/// 413 past the limit, 400 when the data is not gzip, 503 ([`ApiError::Overloaded`]) when
/// `hold` refuses.
pub fn gunzip(
    body: &[u8],
    limit: usize,
    mut hold: impl FnMut(usize) -> bool,
) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut members = 0usize;
    loop {
        members += 1;
        if members > MAX_GZIP_MEMBERS {
            return Err(ApiError::bad_body(format!(
                "body is more than {MAX_GZIP_MEMBERS} gzip members one after the other: \
                 compress it as one gzip stream"
            )));
        }
        let member_starts = body.len() - rest.len();
        let not_gzip = |e: std::io::Error| {
            ApiError::bad_body(if member_starts == 0 {
                format!("body is not valid gzip: {e}")
            } else {
                format!(
                    "body is not valid gzip: the {} bytes after the gzip data that ends at byte \
                     {member_starts} are not another gzip member ({e})",
                    rest.len()
                )
            })
        };
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        read_pieces(
            &mut decoder,
            &mut out,
            first_size(gzip_size(body), body, MAX_DEFLATE_RATIO),
            limit,
            Coding::Gzip,
            &mut hold,
            not_gzip,
        )?;
        let after = decoder.into_inner();
        // A member that read nothing would loop here for ever; the decoder never does that on
        // input it accepts, but the loop must end all the same.
        if after.is_empty() || after.len() == rest.len() {
            out.shrink_to_fit();
            return Ok(Bytes::from(out));
        }
        rest = after;
    }
}

/// Output read from a decoder at a time (and counted against the in-flight cap).
const DECOMPRESS_PIECE: u64 = 64 * 1024;

/// Most gzip members one body may be made of. Each member gets a decoder of its own (about
/// 40 KB of state to set up), so a 10 MiB body of 20-byte empty members took 3.2 s of CPU
/// before this cap; a client compresses a body as one member, or a few when it concatenates
/// compressed pieces.
pub const MAX_GZIP_MEMBERS: usize = 1024;

/// Invalid events found in a body, with the `reason` label of each rejected event.
#[derive(Debug)]
pub struct Invalid {
    /// The answer to send.
    pub error: ApiError,
    /// Per rejected event (or once for the whole body): its `ingest_events_rejected_total`
    /// reason and its bytes as received, for `ingest_event_bytes_rejected_total`.
    pub rejected: Vec<(&'static str, usize)>,
}

/// A compiled JSON Schema that events must satisfy.
#[derive(Debug)]
pub struct Schema(jsonschema::Validator);

/// The schema file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Unreadable file.
    #[error("cannot read schema file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not JSON.
    #[error("schema file {path} is not JSON: {source}")]
    Json {
        /// The file.
        path: String,
        /// Where and what.
        source: serde_json::Error,
    },
    /// JSON, but not a valid schema.
    #[error("schema file {path} is not a valid JSON Schema: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What the compiler said.
        message: String,
    },
}

impl Schema {
    /// Compiles a schema document.
    ///
    /// # Errors
    /// The document is not a valid JSON Schema.
    pub fn compile(schema: &serde_json::Value, path: &str) -> Result<Self, SchemaError> {
        jsonschema::validator_for(schema)
            .map(Self)
            .map_err(|e| SchemaError::Invalid {
                path: path.to_owned(),
                message: e.to_string(),
            })
    }

    /// Reads and compiles a schema file.
    ///
    /// # Errors
    /// Unreadable, not JSON, or not a schema.
    pub fn load(path: &std::path::Path) -> Result<Self, SchemaError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| SchemaError::Read {
            path: shown.clone(),
            source,
        })?;
        let doc: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| SchemaError::Json {
                path: shown.clone(),
                source,
            })?;
        Self::compile(&doc, &shown)
    }
}

/// Parses `body` into records (see the module docs), refusing a body of more than
/// `max_events` events ([`ApiError::TooManyEvents`]) before checking any of them: it is split
/// no further than the event over the limit (an NDJSON line, a JSON array's element). An event
/// over `max_event_bytes` (at most [`MAX_EVENT_BYTES`]) is invalid.
///
/// # Errors
/// [`Invalid`] listing every problem found; nothing is returned for sending then.
pub fn records(
    body: &[u8],
    framing: Framing,
    schema: Option<&Schema>,
    max_events: usize,
    max_event_bytes: usize,
) -> Result<Vec<Bytes>, Invalid> {
    // RFC 8259 section 8.1: a parser may ignore a leading byte order mark (some Windows tools
    // write one); it is never part of an event.
    let received = body.len();
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // Positions are reported in the body as sent: line 1's columns count the mark too.
    let bom = received - body.len();
    let line_one = |line: usize| if line == 1 { bom } else { 0 };
    // simdutf8's `compat` check reports the same `valid_up_to` as `std`, with SIMD: on a 1 KB
    // event, std's byte loop was ~1,000 instructions, a quarter of the validation.
    let text = simdutf8::compat::from_utf8(body).map_err(|e| {
        let (line, column) = position(body, e.valid_up_to());
        let column = column + line_one(line);
        body_error(
            "body is not valid UTF-8",
            Detail {
                line: Some(line),
                column: Some(column),
                message: format!("invalid UTF-8 at byte {}", bom + e.valid_up_to()),
                ..Detail::default()
            },
            body,
        )
    })?;
    if text.trim_matches(JSON_WHITESPACE).is_empty() {
        return Err(body_error(
            "body is empty: send a JSON object, an array of objects, or NDJSON lines",
            Detail {
                message: "no events".to_owned(),
                ..Detail::default()
            },
            body,
        ));
    }
    // (event text, where it starts when known: 1-based line, and bytes before it on that line)
    let events: Vec<(&str, Option<Position>)> = match framing {
        Framing::Json => match json_events(text, max_events) {
            Some(events) => events,
            // Not valid JSON: serde_json says where.
            None => {
                let parsed = if text.trim_start().starts_with('[') {
                    serde_json::from_str::<Vec<&RawValue>>(text)
                        .map(|items| items.into_iter().map(|r| (r.get(), None)).collect())
                } else {
                    serde_json::from_str::<&RawValue>(text).map(|r| vec![(r.get(), None)])
                };
                parsed.map_err(|e| {
                    body_error(
                        "body is not valid JSON",
                        Detail {
                            line: Some(e.line()),
                            column: Some(raw_value_column(&e) + line_one(e.line())),
                            message: e.to_string(),
                            ..Detail::default()
                        },
                        body,
                    )
                })?
            }
        },
        // Only JSON's own whitespace is trimmed: anything else (a no-break space, a form feed)
        // is part of the line, so the line is not valid JSON.
        // (One past the limit is enough to refuse: the rest is not split.)
        Framing::Ndjson => text
            .split('\n')
            .enumerate()
            .map(|(n, line)| {
                let start = line.trim_start_matches(JSON_WHITESPACE);
                let indent = line.len() - start.len();
                (
                    start.trim_end_matches(JSON_WHITESPACE),
                    Some((n + 1, indent + line_one(n + 1))),
                )
            })
            .filter(|(line, _)| !line.is_empty())
            .take(max_events.saturating_add(1))
            .collect(),
    };
    if events.len() > max_events {
        return Err(Invalid {
            error: ApiError::TooManyEvents { limit: max_events },
            rejected: Vec::new(),
        });
    }
    if events.is_empty() {
        return Err(body_error(
            "no events in the body: the array is empty",
            Detail {
                message: "no events".to_owned(),
                ..Detail::default()
            },
            body,
        ));
    }

    let mut details = Vec::new();
    let mut rejected = Vec::new();
    let mut invalid_events = 0usize;
    let mut buf = BytesMut::with_capacity(events.iter().map(|(e, _)| e.len() + 1).sum());
    let mut ends = Vec::with_capacity(events.len());
    for (index, (event, position)) in events.iter().enumerate() {
        let room = MAX_DETAILS.saturating_sub(details.len());
        let problems = check_event(event, *position, framing, schema, max_event_bytes, room);
        if let Some((reason, mut found)) = problems {
            invalid_events += 1;
            rejected.push((reason, event.len()));
            for d in &mut found {
                d.index = Some(index);
            }
            details.extend(found.into_iter().take(room));
            continue;
        }
        if invalid_events == 0 {
            put_one_line(&mut buf, event.as_bytes());
            buf.put_u8(b'\n');
            ends.push(buf.len());
        }
    }
    if invalid_events > 0 {
        let shown = if details.len() >= MAX_DETAILS {
            format!(" (first {MAX_DETAILS} problems listed)")
        } else {
            String::new()
        };
        return Err(Invalid {
            error: ApiError::BadRequest {
                message: format!(
                    "{invalid_events} of {} events are invalid; nothing was sent{shown}",
                    events.len()
                ),
                details,
            },
            rejected,
        });
    }
    let all = buf.freeze();
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let record = all.slice(start..end);
            start = end;
            record
        })
        .collect())
}

/// Appends a valid JSON `event` to `buf` on one line: each `\r` and `\n` (whitespace between
/// tokens, since JSON strings cannot hold them raw) becomes a space
/// ([`json_scan::line_breaks_to_spaces`]), which changes neither its value nor its length.
/// Without this, a pretty-printed event (`json.dumps(e, indent=2)` in an array) became a record
/// of several lines, and everything that reads records line by line took it apart: an S3
/// backup or error-output object, the replay tool, New Relic's own reading of a record.
fn put_one_line(buf: &mut BytesMut, event: &[u8]) {
    let start = buf.len();
    buf.put_slice(event);
    json_scan::line_breaks_to_spaces(&mut buf[start..]);
}

/// The events of an `application/json` body (one value, or an array's elements), each
/// without the whitespace around it, as `serde_json`'s `&RawValue` would give them; `None` when
/// the body is not valid JSON.
///
/// [`json_scan`] decides, as `serde_json` would (property tests keep the two in step), at a
/// fraction of the cost: `serde_json`'s `&RawValue` scan was ~4,800 instructions of a 1 KB
/// single-event request (callgrind), the largest item of the handler. `serde_json` is asked
/// only to explain a body that fails, with its line and column.
///
/// At most `max_events + 1` are returned (enough for the caller to refuse the body): a huge
/// array of tiny events is neither listed whole nor scanned past that element.
fn json_events(text: &str, max_events: usize) -> Option<Vec<(&str, Option<Position>)>> {
    let events = if text.trim_start().starts_with('[') {
        json_scan::array_elements_up_to(text, max_events).ok()?
    } else {
        json_scan::one_value(text).ok()?;
        vec![text.trim_matches(JSON_WHITESPACE)]
    };
    Some(events.into_iter().map(|event| (event, None)).collect())
}

/// The whitespace JSON allows around values (RFC 8259, section 2).
const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// Where an NDJSON event starts: its 1-based line, and the bytes of whitespace before it.
type Position = (usize, usize);

/// The 1-based column of a `&RawValue` parse error. `serde_json` gives the column of the
/// offending byte, except for a control character inside a string, where its skipping scan
/// (the one `&RawValue` uses; its full parse does not) stops *at* the byte and reports the
/// column before it: `{"a":"x<TAB>"}` says column 7 for the tab in column 8.
fn raw_value_column(e: &serde_json::Error) -> usize {
    if e.to_string().starts_with("control character") {
        e.column() + 1
    } else {
        e.column()
    }
}

/// `serde_json`'s message without its "at line L column C" (relative to the event alone; the
/// detail carries the position in the body).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

/// Checks one event; `None` when it is fine, else its rejection reason and problems. `room` is
/// how many more details the answer can list: schema errors are formatted only up to it (once
/// the list is full, an invalid event is only counted).
fn check_event(
    event: &str,
    position: Option<Position>,
    framing: Framing,
    schema: Option<&Schema>,
    max_event_bytes: usize,
    room: usize,
) -> Option<(&'static str, Vec<Detail>)> {
    let line = position.map(|(line, _)| line);
    let indent = position.map_or(0, |(_, indent)| indent);
    let at = |message: String| Detail {
        line,
        message,
        ..Detail::default()
    };
    if framing == Framing::Ndjson
        && json_scan::one_value(event).is_err()
        && let Err(e) = serde_json::from_str::<&RawValue>(event)
    {
        return Some((
            event_reason::INVALID_JSON,
            vec![Detail {
                line,
                column: Some(indent + raw_value_column(&e)),
                message: without_position(&e),
                ..Detail::default()
            }],
        ));
    }
    if !event.starts_with('{') {
        let kind = match event.as_bytes().first() {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        return Some((
            event_reason::NOT_OBJECT,
            vec![at(format!("event must be a JSON object, got {kind}"))],
        ));
    }
    if let Some(offset) = too_deep(event.as_bytes()) {
        return Some((
            event_reason::INVALID_JSON,
            vec![Detail {
                line,
                column: line.map(|_| indent + offset + 1),
                message: format!(
                    "nesting deeper than {MAX_DEPTH} levels at byte {offset} of the event"
                ),
                ..Detail::default()
            }],
        ));
    }
    if event.len() > max_event_bytes.min(MAX_EVENT_BYTES) {
        let message = if max_event_bytes < MAX_EVENT_BYTES {
            format!(
                "event is {} bytes; this service takes events of at most {max_event_bytes} bytes (INGEST_MAX_EVENT_BYTES)",
                event.len()
            )
        } else {
            format!(
                "event is {} bytes; Firehose records hold at most {MAX_EVENT_BYTES} bytes of event plus a newline",
                event.len()
            )
        };
        return Some((event_reason::TOO_LARGE, vec![at(message)]));
    }
    let schema = schema?;
    // The scanner accepted the event; serde_json refuses a few more (a number out of f64's
    // range, a lone surrogate escape), and says where within the event, not the body.
    let value: serde_json::Value = match serde_json::from_str(event) {
        Ok(v) => v,
        Err(e) => {
            let detail = if line.is_some() {
                Detail {
                    line,
                    column: Some(indent + e.column()),
                    message: without_position(&e),
                    ..Detail::default()
                }
            } else {
                at(format!(
                    "{} at line {} column {} of the event",
                    without_position(&e),
                    e.line(),
                    e.column()
                ))
            };
            return Some((event_reason::INVALID_JSON, vec![detail]));
        }
    };
    if room == 0 {
        // The answer's list is full: whether the event is valid is all that counts, and
        // `is_valid` stops at the first error without formatting any. Building up to
        // MAX_DETAILS formatted errors for each of 100,000 invalid events (4.9 M strings) took
        // a body four times as long as a valid one.
        return (!schema.0.is_valid(&value)).then(|| (event_reason::SCHEMA, Vec::new()));
    }
    let found: Vec<Detail> = schema
        .0
        .iter_errors(&value)
        .take(room)
        .map(|e| Detail {
            line,
            path: Some(e.instance_path().to_string()),
            message: e.masked().to_string(),
            ..Detail::default()
        })
        .collect();
    (!found.is_empty()).then_some((event_reason::SCHEMA, found))
}

/// Offset where nesting first passes [`MAX_DEPTH`], if it does. `event` is valid JSON already,
/// so tracking strings and escapes is enough to skip brackets inside strings.
///
/// Nesting can only pass the limit if the event holds more than [`MAX_DEPTH`] opening brackets
/// (in strings or not). Log events hold a handful, which `memchr` (SIMD) finds almost for free,
/// so the byte-by-byte walk below runs only for the rare event with that many. On 1 KB log
/// events the walk alone was most of the CPU time of a batched request.
fn too_deep(event: &[u8]) -> Option<usize> {
    memchr::memchr2_iter(b'{', b'[', event).nth(MAX_DEPTH)?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in event.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn body_error(message: &str, detail: Detail, body: &[u8]) -> Invalid {
    Invalid {
        error: ApiError::BadRequest {
            message: message.to_owned(),
            details: vec![detail],
        },
        rejected: vec![(event_reason::INVALID_JSON, body.len())],
    }
}

/// 1-based line and column of byte `offset`.
fn position(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validator with no limit on events (the limit has tests of its own).
    fn records(
        body: &[u8],
        framing: Framing,
        schema: Option<&Schema>,
    ) -> Result<Vec<Bytes>, Invalid> {
        super::records(body, framing, schema, usize::MAX, MAX_EVENT_BYTES)
    }

    fn ok(body: &str, framing: Framing) -> Vec<String> {
        records(body.as_bytes(), framing, None)
            .expect("valid")
            .into_iter()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf8"))
            .collect()
    }

    fn details(
        body: &[u8],
        framing: Framing,
        schema: Option<&Schema>,
    ) -> (Vec<Detail>, Vec<&'static str>) {
        match records(body, framing, schema) {
            Err(Invalid {
                error: ApiError::BadRequest { details, .. },
                rejected,
            }) => (
                details,
                rejected.into_iter().map(|(reason, _)| reason).collect(),
            ),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn records_are_events_as_received_plus_newline() {
        assert_eq!(ok("  {\"a\": 1 }\n", Framing::Json), vec!["{\"a\": 1 }\n"]);
        assert_eq!(
            ok("[ {\"a\":1} ,\n {\"b\" : [1, 2]} ]", Framing::Json),
            vec!["{\"a\":1}\n", "{\"b\" : [1, 2]}\n"]
        );
        assert_eq!(
            ok("{\"a\":1}\r\n\n  {\"b\":2}  \n", Framing::Ndjson),
            vec!["{\"a\":1}\n", "{\"b\":2}\n"]
        );
    }

    #[test]
    fn a_pretty_printed_event_becomes_a_record_of_one_line_with_the_same_value() {
        let pretty = "{\r\n  \"a\": \"x\\ny\",\n  \"b\": [\n    1,\n    2\n  ]\n}";
        let body = format!("[\n{pretty},\n{pretty}\n]");
        let records = ok(&body, Framing::Json);
        assert_eq!(records.len(), 2);
        for record in &records {
            assert_eq!(
                record,
                "{    \"a\": \"x\\ny\",   \"b\": [     1,     2   ] }\n"
            );
            let (value, original): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(record).expect("a record is JSON"),
                serde_json::from_str(pretty).expect("the event is JSON"),
            );
            assert_eq!(value, original, "the same event");
            // The escaped line break inside the string is kept as sent.
            assert_eq!(value["a"], "x\ny");
            assert_eq!(
                record.len(),
                pretty.len() + 1,
                "byte for byte but the breaks"
            );
        }
        // A stray CR between tokens of an NDJSON line too.
        assert_eq!(ok("{\"a\":\r1}\n", Framing::Ndjson), vec!["{\"a\": 1}\n"]);
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let (d, reasons) = details(b"[{\"a\":1},\n {\"b\": }]", Framing::Json, None);
        assert_eq!(d[0].line, Some(2));
        assert_eq!(d[0].column, Some(8));
        assert_eq!(reasons, vec![event_reason::INVALID_JSON]);
        let (d, _) = details(b"{\"a\":1}\n{oops}\n", Framing::Ndjson, None);
        assert_eq!(d[0].index, Some(1));
        assert_eq!(d[0].line, Some(2));
        assert_eq!(d[0].column, Some(2));
        // Columns count from the start of the line, indentation included, and the message
        // does not repeat a position relative to the event alone.
        let (d, _) = details(b"{\"a\":1}\n    {oops}\n", Framing::Ndjson, None);
        assert_eq!((d[0].line, d[0].column), (Some(2), Some(6)));
        assert!(!d[0].message.contains("line"), "{}", d[0].message);
    }

    #[test]
    fn a_control_character_in_a_string_is_located_at_itself() {
        // A tab in column 8; a raw line feed (inside a string, not between lines) in column 9.
        let (d, _) = details(b"{\"a\":\"x\ty\"}", Framing::Json, None);
        assert_eq!((d[0].line, d[0].column), (Some(1), Some(8)));
        let (d, _) = details(b"[{\"a\":\"x\ny\"}]", Framing::Json, None);
        assert_eq!((d[0].line, d[0].column), (Some(1), Some(9)));
        let (d, _) = details(b"[{\"a\":1},\n {\"a\":\"x\ty\"}]", Framing::Json, None);
        assert_eq!((d[0].line, d[0].column), (Some(2), Some(9)));
        // NDJSON: in the body's line, indentation counted.
        let (d, _) = details(b"{\"a\":1}\n  {\"a\":\"x\ty\"}\n", Framing::Ndjson, None);
        assert_eq!(
            (d[0].index, d[0].line, d[0].column),
            (Some(1), Some(2), Some(10))
        );
        // Other errors keep serde_json's column: `o` of `{oops}` is column 2.
        let (d, _) = details(b"{oops}", Framing::Json, None);
        assert_eq!(d[0].column, Some(2));
    }

    #[test]
    fn ndjson_trims_only_json_whitespace() {
        // A no-break space (U+00A0), a line separator (U+2028) and a form feed are not JSON
        // whitespace: the lines holding them are not valid JSON.
        let body =
            "{\"nbsp\":1}\u{a0}\n\u{2028}{\"ls\":2}\n\u{c}{\"ff\":3}\n\u{a0}\n{\"ok\":4}\t\r\n";
        let (d, reasons) = details(body.as_bytes(), Framing::Ndjson, None);
        let indexes: Vec<_> = d.iter().map(|d| d.index).collect();
        assert_eq!(indexes, vec![Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(reasons, vec![event_reason::INVALID_JSON; 4]);
        details("\u{a0}\n".as_bytes(), Framing::Ndjson, None);
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored() {
        assert_eq!(ok("\u{feff}{\"a\":1}", Framing::Json), vec!["{\"a\":1}\n"]);
        assert_eq!(
            ok("\u{feff}{\"a\":1}\n{\"b\":2}\n", Framing::Ndjson),
            vec!["{\"a\":1}\n", "{\"b\":2}\n"]
        );
        // Only at the very start.
        details(
            "{\"a\":1}\n\u{feff}{\"b\":2}\n".as_bytes(),
            Framing::Ndjson,
            None,
        );
    }

    #[test]
    fn invalid_utf8_is_located() {
        let (d, _) = details(b"{\"a\":\"\xff\"}", Framing::Json, None);
        assert_eq!((d[0].line, d[0].column), (Some(1), Some(7)));
    }

    #[test]
    fn non_objects_are_refused_with_their_index() {
        let (d, reasons) = details(b"[{\"a\":1}, 3, \"x\", [], null]", Framing::Json, None);
        let indexes: Vec<_> = d.iter().map(|d| d.index).collect();
        assert_eq!(indexes, vec![Some(1), Some(2), Some(3), Some(4)]);
        assert!(d[0].message.contains("a number"));
        assert_eq!(reasons.len(), 4);
        let Err(invalid) = records(b"[{\"a\":1}, 3, \"xy\"]", Framing::Json, None) else {
            panic!("invalid")
        };
        let sizes: Vec<usize> = invalid.rejected.iter().map(|&(_, size)| size).collect();
        assert_eq!(sizes, vec![1, 4]);
        let Err(invalid) = records(b"{oops", Framing::Json, None) else {
            panic!("invalid")
        };
        assert_eq!(invalid.rejected, vec![(event_reason::INVALID_JSON, 5)]);
    }

    #[test]
    fn empty_bodies_and_arrays_are_refused() {
        details(b"", Framing::Json, None);
        details(b"  \n ", Framing::Ndjson, None);
        details(b"[]", Framing::Json, None);
    }

    #[test]
    fn more_events_than_the_limit_are_refused_before_any_is_checked() {
        for (body, framing) in [
            (&b"[{},{},{}]"[..], Framing::Json),
            (&b"{}\n{}\n\n{}\n"[..], Framing::Ndjson),
        ] {
            let all = super::records(body, framing, None, 3, MAX_EVENT_BYTES).map_err(|i| i.error);
            assert_eq!(all.map(|r| r.len()), Ok(3));
            let refused = super::records(body, framing, None, 2, MAX_EVENT_BYTES)
                .expect_err("over the limit");
            assert_eq!(refused.error, ApiError::TooManyEvents { limit: 2 });
            assert!(refused.rejected.is_empty(), "no event was judged");
        }
        // A JSON array is not scanned past the element over the limit (the rest may be anything).
        let refused = super::records(
            b"[{},{},{},garbage",
            Framing::Json,
            None,
            2,
            MAX_EVENT_BYTES,
        )
        .expect_err("over the limit");
        assert_eq!(refused.error, ApiError::TooManyEvents { limit: 2 });
        // Counted before validation: an invalid event past the limit does not matter.
        let refused = super::records(b"{}\n{}\n42\n", Framing::Ndjson, None, 2, MAX_EVENT_BYTES)
            .expect_err("over the limit");
        assert_eq!(refused.error, ApiError::TooManyEvents { limit: 2 });
    }

    #[test]
    fn positions_count_a_byte_order_mark_as_sent() {
        // After the 3-byte mark, the bad byte is the 10th of line 1 and byte 9 (0-based).
        let (d, _) = details(b"\xEF\xBB\xBF{\"a\":\"\xff\"}", Framing::Json, None);
        assert_eq!((d[0].line, d[0].column), (Some(1), Some(10)));
        assert!(d[0].message.ends_with("at byte 9"), "{}", d[0].message);
        // A syntax error at `}`: column 6 of the event, 9 of the line as sent.
        for framing in [Framing::Json, Framing::Ndjson] {
            let (d, _) = details(b"\xEF\xBB\xBF{\"a\":}\n", framing, None);
            assert_eq!((d[0].line, d[0].column), (Some(1), Some(9)), "{framing:?}");
        }
        // Later lines are not shifted.
        let (d, _) = details(b"\xEF\xBB\xBF{}\n{\"a\":}\n", Framing::Ndjson, None);
        assert_eq!((d[0].line, d[0].column), (Some(2), Some(6)));
    }

    #[test]
    fn the_depth_limit_is_what_serde_json_parses() {
        let nested = |levels: usize| {
            format!(
                "{{\"a\":{}{}}}",
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        let ok = nested(MAX_DEPTH);
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        assert!(records(ok.as_bytes(), Framing::Json, None).is_ok());
        let over = nested(MAX_DEPTH + 1);
        let err = serde_json::from_str::<serde_json::Value>(&over).expect_err("too deep");
        assert!(err.to_string().contains("recursion limit"), "{err}");
        assert!(records(over.as_bytes(), Framing::Json, None).is_err());
    }

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("{{\"a\":{deep}}}");
        let (d, reasons) = details(body.as_bytes(), Framing::Json, None);
        assert!(d[0].message.contains("nesting deeper than 127"), "{d:?}");
        assert_eq!(reasons, vec![event_reason::INVALID_JSON]);
        // Brackets inside strings do not count; exactly MAX_DEPTH levels are fine.
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        let body = format!("{{\"s\":\"[[[[{{{{\\\"\",\"a\":{ok}}}");
        assert!(
            records(body.as_bytes(), Framing::Json, None).is_ok(),
            "{body}"
        );
        // One level more is refused, with or without brackets elsewhere in strings.
        let over = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for body in [
            format!("{{\"a\":{over}}}"),
            format!("{{\"s\":\"{}\",\"a\":{over}}}", "[".repeat(500)),
        ] {
            let (d, _) = details(body.as_bytes(), Framing::Json, None);
            assert!(d[0].message.contains("nesting deeper than 127"), "{d:?}");
        }
        // Hundreds of brackets that are not nesting (in strings, or side by side) are fine.
        for body in [
            format!("{{\"s\":\"{}\"}}", "[{".repeat(500)),
            format!("{{\"a\":[{}]}}", vec!["[]"; 500].join(",")),
        ] {
            assert!(
                records(body.as_bytes(), Framing::Json, None).is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn events_over_the_record_limit_are_too_large() {
        let body = format!("{{\"s\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES));
        let (d, reasons) = details(body.as_bytes(), Framing::Json, None);
        assert_eq!(reasons, vec![event_reason::TOO_LARGE]);
        assert_eq!(d[0].index, Some(0));
        // Exactly at the limit is fine.
        let body = format!("{{\"s\":\"{}\"}}", "x".repeat(MAX_EVENT_BYTES - 8));
        assert_eq!(
            records(body.as_bytes(), Framing::Json, None).expect("fits")[0].len(),
            MAX_RECORD_BYTES
        );
    }

    #[test]
    fn schema_errors_carry_the_path() {
        let schema = Schema::compile(
            &serde_json::json!({
                "type": "object",
                "required": ["user"],
                "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer"}}}}
            }),
            "test",
        )
        .expect("schema compiles");
        let body = br#"[{"user":{"id":1}}, {"user":{"id":"x"}}, {}]"#;
        let (d, reasons) = details(body, Framing::Json, Some(&schema));
        assert_eq!(reasons, vec![event_reason::SCHEMA, event_reason::SCHEMA]);
        assert_eq!(d[0].index, Some(1));
        assert_eq!(d[0].path.as_deref(), Some("/user/id"));
        assert_eq!(d[1].index, Some(2));
        assert!(records(br#"{"user":{"id":7}}"#, Framing::Json, Some(&schema)).is_ok());
    }

    #[test]
    fn once_the_details_are_full_invalid_events_are_still_all_counted() {
        let schema = Schema::compile(
            &serde_json::json!({"properties": {"tags": {"items": {"type": "string"}}}}),
            "test",
        )
        .expect("schema compiles");
        // 150 events with 3 schema errors each: 100 details, then only counts.
        let event = r#"{"tags":[1,2,3]}"#;
        let body = format!("[{}]", vec![event; 150].join(","));
        let Err(Invalid {
            error: ApiError::BadRequest { message, details },
            rejected,
        }) = records(body.as_bytes(), Framing::Json, Some(&schema))
        else {
            panic!("expected a 400");
        };
        assert_eq!(details.len(), MAX_DETAILS);
        assert_eq!(
            details.last().and_then(|d| d.index),
            Some(33),
            "3 per event"
        );
        assert_eq!(rejected.len(), 150, "every invalid event is counted");
        assert!(
            message.starts_with("150 of 150 events are invalid"),
            "{message}"
        );
    }

    #[test]
    fn what_only_serde_json_refuses_is_placed_in_the_body() {
        let schema = Schema::compile(&serde_json::json!({"type": "object"}), "test")
            .expect("schema compiles");
        // Line 3 of the body, after 3 spaces; serde_json stops at the number's end, column 10 of
        // the event, so column 13 of the line.
        let body = b"{\"a\":1}\n\n   {\"a\":1e400}\n";
        let (d, reasons) = details(body, Framing::Ndjson, Some(&schema));
        assert_eq!(reasons, vec![event_reason::INVALID_JSON]);
        assert_eq!(
            (d[0].index, d[0].line, d[0].column),
            (Some(1), Some(3), Some(3 + 10))
        );
        assert!(!d[0].message.contains(" at line "), "{}", d[0].message);
        // A JSON array has no per-event line: the place is given within the event.
        let (d, _) = details(b"[{}, {\"a\":1e400}]", Framing::Json, Some(&schema));
        assert_eq!((d[0].index, d[0].line, d[0].column), (Some(1), None, None));
        assert!(
            d[0].message.ends_with("at line 1 column 10 of the event"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn gzip_is_capped() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 1_000_000]).expect("compress");
        let bomb = enc.finish().expect("finish");
        assert!(bomb.len() < 10_000);
        assert!(matches!(
            gunzip(&bomb, 100_000, |_| true),
            Err(ApiError::BodyTooLarge { .. })
        ));
        assert_eq!(
            gunzip(&bomb, 1_000_000, |_| true).expect("fits").len(),
            1_000_000
        );
        assert!(matches!(
            gunzip(b"not gzip", 100, |_| true),
            Err(ApiError::BadRequest { .. })
        ));
    }

    /// What the in-flight cap is asked for is the output's whole capacity, counted before the
    /// output grows into it, and not far past what the data needs. (Counted by length, a 3 MB
    /// output held 4,194,304 bytes of capacity and was counted as 3,000,000.)
    #[test]
    fn decompressed_output_is_counted_by_capacity_before_it_grows() {
        use std::io::Write;
        let data: Vec<u8> = (0..3_000_000_u32)
            .map(|i| b"{\"a\":1} \n"[(i % 9) as usize])
            .collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).expect("compress");
        let body = enc.finish().expect("finish");
        for limit in [data.len(), 10 << 20] {
            let mut out = Vec::new();
            let mut held = 0_usize;
            let mut decoder = flate2::bufread::GzDecoder::new(&body[..]);
            read_pieces(
                &mut decoder,
                &mut out,
                four_times(&body),
                limit,
                Coding::Gzip,
                &mut |n| {
                    held += n;
                    true
                },
                |e| ApiError::bad_body(e.to_string()),
            )
            .expect("decompresses");
            assert_eq!(out, data);
            assert_eq!(held, out.capacity(), "limit {limit}");
            assert!(
                out.capacity() <= data.len() * 3 / 2 + 2 * 65_536,
                "limit {limit}: {} for {} bytes",
                out.capacity(),
                data.len()
            );
        }
        // A body that declares its size (gzip's ISIZE, zstd's Frame_Content_Size) is given
        // that room once, plus a piece for the read that finds the end: one allocation, no
        // regrowth.
        assert_eq!(gzip_size(&body), Some(data.len()));
        // (One-shot compression writes the content size, as the `zstd` tool does for a file.)
        let zstd_body = zstd::bulk::compress(&data, 3).expect("zstd");
        for (coding, compressed) in [(Coding::Gzip, &body), (Coding::Zstd, &zstd_body)] {
            let mut asked = Vec::new();
            let out = decompress(coding, compressed, 10 << 20, |n| {
                asked.push(n);
                true
            })
            .expect("decompresses");
            assert_eq!(out, data);
            assert_eq!(asked, [data.len() + 65_536], "{coding:?}");
        }
        assert_eq!(gzip_size(b"short"), None);
        // A declared size is believed only up to deflate's largest ratio: 18 bytes that say
        // 4 GB ask for 18 x 1032 bytes (and a piece), not the limit.
        let mut liar = body[..10].to_vec();
        liar.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        liar.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(liar.len(), 22);
        assert_eq!(gzip_size(&liar), Some(u32::MAX as usize));
        let mut asked = Vec::new();
        let _ = gunzip(&liar, 10 << 20, |n| {
            asked.push(n);
            true
        });
        assert_eq!(asked.first(), Some(&(22 * 1032 + 65_536)));
        // Refused room is a 503.
        let mut asked = 0;
        assert!(matches!(
            gunzip(&body, 10 << 20, |n| {
                asked += n;
                asked < 1_000_000
            }),
            Err(ApiError::Overloaded)
        ));
    }
    #[test]
    fn gzip_members_are_joined_and_trailing_bytes_are_named() {
        use std::io::Write;
        let member = |data: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).expect("compress");
            enc.finish().expect("finish")
        };
        let first = member(br#"{"a":1}"#);
        let mut two = first.clone();
        two.extend(member(b"\n{\"b\":2}"));
        assert_eq!(
            gunzip(&two, 1_000, |_| true).expect("two members"),
            &b"{\"a\":1}\n{\"b\":2}"[..]
        );
        let mut garbage = first.clone();
        garbage.extend_from_slice(b"trailing");
        let Err(ApiError::BadRequest { message, .. }) = gunzip(&garbage, 1_000, |_| true) else {
            panic!("trailing garbage must be a 400");
        };
        assert!(
            message.contains(&format!(
                "the 8 bytes after the gzip data that ends at byte {} are not another gzip member",
                first.len()
            )),
            "{message}"
        );
        // A body of many tiny members costs a decoder each: capped.
        let empty = member(b"");
        let at_cap = empty.repeat(MAX_GZIP_MEMBERS);
        assert_eq!(
            gunzip(&at_cap, 1_000, |_| true).expect("at the cap"),
            &b""[..]
        );
        let over = empty.repeat(MAX_GZIP_MEMBERS + 1);
        let Err(ApiError::BadRequest { message, .. }) = gunzip(&over, 1_000, |_| true) else {
            panic!("one member over the cap must be a 400");
        };
        assert!(message.contains("more than 1024 gzip members"), "{message}");
        // Cut short inside the only member: the decoder's own words.
        let Err(ApiError::BadRequest { message, .. }) =
            gunzip(&first[..first.len() - 3], 1_000, |_| true)
        else {
            panic!("a truncated member must be a 400");
        };
        assert!(message.starts_with("body is not valid gzip: "), "{message}");
        assert!(!message.contains("after the gzip data"), "{message}");
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        // No header at all: JSON, as API Gateway reads it.
        assert_eq!(framing(&h).expect("json"), Framing::Json);
        h.insert(header::CONTENT_TYPE, "".parse().expect("hv"));
        assert!(framing(&h).is_err(), "present but empty");
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("hv"),
        );
        assert_eq!(framing(&h).expect("json"), Framing::Json);
        for other in [
            "application/json; charset=latin1",
            "application/x-ndjson;charset=\"UTF-16\"",
        ] {
            h.insert(header::CONTENT_TYPE, other.parse().expect("hv"));
            let Err(ApiError::UnsupportedMediaType(message)) = framing(&h) else {
                panic!("{other} must be refused");
            };
            assert!(message.contains("UTF-8"), "{message}");
        }
        h.insert(
            header::CONTENT_TYPE,
            "application/json;CHARSET=\"utf8\"".parse().expect("hv"),
        );
        assert_eq!(framing(&h).expect("json"), Framing::Json);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-ndjson".parse().expect("hv"),
        );
        assert_eq!(framing(&h).expect("ndjson"), Framing::Ndjson);
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("hv"));
        assert!(matches!(
            framing(&h),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        h.insert(header::CONTENT_ENCODING, "br".parse().expect("hv"));
        assert!(content_coding(&h).is_err());
    }

    #[test]
    fn every_content_encoding_line_and_coding_counts() {
        let encoding = |lines: &[&str]| {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append(header::CONTENT_ENCODING, line.parse().expect("hv"));
            }
            content_coding(&h)
        };
        assert_eq!(encoding(&[]), Ok(None));
        assert_eq!(encoding(&["identity"]), Ok(None));
        assert_eq!(encoding(&["GZIP"]), Ok(Some(Coding::Gzip)));
        assert_eq!(encoding(&["x-gzip"]), Ok(Some(Coding::Gzip)));
        assert_eq!(encoding(&["gzip, identity"]), Ok(Some(Coding::Gzip)));
        assert_eq!(encoding(&["gzip", "identity"]), Ok(Some(Coding::Gzip)));
        assert_eq!(
            encoding(&["identity", "Deflate"]),
            Ok(Some(Coding::Deflate))
        );
        assert!(encoding(&["gzip", "br"]).is_err());
        assert_eq!(encoding(&["ZSTD"]), Ok(Some(Coding::Zstd)));
        assert!(encoding(&["zstd", "gzip"]).is_err());
        assert!(encoding(&["gzip", "gzip"]).is_err());
        assert!(encoding(&["gzip, gzip"]).is_err());
        let Err(ApiError::UnsupportedMediaType(message)) = encoding(&["deflate, gzip"]) else {
            panic!("two layers");
        };
        assert!(message.contains("2 codings (deflate, gzip)"), "{message}");
    }

    #[test]
    fn deflate_bodies_inflate_as_zlib_or_raw_with_the_same_cap() {
        use std::io::Write as _;
        let data = br#"{"a":1}"#.repeat(1000);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&data).expect("compress");
        let zlib = zlib.finish().expect("finish");
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&data).expect("compress");
        let raw = raw.finish().expect("finish");
        assert!(has_zlib_header(&zlib));
        assert!(!has_zlib_header(&raw));
        for body in [&zlib, &raw] {
            assert_eq!(inflate(body, 1 << 20, |_| true).expect("inflates"), data);
            assert!(matches!(
                inflate(body, 1000, |_| true),
                Err(ApiError::BodyTooLarge {
                    limit: 1000,
                    after: " after deflate decompression"
                })
            ));
            assert!(matches!(
                inflate(body, 1 << 20, |_| false),
                Err(ApiError::Overloaded)
            ));
        }
        // A bomb stops at the cap: 100 MiB of spaces.
        let mut bomb = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![b' '; 100 << 20]).expect("compress");
        let bomb = bomb.finish().expect("finish");
        assert!(matches!(
            inflate(&bomb, 1 << 20, |_| true),
            Err(ApiError::BodyTooLarge { .. })
        ));
        // Not deflate, cut short, or followed by other bytes: 400 saying so.
        let mut trailing = zlib.clone();
        trailing.extend_from_slice(b"junk");
        let mut raw_trailing = raw.clone();
        raw_trailing.extend_from_slice(b"junk");
        for (body, says) in [
            (&b"\xff\xff not deflate"[..], "not valid deflate data"),
            (&zlib[..zlib.len() - 5], "not valid deflate data"),
            (&trailing[..], "4 bytes follow the compressed data"),
            (&raw_trailing[..], "4 bytes follow the compressed data"),
        ] {
            let Err(ApiError::BadRequest { message, .. }) = inflate(body, 1 << 20, |_| true) else {
                panic!("{body:?} is not deflate");
            };
            assert!(message.contains(says), "{message}");
        }
        assert_eq!(
            decompress(Coding::Deflate, &zlib, 1 << 20, |_| true).expect("inflates"),
            data
        );
    }

    /// A zstd frame of `data` whose header declares a window of 2^`window_log` bytes (the
    /// streaming encoder does not know the size, so the frame is not single-segment).
    fn zstd_with_window(data: &[u8], window_log: u32) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        e.window_log(window_log).expect("window log");
        e.write_all(data).expect("compress");
        e.finish().expect("finish")
    }

    fn bad_request(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest { message, .. }) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn zstd_bodies_decompress_with_the_same_cap() {
        let data = br#"{"a":1}"#.repeat(1000);
        let one = zstd::encode_all(&data[..], 3).expect("compress");
        assert_eq!(unzstd(&one, 1 << 20, |_| true).expect("decompresses"), data);
        assert_eq!(
            decompress(Coding::Zstd, &one, 1 << 20, |_| true).expect("decompresses"),
            data
        );
        assert!(matches!(
            unzstd(&one, 1000, |_| true),
            Err(ApiError::BodyTooLarge {
                limit: 1000,
                after: " after zstd decompression"
            })
        ));
        assert!(matches!(
            unzstd(&one, 1 << 20, |_| false),
            Err(ApiError::Overloaded)
        ));
        // Several frames, and a skippable one between them, are one body.
        let mut several = one.clone();
        several.extend_from_slice(&[0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, b'x', b'y', b'z']);
        several.extend_from_slice(&zstd::encode_all(&b"{\"b\":2}"[..], 19).expect("compress"));
        let mut expected = data.clone();
        expected.extend_from_slice(b"{\"b\":2}");
        assert_eq!(
            unzstd(&several, 1 << 20, |_| true).expect("decompresses"),
            expected
        );
        assert!(decoder_memory(Coding::Zstd, &several).is_ok());
        // A bomb stops at the cap: 100 MiB of spaces.
        let bomb = zstd::encode_all(&vec![b' '; 100 << 20][..], 19).expect("compress");
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert!(matches!(
            unzstd(&bomb, 1 << 20, |_| true),
            Err(ApiError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn zstd_windows_are_read_from_frame_headers_and_held() {
        let data = br#"{"a":1}"#.repeat(1000);
        for log in [10, 17, 21, ZSTD_MAX_WINDOW_LOG] {
            let frame = zstd_with_window(&data, log);
            assert_eq!(zstd_window(&frame).expect("zstd"), 1 << log, "log {log}");
            assert_eq!(
                decoder_memory(Coding::Zstd, &frame).expect("zstd"),
                (1 << log) + ZSTD_DECODER_BYTES
            );
            assert_eq!(
                unzstd(&frame, 1 << 20, |_| true).expect("decompresses"),
                data
            );
        }
        // Single-segment frames (the size known up front): the window is the content size,
        // from a 1-, 2- (stored minus 256) or 4-byte field.
        for size in [100, 7000, 100_000] {
            let content = vec![b'7'; size];
            let frame = zstd::bulk::compress(&content, 3).expect("compress");
            assert_eq!(frame[4] & 0x20, 0x20, "single segment");
            assert_eq!(zstd_window(&frame).expect("zstd"), size);
        }
        assert_eq!(decoder_memory(Coding::Gzip, b"anything"), Ok(0));
        assert_eq!(decoder_memory(Coding::Deflate, b"anything"), Ok(0));
    }

    #[test]
    fn zstd_frame_headers_are_read_as_rfc_8878_lays_them_out() {
        const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
        let header = |rest: &[u8]| zstd_frame_header(&[&MAGIC[..], rest].concat());
        let window = |window: u64, dictionary: u32| Ok(FrameHeader { window, dictionary });
        // Window_Descriptor: 2^(10 + exponent) plus mantissa eighths of it.
        assert_eq!(header(&[0x00, 12 << 3 | 7]), window(7_864_320, 0));
        assert_eq!(header(&[0x00, 13 << 3]), window(8_388_608, 0));
        assert_eq!(
            header(&[0x00, 31 << 3 | 7]),
            window((1 << 41) + (7 << 38), 0)
        );
        // Dictionary_ID of 1, 2 and 4 bytes after the window descriptor.
        assert_eq!(header(&[0x01, 10 << 3, 7]), window(1 << 20, 7));
        assert_eq!(header(&[0x02, 10 << 3, 1, 2]), window(1 << 20, 0x0201));
        assert_eq!(
            header(&[0x03, 10 << 3, 1, 2, 3, 4]),
            window(1 << 20, 0x0403_0201)
        );
        // Single segment: Frame_Content_Size of 1, 2 (+256), 4 or 8 bytes, after a
        // Dictionary_ID, with no window descriptor.
        assert_eq!(header(&[0x20, 200]), window(200, 0));
        assert_eq!(header(&[0x60, 0x00, 0x01]), window(512, 0));
        assert_eq!(header(&[0xA0, 0, 0, 0x90, 0]), window(9_437_184, 0));
        assert_eq!(
            header(&[0xE3, 0, 0, 0, 0, 0, 0, 0x90, 0, 0, 0, 0, 0]),
            window(9_437_184, 0)
        );
        assert_eq!(
            header(&[0xE0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            window(u64::MAX, 0)
        );
        assert_eq!(header(&[0x21, 9, 200]), window(200, 9));
        // Skippable frames need no window.
        for magic in [0x50, 0x5F] {
            assert_eq!(
                zstd_frame_header(&[magic, 0x2A, 0x4D, 0x18, 0, 0, 0, 0]),
                window(0, 0)
            );
        }
        // Cut short, or not zstd at all.
        for cut in [
            &[0x28][..],
            &[0x28, 0xB5, 0x2F],
            &MAGIC,
            &[0x28, 0xB5, 0x2F, 0xFD, 0x00],
        ] {
            assert_eq!(
                zstd_frame_header(cut),
                Err(HeaderProblem::CutShort),
                "{cut:?}"
            );
        }
        assert_eq!(header(&[0xE0, 1, 2, 3]), Err(HeaderProblem::CutShort));
        assert_eq!(header(&[0x03, 10 << 3, 1]), Err(HeaderProblem::CutShort));
        for other in [&b"{"[..], b"{\"a\"", &[0x51, 0x2A, 0x4D]] {
            assert_eq!(
                zstd_frame_header(other),
                Err(HeaderProblem::NotZstd),
                "{other:?}"
            );
        }
    }

    #[test]
    fn zstd_frames_that_cannot_be_decoded_here_are_refused_saying_why() {
        const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
        let body = |rest: &[u8]| [&MAGIC[..], rest].concat();
        // One eighth over the limit, and far over it (no overflow).
        for rest in [
            &[0x00, 13 << 3 | 1][..],
            &[0x00, 31 << 3 | 7],
            &[0xE0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            let message = bad_request(zstd_window(&body(rest)));
            assert!(message.contains("RFC 9659"), "{message}");
        }
        let message = bad_request(zstd_window(&body(&[0x01, 10 << 3, 7])));
        assert!(message.contains("needs dictionary 7"), "{message}");
        let message = bad_request(zstd_window(&body(&[0x00])));
        assert!(
            message.contains("the frame header at byte 0 is cut short"),
            "{message}"
        );
        let one = zstd::encode_all(&b"{}"[..], 3).expect("compress");
        let mut then_cut = one.clone();
        then_cut.extend_from_slice(&MAGIC[..2]);
        let message = bad_request(zstd_window(&then_cut));
        assert!(
            message.contains(&format!(
                "the frame header at byte {} is cut short",
                one.len()
            )),
            "{message}"
        );
        // The reserved bit set: left to libzstd's frame walk.
        let mut reserved = one;
        reserved[4] |= 0x08;
        let message = bad_request(zstd_window(&reserved));
        assert!(message.contains("incomplete or damaged"), "{message}");
    }

    #[test]
    fn zstd_over_the_http_window_limit_is_refused_before_and_while_decoding() {
        let data = br#"{"a":1}"#.repeat(1000);
        let wide = zstd_with_window(&data, ZSTD_MAX_WINDOW_LOG + 1);
        let message = bad_request(zstd_window(&wide));
        assert!(
            message.contains("needs a window of 16777216 bytes"),
            "{message}"
        );
        assert!(message.contains("RFC 9659"), "{message}");
        assert!(decoder_memory(Coding::Zstd, &wide).is_err());
        // libzstd is held to the same limit, should a caller skip the header check.
        let message = bad_request(unzstd(&wide, 1 << 20, |_| true));
        assert!(message.starts_with("body is not valid zstd"), "{message}");
    }

    #[test]
    fn bad_zstd_bodies_say_what_is_wrong() {
        let one = zstd::encode_all(&br#"{"a":1}"#.repeat(100)[..], 3).expect("compress");
        let mut trailing = one.clone();
        trailing.extend_from_slice(b"junk");
        let skippable = [0x5F, 0x2A, 0x4D, 0x18, 0, 0, 0, 0];
        let too_many = skippable.repeat(MAX_ZSTD_FRAMES + 1);
        for (body, says) in [
            (&b""[..], "it is empty".to_owned()),
            (
                &b"not zstd at all"[..],
                "does not start with a zstd frame".to_owned(),
            ),
            (
                &one[..one.len() - 3],
                "the frame at byte 0 is incomplete or damaged".to_owned(),
            ),
            (
                &trailing[..],
                format!(
                    "the 4 bytes after the zstd data that ends at byte {} are not another zstd frame",
                    one.len()
                ),
            ),
            (
                &too_many[..],
                format!("more than {MAX_ZSTD_FRAMES} zstd frames"),
            ),
        ] {
            let message = bad_request(zstd_window(body));
            assert!(message.contains(&says), "{message}");
        }
        // Exactly the most frames is still a body.
        assert_eq!(zstd_window(&skippable.repeat(MAX_ZSTD_FRAMES)), Ok(0));
        // The decoder refuses what the header check would, in its own words.
        for body in [
            &b"not zstd at all"[..],
            &one[..one.len() - 3],
            &trailing[..],
        ] {
            let message = bad_request(unzstd(body, 1 << 20, |_| true));
            assert!(message.starts_with("body is not valid zstd"), "{message}");
        }
    }
}
