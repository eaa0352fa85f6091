//! Syntax errors: the kdl parser's diagnostics, turned into one error at
//! the place that needs fixing.

use kdl::{KdlDocument, KdlError};

use crate::{one_line, ConfigError, Source};

/// The largest magnitude kdl reads into a run of digits (an integer, or the
/// whole part, fraction or exponent of a decimal number): it parses each
/// into an `i128` before applying the sign.
const LARGEST: i128 = i128::MAX;

impl Source<'_> {
    /// Parses the text as a KDL v2 document. A syntax error points at the
    /// parser's first diagnostic, or at a number too large for the parser;
    /// `hint` gets the word written there and may add a sentence on how to
    /// write it instead.
    pub fn document(
        &self,
        hint: impl FnOnce(&str) -> Option<String>,
    ) -> Result<KdlDocument, ConfigError> {
        KdlDocument::parse_v2(self.text()).map_err(|e| self.syntax_error(&e, hint))
    }

    fn syntax_error(
        &self,
        error: &KdlError,
        hint: impl FnOnce(&str) -> Option<String>,
    ) -> ConfigError {
        if let Some((offset, message)) = too_large_number(self.text(), error) {
            return self.error(offset, message);
        }
        let Some(diagnostic) = error.diagnostics.first() else {
            return ConfigError::whole(self.path(), "not a valid KDL document");
        };
        let offset = diagnostic.span.offset();
        let mut message = one_line(
            diagnostic.message.as_deref().unwrap_or("invalid KDL"),
            usize::MAX,
        );
        let token = self
            .text()
            .get(offset..)
            .and_then(|rest| {
                rest.split(|c: char| c.is_whitespace() || c == ';' || c == '}')
                    .next()
            })
            .unwrap_or("");
        if let Some(hint) = hint(token) {
            message.push_str("; ");
            message.push_str(&hint);
        }
        self.error(offset, message)
    }
}

/// The first number in `text` too large for kdl, with its message, when
/// `error`'s diagnostics lead to one. kdl gives up on such a number without
/// a word: a decimal one merely fails to match, so the parser blames what
/// encloses it ("No closing '}'" at the section's `{`), then recovers and
/// stumbles over it; a hexadecimal one is reported as "Expected integer".
/// Either way a diagnostic begins or ends where the number begins.
fn too_large_number(text: &str, error: &KdlError) -> Option<(usize, String)> {
    let mut starts: Vec<usize> = error
        .diagnostics
        .iter()
        .flat_map(|d| [d.span.offset(), d.span.offset() + d.span.len()])
        .filter(|&at| starts_a_word(text, at))
        .collect();
    // Words that start where others do not overlap, so each is read once.
    starts.sort_unstable();
    starts.dedup();
    starts.into_iter().find_map(|at| {
        let word = &text[at..];
        let word = &word[..word.find(|c| !is_number_char(c)).unwrap_or(word.len())];
        too_large(word).map(|message| (at, message))
    })
}

/// Whether a word of number characters starts at byte `at` of `text`.
fn starts_a_word(text: &str, at: usize) -> bool {
    text.get(at..)
        .and_then(|rest| rest.chars().next())
        .is_some_and(is_number_char)
        && !text[..at].chars().next_back().is_some_and(is_number_char)
}

/// Characters a KDL number is written with, and those that may follow
/// them in a word that is not one.
fn is_number_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')
}

/// The message for `word` when it is a KDL number that kdl cannot read
/// because one of its runs of digits exceeds [`LARGEST`]; `None` for
/// anything else, numbers it reads and words that are no number at all.
fn too_large(word: &str) -> Option<String> {
    let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
    let radix = match unsigned.get(..2) {
        Some("0x" | "0X") => 16,
        Some("0o" | "0O") => 8,
        Some("0b" | "0B") => 2,
        _ => 10,
    };
    let shown = one_line(word, 40);
    if radix != 10 {
        return (digits_too_large(&unsigned[2..], radix)?)
            .then(|| format!("integer {shown} is too large: {RANGE}"));
    }
    let (whole, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((whole, exponent)) => (whole, Some(exponent)),
        None => (unsigned, None),
    };
    let (whole, fraction) = match whole.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (whole, None),
    };
    let exponent = exponent.map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    let mut too_large = digits_too_large(whole, 10)?;
    for part in [fraction, exponent].into_iter().flatten() {
        too_large |= digits_too_large(part, 10)?;
    }
    match (too_large, fraction.is_some() || exponent.is_some()) {
        (false, _) => None,
        (true, false) => Some(format!("integer {shown} is too large: {RANGE}")),
        (true, true) => Some(format!(
            "number {shown} has too many digits: before the `.`, after it and after the \
             `e`, each part must stay within {LARGEST}; write fewer digits and an \
             exponent, such as 1.5e40"
        )),
    }
}

/// What a KDL integer can be, for messages.
const RANGE: &str = "integers go from -170141183460469231731687303715884105727 to \
                     170141183460469231731687303715884105727";

/// Whether `digits`, in `radix`, with `_` between them, exceed
/// [`LARGEST`]; `None` when they are not such digits.
fn digits_too_large(digits: &str, radix: u32) -> Option<bool> {
    let mut chars = digits.chars();
    if !chars.next()?.is_digit(radix) || !chars.all(|c| c == '_' || c.is_digit(radix)) {
        return None;
    }
    let plain: String = digits.chars().filter(|&c| c != '_').collect();
    Some(i128::from_str_radix(&plain, radix).is_err())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse_on_thread;

    fn parse(text: &str) -> Result<(), String> {
        parse_on_thread(text, Path::new("t.kdl"), |source| {
            source.document(|_| None).map(|_| ())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_too_large_are_named_where_they_are() {
        let big = "9".repeat(42);
        let integer = "is too large: integers go from -1701";
        let number = "has too many digits";
        let cases = [
            (format!("a {big}"), (1, 3), integer),
            (format!("a -{big}"), (1, 3), integer),
            (format!("a k={big}"), (1, 5), integer),
            (format!("a (u8){big}"), (1, 7), integer),
            (format!("a 0x{}", "f".repeat(40)), (1, 3), integer),
            (format!("a 0o{}", "7".repeat(60)), (1, 3), integer),
            (format!("a 0b{}", "1".repeat(140)), (1, 3), integer),
            (format!("a 1 {}9", "9_".repeat(45)), (1, 5), integer),
            (
                format!("s {{\n  t {{\n    x {big}\n  }}\n}}"),
                (3, 7),
                integer,
            ),
            (format!("a 1 {{ b 2 }}; c {big}"), (1, 16), integer),
            (format!("a {big}.5"), (1, 3), number),
            (format!("a 1.{big}"), (1, 3), number),
            (format!("a 1e-{big}"), (1, 3), number),
        ];
        for (text, (line, column), what) in &cases {
            let message = parse(text).expect_err(text);
            assert!(
                message.starts_with(&format!("t.kdl:{line}:{column}: ")) && message.contains(what),
                "{text}: {message}"
            );
        }
        assert_eq!(
            parse(&format!("a {big}")),
            Err(format!(
                "t.kdl:1:3: integer {}… is too large: {RANGE}",
                "9".repeat(40)
            ))
        );
    }

    #[test]
    fn numbers_that_fit_or_are_no_numbers_keep_the_parser_word() {
        let largest = i128::MAX.to_string();
        assert_eq!(
            parse(&format!("a {largest} -{largest} 0x{:x}", i128::MAX)),
            Ok(())
        );
        assert_eq!(
            parse("a 1.x"),
            Err("t.kdl:1:3: Non-digit character found after the '.' of a float".into())
        );
        // A word that merely starts with many digits is no number.
        let message = parse(&format!("a {}x", "9".repeat(42))).expect_err("junk");
        assert!(!message.contains("too large"), "{message}");
        assert_eq!(too_large("9-9"), None);
        assert_eq!(too_large("-"), None);
        assert_eq!(too_large("0x"), None);
    }
}
