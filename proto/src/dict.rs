//! The connection record as a D-Bus dictionary (`a{sv}`): the payload of
//! the `ConnectionEvent` signal and the elements of `Snapshot()`.
//!
//! | key | type | | key | type |
//! |---|---|---|---|---|
//! | `id` | t | | `cmdline` | as |
//! | `proto` | s (`tcp`, `udp`) | | `uid` | u |
//! | `family` | u (4, 6) | | `user` | s |
//! | `direction` | s (`out`, `in`) | | `cgroup` | s |
//! | `state` | s | | `unit` | s |
//! | `local_addr` | s | | `container` | s |
//! | `local_port` | q | | `app_id` | s |
//! | `remote_addr` | s | | `first_seen_us` | t (realtime µs) |
//! | `remote_port` | q | | `last_seen_us` | t (realtime µs) |
//! | `pid` | u | | `rx_bytes` | t |
//! | `comm` | s | | `tx_bytes` | t |
//! | `exe` | s | | `error` | s |
//!
//! A missing key means "unknown". Keys are only ever added.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use zbus::zvariant::as_value::Serialize as AsValue;
use zbus::zvariant::Type;

use crate::connection::{Connection, Direction};

/// A connection as it goes on the bus: `a{sv}`, serialized straight from
/// the record (no intermediate map).
#[derive(Debug, Clone, Copy, Type)]
#[zvariant(signature = "a{sv}")]
pub struct Dict<'a>(pub &'a Connection);

/// Connections as `aa{sv}` (the reply of `Snapshot()`).
#[derive(Debug, Clone, Default, Type)]
#[zvariant(signature = "aa{sv}")]
pub struct Dicts(pub Vec<Connection>);

impl Serialize for Dict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("id", &AsValue(&c.id))?;
        m.serialize_entry("proto", &AsValue(&c.proto.as_str()))?;
        m.serialize_entry("family", &AsValue(&c.family))?;
        if let Some(dir) = c.direction {
            let s = match dir {
                Direction::Out => "out",
                Direction::In => "in",
            };
            m.serialize_entry("direction", &AsValue(&s))?;
        }
        m.serialize_entry("state", &AsValue(&&*c.state))?;
        m.serialize_entry("local_addr", &AsValue(&&*c.local_addr))?;
        m.serialize_entry("local_port", &AsValue(&c.local_port))?;
        m.serialize_entry("remote_addr", &AsValue(&&*c.remote_addr))?;
        m.serialize_entry("remote_port", &AsValue(&c.remote_port))?;
        if let Some(pid) = c.pid {
            m.serialize_entry("pid", &AsValue(&pid))?;
        }
        let texts = [
            ("comm", &c.comm),
            ("exe", &c.exe),
            ("user", &c.user),
            ("cgroup", &c.cgroup),
            ("unit", &c.unit),
            ("container", &c.container),
            ("app_id", &c.app_id),
        ];
        for (key, v) in texts {
            if let Some(v) = v {
                m.serialize_entry(key, &AsValue(&&**v))?;
            }
        }
        if let Some(args) = &c.cmdline {
            m.serialize_entry("cmdline", &AsValue(&&**args))?;
        }
        if let Some(uid) = c.uid {
            m.serialize_entry("uid", &AsValue(&uid))?;
        }
        m.serialize_entry("first_seen_us", &AsValue(&c.first_seen_us))?;
        m.serialize_entry("last_seen_us", &AsValue(&c.last_seen_us))?;
        m.serialize_entry("rx_bytes", &AsValue(&c.rx_bytes))?;
        m.serialize_entry("tx_bytes", &AsValue(&c.tx_bytes))?;
        if let Some(e) = &c.error {
            m.serialize_entry("error", &AsValue(&&**e))?;
        }
        m.end()
    }
}

impl Serialize for Dicts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for c in &self.0 {
            seq.serialize_element(&Dict(c))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn types_match_the_contract_and_unknown_keys_are_absent() {
        // Unknown keys are left out, not sent empty.
        let c = Connection {
            exe: None,
            cgroup: None,
            container: None,
            app_id: None,
            error: None,
            ..crate::example::dnsmasq()
        };
        let ctxt = zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0);
        let bytes = zbus::zvariant::to_bytes(ctxt, &Dict(&c)).expect("serializes");
        let (d, _): (HashMap<String, zbus::zvariant::OwnedValue>, _) =
            bytes.deserialize().expect("reads back as a{sv}");
        let sig = |k: &str| d[k].value_signature().to_string();
        assert_eq!(Dict::SIGNATURE.to_string(), "a{sv}");
        assert_eq!(Dicts::SIGNATURE.to_string(), "aa{sv}");
        assert_eq!(sig("id"), "t");
        assert_eq!(sig("family"), "u");
        assert_eq!(sig("local_port"), "q");
        assert_eq!(sig("cmdline"), "as");
        assert_eq!(sig("pid"), "u");
        assert_eq!(sig("rx_bytes"), "t");
        assert_eq!(
            String::try_from(d["proto"].try_clone().expect("clone")).expect("s"),
            "udp"
        );
        assert_eq!(
            String::try_from(d["direction"].try_clone().expect("clone")).expect("s"),
            "in"
        );
        for absent in ["exe", "cgroup", "container", "app_id", "error"] {
            assert!(!d.contains_key(absent), "{absent}");
        }
    }
}
