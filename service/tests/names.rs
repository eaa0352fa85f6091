//! `remote_name` from DNS answers on the wire: in a network namespace this
//! test makes, a DNS responder on 127.0.0.1:53 answers A, AAAA and a CNAME
//! chain with chosen TTLs; named children there resolve with plain UDP and
//! TCP queries (their own stub resolver, as programs that bypass the
//! system's do) and connect to the addresses answered, which the
//! namespace's loopback device holds. Needs root.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::Service;
use leco_testkit::dns::{self, Qtype, Rec, Responder, Sink, Via};
use leco_testkit::netns::{self, Netns};
use leco_testkit::{require_root, spawn_named, ScratchCgroup};
use serde_json::Value;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn zone() -> dns::Zone {
    let a = |s: &str, ttl| Rec::A(s.parse().expect("IPv4"), ttl);
    vec![
        // A 0-TTL answer still names the connection made right after it.
        ("web.leco.test".into(), a("198.51.100.7", 0)),
        (
            "v6.leco.test".into(),
            Rec::Aaaa("2001:db8::7".parse().expect("IPv6"), 30),
        ),
        (
            "www.leco.test".into(),
            Rec::Cname("edge.cdn.leco.test".into(), 3600),
        ),
        ("edge.cdn.leco.test".into(), a("198.51.100.8", 20)),
        // What a blocklist resolver answers: names nothing.
        ("block.leco.test".into(), a("127.0.0.1", 300)),
        // One address, two names, asked for in two cgroups.
        ("a.leco.test".into(), a("198.51.100.10", 300)),
        ("b.leco.test".into(), a("198.51.100.10", 300)),
        // Answered only after the connection to it was made.
        ("late.leco.test".into(), a("198.51.100.11", 300)),
    ]
}

const SERVER: ([u8; 4], u16) = ([127, 0, 0, 1], 53);

/// Resolves `name` and connects to its first address on `port`: the
/// stream, or an exit code saying which step failed.
fn resolve_and_connect(name: &str, qtype: Qtype, via: Via, port: u16) -> Result<TcpStream, i32> {
    let addrs = dns::resolve(SocketAddr::from(SERVER), name, qtype, via).map_err(|_| 10)?;
    let addr = *addrs.first().ok_or(11)?;
    TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(5)).map_err(|_| 12)
}

#[test]
fn dns_answers_name_the_connections_made_to_them() {
    if !require_root("dns_answers_name_the_connections_made_to_them") {
        return;
    }
    let ns = Netns::create("ltnames");
    for addr in [
        "198.51.100.7/32",
        "198.51.100.8/32",
        "198.51.100.10/32",
        "198.51.100.11/32",
    ] {
        ip(&["-n", ns.name(), "addr", "add", addr, "dev", "lo"]);
    }
    ip(&[
        "-n",
        ns.name(),
        "addr",
        "add",
        "2001:db8::7/128",
        "dev",
        "lo",
        "nodad",
    ]);
    let _dns = Responder::start(ns.name(), zone());
    let sink = Sink::start(ns.name());
    let port = sink.port();
    let root = leco_bpf::cgroup2_root().expect("cgroup v2 mounted");
    let scope = |x: &str| {
        format!(
            "leco-test.slice/leco-names-{x}-{}.scope",
            std::process::id()
        )
    };
    let (cg_a, cg_b) = (
        ScratchCgroup::create(&root, &scope("a")).expect("cgroup"),
        ScratchCgroup::create(&root, &scope("b")).expect("cgroup"),
    );
    let mut svc = Service::start(&["--standalone", "--json"]);

    let name = ns.name().to_owned();
    let n = name.clone();
    let mut one = spawn_named("leco-t-names", move |p| {
        if netns::join(&n).is_err() {
            return 1;
        }
        let mut held = Vec::new();
        for (name, qtype, via) in [
            ("web.leco.test", Qtype::A, Via::Udp),
            ("v6.leco.test", Qtype::Aaaa, Via::Tcp),
            ("WWW.leco.test", Qtype::A, Via::Udp),
            ("block.leco.test", Qtype::A, Via::Tcp),
        ] {
            match resolve_and_connect(name, qtype, via, port) {
                Ok(s) => held.push(s),
                Err(code) => return code,
            }
        }
        p.send(held.len() as u64);
        // Alive until told: its connections are read while it runs.
        std::thread::sleep(Duration::from_millis(500));
        0
    });
    // Two programs in two cgroups get two names for one address; both
    // answers come before either connects.
    let in_cgroup = |label: &'static str, cg: &ScratchCgroup, asked: &'static str| {
        let (go, go_child) = UnixStream::pair().expect("socketpair");
        let n = name.clone();
        let child = spawn_named(label, move |p| {
            let mut go = go_child;
            if cg.enter().is_err() || netns::join(&n).is_err() {
                return 1;
            }
            let Ok(addrs) = dns::resolve(SocketAddr::from(SERVER), asked, Qtype::A, Via::Udp)
            else {
                return 2;
            };
            p.send(1);
            let mut b = [0u8; 1];
            if go.read_exact(&mut b).is_err() {
                return 3;
            }
            let Some(addr) = addrs.first() else {
                return 4;
            };
            match TcpStream::connect_timeout(&SocketAddr::new(*addr, port), Duration::from_secs(5))
            {
                Ok(_s) => {
                    std::thread::sleep(Duration::from_millis(500));
                    0
                }
                Err(_) => 5,
            }
        });
        (child, go)
    };
    let (mut a, mut go_a) = in_cgroup("leco-t-names-a", &cg_a, "a.leco.test");
    let (mut b, mut go_b) = in_cgroup("leco-t-names-b", &cg_b, "b.leco.test");
    assert_eq!(one.recv(), 4, "the first child made its four connections");
    assert_eq!((a.recv(), b.recv()), (1, 1), "both cgroups resolved");
    go_a.write_all(b"g").expect("go a");
    go_b.write_all(b"g").expect("go b");
    let pids = HashMap::from([
        (one.pid(), "leco-t-names"),
        (a.pid(), "leco-t-names-a"),
        (b.pid(), "leco-t-names-b"),
    ]);
    let mut got: HashMap<(String, String), Value> = HashMap::new();
    let done = svc.follow_json(Duration::from_secs(20), |v| {
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        if let (Some(who), "tcp", "out", true) = (
            pids.get(&pid),
            v["proto"].as_str().unwrap_or(""),
            v["direction"].as_str().unwrap_or(""),
            v["remote_port"] == port,
        ) {
            let remote = v["remote_addr"].as_str().unwrap_or("").to_owned();
            got.entry(((*who).to_owned(), remote))
                .or_insert_with(|| v.clone());
        }
        got.len() == 6
    });
    assert_eq!((one.wait(), a.wait(), b.wait()), (0, 0, 0));
    assert!(done, "not every connection was seen: {got:#?}");
    let name_of = |who: &str, remote: &str| -> (Value, Value) {
        let v = &got[&(who.to_owned(), remote.to_owned())];
        (v["remote_name"].clone(), v["name_source"].clone())
    };
    let named = |n: &str| (Value::from(n), Value::from("dns"));
    assert_eq!(
        name_of("leco-t-names", "198.51.100.7"),
        named("web.leco.test")
    );
    assert_eq!(
        name_of("leco-t-names", "2001:db8::7"),
        named("v6.leco.test")
    );
    // The CNAME chain leads back to the name asked for (lower case).
    assert_eq!(
        name_of("leco-t-names", "198.51.100.8"),
        named("www.leco.test")
    );
    // A loopback answer names nothing: the connection is just loopback.
    assert_eq!(
        name_of("leco-t-names", "127.0.0.1"),
        (Value::Null, Value::Null)
    );
    assert_eq!(
        name_of("leco-t-names-a", "198.51.100.10"),
        named("a.leco.test")
    );
    assert_eq!(
        name_of("leco-t-names-b", "198.51.100.10"),
        named("b.leco.test")
    );
    drop(sink);
}

/// A connection made just before its name's answer was read (a program
/// that connects to a cached address while its resolver refreshes it)
/// gets the name in an update.
#[test]
fn an_answer_read_just_after_the_connect_names_it_too() {
    if !require_root("an_answer_read_just_after_the_connect_names_it_too") {
        return;
    }
    let ns = Netns::create("ltnames-late");
    ip(&[
        "-n",
        ns.name(),
        "addr",
        "add",
        "198.51.100.11/32",
        "dev",
        "lo",
    ]);
    let _dns = Responder::start(ns.name(), zone());
    let sink = Sink::start(ns.name());
    let port = sink.port();
    let mut svc = Service::start(&["--standalone", "--json"]);
    let n = ns.name().to_owned();
    let child = spawn_named("leco-t-late", move |_| {
        if netns::join(&n).is_err() {
            return 1;
        }
        let to = SocketAddr::from(([198, 51, 100, 11], port));
        let Ok(_s) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
            return 2;
        };
        if dns::resolve(
            SocketAddr::from(SERVER),
            "late.leco.test",
            Qtype::A,
            Via::Udp,
        )
        .is_err()
        {
            return 3;
        }
        std::thread::sleep(Duration::from_millis(300));
        0
    });
    let pid = child.pid();
    let mut seen = Vec::new();
    let named = svc.follow_json(Duration::from_secs(10), |v| {
        let mine = v["pid"] == pid && v["remote_port"] == port && v["proto"] == "tcp";
        if mine {
            seen.push(v.clone());
        }
        mine && v["remote_name"] == "late.leco.test"
    });
    assert_eq!(child.wait(), 0);
    assert!(named, "no event named the connection: {seen:#?}");
    assert_eq!(
        seen.first().map(|v| v["kind"].clone()),
        Some(Value::from("new"))
    );
    assert_eq!(
        seen.first().map(|v| v["remote_name"].clone()),
        Some(Value::Null)
    );
    drop(sink);
}
