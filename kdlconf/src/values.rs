//! Reading one value of a setting as what it should be — an integer in a
//! range, a duration, a boolean, a number, a string, a size — each with one
//! wording of its error: `NAME must be EXPECTED, not WRITTEN`.

use std::ops::RangeInclusive;
use std::time::Duration;

use kdl::{KdlEntry, KdlValue};

use crate::{one_line, ConfigError, Source};

/// What a duration looks like, in messages.
pub const DURATION_EXPECTED: &str = "a duration such as 1, 0.5, \"500ms\" or \"2s\"";

/// What a size looks like, in messages.
pub const SIZE_EXPECTED: &str = "a number of bytes (5120) or a size such as \"5KiB\", \"1MiB\"";

impl Source<'_> {
    /// The value as written in the file, for messages: on one line, cut
    /// after 40 characters.
    pub fn written(&self, entry: &KdlEntry) -> String {
        let span = entry.span();
        let written = self
            .text()
            .get(span.offset()..span.offset().saturating_add(span.len()))
            .filter(|s| !s.trim().is_empty())
            .map(str::trim);
        match written {
            Some(s) => one_line(s, 40),
            None => one_line(&entry.value().to_string(), 40),
        }
    }

    /// The error for a value of `name` that is not `expected`:
    /// `NAME must be EXPECTED, not WRITTEN`.
    pub fn wrong(&self, entry: &KdlEntry, name: &str, expected: &str) -> ConfigError {
        self.error(
            entry.span().offset(),
            format!("{name} must be {expected}, not {}", self.written(entry)),
        )
    }

    /// The value of `name` as an integer in `range` that fits `T`.
    pub fn integer<T: TryFrom<i128>>(
        &self,
        name: &str,
        entry: &KdlEntry,
        range: RangeInclusive<i128>,
    ) -> Result<T, ConfigError> {
        entry
            .value()
            .as_integer()
            .filter(|i| range.contains(i))
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| {
                self.wrong(
                    entry,
                    name,
                    &format!("an integer from {} to {}", range.start(), range.end()),
                )
            })
    }

    /// The value of `name` as a power of two in `range`; `example` is one.
    pub fn power_of_two(
        &self,
        name: &str,
        entry: &KdlEntry,
        range: RangeInclusive<u32>,
        example: u32,
    ) -> Result<u32, ConfigError> {
        entry
            .value()
            .as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| range.contains(i) && i.is_power_of_two())
            .ok_or_else(|| {
                self.wrong(
                    entry,
                    name,
                    &format!(
                        "a power of two from {} to {} (such as {example})",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// The value of `name` as a duration in `range`: seconds as a number,
    /// or a string with a unit ([`duration_seconds`]).
    pub fn duration(
        &self,
        name: &str,
        entry: &KdlEntry,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let seconds = match entry.value() {
            KdlValue::Integer(i) => Some(*i as f64),
            KdlValue::Float(f) if !f.is_nan() => Some(*f),
            KdlValue::String(s) => duration_seconds(s),
            _ => None,
        };
        let Some(seconds) = seconds else {
            return Err(self.wrong(entry, name, DURATION_EXPECTED));
        };
        match Duration::try_from_secs_f64(seconds) {
            Ok(d) if range.contains(&d) => Ok(d),
            _ => Err(self.wrong(entry, name, &duration_range(&range))),
        }
    }

    /// The value of `name` as `#true` or `#false`.
    pub fn boolean(&self, name: &str, entry: &KdlEntry) -> Result<bool, ConfigError> {
        entry
            .value()
            .as_bool()
            .ok_or_else(|| self.wrong(entry, name, "#true or #false"))
    }

    /// The value of `name` as a number (integer or not) in `range`.
    pub fn number(
        &self,
        name: &str,
        entry: &KdlEntry,
        range: RangeInclusive<f64>,
    ) -> Result<f64, ConfigError> {
        let v = match entry.value() {
            KdlValue::Integer(i) => Some(*i as f64),
            KdlValue::Float(f) => Some(*f),
            _ => None,
        };
        v.filter(|v| range.contains(v)).ok_or_else(|| {
            self.wrong(
                entry,
                name,
                &format!("a number from {} to {}", range.start(), range.end()),
            )
        })
    }

    /// The value of `name` as a string; `expected` says what it should say.
    pub fn string<'e>(
        &self,
        name: &str,
        entry: &'e KdlEntry,
        expected: &str,
    ) -> Result<&'e str, ConfigError> {
        entry
            .value()
            .as_string()
            .ok_or_else(|| self.wrong(entry, name, expected))
    }

    /// The value of `name` as a size in bytes: a number of bytes, or a
    /// string with a unit ([`size_bytes`]).
    pub fn size(&self, name: &str, entry: &KdlEntry) -> Result<u64, ConfigError> {
        let n = match entry.value() {
            KdlValue::Integer(i) => u64::try_from(*i).ok(),
            KdlValue::String(s) => size_bytes(s),
            _ => None,
        };
        n.ok_or_else(|| self.wrong(entry, name, SIZE_EXPECTED))
    }
}

/// `between MIN and MAX` for a range of durations, as messages say it.
pub fn duration_range(range: &RangeInclusive<Duration>) -> String {
    format!(
        "between {} and {}",
        show_duration(*range.start()),
        show_duration(*range.end())
    )
}

/// A duration in the fewest words: `0`, `10ms`, `1.5s`, `2m`, `1h`, `1 day`.
pub fn show_duration(d: Duration) -> String {
    const DAY_SECS: u64 = 86_400;
    let secs = d.as_secs();
    match (secs, d.subsec_nanos()) {
        (0, 0) => "0".to_owned(),
        (s, 0) if s % DAY_SECS == 0 => match s / DAY_SECS {
            1 => "1 day".to_owned(),
            n => format!("{n} days"),
        },
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        (0, _) => format!("{}ms", d.as_secs_f64() * 1000.0),
        _ => format!("{}s", d.as_secs_f64()),
    }
}

/// Seconds in a duration string: a decimal number and a unit, `ms`, `s`, `m`,
/// `h` or `d` (`"500ms"`, `"1.5 h"`, `"30d"`); `None` when it is not one. Negative
/// numbers are accepted here so that they get the range message.
pub fn duration_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let digits = number.strip_prefix('-').unwrap_or(number);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let is_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    match unit.trim_start() {
        // Divided rather than multiplied by 0.001, so that "10ms" is exactly
        // the f64 closest to 0.01.
        "ms" => Some(value / 1000.0),
        "s" => Some(value),
        "m" => Some(value * 60.0),
        "h" => Some(value * 3600.0),
        "d" => Some(value * 86_400.0),
        _ => None,
    }
}

/// The likeliest slip in a configuration file is a bare `500ms`, which KDL
/// reads as a broken number: a syntax error at such a `token` says how to
/// write it. For [`Source::document`].
pub fn duration_hint(token: &str) -> Option<String> {
    (token.parse::<f64>().is_err() && duration_seconds(token).is_some())
        .then(|| format!("a duration with a unit is a quoted string: \"{token}\""))
}

/// Bytes in `"5KiB"`, `"5K"`, `"1.5MiB"`, `"300"`; `None` otherwise.
pub fn size_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite())?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" | "kb" => 1024.0,
        "m" | "mib" | "mb" => 1024.0 * 1024.0,
        "g" | "gib" | "gb" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = value * scale;
    (bytes <= u64::MAX as f64).then_some(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_on_thread, DAY};
    use std::path::Path;

    /// Reads the single `name value` node of `text` with `read`.
    fn value<T: Send + 'static>(
        text: &str,
        read: impl FnOnce(&Source<'_>, &KdlEntry) -> Result<T, ConfigError> + Send + 'static,
    ) -> Result<T, String> {
        parse_on_thread(text, Path::new("t.kdl"), |source| {
            let document = source.document(|_| None)?;
            let entry = &document.nodes()[0].entries()[0];
            read(&source, entry)
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn duration_strings() {
        assert_eq!(duration_seconds("500ms"), Some(0.5));
        assert_eq!(duration_seconds("0.25 h"), Some(900.0));
        assert_eq!(duration_seconds("-1s"), Some(-1.0));
        for bad in ["2", "1.s", ".5s", "1e3s", "5 days", "", "-s"] {
            assert_eq!(duration_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_in_few_words() {
        let cases = [
            (Duration::ZERO, "0"),
            (Duration::from_millis(10), "10ms"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (DAY, "1 day"),
            (DAY * 2, "2 days"),
        ];
        for (d, words) in cases {
            assert_eq!(show_duration(d), words, "{d:?}");
        }
        assert_eq!(
            duration_range(&(Duration::from_millis(10)..=DAY)),
            "between 10ms and 1 day"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("5KiB"), Some(5120));
        assert_eq!(size_bytes("1.5M"), Some(1_572_864));
        assert_eq!(size_bytes("300"), Some(300));
        assert_eq!(size_bytes("5 parsecs"), None);
    }

    #[test]
    fn typed_values() {
        let int = |text: &str| value(text, |s, e| s.integer::<u8>("n", e, 1..=300));
        assert_eq!(int("n 7"), Ok(7));
        assert_eq!(
            int("n 0"),
            Err("t.kdl:1:3: n must be an integer from 1 to 300, not 0".into())
        );
        // In range but not a u8.
        assert_eq!(
            int("n 256"),
            Err("t.kdl:1:3: n must be an integer from 1 to 300, not 256".into())
        );
        let duration = |text: &str| value(text, |s, e| s.duration("d", e, Duration::ZERO..=DAY));
        assert_eq!(duration("d \"2m\""), Ok(Duration::from_secs(120)));
        assert_eq!(duration("d 0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(
            duration("d #nan"),
            Err(
                "t.kdl:1:3: d must be a duration such as 1, 0.5, \"500ms\" or \"2s\", not #nan"
                    .into()
            )
        );
        assert_eq!(
            duration("d \"25h\""),
            Err("t.kdl:1:3: d must be between 0 and 1 day, not \"25h\"".into())
        );
        let power = |text: &str| value(text, |s, e| s.power_of_two("p", e, 4..=64, 8));
        assert_eq!(power("p 16"), Ok(16));
        assert_eq!(
            power("p 12"),
            Err("t.kdl:1:3: p must be a power of two from 4 to 64 (such as 8), not 12".into())
        );
        assert_eq!(value("b #true", |s, e| s.boolean("b", e)), Ok(true));
        assert_eq!(
            value("b 1", |s, e| s.boolean("b", e)),
            Err("t.kdl:1:3: b must be #true or #false, not 1".into())
        );
        assert_eq!(value("f 2", |s, e| s.number("f", e, 1.0..=3.0)), Ok(2.0));
        assert_eq!(
            value("f 3.5", |s, e| s.number("f", e, 1.0..=3.0)),
            Err("t.kdl:1:3: f must be a number from 1 to 3, not 3.5".into())
        );
        assert_eq!(
            value("s 1", |s, e| s.string("s", e, "a name").map(str::to_owned)),
            Err("t.kdl:1:3: s must be a name, not 1".into())
        );
        assert_eq!(value("z \"1KiB\"", |s, e| s.size("z", e)), Ok(1024));
        assert_eq!(
            value("z -1", |s, e| s.size("z", e)),
            Err(format!("t.kdl:1:3: z must be {SIZE_EXPECTED}, not -1"))
        );
    }
}
