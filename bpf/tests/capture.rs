//! The real programs in the real kernel: named child processes make loopback
//! traffic and the events must name them, count their bytes and see the end.
//! Needs root (CI runs as root; elsewhere these skip, loudly).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

mod common;

use common::{kinds, Probe};
use leco_bpf::{Capture, Flow, FlowDirection, FlowProto, Options, RecordKind};
use leco_testkit::{closed_port, require_root, spawn_named, ScratchCgroup};

fn last(events: &[(RecordKind, Flow)], kind: RecordKind) -> Option<&Flow> {
    events
        .iter()
        .rev()
        .find(|(k, _)| *k == kind)
        .map(|(_, f)| f)
}

fn ended(events: &[(RecordKind, Flow)]) -> bool {
    events
        .iter()
        .any(|(k, _)| matches!(k, RecordKind::Closed | RecordKind::Failed))
}

fn comm(f: &Flow) -> String {
    String::from_utf8_lossy(&f.owner.comm).into_owned()
}

const SENT: usize = 100_000;
const ANSWERED: usize = 40_000;

/// A server child that accepts one connection on `listener`, reads SENT
/// bytes, answers ANSWERED bytes and closes.
fn serve_once(listener: &TcpListener) -> i32 {
    let Ok((mut s, _)) = listener.accept() else {
        return 2;
    };
    let mut buf = vec![0u8; SENT];
    if s.read_exact(&mut buf).is_err() || s.write_all(&vec![7u8; ANSWERED]).is_err() {
        return 3;
    }
    0
}

fn connect_and_talk(to: SocketAddr) -> i32 {
    let Ok(mut s) = TcpStream::connect(to) else {
        return 2;
    };
    // 1 KiB writes, as an application would.
    for chunk in vec![1u8; SENT].chunks(1024) {
        if s.write_all(chunk).is_err() {
            return 3;
        }
    }
    let mut buf = vec![0u8; ANSWERED];
    if s.read_exact(&mut buf).is_err() {
        return 4;
    }
    0
}

fn tcp_round_trip(bind: &str) {
    let mut probe = Probe::load();
    let mut server = spawn_named("leco-t-srv", |p| {
        let Ok(l) = TcpListener::bind(bind) else {
            return 1;
        };
        p.send(u64::from(l.local_addr().map(|a| a.port()).unwrap_or(0)));
        serve_once(&l)
    });
    let port = server.recv() as u16;
    let to = SocketAddr::new(bind.parse::<SocketAddr>().expect("addr").ip(), port);
    let client = spawn_named("leco-t-cli", move |_| connect_and_talk(to));
    let (cpid, spid) = (client.pid(), server.pid());
    assert_eq!(client.wait(), 0, "client");
    assert_eq!(server.wait(), 0, "server");

    let out = probe.until(
        |f| f.proto == FlowProto::Tcp && f.remote_port == port,
        ended,
    );
    assert_eq!(kinds(&out).first(), Some(&RecordKind::New), "{out:#?}");
    let fin = last(&out, RecordKind::Closed).expect("client flow closed");
    assert_eq!((fin.owner.pid, comm(fin).as_str()), (cpid, "leco-t-cli"));
    assert_eq!(fin.direction, FlowDirection::Out);
    assert_eq!((fin.tx_bytes, fin.rx_bytes), (SENT as u64, ANSWERED as u64));
    assert_eq!(fin.remote, to.ip());
    assert_ne!(fin.local_port, 0, "local port learnt once established");
    assert!(fin.established && fin.error.is_none());

    let inb = probe.until(|f| f.proto == FlowProto::Tcp && f.local_port == port, ended);
    let new = last(&inb, RecordKind::New).expect("accepted flow announced");
    assert_eq!(
        (new.owner.pid, comm(new).as_str()),
        (spid, "leco-t-srv"),
        "owned by the acceptor"
    );
    let fin = last(&inb, RecordKind::Closed).expect("server flow closed");
    assert_eq!(fin.direction, FlowDirection::In);
    assert_eq!((fin.rx_bytes, fin.tx_bytes), (SENT as u64, ANSWERED as u64));
    assert_eq!(
        fin.remote_port,
        last(&out, RecordKind::Closed)
            .map(|f| f.local_port)
            .unwrap_or(0)
    );
}

#[test]
fn tcp_connect_and_accept_are_owned_and_counted_ipv4() {
    if require_root("tcp_connect_and_accept_are_owned_and_counted_ipv4") {
        tcp_round_trip("127.0.0.1:0");
    }
}

#[test]
fn tcp_over_ipv6_loopback() {
    if require_root("tcp_over_ipv6_loopback") {
        tcp_round_trip("[::1]:0");
    }
}

#[test]
fn accepted_connection_belongs_to_the_acceptor_not_the_listener() {
    if !require_root("accepted_connection_belongs_to_the_acceptor_not_the_listener") {
        return;
    }
    let mut probe = Probe::load();
    // Pre-fork server: one process listens, a worker it forked accepts.
    let mut master = spawn_named("leco-t-master", |p| {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            return 1;
        };
        let worker = spawn_named("leco-t-worker", |w| {
            w.send(0);
            serve_once(&l)
        });
        let mut worker = worker;
        worker.recv();
        p.send(u64::from(l.local_addr().map(|a| a.port()).unwrap_or(0)));
        p.send(u64::from(worker.pid()));
        worker.wait()
    });
    let port = master.recv() as u16;
    let worker_pid = master.recv() as u32;
    let client = spawn_named("leco-t-cli", move |_| {
        connect_and_talk(SocketAddr::from(([127, 0, 0, 1], port)))
    });
    assert_eq!(client.wait(), 0);
    assert_eq!(master.wait(), 0);
    let inb = probe.until(|f| f.proto == FlowProto::Tcp && f.local_port == port, ended);
    let new = last(&inb, RecordKind::New).expect("announced");
    assert_eq!(
        (new.owner.pid, comm(new).as_str()),
        (worker_pid, "leco-t-worker")
    );
}

#[test]
fn refused_connect_is_a_failure_with_its_error() {
    if !require_root("refused_connect_is_a_failure_with_its_error") {
        return;
    }
    let mut probe = Probe::load();
    let port = closed_port(false);
    let child = spawn_named("leco-t-refused", move |_| {
        match TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => 0,
            _ => 1,
        }
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0, "connect was refused");
    let out = probe.until(|f| f.owner.pid == pid, ended);
    let failed = last(&out, RecordKind::Failed).expect("failure reported");
    assert_eq!(failed.error, Some(libc::ECONNREFUSED));
    assert_eq!(
        (failed.remote_port, comm(failed).as_str()),
        (port, "leco-t-refused")
    );
    assert!(!failed.established);
    assert!(
        !kinds(&out).contains(&RecordKind::New),
        "never established: {out:#?}"
    );
}

#[test]
fn a_process_that_exits_right_after_connecting_is_still_named() {
    if !require_root("a_process_that_exits_right_after_connecting_is_still_named") {
        return;
    }
    let mut probe = Probe::load();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let child = spawn_named("leco-t-blink", move |_| {
        // connect, send a byte, and _exit at once: well under a millisecond.
        match TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) {
            Ok(mut s) => i32::from(s.write_all(b"x").is_err()),
            Err(_) => 1,
        }
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    // The process is gone before anyone could read /proc: the kernel named it.
    let out = probe.until(
        |f| f.remote_port == port,
        |e| kinds(e).contains(&RecordKind::New),
    );
    let new = last(&out, RecordKind::New).expect("new");
    assert_eq!((new.owner.pid, comm(new).as_str()), (pid, "leco-t-blink"));
    drop(listener);
}

#[test]
fn unconnected_udp_to_two_peers_is_two_flows_that_end_on_close() {
    if !require_root("unconnected_udp_to_two_peers_is_two_flows_that_end_on_close") {
        return;
    }
    let mut probe = Probe::load();
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind b");
    let (pa, pb) = (
        a.local_addr().expect("a").port(),
        b.local_addr().expect("b").port(),
    );
    let child = spawn_named("leco-t-udp", move |_| {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            return 1;
        };
        for _ in 0..3 {
            if s.send_to(&[1u8; 100], ("127.0.0.1", pa)).is_err() {
                return 2;
            }
        }
        for _ in 0..2 {
            if s.send_to(&[2u8; 60], ("127.0.0.1", pb)).is_err() {
                return 3;
            }
        }
        0
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    let out = probe.until(
        |f| f.owner.pid == pid && f.proto == FlowProto::Udp,
        |e| {
            let ports: std::collections::HashSet<u16> =
                e.iter().map(|(_, f)| f.remote_port).collect();
            ports.contains(&pa) && ports.contains(&pb)
        },
    );
    let new: Vec<&Flow> = out
        .iter()
        .filter(|(k, _)| *k == RecordKind::New)
        .map(|(_, f)| f)
        .collect();
    assert_eq!(new.len(), 2, "one flow per peer: {out:#?}");
    assert!(new
        .iter()
        .all(|f| comm(f) == "leco-t-udp" && f.direction == FlowDirection::Out));
    assert_ne!(new[0].id, new[1].id);
    assert_eq!(new[0].key.cookie(), new[1].key.cookie(), "same socket");
    let cookie = new[0].key.cookie();
    // Closing the socket (the child exited) ends both flows.
    probe.wait_released(cookie);

    // The receivers' side: every datagram is counted, with its sender, as
    // it reaches the socket (all three of a's by now); the first read
    // names the owner.
    let mut buf = [0u8; 200];
    let (n, from) = a.recv_from(&mut buf).expect("recv");
    assert_eq!(n, 100);
    let me = std::process::id();
    let inb = probe.until(
        |f| f.owner.pid == me && f.proto == FlowProto::Udp && f.local_port == pa,
        |e| !e.is_empty(),
    );
    assert_eq!(inb[0].1.direction, FlowDirection::In);
    assert_eq!(SocketAddr::new(inb[0].1.remote, inb[0].1.remote_port), from);
    assert_eq!(inb[0].1.rx_bytes, 300);
}

#[test]
fn udp_byte_counts_reach_the_flow_table() {
    if !require_root("udp_byte_counts_reach_the_flow_table") {
        return;
    }
    let mut probe = Probe::load();
    let maps = probe._capture.maps().expect("maps");
    let peer = UdpSocket::bind("[::1]:0").expect("bind");
    let port = peer.local_addr().expect("addr").port();
    let mut child = spawn_named("leco-t-udp6", move |p| {
        let Ok(s) = UdpSocket::bind("[::1]:0") else {
            return 1;
        };
        if s.connect(("::1", port)).is_err() {
            return 2;
        }
        for _ in 0..10 {
            if s.send(&[0u8; 512]).is_err() {
                return 3;
            }
        }
        p.send(1);
        // Keep the socket open until the parent has looked.
        std::thread::sleep(Duration::from_secs(3));
        0
    });
    child.recv();
    let pid = child.pid();
    let out = probe.until(|f| f.owner.pid == pid, |e| !e.is_empty());
    let key = out[0].1.key;
    let flow = maps.flow(&key).expect("lookup").expect("flow in the table");
    assert_eq!(flow.tx_bytes, 10 * 512);
    assert_eq!(flow.remote, "::1".parse::<IpAddr>().expect("ip"));
    assert!(
        maps.flows().iter().any(|f| f.id == flow.id),
        "iteration sees it"
    );
    drop(child);
}

#[test]
fn a_process_in_a_cgroup_carries_its_id() {
    if !require_root("a_process_in_a_cgroup_carries_its_id") {
        return;
    }
    let mut probe = Probe::load();
    let root = leco_bpf::cgroup2_root().expect("cgroup2 mounted");
    let cg = ScratchCgroup::create(
        &root,
        &format!("leco-test.slice/leco-test-{}.scope", std::process::id()),
    )
    .expect("create cgroup");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cgref = &cg;
    let child = spawn_named("leco-t-cg", move |_| {
        if cgref.enter().is_err() {
            return 1;
        }
        i32::from(TcpStream::connect(("127.0.0.1", port)).is_err())
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    let out = probe.until(|f| f.owner.pid == pid, |e| !e.is_empty());
    assert_eq!(out[0].1.owner.cgroup_id, cg.id());
}

#[test]
fn counters_are_readable() {
    if !require_root("counters_are_readable") {
        return;
    }
    let probe = Probe::load();
    let before = probe
        ._capture
        .maps()
        .expect("maps")
        .counters()
        .expect("counters");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let _c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let after = probe
        ._capture
        .maps()
        .expect("maps")
        .counters()
        .expect("counters");
    assert!(
        after.flows_created > before.flows_created,
        "{before:?} -> {after:?}"
    );
    assert!(!probe._capture.program_ids().is_empty());
}

#[test]
fn a_full_ring_buffer_counts_drops_and_the_flow_table_keeps_every_flow() {
    if !require_root("a_full_ring_buffer_counts_drops_and_the_flow_table_keeps_every_flow") {
        return;
    }
    // One page holds about twenty records; nobody reads it.
    let capture = Capture::load(&Options {
        ring_bytes: 4096,
        ..Options::default()
    })
    .expect("load");
    let maps = capture.maps().expect("maps");
    const PEERS: u16 = 500;
    let mut child = spawn_named("leco-t-burst", |p| {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            return 1;
        };
        for port in 0..PEERS {
            if s.send_to(b"x", ("127.0.0.1", 20_000 + port)).is_err() {
                return 2;
            }
        }
        p.send(1);
        std::thread::sleep(Duration::from_secs(5));
        0
    });
    child.recv();
    let pid = child.pid();
    let counters = maps.counters().expect("counters");
    assert!(counters.ringbuf_drops > 0, "{counters:?}");
    let flows: std::collections::HashSet<u16> = maps
        .flows()
        .into_iter()
        .filter(|f| f.owner.pid == pid)
        .map(|f| f.remote_port)
        .collect();
    assert_eq!(
        flows.len(),
        usize::from(PEERS),
        "every flow is in the table"
    );
}

#[test]
fn a_reset_established_connection_fails_with_the_reset() {
    if !require_root("a_reset_established_connection_fails_with_the_reset") {
        return;
    }
    let mut probe = Probe::load();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut child = spawn_named("leco-t-reset", move |p| {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        if s.write_all(b"unread").is_err() {
            return 2;
        }
        p.send(1);
        // Wait for the peer's reset.
        let mut buf = [0u8; 8];
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            _ => 3,
        }
    });
    let (conn, _) = listener.accept().expect("accept");
    child.recv();
    // Closing with unread data sends a reset instead of a FIN.
    drop(conn);
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    let out = probe.until(|f| f.owner.pid == pid, ended);
    let failed = last(&out, RecordKind::Failed).expect("failed");
    assert_eq!(failed.error, Some(libc::ECONNRESET));
    assert!(failed.established);
}

#[test]
fn ipv4_mapped_addresses_are_shown_as_ipv4() {
    if !require_root("ipv4_mapped_addresses_are_shown_as_ipv4") {
        return;
    }
    let mut probe = Probe::load();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // An IPv6 socket talking to an IPv4 peer (dual stack).
    let child = spawn_named("leco-t-mapped", move |_| {
        i32::from(TcpStream::connect(format!("[::ffff:127.0.0.1]:{port}")).is_err())
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    let out = probe.until(|f| f.owner.pid == pid, |e| !e.is_empty());
    assert_eq!(out[0].1.remote, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(out[0].1.local, IpAddr::from([127, 0, 0, 1]));
}

#[test]
fn traffic_updates_are_rate_limited_per_flow() {
    if !require_root("traffic_updates_are_rate_limited_per_flow") {
        return;
    }
    let capture = Capture::load(&Options {
        update_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .expect("load");
    let mut probe = Probe {
        reader: capture.maps().expect("maps").reader().expect("reader"),
        _capture: capture,
        events: Vec::new(),
        released: Vec::new(),
        dns: Vec::new(),
    };
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = peer.local_addr().expect("addr").port();
    // 50 datagrams over one second: without the limit, 50 updates.
    let child = spawn_named("leco-t-rate", move |_| {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            return 1;
        };
        for _ in 0..50 {
            if s.send_to(&[0u8; 100], ("127.0.0.1", port)).is_err() {
                return 2;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        0
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0);
    // The child has exited; whatever was emitted is in the ring by now.
    for _ in 0..3 {
        probe.pump();
    }
    let out = probe.until(|f| f.owner.pid == pid, |_| true);
    let updates = out.iter().filter(|(k, _)| *k == RecordKind::Update).count();
    // About one per 200 ms over ~1 s (timing on a busy machine varies a little).
    assert!((3..=7).contains(&updates), "{updates} updates: {out:#?}");
}

#[test]
fn an_accept_without_peer_address_is_owned_at_first_read() {
    if !require_root("an_accept_without_peer_address_is_owned_at_first_read") {
        return;
    }
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut probe = Probe::load();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The worker accepts with accept(fd, NULL, NULL): no getpeername hook.
    let worker = spawn_named("leco-t-noaddr", |_| {
        // SAFETY: plain accept(2) on a listening socket we own.
        let fd = unsafe {
            libc::accept(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if fd < 0 {
            return 1;
        }
        // SAFETY: fd was just returned by accept and is ours.
        let mut s = unsafe { TcpStream::from_raw_fd(fd) };
        let mut buf = [0u8; 5];
        i32::from(s.read_exact(&mut buf).is_err())
    });
    let wpid = worker.pid();
    let client = spawn_named("leco-t-cli", move |_| {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        i32::from(s.write_all(b"hello").is_err())
    });
    assert_eq!(client.wait(), 0);
    assert_eq!(worker.wait(), 0);
    let inb = probe.until(|f| f.proto == FlowProto::Tcp && f.local_port == port, ended);
    let new = last(&inb, RecordKind::New).expect("announced");
    assert_eq!((new.owner.pid, comm(new).as_str()), (wpid, "leco-t-noaddr"));
    assert_eq!(new.rx_bytes, 5);
}
