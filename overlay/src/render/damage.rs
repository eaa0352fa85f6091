//! What each row shows, and the damage when that changes: a row is
//! redrawn only when its text, opacity or tag differs from the previous
//! frame's.

use crate::model::{Frame, Tone};

use super::layout::Layout;
use super::Damage;

/// A row as drawn: redrawn only when this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RowState {
    pub(super) text: String,
    pub(super) alpha: u8,
    pub(super) key_hash: u64,
    pub(super) tone: Tone,
}

impl RowState {
    /// The row state of a status line.
    pub(super) fn status(text: &str) -> RowState {
        RowState {
            text: text.to_owned(),
            alpha: 255,
            key_hash: 0,
            tone: Tone::Plain,
        }
    }
}

/// The frame's lines by row, as they will be drawn: invisible lines and
/// rows outside the buffer dropped, a duplicated row's last line kept.
pub(super) fn wanted_rows(frame: &Frame, layout: &Layout) -> Vec<Option<RowState>> {
    let mut rows: Vec<Option<RowState>> = Vec::new();
    for line in &frame.lines {
        let alpha = alpha_u8(line.opacity);
        if alpha == 0 || layout.row_span(line.row).is_none() {
            continue;
        }
        if rows.len() <= line.row {
            rows.resize(line.row + 1, None);
        }
        rows[line.row] = Some(RowState {
            text: line.text.clone(),
            alpha,
            key_hash: line.key_hash,
            tone: line.tone,
        });
    }
    rows
}

/// Opacity 0..=1 as an alpha byte; NaN is invisible.
fn alpha_u8(opacity: f32) -> u8 {
    if opacity.is_nan() {
        return 0;
    }
    (opacity.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Adds full-width damage for rows `[top, bottom)`, merged with the
/// previous rectangle when they touch (fewer, larger damage requests).
pub(super) fn push_damage(damage: &mut Vec<Damage>, width: u32, top: u32, bottom: u32) {
    if bottom <= top {
        return;
    }
    if let Some(last) = damage.last_mut() {
        if last.x == 0 && last.width == width && last.y + last.height == top {
            last.height += bottom - top;
            return;
        }
    }
    damage.push(Damage {
        x: 0,
        y: top,
        width,
        height: bottom - top,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacity_to_alpha_rounds_and_clamps() {
        assert_eq!(alpha_u8(f32::NAN), 0);
        assert_eq!(alpha_u8(0.5), 128);
        assert_eq!(alpha_u8(2.0), 255);
    }
}
