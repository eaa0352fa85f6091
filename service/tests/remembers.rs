//! What the service remembers in its store (`--state-dir`), on the real
//! kernel and a real SQLite file: `novelty` for a new program and a new
//! destination, told once and not again after a restart; the warm-up;
//! `History()` and `Totals()` on a private bus with the real policy; and a
//! restart that keeps the ended connections in `Snapshot()` (privsep.rs
//! restarts `run` over kept kernel objects: the live ones are kept as they
//! were known). Needs root (CI runs as root).

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{client, get, runtime, snapshot, start, Dict, Service};
use leco_testkit::bus::{busctl_as, ensure_group, ensure_user, error_name, TestBus};
use leco_testkit::{connect_in_turn, require_root, scratch_dir, spawn_named};

fn standalone(dir: &Path, extra: &[&str]) -> Service {
    let dir = dir.to_str().expect("UTF-8 path");
    let mut args = vec!["--standalone", "--json", "--state-dir", dir];
    args.extend_from_slice(extra);
    Service::start(&args)
}

/// The `new` events of `pid`'s outgoing connections, `n` of them, as
/// (remote port, novelty).
fn news(svc: &mut Service, pid: u32, n: usize) -> Vec<(u64, Option<String>)> {
    let mut seen = Vec::new();
    let done = svc.follow_json(Duration::from_secs(10), |v| {
        if v["pid"] == pid && v["kind"] == "new" && v["direction"] == "out" {
            seen.push((
                v["remote_port"].as_u64().unwrap_or(0),
                v["novelty"].as_str().map(str::to_owned),
            ));
        }
        seen.len() == n
    });
    assert!(done, "{n} new connections of pid {pid}; saw {seen:?}");
    seen
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[test]
fn a_new_program_and_a_new_destination_are_told_once_across_restarts() {
    if !require_root("a_new_program_and_a_new_destination_are_told_once_across_restarts") {
        return;
    }
    let dir = scratch_dir("novelty");
    let (_a, port_a) = listener();
    let (_b, port_b) = listener();
    let mut svc = standalone(&dir, &["--warm-up", "0"]);
    let pid = connect_in_turn("leco-t-novel", vec![port_a, port_a, port_b]);
    let program = Some("program".to_owned());
    let destination = Some("destination".to_owned());
    assert_eq!(
        news(&mut svc, pid, 3),
        [
            (u64::from(port_a), program),
            (u64::from(port_a), None),
            (u64::from(port_b), destination),
        ]
    );
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");

    // The store remembers: the same program to the same places is old news.
    let mut svc = standalone(&dir, &["--warm-up", "0"]);
    let pid = connect_in_turn("leco-t-novel", vec![port_b, port_a]);
    assert_eq!(
        news(&mut svc, pid, 2),
        [(u64::from(port_b), None), (u64::from(port_a), None)]
    );
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
    let counters = err
        .iter()
        .find(|l| l.contains("final counters"))
        .expect("counters");
    assert!(counters.contains("store_dropped=0"), "{counters}");
}

#[test]
fn a_fresh_store_learns_quietly_through_its_warm_up() {
    if !require_root("a_fresh_store_learns_quietly_through_its_warm_up") {
        return;
    }
    let dir = scratch_dir("warm-up");
    let (_l, port) = listener();
    // The default warm-up: an hour of learning.
    let mut svc = standalone(&dir, &[]);
    let pid = connect_in_turn("leco-t-warm", vec![port]);
    assert_eq!(news(&mut svc, pid, 1), [(u64::from(port), None)]);
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
    // Without it, a program never seen is new; the one learnt is not.
    let mut svc = standalone(&dir, &["--warm-up", "0"]);
    let known = connect_in_turn("leco-t-warm", vec![port]);
    assert_eq!(news(&mut svc, known, 1), [(u64::from(port), None)]);
    let fresh = connect_in_turn("leco-t-warm2", vec![port]);
    assert_eq!(
        news(&mut svc, fresh, 1),
        [(u64::from(port), Some("program".into()))]
    );
    drop(svc);
}

/// Calls `member` of the service with `body`.
async fn call<B>(conn: &zbus::Connection, member: &str, body: &B) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(
        Some("org.leco.Overseer1"),
        "/org/leco/Overseer1",
        Some("org.leco.Overseer1"),
        member,
        body,
    )
    .await
}

/// A `t` reply value from a `Totals()` group.
fn total(d: &Dict, key: &str) -> u64 {
    get::<u64>(d, key).unwrap_or_else(|| panic!("{key} in {d:?}"))
}

#[test]
fn history_totals_and_the_backlog_outlive_a_restart() {
    if !require_root("history_totals_and_the_backlog_outlive_a_restart") {
        return;
    }
    // The bus resolves policy users and groups when it starts.
    ensure_group("leco");
    ensure_user("leco", &[]);
    ensure_user("leco-test-reader", &["leco"]);
    ensure_user("leco-test-other", &[]);
    let dir = scratch_dir("history");
    let state = dir.to_str().expect("UTF-8 path").to_owned();
    let args = ["--state-dir", state.as_str(), "--warm-up", "0"];
    let bus = TestBus::start().expect("private dbus-daemon");
    let (l, port) = listener();
    let svc = start(&bus, &args);
    let rt = runtime();

    // One connection that ends, with 1,000 bytes sent.
    let ended = spawn_named("leco-t-hist", move |_| {
        use std::io::Write;
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        i32::from(s.write_all(&[7; 1000]).is_err())
    });
    let ended_pid = ended.pid();
    let (mut server, _) = l.accept().expect("accept");
    std::io::copy(&mut server, &mut std::io::sink()).expect("read to the end");
    assert_eq!(ended.wait(), 0);
    drop(server);
    let mine = |d: &Dict, pid: u32| {
        get::<u32>(d, "pid") == Some(pid) && get::<String>(d, "direction").as_deref() == Some("out")
    };
    let wait_for = |what: &str, pick: &dyn Fn(&[Dict]) -> bool| {
        rt.block_on(async {
            let conn = client(&bus).await;
            let mut snap = Vec::new();
            for _ in 0..100 {
                snap = snapshot(&conn).await.expect("Snapshot");
                if pick(&snap) {
                    return Ok(snap);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let seen: Vec<&Dict> = snap.iter().filter(|d| mine(d, ended_pid)).collect();
            Err(format!(
                "{what} not in Snapshot() within 10 s; its entries: {seen:#?}"
            ))
        })
    };
    // Ended, with every byte it sent (the kernel's count at the close).
    let closed = |s: &[Dict]| {
        s.iter().any(|d| {
            mine(d, ended_pid)
                && get::<String>(d, "state").as_deref() == Some("closed")
                && get::<u64>(d, "tx_bytes") == Some(1000)
        })
    };
    let before = match wait_for("the ended connection", &closed) {
        Ok(snap) => snap,
        Err(why) => {
            let (_, err) = svc.terminate();
            panic!("{why}\nthe service said: {err:#?}");
        }
    };
    let novelty = before
        .iter()
        .find(|d| mine(d, ended_pid))
        .and_then(|d| get::<String>(d, "novelty"));
    assert_eq!(novelty.as_deref(), Some("program"));
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");

    // A new service: the ended connection is still in the backlog.
    let svc = start(&bus, &args);
    let after = match wait_for("the ended connection after the restart", &closed) {
        Ok(snap) => snap,
        Err(why) => {
            let (_, err) = svc.terminate();
            panic!("{why}\nthe restarted service said: {err:#?}");
        }
    };
    let again = after
        .iter()
        .find(|d| mine(d, ended_pid))
        .expect("the ended one");
    assert_eq!(get::<u64>(again, "tx_bytes"), Some(1000));

    // History and Totals, as root over zbus...
    rt.block_on(async {
        let conn = client(&bus).await;
        let reply = call(&conn, "History", &(0u64, u64::MAX, 100u32))
            .await
            .expect("History");
        let history: Vec<Dict> = reply.body().deserialize().expect("aa{sv}");
        let h = history
            .iter()
            .find(|d| mine(d, ended_pid))
            .unwrap_or_else(|| panic!("the ended connection in History(): {history:?}"));
        assert_eq!(get::<String>(h, "comm").as_deref(), Some("leco-t-hist"));
        assert_eq!(get::<u64>(h, "tx_bytes"), Some(1000));
        let reply = call(&conn, "Totals", &(0u64, "program"))
            .await
            .expect("Totals");
        let totals: Vec<Dict> = reply.body().deserialize().expect("aa{sv}");
        let t = totals
            .iter()
            .find(|d| get::<String>(d, "program").as_deref() == Some("leco-t-hist"))
            .unwrap_or_else(|| panic!("leco-t-hist in Totals(): {totals:?}"));
        assert_eq!(total(t, "connections"), 1);
        assert_eq!(total(t, "tx_bytes"), 1000);
        assert!(total(t, "first_seen_us") <= total(t, "last_seen_us"));
        // Wrong arguments are refused, saying why.
        for (member, err) in [
            ("Totals", call(&conn, "Totals", &(0u64, "colour")).await),
            ("History", call(&conn, "History", &(5u64, 4u64, 1u32)).await),
        ] {
            match err {
                Err(zbus::Error::MethodError(name, _, _)) => assert_eq!(
                    name.as_str(),
                    "org.freedesktop.DBus.Error.InvalidArgs",
                    "{member}"
                ),
                other => panic!("{member}: {other:?}"),
            }
        }
    });

    // ...and under the policy: group leco may ask, others may not.
    let history = [
        "call",
        "org.leco.Overseer1",
        "/org/leco/Overseer1",
        "org.leco.Overseer1",
        "History",
        "ttu",
        "0",
        "18446744073709551615",
        "10",
    ];
    let ok = busctl_as(Some("leco-test-reader"), bus.address(), &history);
    assert!(
        ok.status.success(),
        "reader's History: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("leco-t-hist"));
    let totals = [
        "call",
        "org.leco.Overseer1",
        "/org/leco/Overseer1",
        "org.leco.Overseer1",
        "Totals",
        "ts",
        "0",
        "user",
    ];
    for call in [&history[..], &totals[..]] {
        let denied = busctl_as(Some("leco-test-other"), bus.address(), call);
        assert!(!denied.status.success(), "{call:?}");
        assert_eq!(
            error_name(&denied).as_deref(),
            Some("org.freedesktop.DBus.Error.AccessDenied"),
            "{call:?}"
        );
    }
    drop(svc);
}
