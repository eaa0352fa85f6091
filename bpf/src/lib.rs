//! leco's kernel side: eBPF programs (BTF tracepoints and cgroup hooks, no
//! kprobes or fentry) that follow every TCP and UDP flow with its owning
//! process and byte counts, and the Rust API that loads them and reads what
//! they report.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let capture = leco_bpf::Capture::load(&leco_bpf::Options::default())?;
//! let mut reader = capture.maps()?.reader()?;
//! let mut events = Vec::new();
//! reader.poll(std::time::Duration::from_secs(1), &mut events)?;
//! # Ok(()) }
//! ```
//!
//! The object file is compiled by `build.rs` and embedded: nothing is read
//! from disk at run time but the kernel's own BTF.

mod caps;
mod error;
mod event;
mod load;
mod maps;

#[allow(clippy::all, missing_debug_implementations, unsafe_op_in_unsafe_fn, dead_code)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/leco.skel.rs"));
}

pub use error::LoadError;
pub use event::{DecodeError, Direction, Event, EventKind, Flow, FlowKey, Owner, Proto};
pub use load::{cgroup2_root, Capture, Options};
pub use maps::{EventReader, KernelCounters, KernelMaps};
