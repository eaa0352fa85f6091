//! The connection record, as signalled on the bus and printed as JSON.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
    /// Refused, reset, unreachable, timed out, or ended with another error.
    Failed,
}

impl EventKind {
    /// The string on the bus and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::Closed => "closed",
            EventKind::Failed => "failed",
        }
    }

    /// Whether the connection is over after this event.
    pub fn is_final(self) -> bool {
        matches!(self, EventKind::Closed | EventKind::Failed)
    }
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP: one connection per socket.
    Tcp,
    /// UDP: one connection per (socket, peer).
    Udp,
}

impl Proto {
    /// `tcp` / `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
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

/// One connection with everything known about it. Field names are the keys
/// of the bus dictionary and of the JSON objects; `None` fields are left
/// out ("unknown"). What describes the owner is shared (`Arc`): a record is
/// cloned into the table, the backlog and every event about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Unique per boot, stable across service restarts.
    pub id: u64,
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// 4 or 6 (IPv4-mapped IPv6 addresses count as 4).
    pub family: u32,
    /// `out` or `in`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// TCP state (`established`, `syn_sent`, `close_wait`, …, `closed`);
    /// UDP: `open` or `closed`.
    pub state: Cow<'static, str>,
    /// Local address, textual.
    pub local_addr: Arc<str>,
    /// Local port.
    pub local_port: u16,
    /// Remote address, textual.
    pub remote_addr: Arc<str>,
    /// Remote port.
    pub remote_port: u16,
    /// Owning process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Kernel task name of the owner, as seen when the connection was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<Arc<str>>,
    /// Executable path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<Arc<str>>,
    /// Command line, one element per argument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Arc<[String]>>,
    /// Owning user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owning user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Arc<str>>,
    /// cgroup v2 path of the owner (`/user.slice/…/app.scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Arc<str>>,
    /// systemd unit (service or scope) the owner runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Arc<str>>,
    /// Container as `runtime:id12` (docker, podman, containerd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<str>>,
    /// Flatpak application id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<Arc<str>>,
    /// First seen, realtime microseconds since the epoch.
    pub first_seen_us: u64,
    /// Last activity, realtime microseconds since the epoch.
    pub last_seen_us: u64,
    /// Application bytes received.
    pub rx_bytes: u64,
    /// Application bytes sent.
    pub tx_bytes: u64,
    /// Why it failed (`connection refused`, `connection reset`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Arc<str>>,
}
