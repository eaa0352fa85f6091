//! The line model: connections in, rows of faded text out.
//!
//! Each connection is formatted ([`crate::format`]) and passed through the
//! [`crate::rules`]; the result is cached and recomputed only when the
//! formatted text changes. A connection becomes a line of its own, joins a
//! group's line, or is hidden. Lines get rows ([`crate::rows`]) when a
//! frame is made, so a burst of old snapshot entries never pushes live
//! lines away, and fade along the configured curve ([`crate::fade`]).
//!
//! # Groups
//!
//! A group's line sums the rx/tx counters of every connection that joined
//! it and counts them. Its text is that of its most recently active
//! connection, formatted as if that connection had moved the whole group's
//! traffic and then passed through the rules again: a rewrite that keeps
//! the traffic part shows the group's totals. A rule that replaces the
//! traffic away (e.g. a whole-line rewrite) shows none; capture it to keep
//! it, e.g. `rewrite "^.*firefox.*?( :: v .*)?$" "firefox$1"`. The classic
//! line gains ` ×N` when a group holds more than one connection; templates
//! can show `{conns}`. A group key that contains the traffic or the time
//! changes with them and splits the group: capture only the stable parts.
//!
//! # Bounds
//!
//! At most [`MAX_TRACKED`] connections are kept (the least recently active
//! go first, their traffic kept in their group's totals); lines leave when
//! their fade ends (unless `linger`), hidden connections once their fade
//! time has passed.

use std::collections::HashMap;
use std::sync::Arc;

use leco_proto::{Connection, EventKind};

use crate::config::OverlayConfig;
use crate::fade::FadeCurve;
use leco_proto::sanitize_text;

use crate::format::{LineFormat, MAX_LINE_CHARS};
use crate::rows::Rows;
use crate::rules::Rules;

/// How a line stands out: failed and blocked attempts, and what was never
/// seen before on this machine, are drawn in colours of their own, so they
/// are told apart at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Tone {
    /// Anything that went through.
    #[default]
    Plain,
    /// Stopped by the other side or the network.
    Failed,
    /// Stopped by this machine's policy.
    Blocked,
    /// A program or a destination never seen before (`novelty`).
    New,
}

impl Tone {
    /// The tone of what `c` says about itself: its reason, else an error.
    pub fn of(c: &Connection) -> Tone {
        match c.reason {
            Some(r) if r.is_local_policy() => Tone::Blocked,
            Some(_) => Tone::Failed,
            None if c.error.is_some() => Tone::Failed,
            None if c.novelty.is_some() => Tone::New,
            None => Tone::Plain,
        }
    }
}

/// One row as it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawLine {
    /// Row index from the top (0-based), stable while the line lives.
    pub row: usize,
    /// The text after the rules (already sanitized: no control characters).
    pub text: String,
    /// 0 (invisible) ..= 1 (fully visible), from the fade curve.
    pub opacity: f32,
    /// Stable hash of the line's connection or group key (tag colour).
    pub key_hash: u64,
    /// Its colour: that of its most recently active connection.
    pub tone: Tone,
}

/// What the surface shows at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Visible rows, ordered by row.
    pub lines: Vec<DrawLine>,
    /// A short state line (service absent, access denied), drawn discreetly.
    /// While it is set, the model keeps the last row free for it (lines use
    /// one row fewer).
    pub status: Option<String>,
    /// When (realtime µs) the picture next changes without new events: the
    /// next fade step or removal; `None` when it is static.
    pub next_change_us: Option<u64>,
}

/// Most connections tracked at once.
pub const MAX_TRACKED: usize = 4096;

/// What a line stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LineKey {
    Conn(u64),
    Group(Arc<str>),
}

impl LineKey {
    /// A hash that is the same in every run (tag colours stay put).
    fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            LineKey::Conn(id) => {
                eat(b"c");
                eat(&id.to_le_bytes());
            }
            LineKey::Group(key) => {
                eat(b"g");
                eat(key.as_bytes());
            }
        }
        // FNV spreads low bits poorly; a final mix evens them out.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// A connection and what the rules made of it.
#[derive(Debug)]
struct Tracked {
    conn: Connection,
    /// The formatted line the outcome was computed from.
    formatted: String,
    /// The ruled text (sanitized).
    text: String,
    /// The line it is on; `None` when hidden.
    line: Option<LineKey>,
    activity: u64,
}

/// One line: a connection's or a group's.
#[derive(Debug)]
struct Line {
    members: Vec<u64>,
    /// Traffic and count of members no longer tracked.
    retired_rx: u64,
    retired_tx: u64,
    retired_conns: u64,
    activity: u64,
    /// The most recently active member.
    latest: u64,
    row: Option<usize>,
    key_hash: u64,
    /// Group lines: the text must be made again.
    dirty: bool,
    /// Group lines: the formatted input of `text`.
    formatted: String,
    text: String,
}

/// Connections in, rows of faded text out.
#[derive(Debug)]
pub struct LineModel {
    format: LineFormat,
    rules: Rules,
    threshold: u64,
    /// The classic line names remotes by name where one is known.
    remote_names: bool,
    /// Put before the text of a line of something never seen before.
    new_marker: String,
    fade_us: u64,
    curve: FadeCurve,
    linger: bool,
    base_rows: usize,
    conns: HashMap<u64, Tracked>,
    lines: HashMap<LineKey, Line>,
    rows: Rows<LineKey>,
    status: Option<String>,
    /// Next time (realtime µs) hidden connections are swept.
    next_sweep_us: u64,
}

impl LineModel {
    /// An empty model for `config`.
    pub fn new(config: &OverlayConfig) -> LineModel {
        let base_rows = config.line_rows();
        LineModel {
            format: config.lines.format.clone(),
            rules: config.rules.clone(),
            threshold: config.lines.traffic_threshold,
            remote_names: config.lines.remote_names,
            new_marker: config.lines.new_marker.clone(),
            fade_us: fade_us(config),
            curve: config.fade.curve.clone(),
            linger: config.fade.linger,
            base_rows,
            conns: HashMap::new(),
            lines: HashMap::new(),
            rows: Rows::new(base_rows),
            status: None,
            next_sweep_us: 0,
        }
    }

    /// Takes in one event (or one `Snapshot()` entry). The connection's
    /// `last_seen_us` is its activity time. A record older than the one
    /// already known (a replayed snapshot) changes nothing, so a snapshot
    /// after a service restart never duplicates lines.
    pub fn apply(&mut self, kind: EventKind, conn: &Connection) {
        let activity = conn.last_seen_us.max(conn.first_seen_us);
        if let Some(t) = self.conns.get(&conn.id) {
            if conn.last_seen_us < t.conn.last_seen_us {
                return;
            }
        }
        let formatted = self.format.line(conn, 1, self.threshold, self.remote_names);
        let (text, key) = match self.conns.get(&conn.id) {
            Some(t) if t.formatted == formatted => (t.text.clone(), t.line.clone()),
            _ => self.rule(conn.id, &formatted),
        };
        let old_line = self.conns.get(&conn.id).and_then(|t| t.line.clone());
        if old_line != key {
            if let Some(old) = &old_line {
                self.leave(old, conn.id, false);
            }
        }
        if key.is_none() && kind.is_final() {
            // Hidden and over: nothing will ever show it.
            self.conns.remove(&conn.id);
            return;
        }
        let previous = self.conns.insert(
            conn.id,
            Tracked {
                conn: conn.clone(),
                formatted,
                text,
                line: key.clone(),
                activity,
            },
        );
        if let Some(key) = key {
            let joined = old_line.as_ref() != Some(&key) || previous.is_none();
            self.join(key, conn.id, activity, joined);
        }
        if self.conns.len() > MAX_TRACKED + MAX_TRACKED / 8 {
            self.shed();
        }
    }

    /// The ruled text and the line of a formatted connection line.
    fn rule(&self, id: u64, formatted: &str) -> (String, Option<LineKey>) {
        let out = self.rules.apply(formatted);
        let text = sanitize_text(&out.text, MAX_LINE_CHARS);
        let key = if out.hidden {
            None
        } else {
            Some(match out.group {
                Some(g) => LineKey::Group(g.into()),
                None => LineKey::Conn(id),
            })
        };
        (text, key)
    }

    /// Puts connection `id` on line `key` (creating it), with new activity.
    fn join(&mut self, key: LineKey, id: u64, activity: u64, new_member: bool) {
        let line = self.lines.entry(key.clone()).or_insert_with(|| Line {
            members: Vec::new(),
            retired_rx: 0,
            retired_tx: 0,
            retired_conns: 0,
            activity,
            latest: id,
            row: None,
            key_hash: key.stable_hash(),
            dirty: true,
            formatted: String::new(),
            text: String::new(),
        });
        if new_member && !line.members.contains(&id) {
            line.members.push(id);
        }
        if activity >= line.activity {
            line.activity = activity;
            line.latest = id;
        }
        line.dirty = true;
        if let Some(row) = line.row {
            self.rows.touch(row, line.activity);
        }
    }

    /// Takes connection `id` off line `key`; an emptied line goes. With
    /// `retire`, its traffic stays in the line's totals.
    fn leave(&mut self, key: &LineKey, id: u64, retire: bool) {
        let Some(line) = self.lines.get_mut(key) else {
            return;
        };
        line.members.retain(|&m| m != id);
        if retire {
            if let Some(t) = self.conns.get(&id) {
                line.retired_rx = line.retired_rx.saturating_add(t.conn.rx_bytes);
                line.retired_tx = line.retired_tx.saturating_add(t.conn.tx_bytes);
                line.retired_conns = line.retired_conns.saturating_add(1);
            }
        }
        line.dirty = true;
        if line.latest == id {
            if let Some(&m) = line
                .members
                .iter()
                .max_by_key(|m| self.conns.get(m).map_or(0, |t| t.activity))
            {
                line.latest = m;
            }
        }
        if line.members.is_empty() && !(retire && line.retired_conns > 0 && line.row.is_some()) {
            self.remove_line(key);
        }
    }

    fn remove_line(&mut self, key: &LineKey) {
        if let Some(line) = self.lines.remove(key) {
            if let Some(row) = line.row {
                self.rows.release(row);
            }
            for m in line.members {
                self.conns.remove(&m);
            }
        }
    }

    /// Drops the least recently active connections down to the cap.
    fn shed(&mut self) {
        let mut by_age: Vec<(u64, u64)> =
            self.conns.iter().map(|(id, t)| (t.activity, *id)).collect();
        by_age.sort_unstable();
        let excess = self.conns.len().saturating_sub(MAX_TRACKED);
        for &(_, id) in by_age.iter().take(excess) {
            if let Some(key) = self.conns.get(&id).and_then(|t| t.line.clone()) {
                self.leave(&key, id, true);
            }
            self.conns.remove(&id);
        }
    }

    /// The status line (`None` hides it).
    pub fn set_status(&mut self, status: Option<String>) {
        self.status = status.map(|s| sanitize_text(&s, MAX_LINE_CHARS));
    }

    /// Follows a new configuration, keeping the lines: every connection is
    /// formatted and ruled again, and a line that still exists keeps its
    /// row.
    pub fn reconfigure(&mut self, config: &OverlayConfig) {
        let old_rows: HashMap<LineKey, usize> = self
            .lines
            .iter()
            .filter_map(|(k, l)| l.row.map(|r| (k.clone(), r)))
            .collect();
        *self = LineModel {
            conns: std::mem::take(&mut self.conns),
            status: self.status.take(),
            ..LineModel::new(config)
        };
        let mut conns: Vec<Tracked> = std::mem::take(&mut self.conns).into_values().collect();
        conns.sort_by_key(|t| t.activity);
        for t in conns {
            let formatted = self
                .format
                .line(&t.conn, 1, self.threshold, self.remote_names);
            let (text, key) = self.rule(t.conn.id, &formatted);
            let id = t.conn.id;
            let activity = t.activity;
            self.conns.insert(
                id,
                Tracked {
                    formatted,
                    text,
                    line: key.clone(),
                    ..t
                },
            );
            if let Some(key) = key {
                self.join(key, id, activity, true);
            }
        }
        let capacity = self.capacity();
        let mut keep: Vec<(&LineKey, usize)> = old_rows.iter().map(|(k, r)| (k, *r)).collect();
        keep.sort_by_key(|(_, r)| *r);
        for (key, row) in keep {
            if row >= capacity {
                continue;
            }
            if let Some(line) = self.lines.get_mut(key) {
                if self.rows.assign(row, key.clone(), line.activity) {
                    line.row = Some(row);
                }
            }
        }
    }

    /// Rows for lines now.
    fn capacity(&self) -> usize {
        self.base_rows
            .saturating_sub(usize::from(self.status.is_some()))
    }

    /// Fraction of the fade time since `activity`.
    fn progress(&self, activity: u64, now_us: u64) -> f32 {
        (now_us.saturating_sub(activity) as f64 / self.fade_us as f64) as f32
    }

    /// What to show at `now_us` (realtime µs): expires faded lines, gives
    /// rows to new ones, fades each.
    pub fn frame(&mut self, now_us: u64) -> Frame {
        // Lines whose fade is over leave (lingering ones stay while they
        // hold a row).
        let linger = self.linger;
        self.remove_lines(|m, l| !linger && m.progress(l.activity, now_us) >= 1.0);
        self.sweep_conns(now_us);
        self.fit_rows();
        self.place_rowless(now_us);
        if self.linger {
            // Lingering lines stay only while they hold a row.
            self.remove_lines(|m, l| l.row.is_none() && m.progress(l.activity, now_us) >= 1.0);
        }
        let (lines, next) = self.draw_lines(now_us);
        Frame {
            lines,
            status: self.status.clone(),
            next_change_us: next,
        }
    }

    /// Removes the lines `gone` says are gone.
    fn remove_lines(&mut self, gone: impl Fn(&Self, &Line) -> bool) {
        let keys: Vec<LineKey> = self
            .lines
            .iter()
            .filter(|(_, l)| gone(self, l))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.remove_line(key);
        }
    }

    /// Once a second, forgets connections without a line whose fade time
    /// has passed.
    fn sweep_conns(&mut self, now_us: u64) {
        if now_us >= self.next_sweep_us {
            let fade = self.fade_us;
            self.conns
                .retain(|_, t| t.line.is_some() || now_us.saturating_sub(t.activity) < fade);
            self.next_sweep_us = now_us.saturating_add(1_000_000);
        }
    }

    /// Follows a change in the rows there are room for (the status line
    /// takes one): lines in rows that went lose them.
    fn fit_rows(&mut self) {
        let capacity = self.capacity();
        if self.rows.capacity() != capacity {
            for key in self.rows.resize(capacity) {
                if let Some(line) = self.lines.get_mut(&key) {
                    line.row = None;
                }
            }
        }
    }

    /// The visible lines with a row, in row order and faded, and the
    /// earliest moment one of them changes by itself.
    fn draw_lines(&mut self, now_us: u64) -> (Vec<DrawLine>, Option<u64>) {
        let mut lines = Vec::new();
        let mut next: Option<u64> = None;
        let keys: Vec<LineKey> = self
            .lines
            .iter()
            .filter(|(_, l)| l.row.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.refresh_text(&key);
            let Some(line) = self.lines.get(&key) else {
                continue;
            };
            let Some(row) = line.row else { continue };
            let t = self.progress(line.activity, now_us);
            let opacity = self.curve.opacity(t);
            if let Some(c) = self.next_change(line.activity, t, now_us) {
                next = Some(next.map_or(c, |n| n.min(c)));
            }
            if opacity <= 0.0 {
                continue;
            }
            let tone = self
                .conns
                .get(&line.latest)
                .map_or(Tone::Plain, |t| Tone::of(&t.conn));
            let text = match tone {
                Tone::New => format!("{}{}", self.new_marker, line.text),
                _ => line.text.clone(),
            };
            lines.push(DrawLine {
                row,
                text,
                opacity,
                key_hash: line.key_hash,
                tone,
            });
        }
        lines.sort_by_key(|l| l.row);
        (lines, next)
    }

    /// When a line last active at `activity`, now at fade fraction `t`,
    /// next changes opacity (realtime µs, after `now_us`); None once its
    /// fade is over, or when a lingering line's curve stays flat.
    fn next_change(&self, activity: u64, t: f32, now_us: u64) -> Option<u64> {
        if t >= 1.0 {
            return None;
        }
        let frac = self.curve.next_change(t).unwrap_or(1.0);
        let frac = if self.linger {
            self.curve.next_change(t)
        } else {
            Some(frac)
        };
        frac.map(|f| {
            let at = activity as f64 + (f64::from(f) * self.fade_us as f64).ceil();
            (at as u64).max(now_us + 1)
        })
    }

    /// Gives rows to live lines without one, freshest first: a free row, or
    /// the row of a staler line.
    fn place_rowless(&mut self, now_us: u64) {
        let mut rowless: Vec<(u64, LineKey)> = self
            .lines
            .iter()
            .filter(|(_, l)| {
                l.row.is_none() && (self.linger || self.progress(l.activity, now_us) < 1.0)
            })
            .map(|(k, l)| (l.activity, k.clone()))
            .collect();
        if rowless.is_empty() {
            return;
        }
        rowless.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        for (activity, key) in rowless {
            let Some(placed) = self.rows.place(key.clone(), activity) else {
                break;
            };
            if let Some(evicted) = placed.evicted {
                if let Some(line) = self.lines.get_mut(&evicted) {
                    line.row = None;
                }
            }
            if let Some(line) = self.lines.get_mut(&key) {
                line.row = Some(placed.row);
            }
        }
    }

    /// Makes a line's text again if it changed.
    fn refresh_text(&mut self, key: &LineKey) {
        let Some(line) = self.lines.get(key) else {
            return;
        };
        if !line.dirty {
            return;
        }
        let text = match key {
            LineKey::Conn(id) => self.conns.get(id).map(|t| (String::new(), t.text.clone())),
            LineKey::Group(_) => self.conns.get(&line.latest).map(|t| {
                let (mut rx, mut tx) = (line.retired_rx, line.retired_tx);
                for m in &line.members {
                    if let Some(c) = self.conns.get(m) {
                        rx = rx.saturating_add(c.conn.rx_bytes);
                        tx = tx.saturating_add(c.conn.tx_bytes);
                    }
                }
                let count = line.members.len() as u64 + line.retired_conns;
                let shown = Connection {
                    rx_bytes: rx,
                    tx_bytes: tx,
                    ..t.conn.clone()
                };
                let formatted = self
                    .format
                    .line(&shown, count, self.threshold, self.remote_names);
                let mut text = if formatted == line.formatted {
                    line.text.clone()
                } else {
                    sanitize_text(&self.rules.apply(&formatted).text, MAX_LINE_CHARS)
                };
                if let Some(suffix) = self.format.group_suffix(count) {
                    if !text.ends_with(&suffix) {
                        text.push_str(&suffix);
                    }
                }
                (formatted, text)
            }),
        };
        if let (Some((formatted, text)), Some(line)) = (text, self.lines.get_mut(key)) {
            line.formatted = formatted;
            line.text = text;
            line.dirty = false;
        }
    }

    /// Number of tracked connections (for tests and `--debug`).
    pub fn tracked(&self) -> usize {
        self.conns.len()
    }
}

fn fade_us(config: &OverlayConfig) -> u64 {
    u64::try_from(config.fade.fade_time.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::conn;
    use crate::rules::{Action, MatchSpec, Rule};
    use std::time::Duration;

    const S: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * S;

    fn config() -> OverlayConfig {
        let mut c = OverlayConfig::default();
        c.fade.fade_time = Duration::from_secs(60);
        c.lines.max_lines = Some(3);
        c
    }

    fn at(id: u64, last: u64, comm: &str, port: u16) -> Connection {
        Connection {
            id,
            comm: Some(comm.into()),
            remote_port: port,
            first_seen_us: last,
            last_seen_us: last,
            ..conn()
        }
    }

    fn group_rule() -> Rules {
        Rules::new(vec![Rule::new(
            Action::Rewrite {
                replacement: ":: web ::".into(),
                group: true,
            },
            vec![MatchSpec::new(r":: firefox \[[^\]]*\] ::")],
        )
        .expect("rule")])
    }

    #[test]
    fn grouping_sums_counters() {
        let mut c = config();
        c.rules = group_rule();
        let mut m = LineModel::new(&c);
        let mut a = at(1, T0, "firefox", 443);
        a.rx_bytes = 4000;
        a.tx_bytes = 100;
        let mut b = at(2, T0 + S, "firefox", 80);
        b.rx_bytes = 3000;
        b.tx_bytes = 200;
        m.apply(EventKind::New, &a);
        m.apply(EventKind::New, &b);
        m.apply(EventKind::New, &at(3, T0, "curl", 443));
        let f = m.frame(T0 + 2 * S);
        assert_eq!(f.lines.len(), 2, "{f:?}");
        let web = f
            .lines
            .iter()
            .find(|l| l.text.contains(":: web ::"))
            .expect("group line");
        assert!(web.text.ends_with(":: v 6.8K / 300B ^ ×2"), "{}", web.text);
        // The latest member's address shows.
        assert!(web.text.contains(" 80/tcp"), "{}", web.text);
        // More traffic on one member updates the sum.
        a.rx_bytes = 9000;
        a.last_seen_us = T0 + 3 * S;
        m.apply(EventKind::Update, &a);
        let f = m.frame(T0 + 4 * S);
        let web = f
            .lines
            .iter()
            .find(|l| l.text.contains(":: web ::"))
            .expect("group line");
        assert!(web.text.ends_with(":: v 11K / 300B ^ ×2"), "{}", web.text);
        assert!(web.text.contains(" 443/tcp"), "{}", web.text);
    }

    #[test]
    fn rows_stay_put_and_new_lines_take_free_or_stalest_rows() {
        let mut m = LineModel::new(&config());
        for (id, dt) in [(1, 0), (2, 1), (3, 2)] {
            m.apply(EventKind::New, &at(id, T0 + dt * S, &format!("p{id}"), 1));
        }
        let rows = |f: &Frame| -> Vec<(usize, String)> {
            f.lines
                .iter()
                .map(|l| {
                    let comm = l.text.split(" :: ").nth(2).unwrap_or("");
                    (l.row, comm.split(' ').next().unwrap_or("").to_owned())
                })
                .collect()
        };
        let f = m.frame(T0 + 3 * S);
        assert_eq!(
            rows(&f),
            vec![(0, "p3".into()), (1, "p2".into()), (2, "p1".into())]
        );
        // Activity on p1 keeps its row.
        m.apply(EventKind::Update, &at(1, T0 + 4 * S, "p1", 1));
        let f = m.frame(T0 + 5 * S);
        assert_eq!(f.lines[2].row, 2);
        // A new line takes the stalest row (p2's).
        m.apply(EventKind::New, &at(4, T0 + 6 * S, "p4", 1));
        let f = m.frame(T0 + 7 * S);
        assert_eq!(
            rows(&f),
            vec![(0, "p3".into()), (1, "p4".into()), (2, "p1".into())]
        );
        // An old snapshot entry does not push anyone away.
        m.apply(EventKind::Closed, &at(9, T0 - 30 * S, "old", 1));
        let f = m.frame(T0 + 8 * S);
        assert!(!f.lines.iter().any(|l| l.text.contains("old")));
    }

    #[test]
    fn failed_and_blocked_lines_have_their_tone_and_say_why() {
        let mut m = LineModel::new(&config());
        let mut blocked = at(1, T0, "curl", 4444);
        blocked.reason = Some(leco_proto::Reason::Firewall);
        blocked.attempts = Some(3);
        let mut failed = at(2, T0 + S, "ssh", 22);
        failed.reason = Some(leco_proto::Reason::Refused);
        failed.error = Some("connection refused".into());
        m.apply(EventKind::Blocked, &blocked);
        m.apply(EventKind::Failed, &failed);
        m.apply(EventKind::New, &at(3, T0 + 2 * S, "git", 443));
        let f = m.frame(T0 + 3 * S);
        let tone = |comm: &str| {
            let l = f
                .lines
                .iter()
                .find(|l| l.text.contains(comm))
                .unwrap_or_else(|| panic!("{comm}: {f:#?}"));
            (l.tone, l.text.clone())
        };
        let (t, text) = tone("curl");
        assert_eq!(t, Tone::Blocked);
        assert!(
            text.ends_with("4444/tcp !! blocked by firewall ×3"),
            "{text}"
        );
        let (t, text) = tone("ssh");
        assert_eq!(t, Tone::Failed);
        assert!(text.ends_with("22/tcp !! connection refused"), "{text}");
        assert_eq!(tone("git").0, Tone::Plain);
        // Blocked again, with more attempts: the same line, updated.
        blocked.attempts = Some(9);
        blocked.last_seen_us = T0 + 4 * S;
        m.apply(EventKind::Blocked, &blocked);
        let f = m.frame(T0 + 5 * S);
        let curl: Vec<&DrawLine> = f.lines.iter().filter(|l| l.text.contains("curl")).collect();
        assert_eq!(curl.len(), 1, "{f:#?}");
        assert!(curl[0].text.ends_with("×9"), "{}", curl[0].text);
    }

    #[test]
    fn a_line_of_something_never_seen_before_is_marked() {
        let mut m = LineModel::new(&config());
        let mut new = at(1, T0, "curl", 443);
        new.novelty = Some(leco_proto::Novelty::Program);
        m.apply(EventKind::New, &new);
        m.apply(EventKind::New, &at(2, T0, "git", 443));
        let f = m.frame(T0 + S);
        let line = |comm: &str| {
            f.lines
                .iter()
                .find(|l| l.text.contains(comm))
                .unwrap_or_else(|| panic!("{comm}: {f:#?}"))
        };
        assert_eq!(line("curl").tone, Tone::New);
        assert!(line("curl").text.starts_with("★ "), "{}", line("curl").text);
        assert_eq!(line("git").tone, Tone::Plain);
        assert!(!line("git").text.contains('★'));
        // Failing says more than being new.
        new.reason = Some(leco_proto::Reason::Refused);
        assert_eq!(Tone::of(&new), Tone::Failed);
    }

    #[test]
    fn fade_ends_in_removal_or_linger_and_idle_is_static() {
        let mut m = LineModel::new(&config());
        m.apply(EventKind::New, &at(1, T0, "a", 1));
        let f = m.frame(T0);
        assert_eq!(f.lines.len(), 1);
        assert!(f.next_change_us.is_some_and(|n| n > T0 && n <= T0 + 60 * S));
        let f = m.frame(T0 + 30 * S);
        assert!(f.lines[0].opacity > 0.0 && f.lines[0].opacity < 1.0);
        let f = m.frame(T0 + 61 * S);
        assert!(f.lines.is_empty());
        assert_eq!(f.next_change_us, None);
        assert_eq!(m.tracked(), 0);

        let mut c = config();
        c.fade.linger = true;
        c.fade.curve = FadeCurve::parse("0,100 100,30 range=0:100").expect("curve");
        let mut m = LineModel::new(&c);
        m.apply(EventKind::New, &at(1, T0, "a", 1));
        let f = m.frame(T0 + 600 * S);
        assert_eq!(f.lines.len(), 1);
        assert!((f.lines[0].opacity - 0.3).abs() < 0.01);
        assert_eq!(f.next_change_us, None);
        // No lines at all: static.
        let mut m = LineModel::new(&config());
        assert_eq!(m.frame(T0).next_change_us, None);
    }

    #[test]
    fn snapshots_do_not_duplicate_and_reconfigure_keeps_rows() {
        let mut m = LineModel::new(&config());
        let a = at(1, T0, "a", 1);
        let b = at(2, T0 + S, "b", 1);
        for _ in 0..3 {
            m.apply(EventKind::New, &a);
            m.apply(EventKind::New, &b);
        }
        let f = m.frame(T0 + 2 * S);
        assert_eq!(f.lines.len(), 2);
        let mut c = config();
        c.rules = Rules::new(vec![Rule::new(
            Action::Rewrite {
                replacement: "B".into(),
                group: false,
            },
            vec![MatchSpec::new(r"\bb\b")],
        )
        .expect("rule")]);
        m.reconfigure(&c);
        let g = m.frame(T0 + 2 * S);
        assert_eq!(g.lines.len(), 2);
        assert_eq!(
            f.lines.iter().map(|l| l.row).collect::<Vec<_>>(),
            g.lines.iter().map(|l| l.row).collect::<Vec<_>>()
        );
        assert!(g.lines.iter().any(|l| l.text.contains(":: B [")));
    }

    #[test]
    fn status_takes_a_row_and_hidden_lines_stay_hidden() {
        let mut c = config();
        c.rules = Rules::new(vec![Rule::new(
            Action::Hide,
            vec![MatchSpec::new("secret")],
        )
        .expect("hide")]);
        let mut m = LineModel::new(&c);
        for id in 1..=3 {
            m.apply(EventKind::New, &at(id, T0 + id * S, "p", 1));
        }
        m.apply(EventKind::New, &at(9, T0 + 9 * S, "secret", 1));
        assert_eq!(m.frame(T0 + 10 * S).lines.len(), 3);
        m.set_status(Some("service absent\n".into()));
        let f = m.frame(T0 + 10 * S);
        assert_eq!(f.lines.len(), 2);
        assert_eq!(f.status.as_deref(), Some("service absent\\u{a}"));
        assert!(f.lines.iter().all(|l| l.row < 2));
        m.apply(EventKind::Closed, &at(9, T0 + 11 * S, "secret", 1));
        assert_eq!(m.tracked(), 3);
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = config();
        c.rules = group_rule();
        let mut m = LineModel::new(&c);
        for id in 0..(MAX_TRACKED as u64 * 3) {
            let comm = if id % 2 == 0 { "firefox" } else { "curl" };
            let mut x = at(id, T0 + id, comm, 443);
            x.rx_bytes = 10;
            m.apply(EventKind::New, &x);
        }
        assert!(m.tracked() <= MAX_TRACKED + MAX_TRACKED / 8);
        let f = m.frame(T0 + MAX_TRACKED as u64 * 3);
        assert_eq!(f.lines.len(), 3);
        let web = f
            .lines
            .iter()
            .find(|l| l.text.contains(":: web ::"))
            .expect("group");
        // Every firefox connection counted, shed ones included.
        assert!(
            web.text
                .ends_with(&format!("×{}", MAX_TRACKED as u64 * 3 / 2)),
            "{}",
            web.text
        );
    }

    #[test]
    fn hostile_names_come_out_sanitized() {
        let mut m = LineModel::new(&config());
        let names = [
            "a\u{202E}b\n".to_owned(),
            "x".repeat(10_000),
            String::from_utf8_lossy(b"\xff\x1b[2J").into_owned(),
        ];
        for (i, n) in names.iter().enumerate() {
            m.apply(EventKind::New, &at(i as u64, T0, n, 1));
        }
        for l in m.frame(T0).lines {
            assert!(
                !l.text.chars().any(|c| c.is_control() || c == '\u{202E}'),
                "{:?}",
                l.text
            );
            assert!(l.text.chars().count() <= MAX_LINE_CHARS + 1);
        }
    }
}
