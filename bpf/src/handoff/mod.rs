//! Handing the loaded objects from a privileged loader to an unprivileged
//! reader, and taking them over on the other side.
//!
//! A [`Capture`](crate::Capture) (root) makes a [`Handover`]: one file descriptor per kernel
//! object that must outlive it — the maps user space reads (event ring
//! buffer, flow table, counters) and the link of every attached program —
//! each under a fixed name, then a [`Manifest`] naming them all by kernel id,
//! always last. The descriptors go to systemd's file descriptor store (the
//! service does that) or are pinned in a bpffs directory
//! ([`Handover::pin`]). Holding a link holds its program and the maps the
//! program uses, so the programs stay attached for exactly as long as the
//! store or the pins hold them, and no longer.
//!
//! The reader ([`Received`]) gets named descriptors back (`LISTEN_FDS`, or
//! [`Received::from_pins`]) and trusts nothing it cannot check: without a
//! manifest the handover is unfinished; every object the manifest names must
//! be there with the manifest's kernel id (so leftovers of another load are
//! told apart); map types and the flow layout must be this build's. Reading
//! a map through a descriptor someone else opened needs no capability
//! (Linux 6.5+), so the reader can run with none.

mod error;
mod loader;
mod reader;

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use libbpf_rs::{libbpf_sys, MapCore, MapHandle};

use crate::manifest::{Entry, Manifest};
use crate::skel::types;

use error::libbpf_err;
pub use error::HandoffError;
pub use loader::{all_names, pin_state, unpin, Handover, PinState};
use reader::read_manifest;
pub use reader::{HeldLinks, Received};

/// This build's flow table layout: (key size, value size).
fn our_layout() -> (u32, u32) {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (
        size(std::mem::size_of::<types::leco_flow_key>()),
        size(std::mem::size_of::<types::leco_flow>()),
    )
}

const OUR_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Manifest {
    /// Whether a reader of this build can read the objects it names.
    pub fn compatible(&self) -> Result<(), HandoffError> {
        if self.layout == our_layout() && self.version == OUR_VERSION {
            Ok(())
        } else {
            Err(HandoffError::Incompatible {
                theirs: self.version.clone(),
                ours: OUR_VERSION,
            })
        }
    }

    /// Whether every object named is still loaded, checked by kernel id
    /// (`BPF_*_GET_FD_BY_ID`, so it needs root): what a loader that cannot
    /// see where the objects are held uses to tell a complete earlier load
    /// from a vanished one. `Err` says what is gone.
    pub fn check_alive(&self) -> Result<(), String> {
        for e in &self.entries {
            match e {
                Entry::Map {
                    id, kernel_name, ..
                } => {
                    let m = MapHandle::from_map_id(*id)
                        .map_err(|_| format!("map {} (id {id}) is gone", e.handover_name()))?;
                    if m.name().as_bytes() != kernel_name.as_bytes() {
                        return Err(format!("map id {id} is now another map ({:?})", m.name()));
                    }
                }
                Entry::Link { id, prog_id, .. } => {
                    let fd = link_by_id(*id)
                        .map_err(|_| format!("link {} (id {id}) is gone", e.handover_name()))?;
                    let info = libbpf_rs::query::LinkInfo::from_fd(fd.as_fd())
                        .map_err(|e| format!("reading link id {id}: {e}"))?;
                    if info.prog_id != *prog_id {
                        return Err(format!("link id {id} now attaches another program"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the manifest map with kernel id `id` (needs root).
    pub fn from_map_id(id: u32) -> Result<Manifest, HandoffError> {
        let m = MapHandle::from_map_id(id).map_err(libbpf_err(format!("opening map id {id}")))?;
        read_manifest(m.as_fd())
    }
}

fn link_by_id(id: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_link_get_fd_by_id(id) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
