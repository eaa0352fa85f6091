//! The object as served: [`Overseer`]'s interface as zbus makes it
//! (introspection, properties, the signal), with the snapshot methods
//! answered by [`Replies`] (shared, bounded, encoded by leco, arguments
//! checked) and read-only properties refused as such.
//!
//! zbus offers no hook between a call and its interface's method, so the
//! wrapper implements its `Interface` trait by delegating everything else
//! to the generated one; zbus calls that trait unstable, which the pinned
//! zbus version in Cargo.lock makes a matter of review at each update.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::export::async_trait::async_trait;
use zbus::message::{Header, Message};
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult2, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value};
use zbus::{fdo, Connection, ObjectServer};

use super::replies::Replies;
use super::Overseer;

/// [`Overseer`] with its snapshot methods answered by [`Replies`].
#[derive(Debug)]
pub struct Served {
    inner: Overseer,
    replies: Arc<Replies>,
}

impl Served {
    /// The interface `inner`, its snapshots from `replies`.
    pub fn new(inner: Overseer, replies: Arc<Replies>) -> Served {
        Served { inner, replies }
    }
}

#[async_trait]
impl Interface for Served {
    fn name() -> InterfaceName<'static> {
        <Overseer as Interface>::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.inner.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<OwnedValue>> {
        self.inner
            .get(property_name, server, connection, header, emitter)
            .await
    }

    async fn get_all(
        &self,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        self.inner
            .get_all(server, connection, header, emitter)
            .await
    }

    fn set<'call>(
        &'call self,
        property_name: &'call str,
        value: &'call Value<'_>,
        server: &'call ObjectServer,
        connection: &'call Connection,
        header: Option<&'call Header<'_>>,
        emitter: &'call SignalEmitter<'_>,
    ) -> DispatchResult2<'call> {
        match self
            .inner
            .set(property_name, value, server, connection, header, emitter)
        {
            // zbus says "unknown" of a property without a setter too: one
            // that can be read is read-only.
            DispatchResult2::NotFound => DispatchResult2::Async(Box::pin(async move {
                let readable = self
                    .inner
                    .get(property_name, server, connection, header, emitter)
                    .await
                    .is_some();
                Err(if readable {
                    fdo::Error::PropertyReadOnly(format!("{property_name} is read-only"))
                } else {
                    fdo::Error::UnknownProperty(format!("Unknown property '{property_name}'"))
                })
            })),
            other => other,
        }
    }

    async fn set_mut(
        &mut self,
        property_name: &str,
        value: &Value<'_>,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<()>> {
        self.inner
            .set_mut(property_name, value, server, connection, header, emitter)
            .await
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        match name.as_str() {
            "Snapshot" | "SnapshotSince" => {
                DispatchResult2::Async(Box::pin(self.replies.answer(connection, msg)))
            }
            _ => self.inner.call(server, connection, msg, name),
        }
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        self.inner.call_mut(server, connection, msg, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        self.inner.introspect_to_writer(writer, level);
    }
}
