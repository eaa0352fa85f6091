//! How leco-service runs. `--standalone` loads the eBPF programs and serves
//! in one process ([`standalone`]); the systemd unit splits that in two:
//! `load` as root ([`load`]) hands the kernel objects to systemd's file
//! descriptor store or to pins, and `run` without any privilege ([`run`])
//! serves from them. [`sdnotify`] speaks systemd's side of both. Every mode
//! that serves ends in [`serve`].

pub mod confine;
pub mod load;
pub mod run;
pub mod sdnotify;
pub mod standalone;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::bus::{self, BusTarget, SignalQueue};
use crate::config::ServiceConfig;
use crate::memory::{Memory, MemorySettings};
use crate::monitor::{Monitor, Settings};
use crate::names::resolved;
use crate::output;
use crate::stats::Stats;
use crate::table::{Limits, MAX_BYTES, MAX_LIVE};

/// Where the events go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Lines on stdout: human ones, or JSON objects when `json`.
    Terminal {
        /// One JSON object per event instead of a human line.
        json: bool,
    },
    /// `org.leco.Overseer1` on a bus.
    Bus(BusTarget),
}

/// Reads the kernel's records from `maps` and sends them to `output`,
/// until SIGINT/SIGTERM (or the reader of stdout leaves); follows
/// systemd-resolved from `resolved`; remembers in the store `state`.
pub fn serve(
    cfg: &ServiceConfig,
    output: Output,
    maps: leco_bpf::KernelMaps,
    wakeup_latency: Duration,
    resolved: resolved::Start,
    state: Option<MemorySettings>,
) -> anyhow::Result<()> {
    let reader = maps.reader().context("opening the event ring buffer")?;
    // The ring buffer is read on a thread of its own (`ring::Ring`), the
    // monitor loop runs on this one (block_on), and one worker runs the bus
    // (method calls, snapshot serialisation, signals): serving a client
    // never stalls the reading of the kernel's events.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("leco-bus")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stats = Arc::new(Stats::default());
    let load_id = maps.load_id();
    let mut monitor = Monitor::new(maps, settings(cfg, wakeup_latency), Arc::clone(&stats));
    let history = match &state {
        Some(s) => {
            let (memory, ended) = Memory::open(s, load_id, cfg.backlog, cfg.backlog_max)
                .with_context(|| format!("opening the store in {}", s.dir.display()))?;
            monitor.remember(memory, ended);
            Some(s.dir.clone())
        }
        None => None,
    };
    let (news, heard) = tokio::sync::mpsc::channel(256);
    monitor.follow_resolved(heard);
    let follower = runtime.spawn(resolved::follow(resolved, news));
    let outcome = runtime.block_on(async {
        match output {
            Output::Terminal { json } => print(monitor, reader, json).await,
            Output::Bus(target) => {
                let served = Served {
                    cfg,
                    stats: &stats,
                    history,
                };
                publish(monitor, reader, &target, served, follower).await
            }
        }
    });
    match outcome {
        Ok(()) => {}
        // `leco-service --standalone | head`: the reader left, so do we.
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    eprintln!("leco-service: final counters: {}", stats.summary());
    Ok(())
}

/// The monitor's settings from the configuration.
fn settings(cfg: &ServiceConfig, wakeup_latency: Duration) -> Settings {
    Settings {
        update_interval: cfg.update_interval,
        wakeup_latency,
        limits: Limits {
            max_live: MAX_LIVE,
            max_bytes: MAX_BYTES,
            udp_idle: cfg.udp_idle,
            backlog_age: cfg.backlog,
            max_backlog: cfg.backlog_max,
        },
    }
}

/// Prints every event on stdout.
async fn print(monitor: Monitor, reader: leco_bpf::RecordReader, json: bool) -> anyhow::Result<()> {
    // Nobody asks for snapshots here; the channel only has to exist.
    let (requests, asked) = tokio::sync::mpsc::channel(16);
    let stop = shutdown_signal();
    // On stderr, so it never mixes with --json output; also the readiness
    // line scripts and tests wait for.
    eprintln!(
        "leco-service: watching connections (TCP, UDP, ICMP, raw IP, packet sockets) \
         (+ new, ~ update, - closed, ! failed, x blocked); Ctrl-C stops"
    );
    let mut terminal = output::Terminal::new(json);
    let result = monitor.run(reader, &mut terminal, asked, stop).await;
    drop(requests);
    result.map(drop).map_err(anyhow::Error::from)
}

/// What the bus serves besides the monitor's events.
struct Served<'a> {
    cfg: &'a ServiceConfig,
    stats: &'a Arc<Stats>,
    /// The store's directory, for History() and Totals().
    history: Option<PathBuf>,
}

/// Serves `org.leco.Overseer1` on `target` and signals every event there,
/// under the configured rate bound.
async fn publish(
    monitor: Monitor,
    reader: leco_bpf::RecordReader,
    target: &BusTarget,
    Served {
        cfg,
        stats,
        history,
    }: Served<'_>,
    mut follower: tokio::task::JoinHandle<resolved::Ended>,
) -> anyhow::Result<()> {
    let (requests, asked) = tokio::sync::mpsc::channel(16);
    let shutdown = shutdown_signal();
    let served = bus::serve(target, requests, Arc::clone(stats), history).await?;
    // The readiness line scripts and tests wait for.
    eprintln!(
        "leco-service: serving {} on the {} bus",
        leco_proto::BUS_NAME,
        target
    );
    let conn = served.conn.clone();
    let mut queue = SignalQueue::new(Arc::clone(stats), cfg.signal_rate);
    let mut signals = tokio::spawn(queue.clone().run(conn, cfg.signal_rate));
    // Why serving stopped, when it was not asked to.
    let mut lost: Option<String> = None;
    let stop = async {
        tokio::select! {
            () = shutdown => {}
            why = served.lost() => lost = Some(why),
            ended = &mut signals => {
                lost = Some(format!("lost the bus: the signal sender ended ({ended:?})"));
            }
            Ok(resolved::Ended::NeedsRoot) = &mut follower => {
                lost = Some(
                    "systemd-resolved restarted, and only a new `load` (root) may subscribe to                      its lookups again"
                        .into(),
                );
            }
        }
    };
    monitor.run(reader, &mut queue, asked, stop).await?;
    match lost {
        None => Ok(()),
        Some(why) => Err(LostBus(why).into()),
    }
}

/// Serving stopped because the bus went away or took the name: the
/// service exits so that systemd starts it again (exit status 75).
#[derive(Debug, thiserror::Error)]
#[error("{0}; stopping, to be started again")]
pub struct LostBus(String);

/// Whether `e` comes from writing to a pipe whose reader has gone, however
/// deep in its chain of causes.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Handles SIGINT and SIGTERM from now on (so that a signal sent once the
/// readiness line is out stops the service cleanly rather than killing
/// it), completing when either arrives. Must be called in the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without handlers the default action (exit) still stops us.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_found_deep_in_the_chain() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::from(pipe())));
        let wrapped = anyhow::Error::from(pipe())
            .context("writing a line")
            .context("printing events");
        assert!(is_broken_pipe(&wrapped));
        // An io::Error as the source of another error type, too.
        #[derive(Debug, thiserror::Error)]
        #[error("output failed")]
        struct Output(#[source] std::io::Error);
        assert!(is_broken_pipe(&anyhow::Error::from(Output(pipe()))));
        let other = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other.context("reading")));
    }
}
