//! The line model: connections in, rows of faded text out. (Stub: the lines
//! engineer owns it; [`Frame`] and [`DrawLine`] are the contract with the
//! renderer.)

/// One row as it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawLine {
    /// Row index from the top (0-based), stable while the line lives.
    pub row: usize,
    /// The text after the rules (already sanitized: no control characters).
    pub text: String,
    /// 0 (invisible) ..= 1 (fully visible), from the fade curve.
    pub opacity: f32,
    /// Stable hash of the line's connection or group key (tag colour).
    pub key_hash: u64,
}

/// What the surface shows at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Visible rows, ordered by row.
    pub lines: Vec<DrawLine>,
    /// A short state line (service absent, access denied), drawn discreetly.
    pub status: Option<String>,
    /// When (realtime µs) the picture next changes without new events: the
    /// next fade step or removal; `None` when it is static.
    pub next_change_us: Option<u64>,
}
