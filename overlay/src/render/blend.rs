//! Pixel kernels: source-over of tinted coverage masks and of sprites,
//! all in premultiplied bytes with the exact rounding division by 255, so
//! every path (SIMD or scalar, fused or one layer at a time) gives the
//! same bytes.

use tiny_skia::Pixmap;

use crate::color::Rgba;

/// `v / 255` rounded, exact for every product of two bytes.
#[inline]
pub(crate) fn div255(v: u32) -> u32 {
    let v = v + 128;
    (v + (v >> 8)) >> 8
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
pub(super) struct Layer<'a> {
    pub(super) mask: &'a [u8],
    pub(super) x: i64,
    pub(super) y: i64,
    pub(super) color: [u8; 4],
}

/// Source-over of `layers`, in order, into `pm`, all of them in one pass
/// over each pixel row: a new line's shadows and text touch the same
/// pixels, and blending them while the pixels sit in registers halves the
/// memory traffic of a pass per layer. `rows` is scratch space.
pub(super) fn composite_layers(
    pm: &mut Pixmap,
    layers: &[Layer<'_>],
    mw: u32,
    mh: u32,
    rows: &mut Vec<u8>,
) {
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
pub(super) fn blend_rgba(pm: &mut Pixmap, layer: &[u8], lw: u32, lh: u32, ox: u32) {
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
pub(super) fn blit_row(s: &[u8], d: &mut [u8], alpha: u8, clear: bool) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_division_and_premultiplication() {
        for a in 0..=255u32 {
            for b in 0..=255u32 {
                assert_eq!(div255(a * b), ((a * b) as f64 / 255.0).round() as u32);
            }
        }
        assert_eq!(premultiply(Rgba::new(255, 128, 0, 128)), [128, 64, 0, 128]);
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
