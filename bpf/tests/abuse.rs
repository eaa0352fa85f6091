//! Issue 16, "Hold under abuse", in the real kernel: traffic patterns that
//! once left flows nothing would ever end. In a test binary of its own:
//! each test makes thousands of records, which every loaded capture sees,
//! and the tests of capture.rs that read only after their child exits
//! would find their ring buffers overflowed. Needs root (CI runs as root).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Probe;
use leco_bpf::{Flow, RecordKind};
use leco_testkit::patterns::stale_keep_alive;
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
