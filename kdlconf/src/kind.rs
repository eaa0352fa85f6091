//! Kinds of setting values, for tables of settings: each kind reads its
//! value from the file and from a command-line argument with the same
//! checks, writes a value the way the file would, and describes itself for
//! help texts and the annotated configuration. A table row then needs only
//! a name, a kind, a default and a doc line.

use std::fmt::Display;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::time::Duration;

use kdl::KdlEntry;

use crate::values::{duration_range, duration_seconds, show_duration};
use crate::{ConfigError, Source};

/// A kind of setting value.
pub trait Kind: Copy + Send + Sync + 'static {
    /// What a setting of this kind holds.
    type Value: Clone + Send + Sync + 'static;

    /// Reads the value of setting `name` from the file.
    fn read(
        &self,
        src: &Source<'_>,
        name: &str,
        entry: &KdlEntry,
    ) -> Result<Self::Value, ConfigError>;

    /// Reads a command-line argument, with the same checks as [`Kind::read`].
    fn parse_arg(&self, arg: &str) -> Result<Self::Value, String>;

    /// `value` as it is written in the file (and on the command line).
    fn show(&self, value: &Self::Value) -> String;

    /// What a value must be, e.g. `an integer from 0 to 10`.
    fn describe(&self) -> String;

    /// The placeholder of the command-line option, e.g. `N`.
    fn value_name(&self) -> &'static str;
}

/// A duration in a range: seconds as a number, or a string with a unit
/// (`"500ms"`, `"2m"`, `"30d"`); shown in whole seconds where it can be, in
/// hours or days when it is a whole number of them (`"1h"`, `"30d"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds {
    min: Duration,
    max: Duration,
}

impl Seconds {
    /// Durations from `min` to `max`, both included.
    pub const fn between(min: Duration, max: Duration) -> Seconds {
        Seconds { min, max }
    }

    fn range(&self) -> RangeInclusive<Duration> {
        self.min..=self.max
    }
}

impl Kind for Seconds {
    type Value = Duration;

    fn read(
        &self,
        src: &Source<'_>,
        name: &str,
        entry: &KdlEntry,
    ) -> Result<Duration, ConfigError> {
        src.duration(name, entry, self.range())
    }

    fn parse_arg(&self, arg: &str) -> Result<Duration, String> {
        let seconds = arg
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| !s.is_nan())
            .or_else(|| duration_seconds(arg))
            .ok_or_else(|| {
                format!(
                    "`{arg}` is not a duration: seconds (0.5) or with a unit (500ms, 2s, 5m, 1h)"
                )
            })?;
        Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|d| self.range().contains(d))
            .ok_or_else(|| out_of_range(arg, self))
    }

    fn show(&self, value: &Duration) -> String {
        let secs = value.as_secs();
        if value.subsec_nanos() != 0 {
            format!("\"{}\"", show_duration(*value))
        } else if secs > 0 && secs.is_multiple_of(86_400) {
            format!("\"{}d\"", secs / 86_400)
        } else if secs >= 3600 && secs.is_multiple_of(3600) {
            format!("\"{}h\"", secs / 3600)
        } else {
            secs.to_string()
        }
    }

    fn describe(&self) -> String {
        format!("a duration {}", duration_range(&self.range()))
    }

    fn value_name(&self) -> &'static str {
        "DURATION"
    }
}

/// An integer in a range, held as `T`.
#[derive(Debug)]
pub struct Integer<T> {
    min: i128,
    max: i128,
    value_name: &'static str,
    held: PhantomData<fn() -> T>,
}

impl<T> Clone for Integer<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Integer<T> {}

impl<T> Integer<T> {
    /// Integers from `min` to `max` (both included, and both fitting `T`);
    /// `value_name` is the command line's placeholder, e.g. `N`.
    pub const fn new(min: i128, max: i128, value_name: &'static str) -> Integer<T> {
        Integer {
            min,
            max,
            value_name,
            held: PhantomData,
        }
    }

    fn range(&self) -> RangeInclusive<i128> {
        self.min..=self.max
    }
}

impl<T> Kind for Integer<T>
where
    T: TryFrom<i128> + Display + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn read(&self, src: &Source<'_>, name: &str, entry: &KdlEntry) -> Result<T, ConfigError> {
        src.integer(name, entry, self.range())
    }

    fn parse_arg(&self, arg: &str) -> Result<T, String> {
        whole(arg, "an integer")?
            .filter(|n| self.range().contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| out_of_range(arg, self))
    }

    fn show(&self, value: &T) -> String {
        value.to_string()
    }

    fn describe(&self) -> String {
        format!("an integer from {} to {}", self.min, self.max)
    }

    fn value_name(&self) -> &'static str {
        self.value_name
    }
}

/// A power of two in a range, such as a buffer size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerOfTwo {
    min: u32,
    max: u32,
    example: u32,
    value_name: &'static str,
}

impl PowerOfTwo {
    /// Powers of two from `min` to `max`; `example` is one, for messages;
    /// `value_name` is the command line's placeholder.
    pub const fn new(min: u32, max: u32, example: u32, value_name: &'static str) -> PowerOfTwo {
        PowerOfTwo {
            min,
            max,
            example,
            value_name,
        }
    }
}

impl Kind for PowerOfTwo {
    type Value = u32;

    fn read(&self, src: &Source<'_>, name: &str, entry: &KdlEntry) -> Result<u32, ConfigError> {
        src.power_of_two(name, entry, self.min..=self.max, self.example)
    }

    fn parse_arg(&self, arg: &str) -> Result<u32, String> {
        whole(arg, "a power of two")?
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (self.min..=self.max).contains(n) && n.is_power_of_two())
            .ok_or_else(|| out_of_range(arg, self))
    }

    fn show(&self, value: &u32) -> String {
        value.to_string()
    }

    fn describe(&self) -> String {
        format!("a power of two from {} to {}", self.min, self.max)
    }

    fn value_name(&self) -> &'static str {
        self.value_name
    }
}

/// A command-line argument as a whole number, to be checked further;
/// `what` names what it should be when it is not a number at all.
fn whole(arg: &str, what: &str) -> Result<Option<i128>, String> {
    arg.trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("`{arg}` is not {what}"))
}

/// The message for an argument outside what `kind` takes.
fn out_of_range(arg: &str, kind: &impl Kind) -> String {
    format!("{arg} is out of range: {}", kind.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DAY;

    #[test]
    fn seconds() {
        let k = Seconds::between(Duration::from_millis(10), DAY);
        assert_eq!(k.parse_arg("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(k.parse_arg("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(k.parse_arg("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            k.parse_arg("0"),
            Err("0 is out of range: a duration between 10ms and 1 day".into())
        );
        assert_eq!(
            k.parse_arg("1e9"),
            Err("1e9 is out of range: a duration between 10ms and 1 day".into())
        );
        assert!(k
            .parse_arg("soon")
            .expect_err("words")
            .contains("not a duration"));
        assert!(k.parse_arg("NaN").is_err());
        assert_eq!(k.show(&Duration::from_secs(60)), "60");
        assert_eq!(k.show(&Duration::from_millis(500)), "\"500ms\"");
        assert_eq!(k.describe(), "a duration between 10ms and 1 day");
    }

    #[test]
    fn integers() {
        let k = Integer::<u32>::new(64, 4_194_304, "N");
        assert_eq!(k.parse_arg("64"), Ok(64));
        assert_eq!(
            k.parse_arg("63"),
            Err("63 is out of range: an integer from 64 to 4194304".into())
        );
        assert_eq!(k.parse_arg("x"), Err("`x` is not an integer".into()));
        assert_eq!(k.show(&32_768), "32768");
        let k = PowerOfTwo::new(4, 1 << 20, 256, "KIB");
        assert_eq!(k.parse_arg("8"), Ok(8));
        assert_eq!(
            k.parse_arg("300"),
            Err("300 is out of range: a power of two from 4 to 1048576".into())
        );
        assert_eq!(k.value_name(), "KIB");
    }
}
