//! `leco-service run`, the unprivileged side of the privilege split: taking
//! over the eBPF objects `load` handed over, from systemd (`LISTEN_FDS`) or
//! from pins, and telling apart the settings it can still choose from those
//! baked in.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::Context;
use leco_bpf::{LoadSettings, Received};

use super::sdnotify::take_listen_fds;
use super::{serve, Output};
use crate::bus::BusTarget;
use crate::config::ServiceConfig;
use crate::memory::MemorySettings;
use crate::names::resolved::{Start, CACHE_FDSTORE_NAME, FDSTORE_NAME, MONITOR_SOCKET};

/// Where `run` finds the objects.
#[derive(Debug, Clone)]
pub enum Source {
    /// Passed by systemd from its file descriptor store.
    Inherited,
    /// Pinned by `load --pin DIR`.
    Pins(PathBuf),
}

/// Takes over the objects from `source` and serves them on `bus`. The
/// configuration is read by `configure` only after the hand-over is taken
/// in: that reads and clears `LISTEN_*` while the process is still
/// single-threaded. It also says where to remember.
pub fn run(
    source: &Source,
    configure: impl FnOnce() -> anyhow::Result<(ServiceConfig, Option<MemorySettings>)>,
    hooks_only: bool,
    bus: BusTarget,
) -> anyhow::Result<()> {
    let (received, resolved) = receive(source)?;
    let (cfg, state) = configure()?;
    let cfg = fixed_at_load(cfg, hooks_only, received.settings());
    for d in &received.manifest().degraded {
        tracing::warn!("{d}");
    }
    let baked = received.settings();
    let (maps, _links) = received.into_parts();
    serve(
        &cfg,
        Output::Bus(bus),
        maps,
        baked.wakeup_latency,
        resolved,
        state,
    )
}

/// Takes over the objects, checked complete (see `leco_bpf::handoff`), and
/// where to follow systemd-resolved from: the subscription `load` stored,
/// else its socket (which only root may use). Every error is one line
/// saying what is missing and what to do.
pub fn receive(source: &Source) -> anyhow::Result<(Received, Start)> {
    let socket = || Start::Connect(PathBuf::from(MONITOR_SOCKET));
    match source {
        Source::Inherited => {
            let (resolved, fds): (Vec<_>, Vec<_>) = take_listen_fds()?
                .into_iter()
                .partition(|(name, _)| name == FDSTORE_NAME || name == CACHE_FDSTORE_NAME);
            let mut subscribed = None;
            let mut cache = None;
            for (name, fd) in resolved {
                if name == FDSTORE_NAME {
                    subscribed = Some(UnixStream::from(fd));
                } else {
                    cache = read_cache(fd);
                }
            }
            let resolved = subscribed.map_or_else(socket, |s| Start::Stored(s, cache));
            if fds.is_empty() {
                anyhow::bail!(
                    "no eBPF objects handed over: run `leco-service load` first, as root (in the \
                     unit: ExecStartPre=+leco-service load, with FileDescriptorStoreMax=), or \
                     give --pin DIR"
                );
            }
            let received = Received::from_fds(fds)?;
            if !received.ignored().is_empty() {
                tracing::warn!(
                    "ignoring descriptors that are not part of this load: {}",
                    received.ignored().join(", ")
                );
            }
            Ok((received, resolved))
        }
        Source::Pins(dir) => Ok((from_pins(dir)?, socket())),
    }
}

/// The cache dump `load` left in a memfd, read from its start.
fn read_cache(fd: std::os::fd::OwnedFd) -> Option<Vec<u8>> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::from(fd);
    let mut dump = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    f.read_to_end(&mut dump).ok()?;
    Some(dump)
}

fn from_pins(dir: &Path) -> anyhow::Result<Received> {
    if !dir.exists() {
        anyhow::bail!(
            "no eBPF objects pinned in {}: run `leco-service load --pin {}` first, as root",
            dir.display(),
            dir.display()
        );
    }
    Received::from_pins(dir).with_context(|| format!("taking over the pins in {}", dir.display()))
}

/// Warns about every setting the configuration asks for that only a new
/// load could apply, and returns the configuration with the loaded values,
/// so that nothing pretends to use what the kernel does not.
pub fn fixed_at_load(
    mut cfg: ServiceConfig,
    hooks_only: bool,
    baked: LoadSettings,
) -> ServiceConfig {
    let warn = |what: &str, asked: String, loaded: String| {
        tracing::warn!(
            "{what} {asked} is fixed when the programs are loaded, and they were loaded with \
             {loaded}: this takes effect at the next `leco-service load` (stop the service \
             completely and start it again)"
        );
    };
    if cfg.update_interval != baked.update_interval {
        warn(
            "update-interval",
            format!("{:?}", cfg.update_interval),
            format!("{:?}", baked.update_interval),
        );
        cfg.update_interval = baked.update_interval;
    }
    if u64::from(cfg.ring_buffer_kib) * 1024 != u64::from(baked.ring_bytes) {
        warn(
            "ring-buffer-kib",
            cfg.ring_buffer_kib.to_string(),
            (baked.ring_bytes / 1024).to_string(),
        );
        cfg.ring_buffer_kib = baked.ring_bytes / 1024;
    }
    if cfg.max_flows != baked.max_flows {
        warn(
            "max-flows",
            cfg.max_flows.to_string(),
            baked.max_flows.to_string(),
        );
        cfg.max_flows = baked.max_flows;
    }
    if hooks_only != baked.hooks_only {
        warn(
            "--hooks-only",
            hooks_only.to_string(),
            baked.hooks_only.to_string(),
        );
    }
    cfg
}
