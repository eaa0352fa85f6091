//! The connection keys as data: each key of the record is declared once, in
//! [`Connection`]'s definition (`connection.rs`), and everything else about
//! keys is derived from that one table — the bus dictionary, the JSON
//! objects, decoding both, the overlay's template fields and the key lists
//! in the documentation (tests keep those equal to the table).
//!
//! Adding a key is one entry in the table (its field, type and one-line
//! contract doc) plus the code that fills it in.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::connection::{Connection, Direction, NameSource, Novelty, Proto, Reason};
use crate::decode::{brief, DecodeError, Fields};
use crate::text::SafeText;

/// One key of the connection record: its name on the bus and in JSON, its
/// D-Bus type, its contract and how to read it from a record.
#[derive(Clone, Copy)]
pub struct Key {
    name: &'static str,
    signature: &'static str,
    doc: &'static str,
    get: for<'c> fn(&'c Connection) -> Option<Field<'c>>,
}

impl Key {
    /// The key, as on the bus and in JSON (`remote_port`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its D-Bus type signature (`q`).
    pub fn signature(&self) -> &'static str {
        self.signature
    }

    /// What it means: the contract, as one line of text (the first
    /// paragraph of the field's doc comment).
    pub fn doc(&self) -> String {
        crate::first_paragraph(self.doc)
    }

    /// Its value in `c`; `None` when unknown (the key is then left out).
    pub fn get<'c>(&self, c: &'c Connection) -> Option<Field<'c>> {
        (self.get)(c)
    }

    /// The key called `name`, if there is one.
    pub fn find(name: &str) -> Option<Key> {
        Connection::KEYS.iter().find(|k| k.name == name).copied()
    }

    pub(crate) const fn new(
        name: &'static str,
        signature: &'static str,
        doc: &'static str,
        get: for<'c> fn(&'c Connection) -> Option<Field<'c>>,
    ) -> Key {
        Key {
            name,
            signature,
            doc,
            get,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.name == other.name
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.name)
    }
}

/// The value of one key, borrowed from a record, typed as on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'c> {
    /// `q`
    U16(u16),
    /// `u`
    U32(u32),
    /// `t`
    U64(u64),
    /// `s`
    Str(&'c str),
    /// `as`
    Strs(&'c [SafeText]),
}

/// Text for people: numbers in decimal, an array's items joined by spaces.
impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::U16(v) => write!(f, "{v}"),
            Field::U32(v) => write!(f, "{v}"),
            Field::U64(v) => write!(f, "{v}"),
            Field::Str(s) => f.write_str(s),
            Field::Strs(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(item)?;
                }
                Ok(())
            }
        }
    }
}

/// A type a key can hold: how it goes on the bus and how it is read back.
pub(crate) trait Wire: Sized {
    /// Its D-Bus signature.
    const SIGNATURE: &'static str;

    /// Its value on the bus, `None` when it says "unknown".
    fn field(&self) -> Option<Field<'_>>;

    /// Reads it from a record; `Ok(None)` when the key is absent.
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError>;

    /// What an absent key stands for, `None` when it cannot be absent.
    fn absent() -> Option<Self>;

    /// Bytes of text it holds, counted as if none were shared.
    fn text_len(&self) -> usize {
        0
    }
}

const U64: &str = "an unsigned 64-bit integer (t)";
const U32: &str = "an unsigned 32-bit integer (u)";
const U16: &str = "a port, 0 to 65535 (q)";

/// Integers: always known (zero is a value), checked to fit on reading.
macro_rules! integer_wire {
    ($($ty:ty => $signature:literal, $variant:ident, $expected:expr;)+) => {
        $(
            impl Wire for $ty {
                const SIGNATURE: &'static str = $signature;
                fn field(&self) -> Option<Field<'_>> {
                    Some(Field::$variant(*self))
                }
                fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
                    f.number(key, $expected)
                }
                fn absent() -> Option<Self> {
                    Some(0)
                }
            }
        )+
    };
}

integer_wire! {
    u64 => "t", U64, U64;
    u32 => "u", U32, U32;
    u16 => "q", U16, U16;
}

/// Texts are made safe as they are read, whoever sent them; an empty
/// text says "unknown", as an absent key does.
impl Wire for SafeText {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        (!self.is_empty()).then_some(Field::Str(self))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        Ok(f.text(key)?.map(SafeText::from))
    }
    fn absent() -> Option<Self> {
        Some(SafeText::default())
    }
    fn text_len(&self) -> usize {
        self.len()
    }
}

/// The service's own words (TCP state names), borrowed; read back safe.
impl Wire for Cow<'static, str> {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        (!self.is_empty()).then_some(Field::Str(self))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        Ok(f.text(key)?
            .map(|t| Cow::Owned(SafeText::from(t).to_string())))
    }
    fn absent() -> Option<Self> {
        Some(Cow::Borrowed(""))
    }
    fn text_len(&self) -> usize {
        match self {
            Cow::Borrowed(_) => 0,
            Cow::Owned(s) => s.len(),
        }
    }
}

/// An argument of a command line is a shared text of its own: its length
/// and the pointers that hold it count too.
const PER_ARGUMENT: usize = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<SafeText>();

impl Wire for Arc<[SafeText]> {
    const SIGNATURE: &'static str = "as";
    fn text_len(&self) -> usize {
        self.iter().map(|a| a.len() + PER_ARGUMENT).sum()
    }
    fn field(&self) -> Option<Field<'_>> {
        Some(Field::Strs(self))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        Ok(f.texts(key)?
            .map(|items| items.into_iter().map(SafeText::from).collect()))
    }
    fn absent() -> Option<Self> {
        None
    }
}

/// Reads one of a fixed set of words.
fn word<T: Copy>(
    f: &impl Fields,
    key: &'static str,
    words: &[(&str, T)],
    expected: &'static str,
) -> Result<Option<T>, DecodeError> {
    let Some(text) = f.text(key)? else {
        return Ok(None);
    };
    match words.iter().find(|(w, _)| *w == text) {
        Some((_, v)) => Ok(Some(*v)),
        None => Err(DecodeError::Wrong {
            key,
            expected,
            found: format!("{:?}", brief(&text)),
        }),
    }
}

impl Wire for Proto {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        Some(Field::Str(self.as_str()))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        let words = Proto::ALL.map(|p| (p.as_str(), p));
        word(
            f,
            key,
            &words,
            "\"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"sctp\", \"raw\" or \"packet\"",
        )
    }
    fn absent() -> Option<Self> {
        None
    }
}

impl Wire for Direction {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        Some(Field::Str(self.as_str()))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        let words = Direction::ALL.map(|d| (d.as_str(), d));
        word(f, key, &words, "\"out\" or \"in\"")
    }
    fn absent() -> Option<Self> {
        None
    }
}

impl Wire for Reason {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        Some(Field::Str(self.as_str()))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        let words = Reason::ALL.map(|r| (r.as_str(), r));
        word(
            f,
            key,
            &words,
            "\"refused\", \"reset\", \"unreachable\", \"prohibited\", \"timed-out\", \"no-reply\", \"error\", \"firewall\", \"cgroup-policy\" or \"lsm\"",
        )
    }
    fn absent() -> Option<Self> {
        None
    }
}

impl Wire for NameSource {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        Some(Field::Str(self.as_str()))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        let words = NameSource::ALL.map(|n| (n.as_str(), n));
        word(f, key, &words, "\"resolved\" or \"dns\"")
    }
    fn absent() -> Option<Self> {
        None
    }
}

impl Wire for Novelty {
    const SIGNATURE: &'static str = "s";
    fn field(&self) -> Option<Field<'_>> {
        Some(Field::Str(self.as_str()))
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        let words = Novelty::ALL.map(|n| (n.as_str(), n));
        word(f, key, &words, "\"program\" or \"destination\"")
    }
    fn absent() -> Option<Self> {
        None
    }
}

/// An optional key: absent means `None`.
impl<T: Wire> Wire for Option<T> {
    const SIGNATURE: &'static str = T::SIGNATURE;
    fn field(&self) -> Option<Field<'_>> {
        self.as_ref().and_then(T::field)
    }
    fn read(f: &impl Fields, key: &'static str) -> Result<Option<Self>, DecodeError> {
        Ok(T::read(f, key)?.map(Some))
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
    fn text_len(&self) -> usize {
        self.as_ref().map_or(0, T::text_len)
    }
}

/// Reads key `key` of type `T`: absent is `T`'s "unknown", or an error when
/// the key is `required` or `T` has no such value.
pub(crate) fn read_key<T: Wire>(
    f: &impl Fields,
    key: &'static str,
    required: bool,
) -> Result<T, DecodeError> {
    match T::read(f, key)? {
        Some(v) => Ok(v),
        None if required => Err(DecodeError::Missing { key }),
        None => T::absent().ok_or(DecodeError::Missing { key }),
    }
}

/// Declares the connection record and its key table from one list of
/// fields: a doc comment whose first paragraph is the key's contract, then
/// `name: Type;` or `name: Type, required;`. The field's name is the key;
/// its type gives the D-Bus type ([`Wire`]).
macro_rules! connection_keys {
    (
        $(#[$meta:meta])*
        pub struct $record:ident {
            $(
                $(#[doc = $doc:literal])+
                $field:ident: $ty:ty $(, $required:ident)?;
            )+
        }
    ) => {
        $(#[$meta])*
        pub struct $record {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )+
        }

        impl $record {
            /// Every key of the record, in the order of the contract.
            pub const KEYS: &'static [$crate::keys::Key] = &[
                $(
                    $crate::keys::Key::new(
                        stringify!($field),
                        <$ty as $crate::keys::Wire>::SIGNATURE,
                        concat!($($doc, "\n"),+),
                        |c| $crate::keys::Wire::field(&c.$field),
                    ),
                )+
            ];

            /// Bytes its texts hold, counted as if none were shared: what
            /// bounds on memory count.
            pub fn text_bytes(&self) -> usize {
                0 $(+ $crate::keys::Wire::text_len(&self.$field))+
            }

            /// Builds a record from any carrier of its keys.
            pub(crate) fn decode(
                f: &impl $crate::decode::Fields,
            ) -> Result<$record, $crate::decode::DecodeError> {
                Ok($record {
                    $(
                        $field: $crate::keys::read_key(
                            f,
                            stringify!($field),
                            connection_keys!(@required $($required)?),
                        )?,
                    )+
                })
            }
        }
    };
    (@required required) => {
        true
    };
    (@required) => {
        false
    };
}

pub(crate) use connection_keys;

/// The key table as documentation: for the interface XML's comment and the
/// README (tests compare them with the files).
pub mod docs {
    use crate::Connection;

    /// The keys as the XML comment lists them: `name  type  contract`,
    /// wrapped to 79 columns.
    pub fn xml_lines() -> Vec<String> {
        const WIDTH: usize = 79;
        let mut lines = Vec::new();
        for key in Connection::KEYS {
            let mut line = format!("   {:<14} {:<3} ", key.name(), key.signature());
            let indent = line.chars().count();
            let mut fresh = true;
            for word in key.doc().split_whitespace() {
                if !fresh && line.chars().count() + 1 + word.chars().count() > WIDTH {
                    lines.push(line);
                    line = " ".repeat(indent);
                    fresh = true;
                }
                if !fresh {
                    line.push(' ');
                }
                line.push_str(word);
                fresh = false;
            }
            lines.push(line);
        }
        lines
    }

    /// The keys as a Markdown table: key, D-Bus type, contract.
    pub fn markdown_table() -> String {
        let mut out = String::from("| key | type | meaning |\n| --- | --- | --- |\n");
        for key in Connection::KEYS {
            out.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                key.name(),
                key.signature(),
                key.doc().replace('|', "\\|")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{curl, dnsmasq};

    fn names() -> Vec<&'static str> {
        Connection::KEYS.iter().map(Key::name).collect()
    }

    #[test]
    fn keys_are_the_contract_in_order() {
        assert_eq!(
            names(),
            [
                "id",
                "proto",
                "ip_proto",
                "interface",
                "family",
                "direction",
                "state",
                "local_addr",
                "local_port",
                "remote_addr",
                "remote_port",
                "remote_name",
                "name_source",
                "pid",
                "comm",
                "program",
                "exe",
                "cmdline",
                "uid",
                "user",
                "cgroup",
                "unit",
                "container",
                "app_id",
                "first_seen_us",
                "last_seen_us",
                "rx_bytes",
                "tx_bytes",
                "error",
                "reason",
                "attempts",
                "novelty",
            ]
        );
        let sig = |name: &str| Key::find(name).expect(name).signature();
        assert_eq!(
            [sig("id"), sig("family"), sig("local_port"), sig("cmdline")],
            ["t", "u", "q", "as"]
        );
        assert_eq!(Key::find("nope"), None);
        for key in Connection::KEYS {
            assert!(
                !key.doc().is_empty() && !key.doc().contains('\n'),
                "{key:?}"
            );
            assert!(!key.doc().contains("  "), "{key:?}");
        }
    }

    #[test]
    fn values_and_unknowns() {
        let c = dnsmasq();
        let get = |name: &str| Key::find(name).expect(name).get(&c);
        assert_eq!(get("remote_port"), Some(Field::U16(40000)));
        assert_eq!(get("proto"), Some(Field::Str("udp")));
        assert_eq!(get("direction"), Some(Field::Str("in")));
        assert_eq!(
            get("cmdline").map(|f| f.to_string()),
            Some("dnsmasq -k".into())
        );
        let c = Connection {
            exe: None,
            family: None,
            state: "".into(),
            ..curl()
        };
        for unknown in ["exe", "family", "state", "cgroup"] {
            assert_eq!(
                Key::find(unknown).expect(unknown).get(&c),
                None,
                "{unknown}"
            );
        }
        assert_eq!(
            Key::find("uid").expect("uid").get(&c),
            Some(Field::U32(1000))
        );
    }

    #[test]
    fn documentation_forms() {
        let lines = docs::xml_lines();
        assert_eq!(
            lines[0],
            "   id             t   unique while the kernel objects stay loaded (a boot, or"
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 79), "{lines:#?}");
        let table = docs::markdown_table();
        assert!(table.contains("| `local_port` | `q` |"), "{table}");
        assert_eq!(table.lines().count(), Connection::KEYS.len() + 2);
    }
}

/// The documents that list the keys must list exactly the table's: a key
/// added to the table alone, or to a document alone, fails here.
#[cfg(test)]
mod documents {
    use super::docs;

    /// Lines of `text` after the one that is `start`, up to the first that
    /// begins with `end`.
    fn between<'t>(text: &'t str, start: &str, end: &str) -> Vec<&'t str> {
        let mut lines = text.lines().skip_while(|l| l.trim() != start.trim());
        assert!(lines.next().is_some(), "no line {start:?}");
        lines.take_while(|l| !l.starts_with(end)).collect()
    }

    #[test]
    fn the_interface_xml_lists_the_key_table() {
        let listed = between(
            crate::INTROSPECTION_XML,
            r#" A connection is an a{sv} dictionary. A missing key means "unknown"."#,
            " Strings are valid UTF-8",
        );
        let table = docs::xml_lines();
        assert_eq!(
            listed,
            table,
            "proto/org.leco.Overseer1.xml lists other keys than Connection's table; \
             the table's lines are:\n{}",
            table.join("\n")
        );
    }

    #[test]
    fn the_readme_lists_the_key_table() {
        let readme = include_str!("../../README.md");
        let listed = between(
            readme,
            "<!-- connection keys: generated from proto/src/connection.rs; a test keeps them equal -->",
            "<!-- end of connection keys -->",
        )
        .join("\n");
        let table = docs::markdown_table();
        assert_eq!(
            listed.trim(),
            table.trim(),
            "README.md lists other keys than Connection's table; the table is:\n{table}"
        );
    }
}
