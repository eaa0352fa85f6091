//! The seams between the running overlay and the parts written next to it
//! (the line model, the configuration parser, `--rx-test`): everything the
//! event loop needs from them goes through here, in the shape it uses it.

use std::path::{Path, PathBuf};

use crate::config::OverlayConfig;

pub(crate) use crate::model::LineModel;

/// The configuration at `path`, or why it cannot be used
/// (`FILE:LINE:COLUMN: what was expected`).
pub(crate) fn load_config(path: &Path) -> anyhow::Result<OverlayConfig> {
    Ok(crate::config::load(path)?)
}

/// The configuration file the overlay reads when none is given.
pub(crate) fn locate_config() -> Option<PathBuf> {
    crate::config::locate()
}

/// The built-in configuration, used when no file exists.
pub(crate) fn default_config() -> OverlayConfig {
    OverlayConfig::default()
}

/// `--rx-test`: the report on what the rules do to `line`.
pub(crate) fn rx_test(config: &OverlayConfig, line: &str) -> anyhow::Result<String> {
    Ok(crate::rxtest::run(config, line))
}
