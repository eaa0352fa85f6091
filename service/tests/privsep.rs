//! The privilege split for real: `leco-service load` as root hands the eBPF
//! objects over (pins in a private bpffs, or systemd's file descriptor store
//! played by this test exactly as systemd speaks it: datagrams with
//! SCM_RIGHTS on NOTIFY_SOCKET, then LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID),
//! and `leco-service run` serves the bus from them as user leco with no
//! capabilities at all. Needs root (CI runs as root).

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, get, lines, runtime, snapshot, Dict, BIN, READY};
use leco_testkit::bus::{ensure_user, TestBus};
use leco_testkit::traffic;
use leco_testkit::{require_root, Bpffs, LoopbackConnection};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

// ---- helpers ------------------------------------------------------------

/// `leco-service ARGS` as root, to completion.
fn leco(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run leco-service")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `out` succeeded, showing its stderr if not.
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", stderr(out));
}

/// Asserts that `out`'s stderr contains `needle`.
fn assert_says(out: &Output, needle: &str) {
    assert!(stderr(out).contains(needle), "{}", stderr(out));
}

/// The single line a failed `out` wrote to stderr: a refusal must read
/// whole in the unit's log.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success());
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// Asserts that a load redone from scratch replaced the programs `old`
/// with `new`: none kept, the old ones gone.
fn assert_replaced(old: &[(String, u32)], new: &[(String, u32)]) {
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} {new:?}");
    assert_unloaded(old);
    assert_loaded(new);
}

/// Whether the kernel still has program `id` (`bpftool prog show id N`).
fn program_loaded(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run bpftool (apt-get install bpftool)")
        .success()
}

fn assert_unloaded(ids: &[(String, u32)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = ids.iter().filter(|(_, id)| program_loaded(*id)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "programs still loaded: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_loaded(ids: &[(String, u32)]) {
    assert!(!ids.is_empty());
    for (name, id) in ids {
        assert!(program_loaded(*id), "{name} (id {id}) is not loaded");
    }
}

/// Program ids from `load`'s line `… (program ids on_x=12 on_y=13)`.
fn program_ids(out: &Output) -> Vec<(String, u32)> {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.contains("program ids "))
        .unwrap_or_else(|| panic!("no program ids in {text}"));
    line.split("program ids ")
        .nth(1)
        .expect("ids")
        .trim_end_matches(')')
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=id");
            (k.to_owned(), v.parse().expect("id"))
        })
        .collect()
}

/// The `setpriv` prefix that runs a command as user leco with no
/// capabilities whatsoever (none effective, permitted, inheritable, ambient
/// or in the bounding set).
fn as_leco_without_caps() -> Vec<String> {
    [
        "setpriv",
        "--reuid=leco",
        "--regid=leco",
        "--init-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--pdeathsig=KILL",
    ]
    .map(String::from)
    .to_vec()
}

/// A running `leco-service run`.
struct Run {
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    /// Starts `cmd` and waits for the readiness line.
    fn start(mut cmd: Command) -> Run {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leco-service run");
        let stderr = lines(child.stderr.take().expect("stderr"));
        let mut run = Run {
            child,
            stderr,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !run.seen.iter().any(|l| l.contains(READY)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match run.stderr.recv_timeout(left) {
                Ok(l) => run.seen.push(l),
                Err(_) => panic!("`run` not ready; its stderr: {:#?}", run.seen),
            }
        }
        run
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asserts it runs as user leco with empty capability sets.
    fn assert_unprivileged(&self) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in {status}"))
                .to_owned()
        };
        for caps in ["CapEff:", "CapPrm:", "CapInh:", "CapBnd:", "CapAmb:"] {
            assert_eq!(field(caps), "0000000000000000", "{caps} of `run`");
        }
        let (uid, _) = ensure_user("leco", &[]);
        let uids = field("Uid:");
        assert!(
            uids.split_whitespace().all(|u| u == uid.to_string()),
            "`run` uids {uids}, leco is {uid}"
        );
        assert!(field("Name:").starts_with("leco-service"));
    }

    /// SIGTERM, as `systemctl stop` and `restart` send it; waits for the
    /// exit and returns its status.
    fn stop(mut self) -> i32 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        status.code().unwrap_or(-1)
    }

    /// SIGKILL, as when the service crashes or systemd gives up waiting.
    fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.stderr.try_iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Snapshot() entry `d` is `conn`.
fn is(conn: &LoopbackConnection, d: &Dict) -> bool {
    get::<u16>(d, "remote_port") == Some(conn.port()) && get::<u32>(d, "pid") == Some(conn.pid())
}

/// Polls Snapshot() until `conn` is in it (10 s); returns its entry.
fn in_snapshot(bus: &TestBus, conn: &LoopbackConnection) -> Dict {
    runtime().block_on(async {
        let c = client(bus).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let snap = snapshot(&c).await.expect("Snapshot");
            if let Some(d) = snap.into_iter().find(|d| is(conn, d)) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "connection to port {} (pid {}) not in Snapshot()",
                conn.port(),
                conn.pid()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

// ---- systemd's side of the file descriptor store, as systemd does it ------

/// The file descriptor store: `NOTIFY_SOCKET` datagrams in (FDSTORE=1 +
/// FDNAME=, FDSTOREREMOVE=1, BARRIER=1), named descriptors kept in order.
struct FakeSystemd {
    dir: PathBuf,
    socket: PathBuf,
    store: Arc<Mutex<Vec<(String, OwnedFd)>>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSystemd {
    fn start() -> FakeSystemd {
        let dir = PathBuf::from(format!("/tmp/leco-privsep-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("notify");
        let sock = UnixDatagram::bind(&socket).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let store: Arc<Mutex<Vec<(String, OwnedFd)>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (store, log, stop) = (store.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    serve_one(&sock, &store, &log);
                }
            })
        };
        FakeSystemd {
            dir,
            socket,
            store,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn notify_socket(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    fn names(&self) -> Vec<String> {
        self.store
            .lock()
            .expect("store")
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Copies of the stored descriptors, as systemd passes them to the main
    /// process at each start.
    fn passed(&self) -> Vec<(String, OwnedFd)> {
        self.store
            .lock()
            .expect("store")
            .iter()
            .map(|(n, fd)| (n.clone(), fd.try_clone().expect("dup")))
            .collect()
    }

    /// [`passed`](Self::passed) without `name`, as from a store that lost it.
    fn passed_without(&self, name: &str) -> Vec<(String, OwnedFd)> {
        self.passed()
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }

    /// Drops `name` from the store, as if it were lost.
    fn forget(&self, name: &str) {
        self.store.lock().expect("store").retain(|(n, _)| n != name);
    }

    /// Releases the whole store, as when the unit stops.
    fn release(&self) {
        self.store.lock().expect("store").clear();
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve_one(sock: &UnixDatagram, store: &Mutex<Vec<(String, OwnedFd)>>, log: &Mutex<Vec<String>>) {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 16]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let Ok(msg) = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return; // timeout: look at the stop flag
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this
            // process; nobody else owns them.
            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
        }
    }
    let len = msg.bytes;
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    let vars: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let var = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let name = var("FDNAME").unwrap_or("stored").to_owned();
    let mut store = store.lock().expect("store");
    let mut log = log.lock().expect("log");
    if var("FDSTOREREMOVE") == Some("1") {
        store.retain(|(n, _)| *n != name);
        log.push(format!("remove {name}"));
    } else if var("FDSTORE") == Some("1") {
        log.push(format!("store {name}"));
        for fd in fds {
            // Unless told FDPOLL=0, systemd watches a stored descriptor and
            // closes it on EPOLLERR, which a BPF hash or array map reports.
            if var("FDPOLL") != Some("0") && polls_error(&fd) {
                log.push(format!("closed {name}: EPOLLERR"));
                continue;
            }
            store.push((name.clone(), fd));
        }
    } else if var("BARRIER") == Some("1") {
        log.push("barrier".into());
        drop(fds); // closing it is the answer
    } else {
        log.push(format!("other {text:?}"));
    }
}

fn polls_error(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) > 0 && p.revents & libc::POLLERR != 0 }
}

/// `leco-service run ARGS` as user leco without capabilities, handed `fds`
/// the way systemd passes its store: dup'd to 3, 4, …, LISTEN_FDS and
/// LISTEN_FDNAMES in the environment, LISTEN_PID = the pid that execs
/// leco-service (a shell sets it to its own pid, then execs setpriv, which
/// execs leco-service in the same process).
fn run_with_fds(fds: &[(String, OwnedFd)], args: &[&str]) -> Command {
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|(_, fd)| {
            // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own.
            let r = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            assert!(r >= 0, "dup");
            // SAFETY: just created.
            unsafe { OwnedFd::from_raw_fd(r) }
        })
        .collect();
    let raws: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let names: Vec<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"export LISTEN_PID=$$; exec "$@""#)
        .arg("sh")
        .args(as_leco_without_caps())
        .arg(BIN)
        .arg("run")
        .args(args)
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env_remove("NOTIFY_SOCKET");
    // SAFETY: only dup2 between fork and exec (async-signal-safe); the
    // sources are above 100, clear of the targets 3…
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &high;
            for (i, fd) in raws.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

fn run_pinned(dir: &Path, bus: &TestBus, extra: &[&str]) -> Command {
    let mut cmd = Command::new(as_leco_without_caps()[0].clone());
    cmd.args(&as_leco_without_caps()[1..])
        .arg(BIN)
        .arg("run")
        .arg("--pin")
        .arg(dir)
        .args(["--bus-address", bus.address()])
        .args(extra);
    cmd
}

// ---- the tests ------------------------------------------------------------

#[test]
fn run_without_a_handover_says_so_in_one_line() {
    // Nothing is loaded here, but `run` must fail the same as the unit would
    // see it; root only so that CI never skips it silently elsewhere.
    if !require_root("run_without_a_handover_says_so_in_one_line") {
        return;
    }
    let err = one_line_error(&leco(
        &["run", "--bus-address", "unix:path=/nonexistent"],
        &[],
    ));
    assert!(
        err.starts_with("leco-service: no eBPF objects handed over: run `leco-service load` first"),
        "{err}"
    );

    let err = one_line_error(&leco(&["run", "--pin", "/nonexistent/leco"], &[]));
    assert!(
        err.contains("no eBPF objects pinned in /nonexistent/leco"),
        "{err}"
    );

    // Variables for another process are not taken.
    let out = leco(
        &["run", "--bus-address", "unix:path=/nonexistent"],
        &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
    );
    assert!(!out.status.success());
    assert_says(&out, "no eBPF objects handed over");
}

#[test]
fn pinned_load_serves_unprivileged_across_restarts_and_redoes_partial_loads() {
    if !require_root("pinned_load_serves_unprivileged_across_restarts_and_redoes_partial_loads") {
        return;
    }
    ensure_user("leco", &[]); // the only user besides root that may own the name
    let bus = TestBus::start().expect("private dbus-daemon");
    // Under /tmp, not $TMPDIR: user leco must reach the pins.
    let fs = Bpffs::mount(format!("/tmp/leco-privsep-bpffs-{}", std::process::id()));
    let dir = fs.path().join("leco");
    let dir_s = dir.to_str().expect("utf-8");
    let load = || {
        let out = leco(&["load", "--pin", dir_s, "--owner", "leco"], &[]);
        assert_ok(&out);
        out
    };

    let first = load();
    let ids = program_ids(&first);
    assert!(ids.len() >= 4, "{ids:?}");
    assert_loaded(&ids);
    // The loader confined itself (and checked it by trying what that
    // forbids) before loading: giving the pins away takes CAP_CHOWN and
    // CAP_DAC_OVERRIDE/CAP_FOWNER; the bpffs, not there yet, is all it
    // may write to.
    assert_says(
        &first,
        &format!(
            "the loader ran confined to CAP_BPF CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER \
             CAP_NET_ADMIN CAP_PERFMON, a read-only system (writable: {}), no home, no network",
            fs.path().display()
        ),
    );

    // Once complete, loading again does nothing.
    let again = load();
    assert_says(&again, "already loaded");
    assert_eq!(program_ids(&again), ids);

    // Served by user leco with no capabilities, asked for a setting fixed at load.
    let run = Run::start(run_pinned(&dir, &bus, &["--update-interval", "3"]));
    run.assert_unprivileged();
    assert!(
        run.seen
            .iter()
            .any(|l| l.contains("update-interval 3s is fixed when the programs are loaded")),
        "{:#?}",
        run.seen
    );
    let conn = LoopbackConnection::open("leco-t-privsep");
    let before = in_snapshot(&bus, &conn);
    assert_eq!(
        get::<String>(&before, "comm").as_deref(),
        Some("leco-t-privsep")
    );

    // A crash and a new start: the kernel kept the flow, the table is filled from it.
    run.kill();
    assert_loaded(&ids);
    let run = Run::start(run_pinned(&dir, &bus, &[]));
    let after = in_snapshot(&bus, &conn);
    assert_eq!(get::<u64>(&after, "id"), get::<u64>(&before, "id"));
    assert_eq!(
        get::<String>(&after, "comm").as_deref(),
        Some("leco-t-privsep")
    );
    assert_eq!(conn.close(), 0);
    run.kill();

    // A half-finished load (a pin missing) is redone, never used.
    std::fs::remove_file(dir.join("leco-link-on_sock_send_length")).expect("unpin one");
    let redo = load();
    assert_says(&redo, "not a complete load");
    let new_ids = program_ids(&redo);
    assert_replaced(&ids, &new_ids);

    // So is one whose manifest (always pinned last) never came.
    std::fs::remove_file(dir.join("leco-manifest")).expect("unpin the manifest");
    let redo = load();
    assert_says(&redo, "without their manifest");
    let ids = program_ids(&redo);
    assert_replaced(&new_ids, &ids);

    // Removing the pins removes the programs.
    for e in std::fs::read_dir(&dir).expect("pins").flatten() {
        std::fs::remove_file(e.path()).expect("unpin");
    }
    assert_unloaded(&ids);
}

#[test]
fn fd_store_handover_works_as_systemd_passes_it() {
    if !require_root("fd_store_handover_works_as_systemd_passes_it") {
        return;
    }
    ensure_user("leco", &[]);
    let bus = TestBus::start().expect("private dbus-daemon");
    let systemd = FakeSystemd::start();
    let state = systemd.dir.join("runtime").join("fdstore.state");
    let state_s = state.to_str().expect("utf-8").to_owned();
    let load = || {
        let out = leco(
            &["load", "--state", &state_s],
            &[("NOTIFY_SOCKET", systemd.notify_socket())],
        );
        assert_ok(&out);
        out
    };

    let first = load();
    let ids = program_ids(&first);
    assert_loaded(&ids);
    let names = systemd.names();
    assert_eq!(names.last().map(String::as_str), Some("leco-manifest"));
    assert!(names.contains(&"leco-map-events".to_string()), "{names:?}");
    assert!(names.contains(&"leco-map-flows".to_string()), "{names:?}");
    assert!(
        names.contains(&"leco-map-counters".to_string()),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("leco-link-")).count(),
        ids.len()
    );
    let log = systemd.take_log();
    assert_eq!(log.last().map(String::as_str), Some("barrier"), "{log:?}");
    assert!(state.exists(), "the state file is written last");

    // Complete: the next load does nothing, and touches no stored fd.
    let again = load();
    assert_says(&again, "already loaded");
    assert_eq!(program_ids(&again), ids);
    assert!(
        systemd.take_log().is_empty(),
        "a complete load was disturbed"
    );
    assert_eq!(systemd.names(), names);

    // `run`, as systemd starts it, unprivileged.
    let start = || {
        Run::start(run_with_fds(
            &systemd.passed(),
            &["--bus-address", bus.address()],
        ))
    };
    let run = start();
    run.assert_unprivileged();
    let conn = LoopbackConnection::open("leco-t-fdstore");
    let before = in_snapshot(&bus, &conn);
    run.kill();
    // Restarted with the same store: the connection is still known.
    let run = start();
    let after = in_snapshot(&bus, &conn);
    assert_eq!(get::<u64>(&after, "id"), get::<u64>(&before, "id"));
    assert_eq!(conn.close(), 0);
    run.kill();

    // An incomplete store is refused with what is missing, in one line.
    let refused = |fds: &[(String, OwnedFd)]| {
        let out = run_with_fds(fds, &["--bus-address", bus.address()])
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert!(!out.status.success());
        out
    };
    let partial = systemd.passed_without("leco-map-flows");
    let err = one_line_error(&refused(&partial));
    assert!(err.contains("incomplete handover: leco-map-flows"), "{err}");
    let no_manifest = systemd.passed_without("leco-manifest");
    assert_says(&refused(&no_manifest), "without their manifest");
    // These copies would keep the programs loaded, as a store does.
    drop((partial, no_manifest));

    // A load that stopped before its state file (crash, power loss) is never
    // taken for complete: the store is cleared of every leco name, which
    // unloads the earlier programs, and the load is done again.
    std::fs::remove_file(&state).expect("remove the state file");
    systemd.forget("leco-manifest");
    let redo = load();
    let log = systemd.take_log();
    let first_store = log
        .iter()
        .position(|l| l.starts_with("store "))
        .expect("stores");
    assert!(
        log[..first_store]
            .iter()
            .any(|l| l == "remove leco-link-on_inet_sock_set_state"),
        "{log:?}"
    );
    let new_ids = program_ids(&redo);
    assert_replaced(&ids, &new_ids);
    assert_eq!(systemd.names().len(), names.len());

    // Objects gone from under a state file (the store was released): redone too.
    systemd.release();
    assert_unloaded(&new_ids);
    let redo = load();
    assert_says(&redo, "is not complete");
    let last_ids = program_ids(&redo);
    assert_loaded(&last_ids);

    // The unit stops: the store is released, and nothing stays loaded.
    systemd.release();
    assert_unloaded(&last_ids);
}

/// A start over a kernel table that already holds a datagram socket's
/// flows fills its own from it, in the kernel's order: the flows the kernel
/// announced without an owner (from more peers than it keeps waiting for
/// the socket's first read) are the reader's there too, whether they come
/// before or after the ones that waited.
#[test]
fn a_start_over_a_datagram_sockets_flows_gives_each_its_reader() {
    if !require_root("a_start_over_a_datagram_sockets_flows_gives_each_its_reader") {
        return;
    }
    ensure_user("leco", &[]);
    let bus = TestBus::start().expect("private dbus-daemon");
    let fs = Bpffs::mount(format!("/tmp/leco-resync-bpffs-{}", std::process::id()));
    let dir = fs.path().join("leco");
    let dir_s = dir.to_str().expect("utf-8");
    assert_ok(&leco(&["load", "--pin", dir_s, "--owner", "leco"], &[]));
    // Twenty peers: sixteen past the four the kernel keeps waiting, so that
    // the kernel's table is likely to list one of those last.
    let (got, socket) = traffic::udp_inherited_socket_kept("leco-t-resync", 20, 500);
    let reader = got.moved.pid;
    let port = got.moved.local_port;
    let run = Run::start(run_pinned(&dir, &bus, &[]));
    let mut want: Vec<u16> = got.senders.iter().map(|a| a.port()).collect();
    want.sort_unstable();
    let flows = runtime().block_on(async {
        let c = client(&bus).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let snap = snapshot(&c).await.expect("Snapshot");
            let mine: Vec<Dict> = snap
                .into_iter()
                .filter(|d| {
                    get::<String>(d, "proto").as_deref() == Some("udp")
                        && get::<u16>(d, "local_port") == Some(port)
                })
                .collect();
            if mine.len() >= want.len() || Instant::now() >= deadline {
                return mine;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut peers: Vec<u16> = flows
        .iter()
        .map(|d| get::<u16>(d, "remote_port").unwrap_or(0))
        .collect();
    peers.sort_unstable();
    assert_eq!(peers, want, "one flow per peer in Snapshot(): {flows:#?}");
    for d in &flows {
        assert_eq!(get::<u32>(d, "pid"), Some(reader), "the reader's: {d:#?}");
        assert_eq!(
            get::<String>(d, "comm").as_deref(),
            Some("leco-t-resync"),
            "{d:#?}"
        );
    }
    drop(socket);
    run.kill();
    for e in std::fs::read_dir(&dir).expect("pins").flatten() {
        std::fs::remove_file(e.path()).expect("unpin");
    }
}

/// Polls Snapshot() until `pick` holds for an entry (10 s); returns it.
fn in_snapshot_where(bus: &TestBus, what: &str, pick: impl Fn(&Dict) -> bool) -> Dict {
    runtime().block_on(async {
        let c = client(bus).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let snap = snapshot(&c).await.expect("Snapshot");
            if let Some(d) = snap.into_iter().find(&pick) {
                return d;
            }
            assert!(Instant::now() < deadline, "{what} not in Snapshot()");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A restart of `run` over the kept kernel objects loses nothing a client
/// saw: the connections that ended before it are in Snapshot() (from the
/// store), and the live ones are as they were known (their `novelty`,
/// told before the restart, is kept: a fresh look would find the program
/// known). After a crash (SIGKILL) what ended a second before is there too.
#[test]
fn a_restart_of_run_loses_nothing_a_client_saw() {
    if !require_root("a_restart_of_run_loses_nothing_a_client_saw") {
        return;
    }
    let (uid, gid) = ensure_user("leco", &[]);
    let bus = TestBus::start().expect("private dbus-daemon");
    let fs = Bpffs::mount(format!("/tmp/leco-keep-bpffs-{}", std::process::id()));
    let dir = fs.path().join("leco");
    let dir_s = dir.to_str().expect("utf-8");
    assert_ok(&leco(&["load", "--pin", dir_s, "--owner", "leco"], &[]));
    // The service's own state directory, as StateDirectory= makes it.
    let state = PathBuf::from(format!("/tmp/leco-keep-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir(&state).expect("state directory");
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).expect("chown");
    let state_s = state.to_str().expect("utf-8");
    let args = ["--state-dir", state_s, "--warm-up", "0"];
    let closed = |d: &Dict, conn_pid: u32| {
        get::<u32>(d, "pid") == Some(conn_pid)
            && get::<String>(d, "direction").as_deref() == Some("out")
            && get::<String>(d, "state").as_deref() == Some("closed")
    };

    let run = Run::start(run_pinned(&dir, &bus, &args));
    let live = LoopbackConnection::open("leco-t-keep");
    let before = in_snapshot(&bus, &live);
    assert_eq!(
        get::<String>(&before, "novelty").as_deref(),
        Some("program")
    );
    let gone = LoopbackConnection::open("leco-t-gone");
    let gone_pid = gone.pid();
    in_snapshot(&bus, &gone);
    assert_eq!(gone.close(), 0);
    let ended = in_snapshot_where(&bus, "the ended connection", |d| closed(d, gone_pid));
    assert_eq!(run.stop(), 0, "a clean stop");

    let run = Run::start(run_pinned(&dir, &bus, &args));
    let after = in_snapshot(&bus, &live);
    assert_eq!(get::<u64>(&after, "id"), get::<u64>(&before, "id"));
    assert_eq!(
        get::<String>(&after, "novelty").as_deref(),
        Some("program"),
        "the live connection as it was known: {after:#?}"
    );
    let again = in_snapshot_where(&bus, "the ended connection after the restart", |d| {
        closed(d, gone_pid)
    });
    assert_eq!(get::<u64>(&again, "id"), get::<u64>(&ended, "id"));
    assert_eq!(
        get::<String>(&again, "comm").as_deref(),
        Some("leco-t-gone")
    );

    // A crash: what ended more than a second before is kept all the same.
    let live_pid = live.pid();
    assert_eq!(live.close(), 0);
    in_snapshot_where(&bus, "the live one, ended", |d| closed(d, live_pid));
    std::thread::sleep(Duration::from_millis(1500));
    run.kill();
    let run = Run::start(run_pinned(&dir, &bus, &args));
    for pid in [gone_pid, live_pid] {
        in_snapshot_where(&bus, "an ended connection after a crash", |d| {
            closed(d, pid)
        });
    }
    run.kill();
    for e in std::fs::read_dir(&dir).expect("pins").flatten() {
        std::fs::remove_file(e.path()).expect("unpin");
    }
    let _ = std::fs::remove_dir_all(&state);
}
