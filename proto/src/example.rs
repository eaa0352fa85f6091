//! Sample records for tests: this crate's and its clients' (the overlay's
//! formatting and model tests build on the same connection), so that what
//! a test assumes about "a typical connection" is written down once.

use crate::{Connection, Direction, NameSource, Novelty, Proto, Reason, SafeText};

/// A record with nothing known but its id and protocol: every other key
/// absent, as [`Connection::from_dict`] reads a dictionary of those two.
/// Fixtures start from it (`Connection { …, ..bare(1, Proto::Tcp) }`) so
/// that a new key does not touch them.
pub fn bare(id: u64, proto: Proto) -> Connection {
    let object = serde_json::json!({ "id": id, "proto": proto.as_str() });
    let serde_json::Value::Object(keys) = object else {
        unreachable!("json! of braces is an object")
    };
    Connection::from_json(&keys).expect("id and proto are all a record needs")
}

/// `curl` (pid 42, user alice, in `session-2.scope`) talking TCP over IPv4
/// from 10.0.0.2:40000 to 93.184.216.34:443, with 58 bytes in and 26 out,
/// last seen a minute after it was first seen.
pub fn curl() -> Connection {
    Connection {
        family: Some(4),
        direction: Some(Direction::Out),
        state: "established".into(),
        local_addr: "10.0.0.2".into(),
        local_port: 40000,
        remote_addr: "93.184.216.34".into(),
        remote_port: 443,
        pid: Some(42),
        comm: Some("curl".into()),
        cmdline: Some(["curl", "-s"].map(SafeText::from).into()),
        uid: Some(1000),
        user: Some("alice".into()),
        unit: Some("session-2.scope".into()),
        first_seen_us: 1_700_000_000_000_000,
        last_seen_us: 1_700_000_060_000_000,
        rx_bytes: 58,
        tx_bytes: 26,
        ..bare(1, Proto::Tcp)
    }
}

/// An incoming UDP flow to `dnsmasq` over IPv6 with every key known (an
/// error and the largest byte count included): each optional key of the
/// contract is present, so a key added to the table belongs here too (a
/// test counts them).
pub fn dnsmasq() -> Connection {
    Connection {
        id: 7,
        proto: Proto::Udp,
        ip_proto: Some(17),
        interface: Some("eth0".into()),
        family: Some(6),
        direction: Some(Direction::In),
        state: "open".into(),
        local_addr: "::1".into(),
        local_port: 53,
        remote_addr: "::1".into(),
        remote_port: 40000,
        remote_name: Some("client.example.org".into()),
        name_source: Some(NameSource::Dns),
        pid: Some(99),
        comm: Some("dnsmasq".into()),
        program: Some("dnsmasq".into()),
        exe: Some("/usr/sbin/dnsmasq".into()),
        cmdline: Some(["dnsmasq", "-k"].map(SafeText::from).into()),
        uid: Some(0),
        user: Some("root".into()),
        cgroup: Some("/system.slice/dnsmasq.service".into()),
        unit: Some("dnsmasq.service".into()),
        container: Some("podman:0123456789ab".into()),
        app_id: Some("org.example.App".into()),
        first_seen_us: 1,
        last_seen_us: 2,
        rx_bytes: u64::MAX,
        tx_bytes: 4,
        error: Some("connection refused".into()),
        reason: Some(Reason::CgroupPolicy),
        attempts: Some(u32::MAX),
        novelty: Some(Novelty::Destination),
    }
}
