//! Drawing tests: golden images of known frames, targeted pixel checks,
//! hostile text, and proof that the golden comparison rejects a wrong
//! picture.
//!
//! Text is drawn with DejaVu loaded from its files (Debian package
//! `fonts-dejavu-core`), never with whatever the machine has installed, so
//! the pixels are the same everywhere the package is.
//!
//! Golden images live in `tests/golden/`. After a deliberate change to the
//! drawing, regenerate them and look at every one before committing:
//!
//! ```sh
//! LECO_UPDATE_GOLDEN=1 cargo test --release -p leco-overlay --test render
//! ```
//!
//! A comparison fails when more than [`MAX_DIFF_FRACTION`] of the pixels
//! differ by more than [`CHANNEL_TOLERANCE`] in any channel: loose enough
//! for a rasterizer's antialiasing to move by a level, tight enough that a
//! missing line, a wrong colour or a wrong alpha fails (the last tests
//! prove it).

use std::path::{Path, PathBuf};

use leco_overlay::color::Rgba;
use leco_overlay::config::{Shadow, Style};
use leco_overlay::model::{DrawLine, Frame, Tone};
use leco_overlay::render::{copy_to_argb8888, tag_color, Damage, PixelOrder, Renderer};
use tiny_skia::Pixmap;

/// Per-channel difference a pixel may show and still count as equal.
const CHANNEL_TOLERANCE: u8 = 8;
/// Share of the pixels that may differ beyond the tolerance.
const MAX_DIFF_FRACTION: f64 = 0.001;

const FONT_DIR: &str = "/usr/share/fonts/truetype/dejavu";

/// The test fonts: DejaVu Sans Mono to draw with, DejaVu Sans as the
/// fallback for scripts the monospace face lacks.
fn font_files() -> Vec<PathBuf> {
    let files: Vec<PathBuf> = ["DejaVuSansMono.ttf", "DejaVuSans.ttf"]
        .iter()
        .map(|f| Path::new(FONT_DIR).join(f))
        .collect();
    for f in &files {
        assert!(
            f.is_file(),
            "{} is missing: install the Debian package fonts-dejavu-core \
             (scripts/deps.sh test does)",
            f.display()
        );
    }
    files
}

fn style() -> Style {
    Style {
        font_family: "DejaVu Sans Mono".to_owned(),
        font_size: 13.0,
        line_height: 18.0,
        text_color: Rgba::new(0xf0, 0xf0, 0xe8, 0xff),
        background: Rgba::TRANSPARENT,
        line_background: Rgba::TRANSPARENT,
        shadows: vec![Shadow {
            dx: 1.0,
            dy: 1.0,
            color: Rgba::new(0, 0, 0, 0xc0),
        }],
        tag: true,
        max_fps: 30,
        ..Style::default()
    }
}

fn renderer(style: &Style, padding: u32) -> Renderer {
    let mut r = Renderer::with_font_files(style, &font_files()).expect("DejaVu loads");
    r.set_padding(padding);
    r
}

fn line(row: usize, text: &str, opacity: f32, key_hash: u64) -> DrawLine {
    DrawLine {
        row,
        text: text.to_owned(),
        opacity,
        key_hash,
        tone: Tone::Plain,
    }
}

/// Five classic lines fading out, newest first.
fn sample_frame() -> Frame {
    Frame {
        lines: vec![
            line(0, "14:02 :: alice :: firefox [app-firefox.scope] :: 142.250.74.110 443/tcp :: v 1.2M / 48K ^", 1.0, 0x11),
            line(1, "14:02 :: alice :: ssh :: 192.168.1.20 22/tcp", 0.8, 0x22),
            line(2, "14:01 :: root :: systemd-resolve [systemd-resolved.service] :: 9.9.9.9 53/udp", 0.5, 0x33),
            line(3, "14:01 :: alice :: curl :: [2a00:1450:4001:82b::200e] 443/tcp :: v 58K / 1K ^", 0.3, 0x44),
            line(4, "14:00 :: bob :: git :: 140.82.121.4 22/tcp", 0.12, 0x55),
        ],
        status: None,
        next_change_us: None,
    }
}

fn render(r: &mut Renderer, frame: &Frame, w: u32, h: u32, scale: f32) -> Pixmap {
    r.render(frame, w, h, scale).expect("renders")
}

/// Updates `r` and draws only the damage into `pm`, as the surface does
/// with a buffer it keeps.
fn render_damage(r: &mut Renderer, frame: &Frame, pm: &mut Pixmap, scale: f32) -> Vec<Damage> {
    let damage = r
        .update(frame, pm.width(), pm.height(), scale)
        .expect("renders")
        .to_vec();
    let stride = pm.width() as usize * 4;
    for &d in &damage {
        r.draw_region(pm.data_mut(), stride, d, PixelOrder::Rgba)
            .expect("fits");
    }
    damage
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.png"))
}

/// How two pictures differ.
#[derive(Debug)]
struct Diff {
    differing: usize,
    total: usize,
    max_delta: u8,
}

impl Diff {
    fn acceptable(&self) -> bool {
        (self.differing as f64) <= self.total as f64 * MAX_DIFF_FRACTION
    }
}

fn diff(a: &Pixmap, b: &Pixmap) -> Option<Diff> {
    if a.width() != b.width() || a.height() != b.height() {
        return None;
    }
    let mut d = Diff {
        differing: 0,
        total: (a.width() * a.height()) as usize,
        max_delta: 0,
    };
    for (pa, pb) in a.data().chunks_exact(4).zip(b.data().chunks_exact(4)) {
        let delta = pa
            .iter()
            .zip(pb)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0);
        d.max_delta = d.max_delta.max(delta);
        if delta > CHANNEL_TOLERANCE {
            d.differing += 1;
        }
    }
    Some(d)
}

/// Whether `got` matches the golden image `name` (false when sizes
/// differ).
fn matches_golden(name: &str, got: &Pixmap) -> bool {
    let path = golden_path(name);
    let want = Pixmap::load_png(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with LECO_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    diff(&want, got).is_some_and(|d| d.acceptable())
}

/// Compares with the golden image, or rewrites it under
/// `LECO_UPDATE_GOLDEN=1`. On failure the picture is kept next to the
/// test's target dir for a look.
fn check_golden(name: &str, got: &Pixmap) {
    let path = golden_path(name);
    if std::env::var_os("LECO_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("mkdir golden");
        got.save_png(&path).expect("write golden");
        eprintln!("updated {}", path.display());
        return;
    }
    let want = Pixmap::load_png(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with LECO_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    let d = diff(&want, got);
    if !d.as_ref().is_some_and(Diff::acceptable) {
        let out = std::env::temp_dir().join(format!("leco-golden-{name}.png"));
        let _ = got.save_png(&out);
        panic!(
            "{name}: differs from {} ({d:?}); this run's picture: {}",
            path.display(),
            out.display()
        );
    }
}

/// Alpha values of pixel rows `[top, bottom)`.
fn alphas(p: &Pixmap, top: u32, bottom: u32) -> impl Iterator<Item = u8> + '_ {
    let w = p.width() as usize;
    p.data()[top as usize * w * 4..bottom as usize * w * 4]
        .chunks_exact(4)
        .map(|px| px[3])
}

// ---------------------------------------------------------------------------
// Golden images

#[test]
fn golden_basic_scale_1() {
    let mut r = renderer(&style(), 6);
    let p = render(&mut r, &sample_frame(), 560, 112, 1.0);
    check_golden("basic-scale1", &p);
}

#[test]
fn golden_basic_scale_2() {
    let mut r = renderer(&style(), 6);
    let p = render(&mut r, &sample_frame(), 1120, 224, 2.0);
    check_golden("basic-scale2", &p);
}

#[test]
fn golden_styled_fractional_scale_with_status() {
    let style = Style {
        font_size: 12.0,
        line_height: 17.0,
        text_color: Rgba::new(0x20, 0x20, 0x20, 0xff),
        background: Rgba::new(0xff, 0xff, 0xff, 0x40),
        line_background: Rgba::new(0xff, 0xf0, 0xc0, 0xb0),
        // An outline: four one-pixel offsets in white.
        shadows: [(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)]
            .iter()
            .map(|&(dx, dy)| Shadow {
                dx,
                dy,
                color: Rgba::new(0xff, 0xff, 0xff, 0x90),
            })
            .collect(),
        tag: false,
        ..style()
    };
    let mut r = renderer(&style, 4);
    let mut frame = sample_frame();
    frame.lines.truncate(3);
    frame.status = Some("leco-service is not running (start it: systemctl start leco)".into());
    let p = render(&mut r, &frame, 630, 150, 1.5);
    check_golden("styled-scale1.5-status", &p);
}

// ---------------------------------------------------------------------------
// The comparison rejects wrong pictures

#[test]
fn golden_comparison_rejects_a_missing_line() {
    let mut r = renderer(&style(), 6);
    let mut frame = sample_frame();
    frame.lines.remove(1);
    let p = render(&mut r, &frame, 560, 112, 1.0);
    assert!(!matches_golden("basic-scale1", &p));
}

#[test]
fn golden_comparison_rejects_a_wrong_colour() {
    let style = Style {
        text_color: Rgba::new(0xf0, 0xe0, 0xe8, 0xff),
        ..style()
    };
    let mut r = renderer(&style, 6);
    let p = render(&mut r, &sample_frame(), 560, 112, 1.0);
    assert!(!matches_golden("basic-scale1", &p));
}

#[test]
fn golden_comparison_rejects_a_wrong_alpha() {
    let mut r = renderer(&style(), 6);
    let mut frame = sample_frame();
    frame.lines[2].opacity = 0.56;
    let p = render(&mut r, &frame, 560, 112, 1.0);
    assert!(!matches_golden("basic-scale1", &p));
    // ...but the same frame drawn again matches.
    let p = render(&mut r, &sample_frame(), 560, 112, 1.0);
    assert!(matches_golden("basic-scale1", &p));
}

#[test]
fn golden_comparison_rejects_a_wrong_tag_colour() {
    let mut r = renderer(&style(), 6);
    let mut frame = sample_frame();
    frame.lines[0].key_hash = 0x12;
    let p = render(&mut r, &frame, 560, 112, 1.0);
    let want = Pixmap::load_png(golden_path("basic-scale1")).expect("golden");
    let d = diff(&want, &p).expect("same size");
    // The tag is small: the fraction rule alone may let it through, so
    // check the pixels are really different.
    assert!(d.differing > 0 && d.max_delta > 64, "{d:?}");
}

// ---------------------------------------------------------------------------
// Targeted pixel checks

#[test]
fn text_rows_are_drawn_and_the_rest_is_exactly_transparent() {
    let mut r = renderer(&style(), 6);
    let p = render(&mut r, &sample_frame(), 560, 140, 1.0);
    // Rows 0..5 are 18 px each from y = 6.
    for k in 0..5u32 {
        let (top, bottom) = (6 + k * 18, 6 + (k + 1) * 18);
        let inked = alphas(&p, top, bottom).filter(|&a| a > 0).count();
        assert!(inked > 200, "row {k} has only {inked} inked pixels");
    }
    // Above the first row, below the last and in the right padding:
    // untouched, exactly transparent.
    assert!(alphas(&p, 0, 6).all(|a| a == 0));
    assert!(alphas(&p, 6 + 5 * 18, 140).all(|a| a == 0));
    let w = p.width() as usize;
    for y in 0..p.height() as usize {
        for x in (p.width() as usize - 6)..w {
            assert_eq!(p.data()[(y * w + x) * 4 + 3], 0, "({x},{y})");
        }
    }
}

#[test]
fn half_opacity_is_half_the_alpha() {
    let mut r = renderer(&style(), 0);
    let text = "opacity check: the same text twice WWW ###";
    let frame = Frame {
        lines: vec![line(0, text, 1.0, 7), line(1, text, 0.5, 7)],
        ..Frame::default()
    };
    let p = render(&mut r, &frame, 480, 36, 1.0);
    let full: u64 = alphas(&p, 0, 18).map(u64::from).sum();
    let half: u64 = alphas(&p, 18, 36).map(u64::from).sum();
    let ratio = half as f64 / full as f64;
    assert!((ratio - 0.5).abs() < 0.02, "alpha ratio {ratio}");
    // Pixel by pixel too: row 1 is row 0 at half alpha.
    let w = p.width() as usize * 4;
    for (a, b) in p.data()[..18 * w]
        .chunks_exact(4)
        .zip(p.data()[18 * w..].chunks_exact(4))
    {
        assert!((i32::from(a[3]) / 2 - i32::from(b[3])).abs() <= 1);
    }
}

#[test]
fn tag_colour_is_stable_per_key_and_drawn() {
    // Fixed values: a change to the colour derivation changes every user's
    // colours, so it must be deliberate.
    assert_eq!(tag_color(0), tag_color(0));
    assert_eq!(tag_color(0x11), tag_color(0x11));
    assert_ne!(tag_color(0x11), tag_color(0x12));
    let mut r = renderer(&style(), 6);
    let p = render(&mut r, &sample_frame(), 560, 112, 1.0);
    // The tag of row 0 sits at x = 6, about 4 px wide, centred in the row.
    let c = tag_color(0x11);
    let px = p.pixel(8, 6 + 9).expect("in bounds");
    assert_eq!(
        (px.red(), px.green(), px.blue(), px.alpha()),
        (c.r, c.g, c.b, 255)
    );
}

#[test]
fn status_line_is_discreet_and_at_the_bottom() {
    let mut r = renderer(&style(), 4);
    let frame = Frame {
        lines: vec![line(0, "a line", 1.0, 1)],
        status: Some("leco-service: access denied (join group leco)".into()),
        next_change_us: None,
    };
    let p = render(&mut r, &frame, 400, 100, 1.0);
    let status_band = alphas(&p, 100 - 4 - 16, 96).filter(|&a| a > 0).count();
    assert!(
        status_band > 100,
        "status drawn at the bottom: {status_band}"
    );
    let max_alpha = alphas(&p, 100 - 4 - 16, 96).max().unwrap_or(0);
    assert!(max_alpha < 255, "status is dimmer than text: {max_alpha}");
    assert!(alphas(&p, 30, 100 - 4 - 16).all(|a| a == 0));
}

// ---------------------------------------------------------------------------
// Damage

#[test]
fn damage_covers_changed_rows_only() {
    let mut r = renderer(&style(), 6);
    let frame = sample_frame();
    let mut pm = Pixmap::new(560, 112).expect("size");
    let damage = render_damage(&mut r, &frame, &mut pm, 1.0);
    assert_eq!(
        damage,
        &[Damage {
            x: 0,
            y: 0,
            width: 560,
            height: 112
        }]
    );
    // Same frame: nothing to redraw.
    assert!(render_damage(&mut r, &frame, &mut pm, 1.0).is_empty());
    // Row 2 fades a step, row 4 disappears.
    let mut next = frame.clone();
    next.lines[2].opacity = 0.4;
    next.lines.remove(4);
    let damage = render_damage(&mut r, &next, &mut pm, 1.0);
    assert_eq!(
        damage,
        &[
            Damage {
                x: 0,
                y: 6 + 2 * 18,
                width: 560,
                height: 18
            },
            Damage {
                x: 0,
                y: 6 + 4 * 18,
                width: 560,
                height: 18
            },
        ]
    );
    // The incremental picture equals a fresh full render of the same frame.
    let incremental = pm;
    let mut fresh = renderer(&style(), 6);
    let full = render(&mut fresh, &next, 560, 112, 1.0);
    assert!(incremental.data() == full.data());
    // A size or scale change redraws everything.
    let damage = r.update(&next, 560, 112, 2.0).expect("renders");
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].height, 112);
}

#[test]
fn incremental_rendering_with_an_opaque_background_matches_a_full_one() {
    let style = Style {
        background: Rgba::new(0x10, 0x20, 0x30, 0xc0),
        line_background: Rgba::new(0x40, 0x40, 0x40, 0x80),
        ..style()
    };
    let mut r = renderer(&style, 6);
    let mut frame = sample_frame();
    let mut incremental = Pixmap::new(560, 112).expect("size");
    render_damage(&mut r, &frame, &mut incremental, 1.0);
    frame.lines[0].opacity = 0.7;
    frame.lines[1].text = "14:03 :: alice :: ssh :: 192.168.1.21 22/tcp".into();
    frame.lines.pop();
    render_damage(&mut r, &frame, &mut incremental, 1.0);
    let mut fresh = renderer(&style, 6);
    let full = render(&mut fresh, &frame, 560, 112, 1.0);
    assert!(incremental.data() == full.data());
}

// ---------------------------------------------------------------------------
// Hostile text

#[test]
fn hostile_text_never_panics_and_stays_in_its_row() {
    let long: String = "x".repeat(10_000);
    let marks: String = std::iter::once('a')
        .chain(std::iter::repeat_n('\u{0301}', 500))
        .collect();
    let cases = [
        "bell\x07 nul\0 esc\x1b[31m red \x1b[0m tab\there newline\nafter cr\rend del\x7f",
        "rtl \u{202e}gnirts desrever\u{202c} then \u{2067}isolate\u{2069} ok",
        "\u{202e}\u{202e}\u{202e}\u{202d}\u{200f}\u{200e}",
        long.as_str(),
        marks.as_str(),
        "emoji 🦀🔥👩‍👩‍👧‍👦 🇫🇷 flags and ZWJ ✔️",
        "mixed: עברית and العربية and 中文 and हिन्दी and ไทย",
        "zero width\u{200b}\u{200b}\u{feff} and surrogate-free �",
        "",
        " ",
    ];
    let mut r = renderer(&style(), 6);
    for text in cases {
        let frame = Frame {
            lines: vec![line(1, text, 1.0, 9)],
            ..Frame::default()
        };
        let p = render(&mut r, &frame, 300, 80, 1.0);
        // Only row 1 (y 24..42) may be inked; the right padding stays clear.
        assert!(
            alphas(&p, 0, 24).all(|a| a == 0),
            "{text:?} drew above its row"
        );
        assert!(
            alphas(&p, 42, 80).all(|a| a == 0),
            "{text:?} drew below its row"
        );
        let w = p.width() as usize;
        for y in 24..42usize {
            for x in (w - 6)..w {
                assert_eq!(p.data()[(y * w + x) * 4 + 3], 0, "{text:?} at ({x},{y})");
            }
        }
    }
}

#[test]
fn golden_hostile_and_non_latin_text() {
    let long = "y".repeat(10_000);
    let frame = Frame {
        lines: [
            "ctl\x07\x1b[31m\ttab\nnl\u{7f} :: rtl \u{202e}gnirts desrever\u{202c} :: ok",
            "עברית :: العربية :: Ελληνικά :: Кириллица :: ok",
            "a\u{301}\u{302}\u{303}\u{304}\u{305}e\u{323}\u{31b} marks :: 🦀 ✔ ★ ☂ emoji",
            long.as_str(),
        ]
        .iter()
        .enumerate()
        .map(|(row, text)| line(row, text, 1.0, row as u64))
        .collect(),
        ..Frame::default()
    };
    let mut r = renderer(&style(), 6);
    let p = render(&mut r, &frame, 480, 84, 1.0);
    check_golden("hostile-text", &p);
}

#[test]
fn odd_frames_and_sizes_do_not_panic() {
    let mut r = renderer(&style(), 6);
    let frame = Frame {
        lines: vec![
            line(usize::MAX, "far away", 1.0, 1),
            line(3, "nan", f32::NAN, 2),
            line(2, "over one", 7.0, 3),
            line(2, "same row twice", -1.0, 4),
            line(0, "negative zero", -0.0, 5),
        ],
        status: Some(String::new()),
        next_change_us: None,
    };
    for (w, h, s) in [
        (1, 1, 1.0),
        (3, 500, 0.0),
        (200, 30, f32::NAN),
        (64, 64, 1e9),
    ] {
        r.render(&frame, w, h, s).expect("small sizes render");
    }
    assert!(r.render(&frame, 0, 10, 1.0).is_err());
    assert!(r.render(&frame, 10, 100_000, 1.0).is_err());
}

// ---------------------------------------------------------------------------
// wl_shm conversion

#[test]
fn argb8888_conversion_of_a_rendered_frame() {
    let mut r = renderer(&style(), 6);
    let p = render(&mut r, &sample_frame(), 560, 112, 1.0);
    let mut shm = vec![0u8; p.data().len()];
    copy_to_argb8888(&p, &mut shm).expect("same size");
    for (rgba, bgra) in p.data().chunks_exact(4).zip(shm.chunks_exact(4)) {
        assert_eq!([rgba[2], rgba[1], rgba[0], rgba[3]], bgra);
    }
    let mut small = vec![0u8; 10];
    assert!(copy_to_argb8888(&p, &mut small).is_err());
}

// ---------------------------------------------------------------------------
// Headless render (the CLI, end to end) and the fade-curve plot

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `leco-overlay --render-png` on the committed sample events. Run as a
/// process so that the line times are formatted in UTC (`TZ`), whatever
/// the machine's zone.
fn headless(at: &str, scale: &str) -> Pixmap {
    let fonts = font_files();
    let out = std::env::temp_dir().join(format!(
        "leco-headless-{}-{at}-{scale}.png",
        std::process::id()
    ));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_leco-overlay"))
        .env("TZ", "UTC")
        .arg("--render-png")
        .arg(&out)
        .arg("--events")
        .arg(data("sample-events.jsonl"))
        .arg("-c")
        .arg(data("sample-config.kdl"))
        .args(["--at", at, "--scale", scale, "--font"])
        .arg(&fonts[0])
        .status()
        .expect("leco-overlay runs");
    assert!(
        status.success(),
        "leco-overlay --render-png failed: {status}"
    );
    let p = Pixmap::load_png(&out).expect("a PNG was written");
    let _ = std::fs::remove_file(&out);
    p
}

#[test]
fn golden_headless_render_of_sample_events() {
    let p = headless("+2s", "1");
    assert_eq!((p.width(), p.height()), (900, 200), "the configured size");
    check_golden("headless-sample", &p);
    let p2 = headless("+2s", "2");
    assert_eq!((p2.width(), p2.height()), (1800, 400), "scale 2");
}

#[test]
fn headless_render_after_the_fade_time_is_empty() {
    let p = headless("+70s", "1");
    assert!(
        p.data().iter().all(|&b| b == 0),
        "every line has faded away"
    );
}

#[test]
fn golden_fade_curve_plot() {
    use leco_overlay::config::FadeConfig;
    use leco_overlay::fade::FadeCurve;
    let cfg = FadeConfig {
        fade_time: std::time::Duration::from_secs(60),
        curve: FadeCurve::parse("range=0:100 0,100 20,92 40,70 55,35 60,0").expect("curve"),
        linger: false,
    };
    let fonts: Vec<PathBuf> = font_files()
        .into_iter()
        .filter(|f| f.ends_with("DejaVuSans.ttf"))
        .collect();
    let p = leco_overlay::plot::fade_curve_pixmap(&cfg, &fonts).expect("plot");
    check_golden("fade-curve", &p);
    // The points are marked: the pixel at each point is the marker's red.
    let (left, top, w, h) = (72.0f32, 56.0f32, 800.0 - 72.0 - 32.0, 480.0 - 56.0 - 64.0);
    for &(t, o) in cfg.curve.points() {
        let (x, y) = (left + t * w, top + (1.0 - o) * h);
        let px = p.pixel(x.round() as u32, y.round() as u32).expect("inside");
        assert!(
            px.red() > 180 && px.green() < 100,
            "point ({t},{o}) marked: {px:?}"
        );
    }
}

/// Failed and blocked lines are drawn in their own colours (amber and red
/// by default), so they stand out from the lines that went through.
#[test]
fn failed_and_blocked_lines_have_colours_of_their_own() {
    let style = style();
    let mut r = renderer(&style, 4);
    let text = "14:02 :: alice :: curl :: 10.0.0.9 4444/tcp !! blocked by firewall";
    let mut frame = Frame {
        lines: vec![
            line(0, text, 1.0, 0x11),
            line(1, text, 1.0, 0x11),
            line(2, text, 1.0, 0x11),
        ],
        status: None,
        next_change_us: None,
    };
    frame.lines[1].tone = Tone::Failed;
    frame.lines[2].tone = Tone::Blocked;
    let pm = render(&mut r, &frame, 700, 80, 1.0);
    // The mean colour of each row's brightest text pixels (rows are
    // line-height 18 apart below the padding of 4).
    let mean = |row: usize| -> (f64, f64, f64) {
        let (mut n, mut rs, mut gs, mut bs) = (0.0, 0.0, 0.0, 0.0);
        for y in 4 + row * 18..4 + (row + 1) * 18 {
            for x in 0..pm.width() as usize {
                let p = &pm.data()[(y * pm.width() as usize + x) * 4..][..4];
                if p[3] > 200 && u16::from(p[0]).max(u16::from(p[1])) > 150 {
                    (rs, gs, bs, n) = (
                        rs + f64::from(p[0]),
                        gs + f64::from(p[1]),
                        bs + f64::from(p[2]),
                        n + 1.0,
                    );
                }
            }
        }
        assert!(n > 50.0, "row {row} has text pixels");
        (rs / n, gs / n, bs / n)
    };
    let (plain, failed, blocked) = (mean(0), mean(1), mean(2));
    let d = leco_overlay::config::DEFAULT_FAILED_COLOR;
    let close = |got: (f64, f64, f64), want: Rgba| {
        (got.0 - f64::from(want.r)).abs() < 40.0
            && (got.1 - f64::from(want.g)).abs() < 40.0
            && (got.2 - f64::from(want.b)).abs() < 40.0
    };
    assert!(close(plain, style.text_color), "plain {plain:?}");
    assert!(close(failed, d), "failed {failed:?} vs {d:?}");
    assert!(
        close(blocked, leco_overlay::config::DEFAULT_BLOCKED_COLOR),
        "blocked {blocked:?}"
    );
}
