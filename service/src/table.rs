//! The connection table: live connections plus a time-bounded backlog of
//! ended ones. It is what `Snapshot()` serves, so a client that starts late
//! sees what an early one saw.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use leco_bpf::{Flow, FlowKey};
use leco_proto::{Connection, EventKind, Proto};

/// Bounds of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Live connections kept at most; the least recently active make room.
    pub max_live: usize,
    /// Ended connections kept at most.
    pub max_backlog: usize,
    /// How long ended connections stay in the backlog.
    pub backlog_age: Duration,
    /// A UDP flow without traffic for this long is considered ended (UDP
    /// has no close; a closed socket ends its flows at once).
    pub udp_idle: Duration,
    /// What all records together may weigh ([`weight`]); beyond it the
    /// oldest ended ones go, then the least recently active live ones
    /// (counted as evicted).
    pub max_bytes: usize,
}

/// Live connections kept at most: twice the kernel's default flow table,
/// so that the table is bounded even when the kernel's is raised a lot.
pub const MAX_LIVE: usize = 65_536;

/// What the table's records may weigh at most: with texts bounded (a
/// record's at most about 5 KiB, see leco-proto's `MAX_TEXT_BYTES`), some
/// 3,000 records of the largest kind, or 25,000 of a typical one.
pub const MAX_BYTES: usize = 16 << 20;

/// What a kernel report does to its connection: the event to publish and
/// whether the connection ends with it. Kinds are final or not by
/// themselves, except `blocked`: a blocked attempt is final for clients
/// but its connection stays live while its socket keeps trying, and ends
/// (blocked again) with the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// What clients are told.
    pub kind: EventKind,
    /// Whether the connection ends (moves to the backlog).
    pub ends: bool,
}

impl From<EventKind> for Change {
    fn from(kind: EventKind) -> Change {
        Change {
            kind,
            ends: kind.is_final() && kind != EventKind::Blocked,
        }
    }
}

/// A flow's counts as the kernel has them at its end: a report may be up to
/// an interval short of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Attempts policy stopped.
    pub attempts: u32,
}

/// Which of `conns` fit in `budget` when the one at `i` costs `cost(i)`:
/// the most recently active first, each that still fits.
pub fn most_recent_within(
    conns: &[&Connection],
    cost: impl Fn(usize) -> usize,
    budget: usize,
) -> Vec<bool> {
    let mut by_recency: Vec<usize> = (0..conns.len()).collect();
    by_recency.sort_by_key(|&i| std::cmp::Reverse(conns[i].last_seen_us));
    let mut keep = vec![false; conns.len()];
    let mut used = 0;
    for i in by_recency {
        let c = cost(i);
        if used + c <= budget {
            used += c;
            keep[i] = true;
        }
    }
    keep
}

/// What a record weighs in the table: its fixed part, the table's
/// bookkeeping, and its texts counted as if none were shared with another
/// record, so that the bound holds however they are.
pub fn weight(c: &Connection) -> usize {
    const FIXED: usize = std::mem::size_of::<Live>() + 96;
    FIXED + c.text_bytes()
}

/// Whether the kernel ends this connection's flow itself (a TCP socket's,
/// at its close) rather than the table (datagram flows, when their socket
/// is released or they go idle; inbound blocked attempts, when they go
/// quiet).
fn kernel_ends(l: &Live) -> bool {
    l.conn.proto == Proto::Tcp && !l.key.is_blocked_inbound()
}

#[derive(Debug)]
struct Live {
    conn: Connection,
    key: FlowKey,
    /// The kernel's id of its flow now: its own id, unless the kernel's
    /// full table evicted that flow and made a new one for the socket.
    kernel: u64,
    /// Bytes (rx, tx) counted before the kernel made its flow again, to
    /// add to the new flow's counts, which start from zero.
    base: (u64, u64),
    /// Last kernel-side activity we know of (monotonic).
    active: Instant,
    /// Last time the kernel reported on it.
    reported: Instant,
}

/// Live connections by id, plus the backlog.
#[derive(Debug)]
pub struct Table {
    limits: Limits,
    live: HashMap<u64, Live>,
    by_cookie: HashMap<u64, Vec<u64>>,
    /// Live ids by their flows' key (socket, and peer for UDP): where a
    /// flow the kernel made again for a known socket finds its connection.
    by_key: HashMap<FlowKey, u64>,
    /// Kernel ids of flows made again, to the id of the live connection
    /// they continue.
    continued: HashMap<u64, u64>,
    backlog: VecDeque<(Instant, Connection)>,
    /// The last ended connection when the backlog keeps none.
    last_ended: Option<Connection>,
    evicted: u64,
    /// What the live connections and the backlog weigh ([`weight`]).
    bytes: usize,
    /// Connections that ended since the last [`Table::take_ended`], when
    /// kept ([`Table::keep_ended`]): what the store writes down.
    ended: Option<Vec<Connection>>,
}

/// What the caller must do after a change: publish these events, forget
/// these kernel flows.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events to publish, in order.
    pub events: Vec<(EventKind, Connection)>,
    /// Kernel flows that ended and may be deleted from the kernel's table.
    pub forget: Vec<FlowKey>,
}

impl Table {
    /// An empty table.
    pub fn new(limits: Limits) -> Table {
        Table {
            limits,
            live: HashMap::new(),
            by_cookie: HashMap::new(),
            by_key: HashMap::new(),
            continued: HashMap::new(),
            backlog: VecDeque::new(),
            last_ended: None,
            evicted: 0,
            bytes: 0,
            ended: None,
        }
    }

    /// From now on, keeps every connection that ends for
    /// [`Table::take_ended`].
    pub fn keep_ended(&mut self) {
        self.ended.get_or_insert_with(Vec::new);
    }

    /// The connections that ended since the last call, in order.
    pub fn take_ended(&mut self) -> Vec<Connection> {
        self.ended.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Puts connections that ended before this table was made (a previous
    /// run's, from the store) in the backlog, oldest first, each with when
    /// it ended.
    pub fn restore_backlog(&mut self, ended: impl IntoIterator<Item = (Instant, Connection)>) {
        for (at, conn) in ended {
            self.push_backlog(at, conn);
        }
    }

    /// Number of live connections.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Number of ended connections kept.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Live connections pushed out by newer ones because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether connection `id` is live.
    #[cfg(test)]
    pub fn contains(&self, id: u64) -> bool {
        self.live.contains_key(&id)
    }

    /// The live connection `id`.
    pub fn get(&self, id: u64) -> Option<&Connection> {
        self.live.get(&id).map(|l| &l.conn)
    }

    /// Whether the kernel's flow `kernel_id` is a live connection here, as
    /// itself or continuing one.
    pub fn tracks(&self, kernel_id: u64) -> bool {
        self.live.contains_key(&kernel_id) || self.continued.contains_key(&kernel_id)
    }

    /// Live datagram flows of socket `cookie` that no process owns yet:
    /// their kernel ids and keys.
    pub fn ownerless(&self, cookie: u64) -> Vec<(u64, FlowKey)> {
        self.by_cookie
            .get(&cookie)
            .into_iter()
            .flatten()
            .filter_map(|id| self.live.get(id))
            .filter(|l| l.conn.pid.is_none())
            .map(|l| (l.kernel, l.key))
            .collect()
    }

    /// The keys of live datagram flows of socket `cookie` that a process
    /// owns: where the socket's owner may be read.
    pub fn owned_on_socket(&self, cookie: u64) -> Vec<FlowKey> {
        self.by_cookie
            .get(&cookie)
            .into_iter()
            .flatten()
            .filter_map(|id| self.live.get(id))
            .filter(|l| l.conn.pid.is_some())
            .map(|l| l.key)
            .collect()
    }

    /// Whether live connection `id` belongs to process `pid`.
    pub fn owned_by(&self, id: u64, pid: u32) -> bool {
        self.get(id).is_some_and(|c| c.pid == Some(pid))
    }

    /// Applies a kernel report about `conn`; returns the event to publish.
    /// A report about an unknown connection is published as `new` (its first
    /// record was lost or predates us); a final one moves it to the backlog.
    pub fn apply(
        &mut self,
        change: impl Into<Change>,
        conn: Connection,
        key: FlowKey,
        now: Instant,
    ) -> (EventKind, &Connection) {
        let change = change.into();
        let id = conn.id;
        if self.live.contains_key(&id) {
            // How the connection began is known best by its first report;
            // a later one may be about a flow the kernel made again.
            return self
                .report(id, change, now, |c| {
                    let (first_seen_us, direction) = (c.first_seen_us, c.direction);
                    // A name is learnt once, when the connection is made.
                    let (remote_name, name_source) = (c.remote_name.take(), c.name_source);
                    let novelty = c.novelty;
                    *c = conn;
                    c.first_seen_us = first_seen_us;
                    c.direction = direction;
                    if c.remote_name.is_none() {
                        (c.remote_name, c.name_source) = (remote_name, name_source);
                    }
                    // So is what was new about it.
                    c.novelty = c.novelty.or(novelty);
                })
                .expect("live connection");
        }
        if change.ends {
            return (change.kind, self.backlogged(now, conn));
        }
        self.insert(conn, key, now);
        let kind = match change.kind {
            EventKind::Blocked => EventKind::Blocked,
            _ => EventKind::New,
        };
        (kind, &self.live[&id].conn)
    }

    /// Applies a kernel report about live connection `id`, changing it in
    /// place with `update`; `None` if it is not live.
    pub fn report(
        &mut self,
        id: u64,
        change: impl Into<Change>,
        now: Instant,
        update: impl FnOnce(&mut Connection),
    ) -> Option<(EventKind, &Connection)> {
        let Change { kind, ends } = change.into();
        if ends {
            let mut conn = self.remove_live(id)?.conn;
            update(&mut conn);
            return Some((kind, self.backlogged(now, conn)));
        }
        let l = self.live.get_mut(&id)?;
        let before = weight(&l.conn);
        update(&mut l.conn);
        l.active = now;
        l.reported = now;
        let after = weight(&l.conn);
        self.bytes = self.bytes - before + after;
        if after > before {
            self.make_room(Some(id));
        }
        // A repeated "new" for a known flow is news only as an update; a
        // blocked attempt is told again, with its attempts.
        let kind = match kind {
            EventKind::Blocked => EventKind::Blocked,
            _ => EventKind::Update,
        };
        Some((kind, &self.live.get(&id)?.conn))
    }

    fn insert(&mut self, conn: Connection, key: FlowKey, now: Instant) {
        if self.live.len() >= self.limits.max_live {
            // Rare (the kernel's own table is smaller): a linear scan is fine.
            if let Some(oldest) = self
                .live
                .values()
                .min_by_key(|l| l.active)
                .map(|l| l.conn.id)
            {
                self.remove_live(oldest);
                self.evicted += 1;
            }
        }
        if conn.proto != Proto::Tcp {
            self.by_cookie
                .entry(key.cookie())
                .or_default()
                .push(conn.id);
        }
        self.by_key.insert(key, conn.id);
        self.bytes += weight(&conn);
        let id = conn.id;
        self.live.insert(
            conn.id,
            Live {
                kernel: conn.id,
                base: (0, 0),
                conn,
                key,
                active: now,
                reported: now,
            },
        );
        self.make_room(Some(id));
    }

    /// Brings the table back within [`Limits::max_bytes`]: the oldest
    /// ended connections go first, then the least recently active live
    /// ones (counted as evicted), never `keep` (the one just changed).
    fn make_room(&mut self, keep: Option<u64>) {
        while self.bytes > self.limits.max_bytes {
            if self.pop_backlog() {
                continue;
            }
            // Rare (records are bounded, the budget is large): a linear
            // scan is fine.
            let Some(victim) = self
                .live
                .values()
                .filter(|l| Some(l.conn.id) != keep)
                .min_by_key(|l| l.active)
                .map(|l| l.conn.id)
            else {
                break;
            };
            self.remove_live(victim);
            self.evicted += 1;
        }
    }

    /// Drops the oldest ended connection; false when there is none.
    fn pop_backlog(&mut self) -> bool {
        match self.backlog.pop_front() {
            Some((_, c)) => {
                self.bytes -= weight(&c);
                true
            }
            None => false,
        }
    }

    /// `flow` as the continuation of the live connection whose flow the
    /// kernel's full table evicted, if it is one: the kernel forgot the
    /// socket and, seeing it again, made a new flow (new id, counts from
    /// zero) for it. The connection keeps its id, and its counts go on
    /// from what was known. `None` when `flow` continues nothing.
    ///
    /// The table already knows every live connection's socket, so this
    /// costs the kernel nothing, unlike a cookie-to-id map of its own that
    /// every new flow would write. Bytes the evicted flow counted after its
    /// last report are lost with it.
    pub fn continuation(&mut self, flow: &Flow) -> Option<Flow> {
        if self.live.contains_key(&flow.id) {
            return None;
        }
        let id = match self.continued.get(&flow.id) {
            Some(&id) => id,
            None => self.continue_with(flow)?,
        };
        let l = self.live.get(&id)?;
        let mut f = flow.clone();
        f.id = id;
        f.rx_bytes += l.base.0;
        f.tx_bytes += l.base.1;
        Some(f)
    }

    /// Makes new kernel flow `flow` continue the live connection of the
    /// same socket (and, for TCP, peer: a socket may connect again
    /// elsewhere); its id.
    fn continue_with(&mut self, flow: &Flow) -> Option<u64> {
        let id = *self.by_key.get(&flow.key)?;
        let l = self.live.get_mut(&id)?;
        if l.conn.remote_port != flow.remote_port || *l.conn.remote_addr != *flow.remote.to_string()
        {
            return None;
        }
        let before = std::mem::replace(&mut l.kernel, flow.id);
        // TCP's counts are the socket's own counters, which go on whatever
        // the kernel's table forgot; the others start again from zero.
        l.base = if l.conn.proto == Proto::Tcp {
            (0, 0)
        } else {
            (l.conn.rx_bytes, l.conn.tx_bytes)
        };
        if before != id {
            self.continued.remove(&before);
        }
        self.continued.insert(flow.id, id);
        Some(id)
    }

    fn remove_live(&mut self, id: u64) -> Option<Live> {
        let l = self.live.remove(&id)?;
        self.bytes -= weight(&l.conn);
        if l.kernel != id {
            self.continued.remove(&l.kernel);
        }
        if self.by_key.get(&l.key) == Some(&id) {
            self.by_key.remove(&l.key);
        }
        if let Some(ids) = self.by_cookie.get_mut(&l.key.cookie()) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_cookie.remove(&l.key.cookie());
            }
        }
        Some(l)
    }

    /// Moves an ended connection to the backlog and lends it back for
    /// publishing (kept aside when the backlog holds none).
    fn backlogged(&mut self, now: Instant, conn: Connection) -> &Connection {
        if let Some(ended) = &mut self.ended {
            ended.push(conn.clone());
        }
        if self.limits.max_backlog == 0 {
            self.last_ended = Some(conn);
            return self.last_ended.as_ref().expect("just set");
        }
        self.push_backlog(now, conn);
        &self.backlog.back().expect("just pushed").1
    }

    fn push_backlog(&mut self, now: Instant, conn: Connection) {
        if self.limits.max_backlog == 0 {
            return;
        }
        while self.backlog.len() >= self.limits.max_backlog {
            self.pop_backlog();
        }
        // Room is made first, so that the new end is never what goes.
        self.bytes += weight(&conn);
        self.make_room(None);
        self.backlog.push_back((now, conn));
    }

    /// The live connections' records.
    pub fn live(&self) -> Vec<Connection> {
        self.live.values().map(|l| l.conn.clone()).collect()
    }

    /// The live connections: their ids and their flows' ids in the kernel.
    pub fn live_ids(&self) -> Vec<(u64, u64)> {
        self.live.values().map(|l| (l.conn.id, l.kernel)).collect()
    }

    /// Ends connection `id` whose end was not reported (a lost record):
    /// moves it to the backlog as closed.
    pub fn close_unreported(&mut self, id: u64, now: Instant) -> Option<&Connection> {
        let mut conn = self.remove_live(id)?.conn;
        conn.state = Cow::Borrowed("closed");
        Some(self.backlogged(now, conn))
    }

    /// A socket ended without a flow's record (a datagram socket closed,
    /// or a TCP socket whose flow the kernel's full table had evicted): all
    /// its flows end, each with the counts `last` gives for its kernel flow
    /// (the kernel reports a datagram flow's bytes at most once per update
    /// interval, so the last report may be short of them).
    pub fn release(
        &mut self,
        cookie: u64,
        now: Instant,
        last_seen_us: u64,
        last: impl FnMut(u64, &FlowKey) -> Option<Counts>,
    ) -> Outcome {
        let mut ids = self.by_cookie.get(&cookie).cloned().unwrap_or_default();
        ids.extend(self.by_key.get(&FlowKey::tcp(cookie)));
        self.end(ids, now, Some(last_seen_us), last)
    }

    /// Ends idle datagram flows and inbound blocked attempts gone quiet
    /// (with the counts `last` gives, as for [`Table::release`]) and trims
    /// the backlog.
    pub fn expire(
        &mut self,
        now: Instant,
        last: impl FnMut(u64, &FlowKey) -> Option<Counts>,
    ) -> Outcome {
        let idle: Vec<u64> = self
            .live
            .values()
            .filter(|l| !kernel_ends(l) && now.duration_since(l.active) >= self.limits.udp_idle)
            .map(|l| l.conn.id)
            .collect();
        let out = self.end(idle, now, None, last);
        while self
            .backlog
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= self.limits.backlog_age)
        {
            self.pop_backlog();
        }
        out
    }

    /// Ends live connections `ids` as closed (a blocked one as blocked),
    /// with their final counts.
    fn end(
        &mut self,
        ids: Vec<u64>,
        now: Instant,
        last_seen_us: Option<u64>,
        mut last: impl FnMut(u64, &FlowKey) -> Option<Counts>,
    ) -> Outcome {
        let mut out = Outcome::default();
        for id in ids {
            let Some(l) = self.remove_live(id) else {
                continue;
            };
            let kernel_ends = kernel_ends(&l);
            let mut conn = l.conn;
            let blocked = conn.reason.is_some_and(|r| r.is_local_policy());
            if !blocked {
                conn.state = Cow::Borrowed("closed");
            }
            if let Some(t) = last_seen_us {
                conn.last_seen_us = conn.last_seen_us.max(t);
            }
            // The kernel deletes TCP flows itself, and this socket's may be
            // a new connection's by now.
            if !kernel_ends {
                if let Some(c) = last(l.kernel, &l.key) {
                    conn.rx_bytes = conn.rx_bytes.max(c.rx + l.base.0);
                    conn.tx_bytes = conn.tx_bytes.max(c.tx + l.base.1);
                    if blocked {
                        conn.attempts = conn.attempts.max(Some(c.attempts));
                    }
                }
                out.forget.push(l.key);
            }
            let kind = if blocked {
                EventKind::Blocked
            } else {
                EventKind::Closed
            };
            out.events.push((kind, conn.clone()));
            if let Some(ended) = &mut self.ended {
                ended.push(conn.clone());
            }
            self.push_backlog(now, conn);
        }
        out
    }

    /// Live flows the kernel reported on within `window`: their counters may
    /// have moved since without a report (the kernel rate-limits updates and
    /// sends none after the last burst), so the caller re-reads them. Their
    /// ids in the kernel, and keys.
    pub fn recently_reported(&self, now: Instant, window: Duration) -> Vec<(u64, FlowKey)> {
        self.live
            .values()
            .filter(|l| now.duration_since(l.reported) <= window)
            .map(|l| (l.kernel, l.key))
            .collect()
    }

    /// What the live connections and the backlog weigh ([`weight`]).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Live connections, then the backlog (oldest first).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<Connection> {
        self.snapshot_within(usize::MAX).0
    }

    /// [`Table::snapshot`] of what weighs at most `budget` ([`weight`]):
    /// all of it when it fits, else the most recently active; and how many
    /// were left out. A take for a bounded reply copies no more than it can
    /// send.
    pub fn snapshot_within(&self, budget: usize) -> (Vec<Connection>, usize) {
        let mut live: Vec<&Connection> = self.live.values().map(|l| &l.conn).collect();
        live.sort_by_key(|c| c.first_seen_us);
        let all: Vec<&Connection> = live
            .into_iter()
            .chain(self.backlog.iter().map(|(_, c)| c))
            .collect();
        if self.bytes <= budget {
            return (all.into_iter().cloned().collect(), 0);
        }
        let keep = most_recent_within(&all, |i| weight(all[i]), budget);
        let kept: Vec<Connection> = all
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| (*c).clone())
            .collect();
        let left_out = all.len() - kept.len();
        (kept, left_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{conn, flow};
    use leco_bpf::FlowProto;

    fn limits() -> Limits {
        Limits {
            max_live: 3,
            max_backlog: 2,
            max_bytes: usize::MAX,
            backlog_age: Duration::from_secs(10),
            udp_idle: Duration::from_secs(5),
        }
    }

    #[test]
    fn life_cycle_new_update_closed() {
        let mut t = Table::new(limits());
        let now = Instant::now();
        let key = FlowKey::tcp(9);
        assert_eq!(
            t.apply(EventKind::New, conn(1, Proto::Tcp), key, now).0,
            EventKind::New
        );
        assert_eq!(
            t.apply(EventKind::Update, conn(1, Proto::Tcp), key, now).0,
            EventKind::Update
        );
        // A repeated "new" for a known flow is news only as an update.
        assert_eq!(
            t.apply(EventKind::New, conn(1, Proto::Tcp), key, now).0,
            EventKind::Update
        );
        // An update for an unknown flow (its "new" was lost) is published as new.
        assert_eq!(
            t.apply(EventKind::Update, conn(2, Proto::Tcp), key, now).0,
            EventKind::New
        );
        assert_eq!(
            t.apply(EventKind::Closed, conn(1, Proto::Tcp), key, now).0,
            EventKind::Closed
        );
        assert_eq!((t.live_len(), t.backlog_len()), (1, 1));
        let ids: Vec<u64> = t.snapshot().iter().map(|c| c.id).collect();
        assert_eq!(ids, [2, 1], "live first, then the backlog");
    }

    #[test]
    fn bounded_live_and_backlog() {
        let mut t = Table::new(limits());
        let t0 = Instant::now();
        for id in 1..=5 {
            t.apply(
                EventKind::New,
                conn(id, Proto::Tcp),
                FlowKey::tcp(id),
                t0 + Duration::from_millis(id),
            );
        }
        assert_eq!(t.live_len(), 3);
        assert_eq!(t.evicted(), 2);
        assert!(
            !t.contains(1) && !t.contains(2) && t.contains(5),
            "least recently active went first"
        );
        for id in 3..=5 {
            t.apply(
                EventKind::Closed,
                conn(id, Proto::Tcp),
                FlowKey::tcp(id),
                t0,
            );
        }
        assert_eq!(t.backlog_len(), 2);
        t.expire(t0 + Duration::from_secs(11), |_, _| None);
        assert_eq!(t.backlog_len(), 0, "aged out");
    }

    #[test]
    fn memory_is_bounded_by_weight_backlog_first() {
        let one = weight(&conn(1, Proto::Tcp));
        let mut t = Table::new(Limits {
            max_live: 100,
            max_backlog: 100,
            max_bytes: 4 * one + one / 2,
            ..limits()
        });
        let now = Instant::now();
        let at = |id: u64| now + Duration::from_millis(id);
        for id in 1..=3 {
            t.apply(
                EventKind::New,
                conn(id, Proto::Tcp),
                FlowKey::tcp(id),
                at(id),
            );
        }
        t.apply(
            EventKind::Closed,
            conn(1, Proto::Tcp),
            FlowKey::tcp(1),
            at(4),
        );
        t.apply(EventKind::New, conn(4, Proto::Tcp), FlowKey::tcp(4), at(4));
        assert_eq!((t.live_len(), t.backlog_len()), (3, 1));
        // One more: the ended connection goes first, no live one.
        t.apply(EventKind::New, conn(5, Proto::Tcp), FlowKey::tcp(5), at(5));
        assert_eq!((t.live_len(), t.backlog_len(), t.evicted()), (4, 0, 0));
        // Then the least recently active live one, counted.
        let later = now + Duration::from_secs(1);
        t.apply(EventKind::New, conn(6, Proto::Tcp), FlowKey::tcp(6), later);
        assert_eq!((t.live_len(), t.evicted()), (4, 1));
        assert!(!t.contains(2) && t.contains(6));
        assert!(t.bytes() <= 4 * one + one / 2);
        // A record that grows in place makes room too, and is kept.
        let mut big = conn(6, Proto::Tcp);
        big.cmdline = Some(vec![leco_proto::SafeText::from("x".repeat(100).as_str()); 4].into());
        t.apply(EventKind::Update, big, FlowKey::tcp(6), later);
        assert!(t.contains(6));
        assert!(t.bytes() <= 4 * one + one / 2, "{}", t.bytes());
        // Everything gone, nothing left over in the count.
        for id in [3, 4, 5, 6] {
            t.apply(
                EventKind::Closed,
                conn(id, Proto::Tcp),
                FlowKey::tcp(id),
                later,
            );
        }
        while t.pop_backlog() {}
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn a_bounded_snapshot_keeps_the_most_recent_in_order() {
        let mut t = Table::new(Limits {
            max_live: 100,
            ..limits()
        });
        let now = Instant::now();
        for id in 1..=5 {
            t.apply(EventKind::New, conn(id, Proto::Tcp), FlowKey::tcp(id), now);
        }
        let one = weight(&conn(1, Proto::Tcp));
        let (all, left_out) = t.snapshot_within(usize::MAX);
        assert_eq!((all.len(), left_out), (5, 0));
        let (some, left_out) = t.snapshot_within(2 * one);
        // Times are ids: 4 and 5 are the most recent, oldest first.
        assert_eq!(some.iter().map(|c| c.id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(left_out, 3);
    }

    #[test]
    fn a_backlog_of_none_keeps_none() {
        let mut t = Table::new(Limits {
            max_backlog: 0,
            ..limits()
        });
        let now = Instant::now();
        t.apply(EventKind::New, conn(1, Proto::Tcp), FlowKey::tcp(1), now);
        let (kind, c) = t.apply(EventKind::Closed, conn(1, Proto::Tcp), FlowKey::tcp(1), now);
        assert_eq!((kind, c.id), (EventKind::Closed, 1), "still published");
        assert_eq!(t.backlog_len(), 0);
        assert!(t.snapshot().is_empty());
    }

    #[test]
    fn blocked_attempts_stay_live_are_told_again_and_end_blocked() {
        let mut t = Table::new(limits());
        let t0 = Instant::now();
        let blocked = Change {
            kind: EventKind::Blocked,
            ends: false,
        };
        let mut c = conn(1, Proto::Udp);
        c.reason = Some(leco_proto::Reason::Firewall);
        c.attempts = Some(1);
        c.state = "blocked".into();
        assert_eq!(
            t.apply(blocked, c.clone(), FlowKey::tcp(7), t0).0,
            EventKind::Blocked
        );
        assert!(t.contains(1), "a socket that keeps trying stays live");
        c.attempts = Some(4);
        assert_eq!(
            t.apply(blocked, c, FlowKey::tcp(7), t0).0,
            EventKind::Blocked
        );
        assert_eq!(t.get(1).and_then(|c| c.attempts), Some(4));
        // Its socket closes: blocked again, with the kernel's last count.
        let out = t.release(7, t0, 0, |_, _| {
            Some(Counts {
                rx: 0,
                tx: 0,
                attempts: 6,
            })
        });
        let [(kind, c)] = out.events.as_slice() else {
            panic!("one end: {:?}", out.events);
        };
        assert_eq!(
            (*kind, c.state.as_ref(), c.attempts),
            (EventKind::Blocked, "blocked", Some(6))
        );
        // An inbound TCP attempt has no socket: it ends once quiet, and the
        // kernel's aggregate is forgotten with it.
        let mut inbound = conn(2, Proto::Tcp);
        inbound.reason = Some(leco_proto::Reason::Firewall);
        t.apply(blocked, inbound, FlowKey::tcp(1 << 63 | 22), t0);
        let idle = t.expire(t0 + Duration::from_secs(6), |_, _| None);
        assert_eq!(idle.events.len(), 1);
        assert_eq!(idle.events[0].0, EventKind::Blocked);
        assert_eq!(idle.forget, [FlowKey::tcp(1 << 63 | 22)]);
    }

    #[test]
    fn udp_flows_end_on_release_or_idleness() {
        let mut t = Table::new(limits());
        let t0 = Instant::now();
        t.apply(EventKind::New, conn(1, Proto::Udp), FlowKey::tcp(7), t0);
        t.apply(EventKind::New, conn(2, Proto::Udp), FlowKey::tcp(7), t0);
        t.apply(EventKind::New, conn(3, Proto::Udp), FlowKey::tcp(8), t0);
        let out = t.release(7, t0, 0, |_, _| None);
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.forget.len(), 2);
        assert!(out
            .events
            .iter()
            .all(|(k, c)| *k == EventKind::Closed && c.state == "closed"));
        assert!(t
            .expire(t0 + Duration::from_secs(1), |_, _| None)
            .events
            .is_empty());
        let idle = t.expire(t0 + Duration::from_secs(6), |_, _| None);
        assert_eq!(
            idle.events.iter().map(|(_, c)| c.id).collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(t.live_len(), 0);
    }

    #[test]
    fn a_flow_the_kernel_made_again_continues_its_connection() {
        let mut t = Table::new(limits());
        let now = Instant::now();
        let key = FlowKey::tcp(9) /* a datagram socket's, peer unset */;
        let mut first = conn(1, Proto::Udp);
        (first.rx_bytes, first.tx_bytes) = (100, 50);
        t.apply(EventKind::New, first, key, now);
        assert!(
            t.continuation(&flow(1, key, FlowProto::Udp)).is_none(),
            "itself"
        );
        // Evicted, then seen again: a new kernel id, counting from zero.
        let mut again = flow(7, key, FlowProto::Udp);
        again.rx_bytes = 10;
        let f = t.continuation(&again).expect("continues connection 1");
        assert_eq!((f.id, f.rx_bytes, f.tx_bytes), (1, 110, 50));
        assert!(t.tracks(7) && t.tracks(1));
        assert_eq!(t.recently_reported(now, Duration::ZERO), [(7, key)]);
        // Its later reports too, and then a third flow of the same socket.
        again.rx_bytes = 20;
        assert_eq!(t.continuation(&again).map(|f| f.rx_bytes), Some(120));
        let mut c = conn(1, Proto::Udp);
        (c.rx_bytes, c.tx_bytes) = (120, 50);
        t.apply(EventKind::Update, c, key, now);
        let third = t
            .continuation(&flow(8, key, FlowProto::Udp))
            .expect("third");
        assert_eq!((third.id, third.rx_bytes), (1, 120));
        assert!(!t.tracks(7) && t.tracks(8));
        // Once it ends, nothing continues it.
        t.apply(EventKind::Closed, conn(1, Proto::Udp), key, now);
        assert!(!t.tracks(8));
        assert!(t.continuation(&flow(9, key, FlowProto::Udp)).is_none());
    }

    #[test]
    fn a_tcp_flow_made_again_keeps_the_sockets_own_counts() {
        let mut t = Table::new(limits());
        let now = Instant::now();
        let key = FlowKey::tcp(9);
        let mut first = conn(1, Proto::Tcp);
        (first.rx_bytes, first.tx_bytes) = (100, 50);
        t.apply(EventKind::New, first, key, now);
        // The kernel's TCP counters are the socket's: they go on from 100.
        let mut again = flow(7, key, FlowProto::Tcp);
        (again.rx_bytes, again.tx_bytes) = (130, 50);
        let f = t.continuation(&again).expect("continues connection 1");
        assert_eq!((f.id, f.rx_bytes, f.tx_bytes), (1, 130, 50));
    }

    /// (id, rx, tx) of each event of `out`.
    fn counts(out: &Outcome) -> Vec<(u64, u64, u64)> {
        out.events
            .iter()
            .map(|(_, c)| (c.id, c.rx_bytes, c.tx_bytes))
            .collect()
    }

    #[test]
    fn a_released_socket_ends_its_flows_with_the_kernels_last_counts() {
        let mut t = Table::new(limits());
        let t0 = Instant::now();
        let mut c = conn(1, Proto::Udp);
        (c.rx_bytes, c.tx_bytes) = (10, 20);
        t.apply(EventKind::New, c, FlowKey::tcp(7), t0);
        t.apply(EventKind::New, conn(2, Proto::Icmp), FlowKey::tcp(8), t0);
        // Bytes moved after the last update: the end says them all.
        let out = t.release(7, t0, 0, |id, _| {
            (id == 1).then_some(Counts {
                rx: 500,
                tx: 600,
                attempts: 0,
            })
        });
        assert_eq!(counts(&out), [(1, 500, 600)]);
        // Other kinds than UDP end by idleness too, likewise.
        let idle = t.expire(t0 + Duration::from_secs(6), |id, _| {
            (id == 2).then_some(Counts {
                rx: 3,
                tx: 4,
                attempts: 0,
            })
        });
        assert_eq!(counts(&idle), [(2, 3, 4)]);
        assert_eq!(idle.forget.len(), 1);
    }

    #[test]
    fn a_socket_connected_elsewhere_is_a_new_connection() {
        let mut t = Table::new(limits());
        let key = FlowKey::tcp(9);
        t.apply(EventKind::New, conn(1, Proto::Tcp), key, Instant::now());
        let mut elsewhere = flow(7, key, FlowProto::Tcp);
        elsewhere.remote_port = 443;
        assert!(t.continuation(&elsewhere).is_none());
        assert!(!t.tracks(7));
    }

    #[test]
    fn a_replacing_report_keeps_how_the_connection_began() {
        let mut t = Table::new(limits());
        let now = Instant::now();
        t.apply(EventKind::New, conn(1, Proto::Tcp), FlowKey::tcp(9), now);
        let mut later = conn(1, Proto::Tcp);
        later.first_seen_us = 99;
        later.direction = Some(leco_proto::Direction::In);
        later.pid = Some(2);
        t.apply(EventKind::Update, later, FlowKey::tcp(9), now);
        let c = t.get(1).expect("live");
        assert_eq!(
            (c.first_seen_us, c.direction, c.pid),
            (1, Some(leco_proto::Direction::Out), Some(2))
        );
    }

    #[test]
    fn a_tcp_socket_closed_unseen_ends_its_connection_and_forgets_nothing() {
        let mut t = Table::new(limits());
        let now = Instant::now();
        t.apply(EventKind::New, conn(1, Proto::Tcp), FlowKey::tcp(9), now);
        t.apply(EventKind::New, conn(2, Proto::Tcp), FlowKey::tcp(10), now);
        let out = t.release(9, now, 0, |_, _| None);
        assert_eq!(
            out.events
                .iter()
                .map(|(k, c)| (*k, c.id, c.state.as_ref()))
                .collect::<Vec<_>>(),
            [(EventKind::Closed, 1, "closed")]
        );
        assert!(out.forget.is_empty(), "the kernel deletes TCP flows itself");
        assert_eq!(t.live_ids(), [(2, 2)]);
    }
}
