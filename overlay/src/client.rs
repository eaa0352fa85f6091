//! The bus client: `Snapshot()` whenever the service (re)appears, then
//! `ConnectionEvent` signals. (Stub: the Wayland engineer owns it.)
