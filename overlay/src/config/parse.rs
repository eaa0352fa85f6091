//! KDL → [`OverlayConfig`](super::OverlayConfig), errors with
//! file:line:column. (Stub: the lines engineer owns it.)
