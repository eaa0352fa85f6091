//! A connection record for unit tests.

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
