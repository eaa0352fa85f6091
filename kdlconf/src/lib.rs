//! Reading leco's KDL configuration (`config.kdl`, KDL v2) with
//! `FILE:LINE:COLUMN` errors.
//!
//! One file configures the whole project and each program reads its own
//! section of it; what a section means stays with its program. This crate
//! holds what every section reader needs: reading the file (a regular one
//! only), parsing it safely (on a thread with a stack for kdl's recursion,
//! within a deadline, after refusing the shapes kdl is exponentially slow
//! on), and errors that say where and what was expected, one line each,
//! so that an editor can jump to them.
//!
//! Entry points: [`read_file`], then [`parse_on_thread`], whose closure gets
//! a [`Source`] to build the document ([`Source::document`]), find its
//! section ([`Source::section`]) and walk the nodes the section knows
//! ([`Source::settings`], by [`NodeSpec`]). The node-shape vocabulary —
//! sections, single values, several values, blocks — and the value readers
//! (integers, durations, booleans, numbers, strings, sizes, powers of two)
//! each have one wording for every mistake, so the sections of the file all
//! report alike; [`kind`] turns those readers into kinds of setting for
//! tables of settings that also feed command lines and help texts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kdl::KdlNode;

mod file;
pub mod kind;
mod parse;
mod shape;
mod slashdash;
mod syntax;
mod values;

pub use file::{locate, read_file, user_config, SYSTEM_CONFIG};
pub use parse::{parse_on_thread, PARSE_DEADLINE};
pub use shape::{NodeSpec, Shape};
pub use values::{
    duration_hint, duration_range, duration_seconds, show_duration, size_bytes, DURATION_EXPECTED,
    SIZE_EXPECTED,
};

/// A config problem, displayed as `FILE:LINE:COLUMN: message` (1-based line
/// and column), or `FILE: message` when it concerns the whole file; one line,
/// saying what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", Location(.path, .position))]
pub struct ConfigError {
    path: PathBuf,
    /// 1-based line and column (in characters), when the problem has a place.
    position: Option<(usize, usize)>,
    message: String,
}

impl ConfigError {
    /// A problem with the file as a whole (`FILE: message`).
    pub fn whole(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_owned(),
            position: None,
            message: message.into(),
        }
    }

    /// A problem at byte `offset` of `text`, the contents of `path`.
    pub fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_owned(),
            position: Some(line_column(text, offset)),
            message: message.into(),
        }
    }

    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line and column, when the problem has a place.
    pub fn position(&self) -> Option<(usize, usize)> {
        self.position
    }

    /// The message without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

struct Location<'a>(&'a PathBuf, &'a Option<(usize, usize)>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.0.display()),
            None => write!(f, "{}", self.0.display()),
        }
    }
}

/// One day, the longest duration any setting takes.
pub const DAY: Duration = Duration::from_secs(86_400);

/// The text being parsed and its file, for building errors that point into
/// it and for reading values.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl<'a> Source<'a> {
    /// `text`, the contents of `path` (used only in messages).
    pub fn new(text: &'a str, path: &'a Path) -> Self {
        Source { text, path }
    }

    /// The whole text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The file, as messages name it.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// An error at byte `offset` of the text.
    pub fn error(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.text, offset, message)
    }

    /// The 1-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        line_column(self.text, offset).0
    }

    /// The error for a second top-level `again` where `first` already is:
    /// one section of a name per file.
    pub fn second_section(&self, first: &KdlNode, again: &KdlNode) -> ConfigError {
        let name = again.name().value();
        let line = self.line_of(first.name().span().offset());
        self.error(
            again.name().span().offset(),
            format!(
                "a second `{name} {{}}` section; put these settings into the one at line {line}"
            ),
        )
    }

    /// Records setting `name` written at byte `at`, or the error when
    /// `seen` already has it.
    pub fn set_once<'n>(
        &self,
        seen: &mut Vec<(&'n str, usize)>,
        name: &'n str,
        at: usize,
    ) -> Result<(), ConfigError> {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let line = self.line_of(*first);
            return Err(self.error(
                at,
                format!("`{name}` is set twice; the first is at line {line}"),
            ));
        }
        seen.push((name, at));
        Ok(())
    }
}

/// The message for an unknown `name` where one of `known` belongs:
/// `unknown WHAT `NAME` in PLACE; expected one of …`, with `; did you mean
/// `…`?` when one is within two edits.
pub fn unknown(what: &str, name: &str, place: &str, known: &[&str]) -> String {
    let mut message = format!(
        "unknown {what} `{}` in {place}; expected one of {}",
        one_line(name, 40),
        known.join(", ")
    );
    let length = name.chars().count();
    let closest = known
        .iter()
        // Names that differ more in length cannot be close; skipping them
        // keeps a megabyte-long name cheap.
        .filter(|k| k.len().abs_diff(length) <= 2)
        .map(|k| (edit_distance(name, k), k))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance);
    if let Some((_, k)) = closest {
        message.push_str(&format!("; did you mean `{k}`?"));
    }
    message
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// `s` on one line for a message: control characters and KDL's other
/// newlines escaped, cut after `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        // U+2028 and U+2029 are not control characters, yet editors and
        // terminals break lines at them.
        if c.is_control() || is_newline(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` ends a line in KDL v2: CR, LF, NEL, VT, FF, LS or PS, the
/// spec's table and the kdl crate's `NEWLINES` alike (CRLF is one newline;
/// [`line_column`] takes care of that).
pub(crate) fn is_newline(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{85}' | '\u{b}' | '\u{c}' | '\u{2028}' | '\u{2029}'
    )
}

/// 1-based line and column (in characters) of byte `offset` in `text`,
/// lines ending where KDL v2 ends them (CR, LF, CRLF, NEL, VT, FF, LS, PS);
/// an offset past the end or inside a character is clamped.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let (mut line, mut column) = (1, 1);
    let mut chars = text[..offset].chars().peekable();
    while let Some(c) = chars.next() {
        if !is_newline(c) {
            column += 1;
            continue;
        }
        if c == '\r' {
            chars.next_if_eq(&'\n');
        }
        line += 1;
        column = 1;
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(line_column("", 0), (1, 1));
        assert_eq!(line_column("abc", 2), (1, 3));
        assert_eq!(line_column("a\nbc", 2), (2, 1));
        assert_eq!(line_column("a\r\nbc", 4), (2, 2));
        assert_eq!(line_column("éé\néx", 7), (2, 2));
        // Past the end or inside a character: clamped, never a panic.
        assert_eq!(line_column("ab", 99), (1, 3));
        assert_eq!(line_column("é", 1), (1, 1));
        assert_eq!(line_column("éé\néx", 6), (2, 1));
    }

    #[test]
    fn every_kdl_newline_ends_a_line() {
        let newlines = [
            "\n", "\r\n", "\r", "\u{85}", "\u{b}", "\u{c}", "\u{2028}", "\u{2029}",
        ];
        for newline in newlines {
            let text = format!("a{newline}bc{newline}{newline}déf");
            let at = |s: &str| text.find(s).expect("in the text");
            assert_eq!(line_column(&text, at("c")), (2, 2), "{newline:?}");
            assert_eq!(line_column(&text, at("é")), (4, 2), "{newline:?}");
            // The error the parser reports lands on the line the editor shows.
            let text = format!("s {{{newline}  a 1{newline}  b 1.x{newline}}}");
            let message = parse_on_thread(&text, Path::new("t.kdl"), |source| {
                source.document(|_| None).map(|_| ())
            })
            .expect_err("a broken float");
            assert_eq!(message.position(), Some((3, 5)), "{newline:?}: {message}");
        }
        // CRLF is one newline, but CR CR is two.
        assert_eq!(line_column("a\r\r\nb", 4), (3, 1));
        assert_eq!(line_column("a\n\rb", 3), (3, 1));
    }

    #[test]
    fn messages_escape_every_newline() {
        for newline in ["\u{85}", "\u{b}", "\u{c}", "\u{2028}", "\u{2029}"] {
            let shown = one_line(&format!("a{newline}b"), usize::MAX);
            assert!(!shown.chars().any(is_newline), "{shown:?}");
            assert!(shown.starts_with("a\\u{"), "{shown:?}");
        }
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("udp-idle", "udp-idle"), 0);
        assert_eq!(edit_distance("udp-idel", "udp-idle"), 2);
        assert_eq!(edit_distance("backlog", "backlog-max"), 4);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn error_display() {
        let path = Path::new("dir/c.kdl");
        let e = ConfigError::at(path, "a\nbcd", 4, "bad");
        assert_eq!(e.to_string(), "dir/c.kdl:2:3: bad");
        assert_eq!((e.position(), e.message()), (Some((2, 3)), "bad"));
        assert_eq!(e.path(), path);
        assert_eq!(
            ConfigError::whole(path, "gone").to_string(),
            "dir/c.kdl: gone"
        );
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let known = ["width", "height", "wide-mode"];
        assert_eq!(
            unknown("setting", "widht", "x {}", &known),
            "unknown setting `widht` in x {}; expected one of width, height, wide-mode; \
             did you mean `width`?"
        );
        assert!(!unknown("setting", "colour", "x {}", &known).contains("did you mean"));
        let long = "y".repeat(1 << 20);
        assert!(unknown("rule", &long, "r {}", &known).contains(&format!("`{}…`", "y".repeat(40))));
    }

    #[test]
    fn one_line_escapes_and_cuts() {
        assert_eq!(one_line("a\nb\tc", usize::MAX), "a\\nb\\tc");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("abc", 3), "abc");
    }

    #[test]
    fn syntax_errors_take_a_hint() {
        let parse = |text: &str| {
            parse_on_thread(text, Path::new("t.kdl"), |source| {
                source
                    .document(|token| Some(format!("saw {token}")))
                    .map(|_| ())
            })
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse("a {\n  b 1.x;\n}"),
            Err("t.kdl:2:5: Non-digit character found after the '.' of a float; saw 1.x".into())
        );
        assert_eq!(parse("a 1"), Ok(()));
    }

    #[test]
    fn repeated_names_and_sections() {
        let text = "s { a 1; b 2; a 3 }\ns {}";
        let outcome = parse_on_thread(text, Path::new("t.kdl"), |source| {
            let document = source.document(|_| None)?;
            let nodes = document.nodes();
            let mut seen = Vec::new();
            let children = nodes[0].children().map(|c| c.nodes()).unwrap_or(&[]);
            let repeated = children
                .iter()
                .try_for_each(|n| source.set_once(&mut seen, n.name().value(), n.span().offset()))
                .map_err(|e| e.to_string());
            Ok((
                repeated,
                source.second_section(&nodes[0], &nodes[1]).to_string(),
            ))
        })
        .expect("parses");
        assert_eq!(
            outcome,
            (
                Err("t.kdl:1:15: `a` is set twice; the first is at line 1".into()),
                "t.kdl:2:1: a second `s {}` section; put these settings into the one at line 1"
                    .into()
            )
        );
    }
}
