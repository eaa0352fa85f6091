//! Standalone mode's output: one human line or one JSON object per event.

use std::io::{BufWriter, Stdout, Write};

use leco_proto::{classic_line, Connection, EventKind, TRAFFIC_THRESHOLD};
use serde::Serialize;

use crate::clock::local_hms;
use crate::monitor::Publisher;

/// Prints events on stdout.
#[derive(Debug)]
pub struct Terminal {
    out: BufWriter<Stdout>,
    json: bool,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    conn: &'a Connection,
}

impl Terminal {
    /// Human lines, or JSON lines when `json`.
    pub fn new(json: bool) -> Terminal {
        Terminal {
            out: BufWriter::new(std::io::stdout()),
            json,
        }
    }
}

/// The mark before a human line: `+` new, `~` update, `-` closed, `!`
/// failed, `x` blocked.
fn mark(kind: EventKind) -> char {
    match kind {
        EventKind::New => '+',
        EventKind::Update => '~',
        EventKind::Closed => '-',
        EventKind::Failed => '!',
        EventKind::Blocked => 'x',
    }
}

/// One human line: the mark, then the classic leco line with seconds, and
/// on a `new` event what has never happened before (`** new program`,
/// `** new destination`).
pub fn human_line(kind: EventKind, conn: &Connection) -> String {
    let time = local_hms(conn.last_seen_us);
    let mut line = format!(
        "{} {}",
        mark(kind),
        classic_line(conn, &time, TRAFFIC_THRESHOLD)
    );
    if let (EventKind::New, Some(n)) = (kind, conn.novelty) {
        line.push_str(" ** new ");
        line.push_str(n.as_str());
    }
    line
}

impl Publisher for Terminal {
    fn publish(&mut self, kind: EventKind, conn: &Connection) -> std::io::Result<()> {
        if self.json {
            serde_json::to_writer(
                &mut self.out,
                &JsonLine {
                    kind: kind.as_str(),
                    conn,
                },
            )?;
            self.out.write_all(b"\n")
        } else {
            writeln!(self.out, "{}", human_line(kind, conn))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leco_proto::example::curl;
    use leco_proto::Novelty;

    #[test]
    fn a_new_line_says_what_was_never_seen_before() {
        let mut c = curl();
        assert!(!human_line(EventKind::New, &c).contains("**"));
        c.novelty = Some(Novelty::Program);
        let line = human_line(EventKind::New, &c);
        assert!(line.starts_with("+ "), "{line}");
        assert!(line.ends_with(" ** new program"), "{line}");
        c.novelty = Some(Novelty::Destination);
        assert!(human_line(EventKind::New, &c).ends_with(" ** new destination"));
        // Told once, with the connection's first line.
        assert!(!human_line(EventKind::Closed, &c).contains("**"));
    }
}
