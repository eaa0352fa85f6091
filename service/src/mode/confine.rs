//! The loader's sandbox. `load` runs as root from the unit's
//! `ExecStartPre=+`, which exempts it from the unit's sandboxing (that one
//! is made for `run`, with no capability at all, and `!` would apply it),
//! so the loader confines itself as soon as it has read what it reads at
//! start (configuration, users, `$NOTIFY_SOCKET`):
//!
//! - a mount namespace of its own, where the whole system is read-only but
//!   for the directories it writes in (the state file's, the pins'), and
//!   `/home`, `/root` and `/run/user` are empty;
//! - a network namespace of its own, with no interface up: no network
//!   (the notification socket, opened before, stays usable);
//! - only the capabilities loading needs: CAP_BPF, CAP_PERFMON and
//!   CAP_NET_ADMIN (cgroup programs), CAP_SYS_ADMIN only until a stored
//!   load is checked (looking up objects by id), CAP_DAC_OVERRIDE and
//!   CAP_FOWNER only to write in the unit's runtime directory (owned by
//!   user leco) or in pins given to another user, CAP_CHOWN only to give
//!   pins away; every other one leaves the bounding set too, and
//!   `no_new_privs` is set;
//!
//! and then checks that all of it took, by trying what it forbids.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Why the loader could not confine itself.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A step failed.
    #[error("confining the loader: {what}: {source}")]
    Step {
        /// The step.
        what: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// A check found the sandbox weaker than set up.
    #[error("confining the loader: {0} (the sandbox did not take; refusing to load)")]
    NotTaken(String),
}

fn step(what: impl Into<String>) -> impl FnOnce(io::Error) -> ConfineError {
    let what = what.into();
    move |source| ConfineError::Step { what, source }
}

/// What the loader still needs once confined.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// Directories it writes in. Missing ones are left out (writing there
    /// fails as it would have anyway).
    pub writable: Vec<PathBuf>,
    /// To look up kernel objects by id (checking a stored load).
    pub objects_by_id: bool,
    /// To write in, and change the mode of, another user's directories.
    pub foreign_files: bool,
    /// To give pins to another user.
    pub chown: bool,
}

impl Needs {
    fn capabilities(&self) -> CapsHashSet {
        let mut keep: CapsHashSet = [
            Capability::CAP_BPF,
            Capability::CAP_PERFMON,
            Capability::CAP_NET_ADMIN,
        ]
        .into_iter()
        .collect();
        let optional = [
            (self.objects_by_id, Capability::CAP_SYS_ADMIN),
            (self.foreign_files, Capability::CAP_DAC_OVERRIDE),
            (self.foreign_files, Capability::CAP_FOWNER),
            (self.chown, Capability::CAP_CHOWN),
        ];
        keep.extend(optional.into_iter().filter(|(n, _)| *n).map(|(_, c)| c));
        keep
    }
}

/// The sandbox in place; capabilities can be given up as the load goes on.
#[derive(Debug)]
pub struct Confined {
    kept: CapsHashSet,
    /// The namespaces, when the loader could make them (CAP_SYS_ADMIN).
    namespaces: bool,
    writable: Vec<PathBuf>,
}

/// Confines the loader to `needs` (see the module docs). Must run while the
/// process has one thread: capabilities are per thread.
pub fn confine(needs: &Needs) -> Result<Confined, ConfineError> {
    single_threaded()?;
    let writable: Vec<PathBuf> = needs
        .writable
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| p.canonicalize())
        .collect::<io::Result<_>>()
        .map_err(step("resolving the writable directories"))?;
    let namespaces =
        caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false);
    if namespaces {
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)
            .map_err(|e| step("unshare(CLONE_NEWNS | CLONE_NEWNET)")(e.into()))?;
        read_only_system(&writable)?;
    } else {
        tracing::debug!("no CAP_SYS_ADMIN: the loader keeps the system's mounts and network");
    }
    let kept = needs.capabilities();
    drop_capabilities(&kept)?;
    let confined = Confined {
        kept,
        namespaces,
        writable,
    };
    confined.check()?;
    Ok(confined)
}

impl Confined {
    /// Gives up `cap` for good (no-op if it was not kept).
    pub fn give_up(&mut self, cap: Capability) -> Result<(), ConfineError> {
        if self.kept.remove(&cap) {
            // The bounding set needs CAP_SETPCAP to change, gone by now; it
            // no longer matters once the capability is out of the
            // permitted set: with no_new_privs nothing brings it back.
            keep_only(&self.kept)?;
        }
        Ok(())
    }

    /// Tries what the sandbox forbids.
    fn check(&self) -> Result<(), ConfineError> {
        let not = |what: String| Err(ConfineError::NotTaken(what));
        let status = std::fs::read_to_string("/proc/self/status")
            .map_err(step("reading /proc/self/status"))?;
        if field(&status, "NoNewPrivs:") != Some("1") {
            return not("no_new_privs is not set".into());
        }
        let none = CapsHashSet::new();
        for (name, allowed) in [
            ("CapEff:", &self.kept),
            ("CapPrm:", &self.kept),
            ("CapBnd:", &self.kept),
            ("CapInh:", &none),
            ("CapAmb:", &none),
        ] {
            let extra = extra_capabilities(&status, name, allowed);
            if !extra.is_empty() {
                return not(format!("{name} still holds {}", names(&extra)));
            }
        }
        if !self.namespaces {
            return Ok(());
        }
        // An unnamed file vanishes on close: nothing is left behind even if
        // the mount were writable.
        match tmpfile_in(Path::new("/")) {
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => return Err(step("trying to write in /")(e)),
            Ok(()) => return not("/ is writable".into()),
        }
        for home in hidden_homes(&self.writable) {
            if std::fs::read_dir(home).map_or(true, |mut d| d.next().is_some()) {
                return not(format!("{home} is not empty"));
            }
        }
        let probe = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:9").map(|()| s));
        if probe.is_ok() {
            return not("a route to the network is there".into());
        }
        Ok(())
    }
}

impl fmt::Display for Confined {
    /// One line for the journal: what the loader may still do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kept: Vec<String> = self.kept.iter().map(|c| c.to_string()).collect();
        kept.sort();
        write!(f, "confined to {}", kept.join(" "))?;
        if self.namespaces {
            let writable: Vec<String> = self
                .writable
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            write!(
                f,
                ", a read-only system (writable: {}), no home, no network",
                if writable.is_empty() {
                    "nothing".to_owned()
                } else {
                    writable.join(" ")
                }
            )?;
        }
        Ok(())
    }
}

/// Directories of people's files, mounted over with empty ones.
const HOMES: [&str; 3] = ["/home", "/root", "/run/user"];

/// The homes to hide: those there, but not one holding a directory the
/// loader was asked to write in (pins or a state file under /root, as a
/// test run from a checkout there may ask for).
fn hidden_homes(writable: &[PathBuf]) -> impl Iterator<Item = &'static str> + '_ {
    HOMES.into_iter().filter(move |home| {
        Path::new(home).is_dir() && !writable.iter().any(|w| w.starts_with(home))
    })
}

fn single_threaded() -> Result<(), ConfineError> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(step("reading /proc/self/status"))?;
    match field(&status, "Threads:") {
        Some("1") => Ok(()),
        n => Err(ConfineError::NotTaken(format!(
            "the loader runs {} threads, and capabilities are dropped per thread",
            n.unwrap_or("?")
        ))),
    }
}

fn read_only_system(writable: &[PathBuf]) -> Result<(), ConfineError> {
    let none: Option<&str> = None;
    // Nothing mounted here reaches the system's namespace.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)
        .map_err(|e| step("making / a slave mount")(e.into()))?;
    set_read_only(Path::new("/"), true)?;
    for home in hidden_homes(writable) {
        mount(
            Some("tmpfs"),
            home,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=4k"),
        )
        .map_err(|e| step(format!("hiding {home}"))(e.into()))?;
    }
    for dir in writable {
        // A mount of its own, so that it alone can be made writable again.
        mount(
            Some(dir.as_path()),
            dir.as_path(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .map_err(|e| step(format!("binding {}", dir.display()))(e.into()))?;
        set_read_only(dir, false)?;
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes every mount at and under `path` read-only, or writable.
fn set_read_only(path: &Path, read_only: bool) -> Result<(), ConfineError> {
    let what = || {
        format!(
            "making {} {}",
            path.display(),
            if read_only { "read-only" } else { "writable" }
        )
    };
    let dir = std::fs::File::open(path).map_err(step(what()))?;
    let attr = MountAttr {
        attr_set: if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if read_only { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size` bytes of `attr`, a live repr(C)
    // struct of that size; the path is the empty string with AT_EMPTY_PATH,
    // so it acts on the descriptor, which stays open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(step(format!("{} (mount_setattr, Linux 5.12)", what()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn drop_capabilities(keep: &CapsHashSet) -> Result<(), ConfineError> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .unwrap_or(63);
    let kept: Vec<u8> = keep.iter().map(|c| c.index()).collect();
    for cap in (0..=last).filter(|c| !kept.contains(c)) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointer.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        // EINVAL: a number this kernel does not know; nothing to drop.
        if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(step(format!(
                "dropping capability {cap} from the bounding set"
            ))(io::Error::last_os_error()));
        }
    }
    keep_only(keep)?;
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(step("setting no_new_privs")(io::Error::last_os_error()));
    }
    Ok(())
}

/// Narrows the effective and permitted capabilities to `keep`, and clears
/// the inheritable and ambient ones.
fn keep_only(keep: &CapsHashSet) -> Result<(), ConfineError> {
    let set = |cset: CapSet, value: &CapsHashSet| {
        caps::set(None, cset, value).map_err(|e| ConfineError::Step {
            what: format!("setting the {cset:?} capabilities"),
            source: io::Error::other(e.to_string()),
        })
    };
    caps::clear(None, CapSet::Ambient).map_err(|e| ConfineError::Step {
        what: "clearing the ambient capabilities".into(),
        source: io::Error::other(e.to_string()),
    })?;
    set(CapSet::Inheritable, &CapsHashSet::new())?;
    // Effective first: it must stay within permitted at every step.
    for cset in [CapSet::Effective, CapSet::Permitted] {
        let now = caps::read(None, cset).unwrap_or_default();
        set(cset, &now.intersection(keep).copied().collect())?;
    }
    Ok(())
}

fn tmpfile_in(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .map(drop)
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

/// Capabilities in the hex mask of `status`'s line `name` that are not in
/// `kept`.
fn extra_capabilities(status: &str, name: &str, kept: &CapsHashSet) -> Vec<u8> {
    let mask = field(status, name)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(u64::MAX);
    let kept: Vec<u8> = kept.iter().map(|c| c.index()).collect();
    (0..64u8)
        .filter(|c| mask & (1u64 << c) != 0 && !kept.contains(c))
        .collect()
}

fn names(numbers: &[u8]) -> String {
    let all = caps::all();
    numbers
        .iter()
        .map(|n| {
            all.iter()
                .find(|c| c.index() == *n)
                .map_or_else(|| format!("capability {n}"), |c| c.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_load_needs_is_kept() {
        let base = Needs::default().capabilities();
        let mut names: Vec<String> = base.iter().map(|c| c.to_string()).collect();
        names.sort();
        assert_eq!(names, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
        let store = Needs {
            objects_by_id: true,
            foreign_files: true,
            ..Needs::default()
        }
        .capabilities();
        assert!(store.contains(&Capability::CAP_SYS_ADMIN));
        assert!(store.contains(&Capability::CAP_DAC_OVERRIDE));
        assert!(store.contains(&Capability::CAP_FOWNER));
        assert!(!store.contains(&Capability::CAP_CHOWN));
        assert_eq!(store.len(), 6);
    }

    #[test]
    fn finds_capabilities_beyond_the_kept_ones() {
        let kept: CapsHashSet = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN]
            .into_iter()
            .collect();
        // CAP_NET_ADMIN (12), CAP_BPF (39), CAP_SYS_ADMIN (21).
        let mask = (1u64 << 12) | (1u64 << 39) | (1u64 << 21);
        let status = format!("Name:\tx\nCapEff:\t{mask:016x}\n");
        assert_eq!(extra_capabilities(&status, "CapEff:", &kept), [21]);
        assert_eq!(names(&[21]), "CAP_SYS_ADMIN");
        // Unreadable means everything, never nothing.
        assert_eq!(extra_capabilities("", "CapEff:", &kept).len(), 62);
    }
}
