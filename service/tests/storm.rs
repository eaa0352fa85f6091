//! A storm of 50,000 loopback connections in 10 s against the real service
//! on a private bus: `Snapshot()` keeps answering, memory stays bounded,
//! the signal rate stays bounded and nothing is lost without being counted.
//! In a test binary of its own, so that no other test's service shares the
//! machine with the storm. Needs root (CI runs as root).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    client, peak_memory_kib, property_u64, runtime, snapshot_reply, start, AcceptAndClose, Dict,
};
use leco_testkit::bus::TestBus;
use leco_testkit::require_root;

/// The service's default `signal-rate` (service/src/config.rs): the storm
/// runs the service as users do.
const DEFAULT_SIGNAL_RATE: u32 = 5_000;

#[test]
fn a_storm_of_50k_connections_keeps_snapshot_responsive_and_memory_bounded() {
    if !require_root("a_storm_of_50k_connections_keeps_snapshot_responsive_and_memory_bounded") {
        return;
    }
    let bus = TestBus::start().expect("private dbus-daemon");
    let svc = start(&bus, &[]);
    let svc_pid = svc.child.id();

    // 50,000 loopback connections in about 10 s, from two threads; the
    // server closes first, so TIME_WAIT stays on its side and the clients'
    // ports never run out.
    const TOTAL: usize = 50_000;
    let server = AcceptAndClose::start();
    let addr = server.addr;
    let storm_started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let mut made = 0;
                for i in 0..TOTAL / 2 {
                    // Pace to 5,000/s overall: 2,500/s per thread.
                    let due = Duration::from_micros((i as u64) * 400);
                    if let Some(wait) = due.checked_sub(storm_started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    if let Ok(mut s) = TcpStream::connect(addr) {
                        let _ = s.read(&mut [0u8; 1]);
                        made += 1;
                    }
                }
                let _ = t;
                made
            })
        })
        .collect();

    let latencies = runtime().block_on(async {
        let conn = client(&bus).await;
        let mut latencies = Vec::new();
        while clients.iter().any(|c| !c.is_finished()) {
            // Time the answer only, not this test's decoding of it.
            let t = Instant::now();
            let reply = snapshot_reply(&conn)
                .await
                .expect("Snapshot answers during the storm");
            latencies.push(t.elapsed());
            let bytes = reply.body().len();
            assert!(bytes < 32 << 20, "Snapshot is bounded: {bytes} bytes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        latencies
    });
    let made: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    server.stop();
    let storm = storm_started.elapsed();
    assert!(made >= TOTAL * 99 / 100, "made {made} connections");

    let idle = runtime().block_on(async {
        let conn = client(&bus).await;
        let t = Instant::now();
        let reply = snapshot_reply(&conn).await.expect("Snapshot");
        let answered = t.elapsed();
        let n = reply
            .body()
            .deserialize::<Vec<Dict>>()
            .expect("aa{sv}")
            .len();
        (answered, n, t.elapsed())
    });
    eprintln!(
        "storm: after it, Snapshot of {} connections answered in {:?} (decoded by {:?})",
        idle.1, idle.0, idle.2
    );
    let mut sorted = latencies.clone();
    sorted.sort();
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    eprintln!(
        "storm: {made} connections in {storm:.1?}; {} snapshots, p50 {:?}, p99 {p99:?}, max {:?}",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    if sorted.len() < 20 || p99 > Duration::from_millis(200) {
        let (_, err) = svc.terminate();
        panic!(
            "Snapshot p99 {p99:?} over {} calls; service said {err:#?}",
            sorted.len()
        );
    }

    let hwm_kib = peak_memory_kib(svc_pid);
    assert!(hwm_kib < 128 * 1024, "service peak memory {hwm_kib} KiB");

    // Nothing lost silently: what was not signalled is counted. Signals
    // still queued (at most two seconds' worth) go out first.
    std::thread::sleep(Duration::from_secs(3));
    runtime().block_on(async {
        let conn = client(&bus).await;
        let prop = |name: &'static str| {
            let conn = conn.clone();
            async move { property_u64(&conn, name).await }
        };
        let emitted = prop("EventsEmitted").await;
        let coalesced = prop("Coalesced").await;
        eprintln!("storm: {emitted} signals, {coalesced} coalesced");
        // Two flows a connection, a new and an end each: 4 events a
        // connection, but at most DEFAULT_SIGNAL_RATE signals a second (plus
        // a burst of a tenth of that, and a slot's second signal) since the
        // service started, shortly before the storm.
        let since_start = storm_started.elapsed().as_secs_f64() + 1.0;
        let rate = f64::from(DEFAULT_SIGNAL_RATE);
        let bound = since_start * rate + rate / 10.0 + 1.0;
        assert!(
            (emitted as f64) <= bound,
            "{emitted} signals exceed the rate bound {bound}"
        );
        // Every connection is two flows, each with a new and an end record:
        // each was signalled, merged into another signal, or counted lost.
        let dropped = prop("KernelDrops").await;
        let accounted = emitted + coalesced + dropped;
        eprintln!("storm: {dropped} kernel records dropped");
        assert!(
            accounted >= (made * 4) as u64 * 95 / 100,
            "{accounted} of {} events accounted for",
            made * 4
        );
    });
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
}
