//! `ConnectionEvent` signals under a rate bound: a queue that merges each
//! connection's pending events, and the task that sends them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use leco_proto::{Connection, EventKind, INTERFACE, OBJECT_PATH};
use tokio::sync::Notify;

use crate::monitor::Publisher;
use crate::stats::Stats;
use crate::table::weight;

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

    /// What its records weigh, as the table counts them.
    fn weight(&self) -> usize {
        self.new.as_ref().map_or(0, weight) + self.last.as_ref().map_or(0, |(_, c)| weight(c))
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
            // A blocked attempt told again replaces the pending one: it
            // carries the count so far.
            EventKind::Closed | EventKind::Failed | EventKind::Blocked => {
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
    /// What the slots' records weigh ([`weight`]).
    bytes: usize,
}

/// Seconds' worth of signals (at the rate bound) kept pending at most;
/// beyond, the oldest are given up (counted as coalesced): a signal older
/// than that is stale news, and clients recover with Snapshot().
const PENDING_SECONDS: usize = 2;

/// What pending signals' records may weigh at most, whatever the rate
/// bound: past it the oldest are given up too.
pub const PENDING_BYTES: usize = 4 << 20;

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
                p.bytes -= slot.weight();
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
            let incoming = weight(conn);
            while p.signals >= self.pending_max || p.bytes + incoming > PENDING_BYTES {
                let Some(old) = p.order.pop_front() else {
                    break;
                };
                if let Some(slot) = p.slots.remove(&old) {
                    p.signals -= slot.signals();
                    p.bytes -= slot.weight();
                    self.stats
                        .coalesced
                        .fetch_add(slot.signals() as u64, Ordering::Relaxed);
                }
            }
            p.order.push_back(id);
        }
        let slot = p.slots.entry(id).or_default();
        let (before, before_bytes) = (slot.signals(), slot.weight());
        let replaced = slot.merge(kind, conn);
        p.signals = p.signals + slot.signals() - before;
        p.bytes = p.bytes + slot.weight() - before_bytes;
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
    fn what_waits_is_bounded_in_bytes_too() {
        let mut q = queue(1000);
        let big = |id: u64| {
            let mut c = conn(id, Proto::Tcp);
            let arg = leco_proto::SafeText::from("y".repeat(1000).as_str());
            c.cmdline = Some(vec![arg; 2].into());
            c
        };
        for id in 0..3_000 {
            q.publish(EventKind::New, &big(id))
                .expect("queue never fails");
        }
        let p = q.pending.lock().expect("lock");
        assert!(p.bytes <= PENDING_BYTES, "{} bytes wait", p.bytes);
        assert!(p.signals < 2_000, "the count bound is not what held them");
        assert_eq!(
            q.stats.coalesced.load(Ordering::Relaxed) as usize + p.signals,
            3_000,
            "every event sent, merged or counted"
        );
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
