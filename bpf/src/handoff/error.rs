//! Why a handover fails, and the adapters that turn a failed call into
//! that.

use std::io;

use crate::manifest::MANIFEST_NAME;

/// Why a handover cannot be made, found or used. One line each, naming what
/// is missing and what to do.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Objects were handed over, but no manifest with them.
    #[error(
        "the eBPF objects handed over come without their manifest ({present} objects, no \
         `{MANIFEST_NAME}`): the load that made them did not finish; run `leco-service load` again"
    )]
    NoManifest {
        /// How many objects were there.
        present: usize,
    },
    /// More than one manifest: leftovers of another load.
    #[error(
        "{count} manifests were handed over (`{MANIFEST_NAME}`): leftovers of another load; \
         stop the service completely and start it again"
    )]
    ManyManifests {
        /// How many.
        count: usize,
    },
    /// The manifest names objects that are absent (or are other objects).
    #[error("incomplete handover: {what}; run `leco-service load` again")]
    Incomplete {
        /// What is missing or wrong, e.g. `leco-map-flows (map id 12) is missing`.
        what: String,
    },
    /// The manifest cannot be read.
    #[error("unreadable handover manifest: {0}")]
    Manifest(String),
    /// The objects were made by a leco this reader cannot read.
    #[error(
        "the eBPF objects were loaded by leco {theirs} with another data layout than this \
         leco {ours}: stop the service completely and start it again, so that this version \
         loads its own programs"
    )]
    Incompatible {
        /// Version that loaded them.
        theirs: String,
        /// This build's version.
        ours: &'static str,
    },
    /// A kernel or file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// What the kernel said.
        source: io::Error,
    },
}

/// Wraps an I/O failure with what was being done.
pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HandoffError {
    let context = context.into();
    move |source| HandoffError::Io { context, source }
}

/// Wraps a libbpf failure with what was being done.
pub(super) fn libbpf_err(
    context: impl Into<String>,
) -> impl FnOnce(libbpf_rs::Error) -> HandoffError {
    let context = context.into();
    move |e| HandoffError::Io {
        context,
        source: io::Error::other(e.to_string()),
    }
}
