//! A private, system-bus-like D-Bus for tests, the users and groups its
//! policy names, and clients that run as those users.
//!
//! The bus is a real `dbus-daemon` with the defaults of Debian's
//! `/usr/share/dbus-1/system.conf` plus the repository's `dbus-policy/`, so a
//! test exercises exactly the policy file that gets installed.
//!
//! dbus-daemon resolves the users and groups a policy names when it loads its
//! configuration (an unknown one only gets a warning and its rules are
//! dropped), so create them with [`ensure_user`] / [`ensure_group`] *before*
//! [`TestBus::start`].
//!
//! Clients are the stock command-line tools, switched to another user with
//! `setpriv`: `busctl` for calls ([`busctl_as`]) and `dbus-monitor` for
//! signals ([`monitor_as`]). They come with systemd, dbus and util-linux, so
//! these helpers need nothing beyond `dbus-daemon` itself.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for a daemon or monitor to come up before giving up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The rules of Debian's `/usr/share/dbus-1/system.conf` (dbus 1.14), minus
/// what only makes sense for the real system bus: `<user>`, `<pidfile>`,
/// `<fork/>`, `<syslog/>`, service activation and its `includedir`s.
const SYSTEM_DEFAULTS: &str = r#"  <type>system</type>
  <auth>EXTERNAL</auth>

  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
"#;

/// The repository's `dbus-policy/` directory, whose files every [`TestBus`]
/// includes.
pub fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("dbus-policy")
}

/// A private `dbus-daemon` configured like the system bus, with the
/// repository's policy files included.
///
/// It listens on `<dir>/bus` in a fresh directory under `/tmp` that every
/// user can reach (dbus-daemon itself makes the socket mode 0777), so clients
/// may run as any user. Dropping it kills the daemon and removes the
/// directory. The daemon is also killed if the thread that started it exits
/// first (so a test binary killed mid-run leaves no daemon behind): keep a
/// `TestBus` in the test that started it, not in a `static`.
#[derive(Debug)]
pub struct TestBus {
    daemon: Child,
    dir: PathBuf,
    address: String,
    // Kept open so that the daemon never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl TestBus {
    /// Starts the daemon and returns once it accepts connections (it prints
    /// its address only after it listens).
    pub fn start() -> io::Result<TestBus> {
        let dir = crate::fresh_dir("leco-bus")?;
        Self::start_in(&dir).inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })
    }

    fn start_in(dir: &Path) -> io::Result<TestBus> {
        let (daemon, address, stdout) = Self::spawn(dir)?;
        Ok(TestBus {
            daemon,
            dir: dir.to_path_buf(),
            address,
            _stdout: stdout,
        })
    }

    /// Writes the configuration into `dir` and starts a daemon on it: its
    /// process, address and output.
    fn spawn(dir: &Path) -> io::Result<(Child, String, BufReader<ChildStdout>)> {
        let policy = policy_dir().canonicalize().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("policy directory {}: {e}", policy_dir().display()),
            )
        })?;
        let config = dir.join("bus.conf");
        fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig>\n{SYSTEM_DEFAULTS}  <listen>unix:path={}</listen>\n  \
                 <includedir>{}</includedir>\n</busconfig>\n",
                xml_escape(&dir.join("bus").to_string_lossy()),
                xml_escape(&policy.to_string_lossy()),
            ),
        )?;
        let log = fs::File::create(dir.join("daemon.log"))?;
        let mut daemon = Command::new("setpriv")
            .arg("--pdeathsig=KILL")
            .arg("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting dbus-daemon: {e}")))?;
        let mut stdout = BufReader::new(daemon.stdout.take().expect("stdout is piped"));

        // Read in a thread so that a daemon that neither prints nor exits
        // cannot hang the test.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = stdout.read_line(&mut line);
            let _ = tx.send((r, line, stdout));
        });
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok((Ok(n), line, stdout)) if n > 0 && line.trim().starts_with("unix:") => {
                Ok((daemon, line.trim().to_string(), stdout))
            }
            other => {
                let _ = daemon.kill();
                let status = daemon.wait();
                let why = match other {
                    Ok((Err(e), _, _)) => format!("reading its address: {e}"),
                    Ok((_, line, _)) => format!("it printed {line:?} instead of an address"),
                    Err(_) => format!("no address after {STARTUP_TIMEOUT:?}"),
                };
                let log = fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
                Err(io::Error::other(format!(
                    "dbus-daemon did not start ({why}; {status:?}); its log:\n{log}"
                )))
            }
        }
    }

    /// Stops the daemon and starts a new one on the same socket, as a
    /// restart of the system bus does: every client loses its connection.
    pub fn restart(&mut self) -> io::Result<()> {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = fs::remove_file(self.dir.join("bus"));
        let (daemon, address, stdout) = Self::spawn(&self.dir)?;
        self.daemon = daemon;
        self.address = address;
        self._stdout = stdout;
        Ok(())
    }

    /// The address clients connect to, as dbus-daemon printed it, e.g.
    /// `unix:path=/tmp/leco-bus-123-0/bus,guid=…`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    /// The directory holding the socket, the configuration and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the daemon has logged so far: configuration warnings (such as an
    /// unknown user in a policy) and rejected messages. Worth printing when a
    /// policy assertion fails.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Serialises changes to the user database across threads and processes:
/// `useradd` and friends fail rather than wait when another one holds
/// `/etc/passwd`'s lock, and two creators of one name would race.
fn with_user_db_lock<T>(f: impl FnOnce() -> T) -> T {
    // Root-owned on every Debian/Ubuntu; /tmp only for odd containers.
    let path = if Path::new("/run/lock").is_dir() {
        "/run/lock/leco-testkit-users.lock"
    } else {
        "/tmp/leco-testkit-users.lock"
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        assert!(
            e.kind() == io::ErrorKind::Interrupted,
            "locking {path}: {e}"
        );
    }
    // Closing the file releases the lock, also when `f` panics.
    f()
}

/// The fields of `getent DATABASE KEY`, or None when there is no such entry.
/// A fresh process each time, so nothing is cached.
fn getent(database: &str, key: &str) -> Option<Vec<String>> {
    let out = Command::new("getent")
        .args([database, key])
        .output()
        .unwrap_or_else(|e| panic!("running getent: {e}"));
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    Some(
        line.lines()
            .next()
            .unwrap_or_default()
            .split(':')
            .map(str::to_string)
            .collect(),
    )
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn create_group(name: &str) {
    if getent("group", name).is_none() {
        run(Command::new("groupadd").args(["--system", name]));
    }
}

/// Creates the system group `name` unless it exists. Needs root; panics
/// when it cannot. Safe to call from several threads and processes at once.
pub fn ensure_group(name: &str) {
    with_user_db_lock(|| create_group(name));
}

/// Creates the system user `name` unless it exists (no home directory, no
/// login shell; its primary group is the group of the same name, created if
/// needed), makes it a member of each of `groups` (created if needed), and
/// returns its uid and primary gid. Needs root; panics when it cannot. Safe
/// to call from several threads and processes at once.
///
/// The users stay: they are harmless system accounts, and tests that run
/// concurrently may share them.
pub fn ensure_user(name: &str, groups: &[&str]) -> (u32, u32) {
    with_user_db_lock(|| {
        for group in groups {
            create_group(group);
        }
        if getent("passwd", name).is_none() {
            let mut cmd = Command::new("useradd");
            cmd.args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            // useradd refuses to make a user group whose name is taken.
            if getent("group", name).is_some() {
                cmd.args(["--gid", name]);
            } else {
                cmd.arg("--user-group");
            }
            if !groups.is_empty() {
                cmd.args(["--groups", &groups.join(",")]);
            }
            run(cmd.arg(name));
        } else {
            let out = Command::new("id")
                .args(["--groups", "--name", name])
                .output()
                .unwrap_or_else(|e| panic!("running id: {e}"));
            let have = String::from_utf8_lossy(&out.stdout).into_owned();
            let missing: Vec<&str> = groups
                .iter()
                .copied()
                .filter(|g| !have.split_whitespace().any(|h| h == *g))
                .collect();
            if !missing.is_empty() {
                run(Command::new("usermod").args([
                    "--append",
                    "--groups",
                    &missing.join(","),
                    name,
                ]));
            }
        }
        user_ids(name).unwrap_or_else(|| panic!("user {name} missing right after creating it"))
    })
}

/// The uid and primary gid of `user`, if it exists.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let fields = getent("passwd", user)?;
    let uid = fields.get(2)?.parse().ok()?;
    let gid = fields.get(3)?.parse().ok()?;
    Some((uid, gid))
}

/// Prefixes `cmd` (a `setpriv` command) with the switch to `user`: its uid,
/// primary gid and supplementary groups from the user database, the same
/// credentials a login session would have.
fn switch_to(cmd: &mut Command, user: Option<&str>) {
    if let Some(user) = user {
        let (_, gid) = user_ids(user)
            .unwrap_or_else(|| panic!("no user {user}: create it with ensure_user first"));
        cmd.arg(format!("--reuid={user}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups");
    }
}

/// Runs `busctl --address=ADDRESS --timeout=5 --no-pager ARGS…` as `user`
/// (root when None) and returns its exit status and output.
///
/// busctl's own timeout bounds each call to 5 s (pass another `--timeout=`
/// in `args` to change it); `timeout(1)` kills it after 30 s whatever it is
/// doing, so a test never hangs. busctl runs with `SYSTEMD_LOG_LEVEL=debug`:
/// its stderr then logs every message it sent and got, which is where the
/// exact D-Bus error name is (its "Call failed: …" line only has the text);
/// read it with [`error_name`].
///
/// A call that fails because of the policy exits non-zero and its
/// [`error_name`] is `org.freedesktop.DBus.Error.AccessDenied`.
pub fn busctl_as(user: Option<&str>, address: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", "30", "setpriv"]);
    switch_to(&mut cmd, user);
    cmd.arg("busctl")
        .arg(format!("--address={address}"))
        .args(["--timeout=5", "--no-pager"])
        .args(args)
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .env("SYSTEMD_LOG_TARGET", "console")
        .stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("running busctl: {e}"))
}

/// The D-Bus error a [`busctl_as`] call got back (the last error message in
/// its debug log), e.g. `org.freedesktop.DBus.Error.AccessDenied`; None when
/// it got no error reply (success, or it could not even connect).
pub fn error_name(out: &Output) -> Option<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .filter(|l| l.starts_with("Got message type=error "))
        .find_map(|l| l.split(" error-name=").nth(1)?.split_whitespace().next())
        .map(str::to_string)
}

/// Signals received by a `dbus-monitor` running as some user; see
/// [`monitor_as`]. Dropping it kills the monitor.
#[derive(Debug)]
pub struct Monitor {
    child: Child,
    state: Arc<(Mutex<MonitorState>, Condvar)>,
    /// Messages before this index are the monitor's own start-up signals.
    first: usize,
}

#[derive(Debug, Default)]
struct MonitorState {
    /// One entry per message, in dbus-monitor's text form (a header line,
    /// then indented arguments).
    messages: Vec<String>,
    last_line: Option<Instant>,
    ended: bool,
    stderr: String,
}

/// A message dbus-monitor has been printing counts as complete once the
/// next one starts, the output ends, or nothing came for this long (it
/// flushes each message whole, so the pause only guards a split read).
const SETTLE: Duration = Duration::from_millis(50);

/// Starts `dbus-monitor --address ADDRESS MATCH_RULE` as `user` (root when
/// None) and returns once it is subscribed, so that every matching signal
/// sent from then on that the policy lets `user` receive will show up.
///
/// For any user but root this is an ordinary subscriber: the system policy
/// refuses it `BecomeMonitor`, the bus refuses its fallback eavesdropping
/// match rule (only root may eavesdrop), and it settles for `MATCH_RULE` as a
/// plain match rule, to which the bus applies the receive policy exactly as
/// for any client (its "Falling back to eavesdropping" on stderr is
/// expected, and the daemon logs the refusals). Root is allowed to become a
/// true monitor, which sees matching traffic *whatever the policy*: use it
/// to watch the bus, not to test what root may receive. (`busctl monitor`
/// cannot stand in: it needs `BecomeMonitor` and gives up without it.)
///
/// A signal that is not delivered leaves no trace, so to assert that one was
/// *not* received, first make sure it has gone through the bus (its sender
/// completes a round trip with the bus, e.g. a method call on
/// `org.freedesktop.DBus`, after emitting it), then send a signal that
/// `user` may receive and that `MATCH_RULE` matches (e.g. `busctl emit` by
/// root of the same interface: the policy keys on the sender's name, and that
/// sender does not own it), wait for that one, and only then check
/// [`Monitor::messages`]: the bus delivers to each client in order.
pub fn monitor_as(user: Option<&str>, address: &str, match_rule: &str) -> io::Result<Monitor> {
    let is_root = match user {
        None => true,
        Some(u) => {
            user_ids(u)
                .ok_or_else(|| io::Error::other(format!("no user {u}: use ensure_user")))?
                .0
                == 0
        }
    };
    let mut cmd = Command::new("setpriv");
    cmd.arg("--pdeathsig=KILL");
    switch_to(&mut cmd, user);
    let mut child = cmd
        .args(["dbus-monitor", "--address", address, match_rule])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting dbus-monitor: {e}")))?;
    let state = Arc::new((Mutex::new(MonitorState::default()), Condvar::new()));

    let stdout = child.stdout.take().expect("stdout is piped");
    let st = Arc::clone(&state);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let (lock, cv) = &*st;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            match s.messages.last_mut() {
                Some(m) if line.starts_with(' ') || line.is_empty() => {
                    m.push('\n');
                    m.push_str(&line);
                }
                _ => s.messages.push(line),
            }
            s.last_line = Some(Instant::now());
            cv.notify_all();
        }
        let (lock, cv) = &*st;
        lock.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
        cv.notify_all();
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let st = Arc::clone(&state);
    std::thread::spawn(move || {
        for chunk in BufReader::new(stderr).split(b'\n') {
            let Ok(chunk) = chunk else { break };
            let mut s = st.0.lock().unwrap_or_else(|p| p.into_inner());
            s.stderr.push_str(&String::from_utf8_lossy(&chunk));
            s.stderr.push('\n');
        }
    });

    let mut monitor = Monitor {
        child,
        state,
        first: 0,
    };
    // dbus-monitor prints only from its main loop, which starts after its
    // subscription calls returned; the first thing it then prints is the
    // bus's NameAcquired for its unique name (and, as a true monitor, the
    // NameLost that follows BecomeMonitor).
    let ready = if is_root {
        "member=NameLost"
    } else {
        "member=NameAcquired"
    };
    match monitor.find(0, ready, STARTUP_TIMEOUT) {
        Some(i) => {
            monitor.first = i + 1;
            Ok(monitor)
        }
        None => Err(io::Error::other(format!(
            "dbus-monitor did not subscribe within {STARTUP_TIMEOUT:?}; stderr:\n{}",
            monitor.stderr()
        ))),
    }
}

impl Monitor {
    /// Waits up to `timeout` for a complete message, received since the
    /// monitor started, whose text contains `needle` (e.g.
    /// `member=ConnectionEvent`, or `string "new"`), and returns the text of
    /// the first such message.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let i = self.find(self.first, needle, timeout)?;
        let (lock, _) = &*self.state;
        let s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.messages.get(i).cloned()
    }

    /// Every message received since the monitor started, complete or not,
    /// in dbus-monitor's text form: a header line (`signal time=… sender=…
    /// -> destination=… serial=… path=…; interface=…; member=…`), then the
    /// arguments, indented.
    pub fn messages(&self) -> Vec<String> {
        let (lock, _) = &*self.state;
        let s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.messages.get(self.first..).unwrap_or_default().to_vec()
    }

    /// What dbus-monitor wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let (lock, _) = &*self.state;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .stderr
            .clone()
    }

    /// The monitor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The index of the first complete message at or after `from` that
    /// contains `needle`.
    fn find(&self, from: usize, needle: &str, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let n = s.messages.len();
            let last_settled = s.ended || s.last_line.is_some_and(|t| t.elapsed() >= SETTLE);
            let hit =
                (from..n).find(|&i| (i + 1 < n || last_settled) && s.messages[i].contains(needle));
            if hit.is_some() {
                return hit;
            }
            let now = Instant::now();
            if now >= deadline || (s.ended && last_settled) {
                return None;
            }
            s = cv
                .wait_timeout(s, (deadline - now).min(SETTLE))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
