//! Events read from a file of JSON lines, as `leco-service --standalone
//! --json` prints them (`{"kind": "new", ...connection keys...}`), for
//! `--render-png --events FILE` and tests.

use std::path::{Path, PathBuf};

use leco_proto::{decode_json_event, Connection, EventKind};

/// A line of the file that is not an event.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an event.
    #[error("{}:{line}: {source}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: leco_proto::DecodeError,
    },
}

/// Parses JSON lines (blank lines are skipped); `path` is for messages.
pub fn parse_events(text: &str, path: &Path) -> Result<Vec<(EventKind, Connection)>, EventsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            decode_json_event(l).map_err(|source| EventsError::Line {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Reads a file of JSON lines.
pub fn read_events(path: &Path) -> Result<Vec<(EventKind, Connection)>, EventsError> {
    let text = std::fs::read_to_string(path).map_err(|source| EventsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_events(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_names_the_bad_one() {
        let text = "{\"kind\":\"new\",\"id\":1,\"proto\":\"tcp\",\"comm\":\"curl\"}\n\n\
                    {\"kind\":\"closed\",\"id\":1,\"proto\":\"tcp\"}\n";
        let events = parse_events(text, Path::new("e.jsonl")).expect("parses");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].0, EventKind::Closed);
        let e = parse_events("{}\n{\"kind\":\"new\"}", Path::new("e.jsonl")).expect_err("bad");
        assert_eq!(e.to_string(), "e.jsonl:1: key `kind` is missing");
    }
}
