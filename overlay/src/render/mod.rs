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

mod blend;
mod byte_order;
mod cache;
mod canvas;
mod damage;
mod layout;
mod sprite;
pub(crate) mod text;

use std::path::PathBuf;

use tiny_skia::Pixmap;

use crate::config::Style;
use crate::model::Frame;
use cache::SpriteCache;
use canvas::Canvas;
use damage::{push_damage, wanted_rows, RowState};
use layout::{Geometry, Layout};
use text::Fonts;

pub(crate) use blend::{blend_mask, div255, premultiply};
pub use byte_order::{copy_region_to_argb8888, copy_to_argb8888};
pub use sprite::tag_color;

/// Largest buffer side we agree to draw, in pixels: far beyond any output,
/// small enough that a bogus configure cannot allocate gigabytes.
const MAX_SIDE: u32 = 16_384;

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
    sprites: SpriteCache,
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
            sprites: SpriteCache::default(),
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
        let geometry = Geometry::new(width_px, height_px, scale, frame.status.is_some())?;
        self.sprites.next_frame();
        self.damage.clear();
        let layout = Layout::new(&self.style, self.padding, geometry);
        let full = self.set_geometry(geometry);
        self.layout = Some(layout);
        self.update_rows(frame, &layout, geometry, full);
        self.update_status(frame, &layout, geometry, full);
        let on_screen = self.shown.iter().filter(|r| r.is_some()).count() + 1;
        self.sprites.evict(on_screen);
        Ok(&self.damage)
    }

    /// Takes `geometry` for the current picture. True when it differs from
    /// the previous one: everything is then redrawn and the whole buffer
    /// damaged.
    fn set_geometry(&mut self, geometry: Geometry) -> bool {
        if self.geometry == Some(geometry) {
            return false;
        }
        if self
            .geometry
            .is_some_and(|g| g.scale != geometry.scale || g.width != geometry.width)
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
            width: geometry.width,
            height: geometry.height,
        });
        true
    }

    /// Makes the frame's lines the rows shown: damage for each row that
    /// changed (unless `full` damage is already there), a sprite for each
    /// line new on screen.
    fn update_rows(&mut self, frame: &Frame, layout: &Layout, g: Geometry, full: bool) {
        let wanted = wanted_rows(frame, layout);
        let rows = wanted.len().max(self.shown.len());
        for k in 0..rows {
            let new = wanted.get(k).and_then(Option::as_ref);
            let old = self.shown.get(k).and_then(Option::as_ref);
            if !full && new == old {
                if let Some(state) = new {
                    self.sprites.touch(self.style.tag, state, false);
                }
                continue;
            }
            let Some((top, bottom)) = layout.row_span(k) else {
                continue;
            };
            if !full {
                push_damage(&mut self.damage, g.width, top, bottom);
            }
            if let Some(state) = new {
                self.sprites
                    .ensure(&mut self.fonts, &self.style, layout, state, false);
            }
        }
        self.shown = wanted;
    }

    /// The same for the frame's status line, in its band at the bottom.
    fn update_status(&mut self, frame: &Frame, layout: &Layout, g: Geometry, full: bool) {
        if full || frame.status != self.shown_status {
            if let Some(status) = &frame.status {
                let (top, bottom) = layout.status_span(g.height);
                if !full {
                    push_damage(&mut self.damage, g.width, top, bottom);
                }
                let state = RowState::status(status);
                self.sprites
                    .ensure(&mut self.fonts, &self.style, layout, &state, true);
            }
            self.shown_status = frame.status.clone();
        } else if let Some(status) = &frame.status {
            self.sprites
                .touch(self.style.tag, &RowState::status(status), true);
        }
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
            Some((span, self.sprites.get(self.style.tag, state, false)))
        });
        let status = self.shown_status.as_ref().map(|text| {
            let state = RowState::status(text);
            (
                layout.status_span(g.height),
                self.sprites.get(self.style.tag, &state, true),
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
                byte_order::swap_red_blue(
                    &mut dst[y * stride + x0 as usize * 4..y * stride + x1 as usize * 4],
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::Rgba;

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
                    tone: crate::model::Tone::Plain,
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
}
