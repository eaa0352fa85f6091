//! The running overlay's cost (`leco-bench --overlay-live`): memory with
//! 100 lines, wake-ups when idle and while fading, CPU under 100 events/s.
//!
//! The overlay runs for real under a headless sway (pixman renderer), as an
//! unprivileged user of group `leco`, on a private system-like bus with the
//! real policy. The events come from a fake service in this process (a
//! zbus connection that owns `org.leco.Overseer1`, answers `Snapshot()`
//! and emits `ConnectionEvent` at a chosen pace), so the figures are the
//! overlay's alone and the rate is exact.
//!
//! Wake-ups are counted from `/proc/PID/task/*/schedstat` (the third field:
//! times a thread was put on a CPU), summed over the overlay's threads;
//! CPU time from the first field (ns on CPU) of the same files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use leco_proto::{Connection, Dict, Dicts, Proto, BUS_NAME, INTERFACE, OBJECT_PATH};
use leco_testkit::bus::TestBus;
use leco_testkit::wayland::{Sway, WaylandUser};

use crate::report::mib;

/// The section's title; the report keeps one section of this name.
pub const TITLE: &str = "## Overlay (live)";
const USER: &str = "leco-bench-ovl";
const SCREEN: (u32, u32) = (1600, 2000);
/// The default width, tall enough for 100 rows of 18 px.
const SURFACE: (u32, u32) = (900, 1850);
/// Long enough to measure with 100 lines on screen, short enough to wait
/// for the end of.
const FADE_S: u64 = 8;
/// Pace of the busy window's updates, events/s.
const EVENT_RATE: u64 = 100;

/// How long each window lasts.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// Idle windows (wake-ups should be 0).
    pub idle: Duration,
    /// The fading and the 100 events/s windows.
    pub busy: Duration,
}

/// One measured window of the overlay process.
#[derive(Debug, Clone, Copy)]
struct Window {
    secs: f64,
    wakeups: u64,
    cpu_ns: u64,
}

impl Window {
    fn wakeups_per_s(&self) -> f64 {
        self.wakeups as f64 / self.secs
    }
    fn cpu_percent(&self) -> f64 {
        self.cpu_ns as f64 / 1e9 / self.secs * 100.0
    }
}

/// Counters of all the threads of `pid`: (times scheduled in, ns on CPU).
fn sched(pid: u32) -> Result<(u64, u64)> {
    let mut slices = 0;
    let mut ns = 0;
    let dir = format!("/proc/{pid}/task");
    for task in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path().join("schedstat");
        // A thread that just ended has no file any more: skip it.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let f: Vec<u64> = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if let [run_ns, _, timeslices] = f[..] {
            ns += run_ns;
            slices += timeslices;
        }
    }
    Ok((slices, ns))
}

fn measure(pid: u32, span: Duration) -> Result<Window> {
    let (s0, n0) = sched(pid)?;
    let t0 = Instant::now();
    thread::sleep(span);
    let (s1, n1) = sched(pid)?;
    Ok(Window {
        secs: t0.elapsed().as_secs_f64(),
        wakeups: s1.saturating_sub(s0),
        cpu_ns: n1.saturating_sub(n0),
    })
}

/// Resident memory of a process, KiB.
#[derive(Debug, Clone, Copy)]
struct Rss {
    total: u64,
    peak: u64,
    anon: u64,
    file: u64,
    /// Shared memory: the wl_shm buffers.
    shmem: u64,
}

/// Resident memory of `pid` from /proc/PID/status.
fn rss_kib(pid: u32) -> Result<Rss> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Rss {
        total: field("VmRSS:")?,
        peak: field("VmHWM:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
        shmem: field("RssShmem:")?,
    })
}

/// What the fake service is told to do.
enum Cmd {
    /// Emit these events now.
    Emit(Vec<(&'static str, Connection)>),
}

/// `org.leco.Overseer1` as far as the overlay needs it: an empty snapshot.
struct FakeOverseer;

#[zbus::interface(name = "org.leco.Overseer1")]
impl FakeOverseer {
    /// Nothing happened before the bench started.
    fn snapshot(&self) -> Dicts {
        Dicts(Vec::new())
    }
}

/// A fake service on its own thread and runtime.
struct Fake {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    thread: Option<thread::JoinHandle<Result<()>>>,
}

impl Fake {
    fn start(address: &str) -> Result<Fake> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let address = address.to_owned();
        let thread =
            thread::Builder::new()
                .name("fake-service".into())
                .spawn(move || -> Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let conn = async {
                            zbus::connection::Builder::address(address.as_str())?
                                .name(BUS_NAME)?
                                .serve_at(OBJECT_PATH, FakeOverseer)?
                                .build()
                                .await
                        }
                        .await;
                        let conn = match conn {
                            Ok(c) => {
                                let _ = ready_tx.send(Ok(()));
                                c
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(anyhow!("fake service: {e}")));
                                return Ok(());
                            }
                        };
                        while let Some(Cmd::Emit(events)) = rx.recv().await {
                            for (kind, c) in events {
                                conn.emit_signal(
                                    None::<()>,
                                    OBJECT_PATH,
                                    INTERFACE,
                                    "ConnectionEvent",
                                    &(kind, Dict(&c)),
                                )
                                .await
                                .context("fake service: emitting")?;
                            }
                        }
                        Ok(())
                    })
                })?;
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("fake service: not on the bus within 10 s"))??;
        Ok(Fake {
            tx,
            thread: Some(thread),
        })
    }

    fn emit(&self, events: Vec<(&'static str, Connection)>) -> Result<()> {
        self.tx
            .send(Cmd::Emit(events))
            .map_err(|_| anyhow!("fake service: gone"))
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        // Closing the channel ends its loop.
        let (tx, _) = tokio::sync::mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A plausible connection, `i` making it distinct.
fn connection(i: u64, rx: u64) -> Connection {
    let t = now_us();
    Connection {
        family: Some(4),
        direction: Some(leco_proto::Direction::Out),
        state: "established".into(),
        local_addr: "10.0.0.2".into(),
        local_port: 40_000 + (i % 20_000) as u16,
        remote_addr: format!("93.184.{}.{}", i / 250 % 250, i % 250 + 1).into(),
        remote_port: 443,
        pid: Some(4242 + i as u32),
        comm: Some(format!("bench-{i:03}").into()),
        uid: Some(1000),
        user: Some("alice".into()),
        unit: Some(format!("app-bench-{i}.scope").into()),
        first_seen_us: t,
        last_seen_us: t,
        rx_bytes: rx,
        tx_bytes: rx / 3,
        ..leco_proto::example::bare(1_000_000 + i, Proto::Tcp)
    }
}

/// The overlay's configuration for the bench: a tall surface holding 100
/// lines, the default look.
fn config() -> String {
    format!(
        "overlay {{\n    anchor \"top-left\"\n    width {}\n    height {}\n    \
         font \"DejaVu Sans Mono\"\n    font-size 13\n    line-height 18\n    \
         max-lines 100\n    fade-time {FADE_S}\n}}\n",
        SURFACE.0, SURFACE.1
    )
}

/// The running overlay; killed when dropped.
struct Overlay {
    child: Child,
    log: PathBuf,
}

impl Overlay {
    /// Starts leco-overlay as the compositor's user with the bench's
    /// configuration, on the bus at `address`; returns once it is connected
    /// to the (fake) service.
    fn start(sway: &Sway, address: &str, overlay_bin: &Path) -> Result<Overlay> {
        let bin = sway
            .install(overlay_bin)
            .context("copying leco-overlay for the test user")?;
        let cfg = sway.dir().join("config.kdl");
        fs::write(&cfg, config())?;
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644))?;
        let log = sway.dir().join("overlay.log");
        let out = fs::File::create(&log)?;
        let child = sway
            .client(&bin)
            .arg("-c")
            .arg(&cfg)
            .arg("--bus-address")
            .arg(address)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting leco-overlay")?;
        let mut overlay = Overlay { child, log };
        overlay.wait_log("connected to leco-service", Duration::from_secs(20))?;
        Ok(overlay)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if let Some(status) = self.child.try_wait()? {
                bail!("leco-overlay exited ({status}); its log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "leco-overlay did not log `{needle}` within {timeout:?}; its log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the measurement and returns the report section (Markdown).
pub fn run(overlay_bin: &Path, windows: Windows) -> Result<String> {
    preflight(overlay_bin)?;
    let figures = measure_all(overlay_bin, windows)?;
    Ok(section(&figures))
}

/// Fails now, not after sway started, when the bench cannot run.
fn preflight(overlay_bin: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("--overlay-live must run as root (it creates a test user and runs sway as it)");
    }
    if !overlay_bin.is_file() {
        bail!(
            "leco-overlay not found at {}: build it (cargo build --release -p leco-overlay)",
            overlay_bin.display()
        );
    }
    Ok(())
}

/// What the section reports.
#[derive(Debug, Clone, Copy)]
struct Figures {
    windows: Windows,
    rss_empty: Rss,
    rss_100: Rss,
    rss_busy: Rss,
    idle_before: Window,
    fading: Window,
    idle_after: Window,
    busy: Window,
}

/// Runs the overlay under sway, fed by the fake service on a private bus,
/// and measures it idle, while 100 lines fade, idle again and under
/// [`EVENT_RATE`] events/s.
fn measure_all(overlay_bin: &Path, windows: Windows) -> Result<Figures> {
    let user = WaylandUser::ensure(USER, &["leco"]);
    let bus = TestBus::start().context("starting the private bus")?;
    let sway = Sway::start(&user, SCREEN.0, SCREEN.1, "#203040").context("starting sway")?;
    let fake = Fake::start(bus.address())?;
    let mut overlay = Overlay::start(&sway, bus.address(), overlay_bin)?;
    let pid = overlay.pid();
    // Let start-up (font scan, first frame) settle.
    thread::sleep(Duration::from_secs(2));

    let rss_empty = rss_kib(pid)?;
    let idle_before = measure(pid, windows.idle)?;
    let (rss_100, fading) = fade_100_lines(&fake, pid, windows.busy)?;
    let idle_after = measure(pid, windows.idle)?;
    let busy = feed_events(&fake, pid, windows.busy)?;
    let rss_busy = rss_kib(pid)?;
    if let Some(status) = overlay.child.try_wait()? {
        bail!(
            "leco-overlay exited ({status}) during the bench; its log:\n{}",
            overlay.log()
        );
    }
    drop(overlay);
    drop(fake);
    Ok(Figures {
        windows,
        rss_empty,
        rss_100,
        rss_busy,
        idle_before,
        fading,
        idle_after,
        busy,
    })
}

/// Shows 100 lines at once and measures them fading for at most `span`;
/// returns after the fade: the memory with them shown, and the window.
fn fade_100_lines(fake: &Fake, pid: u32, span: Duration) -> Result<(Rss, Window)> {
    fake.emit((0..100).map(|i| ("new", connection(i, 0))).collect())?;
    let burst = Instant::now();
    thread::sleep(Duration::from_millis(1500));
    let rss_100 = rss_kib(pid)?;
    let fading = measure(pid, span.min(Duration::from_secs(FADE_S - 3)))?;
    let end_of_fade = burst + Duration::from_secs(FADE_S + 2);
    thread::sleep(end_of_fade.saturating_duration_since(Instant::now()));
    Ok((rss_100, fading))
}

/// Updates 20 connections in turn at [`EVENT_RATE`], more traffic each
/// time, and measures `span` of it.
fn feed_events(fake: &Fake, pid: u32, span: Duration) -> Result<Window> {
    let stop = Instant::now() + span + Duration::from_secs(1);
    let measurer = thread::spawn(move || -> Result<Window> {
        // Skip the first second: the first lines' arrival.
        thread::sleep(Duration::from_secs(1));
        measure(pid, span)
    });
    let mut n = 0u64;
    let t0 = Instant::now();
    while Instant::now() < stop {
        let due = t0 + Duration::from_micros(n * 1_000_000 / EVENT_RATE);
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let i = 200 + n % 20;
        fake.emit(vec![("update", connection(i, 6_000 + n * 1_500))])?;
        n += 1;
    }
    measurer
        .join()
        .map_err(|_| anyhow!("measuring thread panicked"))?
}

/// The section: how it was measured, the figures, what they mean.
fn section(f: &Figures) -> String {
    let mut md = String::new();
    md.push_str(TITLE);
    md.push_str("\n\n");
    md.push_str(&format!(
        "`leco-bench --overlay-live`: leco-overlay under a headless sway 1.x (pixman \
         renderer), one {}x{} output, a {}x{} surface with up to 100 rows of DejaVu Sans Mono \
         13 px, fed by a fake `org.leco.Overseer1` on a private system-like bus; fade time \
         {FADE_S} s. Wake-ups are the times any of the overlay's threads was scheduled in \
         (`/proc/PID/task/*/schedstat`), CPU its time on CPU over the window.\n\n",
        SCREEN.0, SCREEN.1, SURFACE.0, SURFACE.1
    ));
    md.push_str(&table(f));
    md.push_str(&memory_and_wakeups(f));
    md
}

/// The table of figures.
fn table(f: &Figures) -> String {
    let mut md = String::new();
    md.push_str("| measure | value | target |\n|---|---:|---|\n");
    let rss_row = |what: &str, r: Rss, target: &str| {
        format!(
            "| RSS, {what} | {:.1} MiB (peak {:.1}; anon {:.1}, wl_shm buffers {:.1}, \
             files {:.1}) | {target} |\n",
            mib(r.total),
            mib(r.peak),
            mib(r.anon),
            mib(r.shmem),
            mib(r.file)
        )
    };
    md.push_str(&rss_row("started, no lines (baseline)", f.rss_empty, ""));
    md.push_str(&rss_row("100 lines shown", f.rss_100, "≤ 30 MiB"));
    md.push_str(&rss_row(
        &format!("after {} s at 100 events/s", f.windows.busy.as_secs()),
        f.rss_busy,
        "",
    ));
    md.push_str(&format!(
        "| wake-ups/s idle, before any line ({:.0} s) | {:.2} | 0 |\n",
        f.idle_before.secs,
        f.idle_before.wakeups_per_s()
    ));
    md.push_str(&format!(
        "| wake-ups/s while 100 lines fade ({:.0} s) | {:.1} | |\n",
        f.fading.secs,
        f.fading.wakeups_per_s()
    ));
    md.push_str(&format!(
        "| CPU while 100 lines fade | {:.1} % of a core | |\n",
        f.fading.cpu_percent()
    ));
    md.push_str(&format!(
        "| wake-ups/s idle, after the fade ({:.0} s) | {:.2} | 0 |\n",
        f.idle_after.secs,
        f.idle_after.wakeups_per_s()
    ));
    md.push_str(&format!(
        "| CPU at 100 events/s ({:.0} s) | {:.1} % of a core ({:.0} µs per event) | |\n",
        f.busy.secs,
        f.busy.cpu_percent(),
        f.busy.cpu_ns as f64 / 1e3 / (f.busy.secs * EVENT_RATE as f64)
    ));
    md.push_str(&format!(
        "| wake-ups/s at 100 events/s | {:.1} | |\n",
        f.busy.wakeups_per_s()
    ));
    md
}

/// Where the memory goes and why the overlay wakes up when it does.
fn memory_and_wakeups(f: &Figures) -> String {
    let picture = mib(u64::from(SURFACE.0) * u64::from(SURFACE.1) * 4 / 1024);
    let rest = mib(f.rss_100.total) - 2.0 * picture;
    // The default surface, 900x400: what it would hold with the same rest.
    let default_picture = 900.0 * 400.0 * 4.0 / (1024.0 * 1024.0);
    format!(
        "\nMemory is mostly pixels: the two wl_shm buffers that take turns (one shown, one \
         drawn) are {picture:.1} MiB each at {}x{}, and the renderer draws straight into \
         them from its cached line images (it keeps no picture of its own); everything \
         else (code, fonts, glyph and line caches, the bus thread) comes to about \
         {rest:.1} MiB with 100 lines shown, so the default 900x400 surface would hold about \
         {:.1} MiB. Idle, the loop sleeps in poll(2) without a timeout: no wake-ups at all. \
         While 100 lines fade along a smooth curve every frame differs, \
         so it draws at the `max-fps` cap (30/s), waking about three times a frame (the fade \
         step's timer, the frame callback, the buffer's release). At 100 events/s each D-Bus message wakes the bus thread \
         and, through the wake-up socket, the drawing thread (which takes in whatever \
         arrived); redraws stay under `max-fps` (30), and only the rectangles that changed \
         are drawn into the buffer.\n\n",
        SURFACE.0,
        SURFACE.1,
        rest + 2.0 * default_picture
    )
}

/// Puts `section` into the report at `out`: in place of an earlier section
/// of the same title, else at the end.
pub fn splice_into(out: &Path, section: &str) -> Result<()> {
    let old = fs::read_to_string(out).unwrap_or_default();
    let new = match extract(&old) {
        Some((start, end)) => {
            let before = old[..start].trim_end();
            let sep = if before.is_empty() { "" } else { "\n\n" };
            format!("{before}{sep}{section}{}", &old[end..])
        }
        None if old.is_empty() => section.to_owned(),
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    fs::write(out, new).with_context(|| format!("writing {}", out.display()))
}

/// Keeps the overlay section of the report at `out` (if any) in a freshly
/// rendered report `md`, which does not measure the overlay itself.
pub fn keep_section(out: &Path, md: String) -> String {
    let old = fs::read_to_string(out).unwrap_or_default();
    match extract(&old) {
        Some((start, end)) if extract(&md).is_none() => {
            format!("{}\n\n{}", md.trim_end(), &old[start..end])
        }
        _ => md,
    }
}

/// Byte range of the overlay section in `text`: from its title to the next
/// level-2 title or the end.
fn extract(text: &str) -> Option<(usize, usize)> {
    let start = text.find(&format!("{TITLE}\n"))?;
    let after = start + TITLE.len();
    let end = text[after..]
        .find("\n## ")
        .map_or(text.len(), |i| after + i + 1);
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_replaces_its_old_self_and_keeps_the_rest() {
        let report = format!("# R\n\n## A\na\n\n{TITLE}\nold\n\n## B\nb\n");
        let (s, e) = extract(&report).expect("found");
        assert_eq!(&report[s..e], format!("{TITLE}\nold\n\n"));
        let dir = std::env::temp_dir().join(format!("leco-ovl-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("R.md");
        fs::write(&out, &report).expect("write");
        splice_into(&out, &format!("{TITLE}\nnew\n\n")).expect("splice");
        let got = fs::read_to_string(&out).expect("read");
        assert_eq!(got, format!("# R\n\n## A\na\n\n{TITLE}\nnew\n\n## B\nb\n"));
        let fresh = keep_section(&out, "# R\n\n## A\nz\n".to_owned());
        assert!(fresh.ends_with(&format!("{TITLE}\nnew\n\n")), "{fresh}");
        let _ = fs::remove_dir_all(&dir);
    }
}
