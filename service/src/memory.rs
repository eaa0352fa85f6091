//! What the service remembers across restarts, in leco-store: what is new
//! (`novelty`, decided in memory on the event path), every connection that
//! ended (written off the event path, for `History()`, `Totals()` and the
//! backlog of the next start), and the live connections' records at a
//! stop, so that a restart gives them back as they were known.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use leco_proto::{Connection, Direction, Novelty};
use leco_store::{Destination, Ended, Known, Limits, Reader, Sighting, Store, Writer};

use crate::clock::realtime_us as now_us;
use crate::config::ServiceConfig;

/// Where the store is, and how much it keeps.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    /// The state directory (`leco.sqlite` in it).
    pub dir: PathBuf,
    /// Pruning.
    pub limits: Limits,
    /// A new store's quiet learning time.
    pub warm_up: Duration,
}

impl MemorySettings {
    /// The store in `dir`, with the configuration's limits.
    pub fn new(dir: PathBuf, cfg: &ServiceConfig) -> MemorySettings {
        MemorySettings {
            dir,
            limits: Limits {
                retention: cfg.retention,
                max_bytes: u64::from(cfg.store_max_mib) << 20,
            },
            warm_up: cfg.warm_up,
        }
    }
}

/// The open store, as the monitor uses it.
#[derive(Debug)]
pub struct Memory {
    known: Known,
    writer: Writer,
    /// The kernel objects' load (see [`load_name`]).
    load: String,
    /// Live records kept at the last stop, by id: given back to the flows
    /// the kernel still has (see [`Memory::restored`]).
    restored: HashMap<u64, Connection>,
}

/// The load of the kernel objects, as the store names it: this boot's id
/// and the flow table's id (see `leco_bpf::KernelMaps::load_id`). Live
/// records are given back only to the load they were kept from: a
/// restart of `run` keeps it, `--standalone` makes a new one each time.
fn load_name(load_id: u32) -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!("{}/{load_id}", boot.trim())
}

/// The program identity the store remembers a connection's program by:
/// its `program` key, else its executable, Flatpak app, service, task
/// name, in that order. A scope (`session-2.scope`) comes last: it is a
/// login's or a run's, not a program's.
fn identity(c: &Connection) -> Option<&str> {
    let service = c.unit.as_ref().filter(|u| u.as_str().ends_with(".service"));
    [&c.program, &c.exe, &c.app_id]
        .into_iter()
        .flatten()
        .chain(service)
        .chain(&c.comm)
        .chain(&c.unit)
        .map(|t| t.as_str())
        .find(|s| !s.is_empty())
}

/// Where `c` went: the remote's name when known, else its address; the
/// remote port (for an incoming connection, the local port it reached).
fn destination(c: &Connection) -> Destination<'_> {
    let remote = c.remote_name.as_ref().unwrap_or(&c.remote_addr).as_str();
    let port = match c.direction {
        Some(Direction::In) => c.local_port,
        _ => c.remote_port,
    };
    Destination {
        remote,
        port,
        proto: c.proto.as_str(),
    }
}

impl Memory {
    /// Opens the store in `s.dir` (making the directory if need be) for
    /// the kernel objects' load `load_id`, and returns it with the
    /// connections that ended within `backlog` (at most `backlog_max`,
    /// oldest first) for the table's backlog.
    pub fn open(
        s: &MemorySettings,
        load_id: u32,
        backlog: Duration,
        backlog_max: usize,
    ) -> anyhow::Result<(Memory, Vec<Connection>)> {
        std::fs::create_dir_all(&s.dir)
            .with_context(|| format!("making the state directory {}", s.dir.display()))?;
        let now = now_us();
        let store = Store::open(&s.dir, now)?;
        let known = store.known(s.warm_up)?;
        let load = load_name(load_id);
        let restored: HashMap<u64, Connection> = store
            .take_live(&load)?
            .iter()
            .filter_map(|json| decode(json))
            .map(|c| (c.id, c))
            .collect();
        let since = now.saturating_sub(backlog.as_micros() as u64);
        let mut ended: Vec<Connection> = match backlog_max {
            0 => Vec::new(),
            n => Reader::open(&s.dir)?
                .history(since, u64::MAX, n.try_into().unwrap_or(u32::MAX))?
                .iter()
                .filter_map(|json| decode(json))
                .collect(),
        };
        ended.reverse();
        let (programs, destinations) = known.len();
        tracing::debug!(
            "store {}: {programs} programs, {destinations} destinations known; {} ended and {} live \
             connections given back",
            store.path().display(),
            ended.len(),
            restored.len()
        );
        let writer = store.into_writer(s.limits, now_us);
        Ok((
            Memory {
                known,
                writer,
                load,
                restored,
            },
            ended,
        ))
    }

    /// What is new about connection `c`, seen now for the first time;
    /// what was not known is written down.
    pub fn check(&mut self, c: &Connection) -> Option<Novelty> {
        let program = identity(c)?;
        let d = destination(c);
        let now = now_us();
        let seen = self.known.check(program, &d, now);
        if seen.first {
            self.writer.seen(Sighting {
                at_us: now,
                program: program.to_owned(),
                remote: d.remote.to_owned(),
                port: d.port,
                proto: d.proto.to_owned(),
            });
        }
        seen.novelty
    }

    /// Connection `c` ended: written with the next batch.
    pub fn ended(&self, c: &Connection) {
        let d = destination(c);
        let record = serde_json::to_string(c).unwrap_or_default();
        self.writer.record(Ended {
            first_us: c.first_seen_us,
            ended_us: c.last_seen_us.max(c.first_seen_us),
            program: identity(c).unwrap_or_default().to_owned(),
            unit: c.unit.as_ref().map(|u| u.as_str().to_owned()),
            user: c.user.as_ref().map(|u| u.as_str().to_owned()),
            remote: d.remote.to_owned(),
            port: d.port,
            proto: d.proto.to_owned(),
            rx_bytes: c.rx_bytes,
            tx_bytes: c.tx_bytes,
            record,
        });
    }

    /// The record connection `id` had when the service last stopped, if
    /// it was kept and is still the same owner's: taken, to be given back
    /// instead of what /proc tells now (the owner may have exited; its
    /// name was learnt from an answer long gone).
    pub fn restored(&mut self, id: u64, pid: Option<u32>) -> Option<Connection> {
        let c = self.restored.remove(&id)?;
        (c.pid == pid).then_some(c)
    }

    /// Keeps the live connections' records for the next start, and waits
    /// until everything is written.
    pub fn stop(&self, live: Vec<Connection>) {
        let records = live
            .iter()
            .map(|c| (c.id, serde_json::to_string(c).unwrap_or_default()))
            .collect();
        self.writer.keep_live(&self.load, records);
        tracing::debug!(
            "store: {} connections pruned",
            self.writer.stats().pruned.load(Ordering::Relaxed)
        );
    }

    /// Ended connections written, and dropped instead (a full queue, a
    /// failed write).
    pub fn counts(&self) -> (u64, u64) {
        let s = self.writer.stats();
        (
            s.written.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
        )
    }
}

/// A stored record read back; one that no longer reads is skipped.
pub fn decode(json: &str) -> Option<Connection> {
    Connection::from_json_text(json).ok()
}

/// When a backlogged connection that ended at `ended_us` (realtime µs)
/// ended, on the monotonic clock of now.
pub fn ended_at(ended_us: u64, now: Instant) -> Instant {
    let ago = Duration::from_micros(now_us().saturating_sub(ended_us));
    now.checked_sub(ago).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leco_proto::example::{curl, dnsmasq};

    #[test]
    fn a_program_is_known_by_its_best_name() {
        let mut c = curl();
        assert_eq!(identity(&c), Some("curl"), "a task name before a scope");
        c.exe = Some("/usr/bin/curl".into());
        assert_eq!(identity(&c), Some("/usr/bin/curl"));
        c.program = Some("curl".into());
        assert_eq!(identity(&c), Some("curl"));
        let mut nobody = leco_proto::example::bare(1, leco_proto::Proto::Tcp);
        assert_eq!(identity(&nobody), None);
        nobody.unit = Some("session-2.scope".into());
        assert_eq!(identity(&nobody), Some("session-2.scope"));
        nobody.comm = Some("sshd".into());
        assert_eq!(identity(&nobody), Some("sshd"));
        nobody.unit = Some("sshd.service".into());
        assert_eq!(
            identity(&nobody),
            Some("sshd.service"),
            "a service before a task name"
        );
    }

    #[test]
    fn a_destination_is_a_name_else_an_address_and_the_port_aimed_at() {
        let mut c = curl();
        let d = destination(&c);
        assert_eq!((d.remote, d.port, d.proto), ("93.184.216.34", 443, "tcp"));
        c.remote_name = Some("example.org".into());
        assert_eq!(destination(&c).remote, "example.org");
        // Incoming: the service reached, not the client's port.
        let s = dnsmasq();
        let d = destination(&s);
        assert_eq!((d.port, d.proto), (53, "udp"));
    }
}
