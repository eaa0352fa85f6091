//! The remote's name (`remote_name`): the name a program asked for moments
//! before it connected, learnt from the DNS answers this machine receives
//! (the kernel sends up those from port 53 to a socket that asked that
//! server, UDP and TCP). Never a reverse lookup: leco sends no query of its
//! own. Encrypted DNS (DoH, DoT) cannot be read, and is not guessed at.

pub mod cache;
pub mod dns;
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
}

impl Default for Names {
    fn default() -> Self {
        Names {
            cache: NameCache::new(NAMES_MAX),
            streams: Streams::default(),
            answers: 0,
            unreadable: 0,
        }
    }
}

impl Names {
    /// A DNS answer arrived (at `now`); the addresses it named, and their
    /// name.
    pub fn answer(&mut self, a: &DnsAnswer, now: Instant) -> Vec<(IpAddr, Named)> {
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
