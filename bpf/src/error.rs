//! Why loading can fail, worded for the person who has to fix it.

/// A failure to load or attach leco's eBPF programs. Each variant's message
/// is one line that names the missing piece.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The process lacks the capabilities to load and attach programs.
    #[error(
        "loading eBPF programs needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or root); \
         this process lacks {missing}: run it as root, or as a unit with those capabilities"
    )]
    NotPrivileged {
        /// The missing capability names, comma separated.
        missing: String,
    },
    /// The kernel exposes no BTF type information.
    #[error(
        "the kernel exposes no BTF at /sys/kernel/btf/vmlinux: leco needs a kernel built \
         with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    /// A tracepoint the programs hook is absent from this kernel.
    #[error("the kernel has no tracepoint {tracepoint} (needs {needs})")]
    MissingTracepoint {
        /// `group/name` of the tracepoint.
        tracepoint: &'static str,
        /// Kernel version or option that provides it.
        needs: &'static str,
    },
    /// The verifier or the kernel refused one program.
    #[error("the kernel refused eBPF program {program} (for {hook}): {reason}")]
    Rejected {
        /// Program name in leco.bpf.c.
        program: String,
        /// The hook it was meant for.
        hook: String,
        /// The kernel's or verifier's last word on it.
        reason: String,
    },
    /// A loaded program could not be attached to its hook.
    #[error("attaching {program} to {hook} failed: {source}")]
    Attach {
        /// Program name in leco.bpf.c.
        program: &'static str,
        /// The hook.
        hook: &'static str,
        /// What libbpf said.
        source: libbpf_rs::Error,
    },
    /// Anything else libbpf reported.
    /// The embedded object is not what this build expects (a leco-bpf bug).
    #[error("the embedded eBPF object is not what leco-bpf expects: {what}")]
    BadObject {
        /// What is missing or different.
        what: String,
    },
    #[error("{context}: {source}")]
    Libbpf {
        /// What was being done.
        context: &'static str,
        /// What libbpf said.
        source: libbpf_rs::Error,
    },
}
