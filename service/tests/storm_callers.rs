//! A connection storm of 5,000 connections/s with 50 clients calling
//! `Snapshot()` 20 times each, back to back: the kernel reader must not
//! fall behind (no ring-buffer record lost), every call is answered in
//! bounded time, and memory stays bounded. In a test binary of its own, so that no other test's service
//! shares the machine with the storm. Needs root (CI runs as root).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    client, peak_memory_kib, property_u64, runtime, snapshot_reply, start, AcceptAndClose,
};
use leco_testkit::bus::TestBus;
use leco_testkit::require_root;

const CALLERS: usize = 50;
const CALLS_EACH: usize = 20;
const RATE: u64 = 5_000;
const SECONDS: u64 = 8;

#[test]
fn snapshot_callers_do_not_starve_the_kernel_reader() {
    if !require_root("snapshot_callers_do_not_starve_the_kernel_reader") {
        return;
    }
    let bus = TestBus::start().expect("private dbus-daemon");
    let svc = start(&bus, &[]);
    let svc_pid = svc.child.id();

    let server = AcceptAndClose::start();
    let addr = server.addr;
    let started = Instant::now();
    let storm = std::thread::spawn(move || {
        let mut made = 0u64;
        for i in 0..RATE * SECONDS {
            let due = Duration::from_micros(i * 1_000_000 / RATE);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.read(&mut [0u8; 1]);
                made += 1;
            }
        }
        made
    });

    // The callers start once the storm is under way, and call back to back.
    std::thread::sleep(Duration::from_secs(1));
    let latencies = runtime().block_on(async {
        let mut callers = Vec::new();
        for _ in 0..CALLERS {
            let conn = client(&bus).await;
            callers.push(tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..CALLS_EACH {
                    let t = Instant::now();
                    let reply = snapshot_reply(&conn).await.expect("Snapshot answers");
                    times.push(t.elapsed());
                    assert!(reply.body().len() <= 4 << 20, "a reply is at most 4 MiB");
                }
                times
            }));
        }
        let mut all = Vec::new();
        for c in callers {
            all.extend(c.await.expect("caller"));
        }
        all
    });
    let made = storm.join().expect("storm");
    server.stop();

    let mut sorted = latencies;
    sorted.sort();
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    eprintln!(
        "storm with callers: {made} connections, {} snapshots by {CALLERS} callers, \
         p50 {:?}, p99 {p99:?}, max {:?}",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    assert_eq!(sorted.len(), CALLERS * CALLS_EACH);
    assert!(p99 < Duration::from_secs(2), "Snapshot p99 {p99:?}");

    let hwm_kib = peak_memory_kib(svc_pid);
    eprintln!(
        "storm with callers: service peak memory {} MiB",
        hwm_kib / 1024
    );
    assert!(hwm_kib < 96 * 1024, "service peak memory {hwm_kib} KiB");

    let dropped =
        runtime().block_on(async { property_u64(&client(&bus).await, "KernelDrops").await });
    eprintln!("storm with callers: {dropped} kernel records dropped");
    let (code, err) = svc.terminate();
    // The service's log says when the ring overflowed, and what it did.
    assert_eq!(
        dropped, 0,
        "the kernel reader fell behind the snapshot callers; the service said: {err:#?}"
    );
    assert!(made >= RATE * SECONDS * 99 / 100, "made {made} connections");
    assert_eq!(code, 0, "{err:#?}");
}
