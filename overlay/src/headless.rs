//! `--render-png`: what the surface would show, written to a PNG. (Stub:
//! the render engineer owns it.)
