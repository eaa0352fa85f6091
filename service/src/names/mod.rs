//! The remote's name (`remote_name`): the name a program asked for moments
//! before it connected, learnt from the DNS answers this machine receives
//! (the kernel sends up those from port 53 to a socket that asked that
//! server, UDP and TCP) and from systemd-resolved's account of the lookups
//! it answers ([`resolved`]). Never a reverse lookup: leco sends no query
//! of its own. Encrypted DNS (DoH, DoT) cannot be read, and is not guessed
//! at.

pub mod cache;
pub mod dns;
pub mod resolved;
pub mod stream;

use std::net::IpAddr;
use std::time::Instant;

use leco_bpf::{DnsAnswer, DnsTransport};
use leco_proto::{NameSource, SafeText, MAX_TEXT_BYTES};

pub use cache::{NameCache, Named};
use stream::Streams;

/// Names held per cgroup and address, and as many machine-wide.
pub const NAMES_MAX: usize = 16_384;

/// What the service learns names from, and what it learnt.
#[derive(Debug)]
pub struct Names {
    cache: NameCache,
    streams: Streams,
    /// DNS messages read, and those that were not answers to read.
    pub answers: u64,
    pub unreadable: u64,
    /// Lookups systemd-resolved reported.
    pub resolved: u64,
    /// systemd-resolved's cgroup while it is followed: the answers its
    /// sockets receive are told by resolved itself, for whoever asked.
    resolver: Option<u64>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            cache: NameCache::new(NAMES_MAX),
            streams: Streams::default(),
            answers: 0,
            unreadable: 0,
            resolved: 0,
            resolver: None,
        }
    }
}

impl Names {
    /// A DNS answer arrived (at `now`); the addresses it named, and their
    /// name.
    pub fn answer(&mut self, a: &DnsAnswer, now: Instant) -> Vec<(IpAddr, Named)> {
        if self.resolver.is_some_and(|r| r == a.cgroup_id) {
            return Vec::new();
        }
        let stream;
        let messages: Vec<&[u8]> = match a.transport {
            DnsTransport::Udp => vec![&a.bytes],
            DnsTransport::Tcp { seq } => {
                stream = self.streams.segment(a.cookie, seq, &a.bytes, now);
                stream.iter().map(Vec::as_slice).collect()
            }
        };
        let mut learnt = Vec::new();
        for m in messages {
            match dns::parse(m) {
                Ok(answer) => {
                    self.answers += 1;
                    let named = Named {
                        name: SafeText::bounded(answer.asked.as_bytes(), MAX_TEXT_BYTES),
                        source: NameSource::Dns,
                    };
                    for (addr, ttl) in answer.addrs {
                        if self.cache.learn(a.cgroup_id, addr, named.clone(), ttl, now) {
                            learnt.push((addr, named.clone()));
                        }
                    }
                }
                Err(e) => {
                    self.unreadable += 1;
                    tracing::debug!("DNS answer to socket {}: {e}", a.cookie);
                }
            }
        }
        learnt
    }

    /// News from systemd-resolved (at `now`); the addresses a lookup named,
    /// and their name (machine-wide: resolved answers for everyone).
    pub fn resolved(&mut self, news: resolved::News, now: Instant) -> Vec<(IpAddr, Named)> {
        let lookup = match news {
            resolved::News::Following { cgroup_id } => {
                self.resolver = cgroup_id;
                return Vec::new();
            }
            resolved::News::Lost => {
                self.resolver = None;
                return Vec::new();
            }
            resolved::News::Lookup(l) => l,
        };
        self.resolved += 1;
        let named = Named {
            name: SafeText::bounded(lookup.name.as_bytes(), MAX_TEXT_BYTES),
            source: NameSource::Resolved,
        };
        lookup
            .addrs
            .into_iter()
            .filter(|&(addr, ttl)| self.cache.learn(0, addr, named.clone(), ttl, now))
            .map(|(addr, _)| (addr, named.clone()))
            .collect()
    }

    /// The name of a connection of cgroup `cgroup` to `addr`, if one was
    /// looked up.
    pub fn lookup(&self, cgroup: u64, addr: IpAddr, now: Instant) -> Option<&Named> {
        self.cache.lookup(cgroup, addr, now)
    }

    /// Names known machine-wide.
    pub fn known(&self) -> usize {
        self.cache.len().1
    }

    /// Periodic upkeep.
    pub fn tick(&mut self, now: Instant) {
        self.streams.expire(now);
    }
}
