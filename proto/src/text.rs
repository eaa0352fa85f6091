//! Making untrusted bytes (process names, command lines) safe to show.

/// Converts bytes to valid UTF-8 (invalid sequences become U+FFFD) and
/// escapes control and bidirectional-override characters, so a hostile
/// process name cannot break a terminal line, a JSON consumer or the layout
/// of a drawn line.
pub fn sanitize(bytes: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(lossy.len());
    for c in lossy.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that reorder the text around them (CVE-2021-42574 style).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
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
}
