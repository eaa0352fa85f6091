//! The wlr-layer-shell surfaces (smithay-client-toolkit, no C libraries).
//!
//! One layer surface per chosen output (or one where the compositor likes,
//! for the default choice), created and destroyed as outputs come and go.
//! Each is click-through (an empty input region), never takes the keyboard,
//! and is transparent wherever the renderer leaves it so.
//!
//! This module only shows pictures: it keeps per-surface state (configured,
//! waiting for a frame callback, scale, buffers) and draws a
//! [`Frame`](crate::model::Frame) when the event loop in [`crate::app`]
//! asks. Handlers never draw on their own: they flip flags that the loop
//! reads after dispatching, so pacing (frame callbacks, the frame-rate cap)
//! lives in one place.

mod protocols;

use std::time::Instant;

use anyhow::{anyhow, Context as _};
use smithay_client_toolkit::compositor::{
    CompositorHandler, CompositorState, FrameCallbackData, Region,
};
use smithay_client_toolkit::output::{OutputHandler, OutputState};
use smithay_client_toolkit::reexports::protocols::wp::fractional_scale::v1::client::{
    wp_fractional_scale_manager_v1::WpFractionalScaleManagerV1,
    wp_fractional_scale_v1::WpFractionalScaleV1,
};
use smithay_client_toolkit::reexports::protocols::wp::viewporter::client::{
    wp_viewport::WpViewport, wp_viewporter::WpViewporter,
};
use smithay_client_toolkit::registry::{ProvidesRegistryState, RegistryState};
use smithay_client_toolkit::shell::wlr_layer::{
    self, KeyboardInteractivity, LayerShell, LayerShellHandler, LayerSurface, LayerSurfaceConfigure,
};
use smithay_client_toolkit::shell::WaylandSurface;
use smithay_client_toolkit::shm::slot::{Buffer, SlotPool};
use smithay_client_toolkit::shm::{Shm, ShmHandler};
use smithay_client_toolkit::{delegate_registry, registry_handlers};
use wayland_client::backend::ReadEventsGuard;
use wayland_client::globals::{registry_queue_init, GlobalList};
use wayland_client::protocol::{wl_output, wl_shm, wl_surface};
use wayland_client::{Connection, EventQueue, QueueHandle};

use crate::config::{Layer, OutputChoice, Style, SurfaceConfig};
use crate::model::Frame;
use crate::render::{Damage, PixelOrder, Renderer};

use protocols::{FractionalData, NoEvents};

/// The connection to the compositor and everything shown on it.
#[derive(Debug)]
pub struct Wayland {
    conn: Connection,
    queue: EventQueue<State>,
    /// The state handlers work on; the event loop reads its flags.
    pub state: State,
}

/// Why a surface is not drawn right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing new to show.
    Clean,
    /// Waiting for the compositor (first configure, or a frame callback).
    Waiting,
    /// Can be drawn now.
    Ready,
}

impl Wayland {
    /// Connects to the compositor named by `WAYLAND_DISPLAY` and binds what
    /// the overlay needs. Surfaces appear once the outputs are known (see
    /// [`Wayland::roundtrip`]).
    pub fn connect(surface: &SurfaceConfig, style: &Style) -> anyhow::Result<Wayland> {
        let conn = Connection::connect_to_env().context(
            "cannot connect to a Wayland compositor (is WAYLAND_DISPLAY set, and does this \
             session run sway, Hyprland, river or another wlroots-style compositor?)",
        )?;
        let (globals, queue) =
            registry_queue_init::<State>(&conn).context("reading the Wayland globals")?;
        let qh = queue.handle();
        // Scanning the fonts takes a moment and is where a machine without
        // fonts fails: do it once, now, and hand this renderer to the first
        // surface.
        let renderer = Renderer::new(style).context("preparing to draw text")?;
        let state = State::bind(&globals, &qh, surface, style, renderer)?;
        Ok(Wayland { conn, queue, state })
    }

    /// Sends everything and waits until the compositor processed it: used at
    /// start so that outputs (and their names) are known before surfaces
    /// are made.
    pub fn roundtrip(&mut self) -> anyhow::Result<()> {
        self.queue
            .roundtrip(&mut self.state)
            .context("talking to the compositor")?;
        Ok(())
    }

    /// Runs the handlers of events already read.
    pub fn dispatch_pending(&mut self) -> anyhow::Result<()> {
        self.queue
            .dispatch_pending(&mut self.state)
            .context("the Wayland connection failed")?;
        // Surfaces for the default output, or for outputs that appeared,
        // are made here so that handlers stay small.
        self.state.sync_surfaces();
        Ok(())
    }

    /// Sends queued requests. Returns true when the socket is full and the
    /// rest must wait until it is writable.
    pub fn flush(&self) -> anyhow::Result<bool> {
        match self.conn.flush() {
            Ok(()) => Ok(false),
            Err(wayland_client::backend::WaylandError::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                Ok(true)
            }
            Err(e) => Err(anyhow!("the Wayland connection failed: {e}")),
        }
    }

    /// Announces the intention to read; None when events are already
    /// queued (dispatch them first). The guard's fd is what to poll.
    pub fn prepare_read(&self) -> Option<ReadEventsGuard> {
        self.queue.prepare_read()
    }
}

/// Everything the Wayland handlers touch.
#[derive(Debug)]
pub struct State {
    registry: RegistryState,
    outputs: OutputState,
    compositor: CompositorState,
    layer_shell: LayerShell,
    shm: Shm,
    pool: SlotPool,
    fractional: Option<WpFractionalScaleManagerV1>,
    viewporter: Option<WpViewporter>,
    qh: QueueHandle<State>,
    config: SurfaceConfig,
    style: Style,
    surfaces: Vec<OverlaySurface>,
    /// A renderer made at start, waiting for the first surface.
    spare_renderer: Option<Renderer>,
}

/// One layer surface on one output.
#[derive(Debug)]
struct OverlaySurface {
    layer: LayerSurface,
    /// The output it was made for; None for the compositor's choice.
    output: Option<wl_output::WlOutput>,
    fractional: Option<WpFractionalScaleV1>,
    viewport: Option<WpViewport>,
    /// Size in logical pixels, as last configured.
    size: (u32, u32),
    /// Integer buffer scale (wl_surface.set_buffer_scale).
    int_scale: i32,
    /// Preferred fractional scale × 120, when the compositor offers
    /// wp-fractional-scale-v1 (and wp-viewporter to use it).
    scale120: Option<u32>,
    configured: bool,
    frame_pending: bool,
    dirty: bool,
    /// The next commit damages the whole buffer (new size or scale).
    full_damage: bool,
    buffers: Vec<ShmBuffer>,
    renderer: Renderer,
    last_commit: Option<Instant>,
}

impl Drop for OverlaySurface {
    fn drop(&mut self) {
        if let Some(f) = self.fractional.take() {
            f.destroy();
        }
        if let Some(v) = self.viewport.take() {
            v.destroy();
        }
        // The LayerSurface destroys the layer surface and wl_surface itself.
    }
}

/// A wl_shm buffer and what it lacks of the current picture.
///
/// Buffers take turns (one shown while the next is drawn), so a buffer is
/// usually two frames behind: rather than drawing the whole picture into it
/// each time (megabytes per frame on a tall surface), only the rectangles
/// that changed since it was last written are drawn, from the renderer's
/// row state (there is no other copy of the picture to copy from).
#[derive(Debug)]
struct ShmBuffer {
    buffer: Buffer,
    /// None: everything must be drawn.
    stale: Option<Vec<Damage>>,
}

/// Beyond this many stale rectangles a whole redraw is simpler and as cheap.
const MAX_STALE_RECTS: usize = 32;

/// Buffers kept per surface: one shown, one being drawn, one spare for a
/// compositor slow to release.
const MAX_BUFFERS: usize = 3;

impl State {
    fn bind(
        globals: &GlobalList,
        qh: &QueueHandle<State>,
        config: &SurfaceConfig,
        style: &Style,
        renderer: Renderer,
    ) -> anyhow::Result<State> {
        let compositor =
            CompositorState::bind(globals, qh).context("the compositor offers no wl_compositor")?;
        let layer_shell = LayerShell::bind(globals, qh).context(
            "the compositor does not support wlr-layer-shell (sway, Hyprland, river, \
             labwc and other wlroots-based compositors do; GNOME does not)",
        )?;
        let shm = Shm::bind(globals, qh).context("the compositor offers no wl_shm")?;
        let pool = SlotPool::new(
            (config.width.max(1) * config.height.max(1) * 4) as usize,
            &shm,
        )
        .context("creating the shared-memory pool")?;
        // Fractional scaling needs both: the preferred scale, and a viewport
        // to show a buffer of that many pixels at the logical size.
        let fractional = globals.bind(qh, 1..=1, NoEvents).ok();
        let viewporter = globals.bind(qh, 1..=1, NoEvents).ok();
        let (fractional, viewporter) = match (fractional, viewporter) {
            (Some(f), Some(v)) => (Some(f), Some(v)),
            _ => {
                tracing::debug!("no wp-fractional-scale-v1 + wp-viewporter: integer scale only");
                (None, None)
            }
        };
        Ok(State {
            registry: RegistryState::new(globals),
            outputs: OutputState::new(globals, qh),
            compositor,
            layer_shell,
            shm,
            pool,
            fractional,
            viewporter,
            qh: qh.clone(),
            config: config.clone(),
            style: style.clone(),
            surfaces: Vec::new(),
            spare_renderer: Some(renderer),
        })
    }

    /// Applies a new placement and style. Placement changes remake the
    /// surfaces (a layer surface cannot move to another output or, before
    /// protocol version 2, another layer); a style change only remakes the
    /// renderers.
    pub fn reconfigure(&mut self, config: &SurfaceConfig, style: &Style) {
        if !same_placement(&self.config, config) {
            tracing::info!("surface placement changed: remaking the surfaces");
            self.surfaces.clear();
            self.config = config.clone();
        }
        self.style = style.clone();
        for s in &mut self.surfaces {
            s.renderer.set_style(style);
            s.renderer.set_padding(config.padding);
            s.dirty = true;
            s.full_damage = true;
        }
        self.sync_surfaces();
    }

    /// Marks every surface as needing a new picture.
    pub fn mark_dirty(&mut self) {
        for s in &mut self.surfaces {
            s.dirty = true;
        }
    }

    /// How the most ready surface stands, and for those held back only by
    /// the frame-rate cap, the earliest moment one may draw.
    pub fn readiness(&self, now: Instant) -> (Readiness, Option<Instant>) {
        let min_gap = self.min_frame_gap();
        let mut best = Readiness::Clean;
        let mut next = None::<Instant>;
        for s in &self.surfaces {
            if !s.dirty {
                continue;
            }
            if !s.configured || s.frame_pending {
                if best == Readiness::Clean {
                    best = Readiness::Waiting;
                }
                continue;
            }
            match s.last_commit.map(|t| t + min_gap) {
                Some(at) if at > now => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    if best == Readiness::Clean {
                        best = Readiness::Waiting;
                    }
                }
                _ => best = Readiness::Ready,
            }
        }
        (best, next)
    }

    fn min_frame_gap(&self) -> std::time::Duration {
        std::time::Duration::from_micros(1_000_000 / u64::from(self.style.max_fps.max(1)))
    }

    /// Draws `frame` on every surface that is dirty and may draw now.
    /// Returns how many were drawn.
    pub fn draw_ready(&mut self, frame: &Frame, now: Instant) -> usize {
        let min_gap = self.min_frame_gap();
        let mut drawn = 0;
        for i in 0..self.surfaces.len() {
            let s = &self.surfaces[i];
            let ready = s.dirty
                && s.configured
                && !s.frame_pending
                && s.last_commit.is_none_or(|t| t + min_gap <= now);
            if !ready {
                continue;
            }
            match draw(&mut self.surfaces[i], &mut self.pool, &self.qh, frame, now) {
                Ok(true) => drawn += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!("drawing failed: {e:#}"),
            }
        }
        drawn
    }

    /// How many surfaces exist now.
    pub fn surface_count(&self) -> usize {
        self.surfaces.len()
    }

    /// Makes the surfaces the configuration asks for that do not exist yet.
    fn sync_surfaces(&mut self) {
        match self.config.output.clone() {
            OutputChoice::Default => {
                // Without any output the compositor would close it at once.
                if self.surfaces.is_empty() && self.outputs.outputs().next().is_some() {
                    self.add_surface(None);
                }
            }
            OutputChoice::All => {
                // Only outputs the compositor has described (wl_output.done):
                // a new output's global comes first, and a surface made then
                // would not know the output's name or scale.
                let outputs: Vec<_> = self
                    .outputs
                    .outputs()
                    .filter(|o| self.outputs.info(o).is_some())
                    .collect();
                for o in outputs {
                    if !self.surfaces.iter().any(|s| s.output.as_ref() == Some(&o)) {
                        self.add_surface(Some(o));
                    }
                }
            }
            OutputChoice::Named(name) => {
                if self.surfaces.is_empty() {
                    let found = self.outputs.outputs().find(|o| {
                        self.outputs
                            .info(o)
                            .and_then(|i| i.name)
                            .is_some_and(|n| n == name)
                    });
                    match found {
                        Some(o) => self.add_surface(Some(o)),
                        None => tracing::debug!("output {name} is not connected (yet)"),
                    }
                }
            }
        }
    }

    fn add_surface(&mut self, output: Option<wl_output::WlOutput>) {
        let Some(mut renderer) = self.take_renderer() else {
            return;
        };
        renderer.set_padding(self.config.padding);
        let layer = self.create_layer(output.as_ref());
        let qh = &self.qh;
        let fractional = self.fractional.as_ref().map(|m| {
            m.get_fractional_scale(
                layer.wl_surface(),
                qh,
                FractionalData(layer.wl_surface().clone()),
            )
        });
        let viewport = self
            .viewporter
            .as_ref()
            .map(|v| v.get_viewport(layer.wl_surface(), qh, NoEvents));
        let info = output.as_ref().and_then(|o| self.outputs.info(o));
        let int_scale = info.as_ref().map_or(1, |i| i.scale_factor.max(1));
        // The first commit has no buffer: it asks for a configure.
        layer.commit();
        let cfg = &self.config;
        let name = info
            .and_then(|i| i.name)
            .unwrap_or_else(|| "the compositor's choice".to_owned());
        tracing::info!(
            "surface on {name}: {}x{} logical, layer {:?}",
            cfg.width,
            cfg.height,
            cfg.layer
        );
        self.surfaces.push(OverlaySurface {
            layer,
            output,
            fractional,
            viewport,
            size: (cfg.width, cfg.height),
            int_scale,
            scale120: None,
            configured: false,
            frame_pending: false,
            dirty: true,
            full_damage: true,
            buffers: Vec::new(),
            renderer,
            last_commit: None,
        });
    }

    /// The renderer made at start if no surface has it yet, else a new one
    /// (None, said in the log, when it cannot be made).
    fn take_renderer(&mut self) -> Option<Renderer> {
        if let Some(r) = self.spare_renderer.take() {
            return Some(r);
        }
        Renderer::new(&self.style)
            .inspect_err(|e| tracing::error!("cannot draw on a new output: {e}"))
            .ok()
    }

    /// A layer surface placed as configured on `output` (None: where the
    /// compositor likes), click-through and never taking the keyboard.
    fn create_layer(&self, output: Option<&wl_output::WlOutput>) -> LayerSurface {
        let cfg = &self.config;
        let wl_surface = self.compositor.create_surface(&self.qh);
        let layer = self.layer_shell.create_layer_surface(
            &self.qh,
            wl_surface,
            layer_of(cfg.layer),
            Some("leco-overlay"),
            output,
        );
        layer.set_anchor(anchor_of(cfg));
        layer.set_size(cfg.width, cfg.height);
        let m = cfg.margins;
        layer.set_margin(m.top, m.right, m.bottom, m.left);
        layer.set_keyboard_interactivity(KeyboardInteractivity::None);
        // Zero: stay clear of panels' exclusive zones, claim none ourselves.
        layer.set_exclusive_zone(0);
        // An input region with nothing in it: every click goes through.
        match Region::new(&self.compositor) {
            Ok(region) => layer
                .wl_surface()
                .set_input_region(Some(region.wl_region())),
            Err(e) => tracing::warn!("cannot make the surface click-through: {e}"),
        }
        layer
    }

    fn surface_mut(&mut self, wl: &wl_surface::WlSurface) -> Option<&mut OverlaySurface> {
        self.surfaces
            .iter_mut()
            .find(|s| s.layer.wl_surface() == wl)
    }

    /// Called by the fractional-scale handler.
    fn set_scale120(&mut self, wl: &wl_surface::WlSurface, scale120: u32) {
        if let Some(s) = self.surface_mut(wl) {
            if s.scale120 != Some(scale120) {
                tracing::debug!("fractional scale {}", f64::from(scale120) / 120.0);
                s.scale120 = Some(scale120);
                s.dirty = true;
                s.full_damage = true;
            }
        }
    }
}

/// Renders `frame` and commits it. Ok(false) when no buffer was free.
fn draw(
    s: &mut OverlaySurface,
    pool: &mut SlotPool,
    qh: &QueueHandle<State>,
    frame: &Frame,
    now: Instant,
) -> anyhow::Result<bool> {
    let size = s.buffer_size();
    let Some(index) = s.free_buffer(pool, size)? else {
        // All buffers still held by the compositor: their release wakes
        // the loop, which tries again.
        tracing::debug!("no free buffer; waiting for a release");
        return Ok(false);
    };
    s.renderer
        .update(frame, size.width, size.height, size.scale)
        .context("rendering")?;
    let damage = s.renderer.damage();
    if damage.is_empty() && !s.full_damage {
        // The same picture as shown (e.g. a fade step too small to change
        // a pixel's alpha): no commit, no frame callback, no wake-up.
        tracing::trace!("nothing changed: no commit");
        s.dirty = false;
        return Ok(false);
    }
    mark_stale(&mut s.buffers, damage, s.full_damage);
    paint_buffer(&mut s.buffers[index], pool, &s.renderer, size)?;
    s.present(index, size, qh, now)?;
    Ok(true)
}

/// A surface's buffer in pixels, and the scale it is drawn at.
#[derive(Debug, Clone, Copy)]
struct BufferSize {
    width: u32,
    height: u32,
    scale: f32,
}

impl BufferSize {
    fn stride(&self) -> i32 {
        self.width as i32 * 4
    }
}

impl OverlaySurface {
    /// The buffer for the surface's logical size: at the fractional scale
    /// when the compositor gave one (and a viewport shows it), else at
    /// the integer buffer scale.
    fn buffer_size(&self) -> BufferSize {
        let (w, h) = self.size;
        match (self.scale120, &self.viewport) {
            (Some(s120), Some(_)) => {
                let f = s120 as f32 / 120.0;
                BufferSize {
                    width: ((w as f32 * f).round() as u32).max(1),
                    height: ((h as f32 * f).round() as u32).max(1),
                    scale: f,
                }
            }
            _ => {
                let k = self.int_scale.max(1) as u32;
                BufferSize {
                    width: w * k,
                    height: h * k,
                    scale: k as f32,
                }
            }
        }
    }

    /// The index of a buffer of `size` the compositor is not holding,
    /// made if there are fewer than [`MAX_BUFFERS`]; None when all are
    /// held.
    fn free_buffer(
        &mut self,
        pool: &mut SlotPool,
        size: BufferSize,
    ) -> anyhow::Result<Option<usize>> {
        let stride = size.stride();
        // Buffers of another size are of no more use.
        self.buffers
            .retain(|b| b.buffer.height() == size.height as i32 && b.buffer.stride() == stride);
        if let Some(i) = self
            .buffers
            .iter()
            .position(|b| pool.canvas(&b.buffer).is_some())
        {
            return Ok(Some(i));
        }
        if self.buffers.len() >= MAX_BUFFERS {
            return Ok(None);
        }
        let (buffer, _) = pool
            .create_buffer(
                size.width as i32,
                size.height as i32,
                stride,
                wl_shm::Format::Argb8888,
            )
            .context("allocating a shared-memory buffer")?;
        self.buffers.push(ShmBuffer {
            buffer,
            stale: None,
        });
        Ok(Some(self.buffers.len() - 1))
    }

    /// Attaches buffer `index` with the frame's damage, asks for a frame
    /// callback and commits.
    fn present(
        &mut self,
        index: usize,
        size: BufferSize,
        qh: &QueueHandle<State>,
        now: Instant,
    ) -> anyhow::Result<()> {
        let (bw, bh) = (size.width, size.height);
        let surface = self.layer.wl_surface();
        match &self.viewport {
            Some(vp) if self.scale120.is_some() => {
                surface.set_buffer_scale(1);
                vp.set_destination(self.size.0 as i32, self.size.1 as i32);
            }
            _ => surface.set_buffer_scale(self.int_scale.max(1)),
        }
        self.buffers[index]
            .buffer
            .attach_to(surface)
            .map_err(|e| anyhow!("attaching the buffer: {e}"))?;
        let damage = self.renderer.damage();
        if std::mem::take(&mut self.full_damage) {
            surface.damage_buffer(0, 0, bw as i32, bh as i32);
        } else {
            for d in damage {
                surface.damage_buffer(d.x as i32, d.y as i32, d.width as i32, d.height as i32);
            }
        }
        tracing::trace!(
            "commit {bw}x{bh} at scale {}: {} damaged rectangles",
            size.scale,
            damage.len()
        );
        surface.frame(qh, FrameCallbackData(surface.clone()));
        self.layer.commit();
        self.frame_pending = true;
        self.dirty = false;
        self.last_commit = Some(now);
        Ok(())
    }
}

/// Adds `damage` to what each buffer lacks; a buffer lacking too much,
/// or everything (`full`), is drawn whole next time.
fn mark_stale(buffers: &mut [ShmBuffer], damage: &[Damage], full: bool) {
    for b in buffers {
        b.stale = match b.stale.take() {
            Some(mut rects) if !full && rects.len() + damage.len() <= MAX_STALE_RECTS => {
                rects.extend_from_slice(damage);
                Some(rects)
            }
            _ => None,
        };
    }
}

/// Brings `target` up to the renderer's current picture: what it lacks,
/// or all of it.
fn paint_buffer(
    target: &mut ShmBuffer,
    pool: &mut SlotPool,
    renderer: &Renderer,
    size: BufferSize,
) -> anyhow::Result<()> {
    let canvas = pool
        .canvas(&target.buffer)
        .ok_or_else(|| anyhow!("buffer busy right after checking it was free"))?;
    let whole = Damage {
        x: 0,
        y: 0,
        width: size.width,
        height: size.height,
    };
    let rects = target.stale.replace(Vec::new());
    rects
        .as_deref()
        .unwrap_or(std::slice::from_ref(&whole))
        .iter()
        .try_for_each(|&r| {
            renderer.draw_region(canvas, size.stride() as usize, r, PixelOrder::Bgra)
        })
        .context("drawing into the buffer")?;
    Ok(())
}

fn same_placement(a: &SurfaceConfig, b: &SurfaceConfig) -> bool {
    a.layer == b.layer
        && a.anchor == b.anchor
        && a.margins == b.margins
        && a.width == b.width
        && a.height == b.height
        && a.output == b.output
        && a.padding == b.padding
}

fn layer_of(l: Layer) -> wlr_layer::Layer {
    match l {
        Layer::Background => wlr_layer::Layer::Background,
        Layer::Bottom => wlr_layer::Layer::Bottom,
        Layer::Top => wlr_layer::Layer::Top,
        Layer::Overlay => wlr_layer::Layer::Overlay,
    }
}

fn anchor_of(cfg: &SurfaceConfig) -> wlr_layer::Anchor {
    let a = cfg.anchor;
    let mut out = wlr_layer::Anchor::empty();
    for (on, edge) in [
        (a.top, wlr_layer::Anchor::TOP),
        (a.bottom, wlr_layer::Anchor::BOTTOM),
        (a.left, wlr_layer::Anchor::LEFT),
        (a.right, wlr_layer::Anchor::RIGHT),
    ] {
        if on {
            out |= edge;
        }
    }
    out
}

impl CompositorHandler for State {
    fn scale_factor_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        surface: &wl_surface::WlSurface,
        factor: i32,
    ) {
        if let Some(s) = self.surface_mut(surface) {
            if s.int_scale != factor {
                tracing::debug!("buffer scale {factor}");
                s.int_scale = factor.max(1);
                // With a fractional scale this changes nothing we draw.
                if s.scale120.is_none() {
                    s.dirty = true;
                    s.full_damage = true;
                }
            }
        }
    }

    fn transform_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: wl_output::Transform,
    ) {
        // Text is drawn upright; the compositor rotates the buffer for us.
    }

    fn frame(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        surface: &wl_surface::WlSurface,
        _: u32,
    ) {
        if let Some(s) = self.surface_mut(surface) {
            s.frame_pending = false;
        }
    }

    fn surface_enter(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }

    fn surface_leave(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }
}

impl OutputHandler for State {
    fn output_state(&mut self) -> &mut OutputState {
        &mut self.outputs
    }

    fn new_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {
        // Surfaces for it are made after dispatching (sync_surfaces).
    }

    fn update_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {
        // A name can arrive late (xdg-output); a named choice may match now.
    }

    fn output_destroyed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        output: wl_output::WlOutput,
    ) {
        let before = self.surfaces.len();
        self.surfaces.retain(|s| s.output.as_ref() != Some(&output));
        if self.surfaces.len() != before {
            tracing::info!("an output went away with its surface");
        }
    }
}

impl LayerShellHandler for State {
    fn closed(&mut self, _: &Connection, _: &QueueHandle<Self>, layer: &LayerSurface) {
        // The compositor took it away (its output went, or it is shutting
        // the client's surfaces): forget it; sync_surfaces makes a new one
        // where the configuration still wants one.
        tracing::info!("the compositor closed a surface");
        self.surfaces.retain(|s| &s.layer != layer);
    }

    fn configure(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        layer: &LayerSurface,
        configure: LayerSurfaceConfigure,
        _: u32,
    ) {
        let (cw, ch) = (self.config.width, self.config.height);
        if let Some(s) = self.surfaces.iter_mut().find(|s| &s.layer == layer) {
            // Zero means "your choice": keep the configured size.
            let w = if configure.new_size.0 == 0 {
                cw
            } else {
                configure.new_size.0
            };
            let h = if configure.new_size.1 == 0 {
                ch
            } else {
                configure.new_size.1
            };
            if (w, h) != s.size || !s.configured {
                s.size = (w.max(1), h.max(1));
                s.full_damage = true;
            }
            tracing::debug!("configured: {}x{} logical", s.size.0, s.size.1);
            s.configured = true;
            s.dirty = true;
        }
    }
}

impl ShmHandler for State {
    fn shm_state(&mut self) -> &mut Shm {
        &mut self.shm
    }
}

impl ProvidesRegistryState for State {
    fn registry(&mut self) -> &mut RegistryState {
        &mut self.registry
    }
    registry_handlers![OutputState];
}

delegate_registry!(State);
smithay_client_toolkit::delegate_dispatch2!(State);
