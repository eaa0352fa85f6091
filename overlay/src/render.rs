//! Drawing a [`Frame`] with tiny-skia and cosmic-text, straight into
//! wl_shm buffers.
//!
//! Each distinct line is shaped and composited once, at full opacity, into a
//! small premultiplied sprite (line background, tag, shadow layers, text);
//! a frame then only records which sprite and opacity each row shows, and
//! reports the rows that changed. There is no full-size picture: any
//! rectangle of any buffer is drawn from that row state on demand (the
//! background, plus each row's sprite scaled by its opacity), so a buffer
//! several frames behind is brought up to date without a copy of the
//! screen kept in memory. A steady frame draws nothing and reports no
//! damage; a fade step costs one scaled copy per fading row and buffer.

pub(crate) mod text;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Transform};

use crate::color::Rgba;
use crate::config::Style;
use crate::model::Frame;
use text::{Fonts, LineRaster};

/// Largest buffer side we agree to draw, in pixels: far beyond any output,
/// small enough that a bogus configure cannot allocate gigabytes.
const MAX_SIDE: u32 = 16_384;

/// Sprites kept beyond the ones on screen, for lines that come back (a
/// group toggling between texts, a status flapping).
const SPARE_SPRITES: usize = 16;

/// The status line's size relative to ordinary lines: discreet.
const STATUS_SCALE: f32 = 0.85;

/// The status line's alpha relative to the text colour's.
const STATUS_DIM: f32 = 0.7;

/// Why drawing (or converting) failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The font database is empty.
    #[error("no usable font found (install fonts-dejavu-core, or name font files)")]
    NoFonts,
    /// A font file could not be read.
    #[error("cannot load font file {path}: {source}")]
    FontFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The buffer size is zero or absurd.
    #[error("cannot draw a {width}x{height} buffer (each side must be 1..={MAX_SIDE})")]
    Size {
        /// Width asked for, pixels.
        width: u32,
        /// Height asked for, pixels.
        height: u32,
    },
    /// The wl_shm destination is smaller than the pixmap (or region) needs.
    #[error("shm buffer too small: {needed} bytes needed, {got} given")]
    ShmBuffer {
        /// Bytes the copy needs.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

/// A rectangle of the buffer that changed, in buffer pixels (what
/// `wl_surface.damage_buffer` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Damage {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Byte order of the pixels [`Renderer::draw_region`] writes; both are
/// premultiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelOrder {
    /// R, G, B, A: a tiny-skia [`Pixmap`]'s data.
    Rgba,
    /// B, G, R, A: wl_shm `Argb8888` (a little-endian 32-bit word).
    Bgra,
}

/// Draws frames. Holds the fonts (loaded once), the sprite cache and the
/// previous frame, against which damage is computed.
pub struct Renderer {
    fonts: Fonts,
    style: Style,
    padding: u32,
    geometry: Option<Geometry>,
    /// The layout of `geometry`, kept for drawing regions.
    layout: Option<Layout>,
    /// What each row showed after the previous render.
    shown: Vec<Option<RowState>>,
    shown_status: Option<String>,
    sprites: HashMap<u64, Sprite>,
    tag_mask: TagMask,
    /// Per-row coverage of a new line's layers, kept between lines.
    layer_rows: Vec<u8>,
    frame_no: u64,
    damage: Vec<Damage>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("fonts", &self.fonts)
            .field("geometry", &self.geometry)
            .field("sprites", &self.sprites.len())
            .finish_non_exhaustive()
    }
}

/// A row as drawn: redrawn only when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowState {
    text: String,
    alpha: u8,
    key_hash: u64,
}

/// Pixel geometry of one buffer size and scale.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    width: u32,
    height: u32,
    scale: f32,
    /// Whether a status band is reserved at the bottom.
    status: bool,
}

/// Where things go, in buffer pixels, for one [`Geometry`].
#[derive(Debug, Clone, Copy)]
struct Layout {
    pad: f32,
    line_logical: f32,
    scale: f32,
    font_px: f32,
    line_px: f32,
    /// Left edge of the content (tag or text).
    content_x: u32,
    /// Right edge text is clipped to.
    content_right: u32,
    /// Rows end here (status band top, or bottom padding).
    rows_bottom: u32,
    status_top: u32,
    status_font_px: f32,
    status_line_px: f32,
    tag_w: u32,
    tag_gap: u32,
}

impl Layout {
    fn new(style: &Style, padding: u32, g: Geometry) -> Layout {
        let scale = g.scale;
        let font_logical = finite_or(style.font_size, 14.0).clamp(1.0, 512.0);
        let line_logical = finite_or(style.line_height, font_logical * 1.3).clamp(1.0, 1024.0);
        let pad = padding as f32 * scale;
        let pad_px = px(pad).min(g.width / 2);
        let bottom = g.height.saturating_sub(px(pad));
        let status_line_px = line_logical * STATUS_SCALE * scale;
        let status_top = bottom.saturating_sub(status_line_px.ceil() as u32);
        let font_px = font_logical * scale;
        Layout {
            pad,
            line_logical,
            scale,
            font_px,
            line_px: line_logical * scale,
            content_x: pad_px,
            content_right: g.width.saturating_sub(pad_px).max(pad_px),
            rows_bottom: if g.status { status_top } else { bottom },
            status_top,
            status_font_px: font_px * STATUS_SCALE,
            status_line_px,
            tag_w: if style.tag {
                px(font_px * 0.35).max(2)
            } else {
                0
            },
            tag_gap: if style.tag { px(font_px * 0.5) } else { 0 },
        }
    }

    /// Pixel rows `[top, bottom)` of row `k`, clipped to the rows area;
    /// `None` when it is not visible at all.
    fn row_span(&self, k: usize) -> Option<(u32, u32)> {
        let lh = f64::from(self.line_logical);
        let edge = |k: usize| -> f64 {
            ((f64::from(self.pad) / f64::from(self.scale) + k as f64 * lh) * f64::from(self.scale))
                .round()
        };
        let top = edge(k);
        if top >= f64::from(self.rows_bottom) {
            return None;
        }
        let bottom = edge(k.saturating_add(1)).min(f64::from(self.rows_bottom));
        (bottom > top).then_some((top as u32, bottom as u32))
    }
}

/// One line composited at full opacity, ready to blit.
#[derive(Debug)]
struct Sprite {
    /// What it shows (the cache is keyed by a hash of these).
    text: String,
    tag: Option<u64>,
    status: bool,
    /// Left edge in the buffer.
    x: u32,
    pixels: Option<SpritePixels>,
    last_used: u64,
}

/// A sprite's pixels, premultiplied B, G, R, A: the order of the buffers
/// they mostly go to, so blitting one is a plain (scaled) copy.
#[derive(Debug)]
struct SpritePixels {
    data: Vec<u8>,
    width: u32,
    height: u32,
}

impl Renderer {
    /// A renderer drawing with the system's fonts. Scanning them takes a
    /// moment: build one renderer and keep it (see [`Renderer::set_style`]).
    pub fn new(style: &Style) -> Result<Renderer, RenderError> {
        Ok(Renderer::with_fonts(
            Fonts::system(&style.font_family)?,
            style,
        ))
    }

    /// A renderer that knows only the given font files: the same pixels on
    /// every machine, for tests and documentation pictures.
    pub fn with_font_files(style: &Style, files: &[PathBuf]) -> Result<Renderer, RenderError> {
        Ok(Renderer::with_fonts(
            Fonts::from_files(&style.font_family, files)?,
            style,
        ))
    }

    fn with_fonts(fonts: Fonts, style: &Style) -> Renderer {
        let mut r = Renderer {
            fonts,
            style: style.clone(),
            padding: 0,
            geometry: None,
            layout: None,
            shown: Vec::new(),
            shown_status: None,
            sprites: HashMap::new(),
            tag_mask: TagMask::default(),
            layer_rows: Vec::new(),
            frame_no: 0,
            damage: Vec::new(),
        };
        r.set_style(style);
        r
    }

    /// Use a new style (a config reload); the fonts stay loaded. The next
    /// frame is drawn in full.
    pub fn set_style(&mut self, style: &Style) {
        self.fonts.set_family(&style.font_family);
        self.style = style.clone();
        self.invalidate();
    }

    /// Space between the buffer's edges and the text, logical pixels (the
    /// surface's `padding`). The next frame is drawn in full.
    pub fn set_padding(&mut self, padding: u32) {
        if padding != self.padding {
            self.padding = padding;
            self.invalidate();
        }
    }

    /// The font family actually used (the configured one or a fallback).
    pub fn font_family(&self) -> &str {
        self.fonts.family()
    }

    /// Forget the previous frame and the sprites: the next render draws
    /// everything and damages the whole buffer.
    pub fn invalidate(&mut self) {
        self.geometry = None;
        self.layout = None;
        self.sprites.clear();
    }

    /// The whole current picture (as of the last [`Renderer::update`]) in
    /// a new pixmap, for pictures and tests; `None` before the first
    /// update.
    pub fn picture(&self) -> Option<Pixmap> {
        let g = self.geometry?;
        let mut pm = Pixmap::new(g.width, g.height)?;
        let whole = Damage {
            x: 0,
            y: 0,
            width: g.width,
            height: g.height,
        };
        self.draw_region(pm.data_mut(), g.width as usize * 4, whole, PixelOrder::Rgba)
            .ok()?;
        Some(pm)
    }

    /// [`Renderer::update`] then [`Renderer::picture`]: one picture of
    /// `frame`, for pictures and tests.
    pub fn render(
        &mut self,
        frame: &Frame,
        width_px: u32,
        height_px: u32,
        scale: f32,
    ) -> Result<Pixmap, RenderError> {
        self.update(frame, width_px, height_px, scale)?;
        self.picture().ok_or(RenderError::Size {
            width: width_px,
            height: height_px,
        })
    }

    /// Make `frame` the current picture of a `width_px`×`height_px`
    /// buffer at `scale` buffer pixels per logical pixel (1, 2, or
    /// fractional such as 1.5: sizes from the style are logical and text
    /// is shaped at its physical size, so it stays crisp). Nothing is
    /// drawn: new lines get their sprites, and the rectangles that changed
    /// since the previous call are returned (the whole buffer after a
    /// size, scale or style change; nothing for an identical frame) for
    /// [`Renderer::draw_region`] to draw.
    pub fn update(
        &mut self,
        frame: &Frame,
        width_px: u32,
        height_px: u32,
        scale: f32,
    ) -> Result<&[Damage], RenderError> {
        if !(1..=MAX_SIDE).contains(&width_px) || !(1..=MAX_SIDE).contains(&height_px) {
            return Err(RenderError::Size {
                width: width_px,
                height: height_px,
            });
        }
        let scale = if scale.is_finite() && scale > 0.0 {
            scale.clamp(0.25, 16.0)
        } else {
            1.0
        };
        self.frame_no += 1;
        self.damage.clear();
        let geometry = Geometry {
            width: width_px,
            height: height_px,
            scale,
            status: frame.status.is_some(),
        };
        let layout = Layout::new(&self.style, self.padding, geometry);
        let full = self.geometry != Some(geometry);
        if full {
            if self
                .geometry
                .is_some_and(|g| g.scale != scale || g.width != width_px)
            {
                // Sprites hold pixels for one scale and width.
                self.sprites.clear();
            }
            self.geometry = Some(geometry);
            self.shown.clear();
            self.shown_status = None;
            self.damage.push(Damage {
                x: 0,
                y: 0,
                width: width_px,
                height: height_px,
            });
        }
        self.layout = Some(layout);

        let wanted = self.wanted_rows(frame, &layout);
        let rows = wanted.len().max(self.shown.len());
        for k in 0..rows {
            let new = wanted.get(k).and_then(Option::as_ref);
            let old = self.shown.get(k).and_then(Option::as_ref);
            if !full && new == old {
                if let Some(state) = new {
                    self.touch_sprite(state, false);
                }
                continue;
            }
            let Some((top, bottom)) = layout.row_span(k) else {
                continue;
            };
            if !full {
                push_damage(&mut self.damage, width_px, top, bottom);
            }
            if let Some(state) = new {
                self.ensure_sprite(&layout, state, false);
            }
        }
        self.shown = wanted;

        if full || frame.status != self.shown_status {
            if let Some(status) = &frame.status {
                let (top, bottom) = status_span(&layout, height_px);
                if !full {
                    push_damage(&mut self.damage, width_px, top, bottom);
                }
                self.ensure_sprite(&layout, &status_state(status), true);
            }
            self.shown_status = frame.status.clone();
        } else if let Some(status) = &frame.status {
            self.touch_sprite(&status_state(status), true);
        }

        self.evict();
        Ok(&self.damage)
    }

    /// What the last [`Renderer::update`] returned.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Draws `region` of the current picture (as of the last
    /// [`Renderer::update`]) into `dst`, a buffer of the updated size with
    /// `stride` bytes per row, in `order`; the rest of `dst` is left
    /// alone. The region is clipped to the buffer. Before the first update
    /// (or after [`Renderer::invalidate`]) nothing is drawn.
    pub fn draw_region(
        &self,
        dst: &mut [u8],
        stride: usize,
        region: Damage,
        order: PixelOrder,
    ) -> Result<(), RenderError> {
        let (Some(g), Some(layout)) = (self.geometry, self.layout) else {
            return Ok(());
        };
        let x0 = region.x.min(g.width);
        let x1 = region.x.saturating_add(region.width).min(g.width);
        let y0 = region.y.min(g.height);
        let y1 = region.y.saturating_add(region.height).min(g.height);
        if x1 <= x0 || y1 <= y0 {
            return Ok(());
        }
        let needed = (y1 as usize - 1) * stride + x1 as usize * 4;
        if stride < g.width as usize * 4 || dst.len() < needed {
            return Err(RenderError::ShmBuffer {
                needed,
                got: dst.len(),
            });
        }
        let [r, gr, b, a] = premultiply(self.style.background);
        let mut canvas = Canvas {
            data: dst,
            stride,
            width: g.width,
            x0,
            x1,
            background: [b, gr, r, a],
        };
        // Rows are disjoint and in order, the status band below them; what
        // lies between them is background.
        let mut cursor = y0;
        let rows = self.shown.iter().enumerate().filter_map(|(k, state)| {
            let state = state.as_ref()?;
            let span = layout.row_span(k)?;
            Some((span, self.sprite_for(state, false)))
        });
        let status = self.shown_status.as_ref().map(|text| {
            let state = status_state(text);
            (
                status_span(&layout, g.height),
                self.sprite_for(&state, true),
            )
        });
        for ((top, bottom), sprite) in rows.chain(status) {
            if bottom <= cursor {
                continue;
            }
            if top >= y1 {
                break;
            }
            let (t, b) = (top.max(cursor), bottom.min(y1));
            canvas.fill(cursor, t, x0, x1);
            canvas.row(top, t, b, sprite);
            cursor = b;
        }
        canvas.fill(cursor, y1, x0, x1);
        if order == PixelOrder::Rgba {
            for y in y0 as usize..y1 as usize {
                swap_red_blue(&mut dst[y * stride + x0 as usize * 4..y * stride + x1 as usize * 4]);
            }
        }
        Ok(())
    }

    /// The sprite and opacity a row shows, if it has pixels.
    fn sprite_for(&self, state: &RowState, status: bool) -> Option<(&Sprite, u8)> {
        let (key, _) = self.sprite_key(state, status);
        let sprite = self.sprites.get(&key)?;
        (sprite.text == state.text && sprite.status == status).then_some((sprite, state.alpha))
    }

    /// The frame's lines by row, as they will be drawn: invisible lines
    /// and rows outside the buffer dropped, a duplicated row's last line
    /// kept.
    fn wanted_rows(&self, frame: &Frame, layout: &Layout) -> Vec<Option<RowState>> {
        let mut rows: Vec<Option<RowState>> = Vec::new();
        for line in &frame.lines {
            let alpha = alpha_u8(line.opacity);
            if alpha == 0 || layout.row_span(line.row).is_none() {
                continue;
            }
            if rows.len() <= line.row {
                rows.resize(line.row + 1, None);
            }
            rows[line.row] = Some(RowState {
                text: line.text.clone(),
                alpha,
                key_hash: line.key_hash,
            });
        }
        rows
    }

    fn sprite_key(&self, state: &RowState, status: bool) -> (u64, Option<u64>) {
        let tag = (self.style.tag && !status).then_some(state.key_hash);
        let mut h = DefaultHasher::new();
        state.text.hash(&mut h);
        tag.hash(&mut h);
        status.hash(&mut h);
        (h.finish(), tag)
    }

    /// Marks a sprite still on screen, so eviction keeps it.
    fn touch_sprite(&mut self, state: &RowState, status: bool) {
        let (key, _) = self.sprite_key(state, status);
        if let Some(s) = self.sprites.get_mut(&key) {
            s.last_used = self.frame_no;
        }
    }

    /// Builds the sprite of a row unless the cache has it.
    fn ensure_sprite(&mut self, layout: &Layout, state: &RowState, status: bool) {
        let (key, tag) = self.sprite_key(state, status);
        let fresh = match self.sprites.get(&key) {
            Some(s) => s.text != state.text || s.tag != tag || s.status != status,
            None => true,
        };
        if fresh {
            let mut sprite = build_sprite(
                &mut self.fonts,
                &mut self.tag_mask,
                &mut self.layer_rows,
                &self.style,
                layout,
                &state.text,
                tag,
                status,
            );
            sprite.last_used = self.frame_no;
            self.sprites.insert(key, sprite);
        } else if let Some(s) = self.sprites.get_mut(&key) {
            s.last_used = self.frame_no;
        }
    }

    /// Keeps the sprite cache to what is on screen plus a few spares,
    /// dropping the least recently drawn first: a sprite is a full row of
    /// pixels, so under churn (traffic counters changing every line's
    /// text) an unbounded or lazily trimmed cache is most of the memory.
    fn evict(&mut self) {
        let on_screen = self.shown.iter().filter(|r| r.is_some()).count() + 1;
        let limit = on_screen + SPARE_SPRITES;
        if self.sprites.len() <= limit {
            return;
        }
        let mut ages: Vec<(u64, u64)> = self
            .sprites
            .iter()
            .map(|(&key, s)| (s.last_used, key))
            .collect();
        ages.sort_unstable();
        let excess = self.sprites.len() - limit;
        for &(_, key) in ages.iter().take(excess) {
            self.sprites.remove(&key);
        }
    }
}

/// Composites one line at full opacity: line background, tag, shadow
/// layers, text, colour glyphs. Its left edge leaves room for shadows
/// reaching left of the text when the padding allows.
#[allow(clippy::too_many_arguments)]
fn build_sprite(
    fonts: &mut Fonts,
    tag_mask: &mut TagMask,
    layer_rows: &mut Vec<u8>,
    style: &Style,
    layout: &Layout,
    text: &str,
    tag: Option<u64>,
    status: bool,
) -> Sprite {
    let (font_px, line_px) = if status {
        (layout.status_font_px, layout.status_line_px)
    } else {
        (layout.font_px, layout.line_px)
    };
    let s = layout.scale;
    let left_reach = style
        .shadows
        .iter()
        .map(|sh| (-sh.dx * s).ceil())
        .fold(0.0f32, f32::max) as u32;
    let right_reach = style
        .shadows
        .iter()
        .map(|sh| (sh.dx * s).ceil())
        .fold(0.0f32, f32::max) as u32;
    let bg_pad = if style.line_background.a > 0 {
        px(font_px * 0.3)
    } else {
        0
    };
    let lead = left_reach.max(bg_pad).min(layout.content_x);
    let x = layout.content_x - lead;
    let (tag_w, tag_gap) = if tag.is_some() {
        (layout.tag_w, layout.tag_gap)
    } else {
        (0, 0)
    };
    let text_x = lead + tag_w + tag_gap;
    let max_text = layout
        .content_right
        .saturating_sub(x)
        .saturating_sub(text_x);
    let raster = fonts.raster_line(text, font_px, line_px, max_text);
    // Nothing crosses the right padding, shadows included.
    let width = (text_x + raster.width + right_reach.max(bg_pad))
        .min(layout.content_right.saturating_sub(x));
    let height = raster.height;
    let mut sprite = Sprite {
        text: text.to_owned(),
        tag,
        status,
        x,
        pixels: None,
        last_used: 0,
    };
    let Some(mut pm) = Pixmap::new(width.max(1), height.max(1)) else {
        return sprite;
    };

    if style.line_background.a > 0 && !status {
        let [r, g, b, a] = premultiply(style.line_background);
        for px in pm.data_mut().chunks_exact_mut(4) {
            px.copy_from_slice(&[r, g, b, a]);
        }
    }
    if let Some(hash) = tag {
        if tag_mask.width != tag_w || tag_mask.height != height {
            *tag_mask = TagMask::new(tag_w, height);
        }
        blend_mask(
            &mut pm,
            &tag_mask.coverage,
            tag_mask.width,
            tag_mask.height,
            i64::from(lead),
            0,
            premultiply(tag_color(hash)),
        );
    }
    let shadow_mask = shadow_coverage(&raster);
    let mut layers: Vec<Layer<'_>> = style
        .shadows
        .iter()
        .map(|sh| Layer {
            mask: &shadow_mask,
            x: i64::from(text_x) + (sh.dx * s).round() as i64,
            y: (sh.dy * s).round() as i64,
            color: premultiply(dim(sh.color, status)),
        })
        .collect();
    layers.push(Layer {
        mask: &raster.coverage,
        x: i64::from(text_x),
        y: 0,
        color: premultiply(dim(style.text_color, status)),
    });
    composite_layers(&mut pm, &layers, raster.width, raster.height, layer_rows);
    if let Some(color) = &raster.color {
        blend_rgba(&mut pm, color, raster.width, raster.height, text_x);
    }
    let (width, height) = (pm.width(), pm.height());
    let mut data = pm.take();
    swap_red_blue(&mut data);
    sprite.pixels = Some(SpritePixels {
        data,
        width,
        height,
    });
    sprite
}

/// The row state of a status line.
fn status_state(text: &str) -> RowState {
    RowState {
        text: text.to_owned(),
        alpha: 255,
        key_hash: 0,
    }
}

/// Pixel rows `[top, bottom)` of the status band.
fn status_span(layout: &Layout, height: u32) -> (u32, u32) {
    let top = layout.status_top;
    (top, (top + layout.status_line_px.ceil() as u32).min(height))
}

/// The status line is the text colour, fainter.
fn dim(c: Rgba, status: bool) -> Rgba {
    if status {
        Rgba {
            a: (f32::from(c.a) * STATUS_DIM).round() as u8,
            ..c
        }
    } else {
        c
    }
}

/// What shadows are cast by: outline glyphs and colour glyphs alike.
fn shadow_coverage(raster: &LineRaster) -> std::borrow::Cow<'_, [u8]> {
    match &raster.color {
        None => std::borrow::Cow::Borrowed(&raster.coverage),
        Some(color) => std::borrow::Cow::Owned(
            raster
                .coverage
                .iter()
                .zip(color.chunks_exact(4))
                .map(|(&c, px)| c.max(px[3]))
                .collect(),
        ),
    }
}

/// The tag's shape as coverage: a vertical pill `w` wide and about the
/// x-height tall, centred in a `line_h` box. Made once per geometry and
/// tinted per line (filling a path per line cost more than the text).
#[derive(Debug, Clone, Default)]
struct TagMask {
    width: u32,
    height: u32,
    coverage: Vec<u8>,
}

impl TagMask {
    fn new(w: u32, line_h: u32) -> TagMask {
        let mut mask = TagMask {
            width: w,
            height: line_h,
            coverage: Vec::new(),
        };
        let Some(mut pm) = Pixmap::new(w.max(1), line_h.max(1)) else {
            return mask;
        };
        let h = (line_h as f32 * 0.62).round().max(w as f32);
        let top = ((line_h as f32 - h) / 2.0).round();
        let w = w as f32;
        let r = w / 2.0;
        // A stadium: two half circles (cubic approximations) joined by
        // straight sides.
        const K: f32 = 0.552_284_8;
        let mut pb = PathBuilder::new();
        let (l, rt, t, b) = (0.0, w, top, top + h);
        pb.move_to(l, t + r);
        pb.cubic_to(l, t + r - K * r, l + r - K * r, t, l + r, t);
        pb.cubic_to(rt - r + K * r, t, rt, t + r - K * r, rt, t + r);
        pb.line_to(rt, b - r);
        pb.cubic_to(rt, b - r + K * r, rt - r + K * r, b, rt - r, b);
        pb.cubic_to(l + r - K * r, b, l, b - r + K * r, l, b - r);
        pb.close();
        if let Some(path) = pb.finish() {
            let mut paint = Paint::default();
            paint.set_color_rgba8(255, 255, 255, 255);
            paint.anti_alias = true;
            pm.fill_path(
                &path,
                &paint,
                FillRule::Winding,
                Transform::identity(),
                None,
            );
        }
        mask.coverage = pm.data().chunks_exact(4).map(|px| px[3]).collect();
        mask.width = pm.width();
        mask.height = pm.height();
        mask
    }
}

/// The tag colour of a line: a hue from its key hash at fixed saturation
/// and lightness, so every line gets a distinct but equally legible
/// colour, the same one every time.
pub fn tag_color(key_hash: u64) -> Rgba {
    // Hashes of similar keys may differ in few bits: mix before use so
    // neighbouring keys land on unrelated hues.
    let mut z = key_hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let hue = (z % 360) as f32;
    let [r, g, b] = hsl_to_rgb(hue, 0.65, 0.62);
    Rgba::new(r, g, b, 255)
}

/// HSL (hue in degrees, saturation and lightness 0..=1) to 8-bit sRGB.
fn hsl_to_rgb(h: f32, s: f32, l: f32) -> [u8; 3] {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = (h.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to8 = |v: f32| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [to8(r), to8(g), to8(b)]
}

/// `v / 255` rounded, exact for every product of two bytes.
#[inline]
pub(crate) fn div255(v: u32) -> u32 {
    let v = v + 128;
    (v + (v >> 8)) >> 8
}

/// Opacity 0..=1 as an alpha byte; NaN is invisible.
fn alpha_u8(opacity: f32) -> u8 {
    if opacity.is_nan() {
        return 0;
    }
    (opacity.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Straight colour to premultiplied RGBA bytes.
pub(crate) fn premultiply(c: Rgba) -> [u8; 4] {
    let a = u32::from(c.a);
    [
        div255(u32::from(c.r) * a) as u8,
        div255(u32::from(c.g) * a) as u8,
        div255(u32::from(c.b) * a) as u8,
        c.a,
    ]
}

fn finite_or(v: f32, default: f32) -> f32 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        default
    }
}

/// A non-negative pixel length, rounded.
fn px(v: f32) -> u32 {
    if v.is_finite() && v > 0.0 {
        v.round() as u32
    } else {
        0
    }
}

/// Columns `[x0, x1)` of a destination buffer being drawn.
struct Canvas<'a> {
    data: &'a mut [u8],
    stride: usize,
    width: u32,
    x0: u32,
    x1: u32,
    /// Premultiplied, in the sprites' byte order.
    background: [u8; 4],
}

impl Canvas<'_> {
    /// Sets columns `[x0, x1)` of rows `[top, bottom)` to the background.
    fn fill(&mut self, top: u32, bottom: u32, x0: u32, x1: u32) {
        if x1 <= x0 {
            return;
        }
        let (x0, x1) = (x0 as usize * 4, x1 as usize * 4);
        for y in top as usize..bottom as usize {
            let Some(row) = self
                .data
                .get_mut(y * self.stride + x0..y * self.stride + x1)
            else {
                return;
            };
            if self.background == [0; 4] {
                row.fill(0);
            } else {
                for px in row.chunks_exact_mut(4) {
                    px.copy_from_slice(&self.background);
                }
            }
        }
    }

    /// Draws rows `[t, b)` of a line whose row starts at `top`: the
    /// background, and the sprite (if any) over it scaled by its opacity.
    /// Over a transparent background the blend reduces to a (scaled) copy,
    /// and only the pixels around the sprite need clearing.
    fn row(&mut self, top: u32, t: u32, b: u32, sprite: Option<(&Sprite, u8)>) {
        let (x0, x1) = (self.x0, self.x1);
        let Some((sprite, alpha, sp)) = sprite.and_then(|(s, a)| Some((s, a, s.pixels.as_ref()?)))
        else {
            self.fill(t, b, x0, x1);
            return;
        };
        let sx0 = sprite.x.clamp(x0, x1);
        let sx1 = sprite
            .x
            .saturating_add(sp.width)
            .min(self.width)
            .clamp(sx0, x1);
        let sprite_bottom = top.saturating_add(sp.height).clamp(t, b);
        let clear = self.background == [0; 4];
        if clear {
            self.fill(t, sprite_bottom, x0, sx0);
            self.fill(t, sprite_bottom, sx1, x1);
        } else {
            self.fill(t, sprite_bottom, x0, x1);
        }
        self.fill(sprite_bottom, b, x0, x1);
        let cols = (sx1 - sx0) as usize * 4;
        if cols == 0 {
            return;
        }
        let sw = sp.width as usize * 4;
        let skip = (sx0 - sprite.x) as usize * 4;
        for y in t..sprite_bottom {
            let s_start = (y - top) as usize * sw + skip;
            let d_start = y as usize * self.stride + sx0 as usize * 4;
            let (Some(s), Some(d)) = (
                sp.data.get(s_start..s_start + cols),
                self.data.get_mut(d_start..d_start + cols),
            ) else {
                return;
            };
            blit_row(s, d, alpha, clear);
        }
    }
}

/// Adds full-width damage for rows `[top, bottom)`, merged with the
/// previous rectangle when they touch (fewer, larger damage requests).
fn push_damage(damage: &mut Vec<Damage>, width: u32, top: u32, bottom: u32) {
    if bottom <= top {
        return;
    }
    if let Some(last) = damage.last_mut() {
        if last.x == 0 && last.width == width && last.y + last.height == top {
            last.height += bottom - top;
            return;
        }
    }
    damage.push(Damage {
        x: 0,
        y: top,
        width,
        height: bottom - top,
    });
}

/// Source-over of a solid premultiplied colour through a coverage mask
/// placed at (`ox`, `oy`) in the pixmap, clipped.
pub(crate) fn blend_mask(
    pm: &mut Pixmap,
    mask: &[u8],
    mw: u32,
    mh: u32,
    ox: i64,
    oy: i64,
    color: [u8; 4],
) {
    if color[3] == 0 {
        return;
    }
    let (pw, ph) = (i64::from(pm.width()), i64::from(pm.height()));
    let x0 = ox.max(0);
    let x1 = (ox + i64::from(mw)).min(pw);
    let y0 = oy.max(0);
    let y1 = (oy + i64::from(mh)).min(ph);
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let cols = (x1 - x0) as usize;
    let stride = pw as usize * 4;
    let data = pm.data_mut();
    for y in y0..y1 {
        let m_start = (y - oy) as usize * mw as usize + (x0 - ox) as usize;
        let d_start = y as usize * stride + x0 as usize * 4;
        let (Some(m), Some(d)) = (
            mask.get(m_start..m_start + cols),
            data.get_mut(d_start..d_start + cols * 4),
        ) else {
            return;
        };
        blend_rows(d, m, cols, &[color]);
    }
}

/// One coverage mask tinted with one colour, its top left at (`x`, `y`)
/// in the sprite; the mask is as wide and tall as the line's raster.
struct Layer<'a> {
    mask: &'a [u8],
    x: i64,
    y: i64,
    color: [u8; 4],
}

/// Source-over of `layers`, in order, into `pm`, all of them in one pass
/// over each pixel row: a new line's shadows and text touch the same
/// pixels, and blending them while the pixels sit in registers halves the
/// memory traffic of a pass per layer. `rows` is scratch space.
fn composite_layers(pm: &mut Pixmap, layers: &[Layer<'_>], mw: u32, mh: u32, rows: &mut Vec<u8>) {
    let (pw, ph) = (i64::from(pm.width()), i64::from(pm.height()));
    let layers: Vec<&Layer<'_>> = layers.iter().filter(|l| l.color[3] != 0).collect();
    // Columns any layer reaches; the rest of the row is left alone.
    let x0 = layers.iter().map(|l| l.x.max(0)).min().unwrap_or(0);
    let x1 = layers
        .iter()
        .map(|l| (l.x + i64::from(mw)).min(pw))
        .max()
        .unwrap_or(0);
    if x1 <= x0 {
        return;
    }
    let cols = (x1 - x0) as usize;
    let stride = pw as usize * 4;
    let data = pm.data_mut();
    for y in 0..ph {
        let d_start = y as usize * stride + x0 as usize * 4;
        let out = &mut data[d_start..d_start + cols * 4];
        rows.clear();
        rows.resize(cols * layers.len(), 0);
        let mut colors = [[0u8; 4]; MAX_FUSED];
        let mut used = 0;
        for layer in &layers {
            let my = y - layer.y;
            if !(0..i64::from(mh)).contains(&my) {
                continue;
            }
            // The part of the layer's mask row inside [x0, x1), placed at
            // its column in a zeroed row of the span's width.
            let lx0 = layer.x.max(x0);
            let lx1 = (layer.x + i64::from(mw)).min(x1);
            if lx1 > lx0 {
                let m_start = my as usize * mw as usize + (lx0 - layer.x) as usize;
                let len = (lx1 - lx0) as usize;
                let r_start = used * cols + (lx0 - x0) as usize;
                if let (Some(src), Some(dst)) = (
                    layer.mask.get(m_start..m_start + len),
                    rows.get_mut(r_start..r_start + len),
                ) {
                    dst.copy_from_slice(src);
                }
            }
            colors[used] = layer.color;
            used += 1;
            if used == MAX_FUSED {
                // More layers than one pass takes: flush, start again.
                blend_rows(out, &rows[..used * cols], cols, &colors[..used]);
                rows[..used * cols].fill(0);
                used = 0;
            }
        }
        if used > 0 {
            blend_rows(out, &rows[..used * cols], cols, &colors[..used]);
        }
    }
}

/// Layers blended per pass by [`composite_layers`]; a style with more
/// shadows takes more passes.
const MAX_FUSED: usize = 8;

/// Source-over of solid premultiplied colours through rows of coverage,
/// in order, onto one row of pixels: `covs` holds `colors.len()` rows of
/// `cols` bytes each, `dst` `cols` pixels.
///
/// This is most of the cost of a new line, so on x86-64 it runs four
/// pixels at a time in SSE2 (part of the baseline, no detection needed);
/// groups without coverage (above and below the glyphs, between words)
/// are skipped. The arithmetic is the exact per-pixel formula of the
/// scalar path, so the result does not depend on the path or grouping.
fn blend_rows(dst: &mut [u8], covs: &[u8], cols: usize, colors: &[[u8; 4]]) {
    let cols = cols.min(dst.len() / 4);
    let layers = colors.len().min(covs.len().checked_div(cols).unwrap_or(0));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of every x86-64 CPU (the target's baseline).
    let done = unsafe { sse2::blend_rows(dst, covs, cols, &colors[..layers]) };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for x in done..cols {
        let d = &mut dst[x * 4..x * 4 + 4];
        for (l, c) in colors.iter().enumerate().take(layers) {
            let m = u16::from(covs[l * cols + x]);
            if m == 0 {
                continue;
            }
            let inv = 255 - div255_u16(u16::from(c[3]) * m);
            for i in 0..4 {
                d[i] = (div255_u16(u16::from(c[i]) * m) + div255_u16(u16::from(d[i]) * inv)) as u8;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi16, _mm_cvtsi32_si128, _mm_loadu_si128, _mm_mullo_epi16,
        _mm_packus_epi16, _mm_set1_epi16, _mm_setr_epi16, _mm_setzero_si128, _mm_srli_epi16,
        _mm_storeu_si128, _mm_sub_epi16, _mm_unpackhi_epi8, _mm_unpacklo_epi8,
    };

    /// `v / 255` rounded in every 16-bit lane, exact for byte products.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn div255(v: __m128i) -> __m128i {
        let v = _mm_add_epi16(v, _mm_set1_epi16(128));
        _mm_srli_epi16::<8>(_mm_add_epi16(v, _mm_srli_epi16::<8>(v)))
    }

    /// One layer over two pixels in 16-bit lanes, `cov` holding each
    /// pixel's coverage in its four lanes.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn over(d: __m128i, cov: __m128i, color: __m128i, alpha: __m128i) -> __m128i {
        let inv = _mm_sub_epi16(_mm_set1_epi16(255), div255(_mm_mullo_epi16(alpha, cov)));
        _mm_add_epi16(
            div255(_mm_mullo_epi16(color, cov)),
            div255(_mm_mullo_epi16(d, inv)),
        )
    }

    /// Blends whole groups of four pixels; returns how many pixels it
    /// did (the caller finishes the rest).
    #[target_feature(enable = "sse2")]
    pub(super) fn blend_rows(
        dst: &mut [u8],
        covs: &[u8],
        cols: usize,
        colors: &[[u8; 4]],
    ) -> usize {
        let groups = cols / 4;
        let zero = _mm_setzero_si128();
        let mut paint = [(zero, zero); super::MAX_FUSED];
        for (p, c) in paint.iter_mut().zip(colors) {
            let [r, g, b, a] = c.map(i16::from);
            *p = (_mm_setr_epi16(r, g, b, a, r, g, b, a), _mm_set1_epi16(a));
        }
        let layers = colors.len().min(super::MAX_FUSED);
        for gi in 0..groups {
            let Some(d) = dst.get_mut(gi * 16..gi * 16 + 16) else {
                break;
            };
            let mut lanes: Option<(__m128i, __m128i)> = None;
            for (l, &(color, alpha)) in paint.iter().enumerate().take(layers) {
                let at = l * cols + gi * 4;
                let Some(&[m0, m1, m2, m3]) = covs.get(at..at + 4) else {
                    continue;
                };
                let m = u32::from_ne_bytes([m0, m1, m2, m3]);
                if m == 0 {
                    continue;
                }
                let (lo, hi) = *lanes.get_or_insert_with(|| {
                    // SAFETY: `d` is 16 bytes; unaligned loads are allowed.
                    let px = unsafe { _mm_loadu_si128(d.as_ptr().cast()) };
                    (_mm_unpacklo_epi8(px, zero), _mm_unpackhi_epi8(px, zero))
                });
                // Each coverage byte four times, then widened to lanes.
                let m = _mm_cvtsi32_si128(m as i32);
                let m = _mm_unpacklo_epi8(m, m);
                let m = _mm_unpacklo_epi8(m, m);
                let (mlo, mhi) = (_mm_unpacklo_epi8(m, zero), _mm_unpackhi_epi8(m, zero));
                lanes = Some((over(lo, mlo, color, alpha), over(hi, mhi, color, alpha)));
            }
            if let Some((lo, hi)) = lanes {
                // SAFETY: `d` is 16 bytes; unaligned stores are allowed.
                unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), _mm_packus_epi16(lo, hi)) };
            }
        }
        groups * 4
    }
}

/// [`div255`] in 16 bits: exact for every product of two bytes (the sum
/// stays below 65,536), and twice the lanes per vector.
#[inline(always)]
fn div255_u16(v: u16) -> u16 {
    let v = v + 128;
    (v + (v >> 8)) >> 8
}

/// Source-over of a premultiplied RGBA layer at (`ox`, 0).
fn blend_rgba(pm: &mut Pixmap, layer: &[u8], lw: u32, lh: u32, ox: u32) {
    let (pw, ph) = (pm.width(), pm.height());
    if ox >= pw {
        return;
    }
    let cols = lw.min(pw - ox) as usize;
    let stride = pw as usize * 4;
    let data = pm.data_mut();
    for y in 0..lh.min(ph) as usize {
        let s_start = y * lw as usize * 4;
        let d_start = y * stride + ox as usize * 4;
        let (Some(s), Some(d)) = (
            layer.get(s_start..s_start + cols * 4),
            data.get_mut(d_start..d_start + cols * 4),
        ) else {
            return;
        };
        for (sp, dp) in s.chunks_exact(4).zip(d.chunks_exact_mut(4)) {
            let inv = 255 - u32::from(sp[3]);
            for i in 0..4 {
                dp[i] = (u32::from(sp[i]) + div255(u32::from(dp[i]) * inv)) as u8;
            }
        }
    }
}

/// Source-over of one row of sprite pixels scaled by `alpha`; when the
/// destination is known to be transparent, a (scaled) copy.
fn blit_row(s: &[u8], d: &mut [u8], alpha: u8, clear: bool) {
    let a = u32::from(alpha);
    match (clear, alpha) {
        (true, 255) => d.copy_from_slice(s),
        (true, _) => scale_copy(s, d, alpha),
        (false, _) => {
            for (sp, dp) in s.chunks_exact(4).zip(d.chunks_exact_mut(4)) {
                if sp[3] == 0 {
                    continue;
                }
                let sa = div255(u32::from(sp[3]) * a);
                let inv = 255 - sa;
                for i in 0..4 {
                    let sv = div255(u32::from(sp[i]) * a);
                    dp[i] = (sv + div255(u32::from(dp[i]) * inv)) as u8;
                }
            }
        }
    }
}

/// `dst = src × alpha / 255` byte by byte (a premultiplied pixel scaled
/// by an opacity). In 16-bit lanes over fixed blocks so it vectorizes; the
/// rounding division by 255 is exact in 16 bits for byte products.
#[inline(never)]
fn scale_copy(src: &[u8], dst: &mut [u8], alpha: u8) {
    let a = u16::from(alpha);
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
        let (Ok(s), Ok(d)) = (<&[u8; 16]>::try_from(s), <&mut [u8; 16]>::try_from(d)) else {
            continue;
        };
        for i in 0..16 {
            let t = u16::from(s[i]) * a + 128;
            d[i] = ((t + (t >> 8)) >> 8) as u8;
        }
    }
    let done = src.len().min(dst.len()) / 16 * 16;
    for (dv, &sv) in dst[done..].iter_mut().zip(&src[done..]) {
        let t = u16::from(sv) * a + 128;
        *dv = ((t + (t >> 8)) >> 8) as u8;
    }
}

/// Copies a premultiplied RGBA pixmap into a wl_shm `Argb8888` buffer of
/// the same size and a stride of `width * 4`: also premultiplied, but a
/// little-endian 32-bit word per pixel, so bytes B, G, R, A.
pub fn copy_to_argb8888(pixmap: &Pixmap, dst: &mut [u8]) -> Result<(), RenderError> {
    let src = pixmap.data();
    let got = dst.len();
    let dst = dst.get_mut(..src.len()).ok_or(RenderError::ShmBuffer {
        needed: src.len(),
        got,
    })?;
    swizzle(src, dst);
    Ok(())
}

/// Copies one rectangle of the pixmap (e.g. a [`Damage`]) into a wl_shm
/// `Argb8888` buffer with `stride` bytes per row; the rest of the buffer is
/// left alone. The rectangle is clipped to the pixmap.
pub fn copy_region_to_argb8888(
    pixmap: &Pixmap,
    dst: &mut [u8],
    stride: usize,
    region: Damage,
) -> Result<(), RenderError> {
    let (pw, ph) = (pixmap.width(), pixmap.height());
    let x0 = region.x.min(pw) as usize;
    let x1 = region.x.saturating_add(region.width).min(pw) as usize;
    let y0 = region.y.min(ph) as usize;
    let y1 = region.y.saturating_add(region.height).min(ph) as usize;
    if x1 <= x0 || y1 <= y0 {
        return Ok(());
    }
    let needed = (y1 - 1) * stride + x1 * 4;
    if stride < pw as usize * 4 || dst.len() < needed {
        return Err(RenderError::ShmBuffer {
            needed,
            got: dst.len(),
        });
    }
    let src_stride = pw as usize * 4;
    let src = pixmap.data();
    for y in y0..y1 {
        let s = &src[y * src_stride + x0 * 4..y * src_stride + x1 * 4];
        let d = &mut dst[y * stride + x0 * 4..y * stride + x1 * 4];
        swizzle(s, d);
    }
    Ok(())
}

/// RGBA ⇄ BGRA in place, the same block shape as [`swizzle`] so it
/// vectorizes too.
#[inline(never)]
fn swap_red_blue(px: &mut [u8]) {
    let mut blocks = px.chunks_exact_mut(64);
    for d in &mut blocks {
        let Ok(d) = <&mut [u8; 64]>::try_from(d) else {
            continue;
        };
        for i in 0..16 {
            d.swap(4 * i, 4 * i + 2);
        }
    }
    for d in blocks.into_remainder().chunks_exact_mut(4) {
        d.swap(0, 2);
    }
}

/// RGBA → BGRA. Written as byte moves within fixed 64-byte blocks, the
/// shape the compiler turns into SIMD shuffles (an order of magnitude
/// faster than a per-pixel loop over slices here).
#[inline(never)]
fn swizzle(src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(64).zip(dst.chunks_exact_mut(64)) {
        let (Ok(s), Ok(d)) = (<&[u8; 64]>::try_from(s), <&mut [u8; 64]>::try_from(d)) else {
            continue;
        };
        for i in 0..16 {
            d[4 * i] = s[4 * i + 2];
            d[4 * i + 1] = s[4 * i + 1];
            d[4 * i + 2] = s[4 * i];
            d[4 * i + 3] = s[4 * i + 3];
        }
    }
    let done = src.len().min(dst.len()) / 64 * 64;
    let tail = src[done..]
        .chunks_exact(4)
        .zip(dst[done..].chunks_exact_mut(4));
    for (s, d) in tail {
        d[0] = s[2];
        d[1] = s[1];
        d[2] = s[0];
        d[3] = s[3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixmap(pixels: &[[u8; 4]], w: u32, h: u32) -> Pixmap {
        let data = pixels.iter().flatten().copied().collect();
        Pixmap::from_vec(data, tiny_skia::IntSize::from_wh(w, h).expect("size")).expect("pixmap")
    }

    #[test]
    fn argb8888_is_premultiplied_bgra_bytes() {
        // Premultiplied RGBA in, including translucent pixels: the values
        // must pass through untouched, only reordered.
        let src = [
            [255, 0, 0, 255],
            [0, 128, 0, 128],
            [10, 20, 30, 40],
            [0, 0, 0, 0],
            [1, 2, 3, 3],
        ];
        // 17 pixels: one 64-byte block plus a tail.
        let mut all = Vec::new();
        for i in 0..17 {
            all.push(src[i % src.len()]);
        }
        let p = pixmap(&all, 17, 1);
        let mut dst = vec![0xaa; 17 * 4];
        copy_to_argb8888(&p, &mut dst).expect("sizes match");
        for (i, px) in dst.chunks_exact(4).enumerate() {
            let [r, g, b, a] = src[i % src.len()];
            assert_eq!(px, [b, g, r, a], "pixel {i}");
            // Read as the little-endian word wl_shm means.
            let word = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
            assert_eq!(
                word,
                u32::from(a) << 24 | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b)
            );
        }
        assert!(matches!(
            copy_to_argb8888(&p, &mut [0; 67]),
            Err(RenderError::ShmBuffer {
                needed: 68,
                got: 67
            })
        ));
        // A larger destination is fine: only the first bytes are written.
        let mut big = vec![7u8; 80];
        copy_to_argb8888(&p, &mut big).expect("large enough");
        assert_eq!(&big[68..], &[7; 12]);
    }

    #[test]
    fn region_copy_respects_stride_and_clips() {
        let px = |x: u8, y: u8| [x, y, 0, 200];
        let all: Vec<[u8; 4]> = (0..3).flat_map(|y| (0..4).map(move |x| px(x, y))).collect();
        let p = pixmap(&all, 4, 3);
        let stride = 4 * 4 + 8;
        let mut dst = vec![0u8; stride * 3];
        let region = Damage {
            x: 1,
            y: 1,
            width: 10,
            height: 1,
        };
        copy_region_to_argb8888(&p, &mut dst, stride, region).expect("fits");
        for y in 0..3usize {
            for x in 0..6usize {
                let got = &dst[y * stride + x * 4..y * stride + x * 4 + 4];
                if y == 1 && (1..4).contains(&x) {
                    assert_eq!(got, [0, y as u8, x as u8, 200]);
                } else {
                    assert_eq!(got, [0, 0, 0, 0], "({x},{y}) untouched");
                }
            }
        }
        assert!(copy_region_to_argb8888(&p, &mut dst[..20], stride, region).is_err());
        assert!(copy_region_to_argb8888(&p, &mut dst, 8, region).is_err());
    }

    #[test]
    fn tag_colours_are_fixed_distinct_and_legible() {
        // Pinned: users recognise their lines by colour.
        assert_eq!(tag_color(0), tag_color(0));
        let fixed = [tag_color(0), tag_color(1), tag_color(u64::MAX)];
        assert_eq!(fixed, [tag_color(0), tag_color(1), tag_color(u64::MAX)]);
        let mut hues = std::collections::HashSet::new();
        for k in 0..1000u64 {
            let c = tag_color(k);
            assert_eq!(c.a, 255);
            // Fixed lightness: never near black or white.
            let (max, min) = (c.r.max(c.g).max(c.b), c.r.min(c.g).min(c.b));
            assert!(max >= 200 && (50..=110).contains(&min), "{c} for {k}");
            hues.insert((c.r, c.g, c.b));
        }
        // Consecutive keys spread over the whole hue circle.
        assert!(hues.len() > 300, "{} distinct colours", hues.len());
    }

    #[test]
    fn hsl_primaries_and_exact_division() {
        assert_eq!(hsl_to_rgb(0.0, 1.0, 0.5), [255, 0, 0]);
        assert_eq!(hsl_to_rgb(120.0, 1.0, 0.5), [0, 255, 0]);
        assert_eq!(hsl_to_rgb(240.0, 1.0, 0.5), [0, 0, 255]);
        assert_eq!(hsl_to_rgb(360.0, 0.0, 1.0), [255, 255, 255]);
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                assert_eq!(div255(a * b), ((a * b) as f64 / 255.0).round() as u32);
            }
        }
        assert_eq!(premultiply(Rgba::new(255, 128, 0, 128)), [128, 64, 0, 128]);
        assert_eq!(alpha_u8(f32::NAN), 0);
        assert_eq!(alpha_u8(0.5), 128);
        assert_eq!(alpha_u8(2.0), 255);
    }

    #[test]
    fn fused_layers_match_blending_one_pixel_at_a_time() {
        // Odd widths cover both the grouped path and the pixel tail.
        let colors = [[0, 0, 0, 192], [240, 240, 232, 255], [30, 60, 90, 128]];
        for cols in [1usize, 3, 4, 5, 17, 33] {
            let covs: Vec<u8> = (0..cols * colors.len())
                .map(|i| match i % 7 {
                    0 => 0,
                    1 => 255,
                    _ => (i * 37 % 256) as u8,
                })
                .collect();
            let start: Vec<u8> = (0..cols * 4).map(|i| (i * 11 % 256) as u8).collect();
            let mut got = start.clone();
            blend_rows(&mut got, &covs, cols, &colors);
            let mut want = start;
            for (l, c) in colors.iter().enumerate() {
                for x in 0..cols {
                    let m = u32::from(covs[l * cols + x]);
                    let sa = div255(u32::from(c[3]) * m);
                    for i in 0..4 {
                        let d = &mut want[x * 4 + i];
                        *d = (div255(u32::from(c[i]) * m) + div255(u32::from(*d) * (255 - sa)))
                            as u8;
                    }
                }
            }
            assert_eq!(got, want, "{cols} columns");
        }
    }

    #[test]
    fn a_region_drawn_in_either_order_matches_the_picture() {
        let font = PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf");
        if !font.exists() {
            return;
        }
        let style = Style {
            background: Rgba::new(0x10, 0x20, 0x30, 0xc0),
            ..Style::default()
        };
        let mut r = Renderer::with_font_files(&style, &[font]).expect("font loads");
        r.set_padding(4);
        let frame = Frame {
            lines: (0..3)
                .map(|row| crate::model::DrawLine {
                    row,
                    text: format!("line {row} :: some text"),
                    opacity: 1.0 - row as f32 * 0.3,
                    key_hash: row as u64,
                })
                .collect(),
            status: Some("status".into()),
            ..Frame::default()
        };
        let (w, h) = (160u32, 90u32);
        let picture = r.render(&frame, w, h, 1.0).expect("renders");
        // A region cutting through rows and sprites, into a wider buffer.
        let region = Damage {
            x: 13,
            y: 7,
            width: 101,
            height: 500,
        };
        let stride = w as usize * 4 + 12;
        let mut dst = vec![0xaau8; stride * h as usize];
        r.draw_region(&mut dst, stride, region, PixelOrder::Bgra)
            .expect("fits");
        for y in 0..h as usize {
            for x in 0..w as usize {
                let got = &dst[y * stride + x * 4..y * stride + x * 4 + 4];
                let i = (y * w as usize + x) * 4;
                let [r, g, b, a] = [0, 1, 2, 3].map(|c| picture.data()[i + c]);
                if (13..114).contains(&x) && y >= 7 {
                    assert_eq!(got, [b, g, r, a], "({x},{y})");
                } else {
                    assert_eq!(got, [0xaa; 4], "({x},{y}) untouched");
                }
            }
        }
        assert!(r
            .draw_region(&mut dst[..100], stride, region, PixelOrder::Bgra)
            .is_err());
    }

    #[test]
    fn scaled_copy_matches_the_exact_formula() {
        let src: Vec<u8> = (0..=255u8).chain(0..=40).collect();
        for alpha in [0u8, 1, 77, 128, 254, 255] {
            let mut dst = vec![0u8; src.len()];
            scale_copy(&src, &mut dst, alpha);
            for (s, d) in src.iter().zip(&dst) {
                assert_eq!(u32::from(*d), div255(u32::from(*s) * u32::from(alpha)));
            }
        }
    }
}
