//! Every byte and every protocol: a named child moves a known number of
//! bytes through one kernel path (leco-testkit's `traffic`), and
//! `leco-service --standalone --json` must name its owner, protocol and
//! peer and count its bytes within 1 %, in the events that end its flows.
//! Loopback and network namespaces the tests create only. Needs root.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Service;
use leco_testkit::traffic::{self, Moved};
use leco_testkit::{require_root, spawn_named};
use serde_json::Value;

/// The flows of process `pid` of kind `proto` as their last events left
/// them, once every one has ended (and at least one was seen).
fn ended_flows(svc: &mut Service, pid: u32, proto: &str, within: Duration) -> Vec<Value> {
    let mut last: BTreeMap<u64, Value> = BTreeMap::new();
    let mut seen = Vec::new();
    let done = svc.follow_json(within, |v| {
        if v["pid"] == pid && v["proto"] == proto {
            let id = v["id"].as_u64().expect("id");
            last.insert(id, v.clone());
        } else if v["pid"] == pid {
            seen.push(v.clone());
        }
        !last.is_empty()
            && last
                .values()
                .all(|e| e["kind"] == "closed" || e["kind"] == "failed")
    });
    assert!(
        done,
        "pid {pid}: not every {proto} flow ended within {within:?}: {last:#?}; \
         its other events: {seen:#?}"
    );
    last.into_values().collect()
}

fn total(flows: &[Value], key: &str) -> u64 {
    flows.iter().map(|f| f[key].as_u64().unwrap_or(0)).sum()
}

/// `got` is `want` within 1 %.
fn within_1pc(what: &str, got: u64, want: u64, flows: &[Value]) {
    let diff = got.abs_diff(want) as f64;
    assert!(
        diff <= want as f64 * 0.01,
        "{what}: leco counted {got} bytes, {want} moved ({:+.2} %): {flows:#?}",
        (got as f64 - want as f64) * 100.0 / want.max(1) as f64
    );
}

/// The owner, as every flow of `m`'s must name it.
fn assert_owner(flows: &[Value], m: &Moved) {
    for f in flows {
        assert_eq!(f["comm"], m.comm.as_str(), "{f}");
        assert_eq!(f["pid"], m.pid, "{f}");
    }
}

fn start() -> Service {
    // Datagram flows of a packet socket end by idleness: keep it short.
    Service::start(&["--standalone", "--json", "--udp-idle", "1s"])
}

/// Flows of `m` of kind `proto`, checked for owner and bytes.
fn check(
    svc: &mut Service,
    m: &Moved,
    proto: &str,
    rx: Option<u64>,
    tx: Option<u64>,
) -> Vec<Value> {
    let flows = ended_flows(svc, m.pid, proto, Duration::from_secs(15));
    assert_owner(&flows, m);
    if let Some(rx) = rx {
        within_1pc(
            &format!("{proto} received by {}", m.comm),
            total(&flows, "rx_bytes"),
            rx,
            &flows,
        );
    }
    if let Some(tx) = tx {
        within_1pc(
            &format!("{proto} sent by {}", m.comm),
            total(&flows, "tx_bytes"),
            tx,
            &flows,
        );
    }
    flows
}

#[test]
fn a_udp_burst_ends_with_every_byte_it_sent() {
    if !require_root("a_udp_burst_ends_with_every_byte_it_sent") {
        return;
    }
    let mut svc = start();
    for (v6, batched, name) in [
        (false, false, "lt-udp-burst"),
        (true, false, "lt-udp-burst6"),
        (false, true, "lt-udp-mmsg"),
    ] {
        let m = traffic::udp_burst_then_close(name, v6, 8 << 20, 1200, batched);
        let flows = check(&mut svc, &m, "udp", None, Some(m.sent));
        assert_eq!(flows.len(), 1, "one peer, one flow: {flows:#?}");
        assert_eq!(flows[0]["remote_port"], m.peer.port());
        assert_eq!(flows[0]["remote_addr"], m.peer.ip().to_string());
    }
}

/// `flow` names `m`'s peer as its remote, and was begun by that peer.
fn assert_received_from(flow: &Value, peer: std::net::SocketAddr) {
    assert_eq!(flow["remote_addr"], peer.ip().to_string(), "{flow}");
    assert_eq!(flow["remote_port"], peer.port(), "{flow}");
    assert_eq!(flow["direction"], "in", "{flow}");
}

#[test]
fn udp_reads_without_an_address_name_the_sender() {
    if !require_root("udp_reads_without_an_address_name_the_sender") {
        return;
    }
    use traffic::{RecvHow, UdpFamily};
    let mut svc = start();
    for (family, tag) in [
        (UdpFamily::V4, "4"),
        (UdpFamily::V6, "6"),
        (UdpFamily::V4Mapped, "m"),
    ] {
        for (how, verb) in [
            (RecvHow::Recv, "recv"),
            (RecvHow::Read, "read"),
            (RecvHow::Recvmmsg, "mmsg"),
        ] {
            let m = traffic::udp_recv_without_address(
                &format!("lt-u{tag}-{verb}"),
                family,
                how,
                300,
                1000,
            );
            let flows = check(&mut svc, &m, "udp", Some(m.received), None);
            assert_eq!(flows.len(), 1, "one sender, one flow: {flows:#?}");
            assert_received_from(&flows[0], m.peer);
        }
    }
    for (v6, name) in [(false, "lt-u4-conn"), (true, "lt-u6-conn")] {
        let m = traffic::udp_recv_connected(name, v6, 300, 1000);
        let flows = check(&mut svc, &m, "udp", Some(m.received), None);
        assert_eq!(flows.len(), 1, "one sender, one flow: {flows:#?}");
        assert_received_from(&flows[0], m.peer);
    }
}

/// A socket made by one process (as systemd makes those it activates
/// services with) belongs to the one that reads it, also for the datagrams
/// that came before its first read, from more senders than the kernel keeps
/// waiting for an owner.
#[test]
fn an_inherited_udp_socket_is_its_readers_from_the_first_datagram() {
    if !require_root("an_inherited_udp_socket_is_its_readers_from_the_first_datagram") {
        return;
    }
    let mut svc = start();
    let got = traffic::udp_inherited_socket("lt-udp-inherit", 7, 500);
    let m = &got.moved;
    let flows = check(&mut svc, m, "udp", Some(m.received), None);
    let mut peers: Vec<(String, u64, u64)> = flows
        .iter()
        .map(|f| {
            assert_eq!(f["direction"], "in", "{f}");
            assert_eq!(f["local_port"], m.local_port, "{f}");
            (
                f["remote_addr"].as_str().unwrap_or("?").to_owned(),
                f["remote_port"].as_u64().unwrap_or(0),
                f["rx_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    peers.sort();
    let mut want: Vec<(String, u64, u64)> = got
        .senders
        .iter()
        .map(|a| (a.ip().to_string(), u64::from(a.port()), 500))
        .collect();
    want.sort();
    assert_eq!(
        peers, want,
        "one flow per sender, each the reader's: {flows:#?}"
    );
}

/// Datagrams a full receive buffer refused never reached the reader: they
/// are not counted as received.
#[test]
fn datagrams_a_full_buffer_refused_are_not_counted() {
    if !require_root("datagrams_a_full_buffer_refused_are_not_counted") {
        return;
    }
    let mut svc = start();
    let m = traffic::udp_overflowing_receiver("lt-udp-full", 2000, 1000);
    let flows = check(&mut svc, &m, "udp", Some(m.received), None);
    assert_eq!(flows.len(), 1, "{flows:#?}");
    assert_received_from(&flows[0], m.peer);
}

#[test]
fn tcp_counts_every_path_in_both_directions() {
    if !require_root("tcp_counts_every_path_in_both_directions") {
        return;
    }
    let mut svc = start();
    const TOTAL: u64 = 32 << 20;
    let m = traffic::tcp_plain_download("lt-tcp-read", TOTAL);
    check(&mut svc, &m, "tcp", Some(TOTAL), None);
    let m = traffic::tcp_splice_download("lt-tcp-splice", TOTAL);
    check(&mut svc, &m, "tcp", Some(TOTAL), None);
    let m = traffic::tcp_sendfile_upload("lt-tcp-sendfile", TOTAL);
    check(&mut svc, &m, "tcp", None, Some(TOTAL));
    let m = traffic::tcp_zerocopy_send("lt-tcp-zc", TOTAL);
    check(&mut svc, &m, "tcp", None, Some(TOTAL));
    for upload in [true, false] {
        let name = if upload {
            "lt-uring-send"
        } else {
            "lt-uring-recv"
        };
        let m = traffic::tcp_io_uring(name, TOTAL, upload)
            .unwrap_or_else(|e| panic!("io_uring is needed for this test: {e}"));
        let (rx, tx) = if upload {
            (None, Some(TOTAL))
        } else {
            (Some(TOTAL), None)
        };
        check(&mut svc, &m, "tcp", rx, tx);
    }
}

#[test]
fn ping_sockets_and_raw_icmp_are_icmp_flows_to_the_pinged_host() {
    if !require_root("ping_sockets_and_raw_icmp_are_icmp_flows_to_the_pinged_host") {
        return;
    }
    let mut svc = start();
    for (v6, name, proto) in [(false, "lt-ping4", "icmp"), (true, "lt-ping6", "icmpv6")] {
        let m = traffic::ping_socket_echo(name, v6, 20, 56);
        let flows = check(&mut svc, &m, proto, Some(m.received), Some(m.sent));
        assert_eq!(flows.len(), 1, "{flows:#?}");
        assert_eq!(flows[0]["remote_addr"], m.peer.ip().to_string());
        assert_eq!(flows[0]["direction"], "out");
    }
    let m = traffic::raw_icmp_echo("lt-raw-icmp", 20, 56);
    // A raw ICMP socket reads every ICMP packet of the host (its own
    // requests looped back too): what it sent is exact.
    let flows = check(&mut svc, &m, "icmp", None, Some(m.sent));
    assert!(
        flows
            .iter()
            .all(|f| f["remote_addr"] == m.peer.ip().to_string()),
        "{flows:#?}"
    );
}

#[test]
fn a_raw_ip_socket_is_a_raw_flow_with_its_protocol() {
    if !require_root("a_raw_ip_socket_is_a_raw_flow_with_its_protocol") {
        return;
    }
    let mut svc = start();
    let m = traffic::raw_ip_protocol("lt-raw-253", 253, 50, 512);
    let flows = check(&mut svc, &m, "raw", None, Some(m.sent));
    assert_eq!(flows.len(), 1, "{flows:#?}");
    assert_eq!(flows[0]["ip_proto"], 253);
    assert_eq!(flows[0]["remote_addr"], m.peer.ip().to_string());
}

#[test]
fn a_packet_socket_sender_is_named_with_its_interface_and_destination() {
    if !require_root("a_packet_socket_sender_is_named_with_its_interface_and_destination") {
        return;
    }
    let mut svc = start();
    let p = traffic::af_packet_frames("lt-packet", 40, 100);
    let flows = ended_flows(&mut svc, p.moved.pid, "packet", Duration::from_secs(15));
    assert_owner(&flows, &p.moved);
    let sent: Vec<&Value> = flows
        .iter()
        .filter(|f| f["tx_bytes"].as_u64() > Some(0))
        .collect();
    assert_eq!(sent.len(), 1, "one destination: {flows:#?}");
    let f = sent[0];
    assert_eq!(f["interface"], p.interface.as_str(), "{f}");
    assert_eq!(f["remote_addr"], p.dst.ip().to_string(), "{f}");
    assert_eq!(f["remote_port"], p.dst.port(), "{f}");
    assert_eq!(f["ip_proto"], 17, "{f}");
    assert_eq!(f["direction"], "out", "{f}");
    within_1pc(
        "frames sent",
        f["tx_bytes"].as_u64().unwrap_or(0),
        p.moved.sent,
        &flows,
    );
}

/// A dual-stack UDP socket (AF_INET6, not IPv6-only) that sends to an IPv4
/// address and reads the replies is one flow, the sender's, with both
/// directions' bytes: its sends pass the IPv4 hook on an IPv6 socket, its
/// replies arrive IPv4-mapped, and both must name the peer alike (they
/// were two flows, one out with the sent bytes, one in with the replies).
#[test]
fn a_dual_stack_socket_sending_to_ipv4_is_one_flow() {
    if !require_root("a_dual_stack_socket_sending_to_ipv4_is_one_flow") {
        return;
    }
    const N: usize = 50;
    const SIZE: usize = 200;
    let mut svc = start();
    let echo = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = echo.local_addr().expect("addr").port();
    echo.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let echoing = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..N {
            let Ok((n, from)) = echo.recv_from(&mut buf) else {
                return false;
            };
            if echo.send_to(&buf[..n], from).is_err() {
                return false;
            }
        }
        true
    });
    let child = spawn_named("lt-u-dualstack", move |_| {
        let Ok(s) = std::net::UdpSocket::bind("[::]:0") else {
            return 1;
        };
        if s.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
            return 2;
        }
        let to: std::net::SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().expect("addr");
        let mut buf = [0u8; 2048];
        for _ in 0..N {
            if s.send_to(&[7u8; SIZE], to).is_err() {
                return 3;
            }
            match s.recv(&mut buf) {
                Ok(n) if n == SIZE => {}
                _ => return 4,
            }
        }
        0
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0, "the child sent and read every datagram");
    assert!(echoing.join().expect("echo"), "every datagram echoed");
    let flows = ended_flows(&mut svc, pid, "udp", Duration::from_secs(10));
    assert_eq!(flows.len(), 1, "one peer, one flow: {flows:#?}");
    let f = &flows[0];
    assert_eq!(f["direction"], "out", "{f}");
    assert_eq!(f["remote_addr"], "127.0.0.1", "{f}");
    assert_eq!(f["remote_port"], port, "{f}");
    let want = (N * SIZE) as u64;
    assert_eq!(
        (f["tx_bytes"].as_u64(), f["rx_bytes"].as_u64()),
        (Some(want), Some(want)),
        "{f}"
    );
}
