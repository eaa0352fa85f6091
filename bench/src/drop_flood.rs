//! The drop-flood case: TCP SYNs from one network namespace to a port the
//! other's firewall drops (nftables, in namespaces the bench makes and
//! removes, joined by a veth pair), in rounds without and with leco
//! attached. What matters: the drop watcher's cost per drop (bpf_stats of
//! `on_kfree_skb` over one flood), the flood's speed with leco against
//! without, and that the service's events stay bounded, because the kernel
//! aggregates a flood into a handful of records rather than one per packet.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use leco_testkit::attempts::{self, Place};
use leco_testkit::netns::{self, Netns};

use crate::hooks::{self, StatsEnabled};
use crate::report::{DropFlood, DropRound, Report, DRAIN};
use crate::service;
use crate::{start_service, stop_service, Plan};

/// The server's side of the veth pair, and the port it drops.
const SERVER: &str = "10.97.0.1";
const CLIENT: &str = "10.97.0.2";
const PORT: u16 = 2222;

/// Every round: a flood without leco, then one with it.
pub fn phase(service: &Path, plan: &Plan, r: &mut Report) -> Result<DropFlood> {
    let packets = if plan.quick { 10_000 } else { 100_000 };
    let srv = Netns::create("leco-bench-flood-srv");
    let cli = Netns::create("leco-bench-flood-cli");
    netns::veth(
        "lbflood",
        &srv,
        &[&format!("{SERVER}/24")],
        &cli,
        &[&format!("{CLIENT}/24")],
    );
    srv.nft(&format!(
        "table inet leco_bench {{
           chain in {{
             type filter hook input priority 0;
             tcp dport {PORT} counter drop
           }}
         }}"
    ));
    let at = Place {
        netns: Some(&cli),
        cgroup: None,
    };
    // The client's ARP is resolved before the first flood, so no SYN
    // waits in (or is dropped from) the neighbour queue.
    attempts::udp_sends(
        "leco-bench-arp",
        at,
        format!("{SERVER}:9").parse()?,
        1,
        Duration::from_millis(200),
    );
    let mut rounds = Vec::new();
    for round in 1..=plan.rounds {
        let what = format!("drop flood round {round}/{}", plan.rounds);
        let without = flood(&srv, at, packets)?;
        eprintln!(
            "leco-bench: {what} without leco: {} SYNs dropped in {:.0} ms",
            without.1,
            without.0.as_secs_f64() * 1e3
        );
        let mut svc = start_service(service, &[], &what, &mut r.notes)?;
        std::thread::sleep(plan.idle);
        let ids: HashSet<u32> = svc.prog_ids();
        // Statistics on for the last round only: they slow every program,
        // the flood's time with leco included.
        let stats = (round == plan.rounds)
            .then(StatsEnabled::enable)
            .transpose()?;
        let before = watcher(&ids)?;
        let from = svc.sample()?;
        let with = flood(&srv, at, packets)?;
        std::thread::sleep(DRAIN);
        let to = svc.sample()?;
        let after = watcher(&ids)?;
        drop(stats);
        svc.check_running()?;
        let stopped = stop_service(svc, &what, &mut r.notes)?;
        let counters = stopped.counters.as_ref();
        let dr = DropRound {
            dropped_without: without.1,
            time_without: without.0,
            dropped_with: with.1,
            time_with: with.0,
            service_cpu: service::cpu_between(&from, &to, service::clock_ticks_per_s()),
            events: counters.and_then(service::FinalCounters::events),
            ring_drops: counters.and_then(service::FinalCounters::ringbuf_drops),
            watcher_calls: after.0.saturating_sub(before.0),
            watcher_ns: after.1.saturating_sub(before.1),
            stats: round == plan.rounds,
        };
        eprintln!(
            "leco-bench: {what} with leco: {} SYNs dropped in {:.0} ms, {} events, service {:.1} ms CPU",
            dr.dropped_with,
            dr.time_with.as_secs_f64() * 1e3,
            dr.events.map_or("?".to_owned(), |e| e.to_string()),
            dr.service_cpu.as_secs_f64() * 1e3
        );
        rounds.push(dr);
    }
    Ok(DropFlood { packets, rounds })
}

/// One flood of `packets` SYNs from `at`: its wall time and how many the
/// server's rule dropped meanwhile (its counter's change).
fn flood(srv: &Netns, at: Place<'_>, packets: u32) -> Result<(Duration, u64)> {
    let before = dropped(srv)?;
    let t0 = Instant::now();
    let sent = attempts::syn_flood(
        "leco-bench-syn",
        at,
        format!("{CLIENT}:40000").parse()?,
        format!("{SERVER}:{PORT}").parse()?,
        packets,
    );
    let took = t0.elapsed();
    if sent.failed != packets {
        bail!("the flood sent {} of {packets} SYNs", sent.failed);
    }
    Ok((took, dropped(srv)?.saturating_sub(before)))
}

/// Packets the server's drop rule has counted.
fn dropped(srv: &Netns) -> Result<u64> {
    srv.packets_counted(&format!("dport {PORT}"))
        .map_err(anyhow::Error::msg)
}

/// The drop watcher's run count and run time now, among programs `ids`.
fn watcher(ids: &HashSet<u32>) -> Result<(u64, u64)> {
    hooks::runs_of(ids, "on_kfree_skb")
}
