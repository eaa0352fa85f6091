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

/// Longest text the service puts in a record (a path, a name), in bytes
/// once escaped; a longer one is cut and ends in `…`. With
/// [`MAX_CMDLINE_BYTES`] it bounds what one process can make a record,
/// the table and a `Snapshot()` reply weigh.
pub const MAX_TEXT_BYTES: usize = 512;

/// Longest command line the service puts in a record: its arguments'
/// bytes together, once escaped, each argument counting
/// [`ARGUMENT_BYTES`] more (so that thousands of one-letter arguments
/// cannot weigh more than a few long ones). An argument that does not fit
/// is cut and ends in `…` (and is the last); when whole arguments are left
/// out, a last element `…` says so.
pub const MAX_CMDLINE_BYTES: usize = 2048;

/// What an argument counts against [`MAX_CMDLINE_BYTES`] besides its text:
/// at most 128 arguments fit.
pub const ARGUMENT_BYTES: usize = 16;

/// What marks a cut text, and stands for left-out arguments.
pub const CUT_MARK: &str = "…";

impl SafeText {
    /// Untrusted bytes, as [`sanitize`] makes them safe.
    pub fn from_bytes(bytes: &[u8]) -> SafeText {
        SafeText(sanitize(bytes).into())
    }

    /// Untrusted bytes made safe and cut to at most `max` bytes, ending
    /// in [`CUT_MARK`] when cut. Only the start of a long text is read.
    pub fn bounded(bytes: &[u8], max: usize) -> SafeText {
        SafeText(bounded_text(bytes, max).0.into())
    }

    /// A command line (NUL-separated arguments, as /proc/PID/cmdline has
    /// it) made safe within [`MAX_CMDLINE_BYTES`]: see there for how cuts
    /// are marked.
    pub fn arguments(bytes: &[u8]) -> Vec<SafeText> {
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        let mut left = MAX_CMDLINE_BYTES;
        let mut args = Vec::new();
        let mut parts = bytes.split(|&b| b == 0).peekable();
        while let Some(arg) = parts.next() {
            // Room stays for the mark of arguments left out after this one.
            let reserve = ARGUMENT_BYTES + CUT_MARK.len();
            let room = match parts.peek() {
                Some(_) => left.saturating_sub(ARGUMENT_BYTES + reserve),
                None => left.saturating_sub(ARGUMENT_BYTES),
            };
            let (text, cut) = bounded_text(arg, room);
            left -= text.len() + ARGUMENT_BYTES;
            args.push(SafeText(text.into()));
            if cut {
                break;
            }
            if parts.peek().is_some() && left < 2 * reserve {
                args.push(SafeText::from(CUT_MARK));
                break;
            }
        }
        args
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

/// `bytes` made safe, cut to at most `max` bytes (a cut one ending in
/// [`CUT_MARK`]); whether it was cut.
fn bounded_text(bytes: &[u8], max: usize) -> (String, bool) {
    // Each byte becomes at least a byte of output: a text of more than
    // `max` bytes cannot fit, so no more than that is read of it.
    let head = &bytes[..bytes.len().min(max.saturating_add(1))];
    let lossy = String::from_utf8_lossy(head);
    let keep = max.saturating_sub(CUT_MARK.len());
    let mut out = String::with_capacity(lossy.len().min(max.saturating_add(10)));
    let mut cut_at = 0;
    for c in lossy.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() <= keep {
            cut_at = out.len();
        }
        if out.len() > max {
            break;
        }
    }
    if out.len() <= max && head.len() == bytes.len() {
        return (out, false);
    }
    out.truncate(cut_at);
    out.push_str(CUT_MARK);
    (out, true)
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
    fn texts_are_bounded_and_marked_when_cut() {
        assert_eq!(SafeText::bounded(b"short", 10), "short");
        assert_eq!(SafeText::bounded(b"0123456789", 10), "0123456789");
        assert_eq!(SafeText::bounded(b"0123456789a", 10), "0123456…");
        // Escapes count as what they take, and are never split.
        let escaped = SafeText::bounded(b"ab\x1b\x1bcd", 12);
        assert_eq!(escaped, "ab\\u{1b}…");
        assert!(escaped.len() <= 12);
        // Only the start of a huge text is read; the result stays small.
        let huge = vec![b'x'; 10 << 20];
        let cut = SafeText::bounded(&huge, MAX_TEXT_BYTES);
        assert_eq!(cut.len(), MAX_TEXT_BYTES);
        assert!(cut.ends_with(CUT_MARK));
        // Multibyte characters are not split either.
        let e = SafeText::bounded("éééé".as_bytes(), 7);
        assert_eq!(e, "éé…");
    }

    #[test]
    fn command_lines_are_bounded_and_say_so() {
        assert_eq!(SafeText::arguments(b"curl\0-s\0"), ["curl", "-s"]);
        let mut many = Vec::new();
        for _ in 0..1_000 {
            many.extend_from_slice(b"argument\0");
        }
        let args = SafeText::arguments(&many);
        let total: usize = args.iter().map(|a| a.len() + ARGUMENT_BYTES).sum();
        assert!(total <= MAX_CMDLINE_BYTES, "{total}");
        assert!(
            args.last().is_some_and(|a| a.ends_with(CUT_MARK)),
            "{args:?}"
        );
        assert!(args.len() > 50, "{}", args.len());
        // Whole arguments left out: the mark stands alone.
        let mut exact = Vec::new();
        for _ in 0..MAX_CMDLINE_BYTES / 4 + 10 {
            exact.extend_from_slice(b"abcd\0");
        }
        let args = SafeText::arguments(&exact);
        assert_eq!(
            args.last().map(SafeText::as_str),
            Some(CUT_MARK),
            "{args:?}"
        );
        let total: usize = args.iter().map(|a| a.len()).sum();
        assert!(total <= MAX_CMDLINE_BYTES, "{total}");
        let one_huge = vec![b'y'; 1_500_000];
        let args = SafeText::arguments(&one_huge);
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].len(), MAX_CMDLINE_BYTES - ARGUMENT_BYTES);
        assert!(args[0].ends_with(CUT_MARK));
    }

    #[test]
    fn cuts_long_text() {
        assert_eq!(sanitize_text(&"A".repeat(10), 4), "AAAA…");
        assert_eq!(sanitize_text("AAAA", 4), "AAAA");
        // The cut counts characters, not bytes, and escapes do not count.
        assert_eq!(sanitize_text("éé\u{7}é", 3), "éé\\u{7}…");
    }
}
