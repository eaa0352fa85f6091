//! A kernel flow plus what /proc says, as the connection record clients get.

use std::borrow::Cow;
use std::net::IpAddr;

use leco_bpf::{BlockReason, Flow, FlowDirection, FlowProto};
use leco_proto::{Connection, Direction, Proto, Reason, SafeText};

use crate::clock::WallClock;
use crate::enrich::Enrichment;

/// The local port range (ip_local_port_range): a flow that predates leco
/// and uses a local port in it was most likely opened from here.
#[derive(Debug, Clone, Copy)]
pub struct EphemeralPorts(pub u16, pub u16);

impl EphemeralPorts {
    /// Reads `/proc/sys/net/ipv4/ip_local_port_range` (Linux default if unreadable).
    pub fn read() -> EphemeralPorts {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
                Some(EphemeralPorts(it.next()?.ok()?, it.next()?.ok()?))
            })
            .unwrap_or(EphemeralPorts(32768, 60999))
    }

    fn guess(&self, f: &Flow) -> Direction {
        let ephemeral = |p: u16| (self.0..=self.1).contains(&p);
        if ephemeral(f.local_port) && !ephemeral(f.remote_port) {
            Direction::Out
        } else {
            Direction::In
        }
    }
}

/// TCP state names (include/net/tcp_states.h), as on the bus.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "closed",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        12 => "new_syn_recv",
        _ => "unknown",
    }
}

/// Words for the errors connections end with; others as the C library says.
pub fn error_text(errno: i32) -> String {
    match errno {
        libc::ECONNREFUSED => "connection refused".into(),
        libc::ECONNRESET => "connection reset".into(),
        libc::ETIMEDOUT => "timed out".into(),
        libc::EHOSTUNREACH => "host unreachable".into(),
        libc::ENETUNREACH => "network unreachable".into(),
        libc::EPIPE => "broken pipe".into(),
        libc::ECONNABORTED => "connection aborted".into(),
        libc::EPERM | libc::EACCES => "prohibited".into(),
        e => {
            let s = std::io::Error::from_raw_os_error(e).to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
}

/// The reason an errno stands for, when a connection fails with it.
pub fn failure_reason(errno: i32) -> Reason {
    match errno {
        libc::ECONNREFUSED => Reason::Refused,
        libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => Reason::Reset,
        libc::EHOSTUNREACH
        | libc::ENETUNREACH
        | libc::EHOSTDOWN
        | libc::ENETDOWN
        | libc::ENONET => Reason::Unreachable,
        // Policy here is told by the kernel side as blocked; EACCES on a
        // failure is a remote's ICMPv6 "administratively prohibited".
        libc::EACCES | libc::EPERM => Reason::Prohibited,
        libc::ETIMEDOUT => Reason::TimedOut,
        _ => Reason::Error,
    }
}

/// Why it failed or was blocked, if it did: policy here first (what the
/// program saw, e.g. a reset the local firewall sent, is in `error`), then
/// the error, then a TCP connect that ended unanswered.
fn reason(f: &Flow, ended: bool) -> Option<Reason> {
    if let Some(b) = f.blocked {
        return Some(match b {
            BlockReason::Firewall => Reason::Firewall,
            BlockReason::CgroupPolicy => Reason::CgroupPolicy,
            BlockReason::Lsm => Reason::Lsm,
        });
    }
    if let Some(e) = f.error {
        return Some(failure_reason(e));
    }
    (ended && f.proto == FlowProto::Tcp && !f.established).then_some(Reason::NoReply)
}

/// The human text of why it failed: the error's words, or "no reply".
fn error_words(f: &Flow, reason: Option<Reason>) -> Option<SafeText> {
    match (f.error, reason) {
        (Some(e), _) => Some(error_text(e).into()),
        (None, Some(Reason::NoReply)) => Some("no reply".into()),
        _ => None,
    }
}

fn state_name(f: &Flow, ended: bool) -> &'static str {
    if f.blocked.is_some() {
        return "blocked";
    }
    match f.tcp_state {
        Some(s) => tcp_state_name(s),
        None if ended => "closed",
        None => "open",
    }
}

/// Brings the changing parts of a known connection (state, counters, last
/// activity, error, local endpoint) up to the kernel's view, reusing its
/// allocations: this runs for every update of every flow.
pub fn refresh(c: &mut Connection, f: &Flow, wall: &WallClock, ended: bool) {
    let state = state_name(f, ended);
    c.state = Cow::Borrowed(state);
    if c.local_port != f.local_port && f.proto != FlowProto::Packet {
        c.local_port = f.local_port;
        c.local_addr = f.local.to_string().into();
    }
    c.last_seen_us = wall.realtime_us(f.last_seen);
    c.rx_bytes = f.rx_bytes;
    c.tx_bytes = f.tx_bytes;
    let reason = reason(f, ended);
    if reason.is_some() {
        c.reason = reason;
    }
    if c.error.is_none() {
        c.error = error_words(f, reason);
    }
    if f.attempts > 0 {
        c.attempts = Some(f.attempts);
    }
}

/// Builds the record clients see.
pub fn connection(
    f: &Flow,
    e: &Enrichment,
    wall: &WallClock,
    ports: &EphemeralPorts,
    ended: bool,
) -> Connection {
    let family = |a: &IpAddr| if a.is_ipv4() { 4 } else { 6 };
    let state = Cow::Borrowed(state_name(f, ended));
    let known = |v: u32| (f.owner.pid != 0).then_some(v);
    // An inbound attempt blocked before any socket has no owner, unless the
    // service it aimed at has one: not even a user.
    let unowned = f.key.is_blocked_inbound() && f.owner.pid == 0;
    let reason = reason(f, ended);
    // A packet socket has no local address, and a frame that is not IP no
    // remote one: unknown, not 0.0.0.0.
    let packet = f.proto == FlowProto::Packet;
    let no_remote = packet && f.remote.is_unspecified();
    let text = |a: &IpAddr, none: bool| {
        if none {
            SafeText::default()
        } else {
            a.to_string().into()
        }
    };
    let comm = (!f.owner.comm.is_empty()).then(|| SafeText::from_bytes(&f.owner.comm));
    let cgroup = e.cgroup.as_ref();
    let program = crate::program::program(&crate::program::Facts {
        comm: comm.as_deref(),
        thread: f.owner.tid != 0 && f.owner.tid != f.owner.pid,
        exe: e.proc.exe.as_deref(),
        cmdline: e.proc.cmdline.as_deref(),
        app_id: cgroup.and_then(|c| c.app_id.as_deref()),
        unit: cgroup.and_then(|c| c.unit.as_deref()),
    });
    Connection {
        id: f.id,
        proto: match f.proto {
            FlowProto::Tcp => Proto::Tcp,
            FlowProto::Udp => Proto::Udp,
            FlowProto::Icmp => Proto::Icmp,
            FlowProto::Icmpv6 => Proto::Icmpv6,
            FlowProto::Sctp => Proto::Sctp,
            FlowProto::Raw => Proto::Raw,
            FlowProto::Packet => Proto::Packet,
        },
        ip_proto: f.ip_proto.map(u32::from),
        interface: f.interface.map(|n| SafeText::from_bytes(&n)),
        family: (!no_remote).then(|| family(&f.remote)),
        direction: Some(match f.direction {
            FlowDirection::Out => Direction::Out,
            FlowDirection::In => Direction::In,
            FlowDirection::Unknown => ports.guess(f),
        }),
        state,
        local_addr: text(&f.local, packet),
        local_port: f.local_port,
        remote_addr: text(&f.remote, no_remote),
        remote_port: f.remote_port,
        remote_name: None,
        name_source: None,
        pid: known(f.owner.pid),
        comm,
        program,
        exe: e.proc.exe.clone(),
        cmdline: e.proc.cmdline.clone(),
        uid: (!unowned).then_some(f.owner.uid),
        user: if unowned { None } else { e.user.clone() },
        cgroup: e.cgroup.as_ref().map(|c| c.path.clone()),
        unit: e.cgroup.as_ref().and_then(|c| c.unit.clone()),
        container: e.cgroup.as_ref().and_then(|c| c.container.clone()),
        app_id: e.cgroup.as_ref().and_then(|c| c.app_id.clone()),
        first_seen_us: wall.realtime_us(f.first_seen),
        last_seen_us: wall.realtime_us(f.last_seen),
        rx_bytes: f.rx_bytes,
        tx_bytes: f.tx_bytes,
        error: error_words(f, reason),
        reason,
        attempts: (f.attempts > 0).then_some(f.attempts),
        novelty: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_words() {
        assert_eq!(error_text(libc::ECONNREFUSED), "connection refused");
        assert_eq!(error_text(libc::ENOBUFS), "no buffer space available");
    }

    #[test]
    fn reasons_of_failures() {
        assert_eq!(failure_reason(libc::ECONNREFUSED), Reason::Refused);
        assert_eq!(failure_reason(libc::EHOSTUNREACH), Reason::Unreachable);
        assert_eq!(failure_reason(libc::EACCES), Reason::Prohibited);
        assert_eq!(failure_reason(libc::ETIMEDOUT), Reason::TimedOut);
        assert_eq!(failure_reason(libc::EIO), Reason::Error);
    }

    #[test]
    fn states() {
        assert_eq!(tcp_state_name(1), "established");
        assert_eq!(tcp_state_name(7), "closed");
        assert_eq!(tcp_state_name(99), "unknown");
    }
}
