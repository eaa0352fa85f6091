//! The traffic generators of `leco_testkit::traffic`, each run once (or
//! once per variant) without leco: what they return must be consistent
//! with what they were asked to move. The generators themselves check the
//! other side's counts and panic when those differ; here the returned
//! [`Moved`] is checked against the request.
//!
//! Root: ping and packet generators make network namespaces, raw sockets
//! need CAP_NET_RAW, and the receive buffers are grown past rmem_max.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use leco_testkit::traffic::{self, Moved, RecvHow, UdpFamily};
use leco_testkit::{require_root, within};

const MIB: u64 = 1 << 20;
/// No generator may take longer, timeouts included.
const LIMIT: Duration = Duration::from_secs(60);

/// What every generator's result must satisfy: the named child (not this
/// process) did it, under the name given.
fn by_child(m: &Moved, comm: &str) {
    assert_eq!(m.comm, comm, "{m:?}");
    assert_ne!(m.pid, std::process::id(), "{m:?}");
    assert_ne!(m.pid, 0, "{m:?}");
}

fn loopback_peer(m: &Moved, v6: bool) {
    assert!(m.peer.ip().is_loopback(), "{m:?}");
    assert_eq!(m.peer.is_ipv6(), v6, "{m:?}");
    assert_ne!(m.peer.port(), 0, "{m:?}");
    assert_ne!(m.local_port, 0, "{m:?}");
    assert_ne!(m.local_port, m.peer.port(), "{m:?}");
    assert_eq!(m.netns, None, "{m:?}");
}

#[test]
fn udp_burst_then_close_delivers_every_byte() {
    if !require_root("udp_burst_then_close_delivers_every_byte") {
        return;
    }
    for v6 in [false, true] {
        for batched in [false, true] {
            // Not a multiple of the datagram size: the last one is short.
            let total = 4 * MIB + 77;
            let m = within(LIMIT, "udp_burst_then_close", move || {
                traffic::udp_burst_then_close("lt-udpburst", v6, total, 1400, batched)
            });
            by_child(&m, "lt-udpburst");
            loopback_peer(&m, v6);
            assert_eq!((m.sent, m.received), (total, 0), "{m:?}");
        }
    }
}

#[test]
fn udp_recv_without_address_every_way() {
    if !require_root("udp_recv_without_address_every_way") {
        return;
    }
    for family in [UdpFamily::V4, UdpFamily::V6, UdpFamily::V4Mapped] {
        for how in [RecvHow::Recv, RecvHow::Read, RecvHow::Recvmmsg] {
            let m = within(LIMIT, "udp_recv_without_address", move || {
                traffic::udp_recv_without_address("lt-udprecv", family, how, 2_000, 1_000)
            });
            by_child(&m, "lt-udprecv");
            // V4Mapped: the child's socket is IPv6, its peer plain IPv4.
            loopback_peer(&m, family == UdpFamily::V6);
            assert_eq!(
                (m.sent, m.received),
                (0, 2_000 * 1_000),
                "{family:?} {how:?}"
            );
        }
    }
}

#[test]
fn udp_recv_connected_counts_every_datagram() {
    if !require_root("udp_recv_connected_counts_every_datagram") {
        return;
    }
    for v6 in [false, true] {
        let m = within(LIMIT, "udp_recv_connected", move || {
            traffic::udp_recv_connected("lt-udpconn", v6, 1_000, 512)
        });
        by_child(&m, "lt-udpconn");
        loopback_peer(&m, v6);
        assert_eq!((m.sent, m.received), (0, 512_000), "{m:?}");
    }
}

#[test]
fn udp_inherited_socket_is_read_by_the_child() {
    if !require_root("udp_inherited_socket_is_read_by_the_child") {
        return;
    }
    let got = within(LIMIT, "udp_inherited_socket", || {
        traffic::udp_inherited_socket("lt-udpinherit", 7, 300)
    });
    let m = &got.moved;
    by_child(m, "lt-udpinherit");
    loopback_peer(m, false);
    assert_eq!((m.sent, m.received), (0, 7 * 300), "{m:?}");
    let mut ports: Vec<u16> = got.senders.iter().map(|a| a.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 7, "seven distinct senders: {got:?}");
    assert_eq!(got.senders[0], m.peer, "{got:?}");
}

#[test]
fn udp_overflowing_receiver_reads_only_what_was_queued() {
    if !require_root("udp_overflowing_receiver_reads_only_what_was_queued") {
        return;
    }
    let m = within(LIMIT, "udp_overflowing_receiver", || {
        traffic::udp_overflowing_receiver("lt-udpfull", 2_000, 1_000)
    });
    by_child(&m, "lt-udpfull");
    loopback_peer(&m, false);
    // Whole datagrams, fewer than sent (the generator checks the bounds).
    assert_eq!(m.received % 1_000, 0, "{m:?}");
    assert_eq!(m.sent, 0, "{m:?}");
}

#[test]
fn tcp_plain_download_reads_it_all() {
    if !require_root("tcp_plain_download_reads_it_all") {
        return;
    }
    let m = within(LIMIT, "tcp_plain_download", || {
        traffic::tcp_plain_download("lt-tcpread", 16 * MIB)
    });
    by_child(&m, "lt-tcpread");
    loopback_peer(&m, false);
    assert_eq!((m.sent, m.received), (0, 16 * MIB), "{m:?}");
}

#[test]
fn tcp_splice_download_splices_it_all() {
    if !require_root("tcp_splice_download_splices_it_all") {
        return;
    }
    let m = within(LIMIT, "tcp_splice_download", || {
        traffic::tcp_splice_download("lt-splice", 32 * MIB + 3)
    });
    by_child(&m, "lt-splice");
    loopback_peer(&m, false);
    assert_eq!((m.sent, m.received), (0, 32 * MIB + 3), "{m:?}");
}

#[test]
fn tcp_sendfile_upload_sends_it_all() {
    if !require_root("tcp_sendfile_upload_sends_it_all") {
        return;
    }
    let m = within(LIMIT, "tcp_sendfile_upload", || {
        traffic::tcp_sendfile_upload("lt-sendfile", 32 * MIB + 5)
    });
    by_child(&m, "lt-sendfile");
    loopback_peer(&m, false);
    assert_eq!((m.sent, m.received), (32 * MIB + 5, 0), "{m:?}");
}

#[test]
fn tcp_zerocopy_send_sends_it_all() {
    if !require_root("tcp_zerocopy_send_sends_it_all") {
        return;
    }
    let m = within(LIMIT, "tcp_zerocopy_send", || {
        traffic::tcp_zerocopy_send("lt-zerocopy", 16 * MIB + 9)
    });
    by_child(&m, "lt-zerocopy");
    loopback_peer(&m, false);
    assert_eq!((m.sent, m.received), (16 * MIB + 9, 0), "{m:?}");
}

#[test]
fn tcp_io_uring_both_ways() {
    if !require_root("tcp_io_uring_both_ways") {
        return;
    }
    for upload in [true, false] {
        let m = within(LIMIT, "tcp_io_uring", move || {
            traffic::tcp_io_uring("lt-uring", 16 * MIB + 11, upload)
        })
        .unwrap_or_else(|e| panic!("tcp_io_uring (upload: {upload}): {e}"));
        by_child(&m, "lt-uring");
        loopback_peer(&m, false);
        let moved = if upload {
            (16 * MIB + 11, 0)
        } else {
            (0, 16 * MIB + 11)
        };
        assert_eq!((m.sent, m.received), moved, "{m:?}");
    }
}

#[test]
fn ping_socket_echo_in_its_own_namespace() {
    if !require_root("ping_socket_echo_in_its_own_namespace") {
        return;
    }
    let host = host_netns();
    let before = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .expect("read the host's ping_group_range");
    for v6 in [false, true] {
        let m = within(LIMIT, "ping_socket_echo", move || {
            traffic::ping_socket_echo("lt-ping", v6, 50, 56)
        });
        by_child(&m, "lt-ping");
        assert_eq!((m.sent, m.received), (50 * 64, 50 * 64), "{m:?}");
        assert_eq!(m.peer, SocketAddr::new(peer(v6), 0), "{m:?}");
        assert_ne!(m.local_port, 0, "the echo identifier: {m:?}");
        let netns = m.netns.expect("a namespace of its own");
        assert_ne!(netns, host, "{m:?}");
    }
    let after = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .expect("read the host's ping_group_range");
    assert_eq!(before, after, "the host's ping_group_range was changed");
}

fn host_netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net")
        .expect("this process's network namespace")
        .ino()
}

fn peer(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    }
}

#[test]
fn raw_icmp_echo_gets_every_reply() {
    if !require_root("raw_icmp_echo_gets_every_reply") {
        return;
    }
    let m = within(LIMIT, "raw_icmp_echo", || {
        traffic::raw_icmp_echo("lt-rawicmp", 50, 100)
    });
    by_child(&m, "lt-rawicmp");
    assert_eq!(m.sent, 50 * 108, "{m:?}");
    // Each reply read whole, its IP header included; replies to other
    // pingers on the host would come on top.
    assert!(m.received >= 50 * 128, "{m:?}");
    assert_eq!(m.peer, SocketAddr::new(peer(false), 0), "{m:?}");
    assert_eq!((m.local_port, m.netns), (0, None), "{m:?}");
}

#[test]
fn raw_ip_protocol_reaches_this_process() {
    if !require_root("raw_ip_protocol_reaches_this_process") {
        return;
    }
    let m = within(LIMIT, "raw_ip_protocol", || {
        traffic::raw_ip_protocol("lt-rawip", 253, 500, 1_000)
    });
    by_child(&m, "lt-rawip");
    assert_eq!((m.sent, m.received), (500_000, 0), "{m:?}");
    assert_eq!(m.peer, SocketAddr::new(peer(false), 0), "{m:?}");
    assert_eq!((m.local_port, m.netns), (0, None), "{m:?}");
}

#[test]
fn af_packet_frames_cross_the_veth_pair() {
    if !require_root("af_packet_frames_cross_the_veth_pair") {
        return;
    }
    let p = within(LIMIT, "af_packet_frames", || {
        traffic::af_packet_frames("lt-packet", 200, 100)
    });
    let m = &p.moved;
    by_child(m, "lt-packet");
    let frame = 14 + 20 + 8 + 100;
    assert_eq!(m.sent, 200 * frame, "{p:?}");
    // Nothing but its own frames cross the pair: IPv6 is off there.
    assert_eq!(m.received, 200 * frame, "{p:?}");
    assert_eq!(p.interface, "lecot0");
    assert_eq!(p.dst, "10.253.0.2:5000".parse().expect("an address"));
    assert_eq!((m.peer, m.local_port), (p.dst, 4000), "{p:?}");
    assert_eq!(m.netns, Some(p.netns), "{p:?}");
    assert_ne!(p.netns, host_netns(), "{p:?}");
    // The pair lived in the child's namespace only.
    assert!(
        !std::path::Path::new("/sys/class/net/lecot0").exists(),
        "lecot0 is in the host's namespace"
    );
}

#[test]
fn long_names_are_cut_as_the_kernel_cuts_them() {
    if !require_root("long_names_are_cut_as_the_kernel_cuts_them") {
        return;
    }
    let m = within(LIMIT, "udp_recv_connected", || {
        traffic::udp_recv_connected("lt-a-name-longer-than-15", false, 10, 10)
    });
    assert_eq!(m.comm, "lt-a-name-longe");
}
