//! Opacity over a line's fade time: a Catmull-Rom spline through the
//! configured (time, opacity) points.
//!
//! # Notation (the `curve` setting)
//!
//! `"range=0:100 0,41 2,62 4,80 6,94 18,98 58,100 97,84 161,67 …"`, as the
//! classic leco wrote it:
//!
//! - Numbers, separated by spaces, commas or parentheses, are taken in
//!   pairs: each pair is one point `TIME,OPACITY`. At least two points;
//!   times strictly increase.
//! - Time is relative: the first point's time is the moment of the line's
//!   last activity, the last point's time is the end of `fade-time`, and
//!   times in between scale linearly. `0,100 100,0` and `0,1 5,0` are
//!   the same fade.
//! - Opacity is scaled by `range=MIN:MAX` (anywhere in the string): MIN is
//!   fully transparent, MAX fully opaque, linearly in between; values
//!   outside the range clamp. Without `range=`, the lower of the first and
//!   last points' opacities is MIN and the higher is MAX (so a curve
//!   through `0,100 … 100,0` needs none).
//!
//! # Interpolation
//!
//! Between points the opacity follows a cubic Hermite spline whose
//! tangents are Catmull-Rom's (the slope between the two neighbours),
//! limited as Fritsch and Carlson do: a tangent is zero at a local peak or
//! valley and shrunk where it would overshoot. So the curve passes through
//! every point, and every segment is monotone: it never leaves the range
//! of its two endpoints (a monotone run of points never bounces).

use std::fmt;

/// Samples of the precomputed alpha table (see [`FadeCurve::next_change`]).
const TABLE: usize = 4096;

/// The fade curve: points (fraction of the fade time 0..=1, opacity 0..=1).
#[derive(Clone, PartialEq)]
pub struct FadeCurve {
    /// Normalized points, opacity not clamped (the spline runs through
    /// them as written).
    raw: Vec<(f32, f32)>,
    /// The same points clamped to what is drawn.
    shown: Vec<(f32, f32)>,
    /// Hermite tangents at each point (d opacity / d t).
    tangents: Vec<f32>,
    /// 8-bit alpha at `i / TABLE`.
    levels: Vec<u8>,
    /// Index of the next sample whose alpha differs, or `TABLE + 1`.
    next_diff: Vec<u32>,
    /// The text it was parsed from, for messages and `Debug`.
    spec: String,
}

impl fmt::Debug for FadeCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FadeCurve")
            .field("spec", &self.spec)
            .field("points", &self.shown)
            .finish()
    }
}

/// Why a curve did not parse: a message and where in the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CurveError {
    /// Byte offset in the curve string of the offending part.
    pub offset: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// The default curve: fully visible for a moment, then an eased fade.
pub const DEFAULT_CURVE: &str = "range=0:100 0,100 10,100 30,85 55,50 80,18 100,0";

impl Default for FadeCurve {
    fn default() -> FadeCurve {
        FadeCurve::parse(DEFAULT_CURVE).expect("the default curve is valid")
    }
}

impl FadeCurve {
    /// Parses the classic notation (see the module documentation).
    pub fn parse(spec: &str) -> Result<FadeCurve, CurveError> {
        let scanned = scan(spec)?;
        let points = pair_points(&scanned.numbers)?;
        let (first, last) = (points[0].0, points[points.len() - 1].0);
        let (lo, hi) = opacity_range(scanned.range, first, last)?;
        let normalized: Vec<(f32, f32)> = points
            .iter()
            .map(|((x, y), _)| {
                (
                    ((x - first.0) / (last.0 - first.0)) as f32,
                    ((y - lo) / (hi - lo)) as f32,
                )
            })
            .collect();
        Ok(FadeCurve::build(normalized, spec.to_owned()))
    }

    /// A curve through normalized points (time fraction, opacity), times
    /// strictly increasing from 0 to 1; `None` if they are not.
    pub fn from_points(points: &[(f32, f32)]) -> Option<FadeCurve> {
        let ok = points.len() >= 2
            && points.iter().all(|p| p.0.is_finite() && p.1.is_finite())
            && points.windows(2).all(|w| w[1].0 > w[0].0)
            && points[0].0 == 0.0
            && points[points.len() - 1].0 == 1.0;
        let spec = points
            .iter()
            .map(|(t, o)| format!("{},{}", t * 100.0, o * 100.0))
            .collect::<Vec<_>>()
            .join(" ");
        ok.then(|| FadeCurve::build(points.to_vec(), format!("range=0:100 {spec}")))
    }

    fn build(raw: Vec<(f32, f32)>, spec: String) -> FadeCurve {
        let tangents = monotone_tangents(&raw);
        let shown = raw.iter().map(|&(t, o)| (t, o.clamp(0.0, 1.0))).collect();
        let mut curve = FadeCurve {
            raw,
            shown,
            tangents,
            levels: Vec::new(),
            next_diff: Vec::new(),
            spec,
        };
        curve.levels = (0..=TABLE)
            .map(|i| alpha(curve.opacity(i as f32 / TABLE as f32)))
            .collect();
        let mut next = (TABLE + 1) as u32;
        let mut next_diff = vec![next; TABLE + 1];
        for i in (0..TABLE).rev() {
            if curve.levels[i + 1] != curve.levels[i] {
                next = (i + 1) as u32;
            }
            next_diff[i] = next;
        }
        curve.next_diff = next_diff;
        curve
    }

    /// Opacity at `t`, a fraction of the fade time (clamped to 0..=1; NaN
    /// counts as 0). The result is within 0..=1.
    pub fn opacity(&self, t: f32) -> f32 {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let p = &self.raw;
        // The segment whose start is the last point at or before t.
        let i = p.partition_point(|q| q.0 <= t).clamp(1, p.len() - 1) - 1;
        let (t0, y0) = p[i];
        let (t1, y1) = p[i + 1];
        let h = t1 - t0;
        let s = ((t - t0) / h).clamp(0.0, 1.0);
        let (s2, s3) = (s * s, s * s * s);
        let y = (2.0 * s3 - 3.0 * s2 + 1.0) * y0
            + (s3 - 2.0 * s2 + s) * h * self.tangents[i]
            + (-2.0 * s3 + 3.0 * s2) * y1
            + (s3 - s2) * h * self.tangents[i + 1];
        y.clamp(0.0, 1.0)
    }

    /// The configured points, normalized to (fraction of the fade time,
    /// opacity) and clamped to 0..=1 as drawn; the curve passes through
    /// each of them.
    pub fn points(&self) -> &[(f32, f32)] {
        &self.shown
    }

    /// `n` (at least 2) evenly spaced samples `(t, opacity(t))` from 0 to 1,
    /// for plotting.
    pub fn samples(&self, n: usize) -> Vec<(f32, f32)> {
        let n = n.max(2);
        (0..n)
            .map(|i| {
                let t = i as f32 / (n - 1) as f32;
                (t, self.opacity(t))
            })
            .collect()
    }

    /// The earliest fraction after `t` at which the drawn (8-bit) alpha
    /// differs from its value at `t`, or `None` if it stays the same until
    /// the end. Lets the overlay sleep through flat parts of the curve.
    pub fn next_change(&self, t: f32) -> Option<f32> {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let i = ((t * TABLE as f32) as usize).min(TABLE);
        let j = self.next_diff[i] as usize;
        (j <= TABLE).then(|| j as f32 / TABLE as f32)
    }

    /// The text this curve was parsed from.
    pub fn spec(&self) -> &str {
        &self.spec
    }
}

/// 8-bit alpha of an opacity, as the renderer quantizes it.
fn alpha(opacity: f32) -> u8 {
    (opacity.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// A point as written (time, opacity) and the byte offset of its time.
type SpecPoint = ((f64, f64), usize);

/// What a curve string says before its numbers are taken as points.
#[derive(Debug, Default)]
struct Scanned {
    /// Its numbers, each with its byte offset.
    numbers: Vec<(f64, usize)>,
    /// Its `range=MIN:MAX`, if it has one.
    range: Option<(f64, f64)>,
}

/// Reads a curve string's tokens: numbers and at most one `range=`.
fn scan(spec: &str) -> Result<Scanned, CurveError> {
    let mut scanned = Scanned::default();
    for (offset, token) in tokens(spec) {
        if let Some(r) = token.strip_prefix("range=") {
            let parsed = parse_range(r, token, offset)?;
            if scanned.range.is_some() {
                return Err(CurveError {
                    offset,
                    message: "range= is given twice".into(),
                });
            }
            scanned.range = Some(parsed);
        } else {
            let n = number(token).ok_or_else(|| CurveError {
                offset,
                message: format!(
                    "expected a number (points are TIME,OPACITY pairs) or range=MIN:MAX, \
                     found {token:?}"
                ),
            })?;
            scanned.numbers.push((n, offset));
        }
    }
    Ok(scanned)
}

/// `MIN:MAX` of a `range=` token (`token`, at `offset`): two different
/// numbers.
fn parse_range(r: &str, token: &str, offset: usize) -> Result<(f64, f64), CurveError> {
    let bad = || CurveError {
        offset,
        message: format!("expected range=MIN:MAX with two different numbers, found {token:?}"),
    };
    let (lo, hi) = r.split_once(':').ok_or_else(bad)?;
    let lo = number(lo).ok_or_else(bad)?;
    let hi = number(hi).ok_or_else(bad)?;
    if lo == hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The numbers taken in pairs: at least two points, times strictly
/// increasing.
fn pair_points(numbers: &[(f64, usize)]) -> Result<Vec<SpecPoint>, CurveError> {
    if numbers.len() % 2 == 1 {
        let (_, offset) = numbers[numbers.len() - 1];
        return Err(CurveError {
            offset,
            message: "an odd number of values: points are TIME,OPACITY pairs".into(),
        });
    }
    let points: Vec<SpecPoint> = numbers
        .chunks_exact(2)
        .map(|p| ((p[0].0, p[1].0), p[0].1))
        .collect();
    if points.len() < 2 {
        return Err(CurveError {
            offset: 0,
            message: "expected at least two TIME,OPACITY points, such as \"0,100 100,0\"".into(),
        });
    }
    for pair in points.windows(2) {
        if pair[1].0 .0 <= pair[0].0 .0 {
            return Err(CurveError {
                offset: pair[1].1,
                message: format!(
                    "times must increase from point to point: {} follows {}",
                    pair[1].0 .0, pair[0].0 .0
                ),
            });
        }
    }
    Ok(points)
}

/// The opacities that stand for transparent and opaque: the `range=`
/// given, else the first and last points' (which must then differ).
fn opacity_range(
    range: Option<(f64, f64)>,
    first: (f64, f64),
    last: (f64, f64),
) -> Result<(f64, f64), CurveError> {
    match range {
        Some(r) => Ok(r),
        None if first.1 == last.1 => Err(CurveError {
            offset: 0,
            message: "the first and last points have the same opacity; \
                      say which values are transparent and opaque with range=MIN:MAX"
                .into(),
        }),
        None => Ok((first.1.min(last.1), first.1.max(last.1))),
    }
}

/// Tokens with their byte offsets: separated by whitespace, commas and
/// parentheses.
fn tokens(spec: &str) -> impl Iterator<Item = (usize, &str)> {
    let is_sep = |c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')');
    let mut rest = spec.char_indices().peekable();
    std::iter::from_fn(move || {
        while rest.next_if(|&(_, c)| is_sep(c)).is_some() {}
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some((i, c)) = rest.next_if(|&(_, c)| !is_sep(c)) {
            end = i + c.len_utf8();
        }
        Some((start, &spec[start..end]))
    })
}

fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Catmull-Rom tangents limited to keep each segment monotone
/// (Fritsch–Carlson).
fn monotone_tangents(p: &[(f32, f32)]) -> Vec<f32> {
    let n = p.len();
    let slopes: Vec<f32> = p
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0))
        .collect();
    let mut m = vec![0.0f32; n];
    m[0] = slopes[0];
    m[n - 1] = slopes[n - 2];
    for i in 1..n - 1 {
        let (d0, d1) = (slopes[i - 1], slopes[i]);
        m[i] = if d0 * d1 <= 0.0 {
            // A peak, a valley or a flat side: a horizontal tangent keeps
            // both neighbouring segments within their endpoints.
            0.0
        } else {
            // Catmull-Rom: the slope between the neighbours.
            (p[i + 1].1 - p[i - 1].1) / (p[i + 1].0 - p[i - 1].0)
        };
    }
    for k in 0..n - 1 {
        let d = slopes[k];
        if d == 0.0 {
            m[k] = 0.0;
            m[k + 1] = 0.0;
            continue;
        }
        let (a, b) = (m[k] / d, m[k + 1] / d);
        // Endpoint tangents may point against the segment.
        if a < 0.0 {
            m[k] = 0.0;
        }
        if b < 0.0 {
            m[k + 1] = 0.0;
        }
        let (a, b) = (m[k] / d, m[k + 1] / d);
        let r = a * a + b * b;
        if r > 9.0 {
            let tau = 3.0 / r.sqrt();
            m[k] = tau * a * d;
            m[k + 1] = tau * b * d;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: &str = "range=0:100 0,41 2,62 4,80 6,94 18,98 58,100 97,84 161,67 \
        270,63 340,60 395,48 560,46 645,45 715,43 774,31 834,27 902,24 953,17 994,11";

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn passes_through_its_points() {
        for spec in [
            CLASSIC,
            DEFAULT_CURVE,
            "0,0 1,1",
            "0,100 100,0",
            "(0,0) (50,100) (100,0) range=0:100",
        ] {
            let c = FadeCurve::parse(spec).expect(spec);
            for &(t, o) in c.points() {
                assert!(
                    close(c.opacity(t), o),
                    "{spec}: at {t}: {} vs {o}",
                    c.opacity(t)
                );
            }
        }
    }

    #[test]
    fn classic_notation_scales_time_and_opacity() {
        let c = FadeCurve::parse(CLASSIC).expect("classic");
        assert!(close(c.opacity(0.0), 0.41));
        assert!(close(c.opacity(1.0), 0.11));
        assert!(close(c.opacity(58.0 / 994.0), 1.0));
        // Without range=, first and last points set it.
        let c = FadeCurve::parse("567,9999 700,5000 839,123").expect("no range");
        assert!(close(c.opacity(0.0), 1.0));
        assert!(close(c.opacity(1.0), 0.0));
        assert!(close(
            c.opacity((700.0 - 567.0) / (839.0 - 567.0)),
            (5000.0 - 123.0) / (9999.0 - 123.0)
        ));
    }

    #[test]
    fn monotone_segments_stay_within_their_endpoints() {
        let c = FadeCurve::parse(CLASSIC).expect("classic");
        let mut prev = c.points()[0];
        let pts = c.points().to_vec();
        for seg in pts.windows(2) {
            let (lo, hi) = (seg[0].1.min(seg[1].1), seg[0].1.max(seg[1].1));
            for i in 0..=200 {
                let t = seg[0].0 + (seg[1].0 - seg[0].0) * i as f32 / 200.0;
                let o = c.opacity(t);
                assert!(
                    o >= lo - 1e-5 && o <= hi + 1e-5,
                    "{t}: {o} outside {lo}..{hi}"
                );
            }
            prev = seg[1];
        }
        let _ = prev;
        // A steep step next to a flat run would make a plain Catmull-Rom
        // overshoot; this one stays at 1 until the drop.
        let c = FadeCurve::parse("0,100 10,100 80,100 82,0 100,0").expect("step");
        for i in 0..=1000 {
            let o = c.opacity(i as f32 / 1000.0);
            assert!((0.0..=1.0).contains(&o));
        }
        assert!(close(c.opacity(0.5), 1.0));
        assert!(close(c.opacity(0.9), 0.0));
        // Monotone overall: never increases.
        let c = FadeCurve::default();
        let s = c.samples(1000);
        assert!(s.windows(2).all(|w| w[1].1 <= w[0].1 + 1e-6));
    }

    #[test]
    fn clamps_time_and_opacity() {
        let c = FadeCurve::parse("range=0:50 0,100 50,20 100,-30").expect("beyond range");
        assert_eq!(c.opacity(0.0), 1.0);
        assert_eq!(c.opacity(1.0), 0.0);
        assert_eq!(c.opacity(-5.0), 1.0);
        assert_eq!(c.opacity(7.0), 0.0);
        assert_eq!(c.opacity(f32::NAN), 1.0);
        assert!(c.points().iter().all(|p| (0.0..=1.0).contains(&p.1)));
    }

    #[test]
    fn next_change_skips_flat_parts() {
        let c = FadeCurve::parse("0,100 50,100 100,0").expect("flat then fade");
        let next = c.next_change(0.0).expect("changes later");
        assert!(next > 0.49 && next < 0.52, "{next}");
        assert_eq!(c.next_change(1.0), None);
        let c = FadeCurve::parse("0,100 50,0 100,0").expect("fade then flat");
        assert_eq!(c.next_change(0.6), None);
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            ("0,100", 0, "at least two"),
            ("0,100 50", 6, "odd number"),
            ("0,100 x,0", 6, "expected a number"),
            ("0,100 0,0", 6, "times must increase"),
            ("range=1 0,100 1,0", 0, "range=MIN:MAX"),
            ("range=5:5 0,100 1,0", 0, "range=MIN:MAX"),
            ("0,5 1,9 2,5", 0, "range=MIN:MAX"),
            ("0,inf 1,0", 2, "expected a number"),
        ];
        for (spec, offset, text) in cases {
            let e = FadeCurve::parse(spec).expect_err(spec);
            assert_eq!(e.offset, offset, "{spec}: {e}");
            assert!(e.message.contains(text), "{spec}: {e}");
        }
    }

    #[test]
    fn from_points_checks_its_input() {
        assert!(FadeCurve::from_points(&[(0.0, 1.0), (1.0, 0.0)]).is_some());
        assert!(FadeCurve::from_points(&[(0.0, 1.0), (0.5, 0.0)]).is_none());
        assert!(FadeCurve::from_points(&[(0.0, 1.0)]).is_none());
    }
}
