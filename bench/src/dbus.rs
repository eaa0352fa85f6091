//! The D-Bus section: leco-service serving `org.leco.Overseer1` on a private
//! system-like bus (`leco_testkit::bus::TestBus`), a zbus subscriber on a
//! thread and runtime of its own, connect → `ConnectionEvent` latency under
//! paced connections, and the signal rate the service sustains before it
//! coalesces events, read from its `EventsEmitted` and `Coalesced`
//! properties.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use leco_testkit::bus::TestBus;
use zbus::export::futures_core::Stream;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{MatchRule, MessageStream};

use crate::report::{self, BusCeiling, BusLatency, BusStep, Dbus, LatencySummary, Report, DRAIN};
use crate::service::{self, ProcSample, Service};
use crate::{workloads, Interference, Plan};

const BUS_NAME: &str = "org.leco.Overseer1";
const OBJECT_PATH: &str = "/org/leco/Overseer1";
const INTERFACE: &str = "org.leco.Overseer1";
const SIGNAL: &str = "ConnectionEvent";

/// Paced rates of the latency windows, connections/s.
pub const LATENCY_RATES: [f64; 2] = [100.0, report::LATENCY_TARGET_RATE];
/// How long a connection's `new` signal is waited for before it counts as
/// never signalled.
pub const SIGNAL_WAIT: Duration = Duration::from_secs(2);
/// How long the server side of each connection stays open (the client
/// side twice as long). Real connections outlive their `new` signal; a
/// connection closed within microseconds would have its `new` merged into
/// its `closed` whenever the signal queue holds it back for an instant, and
/// the bench would then measure the merge, not the latency.
pub const HOLD: Duration = Duration::from_millis(50);
/// The service's signal rate bound when not given (`--signal-rate`), if its
/// `--help` does not say.
const FALLBACK_SIGNAL_RATE: u32 = 5_000;
/// The configuration file the service reads when there is one and no `-c`.
const SYSTEM_CONFIG: &str = "/etc/leco/config.kdl";
/// The raised bound that lets the service's own ceiling show.
pub const RAISED_SIGNAL_RATE: u32 = 100_000;
/// Churn steps against the default bound, connections/s (4 events each):
/// around 1,250/s, where 5,000 signals/s run out.
const DEFAULT_STEPS: [Option<f64>; 6] = [
    Some(500.0),
    Some(1_000.0),
    Some(1_250.0),
    Some(1_500.0),
    Some(2_000.0),
    Some(3_000.0),
];
/// Churn steps against the raised bound; `None` is unpaced.
const RAISED_STEPS: [Option<f64>; 5] = [
    Some(1_000.0),
    Some(2_000.0),
    Some(4_000.0),
    Some(8_000.0),
    None,
];
/// Longest wait for the signal queue to empty after a step: it holds at
/// most two seconds' worth of signals.
const SETTLE_MAX: Duration = Duration::from_secs(4);
/// The service counts as caught up once its counters have not moved for
/// this long.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
/// Bound on one property read.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages the subscriber's stream may queue before zbus stops reading.
const STREAM_QUEUE: usize = 1 << 20;

/// The whole D-Bus phase: latency windows, then the signal rate steps at
/// the default bound and at [`RAISED_SIGNAL_RATE`].
pub fn phase(service: &Path, plan: &Plan, r: &mut Report) -> Result<Dbus> {
    // On this thread: the daemon is killed when the thread that started
    // it exits.
    let bus = TestBus::start().context("D-Bus: starting a private dbus-daemon")?;
    eprintln!("leco-bench: D-Bus: private bus at {}", bus.address());
    let default = Bound::default_of(service, r);
    let raised = Bound {
        rate: RAISED_SIGNAL_RATE,
        given: true,
    };
    let mut latency = latency_windows(service, plan, &bus, default, &LATENCY_RATES, r)?;
    latency.extend(latency_windows(
        service,
        plan,
        &bus,
        raised,
        &[report::LATENCY_TARGET_RATE],
        r,
    )?);
    let mut ceilings = Vec::new();
    for (bound, steps) in [(default, &DEFAULT_STEPS[..]), (raised, &RAISED_STEPS[..])] {
        ceilings.push(ceiling(service, plan, &bus, bound, steps, r)?);
    }
    let log = bus.log();
    if log.contains("Rejected") || log.contains("rejected") {
        r.notes.push(format!(
            "D-Bus: the private dbus-daemon rejected messages: {}",
            log.lines()
                .find(|l| l.contains("ejected"))
                .unwrap_or_default()
        ));
    }
    Ok(Dbus {
        hold: HOLD,
        wait: SIGNAL_WAIT,
        latency,
        ceilings,
    })
}

/// The signal rate bound a service runs with.
#[derive(Debug, Clone, Copy)]
struct Bound {
    /// Signals/s.
    rate: u32,
    /// Whether it is given with `--signal-rate` (else the service's
    /// default).
    given: bool,
}

impl Bound {
    /// The service's default, as its `--help` says; noted when that cannot
    /// be read or a system configuration file may change it.
    fn default_of(service: &Path, r: &mut Report) -> Bound {
        let help = std::process::Command::new(service).arg("--help").output();
        let rate = help
            .ok()
            .and_then(|o| default_signal_rate(&String::from_utf8_lossy(&o.stdout)));
        let rate = rate.unwrap_or_else(|| {
            r.notes.push(format!(
                "D-Bus: `leco-service --help` names no default signal rate; \
                 {FALLBACK_SIGNAL_RATE} signals/s assumed."
            ));
            FALLBACK_SIGNAL_RATE
        });
        if Path::new(SYSTEM_CONFIG).exists() {
            r.notes.push(format!(
                "D-Bus: {SYSTEM_CONFIG} exists; its signal-rate, if any, is the \"default\" bound \
                 of the D-Bus section, not {rate} signals/s."
            ));
        }
        Bound { rate, given: false }
    }

    /// `--signal-rate N` when given.
    fn args(&self) -> Vec<String> {
        if self.given {
            vec!["--signal-rate".to_owned(), self.rate.to_string()]
        } else {
            Vec::new()
        }
    }

    /// A service on `bus` under this bound, for the phase `phase`: what to
    /// call it in notes, the service, its programs and a property reader.
    fn start(
        &self,
        phase: &str,
        path: &Path,
        bus: &TestBus,
        r: &mut Report,
    ) -> Result<(String, Service, HashSet<u32>, Props)> {
        let what = format!(
            "{phase}, bound {} signals/s",
            report::fmt_num(f64::from(self.rate), 0)
        );
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let svc = crate::start_bus_service(path, bus.address(), &args, &what, &mut r.notes)?;
        let ours = svc.prog_ids();
        let props = Props::connect(bus.address())?;
        Ok((what, svc, ours, props))
    }
}

/// The default signal rate in leco-service's `--help`
/// (`[config: signal-rate, default 2000]`, wrapped anywhere).
fn default_signal_rate(help: &str) -> Option<u32> {
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    const MARK: &str = "signal-rate, default ";
    let rest = &flat[flat.find(MARK)? + MARK.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Paced connections at each of `rates`, against one service with signal
/// rate bound `bound`.
fn latency_windows(
    path: &Path,
    plan: &Plan,
    bus: &TestBus,
    bound: Bound,
    rates: &[f64],
    r: &mut Report,
) -> Result<Vec<BusLatency>> {
    let (what, mut svc, ours, props) = bound.start("D-Bus latency", path, bus, r)?;
    let me = std::process::id();
    let ticks = service::clock_ticks_per_s();
    thread::sleep(plan.idle);
    let mut runs = Vec::new();
    for &rate in rates {
        let what = format!("{what}, {} conn/s", report::fmt_num(rate, 0));
        let sub =
            Subscriber::start(bus.address(), Rule::NewOfPid(me)).with_context(|| what.clone())?;
        let mut seen = Interference::default();
        seen.look(&ours)?;
        let c0 = props.read()?;
        let s0 = svc.sample()?;
        let d0 = ProcSample::read(bus.pid()).ok();
        let paced = workloads::paced_connects(plan.bus_window, Some(rate), HOLD)
            .with_context(|| what.clone())?;
        thread::sleep(DRAIN);
        let s1 = svc.sample()?;
        let d1 = ProcSample::read(bus.pid()).ok();
        // Every connection gets its whole wait.
        if let Some(last) = paced.connects.last() {
            let until = last.started + SIGNAL_WAIT + Duration::from_millis(50);
            let now = Instant::now();
            if until > now {
                thread::sleep(until - now);
            }
        }
        let c1 = props.read()?;
        seen.look(&ours)?;
        seen.note(&what, r);
        let got = sub.stop().with_context(|| what.clone())?;
        svc.check_running()?;
        let latency = summarize(&paced.connects, &got.seen, SIGNAL_WAIT);
        let run = BusLatency {
            signal_rate: bound.rate,
            default_bound: !bound.given,
            target_rate: rate,
            achieved_rate: paced.per_s(),
            connections: paced.connects.len() as u64,
            window: paced.elapsed,
            latency,
            service_cpu_pct: service::cpu_percent(&s0, &s1, ticks),
            daemon_cpu_pct: d0.zip(d1).map(|(a, b)| service::cpu_percent(&a, &b, ticks)),
            rss_kib: s1.rss_kib,
            hwm_kib: s1.hwm_kib,
            signals: c1.emitted.saturating_sub(c0.emitted),
            coalesced: c1.coalesced.saturating_sub(c0.coalesced),
        };
        eprintln!(
            "leco-bench: {what}: {} connections, {} signalled, p50 {} p99 {} max {}; service {} of one core",
            run.connections,
            run.latency.matched,
            report::fmt_latency(run.latency.p50, SIGNAL_WAIT),
            report::fmt_latency(run.latency.p99, SIGNAL_WAIT),
            report::fmt_latency(run.latency.max, SIGNAL_WAIT),
            report::fmt_pct(run.service_cpu_pct),
        );
        runs.push(run);
    }
    crate::stop_service(svc, &what, &mut r.notes)?;
    Ok(runs)
}

/// Connections in steps against one service with signal rate bound
/// `bound`, a subscriber receiving every signal.
fn ceiling(
    path: &Path,
    plan: &Plan,
    bus: &TestBus,
    bound: Bound,
    steps: &[Option<f64>],
    r: &mut Report,
) -> Result<BusCeiling> {
    let (what, mut svc, ours, props) = bound.start("D-Bus signal rate", path, bus, r)?;
    let sub = Subscriber::start(bus.address(), Rule::All).with_context(|| what.clone())?;
    thread::sleep(plan.idle);
    let steps = if plan.quick {
        quick_steps(steps)
    } else {
        steps.to_vec()
    };
    let mut out = Vec::new();
    for rate in steps {
        let what = format!("{what}, {}", report::rate_label(rate));
        let mut seen = Interference::default();
        seen.look(&ours)?;
        let c0 = props.read()?;
        let c0 = props.settle(c0, 0)?;
        let n0 = sub.received();
        let t0 = Instant::now();
        let churn =
            workloads::paced_connects(plan.bus_step, rate, HOLD).with_context(|| what.clone())?;
        let c1 = props.read()?;
        let window = t0.elapsed();
        let c2 = props.settle(c0, 4 * churn.connects.len() as u64)?;
        // The subscriber is a hop behind the service.
        thread::sleep(Duration::from_millis(100));
        let n2 = sub.received();
        let step = BusStep {
            target_rate: rate,
            achieved_rate: churn.per_s(),
            connections: churn.connects.len() as u64,
            window,
            signals: c1.emitted.saturating_sub(c0.emitted),
            signals_total: c2.emitted.saturating_sub(c0.emitted),
            coalesced: c2.coalesced.saturating_sub(c0.coalesced),
            kernel_drops: c2.kernel_drops.saturating_sub(c0.kernel_drops),
            received: n2.saturating_sub(n0),
        };
        eprintln!(
            "leco-bench: {what}: {} connections, {} conn/s: {} signals/s, {} coalesced/s, {} received of {}",
            step.connections,
            report::fmt_num(step.achieved_rate, 0),
            report::fmt_num(step.signals_per_s(), 0),
            report::fmt_num(step.coalesced_per_s(), 0),
            step.received,
            step.signals_total,
        );
        seen.look(&ours)?;
        seen.note(&what, r);
        out.push(step);
        svc.check_running()?;
    }
    sub.stop().with_context(|| what.clone())?;
    crate::stop_service(svc, &what, &mut r.notes)?;
    Ok(BusCeiling {
        signal_rate: bound.rate,
        default_bound: !bound.given,
        steps: out,
    })
}

/// The lowest and the highest of `steps`, for a smoke test.
fn quick_steps(steps: &[Option<f64>]) -> Vec<Option<f64>> {
    match steps {
        [] | [_] => steps.to_vec(),
        [first, .., last] => vec![*first, *last],
    }
}

/// A signal the subscriber received: the `local_port` of its connection
/// and when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The connection's local port.
    pub port: u16,
    /// When the subscriber got it.
    pub at: Instant,
}

/// What a subscriber listens to.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `new` events (filtered by the bus with arg0), noting those of this
    /// process id.
    NewOfPid(u32),
    /// Every ConnectionEvent, only counted.
    All,
}

/// What a subscriber got over its life.
#[derive(Debug)]
struct Received {
    seen: Vec<Seen>,
}

/// A zbus client on a thread and current-thread runtime of its own, so that
/// the load generator's pacing never delays its reading.
#[derive(Debug)]
struct Subscriber {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<Received>>>,
    received: Arc<AtomicU64>,
}

impl Subscriber {
    /// Connects and subscribes; returns once the match rule is in place.
    fn start(address: &str, rule: Rule) -> Result<Subscriber> {
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let received = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&received);
        let address = address.to_owned();
        let thread = thread::Builder::new()
            .name("bus-subscriber".into())
            .spawn(move || -> Result<Received> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("subscriber: tokio runtime")?;
                rt.block_on(subscribe(address, rule, ready_tx, stop_rx, count))
            })
            .context("subscriber: spawning its thread")?;
        let mut sub = Subscriber {
            stop: Some(stop),
            thread: Some(thread),
            received,
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => Ok(sub),
            // The thread ended (its error is in the join) or hangs.
            Err(e) => {
                let why = match sub.join() {
                    Err(err) => err,
                    Ok(_) => anyhow!("subscriber: not subscribed ({e})"),
                };
                Err(why)
            }
        }
    }

    /// Signals received so far.
    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Unsubscribes and returns what it got.
    fn stop(mut self) -> Result<Received> {
        self.join()
    }

    fn join(&mut self) -> Result<Received> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self
            .thread
            .take()
            .ok_or_else(|| anyhow!("subscriber: already stopped"))?;
        thread
            .join()
            .map_err(|_| anyhow!("subscriber thread panicked"))?
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// The next message of `stream`.
fn next_message(
    stream: &mut MessageStream,
) -> impl Future<Output = Option<zbus::Result<zbus::Message>>> + '_ {
    std::future::poll_fn(move |cx| Pin::new(&mut *stream).poll_next(cx))
}

/// The subscriber's life: connect, add the match rule, say ready, receive
/// until told to stop.
async fn subscribe(
    address: String,
    rule: Rule,
    ready: mpsc::SyncSender<()>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    count: Arc<AtomicU64>,
) -> Result<Received> {
    let conn = connect(&address).await?;
    let mut b = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(INTERFACE)?
        .member(SIGNAL)?;
    if let Rule::NewOfPid(_) = rule {
        b = b.arg(0, "new")?;
    }
    let mut stream = MessageStream::for_match_rule(b.build(), &conn, Some(STREAM_QUEUE))
        .await
        .context("subscriber: adding the match rule")?;
    let _ = ready.send(());
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            msg = next_message(&mut stream) => {
                let at = Instant::now();
                let msg = msg
                    .ok_or_else(|| anyhow!("subscriber: the bus connection ended"))?
                    .context("subscriber: receiving")?;
                count.fetch_add(1, Ordering::Relaxed);
                if let Rule::NewOfPid(pid) = rule {
                    if let Some(port) = port_of(&msg, pid)? {
                        seen.push(Seen { port, at });
                    }
                }
            }
        }
    }
    Ok(Received { seen })
}

/// The `local_port` of a ConnectionEvent whose `pid` is `pid`.
fn port_of(msg: &zbus::Message, pid: u32) -> Result<Option<u16>> {
    let body = msg.body();
    let (_kind, dict): (&str, HashMap<&str, Value<'_>>) = body
        .deserialize()
        .context("subscriber: a ConnectionEvent that is not (s, a{sv})")?;
    Ok(match (dict.get("pid"), dict.get("local_port")) {
        (Some(Value::U32(p)), Some(Value::U16(port))) if *p == pid => Some(*port),
        _ => None,
    })
}

/// A zbus connection of its own to the bus at `address`.
pub async fn connect(address: &str) -> Result<zbus::Connection> {
    zbus::connection::Builder::address(address)
        .context("bus address")?
        .build()
        .await
        .with_context(|| format!("connecting to the bus at {address}"))
}

/// The service's counters, as its properties say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusCounters {
    pub emitted: u64,
    pub coalesced: u64,
    pub kernel_drops: u64,
    /// Connections left out of `Snapshot()` replies to keep them within
    /// their size bound; `None` from a service older than that property.
    pub trimmed: Option<u64>,
}

/// A client that reads the service's properties, on the calling thread.
#[derive(Debug)]
pub struct Props {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

impl Props {
    pub fn connect(address: &str) -> Result<Props> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("properties: tokio runtime")?;
        let conn = rt.block_on(connect(address))?;
        Ok(Props { rt, conn })
    }

    /// EventsEmitted, Coalesced, KernelDrops and Trimmed, in one GetAll.
    pub fn read(&self) -> Result<BusCounters> {
        let all: HashMap<String, OwnedValue> = self.rt.block_on(async {
            let call = self.conn.call_method(
                Some(BUS_NAME),
                OBJECT_PATH,
                Some("org.freedesktop.DBus.Properties"),
                "GetAll",
                &(INTERFACE,),
            );
            let reply = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| anyhow!("{INTERFACE} GetAll: no answer within {CALL_TIMEOUT:?}"))?
                .context("GetAll on the service's properties")?;
            reply
                .body()
                .deserialize()
                .context("GetAll's answer is not a{sv}")
        })?;
        Ok(BusCounters {
            emitted: counter(&all, "EventsEmitted")?,
            coalesced: counter(&all, "Coalesced")?,
            kernel_drops: counter(&all, "KernelDrops")?,
            trimmed: all
                .contains_key("Trimmed")
                .then(|| counter(&all, "Trimmed"))
                .transpose()?,
        })
    }

    /// The counters once the service has caught up: at least `want` events
    /// counted since `from` (signalled, coalesced or dropped), and none for
    /// [`SETTLE_QUIET`]; or [`SETTLE_MAX`] passed.
    fn settle(&self, from: BusCounters, want: u64) -> Result<BusCounters> {
        let deadline = Instant::now() + SETTLE_MAX;
        let mut last = self.read()?;
        let mut still_since = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(100));
            let now = self.read()?;
            if now.events() != last.events() {
                still_since = Instant::now();
            }
            last = now;
            let caught_up = last.events().saturating_sub(from.events()) >= want;
            if (caught_up && still_since.elapsed() >= SETTLE_QUIET) || Instant::now() >= deadline {
                return Ok(last);
            }
        }
    }
}

impl BusCounters {
    /// Every event counted: signalled, coalesced or dropped by the kernel.
    fn events(&self) -> u64 {
        self.emitted + self.coalesced + self.kernel_drops
    }
}

fn counter(all: &HashMap<String, OwnedValue>, key: &str) -> Result<u64> {
    let v = all
        .get(key)
        .ok_or_else(|| anyhow!("the service has no {key} property"))?;
    u64::try_from(v.try_clone().context("copying a property value")?)
        .with_context(|| format!("{key} is not a u64"))
}

/// Pairs each connection with the first signal for its port that arrived
/// after its `connect()` started and within `wait` of it, and returns the
/// latency of each connection (None: no signal within `wait`) and the
/// number of signals for a client port that matched no connection still
/// waiting (late ones). Signals for other ports (the accepted sides, whose
/// local port is the listener's) are ignored.
///
/// Signals are taken in arrival order and each port's connections in
/// start order, so a port the kernel reused pairs each use with its own
/// signal as long as signals of one port arrive in order.
pub fn match_signals(
    connects: &[workloads::Connect],
    seen: &[Seen],
    wait: Duration,
) -> (Vec<Option<Duration>>, u64) {
    let mut order: Vec<usize> = (0..connects.len()).collect();
    order.sort_by_key(|&i| connects[i].started);
    let mut by_port: HashMap<u16, VecDeque<usize>> = HashMap::new();
    for i in order {
        by_port.entry(connects[i].port).or_default().push_back(i);
    }
    let mut seen = seen.to_vec();
    seen.sort_by_key(|s| s.at);
    let mut latency = vec![None; connects.len()];
    let mut stray = 0u64;
    for s in &seen {
        // Not a port the client got: the accepted (server) side of a
        // connection, whose local port is the listener's.
        let Some(queue) = by_port.get_mut(&s.port) else {
            continue;
        };
        // Connections of this port whose wait is over before this signal
        // came never got theirs.
        while queue
            .front()
            .is_some_and(|&i| s.at.saturating_duration_since(connects[i].started) > wait)
        {
            queue.pop_front();
        }
        match queue.front() {
            Some(&i) if connects[i].started <= s.at => {
                latency[i] = Some(s.at - connects[i].started);
                queue.pop_front();
            }
            _ => stray += 1,
        }
    }
    (latency, stray)
}

/// Percentiles over every connection, a connection without a signal
/// counting as slower than any that got one.
pub fn summarize(connects: &[workloads::Connect], seen: &[Seen], wait: Duration) -> LatencySummary {
    let (latency, stray) = match_signals(connects, seen, wait);
    let mut got: Vec<Duration> = latency.iter().flatten().copied().collect();
    got.sort_unstable();
    let missing = (latency.len() - got.len()) as u64;
    LatencySummary {
        matched: got.len() as u64,
        missing,
        p50: report::percentile(&got, missing, 50.0),
        p99: report::percentile(&got, missing, 99.0),
        max: report::percentile(&got, missing, 100.0),
        stray,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(port: u16, started: Instant) -> Connect {
        Connect { port, started }
    }

    fn seen(port: u16, at: Instant) -> Seen {
        Seen { port, at }
    }
    use crate::workloads::Connect;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reads_the_default_signal_rate_from_help() {
        let help = "      --signal-rate <N>\n          Most ConnectionEvent signals per second on the bus; beyond it, each connection's pending\n          updates merge into its latest state (its `new` and its end are still signalled)\n          [config: signal-rate, default\n          5000]\n";
        assert_eq!(default_signal_rate(help), Some(5_000));
        assert_eq!(
            default_signal_rate("[config: signal-rate, default 500]"),
            Some(500)
        );
        assert_eq!(default_signal_rate("--signal-rate <N>"), None);
        assert_eq!(default_signal_rate("signal-rate, default lots"), None);
    }

    #[test]
    fn quick_runs_keep_the_ends() {
        assert_eq!(
            quick_steps(&DEFAULT_STEPS),
            vec![Some(500.0), Some(3_000.0)]
        );
        assert_eq!(quick_steps(&RAISED_STEPS), vec![Some(1_000.0), None]);
        assert_eq!(quick_steps(&[None]), vec![None]);
        assert_eq!(quick_steps(&[]), vec![]);
    }

    #[test]
    fn signals_pair_with_their_connections() {
        let t0 = Instant::now();
        let connects = [
            connect(40_000, t0),
            connect(40_001, t0 + ms(1)),
            connect(40_002, t0 + ms(2)),
        ];
        let seen = [
            // Out of arrival order on purpose.
            seen(40_001, t0 + ms(4)),
            seen(40_000, t0 + ms(3)),
            // The listener's side of some connection: ignored.
            seen(50_000, t0 + ms(5)),
            // A second signal for a port already paired: late.
            seen(40_000, t0 + ms(6)),
        ];
        let (lat, stray) = match_signals(&connects, &seen, ms(2_000));
        assert_eq!(lat, vec![Some(ms(3)), Some(ms(3)), None]);
        assert_eq!(stray, 1);
    }

    #[test]
    fn a_reused_port_pairs_each_use_with_its_own_signal() {
        let t0 = Instant::now();
        let connects = [connect(40_000, t0), connect(40_000, t0 + ms(10))];
        let seen = [seen(40_000, t0 + ms(1)), seen(40_000, t0 + ms(12))];
        let (lat, stray) = match_signals(&connects, &seen, ms(2_000));
        assert_eq!(lat, vec![Some(ms(1)), Some(ms(2))]);
        assert_eq!(stray, 0);
    }

    #[test]
    fn a_late_or_early_signal_does_not_count() {
        let t0 = Instant::now();
        let connects = [connect(40_000, t0 + ms(5)), connect(40_000, t0 + ms(3_000))];
        let seen = [
            // Before the connection started: someone else's.
            seen(40_000, t0 + ms(1)),
            // 2.5 s after the first use and before the second: too late
            // for the first, too early for the second.
            seen(40_000, t0 + ms(2_505)),
        ];
        let (lat, stray) = match_signals(&connects, &seen, ms(2_000));
        assert_eq!(lat, vec![None, None]);
        assert_eq!(stray, 2);
    }

    #[test]
    fn summary_ranks_missing_connections_last() {
        let t0 = Instant::now();
        let connects: Vec<Connect> = (0..100)
            .map(|i| Connect {
                port: 30_000 + i,
                started: t0,
            })
            .collect();
        // 99 signals, 1..=99 ms; port 30_099 never signalled.
        let seen: Vec<Seen> = (0..99)
            .map(|i| Seen {
                port: 30_000 + i,
                at: t0 + ms(u64::from(i) + 1),
            })
            .collect();
        let s = summarize(&connects, &seen, ms(2_000));
        assert_eq!((s.matched, s.missing, s.stray), (99, 1, 0));
        assert_eq!(s.p50, Some(ms(50)));
        assert_eq!(s.p99, Some(ms(99)));
        assert_eq!(s.max, None);
        let all = summarize(&connects[..99], &seen, ms(2_000));
        assert_eq!(all.max, Some(ms(99)));
        let none = summarize(&[], &[], ms(2_000));
        assert_eq!((none.matched, none.missing, none.p50), (0, 0, None));
    }
}
