//! Parsing safely: on a thread with a stack for kdl's recursion, within a
//! time limit, after refusing the shapes kdl is known to be slow on.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::{slashdash, ConfigError, Source};

/// The kdl parser (6.7) recurses once per nested child block, per slashdash,
/// per token of a block comment and per character it skips while recovering
/// from an error at the top level, so a few hundred `{` overflow an 8 MiB
/// stack and abort the process. We therefore parse on a thread whose stack
/// covers the worst case of the text at hand. Measured in an unoptimized
/// build, the worst case costs about 31 KiB per `{`, 26 KiB per `/` and
/// 3.3 KiB per other byte (an optimized build needs about a fifth); these
/// bounds keep a margin over that. The stack is only reserved address space:
/// a normal file touches a few pages of it.
const PARSER_STACK_BASE: usize = 1 << 20;
const PARSER_STACK_PER_BRACE: usize = 48 << 10;
const PARSER_STACK_PER_SLASH: usize = 40 << 10;
const PARSER_STACK_PER_BYTE: usize = 6 << 10;
/// Texts that would need more are refused: about 170 KiB of ordinary text,
/// or 20 000 nested blocks.
const PARSER_STACK_MAX: usize = 1 << 30;

/// How long reading a configuration may take. A real file takes a few
/// milliseconds; the shapes kdl is known to be slow on are refused before
/// parsing (see `slashdash.rs`), so this only catches what nobody knew of,
/// yet then keeps `leco-service load` from hanging at boot and the
/// overlay's reload from never ending.
pub const PARSE_DEADLINE: Duration = Duration::from_secs(2);

/// The stack the parser may need for `text`, or `None` beyond
/// [`PARSER_STACK_MAX`].
fn parser_stack(text: &str) -> Option<usize> {
    text.bytes().try_fold(PARSER_STACK_BASE, |sum, byte| {
        let cost = match byte {
            b'{' => PARSER_STACK_PER_BRACE,
            b'/' => PARSER_STACK_PER_SLASH,
            _ => PARSER_STACK_PER_BYTE,
        };
        sum.checked_add(cost).filter(|&s| s <= PARSER_STACK_MAX)
    })
}

/// Runs `work` on a thread with a stack large enough for parsing `text` (the
/// contents of `path`) with kdl, which recurses per nesting level. `work`
/// should build the document with [`Source::document`] and drop it before
/// returning, since dropping it recurses as deep. Texts too large or too
/// deeply nested for any reasonable stack are an error, so are shapes kdl
/// takes exponential time on (many or deeply nested slashdashes, at the
/// place they pass the limit) and any work that takes longer than
/// [`PARSE_DEADLINE`].
///
/// A parse that overruns cannot be stopped: its thread is abandoned and
/// finishes in the background, its result dropped there, while this
/// returns the error. A program that then exits takes it along; one that
/// runs on (the overlay, reloading) pays a core until kdl is done.
pub fn parse_on_thread<T, F>(text: &str, path: &Path, work: F) -> Result<T, ConfigError>
where
    T: Send + 'static,
    F: FnOnce(Source<'_>) -> Result<T, ConfigError> + Send + 'static,
{
    parse_within(text, path, PARSE_DEADLINE, work)
}

/// [`parse_on_thread`] with another deadline.
fn parse_within<T, F>(
    text: &str,
    path: &Path,
    deadline: Duration,
    work: F,
) -> Result<T, ConfigError>
where
    T: Send + 'static,
    F: FnOnce(Source<'_>) -> Result<T, ConfigError> + Send + 'static,
{
    let stack = parser_stack(text).ok_or_else(|| {
        ConfigError::whole(
            path,
            format!(
                "too large or too deeply nested to parse ({} bytes); \
                 a configuration file is a few KiB",
                text.len()
            ),
        )
    })?;
    slashdash::check(text)
        .map_err(|(offset, message)| ConfigError::at(path, text, offset, message))?;
    let (owned_text, owned_path) = (text.to_owned(), path.to_owned());
    // Room for the result, so that a parser that finishes after the
    // deadline does not wait for a reader that is gone.
    let (tx, rx) = mpsc::sync_channel(1);
    let parser = std::thread::Builder::new()
        .name("leco-config".into())
        .stack_size(stack)
        .spawn(move || {
            let source = Source {
                text: &owned_text,
                path: &owned_path,
            };
            let _ = tx.send(work(source));
        })
        .map_err(|e| ConfigError::whole(path, format!("cannot start a thread to parse it: {e}")))?;
    match rx.recv_timeout(deadline) {
        Ok(outcome) => {
            // It has sent: only its exit is left. Gone before we return, so
            // that a caller may count on being single-threaded again (the
            // loader drops capabilities, which are per thread).
            let _ = parser.join();
            outcome
        }
        Err(RecvTimeoutError::Timeout) => Err(ConfigError::whole(
            path,
            format!(
                "took longer than {}s to parse, which no configuration file should; \
                 the KDL parser is slow on some shapes of slashdashes (/-) and blocks",
                deadline.as_secs_f64()
            ),
        )),
        // The thread panicked before sending.
        Err(RecvTimeoutError::Disconnected) => Err(ConfigError::whole(
            path,
            "the KDL parser failed on this file (a bug in it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn deep_nesting_is_parsed_or_refused_never_a_crash() {
        let deep = format!("{}{}", "a{".repeat(2_000), "}".repeat(2_000));
        let parsed = parse_on_thread(&deep, Path::new("t.kdl"), |source| {
            source.document(|_| None).map(|d| d.nodes().len())
        });
        assert_eq!(parsed, Ok(1));
        assert_eq!(
            parse_on_thread(&"{".repeat(30_000), Path::new("t.kdl"), |_| Ok(())),
            Err(ConfigError::whole(
                Path::new("t.kdl"),
                "too large or too deeply nested to parse (30000 bytes); \
                 a configuration file is a few KiB"
            ))
        );
    }

    #[test]
    fn work_past_the_deadline_is_an_error_at_the_deadline() {
        let start = Instant::now();
        let outcome = parse_within(
            "a 1",
            Path::new("t.kdl"),
            Duration::from_millis(100),
            |_| {
                std::thread::sleep(Duration::from_secs(3));
                Ok(())
            },
        );
        let took = start.elapsed();
        assert_eq!(
            outcome.map_err(|e| e.to_string()),
            Err(
                "t.kdl: took longer than 0.1s to parse, which no configuration file should; \
                 the KDL parser is slow on some shapes of slashdashes (/-) and blocks"
                    .into()
            )
        );
        assert!(took < Duration::from_secs(1), "returned after {took:?}");
    }

    #[test]
    fn a_panic_in_the_parser_is_an_error() {
        let outcome: Result<(), _> =
            parse_on_thread("a 1", Path::new("t.kdl"), |_| panic!("kdl bug"));
        assert_eq!(
            outcome.map_err(|e| e.to_string()),
            Err("t.kdl: the KDL parser failed on this file (a bug in it)".into())
        );
    }

    /// The shapes kdl takes seconds to hours on are refused, at the place
    /// they pass the limit, in a blink (the bound is loose for unoptimized
    /// builds and busy machines).
    #[test]
    fn slow_shapes_are_refused_at_once() {
        let cases = [
            (
                "a /-{\n".repeat(16),
                "t.kdl:7:5: slashdashed blocks (/-{ … }) nested more than 6 deep",
            ),
            (
                "a /-{\n".repeat(40),
                "t.kdl:7:5: slashdashed blocks (/-{ … }) nested more than 6 deep",
            ),
            (
                "/- ".repeat(2_000) + "a",
                "t.kdl:1:385: more than 128 slashdashes (/-) in one file",
            ),
            (
                "a ".to_owned() + &"/-{".repeat(300),
                "t.kdl:1:23: slashdashed blocks (/-{ … }) nested more than 6 deep",
            ),
        ];
        for (text, start) in cases {
            let began = Instant::now();
            let outcome = parse_on_thread(&text, Path::new("t.kdl"), |source| {
                source.document(|_| None).map(|_| ())
            });
            let took = began.elapsed();
            let message = outcome.expect_err("refused").to_string();
            assert!(message.starts_with(start), "{message}");
            assert!(took < Duration::from_secs(1), "{start}: took {took:?}");
        }
    }

    /// Just below the limits, kdl is still quick: the limits leave room
    /// for every real file without letting slow ones through.
    #[test]
    fn the_slowest_shapes_within_the_limits_parse_quickly() {
        let nest = "a /-{ ".repeat(6) + &"}".repeat(6) + "\n";
        let cases = [
            "/- ".repeat(128) + "a",
            "a ".to_owned() + &"/- ".repeat(127) + "1",
            "a { ".to_owned() + &"/- ".repeat(127) + "b }",
            nest.repeat(128 / 6),
            "a /-{\n".repeat(6),
        ];
        for text in cases {
            let began = Instant::now();
            let _ = parse_on_thread(&text, Path::new("t.kdl"), |source| {
                source.document(|_| None).map(|_| ())
            });
            let took = began.elapsed();
            assert!(took < Duration::from_secs(1), "{text:.30}: took {took:?}");
        }
    }
}
