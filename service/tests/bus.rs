//! `leco-service --standalone --bus-address ADDR` on a real private
//! dbus-daemon with the real policy: signals, match rules, snapshots,
//! introspection, and a connection storm. Needs root (CI runs as root).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{client, get, rule, runtime, snapshot, start, Dict};
use futures_util::StreamExt;
use leco_testkit::bus::TestBus;
use leco_testkit::{require_root, spawn_named};
use zbus::MessageStream;

/// The next ConnectionEvent on `stream` for which `pick` holds, within 10 s.
async fn next_event(
    stream: &mut MessageStream,
    pick: impl Fn(&str, &Dict) -> bool,
) -> (String, Dict) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a matching ConnectionEvent within 10 s")
            .expect("stream open")
            .expect("message");
        let (kind, dict): (String, Dict) = msg.body().deserialize().expect("sa{sv}");
        if pick(&kind, &dict) {
            return (kind, dict);
        }
    }
}

#[test]
fn signals_snapshots_match_rules_and_introspection() {
    if !require_root("signals_snapshots_match_rules_and_introspection") {
        return;
    }
    let bus = TestBus::start().expect("private dbus-daemon");
    let _svc = start(&bus, &[]);
    runtime().block_on(async {
        let conn = client(&bus).await;
        let mut all = MessageStream::for_match_rule(rule(None), &conn, Some(100_000))
            .await
            .expect("subscribe");
        let mut news = MessageStream::for_match_rule(rule(Some("new")), &conn, Some(100_000))
            .await
            .expect("subscribe arg0='new'");

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let child = spawn_named("leco-t-dbus", move |_| {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return 1;
            };
            i32::from(s.write_all(b"hello leco").is_err())
        });
        let pid = child.pid();
        let (mut server, _) = listener.accept().expect("accept");
        let mut got = [0u8; 10];
        server.read_exact(&mut got).expect("read");
        assert_eq!(child.wait(), 0);
        drop(server);

        let mine = |d: &Dict| {
            get::<u16>(d, "remote_port") == Some(port) && get::<u32>(d, "pid") == Some(pid)
        };
        let (kind, new) = next_event(&mut all, |_, d| mine(d)).await;
        assert_eq!(kind, "new");
        assert_eq!(get::<String>(&new, "comm").as_deref(), Some("leco-t-dbus"));
        assert_eq!(get::<String>(&new, "proto").as_deref(), Some("tcp"));
        assert_eq!(get::<u32>(&new, "family"), Some(4));
        assert_eq!(get::<String>(&new, "direction").as_deref(), Some("out"));
        assert_eq!(
            get::<String>(&new, "remote_addr").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(get::<String>(&new, "user").as_deref(), Some("root"));
        let id: u64 = get(&new, "id").expect("id");
        let (kind, closed) = next_event(&mut all, |k, d| {
            k != "update" && get::<u64>(d, "id") == Some(id)
        })
        .await;
        assert_eq!(kind, "closed");
        assert_eq!(get::<u64>(&closed, "tx_bytes"), Some(10));

        // The arg0='new' subscriber got our new event, and nothing but new events.
        let (kind, _) = next_event(&mut news, |_, d| get::<u64>(d, "id") == Some(id)).await;
        assert_eq!(kind, "new");
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_millis(300), news.next()).await
        {
            let (kind, _): (String, Dict) = msg.body().deserialize().expect("sa{sv}");
            assert_eq!(kind, "new", "a match rule on arg0 filters on the bus");
        }

        // A client that starts late sees it too.
        let snap = snapshot(&conn).await.expect("Snapshot");
        let entry = snap
            .iter()
            .find(|d| get::<u64>(d, "id") == Some(id))
            .expect("in Snapshot");
        assert_eq!(get::<String>(entry, "state").as_deref(), Some("closed"));
        assert_eq!(get::<String>(entry, "comm").as_deref(), Some("leco-t-dbus"));

        // What the service serves is what proto/ documents.
        let xml: String = conn
            .call_method(
                Some("org.leco.Overseer1"),
                "/org/leco/Overseer1",
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .await
            .expect("Introspect")
            .body()
            .deserialize()
            .expect("string");
        assert_eq!(
            interface_element(&xml),
            interface_element(leco_proto::INTROSPECTION_XML),
            "proto/org.leco.Overseer1.xml differs from what the service serves"
        );
    });
}

/// The `org.leco.Overseer1` interface element, each line trimmed.
fn interface_element(xml: &str) -> Vec<String> {
    let start = xml
        .find("<interface name=\"org.leco.Overseer1\">")
        .expect("the interface is there");
    let end = start + xml[start..].find("</interface>").expect("closed");
    xml[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn readers_in_group_leco_get_events_and_snapshots_others_are_denied() {
    if !require_root("readers_in_group_leco_get_events_and_snapshots_others_are_denied") {
        return;
    }
    use leco_testkit::bus::{busctl_as, ensure_group, ensure_user, error_name, monitor_as};
    // The bus resolves policy users and groups when it starts.
    ensure_group("leco");
    ensure_user("leco", &[]);
    ensure_user("leco-test-reader", &["leco"]);
    ensure_user("leco-test-other", &[]);
    let bus = TestBus::start().expect("private dbus-daemon");
    let _svc = start(&bus, &[]);

    let rule = "type='signal',interface='org.leco.Overseer1',member='ConnectionEvent'";
    let reader =
        monitor_as(Some("leco-test-reader"), bus.address(), rule).expect("reader subscribes");
    let other = monitor_as(Some("leco-test-other"), bus.address(), rule).expect("other subscribes");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let child = spawn_named("leco-t-policy", move |_| {
        i32::from(TcpStream::connect(("127.0.0.1", port)).is_err())
    });
    assert_eq!(child.wait(), 0);
    let _accepted = listener.accept().expect("accept");

    // The reader receives the event for it...
    let seen = reader
        .wait_for("leco-t-policy", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("reader got no event; it saw {:?}", reader.messages()));
    assert!(seen.contains("ConnectionEvent"), "{seen}");
    // ...and so would the other user, were the policy not denying it: by
    // now the same signal has long been routed to every matching peer.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        other
            .messages()
            .iter()
            .all(|m| !m.contains("ConnectionEvent")),
        "a user outside group leco received {:?}",
        other.messages()
    );

    let call = [
        "call",
        "org.leco.Overseer1",
        "/org/leco/Overseer1",
        "org.leco.Overseer1",
        "Snapshot",
    ];
    let ok = busctl_as(Some("leco-test-reader"), bus.address(), &call);
    assert!(
        ok.status.success(),
        "reader's Snapshot: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("leco-t-policy"));
    let denied = busctl_as(Some("leco-test-other"), bus.address(), &call);
    assert!(!denied.status.success());
    assert_eq!(
        error_name(&denied).as_deref(),
        Some("org.freedesktop.DBus.Error.AccessDenied")
    );
}

/// A blocked attempt is a `blocked` signal with its reason, which a match
/// rule on `arg0='blocked'` selects, and a Snapshot() entry in state
/// `blocked`.
#[test]
fn blocked_attempts_reach_an_arg0_blocked_subscriber() {
    if !require_root("blocked_attempts_reach_an_arg0_blocked_subscriber") {
        return;
    }
    use leco_testkit::attempts::{self, Place};
    use leco_testkit::netns::Netns;

    let ns = Netns::create("lt-bus-blk");
    ns.nft(
        "table inet leco_test {
           chain out {
             type filter hook output priority 0;
             udp dport 4461 drop
           }
         }",
    );
    let bus = TestBus::start().expect("private dbus-daemon");
    let _svc = start(&bus, &[]);
    runtime().block_on(async {
        let conn = client(&bus).await;
        let mut blocked =
            MessageStream::for_match_rule(rule(Some("blocked")), &conn, Some(100_000))
                .await
                .expect("subscribe arg0='blocked'");
        let a = attempts::udp_sends(
            "leco-t-blk",
            Place {
                netns: Some(&ns),
                cgroup: None,
            },
            "127.0.0.1:4461".parse().expect("address"),
            2,
            Duration::from_millis(20),
        );
        assert_eq!(a.failed, 2, "{a:?}");
        let (kind, d) = next_event(&mut blocked, |_, d| get::<u32>(d, "pid") == Some(a.pid)).await;
        assert_eq!(kind, "blocked");
        assert_eq!(get::<String>(&d, "reason").as_deref(), Some("firewall"));
        assert_eq!(get::<String>(&d, "comm").as_deref(), Some("leco-t-blk"));
        assert_eq!(get::<u16>(&d, "remote_port"), Some(4461));
        assert!(get::<u32>(&d, "attempts").is_some_and(|n| n >= 1), "{d:?}");
        let id: u64 = get(&d, "id").expect("id");
        // The subscriber gets blocked events only.
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_millis(300), blocked.next()).await
        {
            let (kind, _): (String, Dict) = msg.body().deserialize().expect("sa{sv}");
            assert_eq!(kind, "blocked", "a match rule on arg0 filters on the bus");
        }
        let snap = snapshot(&conn).await.expect("Snapshot");
        let entry = snap
            .iter()
            .find(|d| get::<u64>(d, "id") == Some(id))
            .expect("in Snapshot");
        assert_eq!(get::<String>(entry, "state").as_deref(), Some("blocked"));
    });
}
