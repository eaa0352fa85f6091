//! D-Bus names of the service.

/// Well-known bus name the service owns.
pub const BUS_NAME: &str = "org.leco.Overseer1";
/// Interface carrying the `ConnectionEvent` signal and the snapshot methods.
pub const INTERFACE: &str = "org.leco.Overseer1";
/// Object path of the one object the service serves.
pub const OBJECT_PATH: &str = "/org/leco/Overseer1";

/// The interface's introspection XML, as the service serves it (a test
/// keeps the two equal). Documentation of each member is in the file.
pub const INTROSPECTION_XML: &str = include_str!("../org.leco.Overseer1.xml");
