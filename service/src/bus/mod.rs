//! Serving connections on D-Bus: the `org.leco.Overseer1` interface, its
//! `ConnectionEvent` signal under a rate bound, and snapshots of the table.
//!
//! The monitor loop owns the connection table; the snapshot methods ask it
//! for the records over a channel, so the hot path takes no lock, and
//! share the replies ([`replies`]). Signals leave through a queue that
//! merges events per connection ([`signals`]): when the bus or the rate
//! bound holds them back, a connection's pending events collapse into one
//! carrying its latest state (counted as coalesced), and the table still
//! has everything for `Snapshot()`.

mod history;
mod object;
mod replies;
mod signals;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt;
use leco_proto::{Connection, Dict, Dicts, BUS_NAME, OBJECT_PATH};
use tokio::sync::{mpsc, oneshot};
use zbus::fdo::{RequestNameFlags, RequestNameReply};
use zbus::object_server::SignalEmitter;
use zbus::MessageStream;

pub use signals::SignalQueue;

use crate::stats::Stats;

/// What the interface asks the monitor loop.
#[derive(Debug)]
pub enum Request {
    /// Live connections, then the backlog (oldest first), weighing at most
    /// `budget` (the table's `weight`), and how many were left out.
    Snapshot {
        /// Most the records may weigh.
        budget: usize,
        /// Where the answer goes.
        reply: oneshot::Sender<(Vec<Connection>, usize)>,
    },
}

/// The D-Bus interface: what zbus introspects and serves, its snapshot
/// methods answered by [`replies::Replies`] (see [`object::Served`]).
#[derive(Debug)]
pub struct Overseer {
    stats: Arc<Stats>,
    history: history::History,
}

/// A call that [`object::Served`] answers before it gets here.
fn answered_elsewhere() -> zbus::fdo::Error {
    zbus::fdo::Error::Failed("Snapshot is answered by the object, not the interface".into())
}

/// Connections on this machine, as seen by leco's eBPF programs.
#[zbus::interface(name = "org.leco.Overseer1")]
impl Overseer {
    /// Live connections, then recently ended ones (the backlog), oldest
    /// first: what a client that starts now needs to show the same picture
    /// as one that was listening all along.
    async fn snapshot(&self) -> zbus::fdo::Result<Dicts> {
        Err(answered_elsewhere())
    }

    /// Like Snapshot, limited to connections active at or after `since_us`
    /// (realtime microseconds, as in `last_seen_us`): for a client that
    /// reconnects and already has the rest.
    async fn snapshot_since(&self, since_us: u64) -> zbus::fdo::Result<Dicts> {
        let _ = since_us;
        Err(answered_elsewhere())
    }

    /// Connections that ended between `since_us` and `until_us` (realtime
    /// microseconds, as in `last_seen_us`; 0 and 18446744073709551615 for
    /// all), newest first, at most `limit` (and 10000, and what fits a 4 MiB
    /// reply): from the store, so across restarts, for as long as the
    /// `retention` setting keeps them.
    async fn history(&self, since_us: u64, until_us: u64, limit: u32) -> zbus::fdo::Result<Dicts> {
        self.history.history(since_us, until_us, limit).await
    }

    /// What connections that ended since `since_us` moved, by `group_by`:
    /// "program", "unit", "user" or "remote" (the remote's name, else its
    /// address). Each group: its key under that name (absent when the
    /// connections had none), `connections` (t), `rx_bytes` (t),
    /// `tx_bytes` (t), `first_seen_us` (t) and `last_seen_us` (t); the most
    /// bytes first, at most 10000 groups.
    async fn totals(
        &self,
        since_us: u64,
        group_by: &str,
    ) -> zbus::fdo::Result<Vec<history::TotalDict>> {
        self.history.totals(since_us, group_by).await
    }

    /// A connection was seen (`new`), moved traffic or changed (`update`),
    /// ended (`closed`), did not go through because of the other side or
    /// the network (`failed`) or because of this machine's policy
    /// (`blocked`, told again with its `attempts` while it keeps trying);
    /// `reason` says why. `kind` comes first so that match rules can filter
    /// on it (`arg0='new'`, `arg0='blocked'`).
    #[zbus(signal)]
    async fn connection_event(
        emitter: &SignalEmitter<'_>,
        kind: &str,
        connection: Dict<'_>,
    ) -> zbus::Result<()>;

    /// leco's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// ConnectionEvent signals sent since the service started.
    #[zbus(property(emits_changed_signal = "false"))]
    fn events_emitted(&self) -> u64 {
        self.stats.signals.load(Ordering::Relaxed)
    }

    /// Events not signalled on their own, to bound the signal rate: merged
    /// into a later event of the same connection (which carries its latest
    /// state). Snapshot() still has every connection.
    #[zbus(property(emits_changed_signal = "false"))]
    fn coalesced(&self) -> u64 {
        self.stats.coalesced.load(Ordering::Relaxed)
    }

    /// Records the kernel could not queue because its ring buffer was
    /// full; the service recovered the connections from the kernel's table.
    #[zbus(property(emits_changed_signal = "false"))]
    fn kernel_drops(&self) -> u64 {
        self.stats.kernel_drops.load(Ordering::Relaxed)
    }

    /// Live connections tracked now.
    #[zbus(property(emits_changed_signal = "false"))]
    fn tracked(&self) -> u64 {
        self.stats.tracked.load(Ordering::Relaxed)
    }

    /// Connections left out of Snapshot() replies, the least recently
    /// active first, to keep each reply under 4 MiB.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trimmed(&self) -> u64 {
        self.stats.trimmed.load(Ordering::Relaxed)
    }
}

/// Which bus to serve.
#[derive(Debug, Clone)]
pub enum BusTarget {
    /// The system bus.
    System,
    /// The session bus of the user running the service.
    Session,
    /// A bus at this address (tests, development).
    Address(String),
}

/// The service on the bus: the connection, and the watch on losing it.
#[derive(Debug)]
pub struct Served {
    /// The connection the object is served on.
    pub conn: zbus::Connection,
    name_lost: MessageStream,
}

impl Served {
    /// Completes when the service no longer serves: its name was taken
    /// from it, or the bus connection ended (dbus-daemon restarted or
    /// died). Says which; the caller stops with an error, so that systemd
    /// starts it again.
    pub async fn lost(mut self) -> String {
        match self.name_lost.next().await {
            Some(Ok(_)) => format!("lost the name {BUS_NAME} on the bus to another connection"),
            Some(Err(e)) => format!("lost the bus: {e}"),
            None => "lost the bus: the connection to it closed".to_owned(),
        }
    }
}

/// Connects, serves the object, and only then requests the name, so that a
/// client activated by the name never finds it without the object. The
/// name is owned outright: not replaceable and not queued for, so a second
/// leco-service (or anyone the policy lets own it) cannot take it over
/// silently, and one that finds it owned says by whom and stops.
pub async fn serve(
    target: &BusTarget,
    requests: mpsc::Sender<Request>,
    stats: Arc<Stats>,
    store: Option<std::path::PathBuf>,
) -> anyhow::Result<Served> {
    let builder = match target {
        BusTarget::System => zbus::connection::Builder::system(),
        BusTarget::Session => zbus::connection::Builder::session(),
        BusTarget::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
    .context("choosing the bus")?;
    let replies = Arc::new(replies::Replies::new(requests, Arc::clone(&stats)));
    let history = history::History::new(store.as_deref());
    let object = object::Served::new(Overseer { stats, history }, replies);
    let conn = builder
        .serve_at(OBJECT_PATH, object)?
        .build()
        .await
        .with_context(|| format!("connecting to the {target} bus"))?;
    // Watched from before the request, so that no loss goes unseen.
    let name_lost = MessageStream::for_match_rule(name_lost_rule()?, &conn, Some(8))
        .await
        .context("watching for the loss of the bus name")?;
    let reply = conn
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await;
    match reply {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {
            Ok(Served { conn, name_lost })
        }
        // zbus turns the bus's "exists" into an error of its own.
        Ok(RequestNameReply::Exists | RequestNameReply::InQueue) | Err(zbus::Error::NameTaken) => {
            anyhow::bail!(
                "{BUS_NAME} is already served on the {target} bus by {}: another leco-service \
                 is running; stop it first",
                owner_of_name(&conn).await
            )
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "owning {BUS_NAME} on the {target} bus (does the bus policy \
                 dbus-policy/org.leco.Overseer1.conf allow this user?)"
            )
        }),
    }
}

/// `NameLost` for our name, from the bus itself.
fn name_lost_rule() -> zbus::Result<zbus::MatchRule<'static>> {
    Ok(zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameLost")?
        .arg(0, BUS_NAME)?
        .build())
}

/// Who owns the bus name, for the message: its unique name and process id.
async fn owner_of_name(conn: &zbus::Connection) -> String {
    let describe = async {
        let dbus = zbus::fdo::DBusProxy::new(conn).await?;
        let name = zbus::names::BusName::from_static_str(BUS_NAME)?;
        let owner = dbus.get_name_owner(name).await?;
        let pid = dbus
            .get_connection_unix_process_id(owner.clone().into())
            .await?;
        Ok::<_, zbus::Error>(format!("{owner} (pid {pid})"))
    };
    describe
        .await
        .unwrap_or_else(|e| format!("another connection ({e})"))
}

impl std::fmt::Display for BusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusTarget::System => f.write_str("system"),
            BusTarget::Session => f.write_str("session"),
            BusTarget::Address(a) => write!(f, "`{a}`"),
        }
    }
}
