//! The sprite cache: each distinct line's sprite, built the first time it
//! is shown and kept while on screen, plus a few spares.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::config::Style;

use super::damage::RowState;
use super::layout::Layout;
use super::sprite::{Look, Sprite, SpriteScratch};
use super::text::Fonts;

/// Sprites kept beyond the ones on screen, for lines that come back (a
/// group toggling between texts, a status flapping).
const SPARE_SPRITES: usize = 16;

/// Sprites by a hash of what they show.
#[derive(Debug, Default)]
pub(super) struct SpriteCache {
    sprites: HashMap<u64, Sprite>,
    scratch: SpriteScratch,
    /// Counts updates, to tell which sprites were drawn least recently.
    frame_no: u64,
}

impl SpriteCache {
    /// Sprites held.
    pub(super) fn len(&self) -> usize {
        self.sprites.len()
    }

    /// Drops every sprite (their pixels are for another scale or width).
    pub(super) fn clear(&mut self) {
        self.sprites.clear();
    }

    /// Starts a new update: sprites touched from now on count as used by it.
    pub(super) fn next_frame(&mut self) {
        self.frame_no += 1;
    }

    /// The sprite and opacity a row shows, if it has pixels. `tags`: the
    /// style draws tags.
    pub(super) fn get(&self, tags: bool, state: &RowState, status: bool) -> Option<(&Sprite, u8)> {
        let (key, _) = sprite_key(tags, state, status);
        let sprite = self.sprites.get(&key)?;
        (sprite.text == state.text && sprite.status == status && sprite.tone == state.tone)
            .then_some((sprite, state.alpha))
    }

    /// Marks a sprite still on screen, so eviction keeps it.
    pub(super) fn touch(&mut self, tags: bool, state: &RowState, status: bool) {
        let (key, _) = sprite_key(tags, state, status);
        if let Some(s) = self.sprites.get_mut(&key) {
            s.last_used = self.frame_no;
        }
    }

    /// Builds the sprite of a row unless the cache has it.
    pub(super) fn ensure(
        &mut self,
        fonts: &mut Fonts,
        style: &Style,
        layout: &Layout,
        state: &RowState,
        status: bool,
    ) {
        let (key, tag) = sprite_key(style.tag, state, status);
        let fresh = match self.sprites.get(&key) {
            Some(s) => {
                s.text != state.text || s.tag != tag || s.status != status || s.tone != state.tone
            }
            None => true,
        };
        if fresh {
            let mut sprite = self.scratch.build(
                fonts,
                style,
                layout,
                &state.text,
                Look {
                    tag,
                    tone: state.tone,
                    status,
                },
            );
            sprite.last_used = self.frame_no;
            self.sprites.insert(key, sprite);
        } else if let Some(s) = self.sprites.get_mut(&key) {
            s.last_used = self.frame_no;
        }
    }

    /// Keeps the cache to the `on_screen` sprites plus a few spares,
    /// dropping the least recently drawn first: a sprite is a full row of
    /// pixels, so under churn (traffic counters changing every line's
    /// text) an unbounded or lazily trimmed cache is most of the memory.
    pub(super) fn evict(&mut self, on_screen: usize) {
        let limit = on_screen + SPARE_SPRITES;
        if self.sprites.len() <= limit {
            return;
        }
        let mut ages: Vec<(u64, u64)> = self
            .sprites
            .iter()
            .map(|(&key, s)| (s.last_used, key))
            .collect();
        ages.sort_unstable();
        let excess = self.sprites.len() - limit;
        for &(_, key) in ages.iter().take(excess) {
            self.sprites.remove(&key);
        }
    }
}

/// The cache key of what a row shows, and the tag it is drawn with (none
/// on the status line, or when the style draws no tags).
fn sprite_key(tags: bool, state: &RowState, status: bool) -> (u64, Option<u64>) {
    let tag = (tags && !status).then_some(state.key_hash);
    let mut h = DefaultHasher::new();
    state.text.hash(&mut h);
    state.tone.hash(&mut h);
    tag.hash(&mut h);
    status.hash(&mut h);
    (h.finish(), tag)
}
