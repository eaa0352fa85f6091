//! The connection record as a D-Bus dictionary (`a{sv}`): the payload of
//! the `ConnectionEvent` signal and the elements of `Snapshot()`. Its keys
//! and their types are [`Connection::KEYS`]; a missing key means "unknown".

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use zbus::zvariant::as_value::Serialize as AsValue;
use zbus::zvariant::Type;

use crate::connection::Connection;
use crate::keys::Field;

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
        let mut m = serializer.serialize_map(None)?;
        for key in Connection::KEYS {
            let Some(value) = key.get(self.0) else {
                continue;
            };
            let name = key.name();
            match value {
                Field::U16(v) => m.serialize_entry(name, &AsValue(&v))?,
                Field::U32(v) => m.serialize_entry(name, &AsValue(&v))?,
                Field::U64(v) => m.serialize_entry(name, &AsValue(&v))?,
                Field::Str(s) => m.serialize_entry(name, &AsValue(&s))?,
                Field::Strs(items) => m.serialize_entry(name, &AsValue(&items))?,
            }
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

    #[test]
    fn every_key_goes_on_the_bus_with_the_type_of_the_key_table() {
        let c = crate::example::dnsmasq();
        let ctxt = zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0);
        let bytes = zbus::zvariant::to_bytes(ctxt, &Dict(&c)).expect("serializes");
        let (d, _): (HashMap<String, zbus::zvariant::OwnedValue>, _) =
            bytes.deserialize().expect("reads back as a{sv}");
        assert_eq!(d.len(), Connection::KEYS.len());
        for key in Connection::KEYS {
            assert_eq!(
                d[key.name()].value_signature().to_string(),
                key.signature(),
                "{key:?}"
            );
        }
    }
}
