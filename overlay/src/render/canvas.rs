//! Drawing into a destination buffer: the background, and each row's
//! sprite over it scaled by the row's opacity.

use super::blend::blit_row;
use super::sprite::Sprite;

/// Columns `[x0, x1)` of a destination buffer being drawn.
pub(super) struct Canvas<'a> {
    pub(super) data: &'a mut [u8],
    pub(super) stride: usize,
    pub(super) width: u32,
    pub(super) x0: u32,
    pub(super) x1: u32,
    /// Premultiplied, in the sprites' byte order.
    pub(super) background: [u8; 4],
}

impl Canvas<'_> {
    /// Sets columns `[x0, x1)` of rows `[top, bottom)` to the background.
    pub(super) fn fill(&mut self, top: u32, bottom: u32, x0: u32, x1: u32) {
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
    pub(super) fn row(&mut self, top: u32, t: u32, b: u32, sprite: Option<(&Sprite, u8)>) {
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
