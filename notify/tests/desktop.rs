//! leco-notify on a real desktop: the real service (its store, on a
//! private system-like bus with the real policy), a headless sway, a
//! session bus of the desktop user and mako on it, the notification
//! server. The session bus is watched to assert the Notify calls (their
//! hints, the cooldown, the "+N more" folding), mako is asked what it
//! shows, a screenshot shows the notification, makoctl invokes "Mute this
//! program", and the service restarts under the bridge.
//!
//! Needs root (the service loads eBPF programs; users are made), sway,
//! grim, mako and dbus-daemon (scripts/deps.sh test installs them).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leco_testkit::bus::{ensure_group, ensure_user, monitor_as, Monitor, TestBus};
use leco_testkit::wayland::{SessionBus, Sway, WaylandUser};
use leco_testkit::{connect_in_turn, require_root, scratch_dir};

const NOTIFY: &str = env!("CARGO_BIN_EXE_leco-notify");
const USER: &str = "leco-t-desk";
/// The screen, and mako's default colours.
const SCREEN: (u32, u32) = (1024, 600);
const BACKGROUND: &str = "#203040";
const MAKO_BACKGROUND: [u8; 3] = [0x28, 0x55, 0x77];

/// A process whose stderr lines are kept, killed when dropped.
struct Proc {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(mut cmd: Command, what: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` (20 s).
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no `{needle}` within 20 s; stderr: {:#?}", self.seen),
            }
        }
    }

    /// Takes in what it printed so far.
    fn drain(&mut self) {
        self.seen.extend(self.lines.try_iter());
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// leco-service, built next to leco-notify (`cargo test --workspace`
/// builds every binary).
fn service_bin() -> PathBuf {
    let bin = Path::new(NOTIFY).with_file_name("leco-service");
    assert!(
        bin.exists(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), or build it \
         first (`cargo build -p leco-service`)",
        bin.display()
    );
    bin
}

fn service(bus: &TestBus, state: &Path) -> Proc {
    let mut cmd = Command::new(service_bin());
    cmd.args([
        "--standalone",
        "--bus-address",
        bus.address(),
        "--warm-up",
        "0",
    ])
    .arg("--state-dir")
    .arg(state);
    let mut p = Proc::start(cmd, "leco-service");
    p.wait_for("serving org.leco.Overseer1");
    p
}

/// `makoctl ARGS` as the desktop user; its stdout.
fn makoctl(sway: &Sway, session: &SessionBus, args: &[&str]) -> Result<String, String> {
    let out = sway
        .client("makoctl")
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", session.address())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What mako shows: (id, summary) of each notification.
fn shown(sway: &Sway, session: &SessionBus) -> Vec<(u32, String)> {
    let Ok(json) = makoctl(sway, session, &["list"]) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let list = v["data"][0].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|n| {
            (
                n["id"]["data"].as_u64().unwrap_or(0) as u32,
                n["summary"]["data"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Notify calls the session bus carried so far, in dbus-monitor's text.
fn notify_calls(monitor: &Monitor) -> Vec<String> {
    monitor
        .messages()
        .into_iter()
        .filter(|m| m.starts_with("method call") && m.contains("member=Notify"))
        .collect()
}

/// The arguments of a dbus-monitor message after its header, one value
/// per `string`/`uint32` line at the top level.
fn top_values(message: &str) -> Vec<String> {
    message
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("   ") && !l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// leco-t-na connects to a new destination at `port`, then a program never
/// seen before (`fresh`: its name and port) connects: the fresh one is
/// told, and leco-t-na's new destination, which came before it, is not
/// (`why`).
fn held_back_then_told(monitor: &Monitor, port: u16, fresh: (&str, u16), why: &str) {
    connect_in_turn("leco-t-na", vec![port]);
    connect_in_turn(fresh.0, vec![fresh.1]);
    monitor
        .wait_for(
            &format!("New on the network: {}", fresh.0),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("{} told", fresh.0));
    assert!(
        notify_calls(monitor)
            .iter()
            .all(|c| !c.contains("leco-t-na: a new destination")),
        "{why}"
    );
}

/// Pixels of mako's background in `png`.
fn mako_pixels(png: &Path) -> usize {
    let pixmap = tiny_skia::Pixmap::load_png(png).expect("a PNG");
    pixmap
        .pixels()
        .iter()
        .filter(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue()] == MAKO_BACKGROUND
        })
        .count()
}

#[test]
fn notifications_of_what_is_new_on_a_real_desktop() {
    if !require_root("notifications_of_what_is_new_on_a_real_desktop") {
        return;
    }
    ensure_group("leco");
    ensure_user("leco", &[]);
    let user = WaylandUser::ensure(USER, &["leco"]);
    let mut bus = TestBus::start().expect("private system-like bus");
    let state = scratch_dir("notify-state");
    let svc = service(&bus, &state);
    let sway = Sway::start(&user, SCREEN.0, SCREEN.1, BACKGROUND).expect("headless sway");
    let session = sway.session_bus().expect("the user's session bus");
    let mut mako = sway.client("mako");
    mako.env("DBUS_SESSION_BUS_ADDRESS", session.address());
    let _mako = Proc::start(mako, "mako");
    wait_until("mako on the session bus", || {
        makoctl(&sway, &session, &["list"]).ok()
    });
    let monitor = monitor_as(
        Some(USER),
        session.address(),
        "interface='org.freedesktop.Notifications'",
    )
    .expect("watching the session bus");

    // The user's own directory: a mute replaces the file through a new
    // one next to it.
    let home = sway.dir().join("home");
    fs::create_dir(&home).expect("home");
    std::os::unix::fs::chown(&home, Some(user.uid), Some(user.gid)).expect("chown");
    let config = home.join("config.kdl");
    fs::write(
        &config,
        "// the test's\nnotify {\n    destinations #true\n    cooldown \"1h\"\n    max-per-minute 3\n}\n",
    )
    .expect("config");
    std::os::unix::fs::chown(&config, Some(user.uid), Some(user.gid)).expect("chown");
    let bin = sway
        .install(Path::new(NOTIFY))
        .expect("install leco-notify");
    let start_notify = || {
        let mut cmd = sway.client(&bin);
        // Without the daemon's guid: a restarted bus has another.
        let address = bus.address().split(",guid=").next().unwrap_or_default();
        cmd.arg("-c")
            .arg(&config)
            .args(["--system-bus-address", address])
            .env("RUST_LOG", "debug")
            .env("DBUS_SESSION_BUS_ADDRESS", session.address());
        let mut p = Proc::start(cmd, "leco-notify");
        p.wait_for("following leco-service");
        p.wait_for("notifying through the session's notification server");
        p
    };
    let mut notify = start_notify();

    let listeners: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("addr").port();

    // A program never seen before: one notification, as the spec says.
    connect_in_turn("leco-t-na", vec![port(0)]);
    let call = monitor
        .wait_for("New on the network: leco-t-na", Duration::from_secs(15))
        .unwrap_or_else(|| panic!("a Notify call; saw {:#?}", monitor.messages()));
    let args = top_values(&call);
    assert_eq!(
        args.first().map(String::as_str),
        Some("string \"leco\""),
        "{call}"
    );
    assert_eq!(args.get(1).map(String::as_str), Some("uint32 0"), "{call}");
    for hint in [
        "string \"urgency\"\n         variant             byte 0",
        "string \"category\"\n         variant             string \"network\"",
        "string \"desktop-entry\"\n         variant             string \"leco\"",
        "string \"mute\"\n      string \"Mute this program\"",
    ] {
        assert!(call.contains(hint), "{hint:?} in {call}");
    }
    let na = wait_until("mako showing it", || {
        shown(&sway, &session)
            .into_iter()
            .find(|(_, s)| s == "New on the network: leco-t-na")
            .map(|(id, _)| id)
    });
    let png = sway.dir().join("notification.png");
    sway.grim(&png, None).expect("screenshot");
    let drawn = mako_pixels(&png);
    assert!(
        drawn > 2_000,
        "mako's notification on screen: {drawn} pixels of it"
    );

    // The same program to a new destination, within its cooldown: nothing;
    // a new program after it is told (so the first went through already).
    held_back_then_told(
        &monitor,
        port(1),
        ("leco-t-nb", port(0)),
        "the cooldown holds back leco-t-na's new destination",
    );

    // Three a minute: the third is shown, the rest fold into one "+N more".
    for name in ["leco-t-nc", "leco-t-nd", "leco-t-ne", "leco-t-nf"] {
        connect_in_turn(name, vec![port(2)]);
    }
    monitor
        .wait_for("leco: +3 more", Duration::from_secs(15))
        .unwrap_or_else(|| panic!("folded; saw {:#?}", notify_calls(&monitor)));
    let calls = notify_calls(&monitor);
    let more: Vec<Vec<String>> = calls
        .iter()
        .filter(|c| c.contains("leco: +"))
        .map(|c| top_values(c))
        .collect();
    // (At least three: another program of this machine's may add to them.)
    assert!(more.len() >= 3, "{calls:#?}");
    assert_eq!(more[0][1], "uint32 0", "the first +N more is a new one");
    assert_ne!(more[1][1], "uint32 0", "the next ones replace it");
    assert!(more[1..].iter().all(|m| m[1] == more[1][1]), "{more:#?}");
    assert!(calls
        .iter()
        .any(|c| c.contains("New on the network: leco-t-nc")));
    for folded in ["leco-t-nd", "leco-t-ne", "leco-t-nf"] {
        assert!(calls.iter().all(|c| !c.contains(folded)), "{folded} folded");
    }
    let folds = wait_until("mako showing +3 (or more) more", || {
        let s = shown(&sway, &session);
        s.iter()
            .any(|(_, t)| t.starts_with("leco: +") && t != "leco: +1 more" && t != "leco: +2 more")
            .then_some(s)
    });
    assert_eq!(
        folds
            .iter()
            .filter(|(_, t)| t.starts_with("leco: +"))
            .count(),
        1,
        "one +N more notification, replaced: {folds:?}"
    );

    // "Mute this program", as the user clicks it: written to the config.
    makoctl(&sway, &session, &["invoke", "-n", &na.to_string(), "mute"]).expect("invoke");
    let muted = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        fs::read_to_string(&config).is_ok_and(|t| t.contains("mute \"leco-t-na\""))
    });
    if !muted {
        notify.drain();
        panic!(
            "no mute in config.kdl: {:?}\nleco-notify said: {:#?}\nthe session bus: {:#?}",
            fs::read_to_string(&config),
            notify.seen,
            monitor.messages().iter().rev().take(6).collect::<Vec<_>>()
        );
    }
    assert!(fs::read_to_string(&config)
        .expect("config")
        .contains("// the test's"));

    // A restarted bridge reads the mute (its cooldowns are gone, its cap
    // fresh): leco-t-na's next new destination is not told, a new
    // program after it is.
    notify.stop();
    let mut notify = start_notify();
    held_back_then_told(
        &monitor,
        port(3),
        ("leco-t-ng", port(0)),
        "leco-t-na is muted",
    );

    // The service restarts under the bridge, which follows it.
    svc.stop();
    let svc = service(&bus, &state);
    connect_in_turn("leco-t-nh", vec![port(0)]);
    monitor
        .wait_for("New on the network: leco-t-nh", Duration::from_secs(20))
        .expect("a new program after the service restarted");

    // So does the system bus: every client loses its connection (the
    // service exits, to be started again); the bridge connects anew.
    bus.restart().expect("restarting the system-like bus");
    svc.stop();
    let _svc = service(&bus, &state);
    connect_in_turn("leco-t-ni", vec![port(0)]);
    if monitor
        .wait_for("New on the network: leco-t-ni", Duration::from_secs(30))
        .is_none()
    {
        notify.drain();
        panic!(
            "no notification of a new program after the bus restarted; leco-notify said: {:#?}",
            notify.seen
        );
    }
}
