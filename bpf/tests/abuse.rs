//! Issue 16, "Hold under abuse", in the real kernel: traffic patterns that
//! once left flows nothing would ever end. In a test binary of its own:
//! each test makes thousands of records, which every loaded capture sees,
//! and the tests of capture.rs that read only after their child exits
//! would find their ring buffers overflowed. Needs root (CI runs as root).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{kinds, Probe};
use leco_bpf::{Capture, Flow, Options, RecordKind, MIN_FLOWS};
use leco_testkit::patterns::{held_connections, stale_keep_alive};
use leco_testkit::require_root;

/// Ids of the flows announced (`new`) in `events` that have no end
/// (`closed` or `failed`) there, and how many were announced.
fn unended(events: &[(RecordKind, Flow)]) -> (Vec<u64>, usize) {
    let ended: HashSet<u64> = events
        .iter()
        .filter(|(k, _)| matches!(k, RecordKind::Closed | RecordKind::Failed))
        .map(|(_, f)| f.id)
        .collect();
    let news: Vec<u64> = events
        .iter()
        .filter(|(k, _)| *k == RecordKind::New)
        .map(|(_, f)| f.id)
        .collect();
    let open = news
        .iter()
        .copied()
        .filter(|id| !ended.contains(id))
        .collect();
    (open, news.len())
}

#[test]
fn writing_on_a_connection_the_peer_reset_leaves_no_ghost_flow() {
    if !require_root("writing_on_a_connection_the_peer_reset_leaves_no_ghost_flow") {
        return;
    }
    let mut probe = Probe::load();
    let maps = probe._capture.maps().expect("maps");
    const TIMES: usize = 500;
    let pair = stale_keep_alive("leco-t-ka-srv", "leco-t-ka-cli", TIMES);
    let pid = pair.client.pid();
    assert_eq!(probe.while_running(pair), (0, 0), "server, client");
    // The reset ends each flow inside the client's write; the write's own
    // byte count comes after that end and must not start another flow.
    let (mine, _) = probe.settle(
        |f| f.owner.pid == pid,
        |e| unended(e).0.is_empty() && e.len() >= 2 * TIMES,
        Duration::from_secs(5),
    );
    let (open, news) = unended(&mine);
    let left: Vec<u64> = maps
        .flows()
        .into_iter()
        .filter(|f| f.owner.pid == pid)
        .map(|f| f.id)
        .collect();
    eprintln!(
        "stale keep-alive x{TIMES}: {news} flows announced, {} never ended, {} left in the \
         kernel's table",
        open.len(),
        left.len()
    );
    assert!(
        open.is_empty(),
        "{} flows never ended, such as {:?}",
        open.len(),
        &open[..open.len().min(10)]
    );
    assert_eq!(news, TIMES, "one flow a connection");
    assert!(left.is_empty(), "{} left in the kernel's table", left.len());
}

#[test]
fn flows_the_full_table_evicted_still_end_when_their_socket_closes() {
    if !require_root("flows_the_full_table_evicted_still_end_when_their_socket_closes") {
        return;
    }
    let mut probe = Probe::of(
        Capture::load(&Options {
            max_flows: MIN_FLOWS,
            // Room for every record of the test (and of the other test,
            // which this capture sees too) should its reader be starved
            // on a loaded machine: a record lost is an end not seen.
            ring_bytes: 8 << 20,
            ..Options::default()
        })
        .expect("load"),
    );
    // Ten times the table's size in sockets, all open at once.
    const HELD: usize = 5 * MIN_FLOWS as usize;
    let pair = held_connections("leco-t-ev-srv", "leco-t-ev-cli", HELD, false);
    let pid = pair.client.pid();
    assert_eq!(probe.while_running(pair), (0, 0), "server, client");
    // The closes end each connection as both sides' FINs cross, which a
    // loaded machine may take a while to finish (CI: 34 of 320 were still
    // to come half a second after both processes exited): read until none
    // is left without an end, or 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (news, open) = loop {
        let (mine, _) = probe.settle(
            |f| f.owner.pid == pid,
            |_| false,
            Duration::from_millis(200),
        );
        // An evicted flow cannot end with its record: its socket's close
        // is reported by cookie instead.
        let ended: HashSet<u64> = mine
            .iter()
            .filter(|(k, _)| matches!(k, RecordKind::Closed | RecordKind::Failed))
            .map(|(_, f)| f.key.cookie())
            .chain(probe.released.iter().copied())
            .collect();
        let news = kinds(&mine)
            .iter()
            .filter(|k| **k == RecordKind::New)
            .count();
        let open = mine
            .iter()
            .filter(|(k, f)| *k == RecordKind::New && !ended.contains(&f.key.cookie()))
            .count();
        if open == 0 || std::time::Instant::now() >= deadline {
            break (news, open);
        }
    };
    eprintln!(
        "{HELD} held connections in a table of {MIN_FLOWS}: {news} announced, {open} never ended"
    );
    // A flow evicted before it was even established is never announced:
    // at most one announcement a connection, then.
    assert!((1..=HELD).contains(&news), "{news} announced");
    assert_eq!(probe.ring_drops(), 0, "records lost to a full ring");
    assert_eq!(open, 0, "sockets closed without an end");
}
