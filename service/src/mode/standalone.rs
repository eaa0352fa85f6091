//! `leco-service --standalone`: load the programs and serve, in this one
//! process; ending it detaches everything.

use std::path::PathBuf;

use super::{serve, Output};
use crate::config::ServiceConfig;
use crate::memory::MemorySettings;
use crate::names::resolved::{Start, MONITOR_SOCKET};

/// Loads and attaches the programs with `options`, then serves to `output`
/// until stopped, remembering in `state`.
pub fn run(
    cfg: &ServiceConfig,
    options: &leco_bpf::Options,
    output: Output,
    state: Option<MemorySettings>,
) -> anyhow::Result<()> {
    let capture = leco_bpf::Capture::load(options)?;
    for d in capture.degraded() {
        tracing::warn!("{d}");
    }
    let ids: Vec<String> = capture
        .program_ids()
        .into_iter()
        .map(|(name, id)| format!("{name}={id}"))
        .collect();
    tracing::debug!("attached programs: {}", ids.join(" "));
    let maps = capture.maps()?;
    let resolved = Start::Connect(PathBuf::from(MONITOR_SOCKET));
    serve(cfg, output, maps, options.wakeup_latency, resolved, state)?;
    // Dropping the capture detaches every program.
    drop(capture);
    Ok(())
}
