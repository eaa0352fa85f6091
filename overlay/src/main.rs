//! `leco-overlay`: the desktop overlay. (Stub: the Wayland engineer owns the
//! command line; the other engineers add their flags.)

fn main() {}
