//! What the kernel programs report — records from the ring buffer and flows
//! from the flow table — decoded into safe Rust types. Their names say they
//! are the kernel's (`Record…`, `Flow…`), to tell them from the connection
//! events of the bus (leco-proto's `EventKind`, `Proto`, `Direction`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::skel::types;

/// Why a record was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A flow is seen for the first time (TCP: once established and owned).
    New,
    /// Traffic on a known flow, at most once per update interval.
    Update,
    /// A TCP flow ended without an error.
    Closed,
    /// A TCP flow ended with an error, or a UDP peer reported one.
    Failed,
    /// A socket ended without a flow record (a UDP socket was closed, or a
    /// TCP socket whose flow the full flow table had evicted): every flow
    /// of its cookie has ended.
    Released,
    /// This machine's policy stopped an attempt of the flow ([`Flow::blocked`]
    /// says how, [`Flow::attempts`] how often): at once the first time, then
    /// at most once per update interval while attempts go on. The flow goes
    /// on; a blocked flow's end is a `Closed` or `Failed` record.
    Blocked,
}

/// What stopped a blocked attempt: how the kernel named the drop or denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// netfilter (nftables, iptables) dropped or rejected it.
    Firewall,
    /// A cgroup BPF program denied it (egress, connect, sendmsg).
    CgroupPolicy,
    /// A security module's packet hook dropped it.
    Lsm,
}

/// What kind of flow it is. Every kind but TCP is one flow per (socket, peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowProto {
    /// TCP: one flow per socket.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP: a ping socket or a raw ICMP socket.
    Icmp,
    /// ICMPv6: a ping socket or a raw ICMPv6 socket.
    Icmpv6,
    /// SCTP.
    Sctp,
    /// A raw IP socket of another protocol ([`Flow::ip_proto`]).
    Raw,
    /// An `AF_PACKET` socket: frames on [`Flow::interface`]; the remote is
    /// the frame's IP destination, unspecified for a frame that is not IP.
    Packet,
}

impl FlowProto {
    fn from_raw(p: u8) -> Option<FlowProto> {
        Some(match p {
            1 => FlowProto::Icmp,
            6 => FlowProto::Tcp,
            17 => FlowProto::Udp,
            58 => FlowProto::Icmpv6,
            132 => FlowProto::Sctp,
            254 => FlowProto::Raw,
            255 => FlowProto::Packet,
            _ => return None,
        })
    }
}

/// Who started the flow, as far as the kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowDirection {
    /// This host connected or sent first.
    Out,
    /// A peer connected to a listener here, or sent first.
    In,
    /// The flow predates leco; callers may guess from the port numbers.
    Unknown,
}

/// A name the kernel keeps in 16 NUL-padded bytes (a task's `comm`, a
/// device's name): at most 15 bytes, not necessarily UTF-8. Held inline,
/// so decoding a record allocates nothing for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelName {
    bytes: [u8; 15],
    len: u8,
}

impl KernelName {
    /// The name in `raw`, up to its first NUL.
    pub fn new(raw: &[u8]) -> KernelName {
        let mut bytes = [0; 15];
        let len = raw
            .iter()
            .take(15)
            .position(|&c| c == 0)
            .unwrap_or(raw.len().min(15));
        bytes[..len].copy_from_slice(&raw[..len]);
        KernelName {
            bytes,
            len: len as u8,
        }
    }

    /// Its bytes, without padding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::ops::Deref for KernelName {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for KernelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The process that owns a flow, captured in the kernel when it was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Thread id.
    pub tid: u32,
    /// Process id (thread group id); 0 when no process is known yet.
    pub pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// cgroup v2 id (inode number of the cgroup's directory).
    pub cgroup_id: u64,
    /// `comm`.
    pub comm: KernelName,
}

/// Identity of a flow in the kernel's table: the socket cookie plus, for UDP,
/// the peer. Used to look the flow up again or to forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    cookie: u64,
    peer: [u8; 16],
    peer_port: u16,
}

impl FlowKey {
    /// The key of a TCP flow: its socket cookie alone.
    pub fn tcp(cookie: u64) -> FlowKey {
        FlowKey {
            cookie,
            peer: [0; 16],
            peer_port: 0,
        }
    }

    /// The socket cookie: unique per socket for the life of the kernel.
    /// (An inbound blocked attempt has no socket: its cookie is made of what
    /// it aggregates, see [`FlowKey::is_blocked_inbound`].)
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// Whether this is an aggregate of inbound attempts blocked before any
    /// socket was reached (per remote, protocol and local port), kept in
    /// the kernel's `blocked_in` table rather than the flow table.
    pub fn is_blocked_inbound(&self) -> bool {
        self.cookie & BLOCKED_IN_COOKIE != 0
    }

    pub(crate) fn from_raw(k: &types::leco_flow_key) -> FlowKey {
        FlowKey {
            cookie: k.cookie,
            peer: k.raddr,
            peer_port: k.rport,
        }
    }

    pub(crate) fn to_raw(self) -> types::leco_flow_key {
        types::leco_flow_key {
            cookie: self.cookie,
            raddr: self.peer,
            rport: self.peer_port,
            ..Default::default()
        }
    }
}

/// One flow as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Unique per boot, never reused; equal across service restarts.
    pub id: u64,
    /// Key in the kernel's flow table.
    pub key: FlowKey,
    /// The owning process.
    pub owner: Owner,
    /// TCP, UDP, ...
    pub proto: FlowProto,
    /// The IP protocol number of a raw socket's flow, or of the IP packets
    /// in a packet socket's frames.
    pub ip_proto: Option<u8>,
    /// The device a packet socket's frames went out on.
    pub interface: Option<KernelName>,
    /// Out, in or unknown.
    pub direction: FlowDirection,
    /// Local address; IPv4-mapped IPv6 addresses are given as IPv4.
    pub local: IpAddr,
    /// Local port (0 while a TCP connect has not bound one yet).
    pub local_port: u16,
    /// Remote address; unspecified when unknown.
    pub remote: IpAddr,
    /// Remote port.
    pub remote_port: u16,
    /// Network namespace inode.
    pub netns: u32,
    /// TCP state (`tcp_states.h` numbering), `None` for UDP.
    pub tcp_state: Option<u8>,
    /// Whether the TCP handshake completed.
    pub established: bool,
    /// Whether the kernel has announced it (sent its `New`, or a `Blocked`):
    /// one it has not is still an attempt in progress (a TCP connect not
    /// answered yet, datagrams waiting for their socket's owner), which it
    /// will announce or end itself.
    pub announced: bool,
    /// Error number (errno), if the flow failed.
    pub error: Option<i32>,
    /// What of this machine's policy stopped it, if it did.
    pub blocked: Option<BlockReason>,
    /// How many of its attempts policy stopped (0 unless blocked).
    pub attempts: u32,
    /// First seen, CLOCK_BOOTTIME.
    pub first_seen: Duration,
    /// Last activity, CLOCK_BOOTTIME.
    pub last_seen: Duration,
    /// When the kernel last sent a record of it, CLOCK_BOOTTIME: one sent
    /// after the ring was last drained is still to be read (or its loss
    /// counted).
    pub last_record: Duration,
    /// Bytes received: TCP payload as the kernel counts it, else the
    /// datagrams' bytes as read.
    pub rx_bytes: u64,
    /// Bytes sent, likewise.
    pub tx_bytes: u64,
}

/// One record from the kernel's ring buffer.
// Nearly every record is a flow's: boxing it would add an allocation per
// record to the hot path for the sake of the rare `Released`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Something happened to a flow.
    Flow {
        /// What happened.
        kind: RecordKind,
        /// When, CLOCK_BOOTTIME.
        at: Duration,
        /// The flow's state right after it happened.
        flow: Flow,
    },
    /// A socket ended without a flow record (a UDP socket closed, or a TCP
    /// socket whose flow the full flow table had evicted); all its flows
    /// have ended.
    Released {
        /// Cookie of the closed socket.
        cookie: u64,
        /// When, CLOCK_BOOTTIME.
        at: Duration,
    },
    /// A DNS answer reached a socket that asked for it.
    Dns(DnsAnswer),
}

/// A DNS answer (from port 53) as a socket that had asked that server
/// received it: a UDP message whole (cut at [`DNS_MAX`] bytes), or one
/// segment of a TCP stream of length-prefixed messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The asking socket.
    pub cookie: u64,
    /// When it arrived, CLOCK_BOOTTIME.
    pub at: Duration,
    /// The cgroup of the asking socket's owner.
    pub cgroup_id: u64,
    /// How it came.
    pub transport: DnsTransport,
    /// The bytes: a message, or a segment of a stream.
    pub bytes: Vec<u8>,
}

/// How a DNS answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsTransport {
    /// A datagram: one message.
    Udp,
    /// A TCP segment, starting at sequence number `seq` of its stream.
    Tcp {
        /// The segment's first sequence number.
        seq: u32,
    },
}

/// Bytes of a DNS answer the kernel keeps (`LECO_DNS_MAX`).
pub const DNS_MAX: usize = 1232;

/// A record the reader could not make sense of (a leco-bpf bug, reported not hidden).
#[derive(Debug, thiserror::Error)]
#[error("malformed kernel record: {0}")]
pub struct RecordError(String);

/// `LECO_BLOCKED_IN_COOKIE` of leco.h.
const BLOCKED_IN_COOKIE: u64 = 1 << 63;

const FLOW_SIZE: usize = std::mem::size_of::<types::leco_flow>();
/// `struct leco_event`: cookie, ts_ns, flow, kind, 7 bytes padding.
const EVENT_SIZE: usize = 16 + FLOW_SIZE + 8;

/// `struct leco_dns`: cookie, ts_ns, cgroup_id, len, tcp_seq, proto, kind,
/// 6 bytes padding, then `len` bytes of data.
const DNS_HEAD: usize = 40;
/// `LECO_DNS_SPARE`: zeroed bytes a DNS record carries after its data only
/// when it would otherwise be [`EVENT_SIZE`] bytes long.
const DNS_SPARE: usize = 8;

impl Record {
    /// Decodes one ring-buffer record (`struct leco_event` or `struct
    /// leco_dns` in `leco.h`: a DNS record is never [`EVENT_SIZE`] bytes
    /// long).
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() != EVENT_SIZE {
            return decode_dns(bytes);
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_ne_bytes(b)
        };
        let cookie = u64_at(0);
        let at = Duration::from_nanos(u64_at(8));
        let raw = read_pod::<types::leco_flow>(&bytes[16..16 + FLOW_SIZE]);
        let kind = match bytes[16 + FLOW_SIZE] {
            1 => RecordKind::New,
            2 => RecordKind::Update,
            3 => RecordKind::Closed,
            4 => RecordKind::Failed,
            5 => return Ok(Record::Released { cookie, at }),
            6 => RecordKind::Blocked,
            k => return Err(RecordError(format!("unknown kind {k}"))),
        };
        let mut key = FlowKey {
            cookie,
            peer: [0; 16],
            peer_port: 0,
        };
        if cookie & BLOCKED_IN_COOKIE != 0 {
            // Aggregated over the remote's ports: keyed by its address.
            key.peer = raw.raddr;
        } else if raw.proto != libc::IPPROTO_TCP as u8 {
            key.peer = raw.raddr;
            key.peer_port = raw.rport;
        }
        let flow = Flow::from_raw(key, &raw)?;
        Ok(Record::Flow { kind, at, flow })
    }
}

fn decode_dns(bytes: &[u8]) -> Result<Record, RecordError> {
    if bytes.len() < DNS_HEAD {
        return Err(RecordError(format!(
            "{} bytes: neither a flow's record ({EVENT_SIZE}) nor a DNS answer's",
            bytes.len()
        )));
    }
    let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let (proto, kind) = (bytes[32], bytes[33]);
    if kind != 7 {
        return Err(RecordError(format!("DNS record of kind {kind}")));
    }
    let len = u32_at(24) as usize;
    if len > DNS_MAX {
        return Err(RecordError(format!(
            "DNS record of {len} bytes, at most {DNS_MAX}"
        )));
    }
    let sent = DNS_HEAD + len;
    let spared = sent == EVENT_SIZE && bytes.len() == sent + DNS_SPARE;
    if bytes.len() != sent && !spared {
        return Err(RecordError(format!(
            "DNS record of {} bytes for {len} bytes of answer",
            bytes.len()
        )));
    }
    let transport = match i32::from(proto) {
        libc::IPPROTO_UDP => DnsTransport::Udp,
        libc::IPPROTO_TCP => DnsTransport::Tcp { seq: u32_at(28) },
        p => return Err(RecordError(format!("DNS record of protocol {p}"))),
    };
    Ok(Record::Dns(DnsAnswer {
        cookie: u64_at(0),
        at: Duration::from_nanos(u64_at(8)),
        cgroup_id: u64_at(16),
        transport,
        bytes: bytes[DNS_HEAD..DNS_HEAD + len].to_vec(),
    }))
}

impl Flow {
    /// Decodes a value of the kernel's flow table.
    pub(crate) fn from_raw(key: FlowKey, raw: &types::leco_flow) -> Result<Flow, RecordError> {
        let proto = FlowProto::from_raw(raw.proto)
            .ok_or_else(|| RecordError(format!("unknown protocol {}", raw.proto)))?;
        let family = i32::from(raw.family);
        let addr = |b: &[u8; 16]| decode_addr(family, b);
        let packet = proto == FlowProto::Packet;
        let o = &raw.owner;
        let comm = KernelName::new(&o.comm.map(|c| c as u8));
        Ok(Flow {
            id: raw.id,
            key,
            owner: Owner {
                tid: o.pid,
                pid: o.tgid,
                uid: o.uid,
                gid: o.gid,
                cgroup_id: o.cgroup_id,
                comm,
            },
            proto,
            ip_proto: (matches!(proto, FlowProto::Raw | FlowProto::Packet) && raw.ip_proto != 0)
                .then_some(raw.ip_proto),
            interface: packet
                .then(|| KernelName::new(&raw.laddr))
                .filter(|n| !n.is_empty()),
            direction: match raw.direction {
                1 => FlowDirection::Out,
                2 => FlowDirection::In,
                _ => FlowDirection::Unknown,
            },
            local: if packet {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                addr(&raw.laddr)?
            },
            local_port: raw.lport,
            remote: addr(&raw.raddr)?,
            remote_port: raw.rport,
            netns: raw.netns,
            tcp_state: (proto == FlowProto::Tcp).then_some(raw.state),
            established: raw.flags & 4 != 0,
            announced: raw.flags & 1 != 0,
            error: (raw.error != 0).then_some(i32::from(raw.error)),
            blocked: (raw.flags & 8 != 0).then_some(match raw.reason {
                2 => BlockReason::CgroupPolicy,
                3 => BlockReason::Lsm,
                // LECO_R_FIREWALL, and any a newer kernel side adds.
                _ => BlockReason::Firewall,
            }),
            attempts: raw.attempts,
            first_seen: Duration::from_nanos(raw.first_ns),
            last_seen: Duration::from_nanos(raw.last_ns),
            last_record: Duration::from_nanos(raw.last_emit_ns),
            rx_bytes: raw.rx_bytes,
            tx_bytes: raw.tx_bytes,
        })
    }
}

fn decode_addr(family: i32, b: &[u8; 16]) -> Result<IpAddr, RecordError> {
    match family {
        // A packet socket's frame that is not IP has no addresses.
        0 => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        libc::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        // Dual-stack sockets carry IPv4 peers as ::ffff:a.b.c.d; show them as IPv4.
        libc::AF_INET6 => Ok(Ipv6Addr::from(*b).to_canonical()),
        f => Err(RecordError(format!("unknown address family {f}"))),
    }
}

/// Copies a plain-old-data kernel record out of a byte slice of its exact size.
pub(crate) fn read_pod<T: Copy>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), std::mem::size_of::<T>(), "record size");
    // SAFETY: the length matches, read_unaligned tolerates any alignment, and
    // T is only ever one of the skeleton's C structs of integers and integer
    // arrays, for which every bit pattern is a valid value.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Raw bytes of a plain-old-data kernel record, for map keys.
pub(crate) fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is one of the skeleton's padding-free C structs (explicit
    // `_pad` members), so all of its bytes are initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, f: &types::leco_flow) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&42u64.to_ne_bytes());
        v.extend_from_slice(&7_000u64.to_ne_bytes());
        v.extend_from_slice(pod_bytes(f));
        v.push(kind);
        v.extend_from_slice(&[0; 7]);
        v
    }

    #[test]
    fn decodes_a_v4_mapped_udp_flow_as_ipv4() {
        let mut f = types::leco_flow {
            proto: libc::IPPROTO_UDP as u8,
            family: libc::AF_INET6 as u8,
            rport: 53,
            ..Default::default()
        };
        f.raddr[10] = 0xff;
        f.raddr[11] = 0xff;
        f.raddr[12..].copy_from_slice(&[127, 0, 0, 53]);
        f.owner.comm[..4].copy_from_slice(&[b'd' as i8, b'i' as i8, b'g' as i8, 0]);
        let Record::Flow { kind, at, flow } = Record::decode(&record(1, &f)).expect("decodes")
        else {
            panic!("not a flow event");
        };
        assert_eq!(kind, RecordKind::New);
        assert_eq!(at, Duration::from_nanos(7_000));
        assert_eq!(flow.remote, "127.0.0.53".parse::<IpAddr>().expect("addr"));
        assert_eq!(flow.remote_port, 53);
        assert_eq!(flow.owner.comm.as_bytes(), b"dig");
        assert_eq!(flow.key.peer_port, 53, "UDP keys carry the peer");
        assert_eq!(flow.tcp_state, None);
    }

    /// A DNS record as the kernel sends it: `data` after the header, and
    /// `spare` zeroed bytes.
    fn dns_record(len: u32, data: &[u8], spare: usize) -> Vec<u8> {
        let mut raw = vec![0u8; DNS_HEAD];
        raw[0..8].copy_from_slice(&42u64.to_ne_bytes());
        raw[8..16].copy_from_slice(&7_000u64.to_ne_bytes());
        raw[16..24].copy_from_slice(&99u64.to_ne_bytes());
        raw[24..28].copy_from_slice(&len.to_ne_bytes());
        raw[28..32].copy_from_slice(&1234u32.to_ne_bytes());
        raw[32] = libc::IPPROTO_TCP as u8;
        raw[33] = 7;
        raw.extend_from_slice(data);
        raw.resize(raw.len() + spare, 0);
        raw
    }

    #[test]
    fn decodes_dns_answers() {
        let Ok(Record::Dns(a)) = Record::decode(&dns_record(3, b"abc", 0)) else {
            panic!("not a DNS record");
        };
        assert_eq!(
            (a.cookie, a.at, a.cgroup_id, a.transport, &a.bytes[..]),
            (
                42,
                Duration::from_micros(7),
                99,
                DnsTransport::Tcp { seq: 1234 },
                &b"abc"[..]
            )
        );
        // The one length a flow's record has too: sent with spare bytes.
        let n = EVENT_SIZE - DNS_HEAD;
        let data = vec![b'x'; n];
        let Ok(Record::Dns(a)) = Record::decode(&dns_record(n as u32, &data, DNS_SPARE)) else {
            panic!("not a DNS record");
        };
        assert_eq!(a.bytes, data);
        assert_eq!(
            std::mem::size_of::<types::leco_dns>(),
            DNS_HEAD + DNS_MAX + DNS_SPARE,
            "leco.h's struct leco_dns"
        );
        for (what, raw) in [
            ("a length past the data", dns_record(5000, b"abc", 0)),
            ("a length short of the data", dns_record(2, b"abc", 0)),
            (
                "spare bytes where none belong",
                dns_record(3, b"abc", DNS_SPARE),
            ),
            ("shorter than a header", vec![0u8; DNS_HEAD - 1]),
        ] {
            assert!(Record::decode(&raw).is_err(), "{what}");
        }
    }

    #[test]
    fn decodes_blocked_attempts_out_and_in() {
        let mut f = types::leco_flow {
            proto: libc::IPPROTO_TCP as u8,
            family: libc::AF_INET as u8,
            rport: 4444,
            flags: 1 | 8,
            reason: 2,
            attempts: 3,
            ..Default::default()
        };
        let Record::Flow { kind, flow, .. } = Record::decode(&record(6, &f)).expect("decodes")
        else {
            panic!("not a flow event");
        };
        assert_eq!(kind, RecordKind::Blocked);
        assert_eq!(flow.blocked, Some(BlockReason::CgroupPolicy));
        assert_eq!(flow.attempts, 3);
        assert!(!flow.key.is_blocked_inbound());
        assert_eq!(
            flow.key,
            FlowKey::tcp(42),
            "an outbound TCP flow is its socket's"
        );

        // An inbound aggregate: keyed by its cookie and remote address,
        // whatever port the remote sent from.
        f.raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        f.rport = 51000;
        f.reason = 1;
        let mut v = record(6, &f);
        let cookie = BLOCKED_IN_COOKIE | (4026531840u64 << 24) | (6 << 16) | 22;
        v[..8].copy_from_slice(&cookie.to_ne_bytes());
        let Record::Flow { flow, .. } = Record::decode(&v).expect("decodes") else {
            panic!("not a flow event");
        };
        assert!(flow.key.is_blocked_inbound());
        assert_eq!(flow.key.peer_port, 0);
        assert_eq!(flow.key.peer[..4], [10, 0, 0, 2]);
        assert_eq!(flow.remote_port, 51000);
        assert_eq!(flow.blocked, Some(BlockReason::Firewall));
    }

    #[test]
    fn rejects_records_of_the_wrong_size_or_kind() {
        assert!(Record::decode(&[0; 10]).is_err());
        let f = types::leco_flow {
            proto: libc::IPPROTO_TCP as u8,
            family: libc::AF_INET as u8,
            ..Default::default()
        };
        assert!(Record::decode(&record(9, &f)).is_err());
        assert!(matches!(
            Record::decode(&record(5, &f)),
            Ok(Record::Released { cookie: 42, .. })
        ));
    }
}
