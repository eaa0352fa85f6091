//! leco-overlay: live connection lines on the desktop.
//!
//! The pipeline, one module a step: events from the bus ([`client`]) or a
//! file ([`events`]) feed the [`model`], which formats each connection
//! ([`format`]), passes the line through the user's [`rules`], gives it a
//! stable row ([`rows`]) and an opacity along the [`fade`] curve; the
//! [`render`]er draws the resulting [`model::Frame`] into a pixmap, which the
//! [`surface`] shows on a wlr-layer-shell surface (or [`headless`] writes to
//! a PNG).

pub mod app;
pub mod client;
pub mod color;
pub mod config;
pub mod events;
pub mod fade;
pub mod format;
pub mod headless;
pub mod model;
pub mod plot;
pub mod render;
pub mod rows;
pub mod rules;
pub mod rxtest;
pub mod surface;
