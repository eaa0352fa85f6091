//! Serving connections on D-Bus: the `org.leco.Overseer1` interface, its
//! `ConnectionEvent` signal under a rate bound, and snapshots of the table.
//!
//! The monitor loop owns the connection table; the interface asks it for
//! snapshots over a channel, so the hot path takes no lock. Signals leave
//! through a queue that merges events per connection: when the bus or the
//! rate bound holds them back, a connection's pending events collapse into
//! one carrying its latest state (counted as coalesced), and the table still
//! has everything for `Snapshot()`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use leco_proto::{Connection, Dict, Dicts, EventKind, BUS_NAME, OBJECT_PATH};
use tokio::sync::{mpsc, oneshot, Notify};
use zbus::object_server::SignalEmitter;

use crate::monitor::Sink;
use crate::stats::Stats;

/// What the interface asks the monitor loop.
#[derive(Debug)]
pub enum Request {
    /// Live connections and the backlog; only those active at or after
    /// `since_us` (realtime µs) when given.
    Snapshot {
        /// Lower bound on `last_seen_us`.
        since_us: Option<u64>,
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<Connection>>,
    },
}

/// The D-Bus object.
#[derive(Debug)]
pub struct Overseer {
    requests: mpsc::Sender<Request>,
    stats: Arc<Stats>,
}

impl Overseer {
    async fn ask(&self, since_us: Option<u64>) -> zbus::fdo::Result<Dicts> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Snapshot { since_us, reply })
            .await
            .map_err(|_| zbus::fdo::Error::Failed("the service is shutting down".into()))?;
        let conns = answer
            .await
            .map_err(|_| zbus::fdo::Error::Failed("the service is shutting down".into()))?;
        tracing::debug!(connections = conns.len(), "snapshot taken");
        Ok(Dicts(conns))
    }
}

/// Connections on this machine, as seen by leco's eBPF programs.
#[zbus::interface(name = "org.leco.Overseer1")]
impl Overseer {
    /// Live connections, then recently ended ones (the backlog), oldest
    /// first: what a client that starts now needs to show the same picture
    /// as one that was listening all along.
    async fn snapshot(&self) -> zbus::fdo::Result<Dicts> {
        self.ask(None).await
    }

    /// Like Snapshot, limited to connections active at or after `since_us`
    /// (realtime microseconds, as in `last_seen_us`): for a client that
    /// reconnects and already has the rest.
    async fn snapshot_since(&self, since_us: u64) -> zbus::fdo::Result<Dicts> {
        self.ask(Some(since_us)).await
    }

    /// A connection was seen (`new`), moved traffic or changed (`update`),
    /// ended (`closed`) or ended with an error (`failed`). `kind` comes
    /// first so that match rules can filter on it (`arg0='new'`).
    #[zbus(signal)]
    async fn connection_event(
        emitter: &SignalEmitter<'_>,
        kind: &str,
        connection: Dict<'_>,
    ) -> zbus::Result<()>;

    /// leco's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// ConnectionEvent signals sent since the service started.
    #[zbus(property(emits_changed_signal = "false"))]
    fn events_emitted(&self) -> u64 {
        self.stats.signals.load(Ordering::Relaxed)
    }

    /// Events not signalled on their own, to bound the signal rate: merged
    /// into a later event of the same connection (which carries its latest
    /// state). Snapshot() still has every connection.
    #[zbus(property(emits_changed_signal = "false"))]
    fn coalesced(&self) -> u64 {
        self.stats.coalesced.load(Ordering::Relaxed)
    }

    /// Records the kernel could not queue because its ring buffer was
    /// full; the service recovered the connections from the kernel's table.
    #[zbus(property(emits_changed_signal = "false"))]
    fn kernel_drops(&self) -> u64 {
        self.stats.kernel_drops.load(Ordering::Relaxed)
    }

    /// Live connections tracked now.
    #[zbus(property(emits_changed_signal = "false"))]
    fn tracked(&self) -> u64 {
        self.stats.tracked.load(Ordering::Relaxed)
    }
}

/// Which bus to serve.
#[derive(Debug, Clone)]
pub enum BusTarget {
    /// The system bus.
    System,
    /// The session bus of the user running the service.
    Session,
    /// A bus at this address (tests, development).
    Address(String),
}

/// Connects, serves the object, and only then requests the name, so that a
/// client activated by the name never finds it without the object.
pub async fn serve(
    target: &BusTarget,
    requests: mpsc::Sender<Request>,
    stats: Arc<Stats>,
) -> anyhow::Result<zbus::Connection> {
    use anyhow::Context;
    let builder = match target {
        BusTarget::System => zbus::connection::Builder::system(),
        BusTarget::Session => zbus::connection::Builder::session(),
        BusTarget::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
    .context("choosing the bus")?;
    let conn = builder
        .serve_at(OBJECT_PATH, Overseer { requests, stats })?
        .build()
        .await
        .with_context(|| format!("connecting to the {target} bus"))?;
    conn.request_name(BUS_NAME).await.with_context(|| {
        format!(
            "owning {BUS_NAME} on the {target} bus (is another leco-service running, or does \
             the bus policy dbus-policy/org.leco.Overseer1.conf not allow this user?)"
        )
    })?;
    Ok(conn)
}

impl std::fmt::Display for BusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusTarget::System => f.write_str("system"),
            BusTarget::Session => f.write_str("session"),
            BusTarget::Address(a) => write!(f, "`{a}`"),
        }
    }
}

/// Events waiting to be signalled, at most one per connection.
#[derive(Debug, Default)]
struct Pending {
    order: VecDeque<u64>,
    events: HashMap<u64, (EventKind, Connection)>,
}

/// Seconds' worth of signals (at the rate bound) kept pending at most;
/// beyond, the oldest are given up (counted as coalesced): a signal older
/// than that is stale news, and clients recover with Snapshot().
const PENDING_SECONDS: usize = 2;

/// The sink of bus mode: queues events for the signal task.
#[derive(Debug, Clone)]
pub struct SignalQueue {
    pending: Arc<Mutex<Pending>>,
    pending_max: usize,
    wake: Arc<Notify>,
    stats: Arc<Stats>,
}

impl SignalQueue {
    /// An empty queue for signals at most `rate` a second.
    pub fn new(stats: Arc<Stats>, rate: u32) -> SignalQueue {
        SignalQueue {
            pending: Arc::default(),
            pending_max: (rate as usize * PENDING_SECONDS).max(100),
            wake: Arc::new(Notify::new()),
            stats,
        }
    }

    fn take(&self, max: usize) -> Vec<(EventKind, Connection)> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let n = max.min(p.order.len());
        let ids: Vec<u64> = p.order.drain(..n).collect();
        ids.into_iter()
            .filter_map(|id| p.events.remove(&id))
            .collect()
    }

    /// Sends queued events as signals, at most `rate` per second (bursts of
    /// a tenth of a second's worth), until the connection fails.
    pub async fn run(self, conn: zbus::Connection, rate: u32) -> zbus::Result<()> {
        let emitter = SignalEmitter::new(&conn, OBJECT_PATH)?;
        let rate = f64::from(rate.max(1));
        let burst = (rate / 10.0).max(1.0);
        let mut tokens = burst;
        let mut last = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
            last = now;
            if tokens < 1.0 {
                // Meanwhile new events merge into the pending ones.
                tokio::time::sleep(Duration::from_secs_f64((1.0 - tokens) / rate)).await;
                continue;
            }
            let batch = self.take(tokens as usize);
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            tokens -= batch.len() as f64;
            for (kind, c) in batch {
                Overseer::connection_event(&emitter, kind.as_str(), Dict(&c)).await?;
                self.stats.signals.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Sink for SignalQueue {
    fn publish(&mut self, kind: EventKind, conn: &Connection) -> std::io::Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let id = conn.id;
        match p.events.get_mut(&id) {
            Some(slot) => {
                // Merge: a connection not yet announced stays `new`; an end
                // is never lost; otherwise the latest state wins.
                let kind = match (slot.0, kind) {
                    (_, k) if k.is_final() => k,
                    (EventKind::New, _) => EventKind::New,
                    (_, k) => k,
                };
                *slot = (kind, conn.clone());
                self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if p.order.len() >= self.pending_max {
                    if let Some(old) = p.order.pop_front() {
                        p.events.remove(&old);
                        self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    }
                }
                p.order.push_back(id);
                p.events.insert(id, (kind, conn.clone()));
            }
        }
        drop(p);
        self.wake.notify_one();
        Ok(())
    }
}
