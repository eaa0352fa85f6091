//! The overlay's configuration: the `overlay {}` section of `config.kdl` and
//! its line rules. These types are what the rest of the overlay reads;
//! [`parse`] turns KDL into them with file:line:column errors.

pub mod parse;

use std::time::Duration;

use crate::color::Rgba;
use crate::fade::FadeCurve;
use crate::rules::Rules;

/// Everything the overlay is configured with.
#[derive(Debug, Clone)]
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

/// What lines say.
#[derive(Debug, Clone)]
pub struct LinesConfig {
    /// Line template over the connection keys; `None` is the classic line.
    pub format: Option<String>,
    /// Traffic appears once rx + tx reaches this many bytes.
    pub traffic_threshold: u64,
    /// At most this many rows; `None` derives it from the height.
    pub max_lines: Option<usize>,
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
