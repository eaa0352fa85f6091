//! Issue 16, "Hold under abuse", end to end: `leco-service --standalone
//! --json` watching traffic patterns that once left connections live
//! forever or gave one connection several ids. Every connection that ends
//! must end in the service too, under its one id. In a test binary of its
//! own: these make thousands of connections. Needs root (CI runs as root).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use common::Service;
use leco_testkit::patterns::{held_connections, stale_keep_alive, Pair};
use leco_testkit::require_root;
use serde_json::Value;

/// Taken by each test, so that the `Tracked` one prints counts no other
/// test's connections of this file (those of other processes it still may).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What the service said about the connections of some processes.
#[derive(Debug, Default)]
struct Ledger {
    /// Every id the service used for them, by owning process.
    ids: HashMap<u32, HashSet<u64>>,
    /// The ids it ended (closed or failed).
    ended: HashSet<u64>,
}

impl Ledger {
    /// Takes note of event `v` if it is about a connection of `pids`.
    fn note(&mut self, v: &Value, pids: &[u32]) {
        let (Some(pid), Some(id)) = (v["pid"].as_u64(), v["id"].as_u64()) else {
            return;
        };
        let Some(&pid) = pids.iter().find(|&&p| u64::from(p) == pid) else {
            return;
        };
        self.ids.entry(pid).or_default().insert(id);
        if v["kind"] == "closed" || v["kind"] == "failed" {
            self.ended.insert(id);
        }
    }

    /// How many ids the connections of `pid` had.
    fn ids(&self, pid: u32) -> usize {
        self.ids.get(&pid).map_or(0, HashSet::len)
    }

    /// How many of them are still live: what they add to `Tracked`.
    fn live(&self) -> usize {
        self.ids
            .values()
            .flatten()
            .filter(|id| !self.ended.contains(id))
            .count()
    }
}

/// Follows the service's events about `pair`'s connections (waiting for
/// the pair to finish) until each of its two processes had `n` ids and
/// none is live, or 15 s have passed; what the service said.
fn follow(svc: &mut Service, pair: Pair, n: usize) -> (Ledger, u32, u32) {
    let (server, client) = (pair.server.pid(), pair.client.pid());
    assert_eq!(pair.wait(), (0, 0), "server, client");
    let mut ledger = Ledger::default();
    svc.follow_json(Duration::from_secs(15), |v| {
        ledger.note(v, &[server, client]);
        ledger.ids(server) >= n && ledger.ids(client) >= n && ledger.live() == 0
    });
    (ledger, server, client)
}

/// Stops the service once its `Tracked` is current (it is counted once a
/// tick); that count and its `ringbuf_drops`, from its final counters.
fn final_tracked_and_drops(svc: Service) -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(1500));
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
    let line = err
        .iter()
        .find(|l| l.contains("final counters:"))
        .unwrap_or_else(|| panic!("no final counters in {err:#?}"));
    let counter = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (counter("tracked"), counter("ringbuf_drops"))
}

#[test]
fn stale_keep_alive_connections_all_end() {
    if !require_root("stale_keep_alive_connections_all_end") {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let mut svc = Service::start(&["--standalone", "--json"]);
    const TIMES: usize = 300;
    let pair = stale_keep_alive("leco-t-ka-srv", "leco-t-ka-cli", TIMES);
    let (ledger, _, client) = follow(&mut svc, pair, TIMES);
    let (tracked, drops) = final_tracked_and_drops(svc);
    eprintln!(
        "stale keep-alive x{TIMES}: {} client ids, {} still live; the service's Tracked {tracked} \
         (everyone's; {drops} ring-buffer drops)",
        ledger.ids(client),
        ledger.live()
    );
    assert_eq!(ledger.live(), 0, "connections the service never ended");
    assert_eq!(ledger.ids(client), TIMES, "one id a connection");
}

#[test]
fn an_overflowing_kernel_flow_table_leaves_no_zombies_and_no_duplicates() {
    if !require_root("an_overflowing_kernel_flow_table_leaves_no_zombies_and_no_duplicates") {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    // Both ends of each connection are flows: 3,000 held connections are
    // six thousand flows in a table of 1,024.
    let mut svc = Service::start(&["--standalone", "--json", "--max-flows", "1024"]);
    const HELD: usize = 3_000;
    let pair = held_connections("leco-t-of-srv", "leco-t-of-cli", HELD, false);
    let (held, ..) = follow(&mut svc, pair, HELD);
    // Half as many, each written on once they are all open: most of their
    // flows were evicted by then, and the kernel makes new ones.
    const WRITTEN: usize = 1_500;
    let pair = held_connections("leco-t-ow-srv", "leco-t-ow-cli", WRITTEN, true);
    let (written, server, client) = follow(&mut svc, pair, WRITTEN);
    let (tracked, drops) = final_tracked_and_drops(svc);
    eprintln!(
        "max-flows 1024: {HELD} held connections leave {} live; {WRITTEN} written on have {} + \
         {} ids and leave {} live; the service's Tracked {tracked} (everyone's; {drops} \
         ring-buffer drops)",
        held.live(),
        written.ids(server),
        written.ids(client),
        written.live()
    );
    assert_eq!(held.live(), 0, "held connections the service never ended");
    assert_eq!(
        written.live(),
        0,
        "written connections the service never ended"
    );
    assert_eq!(
        (written.ids(server), written.ids(client)),
        (WRITTEN, WRITTEN),
        "one id a connection, at each end"
    );
}
