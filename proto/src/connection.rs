//! The connection record, as signalled on the bus and printed as JSON.

use std::borrow::Cow;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::keys::{connection_keys, Field};
use crate::text::SafeText;

/// What happened to a connection. Sent first, as a plain string, so that bus
/// match rules can filter on it (`arg0='new'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Seen for the first time.
    New,
    /// Traffic or state changed (at most once per update interval).
    Update,
    /// Ended normally.
    Closed,
    /// Did not go through, stopped by the other side or the network:
    /// refused, reset, unreachable, prohibited, timed out, no reply
    /// (`reason`).
    Failed,
    /// Did not go through, stopped by this machine's policy: its firewall,
    /// a cgroup program, a security module (`reason`). A connection that
    /// keeps trying is blocked again, at most once per update interval,
    /// with its `attempts` so far: the same `id`, the latest count.
    Blocked,
}

impl EventKind {
    /// The string on the bus and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::Closed => "closed",
            EventKind::Failed => "failed",
            EventKind::Blocked => "blocked",
        }
    }

    /// Whether the connection is over after this event: it ended, or it
    /// never went through (a blocked one may be told again, with more
    /// attempts).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::Closed | EventKind::Failed | EventKind::Blocked
        )
    }

    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::New,
        EventKind::Update,
        EventKind::Closed,
        EventKind::Failed,
        EventKind::Blocked,
    ];
}

/// Why a connection failed or was blocked: a small fixed set, so that rules
/// and colours can match it. The human text is in `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Failed: the other side refused (a TCP reset to a connect, ICMP port
    /// unreachable).
    Refused,
    /// Failed: the other side reset or aborted an open connection.
    Reset,
    /// Failed: no route, host or network unreachable (an IPv4 ICMP
    /// "administratively prohibited" from a remote firewall says this too).
    Unreachable,
    /// Failed: a remote firewall said prohibited (ICMPv6 administratively
    /// prohibited, EACCES).
    Prohibited,
    /// Failed: the kernel gave up retrying.
    TimedOut,
    /// Failed: a connect that never got an answer before the program gave
    /// up.
    NoReply,
    /// Failed with another error (`error` says which).
    Error,
    /// Blocked by this machine's firewall (nftables, iptables).
    Firewall,
    /// Blocked by a cgroup BPF program (a per-app firewall).
    CgroupPolicy,
    /// Blocked by a security module.
    Lsm,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 10] = [
        Reason::Refused,
        Reason::Reset,
        Reason::Unreachable,
        Reason::Prohibited,
        Reason::TimedOut,
        Reason::NoReply,
        Reason::Error,
        Reason::Firewall,
        Reason::CgroupPolicy,
        Reason::Lsm,
    ];

    /// The word on the bus and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::Reset => "reset",
            Reason::Unreachable => "unreachable",
            Reason::Prohibited => "prohibited",
            Reason::TimedOut => "timed-out",
            Reason::NoReply => "no-reply",
            Reason::Error => "error",
            Reason::Firewall => "firewall",
            Reason::CgroupPolicy => "cgroup-policy",
            Reason::Lsm => "lsm",
        }
    }

    /// How a person reads it after "blocked by" or "failed:", e.g.
    /// "firewall", "no reply".
    pub fn words(self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::Reset => "reset",
            Reason::Unreachable => "unreachable",
            Reason::Prohibited => "prohibited",
            Reason::TimedOut => "timed out",
            Reason::NoReply => "no reply",
            Reason::Error => "error",
            Reason::Firewall => "firewall",
            Reason::CgroupPolicy => "cgroup policy",
            Reason::Lsm => "security module",
        }
    }

    /// Whether it is this machine's policy (a `blocked` reason) rather than
    /// the other side's or the network's (a `failed` one).
    pub fn is_local_policy(self) -> bool {
        matches!(self, Reason::Firewall | Reason::CgroupPolicy | Reason::Lsm)
    }
}

/// Where a connection's `remote_name` was learnt: always a lookup this
/// machine made moments before, never a reverse lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// systemd-resolved's monitor: every lookup made through it, answers
    /// from its cache included.
    Resolved,
    /// A DNS answer this machine received (UDP or TCP port 53).
    Dns,
}

impl NameSource {
    /// Every source.
    pub const ALL: [NameSource; 2] = [NameSource::Resolved, NameSource::Dns];

    /// `resolved` / `dns`.
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Resolved => "resolved",
            NameSource::Dns => "dns",
        }
    }
}

/// What is new about a connection, on this machine: told on its `new`
/// event (and kept in its record), decided from what leco-service
/// remembers across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Novelty {
    /// Its program never used the network before.
    Program,
    /// Its program did, but never with this destination (remote name, else
    /// address; port and protocol).
    Destination,
}

impl Novelty {
    /// Every novelty.
    pub const ALL: [Novelty; 2] = [Novelty::Program, Novelty::Destination];

    /// `program` / `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            Novelty::Program => "program",
            Novelty::Destination => "destination",
        }
    }
}

/// What kind of connection: the transport, or the kind of socket. Every
/// kind but TCP is one connection per (socket, peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP: one connection per socket.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo and the rest: a ping socket or a raw ICMP socket.
    Icmp,
    /// ICMPv6, likewise.
    Icmpv6,
    /// SCTP.
    Sctp,
    /// A raw IP socket of another protocol (`ip_proto`).
    Raw,
    /// An `AF_PACKET` socket's frames (`interface`; the remote is the
    /// frame's IP destination, when it is an IP packet).
    Packet,
}

impl Proto {
    /// Every protocol.
    pub const ALL: [Proto; 7] = [
        Proto::Tcp,
        Proto::Udp,
        Proto::Icmp,
        Proto::Icmpv6,
        Proto::Sctp,
        Proto::Raw,
        Proto::Packet,
    ];

    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `raw`, `packet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
            Proto::Sctp => "sctp",
            Proto::Raw => "raw",
            Proto::Packet => "packet",
        }
    }

    /// Whether it has ports (TCP, UDP, SCTP).
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp | Proto::Sctp)
    }
}

/// Who initiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This host connected (or sent first).
    Out,
    /// A peer connected here (or sent first).
    In,
}

impl Direction {
    /// Every direction.
    pub const ALL: [Direction; 2] = [Direction::Out, Direction::In];

    /// `out` / `in`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }
}

connection_keys! {
    /// One connection with everything known about it: the contract's table
    /// of keys. Each field is a key of the bus dictionary and of the JSON
    /// objects, with its D-Bus type given by the field's type; the first doc
    /// line of a field is its contract, as the interface XML and the README
    /// show it. Unknown values are left out: `None`, an empty text. Texts
    /// are [`SafeText`]: escaped by construction.
    ///
    /// What describes the owner is shared (`Arc`): a record is cloned into
    /// the table, the backlog and every event about it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Connection {
        /// unique while the kernel objects stay loaded (a boot, or until
        /// the service is stopped), and so across restarts of the service
        id: u64, required;
        /// "tcp", "udp", "icmp", "icmpv6", "sctp", "raw" (another IP
        /// protocol: `ip_proto`) or "packet" (an AF_PACKET socket's frames);
        /// all but TCP are one connection per socket and peer
        proto: Proto;
        /// the IP protocol number of a "raw" connection, or of the IP
        /// packets in a "packet" connection's frames
        ip_proto: Option<u32>;
        /// the network device a "packet" connection's frames went out on
        interface: Option<SafeText>;
        /// 4 or 6 (IPv4-mapped IPv6 addresses count as 4)
        family: Option<u32>;
        /// "out" (this host connected or sent first) or "in"
        direction: Option<Direction>;
        /// TCP: "established", "syn_sent", ..., "closed"; UDP: "open" or
        /// "closed"
        state: Cow<'static, str>;
        /// local address, textual
        local_addr: SafeText;
        /// local port
        local_port: u16;
        /// remote address, textual
        remote_addr: SafeText;
        /// remote port
        remote_port: u16;
        /// the name this machine looked up moments before and got the
        /// remote address for (a CNAME chain's first name), e.g.
        /// "example.org"; never a reverse lookup
        remote_name: Option<SafeText>;
        /// where `remote_name` was learnt: "resolved" (systemd-resolved) or
        /// "dns" (a DNS answer received)
        name_source: Option<NameSource>;
        /// owning process id
        pid: Option<u32>;
        /// the owner's kernel task name when the connection was made
        comm: Option<SafeText>;
        /// the best short name of what is running: the script or module an
        /// interpreter runs ("http.server", "app.jar"), a Flatpak app id,
        /// else the executable's or the task's name
        program: Option<SafeText>;
        /// executable path
        exe: Option<SafeText>;
        /// command line, one element per argument
        cmdline: Option<Arc<[SafeText]>>;
        /// owning user id
        uid: Option<u32>;
        /// owning user name
        user: Option<SafeText>;
        /// cgroup v2 path, e.g. /user.slice/.../app-firefox-42.scope
        cgroup: Option<SafeText>;
        /// systemd unit (service or scope; else the slice)
        unit: Option<SafeText>;
        /// "docker:0123456789ab", "podman:...", "containerd:...", "cri-o:..."
        container: Option<SafeText>;
        /// Flatpak application id
        app_id: Option<SafeText>;
        /// first seen, realtime microseconds since the epoch
        first_seen_us: u64;
        /// last activity, realtime microseconds since the epoch
        last_seen_us: u64;
        /// bytes received: for TCP the payload the kernel counted (every
        /// path: read, splice, io_uring, ...); else the datagrams' bytes
        rx_bytes: u64;
        /// bytes sent, likewise (TCP: retransmissions not counted again)
        tx_bytes: u64;
        /// why it failed, e.g. "connection refused", "connection reset",
        /// "timed out", "host unreachable"
        error: Option<SafeText>;
        /// failed: "refused", "reset", "unreachable", "prohibited",
        /// "timed-out", "no-reply" or "error"; blocked: "firewall",
        /// "cgroup-policy" or "lsm"
        reason: Option<Reason>;
        /// blocked: how many of its attempts this machine's policy stopped
        attempts: Option<u32>;
        /// what has never happened before on this machine: "program" (its
        /// program never used the network) or "destination" (the program
        /// never talked to this remote, port and protocol)
        novelty: Option<Novelty>;
    }
}

/// The JSON object: the keys in the contract's order, unknown ones left
/// out, texts as strings and `cmdline` as an array.
impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for key in Connection::KEYS {
            let Some(value) = key.get(self) else {
                continue;
            };
            match value {
                Field::U16(v) => map.serialize_entry(key.name(), &v)?,
                Field::U32(v) => map.serialize_entry(key.name(), &v)?,
                Field::U64(v) => map.serialize_entry(key.name(), &v)?,
                Field::Str(s) => map.serialize_entry(key.name(), s)?,
                Field::Strs(items) => map.serialize_entry(key.name(), items)?,
            }
        }
        map.end()
    }
}
