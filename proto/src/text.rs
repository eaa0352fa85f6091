//! Making untrusted text (process names, command lines, paths, anything a
//! user can choose) safe to show: one policy for every output — terminal
//! lines, JSON, the bus and the overlay — so that hostile text is treated
//! the same wherever it appears. [`SafeText`] holds text that went through
//! it: the record's texts are of that type, so none can leave unescaped.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use zbus::zvariant::{Signature, Type};

/// Text made safe to show by [`sanitize_text`]: the only way to make one,
/// so a value of this type never carries a control, bidirectional or
/// invisible character. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SafeText(Arc<str>);

impl SafeText {
    /// Untrusted bytes, as [`sanitize`] makes them safe.
    pub fn from_bytes(bytes: &[u8]) -> SafeText {
        SafeText(sanitize(bytes).into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Untrusted text, made safe (a no-op copy for ordinary text).
impl From<&str> for SafeText {
    fn from(text: &str) -> SafeText {
        if text.chars().any(needs_escape) {
            SafeText(sanitize_text(text, usize::MAX).into())
        } else {
            SafeText(text.into())
        }
    }
}

impl From<String> for SafeText {
    fn from(text: String) -> SafeText {
        if text.chars().any(needs_escape) {
            SafeText(sanitize_text(&text, usize::MAX).into())
        } else {
            SafeText(text.into())
        }
    }
}

impl Deref for SafeText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SafeText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for SafeText {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SafeText {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// As a string, on the bus (`s`) and in JSON.
impl Serialize for SafeText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl Type for SafeText {
    const SIGNATURE: &'static Signature = &Signature::Str;
}

/// Converts bytes to valid UTF-8 (invalid sequences become U+FFFD) and
/// escapes every character that [`needs_escape`] as `\u{…}`, so a hostile
/// process name cannot break a terminal line, a JSON consumer or the layout
/// of a drawn line.
pub fn sanitize(bytes: &[u8]) -> String {
    sanitize_text(&String::from_utf8_lossy(bytes), usize::MAX)
}

/// [`sanitize`] for text that is already UTF-8, cut after `max_chars`
/// characters (then ending in `…`) so that it fits on a line.
pub fn sanitize_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    for (n, c) in text.chars().enumerate() {
        if n >= max_chars {
            out.push('…');
            break;
        }
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first paragraph of a doc comment (`///` lines as `#[doc]` hands
/// them over), on one line: what tables of keys and settings show as a
/// one-line description.
pub fn first_paragraph(doc: &str) -> String {
    let lines: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// Characters that would break a line, or hide or reorder the text around
/// them (CVE-2021-42574 style): control characters, bidirectional
/// embeddings, overrides, isolates and marks, zero-width and invisible
/// format characters, line and paragraph separators, interlinear
/// annotations.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
            | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
            | '\u{2028}' | '\u{2029}' | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_text_and_escapes_the_rest() {
        assert_eq!(sanitize(b"firefox"), "firefox");
        assert_eq!(sanitize("Web Content ▶ ü".as_bytes()), "Web Content ▶ ü");
        assert_eq!(sanitize(b"a\nb\x1b[31m"), "a\\u{a}b\\u{1b}[31m");
        assert_eq!(sanitize(b"bad\xff"), "bad\u{FFFD}");
        assert_eq!(sanitize("x\u{202E}gpj.exe".as_bytes()), "x\\u{202e}gpj.exe");
    }

    #[test]
    fn one_policy_for_bytes_and_text() {
        let hostile = "a\u{200B}b\u{FEFF}c\u{2028}d\u{2066}e\u{7}";
        assert_eq!(
            sanitize(hostile.as_bytes()),
            sanitize_text(hostile, usize::MAX)
        );
        assert_eq!(
            sanitize_text(hostile, usize::MAX),
            "a\\u{200b}b\\u{feff}c\\u{2028}d\\u{2066}e\\u{7}"
        );
        assert!(!sanitize_text(hostile, usize::MAX).chars().any(needs_escape));
    }

    #[test]
    fn first_paragraphs() {
        assert_eq!(first_paragraph(" one\n two\n\n three\n"), "one two");
        assert_eq!(first_paragraph("\n\n one\n"), "one");
        assert_eq!(first_paragraph(""), "");
    }

    #[test]
    fn safe_text_is_made_only_safe() {
        let hostile = "evil\r\u{1b}[2J\u{202e}";
        let safe = SafeText::from(hostile);
        assert_eq!(safe.as_str(), sanitize_text(hostile, usize::MAX));
        assert!(!safe.chars().any(needs_escape));
        assert_eq!(SafeText::from(hostile.to_owned()), safe);
        assert_eq!(SafeText::from_bytes(b"a\xffb\n"), "a\u{fffd}b\\u{a}");
        // Escaping is idempotent: safe text stays as it is.
        assert_eq!(SafeText::from(safe.as_str()), safe);
        assert_eq!(SafeText::from("curl"), "curl");
    }

    #[test]
    fn cuts_long_text() {
        assert_eq!(sanitize_text(&"A".repeat(10), 4), "AAAA…");
        assert_eq!(sanitize_text("AAAA", 4), "AAAA");
        // The cut counts characters, not bytes, and escapes do not count.
        assert_eq!(sanitize_text("éé\u{7}é", 3), "éé\\u{7}…");
    }
}
