//! A connection as a line of text: the classic leco line or a template.
//!
//! # Templates (the `format` setting)
//!
//! Text with `{key}` fields, e.g. `"{time} {comm} → {remote_addr}:{remote_port} {traffic}"`.
//! `{{` and `}}` are literal braces. A field is one of the connection's keys
//! ([`Connection::KEYS`], the contract's table) or a derived one: `time`
//! (local `HH:MM` of the last activity), `traffic` (`v 58K / 1.2K ^` once
//! rx + tx reaches the threshold, else nothing), `rx` and `tx` (human
//! units), `conns` (connections on the line: more than 1 for a group). An
//! unknown key shows as `?`; `{key?}` shows nothing instead. An unknown
//! field name is a configuration error.
//!
//! Everything drawn is sanitized ([`sanitize_text`], the one policy every
//! output of leco shares): process names and command lines are hostile
//! input.

use std::fmt;

use leco_proto::{classic_line, human_bytes, sanitize_text, Connection, Key, SafeText};

/// Longest value of one field, in characters; longer ones end in `…`.
pub const MAX_FIELD_CHARS: usize = 160;
/// Longest line, in characters, before and after the rules.
pub const MAX_LINE_CHARS: usize = 600;

/// Local `HH:MM` of a realtime timestamp in microseconds.
pub fn local_hhmm(realtime_us: u64) -> String {
    let secs = libc::time_t::try_from(realtime_us / 1_000_000).unwrap_or(libc::time_t::MAX);
    // SAFETY: tm is plain data that localtime_r fills in.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is
    // thread-safe.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return "--:--".into();
    }
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// A field of a template: derived from the record, or one of its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Time,
    Traffic,
    Rx,
    Tx,
    Conns,
    Key(Key),
}

/// The derived fields, which come before the record's keys in messages.
const DERIVED: [(&str, Field); 5] = [
    ("time", Field::Time),
    ("traffic", Field::Traffic),
    ("rx", Field::Rx),
    ("tx", Field::Tx),
    ("conns", Field::Conns),
];

impl Field {
    fn find(name: &str) -> Option<Field> {
        DERIVED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .or_else(|| Key::find(name).map(Field::Key))
    }

    fn name(self) -> &'static str {
        match self {
            Field::Key(key) => key.name(),
            derived => DERIVED
                .iter()
                .find(|(_, f)| *f == derived)
                .map_or("?", |(n, _)| n),
        }
    }
}

/// Every field name, in the order messages list them.
pub fn field_names() -> impl Iterator<Item = &'static str> {
    DERIVED
        .iter()
        .map(|(n, _)| *n)
        .chain(Connection::KEYS.iter().map(Key::name))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field { field: Field, optional: bool },
}

/// Why a template did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Byte offset in the template of the offending part.
    pub offset: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A parsed line template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `{key}` / `{key?}` fields and `{{` `}}` escapes.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.next_if(|&(_, c)| c == '{').is_some() => literal.push('{'),
                '}' if chars.next_if(|&(_, c)| c == '}').is_some() => literal.push('}'),
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "a lone `}`; write `}}` for a literal brace".into(),
                    })
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(close) = rest.find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: "a `{` without its `}`; write `{{` for a literal brace".into(),
                        });
                    };
                    let inner = &rest[..close];
                    let (name, optional) = match inner.strip_suffix('?') {
                        Some(name) => (name, true),
                        None => (inner, false),
                    };
                    let field = Field::find(name).ok_or_else(|| TemplateError {
                        offset: i + 1,
                        message: format!(
                            "unknown key `{}` in the format; expected one of {}",
                            sanitize_text(name, 40),
                            field_names().collect::<Vec<_>>().join(", ")
                        ),
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field { field, optional });
                    // Skip the field and its closing brace.
                    while chars.next_if(|&(j, _)| j <= i + 1 + close).is_some() {}
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }
}

/// How lines are made from connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFormat {
    /// `HH:MM :: user :: program [unit] :: addr port/proto :: v 58B / 26B ^`,
    /// exactly [`leco_proto::classic_line`]; a group of more than one
    /// connection gets ` ×N` after the rules.
    Classic,
    /// A user template.
    Template(Template),
}

impl LineFormat {
    /// The classic line, or the parsed template.
    pub fn new(template: Option<&str>) -> Result<LineFormat, TemplateError> {
        match template {
            None => Ok(LineFormat::Classic),
            Some(t) => Template::parse(t).map(LineFormat::Template),
        }
    }

    /// The line for `conn` (standing for `conns` connections), sanitized and
    /// cut to [`MAX_LINE_CHARS`]. Traffic shows once rx + tx reaches
    /// `threshold` bytes; the classic line names the remote by the name it
    /// was looked up by, where one is known, unless `names` is off.
    pub fn line(&self, conn: &Connection, conns: u64, threshold: u64, names: bool) -> String {
        let line = match self {
            LineFormat::Classic => {
                let safe = Connection {
                    user: conn.user.as_deref().map(field),
                    comm: conn.comm.as_deref().map(field),
                    program: conn.program.as_deref().map(field),
                    unit: conn.unit.as_deref().map(field),
                    remote_addr: field(&conn.remote_addr),
                    remote_name: conn.remote_name.as_deref().filter(|_| names).map(field),
                    error: conn.error.as_deref().map(field),
                    ..conn.clone()
                };
                classic_line(&safe, &local_hhmm(conn.last_seen_us), threshold)
            }
            LineFormat::Template(t) => {
                let mut out = String::new();
                for part in &t.parts {
                    match part {
                        Part::Text(s) => out.push_str(&sanitize_text(s, MAX_LINE_CHARS)),
                        Part::Field { field, optional } => {
                            match value(*field, conn, conns, threshold) {
                                Some(v) => out.push_str(&sanitize_text(&v, MAX_FIELD_CHARS)),
                                None if *optional => {}
                                None => out.push('?'),
                            }
                        }
                    }
                }
                out
            }
        };
        sanitize_text(&line, MAX_LINE_CHARS)
    }

    /// What goes after the ruled text of a line standing for `conns`
    /// connections.
    pub fn group_suffix(&self, conns: u64) -> Option<String> {
        (matches!(self, LineFormat::Classic) && conns > 1).then(|| format!(" ×{conns}"))
    }
}

/// A field value cut to [`MAX_FIELD_CHARS`] for the classic line.
fn field(s: &str) -> SafeText {
    SafeText::from(sanitize_text(s, MAX_FIELD_CHARS))
}

/// The value of one field, `None` when unknown.
fn value(field: Field, c: &Connection, conns: u64, threshold: u64) -> Option<String> {
    match field {
        Field::Time => Some(local_hhmm(c.last_seen_us)),
        Field::Traffic => (c.rx_bytes.saturating_add(c.tx_bytes) >= threshold).then(|| {
            format!(
                "v {} / {} ^",
                human_bytes(c.rx_bytes),
                human_bytes(c.tx_bytes)
            )
        }),
        Field::Rx => Some(human_bytes(c.rx_bytes)),
        Field::Tx => Some(human_bytes(c.tx_bytes)),
        Field::Conns => Some(conns.to_string()),
        Field::Key(key) => key.get(c).map(|v| v.to_string()),
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(s) => write!(f, "{}", s.replace('{', "{{").replace('}', "}}"))?,
                Part::Field { field, optional } => {
                    let name = field.name();
                    write!(f, "{{{name}{}}}", if *optional { "?" } else { "" })?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use leco_proto::TRAFFIC_THRESHOLD;

    pub(crate) use leco_proto::example::curl as conn;

    #[test]
    fn classic_equals_the_proto_line() {
        let f = LineFormat::new(None).expect("classic");
        let mut c = conn();
        for (rx, tx) in [(58, 26), (6000, 26), (5 * 1024, 0), (5 * 1024 - 1, 0)] {
            c.rx_bytes = rx;
            c.tx_bytes = tx;
            let hhmm = local_hhmm(c.last_seen_us);
            assert_eq!(
                f.line(&c, 1, TRAFFIC_THRESHOLD, true),
                classic_line(&c, &hhmm, TRAFFIC_THRESHOLD)
            );
        }
        c.unit = None;
        c.user = None;
        c.error = Some("connection refused".into());
        let hhmm = local_hhmm(c.last_seen_us);
        assert_eq!(
            f.line(&c, 1, TRAFFIC_THRESHOLD, true),
            classic_line(&c, &hhmm, TRAFFIC_THRESHOLD)
        );
    }

    #[test]
    fn classic_lines_name_the_remote_unless_told_not_to() {
        let f = LineFormat::new(None).expect("classic");
        let mut c = conn();
        c.remote_name = Some("example.org".into());
        c.program = Some("fetch.py".into());
        let named = f.line(&c, 1, TRAFFIC_THRESHOLD, true);
        assert!(
            named.ends_with(":: fetch.py [session-2.scope] :: example.org 443/tcp"),
            "{named}"
        );
        let numeric = f.line(&c, 1, TRAFFIC_THRESHOLD, false);
        assert!(numeric.ends_with(":: 93.184.216.34 443/tcp"), "{numeric}");
        // A template has both, whatever the setting.
        let t = LineFormat::new(Some("{remote_name} {remote_addr} {name_source?}")).expect("t");
        assert_eq!(t.line(&c, 1, 0, false), "example.org 93.184.216.34 ");
    }

    #[test]
    fn threshold_decides_when_traffic_shows() {
        let f = LineFormat::new(None).expect("classic");
        let mut c = conn();
        c.rx_bytes = 900;
        c.tx_bytes = 100;
        assert!(!f.line(&c, 1, 1001, true).contains(":: v "));
        assert!(f.line(&c, 1, 1000, true).ends_with(":: v 900B / 100B ^"));
        assert!(f.line(&c, 1, 0, true).contains(":: v "));
    }

    #[test]
    fn template_fields() {
        let f = LineFormat::new(Some(
            "{time} {comm} → {remote_addr}:{remote_port} {traffic} {{x}} [{exe}] [{exe?}] {cmdline} {conns}",
        ))
        .expect("template");
        let c = conn();
        assert_eq!(
            f.line(&c, 3, TRAFFIC_THRESHOLD, true),
            format!(
                "{} curl → 93.184.216.34:443 ? {{x}} [?] [] curl -s 3",
                local_hhmm(c.last_seen_us)
            )
        );
        let f = LineFormat::new(Some("{traffic?}|{rx}|{tx}|{proto}|{direction}")).expect("t");
        assert_eq!(f.line(&c, 1, TRAFFIC_THRESHOLD, true), "|58B|26B|tcp|out");
        assert_eq!(f.line(&c, 1, 0, true), "v 58B / 26B ^|58B|26B|tcp|out");
    }

    #[test]
    fn template_errors_have_positions() {
        let e = Template::parse("{time} {nope}").expect_err("unknown key");
        assert_eq!(e.offset, 8);
        assert!(e
            .message
            .starts_with("unknown key `nope` in the format; expected one of time, traffic"));
        assert_eq!(Template::parse("ab {time").expect_err("open").offset, 3);
        assert_eq!(Template::parse("ab } c").expect_err("close").offset, 3);
        let t = Template::parse("{{{comm}}} {unit?}").expect("escapes");
        assert_eq!(t.to_string(), "{{{comm}}} {unit?}");
    }

    #[test]
    fn hostile_names_are_sanitized() {
        let f = LineFormat::new(None).expect("classic");
        let t = LineFormat::new(Some("{comm} {cmdline}")).expect("template");
        let mut c = conn();
        let invalid = String::from_utf8_lossy(b"bad\xff\xfe\x1b[31m").into_owned();
        for comm in [
            "a\nb\rc\td\u{7}",
            "x\u{202E}gpj.exe",
            "\u{2066}iso\u{2069}\u{200B}\u{FEFF}\u{2028}",
            invalid.as_str(),
            &"A".repeat(10_000),
            &"é\u{301}".repeat(5_000),
        ] {
            c.comm = Some(comm.into());
            c.cmdline = Some(vec![leco_proto::SafeText::from(comm); 50].into());
            for line in [f.line(&c, 1, 0, true), t.line(&c, 1, 0, true)] {
                assert!(line.chars().count() <= MAX_LINE_CHARS + 1, "{}", line.len());
                assert!(
                    !line.chars().any(leco_proto::needs_escape),
                    "{line:?} keeps a dangerous character"
                );
            }
        }
        c.comm = Some("x\u{202E}gpj.exe".into());
        assert!(f.line(&c, 1, 0, true).contains("x\\u{202e}gpj.exe"));
    }
}
