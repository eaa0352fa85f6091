//! First seen, decided on the event path without touching the disk: every
//! program identity and every (program, destination) the store holds,
//! kept in memory as 64-bit fingerprints (about 9 bytes each in the set
//! with its spare room, so the most it holds of both kinds take some 9 MiB;
//! a collision between two of them is about as likely as one in 10^8 at
//! that size, and would only make something new look known).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Fingerprints held of each kind, at most; past that, what is not held
/// counts as known (quiet rather than wrong in the noisy direction).
pub const KNOWN_MAX: usize = 1 << 18;

pub use leco_proto::Novelty;

/// What a connection taught [`Known`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// What is new about it, to tell (never during the warm-up).
    pub novelty: Option<Novelty>,
    /// Whether its program or its destination was not held before (also
    /// during the warm-up): the store has a row to write.
    pub first: bool,
}

/// Where a program connected: the remote's name when known, else its
/// address; the port and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination<'a> {
    /// Name, else address.
    pub remote: &'a str,
    /// Remote port (for incoming connections: the local one reached).
    pub port: u16,
    /// `tcp`, `udp`, ...
    pub proto: &'a str,
}

/// The programs and destinations seen, by fingerprint.
#[derive(Debug)]
pub struct Known {
    programs: HashSet<u64>,
    destinations: HashSet<u64>,
    /// Before this (realtime µs) nothing is new: the warm-up of a fresh
    /// store, during which it only learns.
    quiet_until_us: u64,
}

fn fingerprint(v: impl Hash) -> u64 {
    // Fixed keys: the same program hashes alike in every run.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl Known {
    /// Nothing known yet; nothing is new before `quiet_until_us`.
    pub fn new(quiet_until_us: u64) -> Known {
        Known {
            programs: HashSet::new(),
            destinations: HashSet::new(),
            quiet_until_us,
        }
    }

    /// `program` used the network, with `destination` if given.
    pub fn learn(&mut self, program: &str, destination: Option<&Destination>) {
        insert(&mut self.programs, fingerprint(program));
        if let Some(d) = destination {
            insert(&mut self.destinations, fingerprint((program, d)));
        }
    }

    /// A connection of `program` to `destination` at `now_us`: what is new
    /// about it, learnt from then on.
    pub fn check(&mut self, program: &str, destination: &Destination, now_us: u64) -> Seen {
        let new_program = insert(&mut self.programs, fingerprint(program));
        let new_destination = insert(&mut self.destinations, fingerprint((program, destination)));
        let novelty = if now_us < self.quiet_until_us {
            None
        } else if new_program {
            Some(Novelty::Program)
        } else if new_destination {
            Some(Novelty::Destination)
        } else {
            None
        };
        Seen {
            novelty,
            first: new_program || new_destination,
        }
    }

    /// Programs and destinations held.
    pub fn len(&self) -> (usize, usize) {
        (self.programs.len(), self.destinations.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }
}

/// Whether `fp` was new (and is now held, if there was room).
fn insert(set: &mut HashSet<u64>, fp: u64) -> bool {
    if set.contains(&fp) {
        return false;
    }
    if set.len() >= KNOWN_MAX {
        return false;
    }
    set.insert(fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: Destination = Destination {
        remote: "example.org",
        port: 443,
        proto: "tcp",
    };

    #[test]
    fn a_new_program_then_a_new_destination_then_nothing() {
        let mut k = Known::new(0);
        assert_eq!(k.check("curl", &WEB, 1).novelty, Some(Novelty::Program));
        assert_eq!(k.check("curl", &WEB, 2).novelty, None);
        let other = Destination { port: 80, ..WEB };
        assert_eq!(
            k.check("curl", &other, 3).novelty,
            Some(Novelty::Destination)
        );
        // The destination is the program's: another program's first use of
        // it is the program's novelty.
        assert_eq!(k.check("wget", &WEB, 4).novelty, Some(Novelty::Program));
        assert_eq!(k.len(), (2, 3));
    }

    #[test]
    fn the_warm_up_learns_quietly() {
        let mut k = Known::new(100);
        assert_eq!(k.check("curl", &WEB, 50).novelty, None);
        assert_eq!(
            k.check("curl", &WEB, 150).novelty,
            None,
            "learnt during the warm-up"
        );
        assert_eq!(k.check("ssh", &WEB, 150).novelty, Some(Novelty::Program));
    }

    #[test]
    fn what_was_loaded_is_known() {
        let mut k = Known::new(0);
        k.learn("curl", Some(&WEB));
        k.learn("ssh", None);
        assert_eq!(k.check("curl", &WEB, 1).novelty, None);
        assert_eq!(k.check("ssh", &WEB, 1).novelty, Some(Novelty::Destination));
    }
}
