//! The DNS-flood case: in a network namespace the bench makes and removes,
//! a client socket that asked two servers on its loopback receives a paced
//! flood of datagrams from each: from port 5353 (plain UDP, the baseline)
//! and from port 53 (DNS answers, every one for a name not seen before).
//! What matters: what `on_udp_ingress` costs per DNS answer against per
//! plain datagram (bpf_stats), the service's CPU per answer read against
//! per plain datagram, and that its memory stays bounded however many
//! distinct names come (the name cache's bound).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use leco_testkit::netns::{self, Netns};
use leco_testkit::spawn_named;

use crate::hooks::{self, StatsEnabled};
use crate::report::{DnsFlood, DnsLeg, Report, DRAIN};
use crate::service;
use crate::{start_service, stop_service, Plan};

/// The plain servers' port: not DNS, so the kernel sends nothing up.
const PLAIN_PORT: u16 = 5353;
/// Datagrams sent between pauses, and the pause: about 50,000 a second,
/// which the service reads as fast as they come.
const BATCH: u32 = 500;
const PAUSE: Duration = Duration::from_millis(10);

/// One service run: a plain flood, then a DNS one, statistics on.
pub fn phase(service: &Path, plan: &Plan, r: &mut Report) -> Result<DnsFlood> {
    let packets = if plan.quick { 10_000 } else { 100_000 };
    let ns = Netns::create("leco-bench-dns");
    let what = "DNS flood";
    let mut svc = start_service(service, &[], what, &mut r.notes)?;
    std::thread::sleep(plan.idle);
    let ids: HashSet<u32> = svc.prog_ids();
    let stats = StatsEnabled::enable()?;
    let client = Client::start(ns.name())?;
    let mut legs = Vec::new();
    for port in [PLAIN_PORT, 53] {
        let before = ingress(&ids)?;
        let from = svc.sample()?;
        let t0 = Instant::now();
        let sent = flood(ns.name(), port, client.port, packets)?;
        let took = t0.elapsed();
        std::thread::sleep(DRAIN);
        let to = svc.sample()?;
        let after = ingress(&ids)?;
        let leg = DnsLeg {
            dns: port == 53,
            sent,
            time: took,
            hook_calls: after.0.saturating_sub(before.0),
            hook_ns: after.1.saturating_sub(before.1),
            service_cpu: service::cpu_between(&from, &to, service::clock_ticks_per_s()),
            rss_before_kib: from.rss_kib,
            rss_after_kib: to.rss_kib,
        };
        eprintln!(
            "leco-bench: {what}: {} datagrams from port {port} in {:.0} ms, service {:.1} ms CPU, \
             RSS {} → {} KiB",
            leg.sent,
            took.as_secs_f64() * 1e3,
            leg.service_cpu.as_secs_f64() * 1e3,
            leg.rss_before_kib,
            leg.rss_after_kib
        );
        legs.push(leg);
    }
    drop(client);
    drop(stats);
    svc.check_running()?;
    let stopped = stop_service(svc, what, &mut r.notes)?;
    let counters = stopped.counters.as_ref();
    Ok(DnsFlood {
        packets,
        legs,
        answers_read: counters.and_then(|c| c.get("dns_answers")),
        names_kept: counters.and_then(|c| c.get("names")),
        ring_drops: counters.and_then(service::FinalCounters::ringbuf_drops),
    })
}

/// `on_udp_ingress`'s run count and run time now, among programs `ids`.
fn ingress(ids: &HashSet<u32>) -> Result<(u64, u64)> {
    hooks::runs_of(ids, "on_udp_ingress")
}

/// The receiving program: a named child in the namespace whose socket
/// asked both servers (so answers from port 53 are answers to it), then
/// reads whatever comes until it is killed (when dropped).
struct Client {
    _child: leco_testkit::Child,
    port: u16,
}

impl Client {
    fn start(ns: &str) -> Result<Client> {
        let name = ns.to_owned();
        let mut child = spawn_named("leco-bench-dns", move |p| {
            if netns::join(&name).is_err() {
                return 1;
            }
            let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
                return 2;
            };
            for port in [53, PLAIN_PORT] {
                if s.send_to(b"?", (Ipv4Addr::LOCALHOST, port)).is_err() {
                    return 3;
                }
            }
            let Ok(addr) = s.local_addr() else {
                return 4;
            };
            p.send(u64::from(addr.port()));
            let mut buf = [0u8; 2048];
            loop {
                let _ = s.recv(&mut buf);
            }
        });
        let port = u16::try_from(child.recv()).context("the DNS client's port")?;
        Ok(Client {
            _child: child,
            port,
        })
    }
}

/// The DNS answer number `i`: one question, `n<i>.flood.test`, answered
/// with one address of 10.0.0.0/8 (a name and an address never seen
/// before, for the first 16 million).
fn answer(i: u32) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    let label = format!("n{i}");
    m.push(label.len() as u8);
    m.extend_from_slice(label.as_bytes());
    m.extend_from_slice(b"\x05flood\x04test\x00");
    m.extend_from_slice(&[0, 1, 0, 1]);
    // The answer's name points at the question's (offset 12).
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    m.extend_from_slice(&(0x0a00_0000 | (i & 0x00ff_ffff)).to_be_bytes());
    m
}

/// Sends `packets` datagrams from 127.0.0.1:`from` to `to_port` in
/// namespace `ns`, paced; how many were sent.
fn flood(ns: &str, from: u16, to_port: u16, packets: u32) -> Result<u64> {
    let ns = ns.to_owned();
    std::thread::spawn(move || -> Result<u64> {
        netns::join(&ns).context("joining the flood's namespace")?;
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, from))
            .with_context(|| format!("binding 127.0.0.1:{from} in the namespace"))?;
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, to_port));
        let mut sent = 0;
        for i in 0..packets {
            // The same size from either port: only the port differs.
            if s.send_to(&answer(i), to).is_ok() {
                sent += 1;
            }
            if (i + 1) % BATCH == 0 {
                std::thread::sleep(PAUSE);
            }
        }
        if sent == 0 {
            bail!("no datagram of the flood could be sent");
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the flood's thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_distinct_and_well_formed() {
        let (a, b) = (answer(1), answer(70_000));
        assert_ne!(a, b);
        // Header, question (n1 + flood + test), answer.
        assert_eq!(a.len(), 12 + (1 + 2 + 1 + 5 + 1 + 4 + 1) + 4 + 16);
        assert_eq!(&a[a.len() - 4..], &[10, 0, 0, 1]);
        assert_eq!(&b[b.len() - 4..], &[10, 1, 0x11, 0x70]);
    }
}
