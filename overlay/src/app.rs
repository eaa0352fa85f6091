//! The running overlay: bus client, model, renderer and surface in one
//! event loop.
//!
//! One thread owns the Wayland connection, the line model and the
//! surfaces, and sleeps in `poll(2)` on three descriptors: the Wayland
//! socket, the wake-up socket ([`wake`]) through which the bus thread and
//! the configuration's reader ([`reload`]) announce news, and an inotify on
//! the configuration's directory ([`watch`]). Reading the configuration
//! again happens on a thread of its own, so a slow or strange file never
//! stops the drawing. Its timeout is the earliest of:
//! the next fade step the model announced ([`Frame::next_change_us`]), the
//! end of a frame-rate gap, a pending config reload (edits are debounced)
//! and the end of a temporary status message. With nothing fading and
//! nothing arriving, the timeout is infinite: no wake-ups at all.
//!
//! A change (bus event, reload, fade step) marks the surfaces dirty; a
//! dirty surface is drawn once the compositor has configured it, its last
//! frame callback has come, and the `max-fps` gap has passed.

pub(crate) mod glue;
pub mod reload;
pub mod wake;
pub mod watch;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use wayland_client::backend::ReadEventsGuard;

use crate::client::{BusAddress, BusClient, BusEvent, BusStatus};
use crate::config::OverlayConfig;
use crate::model::Frame;
use crate::surface::{Readiness, Wayland};
use glue::LineModel;
use reload::{Outcome, Reloader};
use watch::ConfigWatch;

/// How the overlay was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file (`-c`), else the usual places.
    pub config: Option<PathBuf>,
    /// Which bus to find the service on.
    pub bus: BusAddress,
    /// Log the lines as they are drawn.
    pub debug: bool,
}

/// Pause after the last change to the configuration file before reading
/// it: editors write in several steps.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(150);
/// How long a reload error stays in the status line.
const CONFIG_STATUS_TIME: Duration = Duration::from_secs(10);

/// The configuration file to use and whether it was named explicitly.
fn config_path(opts: &Options) -> Option<PathBuf> {
    opts.config.clone().or_else(glue::locate_config)
}

/// Reads the configuration the overlay starts with: the named or located
/// file, else the built-in defaults.
pub fn initial_config(opts: &Options) -> anyhow::Result<(OverlayConfig, Option<PathBuf>)> {
    match config_path(opts) {
        Some(path) => Ok((glue::load_config(&path)?, Some(path))),
        None => Ok((glue::default_config(), None)),
    }
}

/// `--check-config`: the report to print, or the error (with
/// `FILE:LINE:COLUMN`).
pub fn check_config(opts: &Options) -> anyhow::Result<String> {
    match config_path(opts) {
        Some(path) => Ok(crate::config::check_config(&path)?),
        None => Ok(format!(
            "no configuration file: built-in defaults\n{}",
            crate::config::summary(&glue::default_config())
        )),
    }
}

/// `--rx-test LINE`: what the rules do to `line`, as text to print.
pub fn rx_test(config: &OverlayConfig, line: &str) -> anyhow::Result<String> {
    glue::rx_test(config, line)
}

/// Runs the overlay until the compositor goes away or a fatal error.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let (config, path) = initial_config(&opts)?;
    match &path {
        Some(p) => tracing::info!("configuration {}", p.display()),
        None => tracing::info!("no configuration file: built-in defaults"),
    }
    let (waker, mut wake_rx) = wake::pair().context("creating the wake-up socket")?;
    let mut wl = Wayland::connect(&config.surface, &config.style)?;
    // Outputs and their names are known after one round trip.
    wl.roundtrip()?;
    wl.dispatch_pending()?;
    let bus =
        BusClient::spawn(opts.bus.clone(), waker.clone()).context("starting the bus thread")?;
    let watch = path.as_deref().and_then(watch_config);
    let reloader = watch.as_ref().map(|w| Reloader::new(w.path(), waker));
    let mut app = App::new(config, opts.debug, reloader);

    loop {
        wl.dispatch_pending()?;
        let now = Instant::now();
        let now_us = realtime_us();
        app.run_timers(now, now_us, &mut wl);
        app.take_bus_news(&bus, &mut wl);
        app.take_reload(&mut wl);
        let cap_until = app.draw(&mut wl, now, now_us);

        // Sleep until something happens.
        let want_write = wl.flush()?;
        let deadline = app.deadline(now, now_us, cap_until);
        let Some(guard) = wl.prepare_read() else {
            // Events arrived while we worked: dispatch them first.
            continue;
        };
        let timeout = deadline.map_or(PollTimeout::NONE, |d| timeout_ms(d, Instant::now()));
        let ready = wait(&guard, want_write, &wake_rx, watch.as_ref(), timeout)?;
        if ready.wayland {
            read_wayland(guard)?;
        } else {
            drop(guard);
        }
        if ready.wake {
            wake_rx.drain();
        }
        if ready.watch && watch.as_ref().is_some_and(|w| w.changed()) {
            tracing::debug!("the configuration file changed");
            app.reload_due = Some(Instant::now() + RELOAD_DEBOUNCE);
        }
    }
}

/// An inotify watch on the configuration file, or None (with a warning)
/// when one cannot be had: the overlay then runs without reloading.
fn watch_config(path: &std::path::Path) -> Option<ConfigWatch> {
    match ConfigWatch::new(path) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("not watching {} for changes: {e}", path.display());
            None
        }
    }
}

/// Which of the loop's descriptors `poll(2)` found ready.
#[derive(Debug, Clone, Copy)]
struct Ready {
    wayland: bool,
    wake: bool,
    watch: bool,
}

/// Sleeps in `poll(2)` until the compositor, the bus thread or the
/// configuration's directory has something, or `timeout` passes.
fn wait(
    guard: &ReadEventsGuard,
    want_write: bool,
    wake_rx: &wake::WakeReceiver,
    watch: Option<&ConfigWatch>,
    timeout: PollTimeout,
) -> anyhow::Result<Ready> {
    let mut wl_flags = PollFlags::POLLIN;
    if want_write {
        wl_flags |= PollFlags::POLLOUT;
    }
    let mut fds = vec![
        PollFd::new(guard.connection_fd(), wl_flags),
        PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN),
    ];
    if let Some(w) = watch {
        fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e).context("poll"),
    }
    let ready = |i: usize| {
        fds.get(i)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty())
    };
    Ok(Ready {
        wayland: ready(0),
        wake: ready(1),
        watch: ready(2),
    })
}

/// Reads the compositor's events `poll(2)` announced (they are
/// dispatched at the top of the loop).
fn read_wayland(guard: ReadEventsGuard) -> anyhow::Result<()> {
    match guard.read() {
        Ok(_) => Ok(()),
        Err(wayland_client::backend::WaylandError::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("the compositor closed the connection: {e}")),
    }
}

/// The loop's state apart from the Wayland side.
struct App {
    config: OverlayConfig,
    model: LineModel,
    debug: bool,
    bus_status: Option<BusStatus>,
    /// A reload error and when it stops being shown.
    config_status: Option<(String, Instant)>,
    /// The next moment the picture changes by itself (realtime µs).
    fade_due_us: Option<u64>,
    reload_due: Option<Instant>,
    /// Reads the configuration again when it changes (none without a file).
    reloader: Option<Reloader>,
    /// The lines last logged with `--debug`, to log only changes.
    last_logged: Vec<(usize, String)>,
}

impl App {
    fn new(config: OverlayConfig, debug: bool, reloader: Option<Reloader>) -> App {
        let mut app = App {
            model: LineModel::new(&config),
            config,
            debug,
            bus_status: None,
            config_status: None,
            fade_due_us: None,
            reload_due: None,
            reloader,
            last_logged: Vec::new(),
        };
        app.update_status();
        app
    }

    /// Acts on the timers that are due at `now`: a fade step, a debounced
    /// reload (started, its outcome comes later), the end of a reload
    /// error's time in the status line.
    fn run_timers(&mut self, now: Instant, now_us: u64, wl: &mut Wayland) {
        if self.fade_due_us.is_some_and(|t| t <= now_us) {
            self.fade_due_us = None;
            wl.state.mark_dirty();
        }
        if self.reload_due.is_some_and(|t| t <= now) {
            self.reload_due = None;
            if let Some(reloader) = &mut self.reloader {
                tracing::debug!("reading {} again", reloader.path().display());
                reloader.request();
            }
        }
        if self.config_status.as_ref().is_some_and(|(_, t)| *t <= now) {
            self.config_status = None;
            self.update_status();
            wl.state.mark_dirty();
        }
    }

    /// Applies what the bus thread sent since the last time.
    fn take_bus_news(&mut self, bus: &BusClient, wl: &mut Wayland) {
        let mut news = false;
        while let Some(ev) = bus.try_next() {
            news = true;
            self.on_bus(ev);
        }
        if news {
            wl.state.mark_dirty();
        }
    }

    /// Draws the frame of `now_us` on the surfaces that may draw now.
    /// Returns the earliest moment a surface held back by the frame-rate
    /// cap may draw.
    fn draw(&mut self, wl: &mut Wayland, now: Instant, now_us: u64) -> Option<Instant> {
        let (readiness, cap_until) = wl.state.readiness(now);
        if readiness == Readiness::Ready {
            let frame = self.model.frame(now_us);
            self.log_lines(&frame);
            wl.state.draw_ready(&frame, now);
            self.fade_due_us = frame.next_change_us;
        }
        cap_until
    }

    /// When the loop must wake up by itself: the earliest of the next fade
    /// step, the frame-rate cap, a pending reload and the end of a reload
    /// error's time; None to sleep until something arrives.
    fn deadline(&self, now: Instant, now_us: u64, cap_until: Option<Instant>) -> Option<Instant> {
        [
            self.fade_due_us
                .map(|t| now + Duration::from_micros(t.saturating_sub(now_us))),
            cap_until,
            self.reload_due,
            self.config_status.as_ref().map(|(_, t)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_bus(&mut self, ev: BusEvent) {
        match ev {
            BusEvent::Snapshot(conns) => {
                for c in &conns {
                    self.model.apply(snapshot_kind(c), c);
                }
            }
            BusEvent::Event(kind, c) => self.model.apply(kind, &c),
            BusEvent::Status(s) => {
                self.bus_status = Some(s);
                self.update_status();
            }
        }
    }

    /// The status line: a config error while it is fresh, else the bus's.
    fn update_status(&mut self) {
        let status = self
            .config_status
            .as_ref()
            .map(|(m, _)| m.clone())
            .or_else(|| self.bus_status.as_ref().and_then(BusStatus::message));
        self.model.set_status(status);
    }

    /// Applies the configuration read again, once the reader has it.
    fn take_reload(&mut self, wl: &mut Wayland) {
        let Some(reloader) = &mut self.reloader else {
            return;
        };
        let Some(outcome) = reloader.take() else {
            return;
        };
        let path = reloader.path().to_path_buf();
        self.reload(&path, outcome, wl);
        wl.state.mark_dirty();
    }

    /// Applies the `outcome` of reading `path` again. A broken edit keeps
    /// the running configuration and says why, in the log and for a while
    /// in the status line.
    fn reload(&mut self, path: &std::path::Path, outcome: Outcome, wl: &mut Wayland) {
        match outcome {
            Ok(config) => {
                tracing::info!("configuration reloaded from {}", path.display());
                self.model.reconfigure(&config);
                wl.state.reconfigure(&config.surface, &config.style);
                self.config = config;
                if self.config_status.take().is_some() {
                    self.update_status();
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::warn!("configuration not reloaded, keeping the previous one: {why}");
                // The status line is narrow: the file's name says enough.
                let short = match path.file_name() {
                    Some(name) => why.replace(&path.display().to_string(), &name.to_string_lossy()),
                    None => why.clone(),
                };
                self.config_status = Some((
                    format!("config not reloaded: {short}"),
                    Instant::now() + CONFIG_STATUS_TIME,
                ));
                self.update_status();
            }
        }
    }

    fn log_lines(&mut self, frame: &Frame) {
        if !self.debug {
            return;
        }
        let now: Vec<(usize, String)> = frame
            .lines
            .iter()
            .map(|l| (l.row, l.text.clone()))
            .collect();
        if now != self.last_logged {
            if now.is_empty() {
                tracing::info!(target: "leco_overlay::lines", "(no lines)");
            }
            for (row, text) in &now {
                tracing::info!(target: "leco_overlay::lines", "row {row}: {text}");
            }
            self.last_logged = now;
        }
    }
}

/// The kind a snapshot entry stands for: a snapshot holds live connections
/// and ended ones from the backlog.
fn snapshot_kind(c: &leco_proto::Connection) -> leco_proto::EventKind {
    use leco_proto::EventKind;
    if c.reason.is_some_and(|r| r.is_local_policy()) {
        EventKind::Blocked
    } else if c.error.is_some() || c.reason.is_some() {
        EventKind::Failed
    } else if c.state == "closed" {
        EventKind::Closed
    } else {
        EventKind::New
    }
}

/// Realtime microseconds, the clock of `last_seen_us` and of the model.
fn realtime_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Milliseconds until `deadline`, rounded up so the loop never wakes just
/// before it and spins with a zero timeout.
fn timeout_ms(deadline: Instant, now: Instant) -> PollTimeout {
    let left = deadline.saturating_duration_since(now);
    let ms = left.as_micros().div_ceil(1000);
    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
}
