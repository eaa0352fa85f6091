//! Line rules (fancy-regex): rewrite, group, hide. (Stub: the lines
//! engineer owns it.)

/// The ordered rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {}
