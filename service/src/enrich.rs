//! Who is behind a flow, from /proc: executable, command line, user name,
//! and the cgroup's unit / container / app.
//!
//! The kernel already captured pid, uid, cgroup id and comm at the moment of
//! the connection; /proc adds the rest if the process is still there. A pid
//! can be reused, so a process is identified by (pid, start time), and
//! /proc is only believed if the process there started before the flow did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leco_bpf::Owner;

use std::io::Read;

use leco_proto::{SafeText, CUT_MARK, MAX_CMDLINE_BYTES, MAX_TEXT_BYTES};

use crate::cgroup::{CgroupInfo, CgroupResolver};

/// What /proc says about one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    /// Executable path.
    pub exe: Option<SafeText>,
    /// Arguments.
    pub cmdline: Option<Arc<[SafeText]>>,
}

/// Everything enrichment found for an owner.
#[derive(Debug, Clone, Default)]
pub struct Enrichment {
    /// From /proc/PID.
    pub proc: Arc<ProcInfo>,
    /// User name of the uid.
    pub user: Option<SafeText>,
    /// cgroup path and what it says.
    pub cgroup: Option<CgroupInfo>,
}

struct CachedProc {
    start_ticks: u64,
    checked: Instant,
    info: Arc<ProcInfo>,
    cgroup_hint: Option<String>,
}

/// Bounded caches: memory stays flat however many processes come and go.
const PROC_CACHE: usize = 1_024;
const USER_CACHE: usize = 1_024;
/// A cached process is re-validated at most this often: reusing its pid
/// needs the pid space to wrap around, which takes far longer.
const REVALIDATE: Duration = Duration::from_secs(1);

/// Enriches owners, with caches.
pub struct Enricher {
    procs: HashMap<u32, CachedProc>,
    users: HashMap<u32, Option<SafeText>>,
    cgroups: CgroupResolver,
    ticks_per_sec: u64,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("procs", &self.procs.len())
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Enricher {
    /// An enricher resolving cgroups under `cgroup_root`.
    pub fn new(cgroup_root: Option<std::path::PathBuf>) -> Enricher {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Enricher {
            procs: HashMap::new(),
            users: HashMap::new(),
            cgroups: CgroupResolver::new(cgroup_root),
            ticks_per_sec: u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100),
        }
    }

    /// Enriches `owner`, whose flow started at `started` (CLOCK_BOOTTIME).
    pub fn enrich(&mut self, owner: &Owner, started: Duration) -> Enrichment {
        let (proc, hint) = if owner.pid == 0 {
            (Arc::default(), None)
        } else {
            self.proc(owner.pid, started)
        };
        Enrichment {
            proc,
            user: self.user(owner.uid),
            cgroup: self.cgroups.resolve(owner.cgroup_id, hint.as_deref()),
        }
    }

    fn proc(&mut self, pid: u32, started: Duration) -> (Arc<ProcInfo>, Option<String>) {
        let now = Instant::now();
        // A process that started after the flow is not its owner: the pid
        // was reused. (Both clocks count from boot; ticks are coarse, so
        // allow one.)
        let started_ticks = (started.as_millis() as u64).saturating_mul(self.ticks_per_sec) / 1000;
        let owns = |start_ticks: u64| start_ticks <= started_ticks + 1;
        if let Some(c) = self.procs.get(&pid) {
            if now.duration_since(c.checked) < REVALIDATE {
                if !owns(c.start_ticks) {
                    return (Arc::default(), None);
                }
                return (Arc::clone(&c.info), c.cgroup_hint.clone());
            }
        }
        let Some(start_ticks) = start_ticks(pid) else {
            self.procs.remove(&pid);
            return (Arc::default(), None); // gone: the kernel's facts will do
        };
        if !owns(start_ticks) {
            return (Arc::default(), None);
        }
        if let Some(c) = self.procs.get_mut(&pid) {
            if c.start_ticks == start_ticks {
                c.checked = now;
                return (Arc::clone(&c.info), c.cgroup_hint.clone());
            }
        }
        let info = Arc::new(ProcInfo {
            exe: std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| SafeText::bounded(p.as_os_str().as_encoded_bytes(), MAX_TEXT_BYTES)),
            cmdline: read_cmdline(pid).map(Arc::from),
        });
        // Only a hint (the cgroup id decides): a long one is not worth its
        // room in the cache, and the id is resolved without it.
        let hint = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|s| unified_cgroup(&s))
            .filter(|h| h.len() <= MAX_TEXT_BYTES);
        if self.procs.len() >= PROC_CACHE {
            // Crude but bounded: forget the oldest half.
            let mut by_age: Vec<(u32, Instant)> =
                self.procs.iter().map(|(p, c)| (*p, c.checked)).collect();
            by_age.sort_by_key(|(_, t)| *t);
            for (p, _) in by_age.into_iter().take(PROC_CACHE / 2) {
                self.procs.remove(&p);
            }
        }
        self.procs.insert(
            pid,
            CachedProc {
                start_ticks,
                checked: now,
                info: Arc::clone(&info),
                cgroup_hint: hint.clone(),
            },
        );
        (info, hint)
    }

    fn user(&mut self, uid: u32) -> Option<SafeText> {
        if let Some(u) = self.users.get(&uid) {
            return u.clone();
        }
        if self.users.len() >= USER_CACHE {
            self.users.clear();
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| SafeText::bounded(u.name.as_bytes(), MAX_TEXT_BYTES));
        self.users.insert(uid, name.clone());
        name
    }
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot. Read
/// as bytes: the comm in it is whatever the process named itself, UTF-8 or
/// not, and must not cost the rest of what is known about it.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

fn parse_start_ticks(stat: &[u8]) -> Option<u64> {
    // comm (field 2) may contain spaces and parentheses: count from the last ')'.
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let after = std::str::from_utf8(after).ok()?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whatever a process's command line holds, this much of it is read:
/// enough to fill [`MAX_CMDLINE_BYTES`] however it is split.
const CMDLINE_READ: u64 = 4 * MAX_CMDLINE_BYTES as u64;

/// The command line of `pid`, bounded ([`SafeText::arguments`]); a process
/// can make it megabytes long, and only the start is read.
fn read_cmdline(pid: u32) -> Option<Vec<SafeText>> {
    let file = std::fs::File::open(format!("/proc/{pid}/cmdline")).ok()?;
    let mut bytes = Vec::new();
    file.take(CMDLINE_READ).read_to_end(&mut bytes).ok()?;
    if bytes.is_empty() {
        return None;
    }
    Some(split_cmdline(&bytes, bytes.len() as u64 == CMDLINE_READ))
}

/// The arguments of `bytes`; when `more` follow unread, the last says so.
fn split_cmdline(bytes: &[u8], more: bool) -> Vec<SafeText> {
    let mut args = SafeText::arguments(bytes);
    if more && !args.last().is_some_and(|a| a.ends_with(CUT_MARK)) {
        args.push(SafeText::from(CUT_MARK));
    }
    args
}

/// The cgroup v2 line (`0::/path`) of /proc/PID/cgroup.
fn unified_cgroup(s: &str) -> Option<String> {
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_process_names() {
        let stat =
            "42 (we ird) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200";
        assert_eq!(parse_start_ticks(stat.as_bytes()), Some(98765));
        assert_eq!(parse_start_ticks(b"garbage"), None);
        let not_utf8 =
            b"42 (\xff\xfe)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1 2";
        assert_eq!(parse_start_ticks(not_utf8), Some(98765));
    }

    #[test]
    fn cmdline_and_cgroup_parsing() {
        assert_eq!(
            split_cmdline(b"curl\0-s\0https://x\0", false),
            ["curl", "-s", "https://x"]
        );
        assert_eq!(split_cmdline(b"bad\xff\0", false), ["bad\u{FFFD}"]);
        // Read short of the end: the last argument says more followed.
        assert_eq!(
            split_cmdline(b"java\0-cp\0a.jar:b", true),
            ["java", "-cp", "a.jar:b", "…"]
        );
        assert_eq!(
            unified_cgroup("12:cpu:/x\n0::/user.slice/a.scope\n").as_deref(),
            Some("/user.slice/a.scope")
        );
    }

    #[test]
    fn enriches_this_very_process() {
        let mut e = Enricher::new(None);
        let me = Owner {
            tid: std::process::id(),
            pid: std::process::id(),
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: leco_bpf::KernelName::new(b"test"),
        };
        let later = Duration::from_secs(10 * 365 * 86_400);
        let got = e.enrich(&me, later);
        assert!(
            got.proc.exe.as_deref().is_some_and(|x| x.contains('/')),
            "{got:?}"
        );
        assert!(got.proc.cmdline.as_ref().is_some_and(|c| !c.is_empty()));
        assert_eq!(got.user.as_deref(), Some("root"));
        // A flow that started before this process did cannot be its.
        let reused = e.enrich(&me, Duration::ZERO);
        assert_eq!(reused.proc.exe, None);
    }
}
