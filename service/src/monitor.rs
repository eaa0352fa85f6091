//! The service's core loop: kernel records in, enriched connection events
//! out, the table kept current. Standalone mode prints what comes out; the
//! bus publishes it.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leco_bpf::{DnsAnswer, Flow, FlowProto, KernelMaps, Record, RecordKind, RecordReader};
use leco_proto::{Connection, Direction, EventKind};
use tokio::sync::mpsc;

use crate::bus::Request;
use crate::clock::WallClock;
use crate::convert::{connection, refresh, EphemeralPorts};
use crate::enrich::Enricher;
use crate::memory::{self, Memory};
use crate::names::resolved::News;
use crate::names::{Named, Names};
use crate::ring::{Batch, Delivery, Ring};
use crate::stats::Stats;
use crate::table::{Change, Counts, Limits, Outcome, Table};

/// The counts of kernel flow `id` as the kernel has them now, for an end to
/// report every byte and attempt, not only those of the last update.
fn last_counts(maps: &KernelMaps, id: u64, key: &leco_bpf::FlowKey) -> Option<Counts> {
    let flow = maps.flow(key).ok()??;
    (flow.id == id).then_some(Counts {
        rx: flow.rx_bytes,
        tx: flow.tx_bytes,
        attempts: flow.attempts,
    })
}

/// What a kernel record means for its connection: a blocked flow's
/// reports are `blocked` events, and it ends (blocked) when the kernel
/// says its flow ended. `None` for records about a socket, not a flow.
fn change(kind: RecordKind, flow: &Flow) -> Option<Change> {
    let blocked = flow.blocked.is_some();
    let (kind, ends) = match kind {
        RecordKind::Blocked => (EventKind::Blocked, false),
        RecordKind::New | RecordKind::Update if blocked => (EventKind::Blocked, false),
        RecordKind::Closed | RecordKind::Failed if blocked => (EventKind::Blocked, true),
        RecordKind::New => (EventKind::New, false),
        RecordKind::Update => (EventKind::Update, false),
        RecordKind::Closed => (EventKind::Closed, true),
        RecordKind::Failed => (EventKind::Failed, true),
        RecordKind::Released => return None,
    };
    Some(Change { kind, ends })
}

/// A connection made before its name was learnt gets it from an answer
/// that arrives this soon after (the kernel may hand over the answer and
/// the connect in either order when they run on two CPUs).
const LATE_NAME: Duration = Duration::from_secs(2);

/// Whether the kernel lost records (its ring was full): its table is then
/// the only account of what they said.
#[derive(Debug, PartialEq, Eq)]
enum Lost {
    Nothing,
    Records,
}

/// Connections waiting that long for a name, at most; past that, new
/// ones do not wait (a storm of connections to unnamed addresses).
const UNNAMED_MAX: usize = 1_024;

/// An outgoing connection made with no name known for its remote.
#[derive(Debug)]
struct Unnamed {
    id: u64,
    cgroup: u64,
    at: Instant,
}

/// Where connection events go.
pub trait Publisher {
    /// Publishes one event. An error stops the monitor (e.g. a closed pipe).
    fn publish(&mut self, kind: EventKind, conn: &Connection) -> std::io::Result<()>;
    /// Called after each batch.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tunables of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The kernel's per-flow update interval; also the refresh tick.
    pub update_interval: Duration,
    /// The kernel's wake-up coalescing interval: after records arrive, drain
    /// again this much later (see `leco_bpf::RecordReader`).
    pub wakeup_latency: Duration,
    /// Table bounds.
    pub limits: Limits,
}

/// The loop's state.
#[derive(Debug)]
pub struct Monitor {
    maps: KernelMaps,
    enricher: Enricher,
    table: Table,
    ports: EphemeralPorts,
    wall: WallClock,
    settings: Settings,
    stats: Arc<Stats>,
    names: Names,
    /// By remote address: an answer looks up only its own addresses.
    unnamed: HashMap<IpAddr, Vec<Unnamed>>,
    unnamed_len: usize,
    /// News from systemd-resolved, if it is followed.
    resolved: Option<mpsc::Receiver<News>>,
    /// The store, if there is one.
    memory: Option<Memory>,
}

impl Monitor {
    /// A monitor reading `maps`, counting into `stats`.
    pub fn new(maps: KernelMaps, settings: Settings, stats: Arc<Stats>) -> Monitor {
        Monitor {
            maps,
            enricher: Enricher::new(leco_bpf::cgroup2_root()),
            table: Table::new(settings.limits),
            ports: EphemeralPorts::read(),
            wall: WallClock::now(),
            settings,
            stats,
            names: Names::default(),
            unnamed: HashMap::new(),
            unnamed_len: 0,
            resolved: None,
            memory: None,
        }
    }

    /// Remembers with `memory`: what is new, every connection that ends;
    /// `ended` (the previous run's latest, oldest first) fills the backlog.
    pub fn remember(&mut self, memory: Memory, ended: Vec<Connection>) {
        let now = Instant::now();
        self.table.keep_ended();
        self.table.restore_backlog(
            ended
                .into_iter()
                .map(|c| (memory::ended_at(c.last_seen_us, now), c)),
        );
        self.memory = Some(memory);
    }

    /// Writes down the connections that ended since the last call.
    fn remember_ended(&mut self) {
        if let Some(m) = &self.memory {
            for c in self.table.take_ended() {
                m.ended(&c);
            }
        }
    }

    /// Learns names from systemd-resolved's news too (see
    /// [`crate::names::resolved::follow`]).
    pub fn follow_resolved(&mut self, news: mpsc::Receiver<News>) {
        self.resolved = Some(news);
    }

    /// Runs until `shutdown` completes or the publisher fails, answering
    /// `requests` between batches. The ring is read on a thread of its own
    /// ([`Ring`]), so that nothing done here delays the kernel's reader.
    pub async fn run(
        mut self,
        reader: RecordReader,
        publisher: &mut impl Publisher,
        mut requests: tokio::sync::mpsc::Receiver<Request>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<Monitor> {
        let interval = self.settings.update_interval;
        let mut ring = Ring::start(reader, self.settings.wakeup_latency, interval)?;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Flows that predate this reader (a restart) are in the kernel's table.
        self.resync_after(&mut ring, publisher).await?;
        tokio::pin!(shutdown);
        let mut resolved = self.resolved.take();
        loop {
            tokio::select! {
                // Questions first: under a storm there are always events
                // waiting, and a client's Snapshot() must not wait behind them.
                biased;
                () = &mut shutdown => break,
                Some(req) = requests.recv() => self.answer(req),
                news = next_news(&mut resolved) => {
                    let now = Instant::now();
                    let learnt = self.names.resolved(news, now);
                    self.name_waiting(learnt, now, publisher)?;
                    publisher.flush()?;
                }
                delivery = ring.batches.recv() => match delivery {
                    Some(Ok(Delivery::Records(batch))) => self.handle(batch, publisher)?,
                    Some(Ok(Delivery::CaughtUp)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Err(std::io::Error::other("the ring buffer reader stopped")),
                },
                _ = tick.tick() => {
                    if self.tick(publisher)? == Lost::Records {
                        self.resync_after(&mut ring, publisher).await?;
                    }
                }
            }
        }
        // What the kernel recorded up to now, then the final counters:
        // current, not a tick old.
        ring.stop();
        while let Some(delivery) = ring.batches.recv().await {
            if let Delivery::Records(batch) = delivery? {
                self.handle(batch, publisher)?;
            }
        }
        self.remember_ended();
        if let Some(m) = &self.memory {
            m.stop(self.table.live());
        }
        self.publish_sizes();
        self.memory = None;
        Ok(self)
    }

    fn handle(&mut self, batch: Batch, publisher: &mut impl Publisher) -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for ev in batch {
            match ev {
                Ok(Record::Flow { kind, flow, .. }) => {
                    self.apply(kind, &flow, now, publisher)?;
                }
                Ok(Record::Released { cookie, at }) => {
                    let maps = &self.maps;
                    let out =
                        self.table
                            .release(cookie, now, self.wall.realtime_us(at), |id, key| {
                                last_counts(maps, id, key)
                            });
                    self.finish(out, publisher)?;
                }
                Ok(Record::Dns(answer)) => self.dns(&answer, now, publisher)?,
                Err(e) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("{e}");
                }
            }
        }
        self.remember_ended();
        publisher.flush()
    }

    fn apply(
        &mut self,
        kind: RecordKind,
        flow: &Flow,
        now: Instant,
        publisher: &mut impl Publisher,
    ) -> std::io::Result<()> {
        let Some(change) = change(kind, flow) else {
            return Ok(());
        };
        let continued = self.table.continuation(flow);
        let flow = continued.as_ref().unwrap_or(flow);
        let adopted = self.socket_owner(flow);
        let flow = adopted.as_ref().unwrap_or(flow);
        // Enrich once per connection (and again if its owner changed, as
        // when an accepted connection passes from listener to acceptor);
        // otherwise the known record is updated in place.
        let ended = change.ends;
        let wall = self.wall;
        let known = flow.owner.pid == 0 || self.table.owned_by(flow.id, flow.owner.pid);
        // A blocked connection that ends as it was last told (a connect
        // given up after its last blocked SYN) ends without a word: clients
        // took `blocked` as final already.
        let silent = change.kind == EventKind::Blocked
            && ended
            && self.table.get(flow.id).is_some_and(|c| {
                (c.rx_bytes, c.tx_bytes, c.attempts.unwrap_or(0))
                    == (flow.rx_bytes, flow.tx_bytes, flow.attempts)
            });
        let reported = if known {
            self.table
                .report(flow.id, change, now, |c| refresh(c, flow, &wall, ended))
        } else {
            None
        };
        let (kind, conn) = match reported {
            Some(r) => r,
            None => {
                let pid = (flow.owner.pid != 0).then_some(flow.owner.pid);
                let kept = self.memory.as_mut().and_then(|m| m.restored(flow.id, pid));
                let conn = match kept {
                    // As it was known before a restart, with today's counts.
                    Some(mut conn) => {
                        refresh(&mut conn, flow, &wall, ended);
                        conn
                    }
                    None => {
                        let e = self.enricher.enrich(&flow.owner, flow.first_seen);
                        let mut conn = connection(flow, &e, &self.wall, &self.ports, ended);
                        self.name(&mut conn, flow, ended, now);
                        if change.kind != EventKind::Blocked {
                            if let Some(m) = &mut self.memory {
                                conn.novelty = m.check(&conn);
                            }
                        }
                        conn
                    }
                };
                self.table.apply(change, conn, flow.key, now)
            }
        };
        if silent {
            return Ok(());
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        publisher.publish(kind, conn)?;
        if kind == EventKind::New && flow.proto != FlowProto::Tcp && flow.owner.pid != 0 {
            self.adopt(flow, now, publisher)?;
        }
        Ok(())
    }

    /// Gives outgoing `conn` (of `flow`) the name its remote was looked up
    /// by, if one was; else it waits a moment for the answer.
    fn name(&mut self, conn: &mut Connection, flow: &Flow, ended: bool, now: Instant) {
        // Loopback and unspecified addresses are never named.
        let remote = flow.remote;
        if conn.direction != Some(Direction::Out) || remote.is_unspecified() || remote.is_loopback()
        {
            return;
        }
        let cgroup = flow.owner.cgroup_id;
        if let Some(n) = self.names.lookup(cgroup, remote, now) {
            conn.remote_name = Some(n.name.clone());
            conn.name_source = Some(n.source);
        } else if !ended && self.unnamed_len < UNNAMED_MAX {
            self.unnamed.entry(remote).or_default().push(Unnamed {
                id: conn.id,
                cgroup,
                at: now,
            });
            self.unnamed_len += 1;
        }
    }

    /// A DNS answer arrived: its names are kept for the connections to
    /// come, and given to those made a moment ago without one.
    fn dns(
        &mut self,
        answer: &DnsAnswer,
        now: Instant,
        publisher: &mut impl Publisher,
    ) -> std::io::Result<()> {
        let learnt = self.names.answer(answer, now);
        self.name_waiting(learnt, now, publisher)
    }

    /// Names just learnt: given to the connections made a moment ago to
    /// their addresses without one.
    fn name_waiting(
        &mut self,
        learnt: Vec<(IpAddr, Named)>,
        now: Instant,
        publisher: &mut impl Publisher,
    ) -> std::io::Result<()> {
        for (addr, _) in learnt {
            let Some(waiting) = self.unnamed.remove(&addr) else {
                continue;
            };
            self.unnamed_len -= waiting.len();
            for u in waiting {
                if now.duration_since(u.at) >= LATE_NAME {
                    continue;
                }
                let Some(n) = self.names.lookup(u.cgroup, addr, now).cloned() else {
                    continue;
                };
                let change = Change {
                    kind: EventKind::Update,
                    ends: false,
                };
                let told = self.table.report(u.id, change, now, |c| {
                    c.remote_name = Some(n.name.clone());
                    c.name_source = Some(n.source);
                });
                if let Some((kind, conn)) = told {
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    publisher.publish(kind, conn)?;
                }
            }
        }
        Ok(())
    }

    /// `flow` with its socket's owner, if the kernel announced it without
    /// one although the socket has one: a datagram that arrived as the
    /// first read claimed the socket read no owner yet, and its record may
    /// come after the claim's, when [`Monitor::adopt`] has run already.
    fn socket_owner(&self, flow: &Flow) -> Option<Flow> {
        if flow.owner.pid != 0 || flow.proto == FlowProto::Tcp || self.table.tracks(flow.id) {
            return None;
        }
        // The kernel's record of one the socket's owner made: flows adopted
        // here are the owner's only in this table.
        let owned = self
            .table
            .owned_on_socket(flow.key.cookie())
            .into_iter()
            .filter_map(|key| self.maps.flow(&key).ok().flatten())
            .find(|f| f.owner.pid != 0)?;
        Some(Flow {
            owner: owned.owner,
            netns: owned.netns,
            ..flow.clone()
        })
    }

    /// A datagram socket's owner became known (its first send or read
    /// announced the flows that waited for it): the flows of the socket
    /// the kernel had to announce without an owner, more than it keeps
    /// waiting, are that owner's too.
    fn adopt(
        &mut self,
        claimed: &Flow,
        now: Instant,
        publisher: &mut impl Publisher,
    ) -> std::io::Result<()> {
        for (kernel_id, key) in self.table.ownerless(claimed.key.cookie()) {
            let Ok(Some(mut flow)) = self.maps.flow(&key) else {
                continue;
            };
            if flow.id != kernel_id {
                continue;
            }
            if flow.owner.pid == 0 {
                flow.owner = claimed.owner.clone();
                flow.netns = claimed.netns;
            }
            self.apply(RecordKind::Update, &flow, now, publisher)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: Outcome, publisher: &mut impl Publisher) -> std::io::Result<()> {
        for key in &out.forget {
            self.maps.forget(key);
        }
        for (kind, conn) in &out.events {
            self.stats.events.fetch_add(1, Ordering::Relaxed);
            publisher.publish(*kind, conn)?;
        }
        Ok(())
    }

    /// Periodic work: wall clock, trailing counters, idle UDP flows, drops;
    /// whether the kernel lost records since the last.
    fn tick(&mut self, publisher: &mut impl Publisher) -> std::io::Result<Lost> {
        let now = Instant::now();
        self.wall = WallClock::now();
        // The kernel sends at most one update per interval and none after
        // a burst ends: re-read flows it reported on lately.
        let window = self.settings.update_interval * 2 + Duration::from_millis(100);
        for (kernel_id, key) in self.table.recently_reported(now, window) {
            let Ok(Some(flow)) = self.maps.flow(&key) else {
                continue;
            };
            if flow.id != kernel_id {
                continue;
            }
            let flow = self.table.continuation(&flow).unwrap_or(flow);
            let Some(c) = self.table.get(flow.id) else {
                continue;
            };
            let attempts = c.attempts.unwrap_or(0);
            if (flow.rx_bytes, flow.tx_bytes, flow.attempts) != (c.rx_bytes, c.tx_bytes, attempts) {
                self.apply(RecordKind::Update, &flow, now, publisher)?;
            }
        }
        self.names.tick(now);
        self.unnamed.retain(|_, waiting| {
            waiting.retain(|u| now.duration_since(u.at) < LATE_NAME);
            !waiting.is_empty()
        });
        self.unnamed_len = self.unnamed.values().map(Vec::len).sum();
        let maps = &self.maps;
        let out = self.table.expire(now, |id, key| last_counts(maps, id, key));
        self.finish(out, publisher)?;
        let mut lost = Lost::Nothing;
        if let Ok(k) = self.maps.counters() {
            let seen = self
                .stats
                .kernel_drops
                .swap(k.ringbuf_drops, Ordering::Relaxed);
            if k.ringbuf_drops > seen {
                tracing::warn!(
                    dropped = k.ringbuf_drops - seen,
                    "kernel ring buffer was full; records lost, recovering flows from the kernel's table"
                );
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                lost = Lost::Records;
            }
        }
        self.publish_sizes();
        self.remember_ended();
        publisher.flush()?;
        Ok(lost)
    }

    fn publish_sizes(&self) {
        let s = &self.stats;
        s.tracked
            .store(self.table.live_len() as u64, Ordering::Relaxed);
        s.backlog
            .store(self.table.backlog_len() as u64, Ordering::Relaxed);
        s.evicted.store(self.table.evicted(), Ordering::Relaxed);
        s.dns_answers.store(self.names.answers, Ordering::Relaxed);
        s.dns_unreadable
            .store(self.names.unreadable, Ordering::Relaxed);
        s.resolved_lookups
            .store(self.names.resolved, Ordering::Relaxed);
        s.names.store(self.names.known() as u64, Ordering::Relaxed);
        if let Some(m) = &self.memory {
            let (written, dropped) = m.counts();
            s.stored.store(written, Ordering::Relaxed);
            s.store_dropped.store(dropped, Ordering::Relaxed);
        }
    }

    fn answer(&self, req: Request) {
        match req {
            Request::Snapshot { budget, reply } => {
                // The asker may have given up (timeout): nothing to do then.
                let _ = reply.send(self.table.snapshot_within(budget));
            }
        }
    }

    /// [`Monitor::resync`] once every record the ring holds now is
    /// handled: the kernel wrote them before its table is read, and
    /// handled after it they would come out of order (a connection
    /// announced before the DNS answer that names it, a close before the
    /// record with its last counts).
    async fn resync_after(
        &mut self,
        ring: &mut Ring,
        publisher: &mut impl Publisher,
    ) -> std::io::Result<()> {
        // Records sent after this are read after the table: its flows that
        // have one are theirs to announce.
        let cutoff = crate::clock::boottime();
        ring.catch_up();
        loop {
            match ring.batches.recv().await {
                Some(Ok(Delivery::Records(batch))) => self.handle(batch, publisher)?,
                Some(Ok(Delivery::CaughtUp)) => break,
                Some(Err(e)) => return Err(e),
                None => return Err(std::io::Error::other("the ring buffer reader stopped")),
            }
        }
        self.resync(cutoff, publisher)
    }

    /// Reconciles the table with the kernel's flow table, the truth the
    /// ring buffer only reports on: flows the table lacks are added (their
    /// records were lost, or predate this process), and live connections
    /// the kernel no longer has are closed (their end was lost).
    fn resync(&mut self, cutoff: Duration, publisher: &mut impl Publisher) -> std::io::Result<()> {
        let now = Instant::now();
        let kernel = self.maps.flows();
        let in_kernel: std::collections::HashSet<u64> = kernel.iter().map(|f| f.id).collect();
        for (id, kernel_id) in self.table.live_ids() {
            if !in_kernel.contains(&kernel_id) {
                if let Some(conn) = self.table.close_unreported(id, now) {
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    publisher.publish(EventKind::Closed, conn)?;
                }
            }
        }
        // Flows the kernel has not announced yet (a connect in progress)
        // are its to announce or end: telling them now would make a
        // connection that never opens look opened. Those with a record
        // sent since `cutoff` are the ring's to tell, after what came
        // before it (the DNS answer that names one); had it been lost,
        // the loss is counted, and the next resync is later.
        for flow in kernel
            .iter()
            .filter(|f| f.announced && f.last_record <= cutoff)
        {
            if !self.table.tracks(flow.id) {
                self.apply(RecordKind::New, flow, now, publisher)?;
            }
        }
        self.remember_ended();
        publisher.flush()
    }
}

/// The next news from systemd-resolved; never, once it is not followed.
async fn next_news(news: &mut Option<mpsc::Receiver<News>>) -> News {
    if let Some(rx) = news {
        if let Some(n) = rx.recv().await {
            return n;
        }
    }
    *news = None;
    std::future::pending().await
}
