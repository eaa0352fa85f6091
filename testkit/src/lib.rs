//! Helpers for leco's real-kernel tests: child processes with a chosen
//! `comm` that make loopback traffic, a loud root check, scratch cgroups.
//!
//! Children are forked, not spawned from a helper binary, so that the
//! process name, pid and exit timing are exactly what a test asserts on.
//! The work a child runs must not print (another thread of the test harness
//! may hold the stdout lock at fork time); glibc's allocator is fork-safe.

pub mod bus;
pub mod wayland;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Whether a test that needs root may run. Outside CI, a non-root run skips
/// loudly; in CI (`CI` set) nothing of ours may be skipped, so it fails.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) and CI must run every test"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: needs root (it loads eBPF programs: CAP_BPF, CAP_PERFMON, \
         CAP_NET_ADMIN). Run the suite as root, e.g. `sudo -E cargo test`. ***\n"
    );
    false
}

/// A forked child process.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    from_child: fs::File,
    reaped: bool,
}

/// The child's end of its pipe to the parent.
#[derive(Debug)]
pub struct Parent {
    to_parent: fs::File,
}

impl Parent {
    /// Tells the parent a number (a port, a ready signal).
    pub fn send(&mut self, v: u64) {
        let _ = self.to_parent.write_all(&v.to_ne_bytes());
    }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the next number the child sends.
    pub fn recv(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.from_child
            .read_exact(&mut b)
            .expect("child exited before sending");
        u64::from_ne_bytes(b)
    }

    /// Waits for the child and returns its exit code (128+signal if killed).
    pub fn wait(mut self) -> i32 {
        self.reap()
    }

    fn reap(&mut self) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = true;
        assert_eq!(r, self.pid, "waitpid");
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: killing and reaping our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.reap();
        }
    }
}

/// Forks a child named `name` (its `comm`, at most 15 bytes) that runs
/// `work` and exits with the code it returns.
pub fn spawn_named(name: &str, work: impl FnOnce(&mut Parent) -> i32) -> Child {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: both fds were just created and are owned here alone.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut cname = [0u8; 16];
    let n = name.len().min(15);
    cname[..n].copy_from_slice(&name.as_bytes()[..n]);

    // SAFETY: the child only runs `work` (no printing, see the crate docs)
    // and then _exit()s without running the parent's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(rx);
        // SAFETY: cname is NUL-terminated.
        unsafe { libc::prctl(libc::PR_SET_NAME, cname.as_ptr()) };
        let mut parent = Parent {
            to_parent: fs::File::from(tx),
        };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut parent)))
            .unwrap_or(101);
        // SAFETY: leaving the child without unwinding into the test harness.
        unsafe { libc::_exit(code) };
    }
    drop(tx);
    Child {
        pid,
        from_child: fs::File::from(rx),
        reaped: false,
    }
}

/// A cgroup v2 directory made for one test, removed when dropped.
#[derive(Debug)]
pub struct ScratchCgroup {
    root: PathBuf,
    path: PathBuf,
}

impl ScratchCgroup {
    /// Creates `<root>/<relative>` (e.g. `leco-test.slice/x.scope`) under the
    /// cgroup v2 mount `root`.
    pub fn create(root: &Path, relative: &str) -> std::io::Result<ScratchCgroup> {
        let path = root.join(relative);
        fs::create_dir_all(&path)?;
        Ok(ScratchCgroup {
            root: root.to_path_buf(),
            path,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id the kernel reports for members: the directory's inode.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.path).map(|m| m.ino()).unwrap_or(0)
    }

    /// Moves the calling process into this cgroup (call it from a child).
    pub fn enter(&self) -> std::io::Result<()> {
        fs::write(self.path.join("cgroup.procs"), "0")
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        // Remove leaf first, then the now-empty parents we may have made.
        let mut p = self.path.clone();
        while p != self.root && fs::remove_dir(&p).is_ok() {
            if !p.pop() {
                break;
            }
        }
    }
}

/// A local port nobody listens on: bound, then released.
pub fn closed_port(v6: bool) -> u16 {
    let addr = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
    let l = std::net::TcpListener::bind(addr).expect("bind");
    l.local_addr().expect("local addr").port()
}
