//! Blocked and failed, told apart: attempts this machine's policy stopped
//! (nftables rules in network namespaces the tests make, cgroup programs
//! that deny a scratch cgroup) are `blocked` with their owner, reason and
//! attempts; attempts the other side stopped (a peer namespace that drops,
//! rejects or has nothing listening) are `failed` with theirs. Real kernel,
//! real nftables, `leco-service --standalone --json`. Needs root.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::Service;
use leco_testkit::attempts::{self, Attempt, Place};
use leco_testkit::cgroup_deny::{CgroupDenial, Deny};
use leco_testkit::netns::{self, Netns};
use leco_testkit::{require_root, ScratchCgroup};
use serde_json::Value;

/// How long a connect nobody answers waits before its program gives up.
const GIVE_UP: Duration = Duration::from_millis(1200);

fn start() -> Service {
    Service::start(&["--standalone", "--json", "--udp-idle", "2s"])
}

/// Every event of the processes `pids`, collected until `done` says the
/// events so far are enough (or `within` passes), then for `settle` more
/// (events that must not come would come then).
fn events_of(
    svc: &mut Service,
    pids: &[u32],
    within: Duration,
    settle: Duration,
    mut done: impl FnMut(&BTreeMap<u32, Vec<Value>>) -> bool,
) -> BTreeMap<u32, Vec<Value>> {
    let mut by_pid: BTreeMap<u32, Vec<Value>> = pids.iter().map(|&p| (p, Vec::new())).collect();
    let keep = |v: &Value, by_pid: &mut BTreeMap<u32, Vec<Value>>| {
        if let Some(list) = v["pid"].as_u64().and_then(|p| by_pid.get_mut(&(p as u32))) {
            list.push(v.clone());
        }
    };
    let finished = svc.follow_json(within, |v| {
        keep(v, &mut by_pid);
        done(&by_pid)
    });
    assert!(
        finished,
        "the events expected did not all come: {by_pid:#?}"
    );
    svc.follow_json(settle, |v| {
        keep(v, &mut by_pid);
        false
    });
    by_pid
}

/// The events of `a` to remote port `port`.
fn to_port<'e>(events: &'e BTreeMap<u32, Vec<Value>>, a: &Attempt, port: u16) -> Vec<&'e Value> {
    events[&a.pid]
        .iter()
        .filter(|v| v["remote_port"] == port)
        .collect()
}

/// `a`'s attempt to `port` was blocked, by `reason`, named as its own,
/// and never reported as anything else.
fn assert_blocked(events: &BTreeMap<u32, Vec<Value>>, a: &Attempt, port: u16, reason: &str) {
    let evs = to_port(events, a, port);
    assert!(
        !evs.is_empty(),
        "{}: nothing for port {port}: {events:#?}",
        a.comm
    );
    for v in &evs {
        assert_eq!(v["kind"], "blocked", "{}: port {port}: {evs:#?}", a.comm);
        assert_eq!(v["reason"], reason, "{v}");
        assert_eq!(v["comm"], a.comm.as_str(), "{v}");
        assert_eq!(v["direction"], "out", "{v}");
        assert_eq!(v["state"], "blocked", "{v}");
        assert!(v["attempts"].as_u64().unwrap_or(0) >= 1, "{v}");
    }
}

fn blocked_to(events: &BTreeMap<u32, Vec<Value>>, a: &Attempt, port: u16) -> bool {
    events.get(&a.pid).is_some_and(|l| {
        l.iter()
            .any(|v| v["kind"] == "blocked" && v["remote_port"] == port)
    })
}

#[test]
fn outbound_attempts_the_firewall_stops_are_blocked_with_their_owner() {
    if !require_root("outbound_attempts_the_firewall_stops_are_blocked_with_their_owner") {
        return;
    }
    let ns = Netns::create("lt-blk-out");
    ns.nft(
        "table inet leco_test {
           chain out {
             type filter hook output priority 0;
             tcp dport 4444 drop
             tcp dport 4446 reject with tcp reset
             tcp dport 4447 reject with icmpx type admin-prohibited
             udp dport 4445 drop
           }
         }",
    );
    let mut svc = start();
    let at = Place {
        netns: Some(&ns),
        cgroup: None,
    };
    let mut tcp = Vec::new();
    for (v6, host) in [(false, "127.0.0.1"), (true, "[::1]")] {
        for (port, seen) in [(4444, 0), (4446, libc::ECONNREFUSED), (4447, -1)] {
            let to: SocketAddr = format!("{host}:{port}").parse().expect("address");
            let comm = format!("lt-blk-{port}{}", if v6 { "-6" } else { "" });
            let a = attempts::tcp_connect(&comm, at, to, GIVE_UP);
            // What the program saw: nothing (a drop), the reset the rule
            // sent, an ICMP error (EHOSTUNREACH, or EACCES for ICMPv6).
            match seen {
                -1 => assert!(
                    [libc::EHOSTUNREACH, libc::EACCES].contains(&a.errno),
                    "{comm}: {a:?}"
                ),
                e => assert_eq!(a.errno, e, "{comm}: {a:?}"),
            }
            tcp.push((a, port));
        }
    }
    let udp = attempts::udp_sends(
        "lt-blk-udp",
        at,
        "127.0.0.1:4445".parse().expect("address"),
        5,
        Duration::from_millis(30),
    );
    assert_eq!((udp.failed, udp.errno), (5, libc::EPERM), "{udp:?}");
    let udp6 = attempts::udp_sends(
        "lt-blk-udp6",
        at,
        "[::1]:4445".parse().expect("address"),
        2,
        Duration::from_millis(30),
    );
    assert_eq!((udp6.failed, udp6.errno), (2, libc::EPERM), "{udp6:?}");

    let pids: Vec<u32> = tcp
        .iter()
        .map(|(a, _)| a.pid)
        .chain([udp.pid, udp6.pid])
        .collect();
    let events = events_of(
        &mut svc,
        &pids,
        Duration::from_secs(10),
        Duration::from_millis(2500),
        |e| {
            tcp.iter().all(|(a, port)| blocked_to(e, a, *port))
                && e[&udp.pid]
                    .iter()
                    .any(|v| v["kind"] == "blocked" && v["attempts"] == 5)
                && e[&udp6.pid]
                    .iter()
                    .any(|v| v["kind"] == "blocked" && v["attempts"] == 2)
        },
    );
    for (a, port) in &tcp {
        assert_blocked(&events, a, *port, "firewall");
    }
    assert_blocked(&events, &udp, 4445, "firewall");
    assert_blocked(&events, &udp6, 4445, "firewall");
    assert_eq!(to_port(&events, &udp6, 4445)[0]["family"], 6);
    let last = to_port(&events, &udp, 4445);
    assert!(
        last.len() <= 3,
        "five sends in 150 ms are told at most a few times: {last:#?}"
    );
    // The blocked connect that was dropped retried its SYN: each counted.
    let dropped = to_port(&events, &tcp[0].0, 4444);
    assert!(
        dropped.iter().any(|v| v["attempts"].as_u64() >= Some(2)),
        "a SYN retried in {GIVE_UP:?} is a second attempt: {dropped:#?}"
    );
}

#[test]
fn inbound_attempts_the_firewall_stops_are_counted_not_listed() {
    if !require_root("inbound_attempts_the_firewall_stops_are_counted_not_listed") {
        return;
    }
    let srv = Netns::create("lt-blk-srv");
    let cli = Netns::create("lt-blk-cli");
    netns::veth("ltblk", &srv, &["10.78.0.1/24"], &cli, &["10.78.0.2/24"]);
    srv.nft(
        "table inet leco_test {
           chain in {
             type filter hook input priority 0;
             tcp dport 2222 counter drop
             udp dport 5354 counter drop
           }
         }",
    );
    let mut svc = start();
    // A service listens behind the blocked port: the attempts are aimed at
    // it, so they are its.
    let listener = leco_testkit::spawn_named("lt-blk-listen", |p| {
        if srv.enter().is_err() {
            return 10;
        }
        let Ok(l) = std::net::TcpListener::bind("0.0.0.0:2222") else {
            return 12;
        };
        p.send(1);
        std::thread::sleep(Duration::from_secs(60));
        drop(l);
        0
    });
    let mut listener = listener;
    assert_eq!(
        listener.try_recv(),
        Some(1),
        "the listener could not listen"
    );
    let at = Place {
        netns: Some(&cli),
        cgroup: None,
    };
    // One datagram the server answers (port unreachable) first: the
    // client's ARP is resolved before the flood, so none waits for it.
    attempts::udp_sends(
        "lt-blk-arp",
        at,
        "10.78.0.1:9".parse().expect("address"),
        1,
        Duration::from_millis(200),
    );
    let from: SocketAddrV4 = "10.78.0.2:40000".parse().expect("address");
    let syns = attempts::syn_flood(
        "lt-blk-syns",
        at,
        from,
        "10.78.0.1:2222".parse().expect("address"),
        10_000,
    );
    assert_eq!(syns.failed, 10_000);
    let udp = attempts::udp_sends(
        "lt-blk-dgrams",
        at,
        "10.78.0.1:5354".parse().expect("address"),
        1_000,
        Duration::ZERO,
    );
    assert_eq!(udp.failed, 0, "the drop is the server's: sends succeed");
    let dropped = |port: &str| {
        srv.packets_counted(&format!("dport {port}"))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (syns_dropped, dgrams_dropped) = (dropped("2222"), dropped("5354"));
    assert!(
        syns_dropped >= 9_000,
        "the flood reached the server's input: {syns_dropped}"
    );

    // Inbound aggregates: the listener's for TCP, nobody's for UDP.
    let mut tcp: Vec<Value> = Vec::new();
    let mut dgrams: Vec<Value> = Vec::new();
    let done = svc.follow_json(Duration::from_secs(10), |v| {
        if v["kind"] != "blocked" || v["direction"] != "in" || v["remote_addr"] != "10.78.0.2" {
            return false;
        }
        match (v["proto"].as_str(), v["local_port"].as_u64()) {
            (Some("tcp"), Some(2222)) => tcp.push(v.clone()),
            (Some("udp"), Some(5354)) => dgrams.push(v.clone()),
            _ => {}
        }
        let last = |l: &[Value]| l.last().and_then(|v| v["attempts"].as_u64());
        last(&tcp) == Some(syns_dropped) && last(&dgrams) == Some(dgrams_dropped)
    });
    assert!(
        done,
        "every dropped packet counted ({syns_dropped} SYNs, {dgrams_dropped} datagrams): \
         tcp {tcp:#?} udp {dgrams:#?}"
    );
    for v in &tcp {
        assert_eq!(v["pid"], listener.pid(), "{v}");
        assert_eq!(v["comm"], "lt-blk-listen", "{v}");
        assert_eq!(v["reason"], "firewall", "{v}");
        assert_eq!(v["remote_port"], 40000, "{v}");
    }
    for v in &dgrams {
        assert!(
            v.get("pid").is_none() && v.get("uid").is_none(),
            "nobody's: {v}"
        );
    }
    assert!(
        tcp.len() <= 8 && dgrams.len() <= 8,
        "a flood makes a handful of events, not one per packet: {} and {}",
        tcp.len(),
        dgrams.len()
    );
}

#[test]
fn cgroup_programs_that_deny_are_cgroup_policy() {
    if !require_root("cgroup_programs_that_deny_are_cgroup_policy") {
        return;
    }
    let root = leco_bpf::cgroup2_root().expect("a cgroup v2 hierarchy");
    let mut svc = start();
    let mut all = Vec::new();
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for (deny, tag) in [
        (Deny::Egress, "egress"),
        (Deny::Connect4, "connect"),
        (Deny::Sendmsg4, "sendmsg"),
    ] {
        let cg = ScratchCgroup::create(&root, &format!("leco-test.slice/blk-{tag}.scope"))
            .expect("a scratch cgroup");
        let _denial = CgroupDenial::attach(cg.path(), deny).expect("attaching the denial");
        let at = Place {
            netns: None,
            cgroup: Some(&cg),
        };
        let port = leco_testkit::closed_port(false);
        if deny != Deny::Sendmsg4 {
            let to: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let a = attempts::tcp_connect(&format!("lt-blk-t-{tag}"), at, to, GIVE_UP);
            let want = if deny == Deny::Connect4 {
                libc::EPERM
            } else {
                0
            };
            assert_eq!(a.errno, want, "{a:?}");
            all.push(a.pid);
            tcp.push((a, port));
        }
        if deny != Deny::Connect4 {
            let to: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let a = attempts::udp_sends(
                &format!("lt-blk-u-{tag}"),
                at,
                to,
                3,
                Duration::from_millis(20),
            );
            assert_eq!((a.failed, a.errno), (3, libc::EPERM), "{a:?}");
            all.push(a.pid);
            udp.push((a, port));
        }
    }
    let events = events_of(
        &mut svc,
        &all,
        Duration::from_secs(10),
        Duration::from_millis(1500),
        |e| {
            tcp.iter().all(|(a, p)| blocked_to(e, a, *p))
                && udp.iter().all(|(a, p)| {
                    e[&a.pid]
                        .iter()
                        .any(|v| v["remote_port"] == *p && v["attempts"] == 3)
                })
        },
    );
    for (a, port) in tcp.iter().chain(&udp) {
        assert_blocked(&events, a, *port, "cgroup-policy");
    }
}

#[test]
fn attempts_the_other_side_stops_are_failed_with_why() {
    if !require_root("attempts_the_other_side_stops_are_failed_with_why") {
        return;
    }
    let cli = Netns::create("lt-fail-cli");
    let peer = Netns::create("lt-fail-peer");
    netns::veth(
        "ltfail",
        &cli,
        &["10.79.0.1/24", "fd79::1/64"],
        &peer,
        &["10.79.0.2/24", "fd79::2/64"],
    );
    peer.nft(
        "table inet leco_test {
           chain in {
             type filter hook input priority 0;
             tcp dport 7001 drop
             meta nfproto ipv4 tcp dport 7002 reject with icmp type admin-prohibited
             meta nfproto ipv6 tcp dport 7002 reject with icmpv6 type admin-prohibited
           }
         }",
    );
    let mut svc = start();
    let at = Place {
        netns: Some(&cli),
        cgroup: None,
    };
    let cases = [
        ("10.79.0.2:7001", 0, "no-reply", "no reply"),
        (
            "10.79.0.2:7002",
            libc::EHOSTUNREACH,
            "unreachable",
            "host unreachable",
        ),
        ("[fd79::2]:7002", libc::EACCES, "prohibited", "prohibited"),
        (
            "10.79.0.2:7003",
            libc::ECONNREFUSED,
            "refused",
            "connection refused",
        ),
    ];
    let mut made = Vec::new();
    for (i, (to, errno, _, _)) in cases.iter().enumerate() {
        let a = attempts::tcp_connect(
            &format!("lt-fail-{i}"),
            at,
            to.parse().expect("address"),
            GIVE_UP,
        );
        assert_eq!(a.errno, *errno, "{to}: {a:?}");
        made.push(a);
    }
    let pids: Vec<u32> = made.iter().map(|a| a.pid).collect();
    let events = events_of(
        &mut svc,
        &pids,
        Duration::from_secs(10),
        Duration::from_millis(500),
        |e| {
            made.iter()
                .all(|a| e[&a.pid].iter().any(|v| v["kind"] == "failed"))
        },
    );
    for (a, (to, _, reason, error)) in made.iter().zip(cases) {
        let evs = &events[&a.pid];
        assert!(
            evs.iter().all(|v| v["kind"] == "failed"),
            "{to}: a connection that never opened is neither new nor closed: {evs:#?}"
        );
        let v = evs.last().expect("an event");
        assert_eq!(v["reason"], reason, "{to}: {v}");
        assert_eq!(v["error"], error, "{to}: {v}");
        assert_eq!(v["comm"], a.comm.as_str(), "{to}: {v}");
        assert!(v.get("attempts").is_none(), "{to}: not blocked: {v}");
    }
}

/// A cgroup ingress program that cuts a service off (its listener and its
/// UDP socket in the cgroup): what reaches them is an inbound blocked
/// attempt by cgroup policy, the listener's own, and a denied datagram is
/// not counted as received.
#[test]
fn cgroup_ingress_denials_are_inbound_blocked_attempts() {
    if !require_root("cgroup_ingress_denials_are_inbound_blocked_attempts") {
        return;
    }
    let root = leco_bpf::cgroup2_root().expect("a cgroup v2 hierarchy");
    let cg = ScratchCgroup::create(&root, "leco-test.slice/blk-ingress.scope")
        .expect("a scratch cgroup");
    let mut svc = start();
    // The service: a listener and a UDP socket, in the cgroup.
    let mut service = leco_testkit::spawn_named("lt-blk-cut", |p| {
        if cg.enter().is_err() {
            return 11;
        }
        let (Ok(l), Ok(u)) = (
            std::net::TcpListener::bind("127.0.0.1:0"),
            std::net::UdpSocket::bind("127.0.0.1:0"),
        ) else {
            return 12;
        };
        p.send(u64::from(l.local_addr().map_or(0, |a| a.port())));
        p.send(u64::from(u.local_addr().map_or(0, |a| a.port())));
        std::thread::sleep(Duration::from_secs(60));
        drop((l, u));
        0
    });
    let tcp_port = service.try_recv().expect("the listener's port") as u16;
    let udp_port = service.try_recv().expect("the UDP port") as u16;
    let _denial = CgroupDenial::attach(cg.path(), Deny::Ingress).expect("attaching the denial");
    let here = Place::default();
    let syn = attempts::tcp_connect(
        "lt-blk-knock",
        here,
        format!("127.0.0.1:{tcp_port}").parse().expect("address"),
        GIVE_UP,
    );
    assert_eq!(syn.errno, 0, "nothing answers a denied SYN: {syn:?}");
    let dgrams = attempts::udp_sends(
        "lt-blk-knock-u",
        here,
        format!("127.0.0.1:{udp_port}").parse().expect("address"),
        5,
        Duration::from_millis(20),
    );
    assert_eq!(dgrams.failed, 0, "the denial is the receiver's: {dgrams:?}");

    let (mut tcp, mut udp, mut received) = (Vec::new(), Vec::new(), Vec::new());
    let done = svc.follow_json(Duration::from_secs(10), |v| {
        let port = v["local_port"].as_u64();
        if v["direction"] == "in" && v["kind"] == "blocked" {
            match (v["proto"].as_str(), port) {
                (Some("tcp"), Some(p)) if p == u64::from(tcp_port) => tcp.push(v.clone()),
                (Some("udp"), Some(p)) if p == u64::from(udp_port) => udp.push(v.clone()),
                _ => {}
            }
        } else if v["proto"] == "udp" && port == Some(u64::from(udp_port)) {
            received.push(v.clone());
        }
        !tcp.is_empty() && udp.last().is_some_and(|v| v["attempts"] == 5)
    });
    assert!(done, "tcp {tcp:#?} udp {udp:#?}");
    for v in tcp.iter().chain(&udp) {
        assert_eq!(v["reason"], "cgroup-policy", "{v}");
        assert_eq!(v["remote_addr"], "127.0.0.1", "{v}");
    }
    assert_eq!(tcp[0]["pid"], service.pid(), "the listener's: {tcp:#?}");
    assert_eq!(tcp[0]["comm"], "lt-blk-cut", "{tcp:#?}");
    assert!(
        received
            .iter()
            .all(|v| v["rx_bytes"].as_u64().unwrap_or(0) == 0),
        "denied datagrams are not received: {received:#?}"
    );
}
