//! The client side of `org.leco.Overseer1`: one zbus proxy for every bus
//! client (the overlay, a notification bridge, a CLI), so that none of
//! them spells member names, argument types or flags on its own.
//!
//! zbus's macro wants the names as literals; a test keeps them equal to
//! [`BUS_NAME`](crate::BUS_NAME), [`INTERFACE`](crate::INTERFACE) and
//! [`OBJECT_PATH`](crate::OBJECT_PATH).
//!
//! Dictionaries come as zbus decodes them (`a{sv}` into a map of owned
//! values) and become records through
//! [`Connection::from_dict`](crate::Connection::from_dict), one by one: a
//! snapshot entry a newer service fills in a way this version cannot read
//! costs that entry, not the snapshot.
//!
//! The counters change without a `PropertiesChanged` signal (as the
//! interface says), so the proxy never caches them: each read asks the
//! service. `Version` is constant: a proxy that caches properties reads
//! it once.
//!
//! Method calls are sent as plain calls, which the bus may answer by
//! starting the service (D-Bus activation) as it would for `busctl`. Only
//! the asynchronous proxy is made (`gen_blocking = false`): the workspace
//! builds zbus without its blocking API.

use std::collections::HashMap;

use zbus::message::Type;
use zbus::zvariant::OwnedValue;
use zbus::{MatchRule, OwnedMatchRule};

use crate::{INTERFACE, OBJECT_PATH};

/// `org.leco.Overseer1` at `/org/leco/Overseer1` on the bus name
/// `org.leco.Overseer1`; zbus makes [`OverseerProxy`] of it. The
/// documentation of each member is in the interface's introspection XML
/// ([`INTROSPECTION_XML`](crate::INTROSPECTION_XML)).
#[zbus::proxy(
    interface = "org.leco.Overseer1",
    default_service = "org.leco.Overseer1",
    default_path = "/org/leco/Overseer1",
    gen_blocking = false
)]
pub trait Overseer {
    /// `Snapshot() → aa{sv}`: live connections, then recently ended ones,
    /// oldest first.
    fn snapshot(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    /// `SnapshotSince(t since_us) → aa{sv}`: the same, limited to
    /// connections active at or after `since_us` (realtime µs).
    fn snapshot_since(&self, since_us: u64) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    /// `History(t since_us, t until_us, u limit) → aa{sv}`: connections
    /// that ended in that time (realtime µs), newest first, from the
    /// service's store.
    fn history(
        &self,
        since_us: u64,
        until_us: u64,
        limit: u32,
    ) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    /// `Totals(t since_us, s group_by) → aa{sv}`: bytes, connections and
    /// first and last seen of what ended since `since_us`, by "program",
    /// "unit", "user" or "remote".
    fn totals(
        &self,
        since_us: u64,
        group_by: &str,
    ) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    /// `ConnectionEvent(s kind, a{sv} connection)`: `kind` is `new`,
    /// `update`, `closed` or `failed` (clients ignore kinds they do not
    /// know).
    #[zbus(signal)]
    fn connection_event(
        &self,
        kind: String,
        connection: HashMap<String, OwnedValue>,
    ) -> zbus::Result<()>;

    /// leco's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;

    /// `ConnectionEvent` signals sent since the service started.
    #[zbus(property(emits_changed_signal = "false"))]
    fn events_emitted(&self) -> zbus::Result<u64>;

    /// Events merged into a later one of the same connection to bound the
    /// signal rate.
    #[zbus(property(emits_changed_signal = "false"))]
    fn coalesced(&self) -> zbus::Result<u64>;

    /// Records the kernel could not queue (its ring buffer was full).
    #[zbus(property(emits_changed_signal = "false"))]
    fn kernel_drops(&self) -> zbus::Result<u64>;

    /// Live connections tracked now.
    #[zbus(property(emits_changed_signal = "false"))]
    fn tracked(&self) -> zbus::Result<u64>;

    /// Connections left out of Snapshot() replies (the least recently
    /// active first) to keep each under 4 MiB.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trimmed(&self) -> zbus::Result<u64>;
}

/// The match rule of [`OverseerProxy::receive_connection_event`] without
/// its sender: every `ConnectionEvent` on the service's object, for a
/// client that reads them through a `zbus::MessageStream` with a queue
/// bound of its own (decoding each with [`ConnectionEvent::from_message`]).
///
/// zbus's proxy streams queue 64 messages, and while one is full the
/// connection reads nothing else: a client that calls `Snapshot()` while
/// signals arrive (a storm, a service that just restarted) then waits
/// for a reply stuck behind them until the call times out. A queue that
/// holds the signals of a call's duration lets the reply through. As the
/// rule names no sender, the client keeps only the signals of the name's
/// current owner (as the proxy's streams do).
pub fn connection_event_rule() -> zbus::Result<OwnedMatchRule> {
    Ok(MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(INTERFACE)?
        .member("ConnectionEvent")?
        .path(OBJECT_PATH)?
        .build()
        .into())
}

#[cfg(test)]
mod tests {
    use zbus::proxy::Defaults;

    use super::*;
    use crate::{example, Connection, Dict, BUS_NAME};

    #[test]
    fn the_proxy_names_are_the_services() {
        let names = (
            OverseerProxy::INTERFACE.as_ref().map(|n| n.as_str()),
            OverseerProxy::DESTINATION.as_ref().map(|n| n.as_str()),
            OverseerProxy::PATH.as_ref().map(|p| p.as_str()),
        );
        assert_eq!(names, (Some(INTERFACE), Some(BUS_NAME), Some(OBJECT_PATH)));
    }

    #[test]
    fn a_connection_event_matches_the_rule_and_decodes_through_the_proxy() {
        let sent = example::curl();
        let msg = zbus::Message::signal(OBJECT_PATH, INTERFACE, "ConnectionEvent")
            .expect("names")
            .build(&("new", Dict(&sent)))
            .expect("message");
        let rule = connection_event_rule().expect("rule");
        assert!(rule.matches(&msg).expect("matching"), "{}", &*rule);
        let signal = ConnectionEvent::from_message(msg).expect("a ConnectionEvent");
        let args = signal.args().expect("(s, a{sv})");
        assert_eq!(args.kind(), "new");
        let got = Connection::from_dict(args.connection()).expect("a connection");
        assert_eq!(got, sent);

        let other = zbus::Message::signal(OBJECT_PATH, INTERFACE, "SomethingElse")
            .expect("names")
            .build(&("new",))
            .expect("message");
        assert!(!rule.matches(&other).expect("matching"));
        assert!(ConnectionEvent::from_message(other).is_none());
    }
}
