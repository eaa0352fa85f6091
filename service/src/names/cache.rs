//! The names this machine looked up, by the address they were answered
//! with: per cgroup (two programs may get two names for one CDN address)
//! with a machine-wide fallback (a resolver daemon asks for everyone), for
//! as long as the answer's TTL said — but never less than a floor, so that
//! a 0-TTL answer still names the connection made right after it. Bounded:
//! past its capacity the oldest answer goes first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use leco_proto::{NameSource, SafeText};

/// An answer is believed at least this long, whatever its TTL.
pub const TTL_FLOOR: Duration = Duration::from_secs(120);
/// And at most this long.
pub const TTL_CEILING: Duration = Duration::from_secs(24 * 3600);

/// A name as learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The name asked for.
    pub name: SafeText,
    /// Where it was learnt.
    pub source: NameSource,
}

#[derive(Debug)]
struct Entry {
    named: Named,
    expires: Instant,
    /// Which insertion this is, to tell it from a stale one in `order`.
    seq: u64,
}

/// One bounded map of names, oldest answers evicted first.
#[derive(Debug)]
struct Bounded<K> {
    map: HashMap<K, Entry>,
    /// Keys in the order they were (last) answered, with that answer's seq.
    order: VecDeque<(K, u64)>,
    capacity: usize,
    seq: u64,
}

impl<K: Hash + Eq + Clone> Bounded<K> {
    fn new(capacity: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            seq: 0,
        }
    }

    fn insert(&mut self, key: K, named: Named, expires: Instant) {
        self.seq += 1;
        let seq = self.seq;
        self.map.insert(
            key.clone(),
            Entry {
                named,
                expires,
                seq,
            },
        );
        self.order.push_back((key, seq));
        while self.map.len() > self.capacity {
            self.evict_oldest();
        }
        // Re-answered keys leave stale places behind: keep them bounded.
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((k, s)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|e| e.seq == s) {
                self.map.remove(&k);
                return;
            }
        }
    }

    fn get(&self, key: &K, now: Instant) -> Option<&Named> {
        self.map
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| &e.named)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The names learnt, per cgroup and machine-wide.
#[derive(Debug)]
pub struct NameCache {
    by_cgroup: Bounded<(u64, IpAddr)>,
    machine: Bounded<IpAddr>,
}

impl NameCache {
    /// A cache of at most `capacity` names per cgroup and address, and as
    /// many machine-wide.
    pub fn new(capacity: usize) -> NameCache {
        NameCache {
            by_cgroup: Bounded::new(capacity),
            machine: Bounded::new(capacity),
        }
    }

    /// `addr` was given for `name` to a socket of cgroup `cgroup` (0: not
    /// known whose) at `now`, to be believed for `ttl` seconds. Loopback
    /// and unspecified addresses (what blocklists answer) name nothing.
    /// Whether it was kept.
    pub fn learn(
        &mut self,
        cgroup: u64,
        addr: IpAddr,
        named: Named,
        ttl: u32,
        now: Instant,
    ) -> bool {
        let addr = canonical(addr);
        if addr.is_loopback() || addr.is_unspecified() || addr.is_multicast() {
            return false;
        }
        let ttl = Duration::from_secs(u64::from(ttl)).clamp(TTL_FLOOR, TTL_CEILING);
        let expires = now + ttl;
        if cgroup != 0 {
            self.by_cgroup
                .insert((cgroup, addr), named.clone(), expires);
        }
        self.machine.insert(addr, named, expires);
        true
    }

    /// The name a connection of cgroup `cgroup` to `addr` was made to: the
    /// cgroup's own lookup first, else the machine's latest.
    pub fn lookup(&self, cgroup: u64, addr: IpAddr, now: Instant) -> Option<&Named> {
        let addr = canonical(addr);
        self.by_cgroup
            .get(&(cgroup, addr), now)
            .or_else(|| self.machine.get(&addr, now))
    }

    /// Names held (per cgroup, machine-wide).
    pub fn len(&self) -> (usize, usize) {
        (self.by_cgroup.len(), self.machine.len())
    }
}

/// IPv4-mapped IPv6 addresses as IPv4: an AAAA answer is never mapped, an
/// A answer's address reached through an IPv6 socket is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: &str) -> Named {
        Named {
            name: n.into(),
            source: NameSource::Dns,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn per_cgroup_first_then_machine_wide() {
        let now = Instant::now();
        let mut c = NameCache::new(16);
        assert!(c.learn(1, ip("192.0.2.1"), named("a.example"), 300, now));
        assert!(c.learn(2, ip("192.0.2.1"), named("b.example"), 300, now));
        let name = |cg, a: &str| c.lookup(cg, ip(a), now).map(|n| n.name.to_string());
        assert_eq!(name(1, "192.0.2.1").as_deref(), Some("a.example"));
        assert_eq!(name(2, "192.0.2.1").as_deref(), Some("b.example"));
        // Another cgroup: the machine's latest answer.
        assert_eq!(name(3, "192.0.2.1").as_deref(), Some("b.example"));
        assert_eq!(name(1, "::ffff:192.0.2.1").as_deref(), Some("a.example"));
        assert_eq!(name(1, "192.0.2.2"), None);
    }

    #[test]
    fn ttls_are_floored_and_blocklist_answers_name_nothing() {
        let now = Instant::now();
        let mut c = NameCache::new(16);
        c.learn(1, ip("192.0.2.1"), named("cdn.example"), 0, now);
        assert!(c
            .lookup(1, ip("192.0.2.1"), now + Duration::from_secs(5))
            .is_some());
        assert!(c.lookup(1, ip("192.0.2.1"), now + TTL_FLOOR).is_none());
        for blocked in ["0.0.0.0", "::", "127.0.0.1", "::1"] {
            assert!(!c.learn(1, ip(blocked), named("ads.example"), 300, now));
        }
        assert_eq!(c.len(), (1, 1));
    }

    #[test]
    fn memory_stays_bounded_and_the_oldest_answer_goes_first() {
        let now = Instant::now();
        let mut c = NameCache::new(100);
        for i in 0..10_000u32 {
            let addr = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            c.learn(
                u64::from(i % 7),
                addr,
                named(&format!("n{i}.example")),
                300,
                now,
            );
            // Answered again and again: not evicted for its age.
            c.learn(9, ip("192.0.2.9"), named("hot.example"), 300, now);
        }
        assert_eq!(c.len(), (100, 100));
        assert!(c.by_cgroup.order.len() <= 200);
        assert_eq!(
            c.lookup(9, ip("192.0.2.9"), now)
                .map(|n| n.name.to_string())
                .as_deref(),
            Some("hot.example")
        );
        assert!(c
            .lookup(0, IpAddr::from(0x0a00_0000u32.to_be_bytes()), now)
            .is_none());
    }
}
