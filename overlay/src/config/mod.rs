//! The overlay's configuration: the `overlay {}` section of `config.kdl` and
//! its line rules. These types are what the rest of the overlay reads;
//! [`parse`] turns KDL into them with file:line:column errors.
//!
//! Entry points: [`load`] (a file), [`locate`] (which file),
//! [`OverlayConfig::default`] (no file), [`check_config`]
//! (`--check-config`).

pub mod parse;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::color::Rgba;
use crate::fade::FadeCurve;
use crate::format::LineFormat;
use crate::rules::Rules;

pub use parse::ConfigError;

/// Reads the overlay's configuration from `path` (its `overlay {}`
/// section; everything else in the file is ignored). A missing file is an
/// error naming it; errors read `FILE:LINE:COLUMN: what was expected`.
pub fn load(path: &Path) -> Result<OverlayConfig, ConfigError> {
    parse::load(path)
}

/// The file the overlay reads when `-c` names none: see
/// [`leco_kdlconf::locate`].
pub fn locate() -> Option<PathBuf> {
    leco_kdlconf::locate()
}

/// `--check-config`: loads `path` and summarizes it in a few lines
/// (`FILE: ok`, the surface, font, fade, number of rules), or returns the
/// error to print. The CLI calls `check_config(&path)` with the `-c` file
/// or [`locate`]'s; with neither it reports the built-in defaults via
/// [`summary`].
pub fn check_config(path: &Path) -> Result<String, ConfigError> {
    let config = load(path)?;
    Ok(format!("{}: ok\n{}", path.display(), summary(&config)))
}

/// A short description of a configuration.
pub fn summary(config: &OverlayConfig) -> String {
    let rules = config.rules.rules();
    let count = |name: &str| rules.iter().filter(|r| r.action().name() == name).count();
    format!(
        "surface {}x{}, layer {:?}, output {:?}\n\
         font {:?} {} px, {}\n\
         fade over {:?} along \"{}\"{}\n\
         {} rules: {} rewrite, {} group, {} hide",
        config.surface.width,
        config.surface.height,
        config.surface.layer,
        config.surface.output,
        config.style.font_family,
        config.style.font_size,
        match config.lines.max_lines {
            Some(n) => format!("at most {n} lines"),
            None => format!("{} lines (from the height)", config.line_rows()),
        },
        config.fade.fade_time,
        config.fade.curve.spec(),
        if config.fade.linger {
            ", lingering"
        } else {
            ""
        },
        rules.len(),
        count("rewrite"),
        count("group"),
        count("hide"),
    )
}

/// Everything the overlay is configured with.
#[derive(Debug, Clone, Default)]
pub struct OverlayConfig {
    /// Where and how big the surface is.
    pub surface: SurfaceConfig,
    /// How lines look.
    pub style: Style,
    /// What a line says and how many there are.
    pub lines: LinesConfig,
    /// How lines fade.
    pub fade: FadeConfig,
    /// Rewrite, group and hide rules, in order.
    pub rules: Rules,
}

/// The wlr-layer-shell layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Below everything, even the wallpaper's layer neighbours.
    Background,
    /// Above the wallpaper, below windows (the default: conky-style).
    Bottom,
    /// Above windows.
    Top,
    /// Above everything, fullscreen windows included.
    Overlay,
}

/// Edges the surface is anchored to (a corner is two, a side one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anchor {
    /// Top edge.
    pub top: bool,
    /// Bottom edge.
    pub bottom: bool,
    /// Left edge.
    pub left: bool,
    /// Right edge.
    pub right: bool,
}

/// Margins in logical pixels, as CSS orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Margins {
    /// Top.
    pub top: i32,
    /// Right.
    pub right: i32,
    /// Bottom.
    pub bottom: i32,
    /// Left.
    pub left: i32,
}

/// Which outputs show the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChoice {
    /// The compositor's choice (usually the focused output).
    Default,
    /// Every output, including ones plugged in later.
    All,
    /// The output with this connector name (`DP-1`, `HEADLESS-1`).
    Named(String),
}

/// Surface placement and size.
#[derive(Debug, Clone)]
pub struct SurfaceConfig {
    /// Layer shell layer.
    pub layer: Layer,
    /// Anchored edges.
    pub anchor: Anchor,
    /// Distance from the anchored edges.
    pub margins: Margins,
    /// Width in logical pixels.
    pub width: u32,
    /// Height in logical pixels.
    pub height: u32,
    /// Where to show it.
    pub output: OutputChoice,
    /// Space between the surface's edge and the text, logical pixels.
    pub padding: u32,
}

/// One shadow/outline layer: the text drawn again, offset, in a colour,
/// under the text itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shadow {
    /// Offset right, logical pixels.
    pub dx: f32,
    /// Offset down, logical pixels.
    pub dy: f32,
    /// Colour of this layer.
    pub color: Rgba,
}

/// How lines are drawn.
#[derive(Debug, Clone)]
pub struct Style {
    /// Font family name (fontconfig name, e.g. `DejaVu Sans Mono`).
    pub font_family: String,
    /// Font size, logical pixels.
    pub font_size: f32,
    /// Distance between baselines, logical pixels.
    pub line_height: f32,
    /// Text colour (its alpha is multiplied by the line's opacity).
    pub text_color: Rgba,
    /// Text colour of failed attempts (refused, unreachable, no reply...).
    pub failed_color: Rgba,
    /// Text colour of attempts this machine's policy blocked.
    pub blocked_color: Rgba,
    /// Text colour of a program or destination never seen before.
    pub new_color: Rgba,
    /// Surface background (transparent by default).
    pub background: Rgba,
    /// Background behind each line's text (transparent by default).
    pub line_background: Rgba,
    /// Layers drawn under the text, in order.
    pub shadows: Vec<Shadow>,
    /// Draw a short coloured tag before each line, its colour a hash of
    /// the line's connection or group.
    pub tag: bool,
    /// Upper bound on redraws per second.
    pub max_fps: u32,
}

/// Amber: something refused or did not answer.
pub const DEFAULT_FAILED_COLOR: Rgba = Rgba::new(0xff, 0xb0, 0x40, 0xff);
/// Red: this machine said no.
pub const DEFAULT_BLOCKED_COLOR: Rgba = Rgba::new(0xff, 0x55, 0x55, 0xff);
/// Light blue: never seen before.
pub const DEFAULT_NEW_COLOR: Rgba = Rgba::new(0x6c, 0xc8, 0xff, 0xff);
/// Before a line of something never seen before.
pub const DEFAULT_NEW_MARKER: &str = "★ ";

impl Style {
    /// The text colour of a line of `tone`.
    pub fn text_color_of(&self, tone: crate::model::Tone) -> Rgba {
        match tone {
            crate::model::Tone::Plain => self.text_color,
            crate::model::Tone::Failed => self.failed_color,
            crate::model::Tone::Blocked => self.blocked_color,
            crate::model::Tone::New => self.new_color,
        }
    }
}

/// What lines say.
#[derive(Debug, Clone)]
pub struct LinesConfig {
    /// The classic line or a template over the connection keys.
    pub format: LineFormat,
    /// Traffic appears once rx + tx reaches this many bytes.
    pub traffic_threshold: u64,
    /// The classic line shows the name a remote was looked up by, where
    /// one is known, instead of its address.
    pub remote_names: bool,
    /// At most this many rows; `None` derives it from the height.
    pub max_lines: Option<usize>,
    /// Put before a line of a program or destination never seen before.
    pub new_marker: String,
}

/// How lines fade.
#[derive(Debug, Clone)]
pub struct FadeConfig {
    /// A line fades over this long after its last activity.
    pub fade_time: Duration,
    /// Opacity over the fade time.
    pub curve: FadeCurve,
    /// At the end, keep the line at the curve's last opacity instead of
    /// removing it.
    pub linger: bool,
}

impl OverlayConfig {
    /// Rows available for lines: `max-lines`, else as many as fit in the
    /// height inside the padding.
    pub fn line_rows(&self) -> usize {
        self.lines.max_lines.unwrap_or_else(|| {
            let inner = self.surface.height.saturating_sub(2 * self.surface.padding) as f32;
            let line = self.style.line_height.max(1.0);
            ((inner / line).floor() as usize).min(MAX_ROWS)
        })
    }
}

/// Most rows a surface can have, whatever its height.
pub const MAX_ROWS: usize = 1000;

impl Default for SurfaceConfig {
    fn default() -> SurfaceConfig {
        SurfaceConfig {
            layer: Layer::Bottom,
            anchor: Anchor {
                top: true,
                right: true,
                ..Anchor::default()
            },
            margins: Margins {
                top: 20,
                right: 20,
                bottom: 20,
                left: 20,
            },
            width: 900,
            height: 400,
            output: OutputChoice::Default,
            padding: 8,
        }
    }
}

/// Font size when none is configured, logical pixels.
pub const DEFAULT_FONT_SIZE: f32 = 13.0;
/// Line height as a multiple of the font size when none is configured.
pub const DEFAULT_LINE_HEIGHT_FACTOR: f32 = 1.3;

impl Default for Style {
    fn default() -> Style {
        Style {
            font_family: "DejaVu Sans Mono".into(),
            font_size: DEFAULT_FONT_SIZE,
            line_height: DEFAULT_FONT_SIZE * DEFAULT_LINE_HEIGHT_FACTOR,
            text_color: Rgba::new(0xe0, 0xe0, 0xe0, 0xff),
            failed_color: DEFAULT_FAILED_COLOR,
            blocked_color: DEFAULT_BLOCKED_COLOR,
            new_color: DEFAULT_NEW_COLOR,
            background: Rgba::TRANSPARENT,
            line_background: Rgba::TRANSPARENT,
            shadows: vec![Shadow {
                dx: 1.0,
                dy: 1.0,
                color: Rgba::new(0, 0, 0, 0xa0),
            }],
            tag: false,
            max_fps: 30,
        }
    }
}

impl Default for LinesConfig {
    fn default() -> LinesConfig {
        LinesConfig {
            format: LineFormat::Classic,
            traffic_threshold: leco_proto::TRAFFIC_THRESHOLD,
            remote_names: true,
            max_lines: None,
            new_marker: DEFAULT_NEW_MARKER.into(),
        }
    }
}

impl Default for FadeConfig {
    fn default() -> FadeConfig {
        FadeConfig {
            fade_time: Duration::from_secs(60),
            curve: FadeCurve::default(),
            linger: false,
        }
    }
}
