//! A headless Wayland compositor for tests: `sway` with the headless
//! wlroots backend and the pixman renderer, run as an unprivileged user
//! (sway refuses root), and `grim` screenshots of it.
//!
//! Everything the compositor needs lives in one fresh directory under
//! `/tmp` (its config, its log, and the user's `XDG_RUNTIME_DIR`, mode 0700
//! and owned by the user); dropping [`Sway`] kills the compositor and
//! removes the directory.

use std::fs;
use std::io;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long sway may take to open its socket.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Who runs the compositor and its clients.
#[derive(Debug, Clone)]
pub struct WaylandUser {
    /// User name (for messages).
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl WaylandUser {
    /// The user `name`, created (with `groups`, see
    /// [`ensure_user`](crate::bus::ensure_user)) if it does not exist yet.
    pub fn ensure(name: &str, groups: &[&str]) -> WaylandUser {
        let (uid, gid) = crate::bus::ensure_user(name, groups);
        WaylandUser {
            name: name.to_owned(),
            uid,
            gid,
        }
    }
}

/// A running headless sway with one output.
#[derive(Debug)]
pub struct Sway {
    child: Child,
    dir: PathBuf,
    runtime_dir: PathBuf,
    display: String,
    user: WaylandUser,
}

impl Sway {
    /// Starts sway as `user` with one headless output `HEADLESS-1` of
    /// `width`×`height` filled with `background` (`#rrggbb`), and returns
    /// once clients can connect.
    pub fn start(
        user: &WaylandUser,
        width: u32,
        height: u32,
        background: &str,
    ) -> io::Result<Sway> {
        Sway::start_scaled(user, width, height, 1, background)
    }

    /// Like [`Sway::start`], with the output at an integer `scale` (HiDPI):
    /// `width`×`height` are its pixels, clients see it `scale` times
    /// smaller in logical pixels, and screenshots have its full pixels.
    pub fn start_scaled(
        user: &WaylandUser,
        width: u32,
        height: u32,
        scale: u32,
        background: &str,
    ) -> io::Result<Sway> {
        let dir = crate::fresh_dir("leco-wl")?;
        let runtime_dir = make_runtime_dir(&dir, user)?;
        let config = write_config(&dir, width, height, scale, background)?;
        let child = spawn_sway(user, &runtime_dir, &config, &dir.join("sway.log"))?;
        let mut sway = Sway {
            child,
            dir,
            runtime_dir,
            display: String::new(),
            user: user.clone(),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        sway.display = sway.wait_for_socket(deadline)?;
        sway.wait_for_output(deadline)?;
        Ok(sway)
    }

    /// Waits until sway has opened its Wayland socket; returns its name.
    fn wait_for_socket(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(d) = self.find_socket() {
                return Ok(d);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(io::Error::other(format!(
                    "sway exited ({status}) before opening its socket; its log:\n{}",
                    self.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "sway opened no Wayland socket in {STARTUP_TIMEOUT:?}; its log:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a screenshot works: the socket exists before the output
    /// is configured, and a screenshot needs the output.
    fn wait_for_output(&self, deadline: Instant) -> io::Result<()> {
        loop {
            let probe = self.dir.join("probe.png");
            if self.grim(&probe, None).is_ok() {
                let _ = fs::remove_file(probe);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "grim cannot take a screenshot of sway after {STARTUP_TIMEOUT:?}; sway's log:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn find_socket(&self) -> Option<String> {
        let entries = fs::read_dir(&self.runtime_dir).ok()?;
        entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("wayland-") && !n.ends_with(".lock"))
    }

    /// `WAYLAND_DISPLAY` for clients (e.g. `wayland-1`).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The user's `XDG_RUNTIME_DIR`, where the socket is.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// The scratch directory (world-readable, for test files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies `bin` into the scratch directory, mode 0755, and returns the
    /// copy: the compositor's user may not reach the build tree.
    pub fn install(&self, bin: &Path) -> io::Result<PathBuf> {
        let name = bin.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file", bin.display()),
            )
        })?;
        let to = self.dir.join(name);
        fs::copy(bin, &to)
            .map_err(|e| io::Error::new(e.kind(), format!("copying {}: {e}", bin.display())))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
        Ok(to)
    }

    /// The compositor's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A command that runs `program` as the compositor's user, with the
    /// environment of a client of this compositor.
    pub fn client(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = as_user(&self.user, &self.runtime_dir, Some(&self.display));
        cmd.arg(program);
        cmd
    }

    /// Takes a screenshot into `path` (PNG), of the region `x,y wxh` when
    /// given.
    pub fn grim(&self, path: &Path, region: Option<(i32, i32, u32, u32)>) -> io::Result<()> {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=2", "10", "grim"]);
        if let Some((x, y, w, h)) = region {
            cmd.arg("-g").arg(format!("{x},{y} {w}x{h}"));
        }
        self.run_grim(cmd, path)
    }

    /// Takes a screenshot of the output `name` alone (e.g. `HEADLESS-2`)
    /// into `path` (PNG), at its full pixels.
    pub fn grim_output(&self, path: &Path, name: &str) -> io::Result<()> {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=2", "10", "grim", "-o", name]);
        self.run_grim(cmd, path)
    }

    fn run_grim(&self, mut cmd: Command, path: &Path) -> io::Result<()> {
        // Root may connect to the user's compositor; the file stays ours.
        let out: Output = cmd
            .arg(path)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env(
                "WAYLAND_DISPLAY",
                if self.display.is_empty() {
                    "wayland-1"
                } else {
                    &self.display
                },
            )
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("running grim: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "grim failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Runs the sway IPC command `command` (e.g. `create_output`, or
    /// `output HEADLESS-2 disable`) with `swaymsg`, and fails with sway's
    /// answer unless it succeeded.
    pub fn swaymsg(&self, command: &str) -> io::Result<()> {
        let socket = fs::read_dir(&self.runtime_dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("sway-ipc."))
            })
            .ok_or_else(|| {
                io::Error::other(format!(
                    "no sway IPC socket (sway-ipc.*) in {}",
                    self.runtime_dir.display()
                ))
            })?;
        // Root may talk to the user's compositor, as with grim.
        let out = Command::new("timeout")
            .args(["--kill-after=2", "10", "swaymsg", "-s"])
            .arg(&socket)
            .arg("--")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("running swaymsg: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "swaymsg {command:?} failed ({}): {} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// What sway has logged so far (worth printing when a test fails).
    pub fn log(&self) -> String {
        let log = fs::read_to_string(self.dir.join("sway.log")).unwrap_or_default();
        // Its start-up is long and mostly noise: the end is what matters.
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// A session bus of the compositor's user (a `dbus-daemon --session` of
/// theirs, its socket in their `XDG_RUNTIME_DIR`), for the desktop's
/// services: a notification server, its clients. Dropping it stops the
/// daemon.
#[derive(Debug)]
pub struct SessionBus {
    child: Child,
    address: String,
}

impl SessionBus {
    /// The address its clients set as `DBUS_SESSION_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sway {
    /// Starts a session bus of the compositor's user and returns once it
    /// listens; [`Sway::client`] commands reach it with
    /// `.env("DBUS_SESSION_BUS_ADDRESS", bus.address())`.
    pub fn session_bus(&self) -> io::Result<SessionBus> {
        use std::io::BufRead;
        let socket = self.runtime_dir.join("bus");
        let mut child = as_user(&self.user, &self.runtime_dir, None)
            .arg("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting dbus-daemon: {e}")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) if line.trim().starts_with("unix:") => Ok(SessionBus {
                child,
                address: line.trim().to_owned(),
            }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "the session dbus-daemon printed no address ({other:?})"
                )))
            }
        }
    }
}

impl Drop for Sway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates `user`'s `XDG_RUNTIME_DIR` in `dir`: `run`, mode 0700, theirs.
fn make_runtime_dir(dir: &Path, user: &WaylandUser) -> io::Result<PathBuf> {
    let runtime_dir = dir.join("run");
    fs::create_dir(&runtime_dir)?;
    fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o700))?;
    chown(&runtime_dir, Some(user.uid), Some(user.gid))?;
    Ok(runtime_dir)
}

/// Writes sway's configuration into `dir`: the one output, and nothing
/// else on screen.
fn write_config(
    dir: &Path,
    width: u32,
    height: u32,
    scale: u32,
    background: &str,
) -> io::Result<PathBuf> {
    let config = dir.join("sway.conf");
    // No bar, no borders, no Xwayland: only the background and layer
    // surfaces end up on screen.
    fs::write(
        &config,
        format!(
            "output HEADLESS-1 resolution {width}x{height} scale {scale} background {background} solid_color\n\
             xwayland disable\n\
             default_border none\n"
        ),
    )?;
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644))?;
    Ok(config)
}

/// Starts sway as `user` on the headless backend with `config`, its output
/// into `log`.
fn spawn_sway(
    user: &WaylandUser,
    runtime_dir: &Path,
    config: &Path,
    log: &Path,
) -> io::Result<Child> {
    let log = fs::File::create(log)?;
    let mut cmd = as_user(user, runtime_dir, None);
    cmd.env("WLR_BACKENDS", "headless")
        .env("WLR_RENDERER", "pixman")
        .env("WLR_LIBINPUT_NO_DEVICES", "1")
        .env("WLR_HEADLESS_OUTPUTS", "1")
        .arg("sway")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting sway: {e}")))
}

/// `setpriv` to `user` (its uid, primary gid and supplementary groups)
/// with a client's environment; the parent's death kills the program.
fn as_user(user: &WaylandUser, runtime_dir: &Path, display: Option<&str>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg("--pdeathsig=KILL")
        .arg("env")
        .arg(format!("XDG_RUNTIME_DIR={}", runtime_dir.display()))
        .arg("HOME=/nonexistent");
    if let Some(d) = display {
        cmd.arg(format!("WAYLAND_DISPLAY={d}"));
    }
    cmd
}
