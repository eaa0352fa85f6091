//! Opacity over a line's fade time: a Catmull-Rom spline through the
//! configured (time, opacity) points. (Stub: the lines engineer owns it.)

/// The fade curve: points (fraction of the fade time 0..=1, opacity 0..=1).
#[derive(Debug, Clone, PartialEq)]
pub struct FadeCurve {
    points: Vec<(f32, f32)>,
}

impl FadeCurve {
    /// Opacity at `t`, a fraction of the fade time (clamped to 0..=1).
    pub fn opacity(&self, t: f32) -> f32 {
        let _ = t;
        self.points.first().map_or(1.0, |p| p.1)
    }
}
