//! `--plot-fade-curve`: the configured curve and its points as a PNG, on
//! axes in seconds and opacity, so a user sees what they configured.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tiny_skia::{Color, FillRule, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform};

use crate::color::Rgba;
use crate::config::FadeConfig;
use crate::render::text::Fonts;
use crate::render::{blend_mask, premultiply};

/// Picture size, pixels.
const WIDTH: u32 = 800;
const HEIGHT: u32 = 480;
/// Plot area inside the picture.
const LEFT: f32 = 72.0;
const RIGHT: f32 = 32.0;
const TOP: f32 = 56.0;
const BOTTOM: f32 = 64.0;
/// Curve samples across the plot (more than its width in pixels).
const SAMPLES: usize = 1200;

const FAMILY: &str = "DejaVu Sans";
const INK: Rgba = Rgba::new(0x22, 0x22, 0x22, 0xff);
const MUTED: Rgba = Rgba::new(0x66, 0x66, 0x66, 0xff);
const CURVE: Rgba = Rgba::new(0x1f, 0x6f, 0xb4, 0xff);
const POINT: Rgba = Rgba::new(0xd6, 0x3b, 0x2f, 0xff);

/// Draws `cfg`'s fade curve into `out` (PNG) with the system's fonts.
pub fn plot_fade_curve(cfg: &FadeConfig, out: &Path) -> anyhow::Result<()> {
    let pixmap = fade_curve_pixmap(cfg, &[])?;
    pixmap
        .save_png(out)
        .with_context(|| format!("cannot write {}", out.display()))
}

/// The plot as a pixmap. Labels use `font_files` when given (deterministic
/// pictures for tests), the system's fonts otherwise.
pub fn fade_curve_pixmap(cfg: &FadeConfig, font_files: &[PathBuf]) -> anyhow::Result<Pixmap> {
    let fonts = if font_files.is_empty() {
        Fonts::system(FAMILY)?
    } else {
        Fonts::from_files(FAMILY, font_files)?
    };
    let mut plot = Plot::new(fonts)?;
    let secs = cfg.fade_time.as_secs_f64();
    plot.grid(secs);
    plot.curve(cfg);
    if cfg.linger {
        plot.linger(cfg);
    }
    plot.points(cfg);
    plot.titles(cfg, secs);
    Ok(plot.pm)
}

/// The picture being drawn, and how time (fraction of the fade) and
/// opacity map onto its plot area.
struct Plot {
    fonts: Fonts,
    pm: Pixmap,
    /// The plot area's width and height.
    pw: f32,
    ph: f32,
}

impl Plot {
    fn new(fonts: Fonts) -> anyhow::Result<Plot> {
        let mut pm = Pixmap::new(WIDTH, HEIGHT).context("plot size")?;
        pm.fill(Color::from_rgba8(0xfb, 0xfb, 0xf8, 0xff));
        Ok(Plot {
            fonts,
            pm,
            pw: WIDTH as f32 - LEFT - RIGHT,
            ph: HEIGHT as f32 - TOP - BOTTOM,
        })
    }

    fn to_x(&self, t: f32) -> f32 {
        LEFT + t.clamp(0.0, 1.0) * self.pw
    }

    fn to_y(&self, o: f32) -> f32 {
        TOP + (1.0 - o.clamp(0.0, 1.0)) * self.ph
    }

    /// Grid and ticks: opacity in quarters, time in a round step; then
    /// the axes.
    fn grid(&mut self, secs: f64) {
        let (pw, ph) = (self.pw, self.ph);
        let grid = paint(Rgba::new(0xdd, 0xdd, 0xd8, 0xff));
        let axis = paint(INK);
        for q in 0..=4 {
            let o = q as f32 / 4.0;
            let y = self.to_y(o);
            line(&mut self.pm, LEFT, y, LEFT + pw, y, &grid, 1.0);
            let label = format!("{o:.2}");
            self.text(&label, LEFT - 8.0, y, 13.0, MUTED, Align::Right);
        }
        let step = tick_step(secs);
        let ticks = if secs > 0.0 {
            (secs / step).floor() as usize
        } else {
            0
        };
        for i in 0..=ticks.min(100) {
            let s = i as f64 * step;
            let x = self.to_x((s / secs.max(f64::MIN_POSITIVE)) as f32);
            line(&mut self.pm, x, TOP, x, TOP + ph, &grid, 1.0);
            line(&mut self.pm, x, TOP + ph, x, TOP + ph + 5.0, &axis, 1.0);
            self.text(
                &seconds(s, step),
                x,
                TOP + ph + 16.0,
                13.0,
                MUTED,
                Align::Center,
            );
        }
        line(&mut self.pm, LEFT, TOP, LEFT, TOP + ph, &axis, 1.5);
        line(
            &mut self.pm,
            LEFT,
            TOP + ph,
            LEFT + pw,
            TOP + ph,
            &axis,
            1.5,
        );
    }

    /// The curve, with the area under it lightly filled.
    fn curve(&mut self, cfg: &FadeConfig) {
        let samples: Vec<(f32, f32)> = (0..=SAMPLES)
            .map(|i| {
                let t = i as f32 / SAMPLES as f32;
                (self.to_x(t), self.to_y(cfg.curve.opacity(t)))
            })
            .collect();
        let mut area = PathBuilder::new();
        area.move_to(self.to_x(0.0), self.to_y(0.0));
        for &(x, y) in &samples {
            area.line_to(x, y);
        }
        area.line_to(self.to_x(1.0), self.to_y(0.0));
        area.close();
        if let Some(path) = area.finish() {
            let fill = paint(Rgba { a: 0x30, ..CURVE });
            self.pm
                .fill_path(&path, &fill, FillRule::Winding, Transform::identity(), None);
        }
        let mut curve = PathBuilder::new();
        for (i, &(x, y)) in samples.iter().enumerate() {
            if i == 0 {
                curve.move_to(x, y);
            } else {
                curve.line_to(x, y);
            }
        }
        if let Some(path) = curve.finish() {
            let stroke = Stroke {
                width: 2.5,
                ..Stroke::default()
            };
            self.pm
                .stroke_path(&path, &paint(CURVE), &stroke, Transform::identity(), None);
        }
    }

    /// A lingering line stays at the curve's last opacity: dashed, from
    /// the end of the fade time to the picture's edge.
    fn linger(&mut self, cfg: &FadeConfig) {
        let last = cfg.curve.opacity(1.0);
        let dashed = Stroke {
            width: 1.5,
            dash: StrokeDash::new(vec![6.0, 4.0], 0.0),
            ..Stroke::default()
        };
        let mut pb = PathBuilder::new();
        pb.move_to(self.to_x(1.0), self.to_y(last));
        pb.line_to(WIDTH as f32 - 4.0, self.to_y(last));
        if let Some(path) = pb.finish() {
            self.pm
                .stroke_path(&path, &paint(CURVE), &dashed, Transform::identity(), None);
        }
    }

    /// The configured points, on top.
    fn points(&mut self, cfg: &FadeConfig) {
        let ring = paint(Rgba::new(0xff, 0xff, 0xff, 0xff));
        let dot = paint(POINT);
        for &(t, o) in cfg.curve.points() {
            let (x, y) = (self.to_x(t), self.to_y(o));
            if let Some(c) = PathBuilder::from_circle(x, y, 5.5) {
                self.pm
                    .fill_path(&c, &ring, FillRule::Winding, Transform::identity(), None);
            }
            if let Some(c) = PathBuilder::from_circle(x, y, 4.0) {
                self.pm
                    .fill_path(&c, &dot, FillRule::Winding, Transform::identity(), None);
            }
        }
    }

    /// The title, the axes' names, and what happens after the fade time.
    fn titles(&mut self, cfg: &FadeConfig, secs: f64) {
        let last = cfg.curve.opacity(1.0);
        let after = if cfg.linger {
            format!("then lingers at {last:.2}")
        } else {
            "then the line is removed".to_owned()
        };
        let title = format!("fade over {} s: \"{}\"", trim_float(secs), cfg.curve.spec());
        self.text(&title, LEFT, 22.0, 15.0, INK, Align::Left);
        self.text("opacity", LEFT, TOP - 14.0, 13.0, INK, Align::Right);
        self.text(
            &format!("seconds since the line's last activity; {after}"),
            LEFT + self.pw / 2.0,
            HEIGHT as f32 - 18.0,
            13.0,
            INK,
            Align::Center,
        );
    }

    /// Draws one label whose line box is vertically centred on `y`, its
    /// left edge, centre or right edge at `x`.
    fn text(&mut self, s: &str, x: f32, y: f32, size: f32, color: Rgba, align: Align) {
        let line_h = (size * 1.3).ceil();
        let max_w = WIDTH.saturating_sub(8);
        let r = self.fonts.raster_line(s, size, line_h, max_w);
        let left = match align {
            Align::Left => x,
            Align::Center => x - r.width as f32 / 2.0,
            Align::Right => x - r.width as f32,
        };
        blend_mask(
            &mut self.pm,
            &r.coverage,
            r.width,
            r.height,
            left.round() as i64,
            (y - line_h / 2.0).round() as i64,
            premultiply(color),
        );
    }
}

fn paint(c: Rgba) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color_rgba8(c.r, c.g, c.b, c.a);
    p.anti_alias = true;
    p
}

fn line(pm: &mut Pixmap, x0: f32, y0: f32, x1: f32, y1: f32, paint: &Paint<'_>, width: f32) {
    let mut pb = PathBuilder::new();
    pb.move_to(x0, y0);
    pb.line_to(x1, y1);
    if let Some(path) = pb.finish() {
        let stroke = Stroke {
            width,
            ..Stroke::default()
        };
        pm.stroke_path(&path, paint, &stroke, Transform::identity(), None);
    }
}

#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Center,
    Right,
}

/// A tick step giving about 5–10 ticks over `secs` seconds: 1, 2 or 5
/// times a power of ten.
fn tick_step(secs: f64) -> f64 {
    if !(secs.is_finite() && secs > 0.0) {
        return 1.0;
    }
    let raw = secs / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A tick label: as many decimals as the step needs.
fn seconds(s: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{s:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize;
        format!("{s:.decimals$}")
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round_and_give_a_handful_of_ticks() {
        for (secs, want) in [
            (60.0, 10.0),
            (5.0, 1.0),
            (1.0, 0.2),
            (300.0, 50.0),
            (7.5, 1.0),
        ] {
            assert_eq!(tick_step(secs), want, "{secs}");
        }
        assert_eq!(tick_step(0.0), 1.0);
        assert_eq!(seconds(0.4, 0.2), "0.4");
        assert_eq!(seconds(20.0, 10.0), "20");
        assert_eq!(trim_float(60.0), "60");
        assert_eq!(trim_float(1.5), "1.5");
    }
}
