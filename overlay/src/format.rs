//! A connection as a line of text: the classic leco line or a template.
//!
//! # Templates (the `format` setting)
//!
//! Text with `{key}` fields, e.g. `"{time} {comm} → {remote_addr}:{remote_port} {traffic}"`.
//! `{{` and `}}` are literal braces. A field is one of the connection's keys
//! (`id`, `proto`, `family`, `direction`, `state`, `local_addr`,
//! `local_port`, `remote_addr`, `remote_port`, `pid`, `comm`, `exe`,
//! `cmdline`, `uid`, `user`, `cgroup`, `unit`, `container`, `app_id`,
//! `first_seen_us`, `last_seen_us`, `rx_bytes`, `tx_bytes`, `error`) or a
//! derived one: `time` (local `HH:MM` of the last activity), `traffic`
//! (`v 58K / 1.2K ^` once rx + tx reaches the threshold, else nothing), `rx`
//! and `tx` (human units), `conns` (connections on the line: more than 1
//! for a group). An unknown key shows as `?`; `{key?}` shows nothing
//! instead. An unknown field name is a configuration error.
//!
//! Everything drawn is sanitized ([`sanitize`]): process names and command
//! lines are hostile input.

use std::fmt;

use leco_proto::{classic_line, human_bytes, Connection};

/// Longest value of one field, in characters; longer ones end in `…`.
pub const MAX_FIELD_CHARS: usize = 160;
/// Longest line, in characters, before and after the rules.
pub const MAX_LINE_CHARS: usize = 600;

/// Makes untrusted text safe to draw on one line: control characters,
/// bidirectional overrides and invisible format characters become visible
/// `\u{…}` escapes (so `x\u{202e}gpj.exe` cannot pose as `xexe.jpg`), and
/// text longer than `max_chars` characters is cut, ending in `…`.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
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

/// Characters that would break a line or hide or reorder text around them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Bidi embeddings, overrides, isolates and marks.
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
            // Zero-width characters, invisible operators, BOM.
            | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
            // Line and paragraph separators, interlinear annotations.
            | '\u{2028}' | '\u{2029}' | '\u{FFF9}'..='\u{FFFB}')
}

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

/// A field of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Time,
    Traffic,
    Rx,
    Tx,
    Conns,
    Id,
    Proto,
    Family,
    Direction,
    State,
    LocalAddr,
    LocalPort,
    RemoteAddr,
    RemotePort,
    Pid,
    Comm,
    Exe,
    Cmdline,
    Uid,
    User,
    Cgroup,
    Unit,
    Container,
    AppId,
    FirstSeenUs,
    LastSeenUs,
    RxBytes,
    TxBytes,
    Error,
}

/// Every field name, in the order messages list them.
const KEYS: [(&str, Key); 29] = [
    ("time", Key::Time),
    ("traffic", Key::Traffic),
    ("rx", Key::Rx),
    ("tx", Key::Tx),
    ("conns", Key::Conns),
    ("id", Key::Id),
    ("proto", Key::Proto),
    ("family", Key::Family),
    ("direction", Key::Direction),
    ("state", Key::State),
    ("local_addr", Key::LocalAddr),
    ("local_port", Key::LocalPort),
    ("remote_addr", Key::RemoteAddr),
    ("remote_port", Key::RemotePort),
    ("pid", Key::Pid),
    ("comm", Key::Comm),
    ("exe", Key::Exe),
    ("cmdline", Key::Cmdline),
    ("uid", Key::Uid),
    ("user", Key::User),
    ("cgroup", Key::Cgroup),
    ("unit", Key::Unit),
    ("container", Key::Container),
    ("app_id", Key::AppId),
    ("first_seen_us", Key::FirstSeenUs),
    ("last_seen_us", Key::LastSeenUs),
    ("rx_bytes", Key::RxBytes),
    ("tx_bytes", Key::TxBytes),
    ("error", Key::Error),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field { key: Key, optional: bool },
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
                    let key = KEYS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, k)| *k)
                        .ok_or_else(|| TemplateError {
                            offset: i + 1,
                            message: format!(
                                "unknown key `{}` in the format; expected one of {}",
                                sanitize(name, 40),
                                KEYS.map(|(n, _)| n).join(", ")
                            ),
                        })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field { key, optional });
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
    /// `HH:MM :: user :: comm [unit] :: addr port/proto :: v 58B / 26B ^`,
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
    /// `threshold` bytes.
    pub fn line(&self, conn: &Connection, conns: u64, threshold: u64) -> String {
        let line = match self {
            LineFormat::Classic => {
                let safe = Connection {
                    user: conn.user.as_deref().map(field),
                    comm: conn.comm.as_deref().map(field),
                    unit: conn.unit.as_deref().map(field),
                    remote_addr: field(&conn.remote_addr),
                    error: conn.error.as_deref().map(field),
                    ..conn.clone()
                };
                classic_line(&safe, &local_hhmm(conn.last_seen_us), threshold)
            }
            LineFormat::Template(t) => {
                let mut out = String::new();
                for part in &t.parts {
                    match part {
                        Part::Text(s) => out.push_str(&sanitize(s, MAX_LINE_CHARS)),
                        Part::Field { key, optional } => {
                            match value(*key, conn, conns, threshold) {
                                Some(v) => out.push_str(&sanitize(&v, MAX_FIELD_CHARS)),
                                None if *optional => {}
                                None => out.push('?'),
                            }
                        }
                    }
                }
                out
            }
        };
        sanitize(&line, MAX_LINE_CHARS)
    }

    /// What goes after the ruled text of a line standing for `conns`
    /// connections.
    pub fn group_suffix(&self, conns: u64) -> Option<String> {
        (matches!(self, LineFormat::Classic) && conns > 1).then(|| format!(" ×{conns}"))
    }
}

/// A field value made safe (an `Arc<str>` for the classic line).
fn field(s: &str) -> std::sync::Arc<str> {
    sanitize(s, MAX_FIELD_CHARS).into()
}

/// The value of one field, `None` when unknown.
fn value(key: Key, c: &Connection, conns: u64, threshold: u64) -> Option<String> {
    fn text(s: &Option<std::sync::Arc<str>>) -> Option<String> {
        s.as_deref().map(str::to_owned)
    }
    fn nonempty(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_owned())
    }
    match key {
        Key::Time => Some(local_hhmm(c.last_seen_us)),
        Key::Traffic => (c.rx_bytes.saturating_add(c.tx_bytes) >= threshold).then(|| {
            format!(
                "v {} / {} ^",
                human_bytes(c.rx_bytes),
                human_bytes(c.tx_bytes)
            )
        }),
        Key::Rx => Some(human_bytes(c.rx_bytes)),
        Key::Tx => Some(human_bytes(c.tx_bytes)),
        Key::Conns => Some(conns.to_string()),
        Key::Id => Some(c.id.to_string()),
        Key::Proto => Some(c.proto.as_str().to_owned()),
        Key::Family => (c.family != 0).then(|| c.family.to_string()),
        Key::Direction => c.direction.map(|d| {
            match d {
                leco_proto::Direction::Out => "out",
                leco_proto::Direction::In => "in",
            }
            .to_owned()
        }),
        Key::State => nonempty(&c.state),
        Key::LocalAddr => nonempty(&c.local_addr),
        Key::LocalPort => Some(c.local_port.to_string()),
        Key::RemoteAddr => nonempty(&c.remote_addr),
        Key::RemotePort => Some(c.remote_port.to_string()),
        Key::Pid => c.pid.map(|p| p.to_string()),
        Key::Comm => text(&c.comm),
        Key::Exe => text(&c.exe),
        Key::Cmdline => c.cmdline.as_ref().map(|args| args.join(" ")),
        Key::Uid => c.uid.map(|u| u.to_string()),
        Key::User => text(&c.user),
        Key::Cgroup => text(&c.cgroup),
        Key::Unit => text(&c.unit),
        Key::Container => text(&c.container),
        Key::AppId => text(&c.app_id),
        Key::FirstSeenUs => Some(c.first_seen_us.to_string()),
        Key::LastSeenUs => Some(c.last_seen_us.to_string()),
        Key::RxBytes => Some(c.rx_bytes.to_string()),
        Key::TxBytes => Some(c.tx_bytes.to_string()),
        Key::Error => text(&c.error),
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(s) => write!(f, "{}", s.replace('{', "{{").replace('}', "}}"))?,
                Part::Field { key, optional } => {
                    let name = KEYS.iter().find(|(_, k)| k == key).map_or("?", |(n, _)| n);
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
                f.line(&c, 1, TRAFFIC_THRESHOLD),
                classic_line(&c, &hhmm, TRAFFIC_THRESHOLD)
            );
        }
        c.unit = None;
        c.user = None;
        c.error = Some("connection refused".into());
        let hhmm = local_hhmm(c.last_seen_us);
        assert_eq!(
            f.line(&c, 1, TRAFFIC_THRESHOLD),
            classic_line(&c, &hhmm, TRAFFIC_THRESHOLD)
        );
    }

    #[test]
    fn threshold_decides_when_traffic_shows() {
        let f = LineFormat::new(None).expect("classic");
        let mut c = conn();
        c.rx_bytes = 900;
        c.tx_bytes = 100;
        assert!(!f.line(&c, 1, 1001).contains(":: v "));
        assert!(f.line(&c, 1, 1000).ends_with(":: v 900B / 100B ^"));
        assert!(f.line(&c, 1, 0).contains(":: v "));
    }

    #[test]
    fn template_fields() {
        let f = LineFormat::new(Some(
            "{time} {comm} → {remote_addr}:{remote_port} {traffic} {{x}} [{exe}] [{exe?}] {cmdline} {conns}",
        ))
        .expect("template");
        let c = conn();
        assert_eq!(
            f.line(&c, 3, TRAFFIC_THRESHOLD),
            format!(
                "{} curl → 93.184.216.34:443 ? {{x}} [?] [] curl -s 3",
                local_hhmm(c.last_seen_us)
            )
        );
        let f = LineFormat::new(Some("{traffic?}|{rx}|{tx}|{proto}|{direction}")).expect("t");
        assert_eq!(f.line(&c, 1, TRAFFIC_THRESHOLD), "|58B|26B|tcp|out");
        assert_eq!(f.line(&c, 1, 0), "v 58B / 26B ^|58B|26B|tcp|out");
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
            c.cmdline = Some(vec![comm.to_owned(); 50].into());
            for line in [f.line(&c, 1, 0), t.line(&c, 1, 0)] {
                assert!(line.chars().count() <= MAX_LINE_CHARS + 1, "{}", line.len());
                assert!(
                    !line.chars().any(needs_escape),
                    "{line:?} keeps a dangerous character"
                );
            }
        }
        c.comm = Some("x\u{202E}gpj.exe".into());
        assert!(f.line(&c, 1, 0).contains("x\\u{202e}gpj.exe"));
        assert_eq!(sanitize(&"A".repeat(10), 4), "AAAA…");
    }
}
