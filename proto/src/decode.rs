//! Reading a [`Connection`] back: from the bus dictionary (`a{sv}` as zbus
//! hands it over) and from the JSON objects `leco-service --standalone
//! --json` prints.
//!
//! Lenient as the contract asks: a missing key means "unknown" (an empty
//! address, a zero counter, `None`), an unknown key is ignored (keys are only
//! ever added), and only a key whose value has the wrong type is an error,
//! which names the key. `id` and `proto` are required: a record cannot say
//! that they are unknown.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use zbus::zvariant::{OwnedValue, Value};

use crate::connection::{Connection, EventKind};

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A required key is absent.
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A key holds a value of the wrong type or out of range.
    Wrong {
        /// The key.
        key: &'static str,
        /// What the contract says it holds.
        expected: &'static str,
        /// What it held, briefly.
        found: String,
    },
    /// The JSON text is not an object (or not JSON at all).
    NotAnObject(String),
    /// The event kind is not one this version knows.
    UnknownKind(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Missing { key } => write!(f, "key `{key}` is missing"),
            DecodeError::Wrong {
                key,
                expected,
                found,
            } => write!(f, "key `{key}`: expected {expected}, found {found}"),
            DecodeError::NotAnObject(why) => write!(f, "not a JSON object: {why}"),
            DecodeError::UnknownKind(kind) => write!(
                f,
                "unknown event kind {kind:?}; expected new, update, closed, failed or blocked"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

impl FromStr for EventKind {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<EventKind, DecodeError> {
        match s {
            "new" => Ok(EventKind::New),
            "update" => Ok(EventKind::Update),
            "closed" => Ok(EventKind::Closed),
            "failed" => Ok(EventKind::Failed),
            "blocked" => Ok(EventKind::Blocked),
            other => Err(DecodeError::UnknownKind(brief(other))),
        }
    }
}

/// A value cut short for a message.
pub(crate) fn brief(s: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Typed access to the keys of one record, whatever carries it.
pub(crate) trait Fields {
    /// An integer (any width or signedness that the carrier has), or
    /// `None` when absent.
    fn integer(&self, key: &'static str) -> Result<Option<i128>, DecodeError>;
    /// A string, or `None` when absent.
    fn text(&self, key: &'static str) -> Result<Option<String>, DecodeError>;
    /// An array of strings, or `None` when absent.
    fn texts(&self, key: &'static str) -> Result<Option<Vec<String>>, DecodeError>;

    fn number<T: TryFrom<i128>>(
        &self,
        key: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        match self.integer(key)? {
            None => Ok(None),
            Some(i) => T::try_from(i).map(Some).map_err(|_| DecodeError::Wrong {
                key,
                expected,
                found: i.to_string(),
            }),
        }
    }
}

/// The bus dictionary.
struct DictFields<'a>(&'a HashMap<String, OwnedValue>);

/// A variant may wrap another variant; what counts is the innermost value.
fn innermost<'v>(mut v: &'v Value<'v>) -> &'v Value<'v> {
    while let Value::Value(inner) = v {
        v = inner;
    }
    v
}

fn signature_of(v: &Value<'_>) -> String {
    format!("a value of type {}", v.value_signature())
}

impl Fields for DictFields<'_> {
    fn integer(&self, key: &'static str) -> Result<Option<i128>, DecodeError> {
        let Some(v) = self.0.get(key) else {
            return Ok(None);
        };
        let v = innermost(v);
        let i = match v {
            Value::U8(i) => i128::from(*i),
            Value::U16(i) => i128::from(*i),
            Value::U32(i) => i128::from(*i),
            Value::U64(i) => i128::from(*i),
            Value::I16(i) => i128::from(*i),
            Value::I32(i) => i128::from(*i),
            Value::I64(i) => i128::from(*i),
            other => {
                return Err(DecodeError::Wrong {
                    key,
                    expected: "an integer",
                    found: signature_of(other),
                })
            }
        };
        Ok(Some(i))
    }

    fn text(&self, key: &'static str) -> Result<Option<String>, DecodeError> {
        let Some(v) = self.0.get(key) else {
            return Ok(None);
        };
        match innermost(v) {
            Value::Str(s) => Ok(Some(s.as_str().to_owned())),
            other => Err(DecodeError::Wrong {
                key,
                expected: "a string (s)",
                found: signature_of(other),
            }),
        }
    }

    fn texts(&self, key: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        let Some(v) = self.0.get(key) else {
            return Ok(None);
        };
        let wrong = |found: &Value<'_>| DecodeError::Wrong {
            key,
            expected: "an array of strings (as)",
            found: signature_of(found),
        };
        let Value::Array(items) = innermost(v) else {
            return Err(wrong(innermost(v)));
        };
        items
            .inner()
            .iter()
            .map(|item| match innermost(item) {
                Value::Str(s) => Ok(s.as_str().to_owned()),
                _ => Err(wrong(innermost(v))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// A JSON object.
struct JsonFields<'a>(&'a serde_json::Map<String, serde_json::Value>);

fn json_kind(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::String(s) => format!("{:?}", brief(s)),
        J::Array(_) => "an array".into(),
        J::Object(_) => "an object".into(),
    }
}

impl Fields for JsonFields<'_> {
    fn integer(&self, key: &'static str) -> Result<Option<i128>, DecodeError> {
        match self.0.get(key) {
            // JSON writers often spell "unknown" as null.
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n
                .as_u64()
                .map(i128::from)
                .or_else(|| n.as_i64().map(i128::from))),
            Some(other) => Err(DecodeError::Wrong {
                key,
                expected: "an integer",
                found: json_kind(other),
            }),
        }
    }

    fn text(&self, key: &'static str) -> Result<Option<String>, DecodeError> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(DecodeError::Wrong {
                key,
                expected: "a string",
                found: json_kind(other),
            }),
        }
    }

    fn texts(&self, key: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        let wrong = |found: &serde_json::Value| DecodeError::Wrong {
            key,
            expected: "an array of strings",
            found: json_kind(found),
        };
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong(other)),
        }
    }
}

impl Connection {
    /// Reads a record from the bus dictionary (`a{sv}`), as the payload of
    /// `ConnectionEvent` or an element of `Snapshot()` arrives from zbus.
    pub fn from_dict(dict: &HashMap<String, OwnedValue>) -> Result<Connection, DecodeError> {
        Connection::decode(&DictFields(dict))
    }

    /// Reads a record from a JSON object with the connection's keys (other
    /// keys, such as `kind`, are ignored).
    pub fn from_json(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Connection, DecodeError> {
        Connection::decode(&JsonFields(object))
    }

    /// Reads a record from the text of a JSON object, as the connection
    /// serializes (a stored record, a `--json` line without its `kind`).
    pub fn from_json_text(text: &str) -> Result<Connection, DecodeError> {
        Connection::from_json(&json_object(text)?)
    }
}

/// The JSON object `text` holds.
fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotAnObject(e.to_string()))?;
    match value {
        serde_json::Value::Object(object) => Ok(object),
        other => Err(DecodeError::NotAnObject(json_kind(&other))),
    }
}

/// Reads one line that `leco-service --standalone --json` printed:
/// `{"kind": "new", ...connection keys...}`.
pub fn decode_json_event(line: &str) -> Result<(EventKind, Connection), DecodeError> {
    let object = json_object(line)?;
    let fields = JsonFields(&object);
    let kind = fields
        .text("kind")?
        .ok_or(DecodeError::Missing { key: "kind" })?
        .parse()?;
    Ok((kind, Connection::decode(&fields)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dict, Proto};

    use crate::example::dnsmasq as full;

    fn sparse() -> Connection {
        Connection {
            family: Some(4),
            state: "syn_sent".into(),
            local_addr: "10.0.0.2".into(),
            local_port: 1,
            remote_addr: "10.0.0.3".into(),
            remote_port: 2,
            ..crate::example::bare(1, Proto::Tcp)
        }
    }

    fn to_dict(c: &Connection) -> HashMap<String, OwnedValue> {
        let ctxt = zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0);
        let bytes = zbus::zvariant::to_bytes(ctxt, &Dict(c)).expect("serializes");
        let (d, _) = bytes.deserialize().expect("reads back as a{sv}");
        d
    }

    fn value(v: Value<'static>) -> OwnedValue {
        OwnedValue::try_from(v).expect("owned")
    }

    #[test]
    fn dict_round_trips() {
        for c in [full(), sparse()] {
            assert_eq!(Connection::from_dict(&to_dict(&c)), Ok(c));
        }
    }

    #[test]
    fn json_round_trips_with_the_kind_flattened() {
        for c in [full(), sparse()] {
            let mut v = serde_json::to_value(&c).expect("serializes");
            v["kind"] = "update".into();
            let line = v.to_string();
            assert_eq!(decode_json_event(&line), Ok((EventKind::Update, c.clone())));
            let serde_json::Value::Object(o) = v else {
                panic!("an object")
            };
            assert_eq!(Connection::from_json(&o), Ok(c));
        }
    }

    #[test]
    fn missing_keys_are_unknown_and_unknown_keys_ignored() {
        let line = r#"{"kind":"new","id":3,"proto":"tcp","future_key":[1,2],"comm":null}"#;
        let (kind, c) = decode_json_event(line).expect("lenient");
        assert_eq!(kind, EventKind::New);
        assert_eq!(c.id, 3);
        assert_eq!(c.comm, None);
        assert_eq!(&*c.remote_addr, "");
        let mut d = to_dict(&sparse());
        d.insert("future_key".into(), value(Value::Bool(true)));
        d.remove("state");
        d.remove("rx_bytes");
        let c = Connection::from_dict(&d).expect("lenient");
        assert_eq!(c.state, "");
        assert_eq!(c.rx_bytes, 0);
    }

    #[test]
    fn wrong_types_name_the_key() {
        let cases = [
            (
                r#"{"kind":"new","id":"3","proto":"tcp"}"#,
                "key `id`: expected an integer, found \"3\"",
            ),
            (
                r#"{"kind":"new","id":3,"proto":"gre"}"#,
                "key `proto`: expected \"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"sctp\", \"raw\" or \"packet\", found \"gre\"",
            ),
            (
                r#"{"kind":"new","id":3,"proto":"tcp","remote_port":70000}"#,
                "key `remote_port`: expected a port, 0 to 65535 (q), found 70000",
            ),
            (
                r#"{"kind":"new","id":3,"proto":"tcp","pid":-1}"#,
                "key `pid`: expected an unsigned 32-bit integer (u), found -1",
            ),
            (
                r#"{"kind":"new","id":3,"proto":"tcp","cmdline":["a",1]}"#,
                "key `cmdline`: expected an array of strings, found 1",
            ),
            (
                r#"{"kind":"gone","id":3,"proto":"tcp"}"#,
                "unknown event kind \"gone\"; expected new, update, closed, failed or blocked",
            ),
            (r#"{"id":3,"proto":"tcp"}"#, "key `kind` is missing"),
            (r#"{"kind":"new","proto":"tcp"}"#, "key `id` is missing"),
            ("[1]", "not a JSON object: an array"),
        ];
        for (line, expected) in cases {
            let e = decode_json_event(line).expect_err(line);
            assert_eq!(e.to_string(), expected, "{line}");
        }
        let mut d = to_dict(&sparse());
        d.insert("comm".into(), value(Value::U32(5)));
        assert_eq!(
            Connection::from_dict(&d)
                .expect_err("comm is a number")
                .to_string(),
            "key `comm`: expected a string (s), found a value of type u"
        );
        let mut d = to_dict(&sparse());
        d.insert("rx_bytes".into(), value(Value::I32(-5)));
        assert!(Connection::from_dict(&d)
            .expect_err("negative")
            .to_string()
            .starts_with("key `rx_bytes`"));
    }

    #[test]
    fn kinds_parse_from_their_strings() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse(), Ok(k));
        }
        assert!("NEW".parse::<EventKind>().is_err());
    }
}
