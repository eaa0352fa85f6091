//! What the service has done: shared by the monitor loop, the signal queue
//! and the bus properties, so plain atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one service run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connection events the monitor produced.
    pub events: AtomicU64,
    /// `ConnectionEvent` signals sent.
    pub signals: AtomicU64,
    /// Events merged into a later one of the same connection, or given up,
    /// to bound the signal rate.
    pub coalesced: AtomicU64,
    /// Records the kernel's ring buffer dropped (recovered from its table).
    pub kernel_drops: AtomicU64,
    /// Records that could not be decoded.
    pub decode_errors: AtomicU64,
    /// Times the table was reconciled with the kernel's after drops.
    pub resyncs: AtomicU64,
    /// Live connections in the table.
    pub tracked: AtomicU64,
    /// Ended connections in the backlog.
    pub backlog: AtomicU64,
    /// Live connections pushed out of the full table.
    pub evicted: AtomicU64,
    /// Connections left out of Snapshot() replies to bound their size.
    pub trimmed: AtomicU64,
    /// DNS answers read (names learnt from), and those that could not be.
    pub dns_answers: AtomicU64,
    pub dns_unreadable: AtomicU64,
    /// Lookups systemd-resolved reported.
    pub resolved_lookups: AtomicU64,
    /// Names known, machine-wide.
    pub names: AtomicU64,
    /// Ended connections written to the store, and those it dropped (a
    /// full queue, a failed write).
    pub stored: AtomicU64,
    pub store_dropped: AtomicU64,
}

impl Stats {
    /// The final report line of a run.
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "events={} signals={} coalesced={} ringbuf_drops={} decode_errors={} resyncs={} \
             tracked={} backlog={} evicted={} dns_answers={} dns_unreadable={} resolved_lookups={} \
             names={} stored={} store_dropped={}",
            g(&self.events),
            g(&self.signals),
            g(&self.coalesced),
            g(&self.kernel_drops),
            g(&self.decode_errors),
            g(&self.resyncs),
            g(&self.tracked),
            g(&self.backlog),
            g(&self.evicted),
            g(&self.dns_answers),
            g(&self.dns_unreadable),
            g(&self.resolved_lookups),
            g(&self.names),
            g(&self.stored),
            g(&self.store_dropped),
        )
    }
}
