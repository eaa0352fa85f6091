//! Where things go in a buffer: its pixel geometry, and from it and the
//! style the rows, the status band and the content's edges, in buffer
//! pixels.

use crate::config::Style;

use super::{RenderError, MAX_SIDE};

/// The status line's size relative to ordinary lines: discreet.
const STATUS_SCALE: f32 = 0.85;

/// Pixel geometry of one buffer size and scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Geometry {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) scale: f32,
    /// Whether a status band is reserved at the bottom.
    pub(super) status: bool,
}

impl Geometry {
    /// A `width`×`height` buffer at `scale`, refused when a side is zero
    /// or absurd; an unusable scale means 1, an extreme one is clamped.
    pub(super) fn new(
        width: u32,
        height: u32,
        scale: f32,
        status: bool,
    ) -> Result<Geometry, RenderError> {
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(RenderError::Size { width, height });
        }
        let scale = if scale.is_finite() && scale > 0.0 {
            scale.clamp(0.25, 16.0)
        } else {
            1.0
        };
        Ok(Geometry {
            width,
            height,
            scale,
            status,
        })
    }
}

/// Where things go, in buffer pixels, for one [`Geometry`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pad: f32,
    line_logical: f32,
    pub(super) scale: f32,
    pub(super) font_px: f32,
    pub(super) line_px: f32,
    /// Left edge of the content (tag or text).
    pub(super) content_x: u32,
    /// Right edge text is clipped to.
    pub(super) content_right: u32,
    /// Rows end here (status band top, or bottom padding).
    rows_bottom: u32,
    status_top: u32,
    pub(super) status_font_px: f32,
    pub(super) status_line_px: f32,
    pub(super) tag_w: u32,
    pub(super) tag_gap: u32,
}

impl Layout {
    pub(super) fn new(style: &Style, padding: u32, g: Geometry) -> Layout {
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
    pub(super) fn row_span(&self, k: usize) -> Option<(u32, u32)> {
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

    /// Pixel rows `[top, bottom)` of the status band in a buffer `height`
    /// pixels tall.
    pub(super) fn status_span(&self, height: u32) -> (u32, u32) {
        let top = self.status_top;
        (top, (top + self.status_line_px.ceil() as u32).min(height))
    }
}

fn finite_or(v: f32, default: f32) -> f32 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        default
    }
}

/// A non-negative pixel length, rounded.
pub(super) fn px(v: f32) -> u32 {
    if v.is_finite() && v > 0.0 {
        v.round() as u32
    } else {
        0
    }
}
