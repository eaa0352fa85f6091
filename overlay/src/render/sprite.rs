//! Building a line's sprite: the line composited once at full opacity
//! (line background, tag, shadow layers, text, colour glyphs), in the byte
//! order of the buffers it is mostly blitted to.

use std::borrow::Cow;

use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Transform};

use crate::color::Rgba;
use crate::config::Style;
use crate::model::Tone;

use super::blend::{blend_mask, blend_rgba, composite_layers, premultiply, Layer};
use super::byte_order::swap_red_blue;
use super::layout::{px, Layout};
use super::text::{Fonts, LineRaster};

/// The status line's alpha relative to the text colour's.
const STATUS_DIM: f32 = 0.7;

/// How a sprite is drawn besides its text: its tag, its tone, and whether
/// it is the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Look {
    pub(super) tag: Option<u64>,
    pub(super) tone: Tone,
    pub(super) status: bool,
}

/// One line composited at full opacity, ready to blit.
#[derive(Debug)]
pub(super) struct Sprite {
    /// What it shows (the cache is keyed by a hash of these).
    pub(super) text: String,
    pub(super) tag: Option<u64>,
    pub(super) tone: Tone,
    pub(super) status: bool,
    /// Left edge in the buffer.
    pub(super) x: u32,
    pub(super) pixels: Option<SpritePixels>,
    pub(super) last_used: u64,
}

/// A sprite's pixels, premultiplied B, G, R, A: the order of the buffers
/// they mostly go to, so blitting one is a plain (scaled) copy.
#[derive(Debug)]
pub(super) struct SpritePixels {
    pub(super) data: Vec<u8>,
    pub(super) width: u32,
    pub(super) height: u32,
}

impl SpritePixels {
    /// Takes a composited line's pixels, reordered to B, G, R, A.
    fn from_pixmap(pm: Pixmap) -> SpritePixels {
        let (width, height) = (pm.width(), pm.height());
        let mut data = pm.take();
        swap_red_blue(&mut data);
        SpritePixels {
            data,
            width,
            height,
        }
    }
}

/// What building sprites reuses from one line to the next: building one
/// is on the path of every new line, so nothing is allocated per line
/// that can be kept.
#[derive(Debug, Clone, Default)]
pub(super) struct SpriteScratch {
    tag_mask: TagMask,
    /// Per-row coverage of a new line's layers.
    layer_rows: Vec<u8>,
}

impl SpriteScratch {
    /// Composites one line at full opacity: line background, tag, shadow
    /// layers, text, colour glyphs. Its left edge leaves room for shadows
    /// reaching left of the text when the padding allows.
    pub(super) fn build(
        &mut self,
        fonts: &mut Fonts,
        style: &Style,
        layout: &Layout,
        text: &str,
        look: Look,
    ) -> Sprite {
        let Look { tag, tone, status } = look;
        let place = Placement::new(style, layout, tag.is_some(), status);
        let raster = fonts.raster_line(text, place.font_px, place.line_px, place.max_text);
        // Nothing crosses the right padding, shadows included.
        let width = (place.text_x + raster.width + place.trail)
            .min(layout.content_right.saturating_sub(place.x));
        let height = raster.height;
        let mut sprite = Sprite {
            text: text.to_owned(),
            tag,
            tone,
            status,
            x: place.x,
            pixels: None,
            last_used: 0,
        };
        let Some(mut pm) = Pixmap::new(width.max(1), height.max(1)) else {
            return sprite;
        };
        if style.line_background.a > 0 && !status {
            fill_solid(&mut pm, premultiply(style.line_background));
        }
        if let Some(hash) = tag {
            self.paint_tag(&mut pm, hash, place.tag_w, height, place.lead);
        }
        self.paint_text(&mut pm, style, &raster, place.text_x, layout.scale, look);
        sprite.pixels = Some(SpritePixels::from_pixmap(pm));
        sprite
    }

    /// The tag's pill, `tag_w` wide at column `x`, in the line's colour.
    fn paint_tag(&mut self, pm: &mut Pixmap, hash: u64, tag_w: u32, height: u32, x: u32) {
        let mask = &mut self.tag_mask;
        if mask.width != tag_w || mask.height != height {
            *mask = TagMask::new(tag_w, height);
        }
        blend_mask(
            pm,
            &mask.coverage,
            mask.width,
            mask.height,
            i64::from(x),
            0,
            premultiply(tag_color(hash)),
        );
    }

    /// The shadow layers and the text at column `text_x`, fused in one
    /// pass, then the colour glyphs over them.
    fn paint_text(
        &mut self,
        pm: &mut Pixmap,
        style: &Style,
        raster: &LineRaster,
        text_x: u32,
        scale: f32,
        look: Look,
    ) {
        let (color, status) = (style.text_color_of(look.tone), look.status);
        let shadow_mask = shadow_coverage(raster);
        let mut layers: Vec<Layer<'_>> = style
            .shadows
            .iter()
            .map(|sh| Layer {
                mask: &shadow_mask,
                x: i64::from(text_x) + (sh.dx * scale).round() as i64,
                y: (sh.dy * scale).round() as i64,
                color: premultiply(dim(sh.color, status)),
            })
            .collect();
        layers.push(Layer {
            mask: &raster.coverage,
            x: i64::from(text_x),
            y: 0,
            color: premultiply(dim(color, status)),
        });
        composite_layers(
            pm,
            &layers,
            raster.width,
            raster.height,
            &mut self.layer_rows,
        );
        if let Some(color) = &raster.color {
            blend_rgba(pm, color, raster.width, raster.height, text_x);
        }
    }
}

/// Where a line's parts go across its sprite, in pixels.
#[derive(Debug, Clone, Copy)]
struct Placement {
    font_px: f32,
    line_px: f32,
    /// The sprite's left edge in the buffer.
    x: u32,
    /// Room before the content, for shadows and the line background.
    lead: u32,
    tag_w: u32,
    /// Where the text starts, from the sprite's left edge.
    text_x: u32,
    /// The widest the text may be.
    max_text: u32,
    /// Room after the text, for shadows and the line background.
    trail: u32,
}

impl Placement {
    fn new(style: &Style, layout: &Layout, tag: bool, status: bool) -> Placement {
        let (font_px, line_px) = if status {
            (layout.status_font_px, layout.status_line_px)
        } else {
            (layout.font_px, layout.line_px)
        };
        let s = layout.scale;
        // How far the shadows reach to the left (-1) or right (1).
        let reach = |side: f32| {
            style
                .shadows
                .iter()
                .map(|sh| (side * sh.dx * s).ceil())
                .fold(0.0f32, f32::max) as u32
        };
        let bg_pad = if style.line_background.a > 0 {
            px(font_px * 0.3)
        } else {
            0
        };
        let lead = reach(-1.0).max(bg_pad).min(layout.content_x);
        let x = layout.content_x - lead;
        let (tag_w, tag_gap) = if tag {
            (layout.tag_w, layout.tag_gap)
        } else {
            (0, 0)
        };
        let text_x = lead + tag_w + tag_gap;
        let max_text = layout
            .content_right
            .saturating_sub(x)
            .saturating_sub(text_x);
        Placement {
            font_px,
            line_px,
            x,
            lead,
            tag_w,
            text_x,
            max_text,
            trail: reach(1.0).max(bg_pad),
        }
    }
}

/// Sets every pixel to one premultiplied colour.
fn fill_solid(pm: &mut Pixmap, rgba: [u8; 4]) {
    for px in pm.data_mut().chunks_exact_mut(4) {
        px.copy_from_slice(&rgba);
    }
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
fn shadow_coverage(raster: &LineRaster) -> Cow<'_, [u8]> {
    match &raster.color {
        None => Cow::Borrowed(&raster.coverage),
        Some(color) => Cow::Owned(
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn hsl_primaries() {
        assert_eq!(hsl_to_rgb(0.0, 1.0, 0.5), [255, 0, 0]);
        assert_eq!(hsl_to_rgb(120.0, 1.0, 0.5), [0, 255, 0]);
        assert_eq!(hsl_to_rgb(240.0, 1.0, 0.5), [0, 0, 255]);
        assert_eq!(hsl_to_rgb(360.0, 0.0, 1.0), [255, 255, 255]);
    }
}
