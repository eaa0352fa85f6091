//! The wlr-layer-shell surface (smithay-client-toolkit). (Stub: the Wayland
//! engineer owns it.)
