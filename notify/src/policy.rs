//! What to notify about, decided from each event without waiting for
//! the desktop: novelty and blocked attempts as configured, muted
//! programs never, one program at most once per cooldown, and past the
//! cap a single "+N more" notification that counts the rest.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use leco_proto::{Connection, Direction, EventKind, Novelty};

use crate::config::NotifyConfig;

/// The window of the cap.
const MINUTE: Duration = Duration::from_secs(60);

/// Programs whose last notification is remembered for the cooldown, at
/// most; the least recent go first.
const COOLDOWNS_MAX: usize = 4_096;

/// One notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Whom it is about (what "Mute this program" mutes).
    pub program: String,
    /// Its title.
    pub summary: String,
    /// Its text: where the connection went, and whose it is.
    pub body: String,
}

/// What to do about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: not news, muted, or within its program's cooldown.
    Skip,
    /// Show a notification.
    Show(Note),
    /// Past the cap: count it in the "+N more" notification, `more` in
    /// all this minute; `fresh` when none shows yet (a new one is made,
    /// else the one showing is replaced).
    Fold { more: u32, fresh: bool },
}

/// The decisions' memory.
#[derive(Debug)]
pub struct Policy {
    config: NotifyConfig,
    last: HashMap<String, Instant>,
    shown: VecDeque<Instant>,
    folded: u32,
}

/// The name a connection's program goes by.
fn program_of(c: &Connection) -> Option<&str> {
    c.program
        .as_ref()
        .or(c.comm.as_ref())
        .map(|t| t.as_str())
        .filter(|s| !s.is_empty())
}

/// Where `c` went (or came from), for the text.
fn destination(c: &Connection) -> String {
    let remote = c.remote_name.as_ref().unwrap_or(&c.remote_addr).as_str();
    let remote = if remote.is_empty() { "?" } else { remote };
    let proto = c.proto.as_str();
    match c.direction {
        Some(Direction::In) if c.proto.has_ports() => {
            format!("from {remote} to port {}/{proto}", c.local_port)
        }
        _ if c.proto.has_ports() => format!("{remote} {}/{proto}", c.remote_port),
        _ => format!("{remote} {proto}"),
    }
}

/// The text's second part: whose it is.
fn owner(c: &Connection) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &c.user {
        parts.push(format!("user {u}"));
    }
    if let Some(u) = &c.unit {
        parts.push(u.as_str().to_owned());
    }
    if let Some(exe) = &c.exe {
        parts.push(exe.as_str().to_owned());
    }
    parts.join(" · ")
}

impl Policy {
    /// Decides by `config`.
    pub fn new(config: NotifyConfig) -> Policy {
        Policy {
            config,
            last: HashMap::new(),
            shown: VecDeque::new(),
            folded: 0,
        }
    }

    /// Never notifies about `program` again.
    pub fn mute(&mut self, program: &str) {
        if !self.is_muted(program) {
            self.config.mute.push(program.to_owned());
        }
    }

    fn is_muted(&self, program: &str) -> bool {
        self.config.mute.iter().any(|m| m == program)
    }

    /// What to do about event `kind` of `c` at `now`.
    pub fn decide(&mut self, kind: EventKind, c: &Connection, now: Instant) -> Decision {
        let Some(note) = self.news(kind, c) else {
            return Decision::Skip;
        };
        if self.is_muted(&note.program) {
            return Decision::Skip;
        }
        if let Some(&at) = self.last.get(&note.program) {
            if now.duration_since(at) < self.config.cooldown {
                return Decision::Skip;
            }
        }
        self.remember(&note.program, now);
        while self
            .shown
            .front()
            .is_some_and(|&t| now.duration_since(t) >= MINUTE)
        {
            self.shown.pop_front();
        }
        if self.shown.is_empty() {
            // A quiet minute: the next excess starts a new count.
            self.folded = 0;
        }
        if self.shown.len() >= self.config.max_per_minute as usize {
            self.folded += 1;
            return Decision::Fold {
                more: self.folded,
                fresh: self.folded == 1,
            };
        }
        self.shown.push_back(now);
        Decision::Show(note)
    }

    /// The notification `c`'s event would be, if it is news by the
    /// configuration.
    fn news(&self, kind: EventKind, c: &Connection) -> Option<Note> {
        let program = program_of(c);
        let name = program.unwrap_or("?");
        let summary = match (kind, c.novelty) {
            (EventKind::New, Some(Novelty::Program)) if self.config.programs => {
                format!("New on the network: {name}")
            }
            (EventKind::New, Some(Novelty::Destination)) if self.config.destinations => {
                format!("{name}: a new destination")
            }
            // Told once: a blocked attempt is told again as it retries.
            (EventKind::Blocked, _) if self.config.blocked && c.attempts.unwrap_or(1) <= 1 => {
                let why = c.reason.map_or("this machine's policy", |r| r.words());
                format!("{name}: blocked by {why}")
            }
            _ => return None,
        };
        let owner = owner(c);
        let mut body = destination(c);
        if !owner.is_empty() {
            body.push_str(" · ");
            body.push_str(&owner);
        }
        Some(Note {
            // An inbound attempt has no program: its cooldown is its
            // remote's.
            program: program.map_or_else(|| format!("from {}", c.remote_addr), str::to_owned),
            summary,
            body,
        })
    }

    fn remember(&mut self, program: &str, now: Instant) {
        if self.last.len() >= COOLDOWNS_MAX && !self.last.contains_key(program) {
            let cutoff = now.checked_sub(self.config.cooldown).unwrap_or(now);
            self.last.retain(|_, &mut t| t > cutoff);
            if self.last.len() >= COOLDOWNS_MAX {
                if let Some(oldest) = self
                    .last
                    .iter()
                    .min_by_key(|(_, &t)| t)
                    .map(|(k, _)| k.clone())
                {
                    self.last.remove(&oldest);
                }
            }
        }
        self.last.insert(program.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leco_proto::example::curl;

    fn novel(program: &str, novelty: Novelty) -> Connection {
        Connection {
            program: Some(program.into()),
            novelty: Some(novelty),
            ..curl()
        }
    }

    fn shown(d: &Decision) -> &Note {
        match d {
            Decision::Show(n) => n,
            other => panic!("not shown: {other:?}"),
        }
    }

    #[test]
    fn new_programs_by_default_destinations_and_blocked_by_setting() {
        let t = Instant::now();
        let mut p = Policy::new(NotifyConfig::default());
        let d = p.decide(EventKind::New, &novel("curl", Novelty::Program), t);
        let n = shown(&d);
        assert_eq!(n.summary, "New on the network: curl");
        assert_eq!(
            n.body,
            "93.184.216.34 443/tcp · user alice · session-2.scope"
        );
        let dest = novel("wget", Novelty::Destination);
        assert_eq!(p.decide(EventKind::New, &dest, t), Decision::Skip);
        // Not news: an update, an old program.
        assert_eq!(
            p.decide(EventKind::Update, &novel("a", Novelty::Program), t),
            Decision::Skip
        );
        assert_eq!(p.decide(EventKind::New, &curl(), t), Decision::Skip);
        let mut blocked = curl();
        blocked.reason = Some(leco_proto::Reason::Firewall);
        blocked.attempts = Some(1);
        assert_eq!(p.decide(EventKind::Blocked, &blocked, t), Decision::Skip);

        let mut p = Policy::new(NotifyConfig {
            destinations: true,
            blocked: true,
            ..NotifyConfig::default()
        });
        let d = p.decide(EventKind::New, &dest, t);
        assert_eq!(shown(&d).summary, "wget: a new destination");
        let d = p.decide(EventKind::Blocked, &blocked, t);
        assert_eq!(shown(&d).summary, "curl: blocked by firewall");
        // Its retries are not told again.
        blocked.attempts = Some(2);
        let later = t + Duration::from_secs(3600);
        assert_eq!(
            p.decide(EventKind::Blocked, &blocked, later),
            Decision::Skip
        );
    }

    #[test]
    fn one_program_once_per_cooldown_and_never_when_muted() {
        let t = Instant::now();
        let mut p = Policy::new(NotifyConfig {
            destinations: true,
            ..NotifyConfig::default()
        });
        let first = novel("curl", Novelty::Program);
        let again = novel("curl", Novelty::Destination);
        assert!(matches!(
            p.decide(EventKind::New, &first, t),
            Decision::Show(_)
        ));
        let soon = t + Duration::from_secs(599);
        assert_eq!(p.decide(EventKind::New, &again, soon), Decision::Skip);
        let later = t + Duration::from_secs(600);
        assert!(matches!(
            p.decide(EventKind::New, &again, later),
            Decision::Show(_)
        ));
        p.mute("curl");
        let much_later = t + Duration::from_secs(86_400);
        assert_eq!(p.decide(EventKind::New, &again, much_later), Decision::Skip);
    }

    #[test]
    fn past_the_cap_one_notification_counts_the_rest() {
        let t = Instant::now();
        let mut p = Policy::new(NotifyConfig {
            max_per_minute: 2,
            ..NotifyConfig::default()
        });
        let mut decisions = Vec::new();
        for i in 0..5 {
            let c = novel(&format!("p{i}"), Novelty::Program);
            decisions.push(p.decide(EventKind::New, &c, t + Duration::from_secs(i)));
        }
        assert!(matches!(decisions[0], Decision::Show(_)));
        assert!(matches!(decisions[1], Decision::Show(_)));
        assert_eq!(
            decisions[2],
            Decision::Fold {
                more: 1,
                fresh: true
            }
        );
        assert_eq!(
            decisions[3],
            Decision::Fold {
                more: 2,
                fresh: false
            }
        );
        assert_eq!(
            decisions[4],
            Decision::Fold {
                more: 3,
                fresh: false
            }
        );
        // A minute after the first two: room again, and a new count.
        let c = novel("p5", Novelty::Program);
        assert!(matches!(
            p.decide(EventKind::New, &c, t + Duration::from_secs(61)),
            Decision::Show(_)
        ));
    }
}
