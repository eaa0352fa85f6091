//! From the renderer's pixels to wl_shm's: premultiplied RGBA (tiny-skia)
//! and premultiplied `Argb8888` (a little-endian 32-bit word, so bytes B,
//! G, R, A) differ only in the order of red and blue.

use tiny_skia::Pixmap;

use super::{Damage, RenderError};

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
pub(super) fn swap_red_blue(px: &mut [u8]) {
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
}
