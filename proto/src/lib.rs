//! What crosses leco's bus: the connection record and its keys, the event
//! kinds, the D-Bus names, the clients' proxy of the service ([`proxy`]),
//! and the formatting every client shares.
//!
//! The keys of [`Connection`] are a contract: clients outside this project
//! (scripts, notification bridges, `busctl monitor` readers) rely on them. A
//! key that is absent means "unknown"; keys are only ever added.

mod connection;
mod decode;
mod dict;
mod keys;
// Public only so that the clients' tests can share it: not part of the
// contract, hence hidden.
#[doc(hidden)]
pub mod example;
mod format;
mod names;
pub mod proxy;
mod text;
pub mod wire;

pub use connection::{Connection, Direction, EventKind, NameSource, Novelty, Proto, Reason};
pub use decode::{decode_json_event, DecodeError};
pub use dict::{Dict, Dicts};
pub use format::{classic_line, human_bytes, TRAFFIC_THRESHOLD};
pub use keys::{docs as key_docs, Field, Key};
pub use names::{BUS_NAME, INTERFACE, INTROSPECTION_XML, OBJECT_PATH};
pub use proxy::OverseerProxy;
pub use text::{
    first_paragraph, needs_escape, sanitize, sanitize_text, SafeText, ARGUMENT_BYTES, CUT_MARK,
    MAX_CMDLINE_BYTES, MAX_TEXT_BYTES,
};
