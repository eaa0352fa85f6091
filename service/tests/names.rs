//! `remote_name` from DNS answers on the wire: in a network namespace this
//! test makes, a DNS responder on 127.0.0.1:53 answers A, AAAA and a CNAME
//! chain with chosen TTLs; named children there resolve with plain UDP and
//! TCP queries (their own stub resolver, as programs that bypass the
//! system's do) and connect to the addresses answered, which the
//! namespace's loopback device holds. Needs root.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::Service;
use leco_testkit::dns::{self, Qtype, Rec, Responder, Sink, Via};
use leco_testkit::netns::{self, Netns};
use leco_testkit::{pin_to_cpu, require_root, spawn_named, usable_cpus, ScratchCgroup};
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

/// One test at a time: each pins tasks to CPUs (one crowds CPU 0 on
/// purpose, another runs a real-time responder on CPU 1), and together on
/// two CPUs they starved each other's service into losing records.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let _alone = one_at_a_time();
    // On one CPU the service starts reading while the children already
    // resolve and connect: the flows its first look at the kernel's table
    // finds are told after the answers the ring holds, not before them.
    pin_to_cpu(0).expect("pin to CPU 0");
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
    let _alone = one_at_a_time();
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

/// On loopback a DNS server on another CPU can answer before the query's
/// send call has returned, so before the send's own hook has made the
/// flow: the answer's arrival makes it, still the asker's outgoing flow,
/// and the answer is read. Without that, such a query showed as an
/// incoming flow of nobody and its connection went unnamed (some 1 in
/// 300 queries here).
#[test]
fn answers_faster_than_their_querys_send_call_are_read() {
    const TEST: &str = "answers_faster_than_their_querys_send_call_are_read";
    if !require_root(TEST) {
        return;
    }
    let _alone = one_at_a_time();
    if usable_cpus() < 2 {
        assert!(
            std::env::var_os("CI").is_none(),
            "{TEST} needs two CPUs, and CI must run every test"
        );
        eprintln!("\n*** SKIPPED {TEST}: needs two CPUs (the asker and the server) ***\n");
        return;
    }
    const N: usize = 2_000;
    let ns = Netns::create("ltnames-fast");
    // Every address of 10.99/16 is the namespace's own (no address each).
    ip(&[
        "-n",
        ns.name(),
        "route",
        "add",
        "local",
        "10.99.0.0/16",
        "dev",
        "lo",
    ]);
    let addr = |i: usize| Ipv4Addr::new(10, 99, (i >> 8) as u8, i as u8);
    let zone = (0..N)
        .map(|i| (format!("q{i}.leco.test"), Rec::A(addr(i), 300)))
        .collect();
    let _dns = Responder::start_pinned(ns.name(), zone, 1);
    let sink = Sink::start(ns.name());
    let port = sink.port();
    // A real-time server on one CPU and the asker on the other leave the
    // service little time to read: a ring that holds the whole run (some
    // 12,000 records; CI lost 7,461 of them with the default 256 KiB) keeps
    // this a test of the race, not of a starved reader.
    let mut svc = Service::start(&["--standalone", "--json", "--ring-buffer-kib", "32768"]);
    let n = ns.name().to_owned();
    let mut child = spawn_named("leco-t-fast", move |p| {
        if pin_to_cpu(0).is_err() || netns::join(&n).is_err() {
            return 1;
        }
        let mut answered = Vec::with_capacity(N);
        for i in 0..N {
            match dns::resolve(
                SocketAddr::from(SERVER),
                &format!("q{i}.leco.test"),
                Qtype::A,
                Via::Udp,
            ) {
                Ok(a) if a.len() == 1 => answered.push(a[0]),
                _ => return 2,
            }
            // Paced: the records of a burst fit the kernel's ring.
            if i % 8 == 7 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for (i, a) in answered.into_iter().enumerate() {
            if TcpStream::connect_timeout(&SocketAddr::new(a, port), Duration::from_secs(5))
                .is_err()
            {
                return 3;
            }
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        p.send(N as u64);
        0
    });
    assert_eq!(child.recv(), N as u64, "the child resolved and connected");
    let pid = child.pid();
    let (mut queries, mut raced, mut inbound) = (HashMap::new(), 0, Vec::new());
    let mut names: HashMap<String, Value> = HashMap::new();
    let done = svc.follow_json(Duration::from_secs(30), |v| {
        if v["pid"] != pid {
            return false;
        }
        match (v["proto"].as_str(), v["remote_port"].as_u64()) {
            (Some("udp"), Some(53)) => {
                if v["direction"] != "out" {
                    inbound.push(v.clone());
                }
                if v["kind"] == "new" && v["tx_bytes"] == 0 {
                    raced += 1;
                }
                queries.insert(v["id"].clone(), ());
            }
            (Some("tcp"), Some(p)) if p == u64::from(port) && v["kind"] == "new" => {
                let remote = v["remote_addr"].as_str().unwrap_or("").to_owned();
                names.insert(remote, v["remote_name"].clone());
            }
            _ => {}
        }
        names.len() == N
    });
    assert_eq!(child.wait(), 0);
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
    eprintln!("{TEST}: {raced} of {N} answers came before their query's send returned");
    let counters = err
        .iter()
        .find(|l| l.contains("final counters"))
        .expect("counters");
    assert!(
        counters.contains("ringbuf_drops=0"),
        "records were lost: {counters}"
    );
    assert!(done, "{} of {N} connections seen", names.len());
    assert!(
        inbound.is_empty(),
        "queries shown as incoming: {inbound:#?}"
    );
    assert_eq!(queries.len(), N, "one flow per query");
    let unnamed: Vec<_> = (0..N)
        .filter(|&i| names[&addr(i).to_string()] != format!("q{i}.leco.test").as_str())
        .collect();
    assert!(
        unnamed.is_empty(),
        "{} connections unnamed, e.g. {:?}",
        unnamed.len(),
        &unnamed[..unnamed.len().min(5)]
    );
    drop(sink);
}
