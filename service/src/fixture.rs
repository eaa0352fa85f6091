//! A connection record, and a kernel flow, for unit tests.

use std::time::Duration;

use leco_bpf::{Flow, FlowDirection, FlowKey, FlowProto, Owner};
use leco_proto::{example, Connection, Direction, Proto};

/// A plain outgoing connection whose times are its id.
pub(crate) fn conn(id: u64, proto: Proto) -> Connection {
    Connection {
        family: Some(4),
        direction: Some(Direction::Out),
        state: "open".into(),
        local_addr: "127.0.0.1".into(),
        local_port: 1,
        remote_addr: "127.0.0.1".into(),
        remote_port: 2,
        pid: Some(1),
        comm: Some("x".into()),
        uid: Some(0),
        first_seen_us: id,
        last_seen_us: id,
        ..example::bare(id, proto)
    }
}

/// The kernel's flow `id` under `key`, towards the peer of [`conn`]'s.
pub(crate) fn flow(id: u64, key: FlowKey, proto: FlowProto) -> Flow {
    Flow {
        id,
        key,
        owner: Owner {
            tid: 1,
            pid: 1,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: leco_bpf::KernelName::new(b"x"),
        },
        proto,
        direction: FlowDirection::Unknown,
        local: [127, 0, 0, 1].into(),
        local_port: 1,
        remote: [127, 0, 0, 1].into(),
        remote_port: 2,
        netns: 0,
        ip_proto: None,
        interface: None,
        tcp_state: (proto == FlowProto::Tcp).then_some(1),
        established: proto == FlowProto::Tcp,
        announced: true,
        error: None,
        blocked: None,
        attempts: 0,
        first_seen: Duration::ZERO,
        last_seen: Duration::ZERO,
        last_record: Duration::ZERO,
        rx_bytes: 0,
        tx_bytes: 0,
    }
}
