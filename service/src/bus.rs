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

use anyhow::Context;
use futures_util::StreamExt;
use leco_proto::{Connection, Dict, Dicts, EventKind, BUS_NAME, INTERFACE, OBJECT_PATH};
use tokio::sync::{mpsc, oneshot, Notify};
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::object_server::SignalEmitter;
use zbus::MessageStream;

use crate::monitor::Publisher;
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

/// A `ConnectionEvent` signal, its body written by leco-proto's wire
/// encoder (several times faster than serializing [`Dict`]; one is made for
/// every event the bus carries).
fn connection_event(kind: EventKind, c: &Connection) -> zbus::Result<zbus::Message> {
    let body = leco_proto::wire::event_body(kind.as_str(), c);
    let builder = zbus::Message::signal(OBJECT_PATH, INTERFACE, "ConnectionEvent")?;
    // SAFETY: the body is `(s, a{sv})` in D-Bus marshalling, as zvariant
    // makes it for the signature given (leco-proto's wire tests hold the
    // bytes equal), in the machine's byte order that the builder uses, and
    // carries no file descriptors.
    unsafe { builder.build_raw_body(&body, "sa{sv}", Vec::new()) }
}

/// The service on the bus: the connection, and the watch on losing it.
#[derive(Debug)]
pub struct Served {
    /// The connection the object is served on.
    pub conn: zbus::Connection,
    name_lost: MessageStream,
}

impl Served {
    /// Completes when the service no longer serves: its name was taken
    /// from it, or the bus connection ended (dbus-daemon restarted or
    /// died). Says which; the caller stops with an error, so that systemd
    /// starts it again.
    pub async fn lost(mut self) -> String {
        match self.name_lost.next().await {
            Some(Ok(_)) => format!("lost the name {BUS_NAME} on the bus to another connection"),
            Some(Err(e)) => format!("lost the bus: {e}"),
            None => "lost the bus: the connection to it closed".to_owned(),
        }
    }
}

/// Connects, serves the object, and only then requests the name, so that a
/// client activated by the name never finds it without the object. The
/// name is owned outright: not replaceable and not queued for, so a second
/// leco-service (or anyone the policy lets own it) cannot take it over
/// silently, and one that finds it owned says by whom and stops.
pub async fn serve(
    target: &BusTarget,
    requests: mpsc::Sender<Request>,
    stats: Arc<Stats>,
) -> anyhow::Result<Served> {
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
    // Watched from before the request, so that no loss goes unseen.
    let name_lost = MessageStream::for_match_rule(name_lost_rule()?, &conn, Some(8))
        .await
        .context("watching for the loss of the bus name")?;
    let reply = conn
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await;
    match reply {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {
            Ok(Served { conn, name_lost })
        }
        // zbus turns the bus's "exists" into an error of its own.
        Ok(RequestNameReply::Exists | RequestNameReply::InQueue) | Err(zbus::Error::NameTaken) => {
            anyhow::bail!(
                "{BUS_NAME} is already served on the {target} bus by {}: another leco-service \
                 is running; stop it first",
                owner_of_name(&conn).await
            )
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "owning {BUS_NAME} on the {target} bus (does the bus policy \
                 dbus-policy/org.leco.Overseer1.conf allow this user?)"
            )
        }),
    }
}

/// `NameLost` for our name, from the bus itself.
fn name_lost_rule() -> zbus::Result<zbus::MatchRule<'static>> {
    Ok(zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameLost")?
        .arg(0, BUS_NAME)?
        .build())
}

/// Who owns the bus name, for the message: its unique name and process id.
async fn owner_of_name(conn: &zbus::Connection) -> String {
    let describe = async {
        let dbus = zbus::fdo::DBusProxy::new(conn).await?;
        let name = zbus::names::BusName::from_static_str(BUS_NAME)?;
        let owner = dbus.get_name_owner(name).await?;
        let pid = dbus
            .get_connection_unix_process_id(owner.clone().into())
            .await?;
        Ok::<_, zbus::Error>(format!("{owner} (pid {pid})"))
    };
    describe
        .await
        .unwrap_or_else(|e| format!("another connection ({e})"))
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

/// What one connection still has to say on the bus. Its `new` is kept
/// apart from its latest state: a client must learn that a connection
/// began even when the connection ended before its turn came, so only
/// updates merge (into the pending `new`, or into the latest update, or
/// into the final event that follows them).
#[derive(Debug, Default)]
struct Slot {
    /// The pending `new`, carrying the latest state known before the end.
    new: Option<Connection>,
    /// The pending update or final event.
    last: Option<(EventKind, Connection)>,
}

impl Slot {
    /// Signals this slot will send.
    fn signals(&self) -> usize {
        usize::from(self.new.is_some()) + usize::from(self.last.is_some())
    }

    /// Takes in an event; returns how many pending events it replaced.
    fn merge(&mut self, kind: EventKind, conn: &Connection) -> u64 {
        match kind {
            EventKind::New => u64::from(self.new.replace(conn.clone()).is_some()),
            EventKind::Update => match (&mut self.new, &mut self.last) {
                (_, Some((k, c))) if !k.is_final() => {
                    *c = conn.clone();
                    1
                }
                // Nothing after the end: the final event already carries
                // the last state.
                (_, Some(_)) => 1,
                (Some(c), None) => {
                    *c = conn.clone();
                    1
                }
                (None, None) => {
                    self.last = Some((kind, conn.clone()));
                    0
                }
            },
            EventKind::Closed | EventKind::Failed => {
                let replaced = self.last.replace((kind, conn.clone()));
                u64::from(replaced.is_some())
            }
        }
    }

    /// Its signals, oldest first.
    fn into_signals(self) -> impl Iterator<Item = (EventKind, Connection)> {
        let new = self.new.map(|c| (EventKind::New, c));
        new.into_iter().chain(self.last)
    }
}

/// Events waiting to be signalled: connections in the order they first
/// had something to say, one slot each.
#[derive(Debug, Default)]
struct Pending {
    order: VecDeque<u64>,
    slots: HashMap<u64, Slot>,
    /// Signals the slots hold (the bound counts signals, not slots).
    signals: usize,
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

    /// Up to about `max` signals (a slot's two signals go together), oldest
    /// connection first.
    fn take(&self, max: usize) -> Vec<(EventKind, Connection)> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(max.min(p.signals));
        while out.len() < max {
            let Some(id) = p.order.pop_front() else { break };
            if let Some(slot) = p.slots.remove(&id) {
                p.signals -= slot.signals();
                out.extend(slot.into_signals());
            }
        }
        out
    }

    /// Sends queued events as signals, at most `rate` per second (bursts of
    /// a tenth of a second's worth), until the connection fails.
    pub async fn run(self, conn: zbus::Connection, rate: u32) -> zbus::Result<()> {
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
                let message = connection_event(kind, &c)?;
                conn.send(&message).await?;
                self.stats.signals.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Publisher for SignalQueue {
    fn publish(&mut self, kind: EventKind, conn: &Connection) -> std::io::Result<()> {
        let mut guard = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let p = &mut *guard;
        let id = conn.id;
        if !p.slots.contains_key(&id) {
            // Beyond the bound the oldest news is given up, counted: a
            // signal that late is stale, and clients recover with Snapshot().
            while p.signals >= self.pending_max {
                let Some(old) = p.order.pop_front() else {
                    break;
                };
                if let Some(slot) = p.slots.remove(&old) {
                    p.signals -= slot.signals();
                    self.stats
                        .coalesced
                        .fetch_add(slot.signals() as u64, Ordering::Relaxed);
                }
            }
            p.order.push_back(id);
        }
        let slot = p.slots.entry(id).or_default();
        let before = slot.signals();
        let replaced = slot.merge(kind, conn);
        p.signals = p.signals + slot.signals() - before;
        if replaced > 0 {
            self.stats.coalesced.fetch_add(replaced, Ordering::Relaxed);
        }
        drop(guard);
        self.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::conn;
    use leco_proto::Proto;

    fn queue(rate: u32) -> SignalQueue {
        SignalQueue::new(Arc::new(Stats::default()), rate)
    }

    fn publish(q: &mut SignalQueue, kind: EventKind, id: u64, rx: u64) {
        let mut c = conn(id, Proto::Tcp);
        c.rx_bytes = rx;
        q.publish(kind, &c).expect("queue never fails");
    }

    fn kinds(batch: &[(EventKind, Connection)]) -> Vec<(EventKind, u64, u64)> {
        batch.iter().map(|(k, c)| (*k, c.id, c.rx_bytes)).collect()
    }

    #[test]
    fn a_new_is_never_merged_into_the_end_of_its_connection() {
        let mut q = queue(1000);
        publish(&mut q, EventKind::New, 1, 0);
        publish(&mut q, EventKind::Update, 1, 10);
        publish(&mut q, EventKind::Update, 1, 20);
        publish(&mut q, EventKind::Closed, 1, 30);
        assert_eq!(
            kinds(&q.take(10)),
            [(EventKind::New, 1, 20), (EventKind::Closed, 1, 30)],
            "the new carries the last state before the end"
        );
        assert_eq!(q.stats.coalesced.load(Ordering::Relaxed), 2);
        assert!(q.take(10).is_empty());
    }

    #[test]
    fn updates_merge_into_the_latest_update_and_the_end_replaces_them() {
        let mut q = queue(1000);
        publish(&mut q, EventKind::Update, 7, 1);
        publish(&mut q, EventKind::Update, 7, 2);
        publish(&mut q, EventKind::Failed, 7, 3);
        publish(&mut q, EventKind::Update, 7, 4);
        assert_eq!(kinds(&q.take(10)), [(EventKind::Failed, 7, 3)]);
        assert_eq!(q.stats.coalesced.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn connections_keep_the_order_they_first_spoke_in() {
        let mut q = queue(1000);
        publish(&mut q, EventKind::New, 1, 0);
        publish(&mut q, EventKind::New, 2, 0);
        publish(&mut q, EventKind::Closed, 1, 5);
        let batch = q.take(1);
        assert_eq!(
            kinds(&batch),
            [(EventKind::New, 1, 0), (EventKind::Closed, 1, 5)],
            "a slot's two signals go together"
        );
        assert_eq!(kinds(&q.take(1)), [(EventKind::New, 2, 0)]);
    }

    #[test]
    fn beyond_the_bound_the_oldest_are_given_up_and_counted() {
        // A rate of 1 keeps the floor of 100 pending signals.
        let mut q = queue(1);
        for id in 0..50 {
            publish(&mut q, EventKind::New, id, 0);
            publish(&mut q, EventKind::Closed, id, 1);
        }
        assert_eq!(q.stats.coalesced.load(Ordering::Relaxed), 0);
        publish(&mut q, EventKind::New, 1000, 0);
        let coalesced = q.stats.coalesced.load(Ordering::Relaxed);
        let batch = q.take(usize::MAX);
        assert_eq!(coalesced, 2, "one connection's two signals given up");
        assert_eq!(
            batch.len() as u64 + coalesced,
            101,
            "nothing lost uncounted"
        );
        assert_eq!(batch[0].1.id, 1, "the oldest went first");
        assert_eq!(batch.last().map(|(_, c)| c.id), Some(1000));
    }
}
