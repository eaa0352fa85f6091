//! A look at the text before kdl parses it, for the shapes kdl 6.7 takes
//! too long on (kdl-rs issue 177). Slashdashed child blocks (`a /-{ … }`)
//! nested in one another cost about 1.8 times as much per level — 16 of
//! them, 96 bytes, take seconds, 40 take hours — and a run of slashdashes
//! (`/- /- /- a`) costs the cube of its length: 2,000 of them, 6 KB, take
//! half a minute. Both are counted here in one linear pass, and refused
//! with the place where the limit is passed, long before kdl would finish.
//!
//! The pass knows just enough KDL to skip what cannot hold a slashdash or a
//! block (comments and strings) and to see where a node ends. It errs on
//! the safe side: a block counts as slashdashed when a slashdash comes
//! before it in the same node, whatever that slashdash comments out.

use crate::is_newline;

/// Most slashdashes in a file. A run of this many parses in about 50 ms
/// (optimized build), and a file that comments out nodes this way rarely
/// has more than a handful.
pub(crate) const MAX_SLASHDASHES: usize = 128;

/// Deepest nesting of slashdashed blocks: 6 parse in about 3 ms, and even
/// [`MAX_SLASHDASHES`] slashdashes spent on nests of 6 parse in about
/// 60 ms. A real file comments out a block within a commented-out block
/// at most.
pub(crate) const MAX_SLASHDASH_DEPTH: usize = 6;

/// The byte offset and the message of the first place where `text` passes
/// [`MAX_SLASHDASHES`] or [`MAX_SLASHDASH_DEPTH`], if it does.
pub(crate) fn check(text: &str) -> Result<(), (usize, String)> {
    let mut scan = Scan {
        text,
        at: 0,
        slashdashes: 0,
        blocks: vec![Block::default()],
    };
    scan.run()
}

/// What the pass knows of one block (the document is the outermost).
#[derive(Debug, Default, Clone, Copy)]
struct Block {
    /// Opened after a slashdash in its node.
    slashdashed: bool,
    /// A slashdash was seen in the current node of this block…
    pending: bool,
    /// …and something after it: the next newline ends the node. A
    /// newline right after `/-` does not, as a slashdash may stand on a
    /// line of its own.
    after_pending: bool,
    /// A `\` continues the node on the next line.
    continued: bool,
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
    slashdashes: usize,
    blocks: Vec<Block>,
}

impl Scan<'_> {
    fn run(&mut self) -> Result<(), (usize, String)> {
        while let Some(c) = self.text[self.at..].chars().next() {
            let start = self.at;
            self.at += c.len_utf8();
            let rest = &self.text[self.at..];
            match c {
                '/' if rest.starts_with('/') => self.skip_line(),
                '/' if rest.starts_with('*') => self.skip_block_comment(),
                '/' if rest.starts_with('-') => {
                    self.at += 1;
                    self.slashdash(start)?;
                }
                '"' => self.skip_string(0),
                '#' => {
                    let hashes = 1 + rest.bytes().take_while(|&b| b == b'#').count();
                    if self.text[start + hashes..].starts_with('"') {
                        self.at = start + hashes + 1;
                        self.skip_string(hashes);
                    } else {
                        self.token();
                    }
                }
                '{' => self.open(start)?,
                '}' => {
                    if self.blocks.len() > 1 {
                        self.blocks.pop();
                    }
                    self.token();
                }
                ';' => self.end_of_node(),
                '\\' => self.current().continued = true,
                c if is_newline(c) => {
                    // CRLF is one newline: a `\` before it continues the node.
                    if c == '\r' && self.text[self.at..].starts_with('\n') {
                        self.at += 1;
                    }
                    if std::mem::take(&mut self.current().continued) {
                        continue;
                    }
                    self.end_of_node();
                }
                c if c.is_whitespace() => {}
                _ => self.token(),
            }
        }
        Ok(())
    }

    fn current(&mut self) -> &mut Block {
        // The document's block is never popped.
        let last = self.blocks.len() - 1;
        &mut self.blocks[last]
    }

    /// Something that belongs to the current node.
    fn token(&mut self) {
        let block = self.current();
        block.continued = false;
        if block.pending {
            block.after_pending = true;
        }
    }

    fn end_of_node(&mut self) {
        let block = self.current();
        block.continued = false;
        if block.after_pending {
            block.pending = false;
            block.after_pending = false;
        }
    }

    fn slashdash(&mut self, at: usize) -> Result<(), (usize, String)> {
        self.slashdashes += 1;
        if self.slashdashes > MAX_SLASHDASHES {
            return Err((
                at,
                format!(
                    "more than {MAX_SLASHDASHES} slashdashes (/-) in one file, which the KDL \
                     parser would take very long on; comment out with // instead"
                ),
            ));
        }
        let block = self.current();
        block.continued = false;
        block.pending = true;
        block.after_pending = false;
        Ok(())
    }

    fn open(&mut self, at: usize) -> Result<(), (usize, String)> {
        let slashdashed = self.current().pending;
        self.token();
        self.blocks.push(Block {
            slashdashed,
            ..Block::default()
        });
        let depth = self.blocks.iter().filter(|b| b.slashdashed).count();
        if depth > MAX_SLASHDASH_DEPTH {
            return Err((
                at,
                format!(
                    "slashdashed blocks (/-{{ … }}) nested more than {MAX_SLASHDASH_DEPTH} \
                     deep, which the KDL parser would take very long on; comment out with // \
                     instead"
                ),
            ));
        }
        Ok(())
    }

    /// Past a `//` comment, up to the newline that ends it.
    fn skip_line(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.find(is_newline).unwrap_or(rest.len());
    }

    /// Past a `/* … */` comment, which may hold others.
    fn skip_block_comment(&mut self) {
        self.at += 1;
        let mut depth = 1;
        while depth > 0 {
            let rest = &self.text[self.at..];
            let Some(i) = rest.find(['*', '/']) else {
                self.at = self.text.len();
                return;
            };
            self.at += i + 1;
            match (&rest[i..i + 1], rest[i + 1..].chars().next()) {
                ("*", Some('/')) => depth -= 1,
                ("/", Some('*')) => depth += 1,
                _ => continue,
            }
            self.at += 1;
        }
    }

    /// Past a string whose opening `"` (after `hashes` `#` when raw) has
    /// been read: single-line or multi-line (`"""`), escapes only in
    /// strings that are not raw. An unterminated string ends the text.
    fn skip_string(&mut self, hashes: usize) {
        self.token();
        let multiline = self.text[self.at..].starts_with("\"\"");
        if multiline {
            self.at += 2;
        }
        let quotes = if multiline { "\"\"\"" } else { "\"" };
        let close = format!("{quotes}{}", "#".repeat(hashes));
        let raw = hashes > 0;
        while self.at < self.text.len() {
            let rest = &self.text[self.at..];
            if rest.starts_with(&close) {
                self.at += close.len();
                return;
            }
            let step = match rest.chars().next() {
                Some('\\') if !raw => 1 + rest[1..].chars().next().map_or(0, char::len_utf8),
                Some(c) => c.len_utf8(),
                None => 1,
            };
            self.at += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_refused(text: &str) -> bool {
        check(text).is_err_and(|(_, m)| m.contains("nested"))
    }

    #[test]
    fn real_uses_pass() {
        let texts = [
            "/-overlay { rules { /-hide \"x\"; group \"k\" { /-match \"a\" } } }",
            "a /-1 2 /-k=3 /-{ b } { c }\n/-\nd { e }",
            "a /-{ b /-{ c /-{ d } } }",
            &"/-a 1\n".repeat(MAX_SLASHDASHES),
        ];
        for text in texts {
            assert_eq!(check(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn too_many_slashdashes_are_refused_at_the_first_too_many() {
        let text = "/- ".repeat(2_000) + "a";
        let (at, message) = check(&text).expect_err("refused");
        assert_eq!(at, 3 * MAX_SLASHDASHES);
        assert!(
            message.starts_with("more than 128 slashdashes"),
            "{message}"
        );
    }

    #[test]
    fn nesting_counts_slashdashed_blocks_only() {
        let nest = |open: &str, n: usize| format!("{}{}", open.repeat(n), "}".repeat(n));
        assert!(!depth_refused(&nest("a /-{ ", MAX_SLASHDASH_DEPTH)));
        assert!(depth_refused(&nest("a /-{ ", MAX_SLASHDASH_DEPTH + 1)));
        assert!(depth_refused(&"a /-{\n".repeat(16)));
        assert!(depth_refused(&"a /-\n{\n".repeat(16)));
        assert!(depth_refused(&"a /-\\\n{\n".repeat(16)));
        assert!(depth_refused(&"a /-b \\\r\n{\r\n".repeat(16)));
        assert!(depth_refused(&"/-a {\n".repeat(16)));
        // Plain blocks in between do not count; a finished node ends its
        // slashdash.
        assert!(!depth_refused(&nest("a /-{ b { ", MAX_SLASHDASH_DEPTH)));
        assert!(!depth_refused(&"a { /-b\nc {\n".repeat(100)));
        assert_eq!(
            check(&"a /-{\n".repeat(16)).map_err(|(at, _)| at),
            Err("a /-{\n".len() * MAX_SLASHDASH_DEPTH + 4)
        );
    }

    #[test]
    fn comments_and_strings_hide_slashdashes_and_braces() {
        let many = "/-{".repeat(200);
        let texts = [
            format!("// {many}\na 1"),
            format!("/* /* {many} */ {many} */ a 1"),
            format!("a \"{many}\\\" {many}\""),
            format!("a \"\"\"\n{many}\"\n\"\"\"\nb"),
            format!("a #\"{many}\"\" {many}\"#"),
            format!("a ##\"\"\"\n{many}\"\"\"# \n\"\"\"##"),
        ];
        for text in &texts {
            assert_eq!(check(text), Ok(()), "{text}");
        }
        // …until they end.
        assert!(check(&format!("a \"x\" {many}")).is_err());
        assert!(check(&format!("a #true {many}")).is_err());
        assert!(check(&format!("/* a */ {many}")).is_err());
    }
}
