//! What an object's key says about the object: which Firehose error output it belongs to (if
//! any), and the UTC hour it covers.
//!
//! Firehose names backup objects `<prefix><stream>-<version>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<uuid><ext>`
//! and, by default, puts them under a `YYYY/MM/dd/HH/` prefix in UTC; error output goes under a
//! prefix that must contain `!{firehose:error-output-type}` (`processing-failed/`,
//! `http-endpoint-failed/`, …). Both facts are documented in
//! <https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html> and
//! <https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html>. The replay filters
//! (error type, time range) are decided here, from the key alone, before any object is fetched.

use std::fmt;
use std::str::FromStr;

/// The values `!{firehose:error-output-type}` evaluates to.
///
/// <https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html>
pub const ERROR_OUTPUT_TYPES: [&str; 5] = [
    "processing-failed",
    "http-endpoint-failed",
    "splunk-failed",
    "AmazonOpenSearchService-failed",
    "format-conversion-failed",
];

/// What an object holds, judged from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// NDJSON error records of records the transform Lambda failed; `rawData` is the original input.
    ProcessingFailed,
    /// NDJSON error records of records the HTTP endpoint did not accept within the retry duration.
    HttpEndpointFailed,
    /// NDJSON error records of another destination's error output (Splunk, OpenSearch, format
    /// conversion). Read like the others; the CLI cannot select them by name.
    OtherFailed(&'static str),
    /// Raw records with no error wrapper: an `AllData` backup object.
    Raw,
}

impl ObjectKind {
    /// Classifies an object by its key: a directory segment naming an error output type makes it
    /// an error object; anything else is a raw (`AllData`) object.
    ///
    /// The file name itself is not looked at, because it starts with the stream name, which may
    /// contain any of the words.
    #[must_use]
    pub fn of_key(key: &str) -> Self {
        let dirs = key.rsplit_once('/').map_or("", |(dirs, _)| dirs);
        for segment in dirs.split('/') {
            // `http-endpoint-failed` and the others never contain one another, so the order of
            // the checks does not matter.
            for kind in ERROR_OUTPUT_TYPES {
                if segment.contains(kind) {
                    return match kind {
                        "processing-failed" => Self::ProcessingFailed,
                        "http-endpoint-failed" => Self::HttpEndpointFailed,
                        other => Self::OtherFailed(other),
                    };
                }
            }
        }
        Self::Raw
    }

    /// Whether the object holds NDJSON error records (as opposed to raw records).
    #[must_use]
    pub fn is_error_output(&self) -> bool {
        !matches!(self, Self::Raw)
    }

    /// The name used in logs and the summary.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::ProcessingFailed => "processing-failed",
            Self::HttpEndpointFailed => "http-endpoint-failed",
            Self::OtherFailed(name) => name,
            Self::Raw => "all-data",
        }
    }
}

/// One UTC hour, the granularity of Firehose's default `YYYY/MM/dd/HH/` prefix.
///
/// Ordered chronologically (field order is significant for the derived `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcHour {
    /// Year, four digits.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of month, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
}

impl UtcHour {
    fn new(year: u16, month: u8, day: u8, hour: u8) -> Option<Self> {
        ((1..=12).contains(&month) && (1..=31).contains(&day) && hour <= 23).then_some(Self {
            year,
            month,
            day,
            hour,
        })
    }

    /// The hour an object covers: from a `YYYY/MM/dd/HH/` run of directory segments, or failing
    /// that from the `-yyyy-MM-dd-HH-mm-ss-` timestamp Firehose puts in every object name.
    /// `None` when the key has neither (a custom prefix without a timestamp and a renamed file).
    #[must_use]
    pub fn of_key(key: &str) -> Option<Self> {
        let (dirs, file) = key.rsplit_once('/').unwrap_or(("", key));
        let segments: Vec<&str> = dirs.split('/').collect();
        let from_dirs = segments.windows(4).rev().find_map(|w| {
            let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
            if digits(w[0], 4) && digits(w[1], 2) && digits(w[2], 2) && digits(w[3], 2) {
                Self::new(
                    w[0].parse().ok()?,
                    w[1].parse().ok()?,
                    w[2].parse().ok()?,
                    w[3].parse().ok()?,
                )
            } else {
                None
            }
        });
        from_dirs.or_else(|| Self::of_file_name(file))
    }

    /// The UTC hour that holds the Unix time `secs` (`None` outside years 0–9999).
    #[must_use]
    pub fn of_unix(secs: i64) -> Option<Self> {
        let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
        Self::new(
            u16::try_from(t.year()).ok()?,
            u8::from(t.month()),
            t.day(),
            t.hour(),
        )
    }

    /// Finds `-dddd-dd-dd-dd-dd-dd-` in a Firehose object name.
    fn of_file_name(file: &str) -> Option<Self> {
        // "-2026-11-25-09-15-02-": 21 bytes, dashes at 0, 5, 8, 11, 14, 17, 20.
        const PATTERN_LEN: usize = 21;
        const DASHES: [usize; 7] = [0, 5, 8, 11, 14, 17, 20];
        let bytes = file.as_bytes();
        (0..bytes.len().saturating_sub(PATTERN_LEN - 1)).find_map(|start| {
            let window = &bytes[start..start + PATTERN_LEN];
            let shape_ok = window.iter().enumerate().all(|(i, b)| {
                if DASHES.contains(&i) {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
            if !shape_ok {
                return None;
            }
            let text = std::str::from_utf8(window).ok()?;
            Self::new(
                text[1..5].parse().ok()?,
                text[6..8].parse().ok()?,
                text[9..11].parse().ok()?,
                text[12..14].parse().ok()?,
            )
        })
    }
}

impl fmt::Display for UtcHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}",
            self.year, self.month, self.day, self.hour
        )
    }
}

/// A bound of the time filter as typed on the command line.
///
/// Accepted forms: `2026-11-25T09`, `2026-11-25T09:00Z` (minutes and zone are ignored; the
/// layout has hour granularity and is UTC), `2026/11/25/09` (as in the key), and a date alone,
/// `2026-11-25`, which means the first hour of that day for `--since` and the last for `--until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourBound {
    /// The hour, with 0 standing in for "no hour given".
    pub hour: UtcHour,
    /// Whether the hour was given; a date alone widens `--until` to 23:00.
    pub has_hour: bool,
}

impl HourBound {
    /// The bound as the first hour it includes.
    #[must_use]
    pub fn as_start(self) -> UtcHour {
        self.hour
    }

    /// The bound as the last hour it includes.
    #[must_use]
    pub fn as_end(self) -> UtcHour {
        if self.has_hour {
            self.hour
        } else {
            UtcHour {
                hour: 23,
                ..self.hour
            }
        }
    }
}

/// The hour digits of a time written `HH`, `HH:MM` or `HH:MM:SS[.fff]`, in UTC: with no zone,
/// `Z`, or a zero offset (`+00:00`, `-00`, `+0000`). Another offset is an error rather than
/// silently read as UTC, which would move the window by that many hours. `whole` is the bound
/// as given, and `bad` the error for a malformed one.
fn hour_of<'a>(time: &'a str, whole: &str, bad: impl Fn() -> String) -> Result<&'a str, String> {
    let (clock, zone) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) => time.split_at(at),
        None => (time, ""),
    };
    let zero_offset = matches!(
        zone,
        "" | "Z" | "z" | "+00:00" | "-00:00" | "+0000" | "-0000" | "+00" | "-00"
    );
    if !zero_offset {
        return Err(format!(
            "`{whole}` has the UTC offset `{zone}`: backup folders are in UTC, so write the hour \
             in UTC (with no offset or Z), e.g. 2026-11-25T09"
        ));
    }
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mut fields = clock.split(':');
    let hour = fields.next().filter(|h| h.len() == 2).ok_or_else(&bad)?;
    let minute_ok = fields.next().is_none_or(|m| m.len() == 2 && digits(m));
    let second_ok = fields.next().is_none_or(|sec| {
        let (whole_s, fraction) = sec.split_once('.').unwrap_or((sec, "0"));
        whole_s.len() == 2 && digits(whole_s) && digits(fraction)
    });
    if !(minute_ok && second_ok && fields.next().is_none()) {
        return Err(bad());
    }
    Ok(hour)
}

impl FromStr for HourBound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("`{s}` is not an hour: write 2026-11-25T09, 2026/11/25/09 or 2026-11-25 (UTC)")
        };
        let s = s.trim();
        let (date, hour) = match s.split_once(['T', 't', ' ']) {
            Some((date, time)) => (date, Some(hour_of(time, s, bad)?)),
            None if s.matches('/').count() == 3 => {
                let (date, hour) = s.rsplit_once('/').ok_or_else(bad)?;
                (date, Some(hour))
            }
            None => (s, None),
        };
        let mut parts = date.split(['-', '/']);
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let num = |t: &str, len: usize| {
            if t.len() == len && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u16>().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let narrow = |v: u16| u8::try_from(v).map_err(|_| bad());
        let h = hour.map(|h| num(h, 2)).transpose()?;
        let parsed = UtcHour::new(
            num(y, 4)?,
            narrow(num(m, 2)?)?,
            narrow(num(d, 2)?)?,
            narrow(h.unwrap_or(0))?,
        )
        .ok_or_else(bad)?;
        Ok(Self {
            hour: parsed,
            has_hour: h.is_some(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_outputs_are_recognised_from_directory_segments() {
        assert_eq!(
            ObjectKind::of_key("backup/processing-failed/2026/11/25/09/s-1-2026-11-25-09-00-00-u"),
            ObjectKind::ProcessingFailed
        );
        assert_eq!(
            ObjectKind::of_key("http-endpoint-failed/2026/11/25/09/s-1-2026-11-25-09-00-00-u.gz"),
            ObjectKind::HttpEndpointFailed
        );
        assert_eq!(
            ObjectKind::of_key("errors/splunk-failed/x"),
            ObjectKind::OtherFailed("splunk-failed")
        );
        // a custom error prefix around the expression still names the type
        assert_eq!(
            ObjectKind::of_key("fh/err-processing-failed-out/2026/11/25/09/f"),
            ObjectKind::ProcessingFailed
        );
    }

    #[test]
    fn the_hour_of_a_unix_time() {
        let hour = |y, m, d, h| Some(UtcHour::new(y, m, d, h).unwrap());
        assert_eq!(UtcHour::of_unix(0), hour(1970, 1, 1, 0));
        // 2026-11-25T10:10:00Z and the second before 11:00.
        assert_eq!(UtcHour::of_unix(1_795_601_400), hour(2026, 11, 25, 10));
        assert_eq!(UtcHour::of_unix(1_795_604_399), hour(2026, 11, 25, 10));
        assert_eq!(UtcHour::of_unix(1_795_604_400), hour(2026, 11, 25, 11));
        assert_eq!(UtcHour::of_unix(-1), hour(1969, 12, 31, 23));
        assert_eq!(UtcHour::of_unix(i64::MAX), None);
    }

    #[test]
    fn the_file_name_does_not_decide_the_kind() {
        assert_eq!(
            ObjectKind::of_key("2026/11/25/09/processing-failed-stream-1-2026-11-25-09-00-00-u"),
            ObjectKind::Raw
        );
        assert_eq!(ObjectKind::of_key("just-a-file"), ObjectKind::Raw);
    }

    #[test]
    fn the_hour_comes_from_the_prefix_then_from_the_file_name() {
        let h =
            UtcHour::of_key("p/processing-failed/2026/11/25/09/s-1-2026-11-24-23-59-59-u").unwrap();
        assert_eq!(h.to_string(), "2026-11-25T09");
        let h = UtcHour::of_key("custom/stream-3-2026-11-24-23-59-59-abc-def.gz").unwrap();
        assert_eq!(h.to_string(), "2026-11-24T23");
        assert_eq!(UtcHour::of_key("custom/no-time-here"), None);
        // 13 is not a month: not a layout
        assert_eq!(UtcHour::of_key("2026/13/25/09/x"), None);
    }

    #[test]
    fn bounds_parse_in_every_documented_form() {
        let b: HourBound = "2026-11-25T09".parse().unwrap();
        assert_eq!(b.as_start().to_string(), "2026-11-25T09");
        let b: HourBound = "2026-11-25T09:30Z".parse().unwrap();
        assert_eq!(b.as_end().to_string(), "2026-11-25T09");
        let b: HourBound = "2026/11/25/09".parse().unwrap();
        assert_eq!(b.as_start().to_string(), "2026-11-25T09");
        let b: HourBound = "2026-11-25".parse().unwrap();
        assert_eq!(b.as_start().to_string(), "2026-11-25T00");
        assert_eq!(b.as_end().to_string(), "2026-11-25T23");
    }

    #[test]
    fn bad_bounds_say_what_to_write() {
        for bad in [
            "",
            "yesterday",
            "2026-11",
            "2026-11-25T25",
            "2026-1-25",
            "2026-11-25-01-02",
            "2026-11-25T9",
            "2026-11-25T09:3",
            "2026-11-25T09:30:00:00",
            "2026-11-25T09h",
        ] {
            let err = bad.parse::<HourBound>().unwrap_err();
            assert!(err.contains("2026-11-25T09"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_utc_times_are_taken() {
        for utc in [
            "2026-11-25T09:00:00Z",
            "2026-11-25T09:00:00.250Z",
            "2026-11-25T09:59+00:00",
            "2026-11-25T09-00",
            "2026-11-25t09z",
        ] {
            let b: HourBound = utc.parse().unwrap_or_else(|e| panic!("{utc}: {e}"));
            assert_eq!(b.as_start().to_string(), "2026-11-25T09", "{utc}");
        }
        for offset in [
            "2026-11-25T09:00+02:00",
            "2026-11-25T09-05:00",
            "2026-11-25T09:00+0100",
        ] {
            let err = offset.parse::<HourBound>().unwrap_err();
            assert!(
                err.contains("UTC offset") && err.contains("in UTC"),
                "{offset}: {err}"
            );
        }
    }
}
