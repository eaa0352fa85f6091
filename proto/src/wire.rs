//! The connection record in D-Bus wire format, written by hand: the bytes
//! zvariant would make of [`Dict`](crate::Dict) and [`Dicts`](crate::Dicts)
//! (a test holds them equal), about ten times faster, and in pieces that can
//! be kept and joined — a record's dictionary entries do not depend on where
//! in a message they go, so a reply to many callers is written once.
//!
//! Little-endian, as the messages the service builds are (zbus builds them
//! in the machine's order, and every machine leco runs on is
//! little-endian; [`NATIVE_IS_LITTLE`] says so at compile time).

use crate::keys::Field;
use crate::Connection;

/// Whether this machine is little-endian, as the encoding assumes.
pub const NATIVE_IS_LITTLE: bool = cfg!(target_endian = "little");

const _: () = assert!(NATIVE_IS_LITTLE, "leco's wire encoding is little-endian");

/// The body of a `ConnectionEvent(s kind, a{sv} connection)` signal.
pub fn event_body(kind: &str, c: &Connection) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    put_str(&mut out, kind);
    let entries = entries(c);
    put_dict(&mut out, &entries);
    out
}

/// The entries of a record's `a{sv}`, as they stand from an 8-aligned
/// offset on: what [`Dicts`] joins.
pub fn entries(c: &Connection) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    for key in Connection::KEYS {
        let Some(value) = key.get(c) else {
            continue;
        };
        pad(&mut out, 8);
        put_str(&mut out, key.name());
        put_signature(&mut out, key.signature());
        match value {
            Field::U16(v) => {
                pad(&mut out, 2);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::U32(v) => {
                pad(&mut out, 4);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::U64(v) => {
                pad(&mut out, 8);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Str(s) => put_str(&mut out, s),
            Field::Strs(items) => {
                pad(&mut out, 4);
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                let start = out.len();
                for item in items {
                    put_str(&mut out, item);
                }
                let len = out.len() - start;
                set_len(&mut out, at, len);
            }
        }
    }
    out
}

/// An `aa{sv}` (the reply of `Snapshot()`) from records' [`entries`],
/// joined.
#[derive(Debug, Clone)]
pub struct Dicts {
    body: Vec<u8>,
}

impl Default for Dicts {
    fn default() -> Dicts {
        Dicts::new()
    }
}

impl Dicts {
    /// An empty array, ready for records.
    pub fn new() -> Dicts {
        Dicts { body: vec![0; 4] }
    }

    /// Appends one record, given as its [`entries`]; where they now lie
    /// in the body (to be pushed again elsewhere).
    pub fn push(&mut self, entries: &[u8]) -> std::ops::Range<usize> {
        put_dict(&mut self.body, entries);
        self.body.len() - entries.len()..self.body.len()
    }

    /// Its size so far, in bytes.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.body.len() <= 4
    }

    /// The finished body.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.body.len() - 4;
        set_len(&mut self.body, 0, len);
        self.body
    }
}

/// An `a{sv}` of the given entries at the end of `out` (which must end
/// where the body has the alignment its length says).
fn put_dict(out: &mut Vec<u8>, entries: &[u8]) {
    pad(out, 4);
    let len = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    pad(out, 8);
    out.extend_from_slice(entries);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    pad(out, 4);
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_signature(out: &mut Vec<u8>, sig: &str) {
    out.push(u8::try_from(sig.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(sig.as_bytes());
    out.push(0);
}

fn set_len(out: &mut [u8], at: usize, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn pad(out: &mut Vec<u8>, align: usize) {
    let n = out.len().next_multiple_of(align) - out.len();
    out.extend(std::iter::repeat_n(0, n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{bare, curl, dnsmasq};
    use crate::{Dict, Proto};

    fn zvariant<T: serde::Serialize + zbus::zvariant::DynamicType>(v: &T) -> Vec<u8> {
        let ctxt = zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0);
        zbus::zvariant::to_bytes(ctxt, v)
            .expect("serializes")
            .to_vec()
    }

    fn records() -> Vec<Connection> {
        let mut odd = curl();
        odd.cmdline = Some(Vec::new().into());
        odd.comm = Some("é\u{1b}ü".into());
        vec![dnsmasq(), curl(), bare(3, Proto::Udp), odd]
    }

    #[test]
    fn the_same_bytes_as_zvariant() {
        for c in records() {
            assert_eq!(event_body("new", &c), zvariant(&("new", Dict(&c))), "{c:?}");
            assert_eq!(
                event_body("closed", &c),
                zvariant(&("closed", Dict(&c))),
                "{c:?}"
            );
        }
        let all = records();
        let mut joined = Dicts::new();
        for c in &all {
            let e = entries(c);
            let at = joined.push(&e);
            assert_eq!(&joined.body[at], &e[..]);
        }
        assert_eq!(joined.finish(), zvariant(&crate::Dicts(all)));
        assert_eq!(Dicts::new().finish(), zvariant(&crate::Dicts(Vec::new())));
    }
}
