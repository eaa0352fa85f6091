//! The running overlay: bus client, model, renderer and surface in one
//! event loop. (Stub: the Wayland engineer owns it.)
