//! The overlay for real: a headless sway, the real service on a private
//! system-like bus with the real policy, the overlay as an unprivileged
//! user of group `leco`, a loopback connection from a named child, and
//! `grim` screenshots.
//!
//! One test walks through the overlay's life in order, because each step
//! needs the same expensive setup (compositor, bus, eBPF service):
//!
//! 1. a broken configuration at start: a clear error exit with
//!    FILE:LINE:COLUMN;
//! 2. the service absent: the status line shows, inside the configured
//!    corner only;
//! 3. the service starts: the overlay takes its snapshot, the status line
//!    goes;
//! 4. a connection from a process named `lecoe2e`: its line shows in the
//!    corner (and nothing anywhere else), the `--debug` log names it;
//! 5. after the fade time the corner is background again;
//! 6. a broken edit of the running configuration, then a FIFO in its
//!    place: the overlay keeps running, says why, and takes the next good
//!    edit;
//! 7. the service stops: the status line is back.
//!
//! Needs root (the service loads eBPF programs; users are created), sway,
//! grim and dbus-daemon; it never skips silently (see `require_root`).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leco_testkit::bus::TestBus;
use leco_testkit::wayland::{Sway, WaylandUser};
use leco_testkit::{require_root, spawn_named};

const USER: &str = "leco-e2e";
const SCREEN: (u32, u32) = (1024, 768);
const BACKGROUND: [u8; 3] = [0x20, 0x30, 0x40];
/// The surface: anchored top-right, this size and these margins.
const WIDTH: u32 = 520;
const HEIGHT: u32 = 120;
const MARGIN_TOP: u32 = 12;
const MARGIN_RIGHT: u32 = 16;
const FADE_S: u64 = 4;
/// The second output's size, made at run time.
const SECOND: (u32, u32) = (800, 600);
/// The name of the process whose connection the overlay must show.
const COMM: &str = "lecoe2e";

/// The overlay's configuration: the anchored rectangle above, a short fade,
/// and a rule that hides every line but the test process's (the machine's
/// other traffic, and the test's own accepting side, must not show).
fn config(fade_s: u64) -> String {
    format!(
        r##"overlay {{
    layer "top"
    anchor "top-right"
    margin {MARGIN_TOP} {MARGIN_RIGHT} 0 0
    width {WIDTH}
    height {HEIGHT}
    padding 6
    font "DejaVu Sans Mono"
    font-size 14
    line-height 18
    text-color "#ffffffff"
    max-fps 30
    fade-time {fade_s}
    rules {{
        hide {{
            match "."
            not "{COMM}"
        }}
    }}
}}
"##
    )
}

/// The anchored rectangle on screen: x, y, width, height.
fn corner() -> (u32, u32, u32, u32) {
    (SCREEN.0 - MARGIN_RIGHT - WIDTH, MARGIN_TOP, WIDTH, HEIGHT)
}

#[test]
fn overlay_under_sway() {
    if !require_root("overlay_under_sway (overlay e2e under headless sway)") {
        return;
    }
    require_tools();
    let service_bin = sibling_binary("leco-service");
    assert!(
        service_bin.exists(),
        "overlay e2e: {} is missing: build it first (`cargo build --release -p leco-service`; \
         `cargo test --workspace --release` builds it)",
        service_bin.display()
    );

    let mut t = Harness::start(1);

    // 1. A broken configuration at start.
    let broken = config(FADE_S).replace(&format!("width {WIDTH}"), "width \"wide\"");
    assert!(broken.contains("wide"));
    t.write_config(&broken);
    let out = t.run_overlay_to_exit(Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a broken config must stop the overlay; it exited with {}: {stderr}",
        out.status
    );
    let at = format!("{}:", t.config.display());
    let located = stderr.lines().any(|l| {
        l.split_once(at.as_str()).is_some_and(|(_, rest)| {
            let mut it = rest.splitn(3, ':');
            let line = it.next().unwrap_or("");
            let col = it.next().unwrap_or("");
            line.parse::<u32>().is_ok() && col.trim().parse::<u32>().is_ok()
        })
    });
    assert!(
        located,
        "the error must say FILE:LINE:COLUMN; it said: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panics: {stderr}");

    // 2. The service absent: the status line, in the corner only.
    t.write_config(&config(FADE_S));
    t.start_overlay();
    t.wait_log("leco-service is not running", Duration::from_secs(15));
    let shot = t.wait_screen(
        "the status line in the corner",
        Duration::from_secs(15),
        |s| s.inside > 30 && s.outside == 0,
    );
    eprintln!("status line: {shot:?}");

    // 3. The service starts: snapshot, status line gone, nothing shown (the
    // rules hide the machine's other traffic).
    t.start_service(&service_bin);
    t.wait_log("connected to leco-service", Duration::from_secs(20));
    t.wait_screen(
        "an empty screen once the service is up",
        Duration::from_secs(15),
        |s| s.inside == 0 && s.outside == 0,
    );

    // 4. A loopback connection from a process named lecoe2e.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        }
    });
    let child = spawn_named(COMM, move |p| {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        let _ = s.write_all(b"hello from lecoe2e");
        p.send(1);
        0
    });
    let started = Instant::now();
    let mut child = child;
    child.recv();
    assert_eq!(child.wait(), 0, "the named child could not connect");
    let _ = server.join();
    let shot = t.wait_screen(
        "the connection's line in the corner",
        Duration::from_secs(10),
        |s| s.inside > 100 && s.outside == 0,
    );
    let shown_after = started.elapsed();
    eprintln!("line shown after {shown_after:?}: {shot:?}");
    let log = t.overlay_log();
    assert!(
        log.lines().any(|l| l.contains("row ") && l.contains(COMM)),
        "the --debug log must show a line naming {COMM}; it is:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("row ") && !l.contains(COMM) && !l.contains("(no lines)")),
        "the rules must hide every other line; the --debug log is:\n{log}"
    );
    // The bounding box of what is drawn lies in the corner (wait_screen
    // checked that nothing is outside); its top-left starts near the
    // corner's, where the first row goes.
    let (cx, cy, _, _) = corner();
    let (bx, by, _, _) = shot.bbox.expect("a bounding box");
    assert!(
        bx < cx + 80 && by < cy + 40,
        "the first row should start at the corner's top-left {cx},{cy}: {shot:?}"
    );

    // 5. After the fade time, nothing.
    let gone = t.wait_screen(
        "the corner back to the background after the fade",
        Duration::from_secs(FADE_S + 6),
        |s| s.inside == 0 && s.outside == 0,
    );
    let gone_after = started.elapsed();
    eprintln!("line gone after {gone_after:?}: {gone:?}");
    assert!(
        gone_after >= Duration::from_secs(FADE_S) - Duration::from_millis(500),
        "the line went after {gone_after:?}, before its fade time of {FADE_S} s"
    );

    // 6. A broken edit while running: kept running, said why; a good edit
    // is taken.
    t.write_config(&broken);
    t.wait_log("configuration not reloaded", Duration::from_secs(10));
    t.wait_screen(
        "the reload error in the status line",
        Duration::from_secs(10),
        |s| s.inside > 30 && s.outside == 0,
    );
    assert!(
        t.overlay_alive(),
        "a broken edit must not stop the overlay:\n{}",
        t.overlay_log()
    );
    // Reading a FIFO would wait for a writer that never comes.
    t.replace_config_with_fifo();
    t.wait_log("not a regular file (a FIFO)", Duration::from_secs(10));
    assert!(
        t.overlay_alive(),
        "a FIFO in the configuration's place must not stop the overlay:\n{}",
        t.overlay_log()
    );
    t.write_config(&config(FADE_S));
    t.wait_log("configuration reloaded", Duration::from_secs(10));
    t.wait_screen(
        "a clean screen after the good edit",
        Duration::from_secs(10),
        |s| s.inside == 0 && s.outside == 0,
    );

    // 7. The service stops: the status line again.
    t.stop_service();
    t.wait_screen(
        "the status line after the service stopped",
        Duration::from_secs(15),
        |s| s.inside > 30 && s.outside == 0,
    );
    assert!(
        t.overlay_alive(),
        "the overlay must outlive the service:\n{}",
        t.overlay_log()
    );
}

/// On a HiDPI output (integer scale 2) the surface keeps its logical
/// place and size, and draws with twice the pixels: the status line (the
/// service is absent, no eBPF needed) shows inside the corner scaled by 2,
/// its text twice as tall as at scale 1.
#[test]
fn hidpi_output_at_scale_2() {
    if !require_root("hidpi_output_at_scale_2 (overlay under headless sway)") {
        return;
    }
    require_tools();
    let mut t = Harness::start(2);
    t.write_config(&config(FADE_S));
    t.start_overlay();
    t.wait_log("leco-service is not running", Duration::from_secs(15));
    let shot = t.wait_screen("the status line at scale 2", Duration::from_secs(15), |s| {
        s.inside > 60 && s.outside == 0
    });
    eprintln!("status line at scale 2: {shot:?}");
    let (_, _, _, h) = shot.bbox.expect("a bounding box");
    // At scale 1 the status line's text is 10-14 px tall.
    assert!(
        h >= 18,
        "the text should be drawn with twice the pixels (about 20-28 px tall), it is {h} px: \
         {shot:?}\n{}",
        t.overlay_log()
    );
    assert!(
        t.overlay_log().contains("buffer scale 2"),
        "the overlay should have taken the output's scale:\n{}",
        t.overlay_log()
    );
}

/// Outputs added at run time, with no service (the status line, drawn on
/// every surface, is what shows):
///
/// 1. `output "all"`: a second output made at run time gets its own
///    surface (one, named after it) with the status line in its corner,
///    and the first output keeps its own;
/// 2. `output "HEADLESS-2"` (a reload): nothing on HEADLESS-1, the status
///    line on HEADLESS-2;
/// 3. `output "HEADLESS-3"`, not there yet: nothing anywhere; once it is
///    made, the status line on it alone.
///
/// Outputs going away are not tested: sway 1.7's headless outputs cannot
/// be removed (`output X unplug` came in sway 1.8) nor disabled (wlroots
/// 0.15's headless backend refuses, "Cannot disable a headless output",
/// while swaymsg still answers success).
#[test]
fn outputs_added_at_run_time() {
    if !require_root("outputs_added_at_run_time (overlay under headless sway)") {
        return;
    }
    require_tools();
    let mut t = Harness::start(1);
    let first = View::output("HEADLESS-1", SCREEN);
    let second = View::output("HEADLESS-2", SECOND);
    let third = View::output("HEADLESS-3", SECOND);
    let status = |s: &Screen| s.inside > 30 && s.outside == 0;
    let empty = |s: &Screen| s.inside == 0 && s.outside == 0;
    let with_output =
        |o: &str| config(FADE_S).replace("overlay {", &format!("overlay {{\n    output \"{o}\""));

    // 1. All outputs, one more made at run time.
    t.write_config(&with_output("all"));
    t.start_overlay();
    t.wait_log("leco-service is not running", Duration::from_secs(15));
    t.wait_view(
        &first,
        "the status line on HEADLESS-1",
        Duration::from_secs(15),
        status,
    );
    t.add_output("HEADLESS-2", SCREEN.0);
    let shot = t.wait_view(
        &second,
        "the status line on the new output HEADLESS-2",
        Duration::from_secs(10),
        status,
    );
    eprintln!("status line on HEADLESS-2: {shot:?}");
    // It starts at the rectangle's left edge (past the padding): the
    // surface took the corner of HEADLESS-2, not of a wider layout.
    let (bx, _, _, _) = shot.bbox.expect("a bounding box");
    assert!(
        (second.corner.0..second.corner.0 + 20).contains(&bx),
        "the status line should start at the corner's left edge {}: {shot:?}",
        second.corner.0
    );
    t.wait_view(
        &first,
        "the status line still on HEADLESS-1",
        Duration::from_secs(5),
        status,
    );
    let log = t.overlay_log();
    let made = |name: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("surface on {name}:")))
            .count()
    };
    assert!(
        made("HEADLESS-1") == 1 && made("HEADLESS-2") == 1 && made("the compositor's choice") == 0,
        "one surface per output, each made for its named output; the log is:\n{log}"
    );

    // 2. One named output, by a reload.
    t.write_config(&with_output("HEADLESS-2"));
    t.wait_log("configuration reloaded", Duration::from_secs(10));
    t.wait_view(
        &first,
        "an empty HEADLESS-1 with output \"HEADLESS-2\"",
        Duration::from_secs(10),
        empty,
    );
    t.wait_view(
        &second,
        "the status line on HEADLESS-2 with output \"HEADLESS-2\"",
        Duration::from_secs(10),
        status,
    );

    // 3. A named output that comes later.
    t.write_config(&with_output("HEADLESS-3"));
    t.wait_log("HEADLESS-3 is not connected", Duration::from_secs(10));
    for (view, name) in [(&first, "HEADLESS-1"), (&second, "HEADLESS-2")] {
        t.wait_view(
            view,
            &format!("an empty {name} while HEADLESS-3 is missing"),
            Duration::from_secs(10),
            empty,
        );
    }
    t.add_output("HEADLESS-3", SCREEN.0 + SECOND.0);
    t.wait_view(
        &third,
        "the status line on HEADLESS-3 once made",
        Duration::from_secs(10),
        status,
    );
    for (view, name) in [(&first, "HEADLESS-1"), (&second, "HEADLESS-2")] {
        t.wait_view(
            view,
            &format!("an empty {name} with output \"HEADLESS-3\""),
            Duration::from_secs(5),
            empty,
        );
    }
    assert!(
        t.overlay_alive(),
        "the overlay must still run:\n{}",
        t.overlay_log()
    );
}

/// What a screenshot shows, relative to the anchored rectangle.
#[derive(Debug, Clone, Copy)]
struct Screen {
    /// Pixels other than the background inside the rectangle.
    inside: usize,
    /// Pixels other than the background outside it.
    outside: usize,
    /// Bounding box of all non-background pixels: x, y, w, h.
    bbox: Option<(u32, u32, u32, u32)>,
}

fn analyse(png: &Path, screen: (u32, u32), corner: (u32, u32, u32, u32)) -> Result<Screen, String> {
    let pixmap = tiny_skia::Pixmap::load_png(png).map_err(|e| format!("{}: {e}", png.display()))?;
    if (pixmap.width(), pixmap.height()) != screen {
        return Err(format!(
            "screenshot is {}x{}, expected {}x{}",
            pixmap.width(),
            pixmap.height(),
            screen.0,
            screen.1
        ));
    }
    let (cx, cy, cw, ch) = corner;
    let mut s = Screen {
        inside: 0,
        outside: 0,
        bbox: None,
    };
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (i, px) in pixmap.data().chunks_exact(4).enumerate() {
        if px[..3] == BACKGROUND {
            continue;
        }
        let (x, y) = (i as u32 % screen.0, i as u32 / screen.0);
        if (cx..cx + cw).contains(&x) && (cy..cy + ch).contains(&y) {
            s.inside += 1;
        } else {
            s.outside += 1;
        }
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    if x0 != u32::MAX {
        s.bbox = Some((x0, y0, x1 - x0 + 1, y1 - y0 + 1));
    }
    Ok(s)
}

/// One output's screenshot (`output` None: the whole layout) and where
/// the anchored rectangle lies in it.
#[derive(Debug, Clone, Copy)]
struct View {
    output: Option<&'static str>,
    screen: (u32, u32),
    corner: (u32, u32, u32, u32),
}

impl View {
    /// The output `name`, `screen` pixels at scale 1, the rectangle in its
    /// top-right corner.
    fn output(name: &'static str, screen: (u32, u32)) -> View {
        View {
            output: Some(name),
            screen,
            corner: (screen.0 - MARGIN_RIGHT - WIDTH, MARGIN_TOP, WIDTH, HEIGHT),
        }
    }
}

/// Everything the test started; dropping it stops the overlay and the
/// service (then the bus and sway drop themselves).
struct Harness {
    overlay_bin: PathBuf,
    config: PathBuf,
    sway: Sway,
    bus: TestBus,
    overlay: Option<Child>,
    service: Option<Child>,
    shots: u32,
    /// The screenshot's size and the anchored rectangle in its pixels.
    screen: (u32, u32),
    corner: (u32, u32, u32, u32),
}

impl Harness {
    /// The test user, a private bus and a headless sway whose one output
    /// has integer `scale` ([`SCREEN`] logical pixels); nothing started in
    /// it yet.
    fn start(scale: u32) -> Harness {
        let user = WaylandUser::ensure(USER, &["leco"]);
        let bus = TestBus::start().expect("private system-like bus");
        let screen = (SCREEN.0 * scale, SCREEN.1 * scale);
        let sway = Sway::start_scaled(&user, screen.0, screen.1, scale, "#203040")
            .unwrap_or_else(|e| panic!("headless sway at scale {scale}: {e}"));
        let (cx, cy, cw, ch) = corner();
        Harness {
            overlay_bin: sway
                .install(Path::new(env!("CARGO_BIN_EXE_leco-overlay")))
                .expect("leco-overlay for the test user"),
            config: sway.dir().join("config.kdl"),
            sway,
            bus,
            overlay: None,
            service: None,
            shots: 0,
            screen,
            corner: (cx * scale, cy * scale, cw * scale, ch * scale),
        }
    }

    /// Replaces the configuration the way editors do: a new file renamed
    /// over the old one.
    fn write_config(&self, text: &str) {
        let tmp = self.config.with_extension("kdl.tmp");
        fs::write(&tmp, text).expect("write config");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod config");
        fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// Puts a FIFO where the configuration is, the way `write_config`
    /// puts a file there.
    fn replace_config_with_fifo(&self) {
        let tmp = self.config.with_extension("kdl.fifo");
        leco_testkit::mkfifo(&tmp);
        fs::rename(&tmp, &self.config).expect("rename the FIFO over the config");
    }

    fn overlay_cmd(&self) -> Command {
        let mut cmd = self.sway.client(&self.overlay_bin);
        cmd.arg("-c")
            .arg(&self.config)
            .arg("--bus-address")
            .arg(self.bus.address())
            .arg("--debug")
            .arg("-v")
            .stdin(Stdio::null());
        cmd
    }

    fn run_overlay_to_exit(&self, timeout: Duration) -> std::process::Output {
        let mut cmd = Command::new("timeout");
        cmd.arg("--kill-after=2").arg(timeout.as_secs().to_string());
        let inner = self.overlay_cmd();
        cmd.arg(inner.get_program()).args(inner.get_args());
        cmd.stdin(Stdio::null()).output().expect("run leco-overlay")
    }

    fn start_overlay(&mut self) {
        let log = fs::File::create(self.sway.dir().join("overlay.log")).expect("overlay log");
        let child = self
            .overlay_cmd()
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start leco-overlay");
        self.overlay = Some(child);
    }

    fn overlay_log(&self) -> String {
        fs::read_to_string(self.sway.dir().join("overlay.log")).unwrap_or_default()
    }

    fn overlay_alive(&mut self) -> bool {
        self.overlay
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn start_service(&mut self, bin: &Path) {
        let log_path = self.sway.dir().join("service.log");
        let log = fs::File::create(&log_path).expect("service log");
        let child = Command::new(bin)
            .args(["--standalone", "--bus-address", self.bus.address()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start leco-service");
        self.service = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("serving org.leco.Overseer1")
        {
            if let Some(Ok(Some(status))) = self.service.as_mut().map(Child::try_wait) {
                self.fail(&format!("leco-service exited ({status}) before serving"));
            }
            if Instant::now() > deadline {
                self.fail("leco-service did not serve org.leco.Overseer1 within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_service(&mut self) {
        if let Some(mut c) = self.service.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.overlay_log().contains(needle) {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "the overlay did not log `{needle}` within {timeout:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Takes screenshots until `ok` holds for one, and returns it.
    fn wait_screen(
        &mut self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Screen) -> bool,
    ) -> Screen {
        let view = View {
            output: None,
            screen: self.screen,
            corner: self.corner,
        };
        self.wait_view(&view, what, timeout, ok)
    }

    /// Like [`Harness::wait_screen`], for the screenshot `view` describes.
    fn wait_view(
        &mut self,
        view: &View,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Screen) -> bool,
    ) -> Screen {
        let deadline = Instant::now() + timeout;
        loop {
            self.shots += 1;
            let path = self.sway.dir().join(format!("shot-{}.png", self.shots));
            let taken = match view.output {
                Some(name) => self.sway.grim_output(&path, name),
                None => self.sway.grim(&path, None),
            };
            let screen = taken
                .map_err(|e| e.to_string())
                .and_then(|()| analyse(&path, view.screen, view.corner));
            let last = match screen {
                Ok(s) if ok(&s) => {
                    // LECO_E2E_SHOTS=DIR keeps each matching screenshot.
                    if let Some(dir) = std::env::var_os("LECO_E2E_SHOTS") {
                        let name = what.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
                        let _ = fs::copy(&path, Path::new(&dir).join(format!("{name}.png")));
                    }
                    let _ = fs::remove_file(&path);
                    return s;
                }
                Ok(s) => format!("{s:?}"),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                // Keep the last picture for a human to look at.
                let keep = std::env::temp_dir().join(format!("leco-e2e-{}.png", self.shots));
                let _ = fs::copy(&path, &keep);
                self.fail(&format!(
                    "no {what} within {timeout:?} (output {}, corner {:?}); last screenshot: {} \
                     (kept as {})",
                    view.output.unwrap_or("all"),
                    view.corner,
                    last,
                    keep.display()
                ));
            }
            let _ = fs::remove_file(&path);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Makes a headless output, expected to be called `name`, of
    /// [`SECOND`]'s size at `x`,0 in the layout, with the background.
    fn add_output(&self, name: &str, x: u32) {
        self.sway_cmd("create_output");
        self.sway_cmd(&format!(
            "output {name} resolution {}x{} position {x} 0 background #203040 solid_color",
            SECOND.0, SECOND.1
        ));
    }

    /// Runs a sway IPC command, failing the test with the logs otherwise.
    fn sway_cmd(&self, command: &str) {
        if let Err(e) = self.sway.swaymsg(command) {
            self.fail(&e.to_string());
        }
    }

    fn fail(&self, msg: &str) -> ! {
        let service = fs::read_to_string(self.sway.dir().join("service.log")).unwrap_or_default();
        let service: Vec<&str> = service.lines().collect();
        panic!(
            "{msg}\n--- overlay log ---\n{}\n--- sway log (end) ---\n{}\n--- service log (end) ---\n{}\n--- bus log ---\n{}",
            self.overlay_log(),
            self.sway.log(),
            service[service.len().saturating_sub(30)..].join("\n"),
            self.bus.log()
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut c) = self.overlay.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.service.take() {
            // SIGTERM first: the service detaches its programs on the way out.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A binary next to the overlay's in the target directory.
fn sibling_binary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_leco-overlay")).with_file_name(name)
}

/// Fails, saying what to install, unless the tools and the font both tests
/// need are here.
fn require_tools() {
    for tool in ["sway", "grim", "dbus-daemon", "setpriv"] {
        assert!(
            on_path(tool),
            "overlay e2e: `{tool}` is not installed; install the test tools with \
             `./scripts/deps.sh test` (apt-get install sway grim fonts-dejavu-core dbus-daemon)"
        );
    }
    assert!(
        Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf").exists(),
        "overlay e2e: DejaVu Sans Mono is missing: apt-get install fonts-dejavu-core"
    );
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}
