//! Helpers for leco's real-kernel tests: child processes with a chosen
//! `comm` that make loopback traffic, a loud root check, scratch cgroups
//! and private bpffs mounts. [`traffic`] has children that move a known
//! number of bytes through one kernel path each (splice, sendfile,
//! MSG_ZEROCOPY, io_uring, sendmmsg/recvmmsg, ping, raw and packet
//! sockets), for tests of leco's byte counts.
//!
//! Children are forked, not spawned from a helper binary, so that the
//! process name, pid and exit timing are exactly what a test asserts on.
//! The work a child runs must not print (another thread of the test harness
//! may hold the stdout lock at fork time); glibc's allocator is fork-safe.

pub mod attempts;
pub mod bus;
pub mod cgroup_deny;
pub mod dns;
pub mod netns;
pub mod patterns;
pub mod traffic;
pub mod wayland;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

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

    /// Like [`Child::recv`], `None` if the child exited without sending.
    pub fn try_recv(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        self.from_child.read_exact(&mut b).ok()?;
        Some(u64::from_ne_bytes(b))
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

/// A fresh directory for a test's files: `leco-NAME-PID` in the temporary
/// directory, emptied if an earlier run left it behind. Each test names
/// its own, as tests run in parallel.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leco-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Makes a FIFO (named pipe) at `path`: opening it for reading blocks
/// until a writer comes, which is what code that reads files must not
/// wait for.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
    // SAFETY: `c` is a valid C string for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        panic!("mkfifo {}: {}", path.display(), io::Error::last_os_error());
    }
}

/// Configuration files in `dir` that leco must refuse at once, each with
/// the end of its one-line error after the file's name: a FIFO, whose
/// reading would wait for a writer, and two texts the KDL parser takes
/// seconds to hours on (16 nested slashdashed blocks in the `section`,
/// 2,000 slashdashes before it).
pub fn unusable_configs(dir: &Path, section: &str) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo.kdl");
    mkfifo(&fifo);
    let nested = dir.join("nested.kdl");
    fs::write(&nested, format!("{section} {{\n{}", "a /-{\n".repeat(16))).expect("write");
    let dashes = dir.join("dashes.kdl");
    fs::write(&dashes, format!("{}{section} {{}}", "/- ".repeat(2_000))).expect("write");
    vec![
        (fifo, ": not a regular file (a FIFO)"),
        (
            nested,
            ":8:5: slashdashed blocks (/-{ … }) nested more than 6 deep",
        ),
        (dashes, ":1:385: more than 128 slashdashes (/-) in one file"),
    ]
}

/// Runs `work` on a thread and returns what it returns, or panics naming
/// `what` when that takes longer than `limit`: a test of something that
/// used to hang then fails instead of hanging too. The thread is left
/// behind when it overruns.
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} took longer than {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Runs `command` to its end, which must come within `limit` (else it is
/// killed and the test fails), with stdin and stdout closed: its exit code
/// and its stderr, without the last newline.
pub fn run_to_exit(command: &mut Command, limit: std::time::Duration) -> (Option<i32>, String) {
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let text = reader.join().expect("stderr reader");
    (status.code(), text.trim_end_matches('\n').to_owned())
}

/// Keeps the calling thread (and the threads and processes it starts
/// after) on CPU `cpu` only: tests that need two tasks to take turns on
/// one CPU, or to run side by side on two.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data, set up by the CPU_* helpers.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is checked against the set's size.
    unsafe {
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::other(format!("no CPU {cpu}")));
        }
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: pid 0 is the calling thread; `set` outlives the call.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the calling thread a real-time priority (SCHED_FIFO): it runs the
/// moment it is woken, ahead of every ordinary task of its CPU.
pub fn make_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A local port nobody listens on: bound, then released.
pub fn closed_port(v6: bool) -> u16 {
    let addr = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
    let l = std::net::TcpListener::bind(addr).expect("bind");
    l.local_addr().expect("local addr").port()
}

/// A loopback TCP connection from a child named `comm` to this process,
/// held open until [`LoopbackConnection::close`] (or drop): a flow the
/// eBPF programs see made by a known process, and still there to look up.
#[derive(Debug)]
pub struct LoopbackConnection {
    // Declared before `child`: dropped first, its EOF lets the child exit.
    server: Option<TcpStream>,
    child: Option<Child>,
    port: u16,
    pid: u32,
}

impl LoopbackConnection {
    /// Forks a child named `comm` that connects to a fresh listener on
    /// 127.0.0.1, and returns once this side has read its first bytes (so
    /// the connection is established on both ends).
    pub fn open(comm: &str) -> LoopbackConnection {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let child = spawn_named(comm, move |_| {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return 1;
            };
            if s.write_all(b"ping").is_err() {
                return 2;
            }
            // Stay connected until the test closes its side.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            0
        });
        let (mut server, _) = listener.accept().expect("accept");
        let mut got = [0u8; 4];
        server.read_exact(&mut got).expect("read");
        LoopbackConnection {
            pid: child.pid(),
            server: Some(server),
            child: Some(child),
            port,
        }
    }

    /// The listening port: the child's remote port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The child's pid: the connection's owner.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Closes this side and waits for the child; returns its exit code (0:
    /// it connected, sent, and saw the close).
    pub fn close(mut self) -> i32 {
        drop(self.server.take());
        self.child.take().expect("child").wait()
    }
}

/// Forks a child named `comm` that connects to each of `ports` on
/// 127.0.0.1 in turn, one connection at a time (50 ms apart, so that each
/// one's records come before the next one's), closing each; returns its
/// pid once it exited, having connected to all.
pub fn connect_in_turn(comm: &str, ports: Vec<u16>) -> u32 {
    let child = spawn_named(comm, move |_| {
        for port in ports {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => drop(s),
                Err(_) => return 1,
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        0
    });
    let pid = child.pid();
    assert_eq!(child.wait(), 0, "{comm} connected to every port");
    pid
}

/// A private bpffs instance, unmounted (pins and all) and its mount point
/// removed when dropped.
#[derive(Debug)]
pub struct Bpffs(PathBuf);

impl Bpffs {
    /// Mounts a new bpffs (mode 0755, so unprivileged readers may open its
    /// pins) on `dir`, created if need be.
    pub fn mount(dir: impl Into<PathBuf>) -> Bpffs {
        let dir = dir.into();
        fs::create_dir_all(&dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "bpf", "-o", "mode=0755", "bpf"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mounting a bpffs on {}", dir.display());
        Bpffs(dir)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

/// A new, world-traversable directory `/tmp/PREFIX-PID-N`. Not `$TMPDIR`:
/// under `sudo -E` that may be a user's private runtime directory, which
/// the other users a test runs clients as could not reach.
pub(crate) fn fresh_dir(prefix: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let dir = PathBuf::from(format!(
            "/tmp/{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
                return Ok(dir);
            }
            // Left over from an earlier process with the same pid: never
            // ours to remove (its daemon may still use it), take the next.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}
