//! Fonts and one line of text as pixels: cosmic-text shapes, swash
//! rasterizes, and the glyphs of a line are gathered into one coverage mask
//! (plus a colour layer for emoji) that the renderer tints and composites.

use std::path::PathBuf;

use cosmic_text::fontdb;
use cosmic_text::{
    Attrs, Buffer, CacheKey, Family, FontSystem, Hinting, Metrics, Shaping, SwashCache,
    SwashContent, Wrap,
};

use super::RenderError;

/// Families tried, in order, when the configured one is not installed:
/// what Debian's `fonts-dejavu-core` ships first, then common others.
const FALLBACK_FAMILIES: [&str; 5] = [
    "DejaVu Sans Mono",
    "DejaVu Sans",
    "Noto Sans Mono",
    "Liberation Mono",
    "Noto Sans",
];

/// Rasterized glyph images kept before the cache is dropped: distinct
/// glyphs × subpixel positions of ordinary text stay far below this; hostile
/// text full of distinct code points must not grow memory without bound.
const GLYPH_CACHE_LIMIT: usize = 8192;

/// Lines shaped between two trims of cosmic-text's cache of shaped words,
/// and the trims a word survives unused: overlay lines repeat most words
/// (`::`, user and program names, `/tcp`), so a word shaped once is reused
/// until it has gone unused for 256 to 320 lines, and hostile text full of
/// distinct words cannot grow the cache without bound.
const SHAPE_TRIM_EVERY: u32 = 64;
const SHAPE_TRIM_KEEP: u64 = 4;

/// A font database with a resolved family, a glyph cache and a reusable
/// shaping buffer. Loading the system fonts takes a while, so one of these
/// lives as long as the renderer (or the plot) using it.
pub(crate) struct Fonts {
    system: FontSystem,
    swash: SwashCache,
    family: String,
    buffer: Option<Buffer>,
    glyphs: Vec<(CacheKey, i32, i32)>,
    /// Lines shaped since the shaped-word cache was last trimmed.
    shaped: u32,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fonts")
            .field("family", &self.family)
            .field("faces", &self.system.db().len())
            .finish_non_exhaustive()
    }
}

/// One line of text as pixels, origin at the line box's top left.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineRaster {
    /// Width in pixels (the ink, clipped to the width asked for).
    pub width: u32,
    /// Height in pixels: the line box.
    pub height: u32,
    /// Glyph coverage of outline glyphs, `width * height`, row-major.
    pub coverage: Vec<u8>,
    /// Colour glyphs (emoji), premultiplied RGBA, when the line has any.
    pub color: Option<Vec<u8>>,
}

impl Fonts {
    /// The system's fonts (fontconfig's directories), `family` or the
    /// first fallback that exists.
    pub fn system(family: &str) -> Result<Fonts, RenderError> {
        let mut db = fontdb::Database::new();
        db.load_system_fonts();
        let locale = sys_locale_or_default();
        Fonts::from_db(db, family, locale)
    }

    /// Only the given font files: deterministic output for tests, whatever
    /// the machine has installed.
    pub fn from_files(family: &str, files: &[PathBuf]) -> Result<Fonts, RenderError> {
        let mut db = fontdb::Database::new();
        for file in files {
            db.load_font_file(file).map_err(|e| RenderError::FontFile {
                path: file.clone(),
                source: e,
            })?;
        }
        Fonts::from_db(db, family, "en-US".to_owned())
    }

    fn from_db(
        mut db: fontdb::Database,
        family: &str,
        locale: String,
    ) -> Result<Fonts, RenderError> {
        let resolved = resolve_family(&db, family).ok_or(RenderError::NoFonts)?;
        if resolved != family {
            tracing::warn!(
                configured = family,
                using = %resolved,
                "font family not installed; using a fallback (fonts-dejavu-core provides DejaVu)"
            );
        }
        // cosmic-text's generic families default to fonts Debian lacks;
        // point them at what we draw with so fallback lookups land somewhere.
        db.set_monospace_family(resolved.clone());
        db.set_sans_serif_family(resolved.clone());
        Ok(Fonts {
            system: FontSystem::new_with_locale_and_db(locale, db),
            swash: SwashCache::new(),
            family: resolved,
            buffer: None,
            glyphs: Vec::new(),
            shaped: 0,
        })
    }

    /// The family text is drawn with.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// Draw with `family` from now on (or a fallback, as at construction),
    /// keeping the loaded database: a config reload must not rescan fonts.
    pub fn set_family(&mut self, family: &str) {
        if family.eq_ignore_ascii_case(&self.family) {
            return;
        }
        if let Some(resolved) = resolve_family(self.system.db(), family) {
            if resolved != family {
                tracing::warn!(configured = family, using = %resolved, "font family not installed; using a fallback");
            }
            self.family = resolved;
        }
    }

    /// Shape and rasterize `text` on one line of `line_px` pixels at
    /// `font_px`, clipped to `max_width` pixels. Never panics on odd text:
    /// control characters become U+FFFD and the input is cut to what can
    /// possibly fit, so a 10,000-character line costs no more than a full
    /// row.
    pub fn raster_line(
        &mut self,
        text: &str,
        font_px: f32,
        line_px: f32,
        max_width: u32,
    ) -> LineRaster {
        let font_px = sane(font_px, 1.0, 1024.0);
        let line_px = sane(line_px, 1.0, 2048.0);
        let height = line_px.ceil() as u32;
        let text = clean_text(text, max_width, font_px);
        let ink_right = self.shape(&text, font_px, line_px);
        // One extra pixel for antialiasing past the advance.
        let width = ((ink_right.ceil() as u32).saturating_add(1)).min(max_width);
        let mut out = LineRaster {
            width,
            height,
            coverage: vec![0; width as usize * height as usize],
            color: None,
        };
        if width > 0 {
            self.draw_glyphs(&mut out);
        }
        out
    }

    /// Lays `text` out on one line and keeps its glyphs (cache key and
    /// pixel position) for [`Fonts::draw_glyphs`]; returns where the ink
    /// ends on the right.
    fn shape(&mut self, text: &str, font_px: f32, line_px: f32) -> f32 {
        let metrics = Metrics::new(font_px, line_px);
        let mut buffer = self
            .buffer
            .take()
            .unwrap_or_else(|| Buffer::new_empty(metrics));
        buffer.set_metrics(metrics);
        // Positions snap to whole pixels: we lay out at the physical size.
        buffer.set_hinting(Hinting::Enabled);
        buffer.set_wrap(Wrap::None);
        buffer.set_size(None, Some(line_px));
        let attrs = Attrs::new().family(Family::Name(&self.family));
        buffer.set_text(text, &attrs, Shaping::Advanced, None);
        buffer.shape_until_scroll(&mut self.system, false);
        self.shaped += 1;
        if self.shaped >= SHAPE_TRIM_EVERY {
            self.shaped = 0;
            self.system.shape_run_cache.trim(SHAPE_TRIM_KEEP);
        }

        self.glyphs.clear();
        let mut ink_right = 0.0f32;
        for run in buffer.layout_runs() {
            if run.line_top >= line_px {
                break;
            }
            for glyph in run.glyphs {
                // The run's width is unhinted; snapped advances can end
                // further right, so measure the glyphs themselves.
                ink_right = ink_right.max(glyph.x + glyph.w);
                let physical = glyph.physical((0.0, run.line_y), 1.0);
                self.glyphs
                    .push((physical.cache_key, physical.x, physical.y));
            }
        }
        self.buffer = Some(buffer);
        ink_right
    }

    /// Rasterizes the glyphs [`Fonts::shape`] kept into `out`: outline
    /// glyphs into its coverage, colour glyphs into its colour layer.
    fn draw_glyphs(&mut self, out: &mut LineRaster) {
        let (width, height) = (out.width, out.height);
        if self.swash.image_cache.len() > GLYPH_CACHE_LIMIT {
            self.swash.image_cache.clear();
        }
        for &(key, gx, gy) in &self.glyphs {
            let Some(image) = self.swash.get_image(&mut self.system, key) else {
                continue;
            };
            let left = gx + image.placement.left;
            let top = gy - image.placement.top;
            let (w, h) = (image.placement.width, image.placement.height);
            match image.content {
                SwashContent::Mask => {
                    blit_coverage(out, &image.data, left, top, w, h);
                }
                SwashContent::Color => {
                    let layer = out
                        .color
                        .get_or_insert_with(|| vec![0; width as usize * height as usize * 4]);
                    blit_color(layer, width, height, &image.data, left, top, w, h);
                }
                // We ask swash for alpha masks only; a subpixel image would
                // be a bug upstream, and is skipped rather than misdrawn.
                SwashContent::SubpixelMask => {}
            }
        }
    }
}

/// Adds a glyph's coverage into the line's mask, clipped to it. Overlapping
/// glyphs (combining marks, kerned pairs) saturate instead of wrapping.
fn blit_coverage(out: &mut LineRaster, data: &[u8], left: i32, top: i32, w: u32, h: u32) {
    let Some(clip) = Clip::new(left, top, w, h, out.width, out.height) else {
        return;
    };
    let (ow, gw) = (out.width as usize, w as usize);
    for row in 0..clip.rows {
        let src_start = (clip.src_y + row) * gw + clip.src_x;
        let dst_start = (clip.dst_y + row) * ow + clip.dst_x;
        let (Some(src), Some(dst)) = (
            data.get(src_start..src_start + clip.cols),
            out.coverage.get_mut(dst_start..dst_start + clip.cols),
        ) else {
            return;
        };
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = d.saturating_add(s);
        }
    }
}

/// Composites a colour glyph (straight RGBA from swash) over the colour
/// layer (premultiplied RGBA).
#[allow(clippy::too_many_arguments)]
fn blit_color(
    layer: &mut [u8],
    width: u32,
    height: u32,
    data: &[u8],
    left: i32,
    top: i32,
    w: u32,
    h: u32,
) {
    let Some(clip) = Clip::new(left, top, w, h, width, height) else {
        return;
    };
    let (lw, gw) = (width as usize, w as usize);
    for row in 0..clip.rows {
        let src_start = ((clip.src_y + row) * gw + clip.src_x) * 4;
        let dst_start = ((clip.dst_y + row) * lw + clip.dst_x) * 4;
        let (Some(src), Some(dst)) = (
            data.get(src_start..src_start + clip.cols * 4),
            layer.get_mut(dst_start..dst_start + clip.cols * 4),
        ) else {
            return;
        };
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let a = u32::from(s[3]);
            let inv = 255 - a;
            for c in 0..3 {
                let sc = super::div255(u32::from(s[c]) * a);
                d[c] = (sc + super::div255(u32::from(d[c]) * inv)) as u8;
            }
            d[3] = (a + super::div255(u32::from(d[3]) * inv)) as u8;
        }
    }
}

/// The overlap of a `w`×`h` image at (`left`, `top`) with a `cw`×`ch`
/// canvas, as offsets into both.
struct Clip {
    src_x: usize,
    src_y: usize,
    dst_x: usize,
    dst_y: usize,
    cols: usize,
    rows: usize,
}

impl Clip {
    fn new(left: i32, top: i32, w: u32, h: u32, cw: u32, ch: u32) -> Option<Clip> {
        let (left, top) = (i64::from(left), i64::from(top));
        let x0 = left.max(0);
        let y0 = top.max(0);
        let x1 = (left + i64::from(w)).min(i64::from(cw));
        let y1 = (top + i64::from(h)).min(i64::from(ch));
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        Some(Clip {
            src_x: (x0 - left) as usize,
            src_y: (y0 - top) as usize,
            dst_x: x0 as usize,
            dst_y: y0 as usize,
            cols: (x1 - x0) as usize,
            rows: (y1 - y0) as usize,
        })
    }
}

/// One visual line of drawable text: controls (which cosmic-text would turn
/// into line breaks or tabs) become U+FFFD, and the text is cut to what
/// could fit in `max_width` even if every character were a thin one, so
/// shaping cost is bounded by the row, not by the input.
fn clean_text(text: &str, max_width: u32, font_px: f32) -> String {
    // Narrow glyphs (`i`, `.`) are about a quarter em in proportional
    // fonts; zero-width marks ride on a base character, so allow slack.
    let max_chars = ((max_width as f32 / (font_px * 0.25)) as usize).saturating_mul(2) + 16;
    text.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `v` if it is a usable number, clamped to `lo..=hi`; `lo` otherwise.
fn sane(v: f32, lo: f32, hi: f32) -> f32 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        lo
    }
}

/// `family` if the database has it, else the first installed fallback,
/// else whatever family the first face has; `None` without any font.
fn resolve_family(db: &fontdb::Database, family: &str) -> Option<String> {
    let has = |name: &str| {
        db.faces()
            .any(|f| f.families.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
    };
    if has(family) {
        return Some(family.to_owned());
    }
    FALLBACK_FAMILIES
        .iter()
        .find(|name| has(name))
        .map(|s| (*s).to_owned())
        .or_else(|| {
            db.faces()
                .next()
                .and_then(|f| f.families.first())
                .map(|(n, _)| n.clone())
        })
}

/// The user's locale for fallback font choices, from the environment the
/// way POSIX orders it.
fn sys_locale_or_default() -> String {
    ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty() && v != "C" && v != "POSIX")
        .and_then(|v| v.split(['.', '@']).next().map(|s| s.replace('_', "-")))
        .unwrap_or_else(|| "en-US".to_owned())
}
