//! Following leco-service on a bus, for every client of it (the overlay,
//! the notification bridge): `Snapshot()` whenever the service
//! (re)appears, then its `ConnectionEvent` signals, across restarts of the
//! service and of the bus itself, each told to a [`Sink`] as a
//! [`BusEvent`].
//!
//! Order matters at start and at every reappearance of the service: the
//! client subscribes to `ConnectionEvent` and to `NameOwnerChanged` first,
//! and only then asks for the snapshot, so an event sent in between is
//! never lost (at worst it arrives twice, which the model absorbs).
//!
//! Calls go through leco-proto's [`OverseerProxy`] and zbus's
//! [`DBusProxy`]; the two signals are read from match-rule streams of our
//! own (see `session`) and decoded with their typed forms.

use std::time::Duration;

use futures_util::StreamExt;
use leco_proto::proxy::{connection_event_rule, ConnectionEvent};
use leco_proto::{Connection, EventKind, OverseerProxy, BUS_NAME};
use zbus::fdo::{DBusProxy, NameOwnerChanged};
use zbus::message::Type as MsgType;
use zbus::names::BusName;
use zbus::proxy::CacheProperties;
use zbus::{MatchRule, MessageStream, OwnedMatchRule};

/// What the follower tells its [`Sink`].
#[derive(Debug)]
pub enum BusEvent {
    /// The service's `Snapshot()`: live connections and recently ended ones,
    /// oldest first. Lines already shown stay; these are added or updated.
    Snapshot(Vec<Connection>),
    /// One `ConnectionEvent` signal (boxed: a record is large, and most
    /// events of a busy machine wait in the channel).
    Event(EventKind, Box<Connection>),
    /// The state of the link to the service changed.
    Status(BusStatus),
}

/// How the overlay stands with the service, as the status line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusStatus {
    /// Connected and subscribed: no status line.
    Connected,
    /// The bus is there but nobody owns `org.leco.Overseer1`.
    ServiceAbsent,
    /// The bus policy refused us: the user is not in group `leco`.
    AccessDenied,
    /// The bus itself cannot be reached (it is retried with a back-off).
    BusUnreachable(String),
}

impl BusStatus {
    /// The status line for this state, if any.
    pub fn message(&self) -> Option<String> {
        match self {
            BusStatus::Connected => None,
            BusStatus::ServiceAbsent => Some("leco-service is not running".to_owned()),
            BusStatus::AccessDenied => Some(
                "access denied: add yourself to group leco: sudo usermod -aG leco $USER, \
                 then log in again"
                    .to_owned(),
            ),
            BusStatus::BusUnreachable(why) => Some(format!("cannot reach the D-Bus bus: {why}")),
        }
    }
}

/// Where the client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus (the real service lives there).
    System,
    /// A bus address such as `unix:path=/tmp/bus` (tests, development).
    Address(String),
}

/// Where a follower's news go.
pub trait Sink {
    /// Takes one event; false once nobody wants more (the follower ends).
    fn send(&mut self, ev: BusEvent) -> bool;
}

/// Shortest and longest pause before reconnecting to a bus that went away
/// or never answered.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Bound on every method call (a service that hangs must not hang us).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals queued while a snapshot is in flight: 20 s worth at the
/// service's default signal rate of the busiest moments we expect.
const QUEUE: usize = 4096;

/// Follows the service on the bus at `address` until `sink` wants no
/// more: connects, subscribes, takes snapshots and reconnects on its own.
pub async fn follow(address: BusAddress, mut sink: impl Sink) {
    let mut pause = RETRY_MIN;
    let mut last_status = None;
    loop {
        let status = match connect(&address).await {
            Ok(conn) => {
                pause = RETRY_MIN;
                match session(&conn, &mut sink, &mut last_status).await {
                    Ok(Ended::Sink) => return,
                    Ok(Ended::Bus) => {
                        tracing::warn!("the bus connection closed; reconnecting");
                        BusStatus::BusUnreachable("connection closed".to_owned())
                    }
                    Err(e) => {
                        tracing::warn!("bus session ended: {e}; reconnecting");
                        BusStatus::BusUnreachable(e.to_string())
                    }
                }
            }
            Err(e) => {
                tracing::warn!("cannot connect to the bus: {e}; retrying in {pause:?}");
                BusStatus::BusUnreachable(e.to_string())
            }
        };
        if !set_status(&mut sink, &mut last_status, status) {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

async fn connect(address: &BusAddress) -> zbus::Result<zbus::Connection> {
    let builder = match address {
        BusAddress::System => zbus::connection::Builder::system()?,
        BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str())?,
    };
    builder.method_timeout(CALL_TIMEOUT).build().await
}

/// Why a session ended without an error.
enum Ended {
    /// The sink wants no more.
    Sink,
    /// The bus connection closed.
    Bus,
}

fn set_status(sink: &mut impl Sink, last: &mut Option<BusStatus>, status: BusStatus) -> bool {
    if last.as_ref() == Some(&status) {
        return true;
    }
    match status.message() {
        Some(m) => tracing::info!("status: {m}"),
        None => tracing::info!("connected to leco-service"),
    }
    *last = Some(status.clone());
    sink.send(BusEvent::Status(status))
}

async fn session(
    conn: &zbus::Connection,
    sink: &mut impl Sink,
    last_status: &mut Option<BusStatus>,
) -> zbus::Result<Ended> {
    let overseer = OverseerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let dbus = DBusProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    // Subscribe before anything else: see the module's doc. Not through
    // the proxies' streams: those queue 64 messages (see
    // leco_proto::proxy::connection_event_rule) and swallow the error a
    // broken connection ends with, which the status line shows.
    let mut events =
        MessageStream::for_match_rule(connection_event_rule()?, conn, Some(QUEUE)).await?;
    let mut owners = MessageStream::for_match_rule(owner_rule()?, conn, Some(64)).await?;

    // The unique name events must come from: signals from anyone else who
    // merely uses our interface name are ignored.
    let mut owner = current_owner(&dbus).await?;
    if owner.is_some() {
        let status = snapshot(&overseer, sink).await?;
        if !set_status(sink, last_status, status) {
            return Ok(Ended::Sink);
        }
    } else if !set_status(sink, last_status, BusStatus::ServiceAbsent) {
        return Ok(Ended::Sink);
    }

    loop {
        tokio::select! {
            msg = events.next() => {
                let Some(msg) = msg else { return Ok(Ended::Bus) };
                if !forward_event(msg?, owner.as_deref(), sink) {
                    return Ok(Ended::Sink);
                }
            }
            msg = owners.next() => {
                let Some(msg) = msg else { return Ok(Ended::Bus) };
                let Some(new) = new_owner(msg?) else {
                    continue;
                };
                let status = match new {
                    None => {
                        owner = None;
                        BusStatus::ServiceAbsent
                    }
                    Some(new) => {
                        tracing::info!("leco-service appeared as {new}; taking a snapshot");
                        owner = Some(new);
                        snapshot(&overseer, sink).await?
                    }
                };
                if !set_status(sink, last_status, status) {
                    return Ok(Ended::Sink);
                }
            }
        }
    }
}

/// Passes on a `ConnectionEvent` sent by `owner` (the service); others'
/// are dropped. False once the sink wants no more.
fn forward_event(msg: zbus::Message, owner: Option<&str>, sink: &mut impl Sink) -> bool {
    let header = msg.header();
    let sender = header.sender().map(|s| s.as_str());
    if owner.is_none() || sender != owner {
        return true;
    }
    match decode_event(msg) {
        Ok((kind, c)) => sink.send(BusEvent::Event(kind, Box::new(c))),
        // A newer service may send kinds or values we do not know; the
        // rest still counts.
        Err(e) => {
            tracing::debug!("ignoring a ConnectionEvent: {e}");
            true
        }
    }
}

/// Every `NameOwnerChanged` of `org.leco.Overseer1`, from the bus.
fn owner_rule() -> zbus::Result<OwnedMatchRule> {
    Ok(MatchRule::builder()
        .msg_type(MsgType::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameOwnerChanged")?
        .arg(0, BUS_NAME)?
        .build()
        .into())
}

/// The new owner a `NameOwnerChanged` names (None: nobody owns the name
/// now); None for a message that does not read as one.
fn new_owner(msg: zbus::Message) -> Option<Option<String>> {
    let signal = NameOwnerChanged::from_message(msg)?;
    let args = signal.args().ok()?;
    Some(args.new_owner().as_ref().map(|n| n.to_string()))
}

/// The unique name owning `org.leco.Overseer1`, None when nobody does.
async fn current_owner(dbus: &DBusProxy<'_>) -> zbus::Result<Option<String>> {
    match dbus
        .get_name_owner(BusName::from_static_str(BUS_NAME)?)
        .await
    {
        Ok(name) => Ok(Some(name.to_string())),
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Calls `Snapshot()` and passes its result on. Errors that say something
/// about the service (absent, access denied) become a status; only a
/// failing bus is an error.
async fn snapshot(overseer: &OverseerProxy<'_>, sink: &mut impl Sink) -> zbus::Result<BusStatus> {
    let dicts = match overseer.snapshot().await {
        Ok(d) => d,
        Err(zbus::Error::MethodError(name, text, _)) => {
            let name = name.as_str();
            tracing::debug!("Snapshot() failed: {name}: {}", text.unwrap_or_default());
            return Ok(match name {
                "org.freedesktop.DBus.Error.AccessDenied" => BusStatus::AccessDenied,
                // Gone between its appearance and our call: the next
                // NameOwnerChanged tells when it is back.
                _ => BusStatus::ServiceAbsent,
            });
        }
        Err(zbus::Error::InputOutput(e)) => return Err(zbus::Error::InputOutput(e)),
        // The reply came but is not aa{sv}: the only error of reading it.
        Err(zbus::Error::Variant(e)) => {
            tracing::warn!("Snapshot() returned something else than aa{{sv}}: {e}");
            return Ok(BusStatus::Connected);
        }
        Err(e) => {
            // A timeout or a reply we cannot read: the service is there but
            // not usable; say so like an absence and wait for it to restart.
            tracing::warn!("Snapshot() failed: {e}");
            return Ok(BusStatus::ServiceAbsent);
        }
    };
    let conns: Vec<Connection> = dicts
        .iter()
        .filter_map(|d| {
            Connection::from_dict(d)
                .inspect_err(|e| tracing::debug!("ignoring a snapshot entry: {e}"))
                .ok()
        })
        .collect();
    tracing::debug!(
        "snapshot: {} connections ({} undecodable)",
        conns.len(),
        dicts.len() - conns.len()
    );
    sink.send(BusEvent::Snapshot(conns));
    Ok(BusStatus::Connected)
}

/// The kind and connection a `ConnectionEvent` carries.
fn decode_event(msg: zbus::Message) -> Result<(EventKind, Connection), String> {
    let signal = ConnectionEvent::from_message(msg).ok_or("not a ConnectionEvent")?;
    let args = signal
        .args()
        .map_err(|e| format!("not (s, a{{sv}}): {e}"))?;
    let kind = args
        .kind()
        .parse::<EventKind>()
        .map_err(|e| e.to_string())?;
    let c = Connection::from_dict(args.connection()).map_err(|e| e.to_string())?;
    Ok((kind, c))
}
