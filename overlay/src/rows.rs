//! Row allocation: a line keeps its row while it lives (no jumping). A new
//! line takes the topmost free row, or else the row of the stalest line
//! (least recent activity), which then loses its place.

/// The rows of the surface and which line holds each.
#[derive(Debug, Clone)]
pub struct Rows<K> {
    slots: Vec<Option<Slot<K>>>,
}

#[derive(Debug, Clone)]
struct Slot<K> {
    key: K,
    activity: u64,
}

/// Where a new line went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed<K> {
    /// Its row.
    pub row: usize,
    /// The line that had that row before, if it was taken from one.
    pub evicted: Option<K>,
}

impl<K: Clone + PartialEq> Rows<K> {
    /// `capacity` empty rows.
    pub fn new(capacity: usize) -> Rows<K> {
        Rows {
            slots: (0..capacity).map(|_| None).collect(),
        }
    }

    /// Number of rows.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The line in `row`, if any.
    pub fn holder(&self, row: usize) -> Option<&K> {
        self.slots.get(row)?.as_ref().map(|s| &s.key)
    }

    /// The row of `key`, if it has one.
    pub fn row_of(&self, key: &K) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.key == *key))
    }

    /// Gives `key` (last active at `activity`) a row: the topmost free one,
    /// else the stalest line's if that is not more recent than `key`.
    /// `None` when every row holds a more recent line (or there are none).
    pub fn place(&mut self, key: K, activity: u64) -> Option<Placed<K>> {
        let row = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let (stalest, row) = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.as_ref().map(|s| (s.activity, i)))
                    // Ties go to the lower row, so eviction is predictable.
                    .min()?;
                if stalest > activity {
                    return None;
                }
                row
            }
        };
        let evicted = self.slots[row]
            .replace(Slot { key, activity })
            .map(|s| s.key);
        Some(Placed { row, evicted })
    }

    /// Puts `key` into `row` (which must be free) — for keeping rows across
    /// a reconfiguration. False if the row does not exist or is taken.
    pub fn assign(&mut self, row: usize, key: K, activity: u64) -> bool {
        match self.slots.get_mut(row) {
            Some(slot @ None) => {
                *slot = Some(Slot { key, activity });
                true
            }
            _ => false,
        }
    }

    /// Records new activity of the line in `row`.
    pub fn touch(&mut self, row: usize, activity: u64) {
        if let Some(Some(slot)) = self.slots.get_mut(row) {
            slot.activity = slot.activity.max(activity);
        }
    }

    /// Frees `row`.
    pub fn release(&mut self, row: usize) {
        if let Some(slot) = self.slots.get_mut(row) {
            *slot = None;
        }
    }

    /// Changes the number of rows; lines in rows that no longer exist lose
    /// them and are returned. Other lines keep their rows.
    pub fn resize(&mut self, capacity: usize) -> Vec<K> {
        let gone = if capacity < self.slots.len() {
            self.slots
                .drain(capacity..)
                .flatten()
                .map(|s| s.key)
                .collect()
        } else {
            Vec::new()
        };
        self.slots.resize_with(capacity, || None);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_lines_fill_from_the_top_and_keep_their_rows() {
        let mut rows = Rows::new(3);
        assert_eq!(rows.place("a", 1).map(|p| p.row), Some(0));
        assert_eq!(rows.place("b", 2).map(|p| p.row), Some(1));
        rows.touch(0, 10);
        assert_eq!(rows.row_of(&"a"), Some(0));
        assert_eq!(rows.place("c", 3).map(|p| p.row), Some(2));
        assert_eq!(rows.holder(1), Some(&"b"));
    }

    #[test]
    fn a_freed_row_is_reused_before_evicting() {
        let mut rows = Rows::new(3);
        for (k, t) in [("a", 1), ("b", 2), ("c", 3)] {
            rows.place(k, t);
        }
        rows.release(1);
        let placed = rows.place("d", 4).expect("a row");
        assert_eq!(
            placed,
            Placed {
                row: 1,
                evicted: None
            }
        );
        assert_eq!(rows.row_of(&"a"), Some(0));
        assert_eq!(rows.row_of(&"c"), Some(2));
    }

    #[test]
    fn when_full_the_stalest_line_gives_way() {
        let mut rows = Rows::new(3);
        for (k, t) in [("a", 5), ("b", 2), ("c", 3)] {
            rows.place(k, t);
        }
        rows.touch(1, 9); // b is now the freshest
        let placed = rows.place("d", 10).expect("a row");
        assert_eq!(
            placed,
            Placed {
                row: 2,
                evicted: Some("c")
            }
        );
        let placed = rows.place("e", 11).expect("a row");
        assert_eq!(
            placed,
            Placed {
                row: 0,
                evicted: Some("a")
            }
        );
        assert_eq!(rows.row_of(&"b"), Some(1));
        // An older line than every shown one gets no row.
        assert_eq!(rows.place("old", 1), None);
        assert!(!rows.assign(0, "x", 1));
    }

    #[test]
    fn resize_keeps_lines_that_still_fit() {
        let mut rows = Rows::new(4);
        for (k, t) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
            rows.place(k, t);
        }
        let mut gone = rows.resize(2);
        gone.sort();
        assert_eq!(gone, vec!["c", "d"]);
        assert_eq!(rows.row_of(&"b"), Some(1));
        assert!(rows.resize(5).is_empty());
        assert_eq!(rows.place("e", 9).map(|p| p.row), Some(2));
        let mut none: Rows<&str> = Rows::new(0);
        assert_eq!(none.place("x", 1), None);
    }
}
