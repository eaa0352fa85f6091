//! Loading and attaching the programs of the table in `programs.rs`: the
//! one privileged step.

use std::collections::VecDeque;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, OpenObject, PrintLevel, ProgramMut};

use crate::caps;
use crate::error::LoadError;
use crate::manifest::MapRole;
use crate::maps::KernelMaps;
use crate::programs::{self, Group, Hook, PROGRAMS};
use crate::skel::{LecoSkel, LecoSkelBuilder};

/// Settings fixed at load time.
#[derive(Debug, Clone)]
pub struct Options {
    /// Minimum time between two traffic updates of one flow.
    pub update_interval: Duration,
    /// Longest time a record may wait in the ring buffer before the reader
    /// is woken: the kernel wakes it at most once per this interval, and the
    /// reader drains again after it (see [`crate::RecordReader`]).
    pub wakeup_latency: Duration,
    /// Size of the event ring buffer in bytes: a power of two, at least one
    /// page. Records are about 180 bytes; the default 256 KiB holds some
    /// 1,400, over 50 ms of a 5,000 connections/s storm, and stays warm in
    /// cache (2 MiB made every hook that writes a record measurably slower).
    pub ring_bytes: u32,
    /// Benchmarks only: attach every program but make each return at once,
    /// to measure what the hooks alone cost. Nothing is recorded.
    pub hooks_only: bool,
    /// Capacity of the kernel's flow table (LRU: the least recently used
    /// flow makes room when it is full); at least [`MIN_FLOWS`].
    pub max_flows: u32,
    /// Root of the cgroup v2 hierarchy to attach the UDP peer hooks to;
    /// found in /proc/self/mountinfo when `None`.
    pub cgroup_root: Option<PathBuf>,
}

/// The smallest flow table the kernel side is given: smaller requests are
/// raised to it, since an LRU table that small would evict live flows.
pub const MIN_FLOWS: u32 = 64;

impl Options {
    /// The defaults: what leco-service uses unless configured otherwise.
    pub const DEFAULT: Options = Options {
        update_interval: Duration::from_secs(1),
        wakeup_latency: Duration::from_millis(2),
        ring_bytes: 256 * 1024,
        hooks_only: false,
        max_flows: 32_768,
        cgroup_root: None,
    };

    /// The flow table's capacity: `max_flows`, at least [`MIN_FLOWS`].
    pub fn flow_capacity(&self) -> u32 {
        self.max_flows.max(MIN_FLOWS)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::DEFAULT
    }
}

/// The loaded and attached programs. Dropping it detaches everything and,
/// unless maps are held elsewhere, frees the kernel state.
pub struct Capture {
    skel: LecoSkel<'static>,
    links: Vec<(&'static str, Link)>,
    degraded: Vec<String>,
    options: Options,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("degraded", &self.degraded)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Loads the embedded programs into the kernel and attaches them.
    pub fn load(opts: &Options) -> Result<Capture, LoadError> {
        check_privileges()?;
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(LoadError::NoBtf);
        }
        capture_libbpf_log();

        let mut degraded = Vec::new();
        // The optional groups use the newest kernel features (cgroup
        // sock_addr programs with task storage, the drop reason): a kernel
        // that refuses one of their programs still gets everything else.
        let mut without: Vec<Group> = Vec::new();
        let mut skel = loop {
            match open_and_load(opts, &without) {
                Ok(skel) => break skel,
                Err(LoadError::Rejected {
                    program, reason, ..
                }) if programs::find(&program).is_some_and(|p| {
                    Group::OPTIONAL.contains(&p.group) && !without.contains(&p.group)
                }) =>
                {
                    let group = programs::find(&program).map_or(Group::Core, |p| p.group);
                    degraded.push(format!(
                        "the kernel refused {program} ({reason}): {}",
                        group.lost()
                    ));
                    capture_libbpf_log();
                    without.push(group);
                }
                Err(e) => return Err(e),
            }
        };
        let cgroup_hooks = !without.contains(&Group::Cgroup);
        let mut links = attach_tracepoints(&skel, &without)?;
        if cgroup_hooks {
            match attach_cgroup_hooks(&skel, opts.cgroup_root.as_deref()) {
                Ok(mut l) => {
                    links.append(&mut l);
                    count_udp_on_arrival(&mut skel)?;
                }
                Err(why) => degraded.push(format!("{} ({why})", Group::Cgroup.lost())),
            }
        }
        Ok(Capture {
            skel,
            links,
            degraded,
            options: opts.clone(),
        })
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The maps user space reads, by role.
    pub(crate) fn map_fds(&self) -> [(MapRole, BorrowedFd<'_>); 4] {
        let m = &self.skel.maps;
        [
            (MapRole::Events, m.events.as_fd()),
            (MapRole::Flows, m.flows.as_fd()),
            (MapRole::Counters, m.bss.as_fd()),
            (MapRole::BlockedIn, m.blocked_in.as_fd()),
        ]
    }

    /// The link of every attached program, by program name.
    pub(crate) fn link_fds(&self) -> impl Iterator<Item = (&'static str, BorrowedFd<'_>)> {
        self.links.iter().map(|(p, l)| (*p, l.as_fd()))
    }

    /// What works less well than it should on this machine, one sentence each.
    pub fn degraded(&self) -> &[String] {
        &self.degraded
    }

    /// Handles to the kernel's maps (their own file descriptors): the
    /// reading side of leco, which needs no privileges once it has them.
    pub fn maps(&self) -> Result<KernelMaps, LoadError> {
        KernelMaps::from_skel(&self.skel).map_err(|source| LoadError::Libbpf {
            context: "duplicating map handles",
            source,
        })
    }

    /// Ids of the loaded programs, for `bpftool prog show id N` and the
    /// benchmark's per-hook cost (`bpf_stats`).
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        self.skel
            .object()
            .progs()
            .filter_map(|prog| {
                let id = libbpf_rs::Program::id_from_fd(prog.as_fd()).ok()?;
                Some((prog.name().to_string_lossy().into_owned(), id))
            })
            .collect()
    }
}

/// Whether this process may load and attach the programs; `Err` names the
/// capabilities it lacks. [`Capture::load`] checks it first; a caller with
/// other steps before loading checks it before them, so that the missing
/// privilege is what it reports.
pub fn check_privileges() -> Result<(), LoadError> {
    let missing = caps::missing_for_load();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LoadError::NotPrivileged {
            missing: missing.join(", "),
        })
    }
}

/// Opens the embedded object, applies `opts`, and loads it, without the
/// programs of the groups in `without`.
fn open_and_load(opts: &Options, without: &[Group]) -> Result<LecoSkel<'static>, LoadError> {
    // The skeleton borrows its open-object storage for as long as it lives;
    // a Capture lives about as long as the process, so leak the few bytes
    // rather than make Capture self-referential.
    let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open =
        LecoSkelBuilder::default()
            .open(storage)
            .map_err(|source| LoadError::Libbpf {
                context: "opening the embedded eBPF object",
                source,
            })?;
    // Without it the programs would run with the compiled-in defaults
    // whatever was asked: refuse rather than pretend.
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| LoadError::BadObject {
            what: "no .rodata map for the load-time settings (update interval, wake-up \
                   latency, hooks-only)"
                .to_owned(),
        })?;
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    ro.update_interval_ns = ns(opts.update_interval);
    ro.wakeup_interval_ns = ns(opts.wakeup_latency);
    ro.hooks_only = opts.hooks_only;
    let sized = |context| move |source| LoadError::Libbpf { context, source };
    open.maps
        .flows
        .set_max_entries(opts.flow_capacity())
        .map_err(sized("sizing the flow table"))?;
    open.maps
        .events
        .set_max_entries(opts.ring_bytes)
        .map_err(sized(
            "sizing the ring buffer (a power of two, at least one page)",
        ))?;
    if !without.is_empty() {
        for mut prog in open.open_object_mut().progs_mut() {
            let name = prog.name().to_string_lossy();
            if programs::find(&name).is_some_and(|p| without.contains(&p.group)) {
                prog.set_autoload(false);
            }
        }
    }
    open.load()
        .map_err(|source| diagnose_load(source, take_log()))
}

/// The loaded program called `name` (a row of [`PROGRAMS`]).
fn program<'a>(
    skel: &'a LecoSkel<'static>,
    name: &'static str,
) -> Result<ProgramMut<'a>, LoadError> {
    skel.object()
        .progs_mut()
        .find(|p| p.name() == name)
        .ok_or_else(|| LoadError::BadObject {
            what: format!("no program {name}, which bpf/src/programs.rs lists"),
        })
}

/// Every program that may be attached, hooks with and without cgroups.
pub(crate) fn program_names() -> impl Iterator<Item = &'static str> {
    PROGRAMS.iter().map(|p| p.name)
}

/// Once the UDP arrival hook is attached, tells the programs to count UDP
/// datagrams there rather than as they are read. (A datagram that arrives
/// in the microseconds between the attach and this, and is read after,
/// goes uncounted: never one counted twice.)
fn count_udp_on_arrival(skel: &mut LecoSkel<'static>) -> Result<(), LoadError> {
    let bss = skel
        .maps
        .bss_data
        .as_deref_mut()
        .ok_or_else(|| LoadError::BadObject {
            what: "no .bss map for the programs' switches".to_owned(),
        })?;
    bss.udp_rx_at_ingress = 1;
    Ok(())
}

/// Attaches every tracepoint program but those of the groups in `without`
/// (they are not loaded).
fn attach_tracepoints(
    skel: &LecoSkel<'static>,
    without: &[Group],
) -> Result<Vec<(&'static str, Link)>, LoadError> {
    let mut links = Vec::new();
    for p in PROGRAMS {
        if without.contains(&p.group) {
            continue;
        }
        if let Hook::Tracepoint { event, .. } = p.hook {
            let link = program(skel, p.name)?
                .attach()
                .map_err(|source| LoadError::Attach {
                    program: p.name,
                    hook: event,
                    source,
                })?;
            links.push((p.name, link));
        }
    }
    Ok(links)
}

/// Attaches every cgroup program to the cgroup v2 root (`root`, or the
/// mounted one); `Err` says why they cannot be.
fn attach_cgroup_hooks(
    skel: &LecoSkel<'static>,
    root: Option<&Path>,
) -> Result<Vec<(&'static str, Link)>, String> {
    let root = match root {
        Some(r) => r.to_path_buf(),
        None => cgroup2_root().ok_or("no cgroup v2 hierarchy is mounted")?,
    };
    let dir = File::open(&root).map_err(|e| format!("opening {}: {e}", root.display()))?;
    PROGRAMS
        .iter()
        .filter_map(|p| match p.hook {
            Hook::Cgroup { section } => Some((p.name, section)),
            Hook::Tracepoint { .. } => None,
        })
        .map(|(name, section)| {
            program(skel, name)
                .map_err(|e| e.to_string())?
                .attach_cgroup(dir.as_raw_fd())
                .map(|link| (name, link))
                .map_err(|e| format!("attaching {section} to {}: {e}", root.display()))
        })
        .collect()
}

/// Mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
pub fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&info)
}

fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
}

// ---- turning libbpf's log into one readable line -------------------------

static LIBBPF_LOG: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
const LOG_LINES: usize = 400;

fn capture_libbpf_log() {
    fn sink(level: PrintLevel, msg: String) {
        let msg = msg.trim_end().to_owned();
        match level {
            PrintLevel::Warn => tracing::debug!(target: "libbpf", "{msg}"),
            _ => tracing::trace!(target: "libbpf", "{msg}"),
        }
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(msg);
        }
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.clear();
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, sink)));
}

fn take_log() -> Vec<String> {
    LIBBPF_LOG
        .lock()
        .map(|mut l| {
            l.drain(..)
                .flat_map(|m| m.lines().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads libbpf's log after a failed load and names what the kernel refused.
fn diagnose_load(source: libbpf_rs::Error, log: Vec<String>) -> LoadError {
    // "failed to find kernel BTF type ID of 'sock_send_length'": a missing tracepoint.
    for line in &log {
        if let Some(rest) = line.split("BTF type ID of '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            let missing = PROGRAMS.iter().find_map(|p| match p.hook {
                Hook::Tracepoint { event, needs } if event.rsplit('/').next() == Some(name) => {
                    Some(LoadError::MissingTracepoint {
                        tracepoint: event,
                        needs,
                    })
                }
                _ => None,
            });
            if let Some(missing) = missing {
                return missing;
            }
        }
    }
    // "prog 'on_x': failed to load: -22" (+ the verifier's log before it).
    let failed = log.iter().enumerate().find_map(|(i, line)| {
        let rest = line.split("prog '").nth(1)?;
        let (name, tail) = rest.split_once('\'')?;
        tail.contains("failed to load")
            .then(|| (i, name.to_owned(), tail.to_owned()))
    });
    let Some((at, program, tail)) = failed else {
        return LoadError::Libbpf {
            context: "loading the eBPF object",
            source,
        };
    };
    let hook = programs::find(&program)
        .map_or("?", |p| p.hook_name())
        .to_owned();
    // The verifier's verdict is the last line before "-- END PROG LOAD LOG --"
    // that is not an instruction dump or statistics.
    let verdict = log[..at]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("--")
                && !l.starts_with("processed ")
                && !l.starts_with(';')
                && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !l.starts_with("libbpf: prog")
        })
        .map(str::to_owned);
    let reason = match verdict {
        Some(v) if tail.trim_end().ends_with(": -1") => {
            format!("{v} (operation not permitted: is the kernel locked down, or bpf restricted?)")
        }
        Some(v) => v,
        None => tail.trim_start_matches(':').trim().to_owned(),
    };
    LoadError::Rejected {
        program,
        hook,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_a_hybrid_layout() {
        let info = "25 1 0:23 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
                    31 25 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("25 1 0:23 / /x rw - tmpfs tmpfs rw\n"),
            None
        );
    }

    #[test]
    fn names_a_missing_tracepoint() {
        let log = vec!["libbpf: prog 'on_sock_send_length': failed to find kernel BTF type ID of 'sock_send_length': -3".into()];
        let err = diagnose_load(libbpf_rs::Error::from_raw_os_error(3), log);
        assert_eq!(
            err.to_string(),
            "the kernel has no tracepoint sock/sock_send_length (needs Linux 6.3+)"
        );
    }

    #[test]
    fn names_a_rejected_program_with_the_verifier_verdict() {
        let log = [
            "libbpf: prog 'on_sock_send_length': BPF program load failed: Permission denied",
            "libbpf: prog 'on_sock_send_length': -- BEGIN PROG LOAD LOG --",
            "0: R1=ctx() R10=fp0",
            "; if (ret < 0) @ leco.bpf.c:200",
            "12: (85) call bpf_probe_read_kernel#113",
            "R2 min value is negative, either use unsigned or 'var &= const'",
            "processed 13 insns (limit 1000000)",
            "-- END PROG LOAD LOG --",
            "libbpf: prog 'on_sock_send_length': failed to load: -13",
        ]
        .map(String::from)
        .to_vec();
        let err = diagnose_load(libbpf_rs::Error::from_raw_os_error(13), log);
        assert_eq!(
            err.to_string(),
            "the kernel refused eBPF program on_sock_send_length (for sock/sock_send_length): \
             R2 min value is negative, either use unsigned or 'var &= const'"
        );
    }
}
