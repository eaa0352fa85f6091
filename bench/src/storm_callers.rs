//! The storm-with-Snapshot-callers case: leco-service on a private
//! system-like bus (`leco_testkit::bus::TestBus`) under paced connection
//! churn while clients, each on a bus connection of its own, call
//! `Snapshot()` back to back; then the same storm without callers, so that
//! what the callers cost reads as a ratio. What matters is that the kernel
//! reader keeps up (`KernelDrops` stays 0) and that calls are answered in
//! bounded time and memory.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use leco_proto::{BUS_NAME, INTERFACE, OBJECT_PATH};
use leco_testkit::bus::TestBus;

use crate::dbus::{self, Props};
use crate::report::{self, Report, SnapshotCalls, StormCallers, StormRun, DRAIN, STORM_RATE};
use crate::service::{self, ProcSample};
use crate::{workloads, Interference, Plan};

/// How far into the storm the callers start: the table is full of the
/// storm's connections by then and the reader is busy.
pub const CALLERS_AFTER: Duration = Duration::from_secs(1);
/// How long one call is waited for; beyond it the call counts as not
/// answered and its caller makes no more (a service that stopped answering
/// must not hold the bench for 20 × this).
pub const CALL_WAIT: Duration = Duration::from_secs(10);

/// Both runs on one private bus: first the storm alone, then with callers.
pub fn phase(service: &Path, plan: &Plan, r: &mut Report) -> Result<StormCallers> {
    // On this thread: the daemon is killed when the thread that started
    // it exits.
    let bus = TestBus::start().context("storm with callers: starting a private dbus-daemon")?;
    eprintln!(
        "leco-bench: storm with callers: private bus at {}",
        bus.address()
    );
    let baseline = storm(service, plan, &bus, None, r)?;
    let callers = Callers {
        count: plan.storm_callers,
        calls_each: plan.storm_calls,
    };
    let with_callers = storm(service, plan, &bus, Some(callers), r)?;
    Ok(StormCallers {
        callers_after: CALLERS_AFTER,
        call_wait: CALL_WAIT,
        baseline,
        with_callers,
        callers: callers.count,
        calls_each: callers.calls_each,
    })
}

/// Who calls `Snapshot()` during a storm.
#[derive(Debug, Clone, Copy)]
struct Callers {
    count: usize,
    calls_each: usize,
}

/// What the storm thread measured: the churn, and the service's and the
/// daemon's samples [`DRAIN`] after it, so that the CPU window is the
/// storm's whether or not callers are still at work.
struct StormEnd {
    churn: workloads::Churn,
    service: Result<ProcSample>,
    daemon: Option<ProcSample>,
}

/// One fresh service on `bus`, a storm of [`STORM_RATE`] conn/s for
/// `plan.storm`, and `callers` from [`CALLERS_AFTER`] into it.
fn storm(
    path: &Path,
    plan: &Plan,
    bus: &TestBus,
    callers: Option<Callers>,
    r: &mut Report,
) -> Result<StormRun> {
    let what = match callers {
        None => "storm without callers".to_owned(),
        Some(c) => format!("storm with {} Snapshot callers × {}", c.count, c.calls_each),
    };
    let mut svc = crate::start_bus_service(path, bus.address(), &[], &what, &mut r.notes)?;
    let ours = svc.prog_ids();
    let props = Props::connect(bus.address()).with_context(|| what.clone())?;
    let ticks = service::clock_ticks_per_s();
    thread::sleep(plan.idle);
    let mut seen = Interference::default();
    seen.look(&ours)?;
    let c0 = props.read()?;
    let s0 = svc.sample()?;
    let d0 = ProcSample::read(bus.pid()).ok();
    let (svc_pid, bus_pid, duration) = (svc.pid(), bus.pid(), plan.storm);
    let started = Instant::now();
    let storm = thread::Builder::new()
        .name("storm".into())
        .spawn(move || -> Result<StormEnd> {
            let churn = workloads::churn(duration, Some(STORM_RATE))?;
            thread::sleep(DRAIN);
            Ok(StormEnd {
                churn,
                service: ProcSample::read(svc_pid),
                daemon: ProcSample::read(bus_pid).ok(),
            })
        })
        .context("storm: spawning its thread")?;
    let calls = callers.map(|c| {
        thread::sleep(CALLERS_AFTER);
        call_snapshots(bus.address(), c, started)
    });
    // Joined before any error of the callers is returned: the storm thread
    // must not outlive this run.
    let end = storm
        .join()
        .map_err(|_| anyhow!("{what}: the storm thread panicked"))?
        .with_context(|| what.clone())?;
    let calls = calls.transpose().with_context(|| what.clone())?;
    let s1 = end.service?;
    // Callers may outlast the storm: the peak is read once they are done.
    let peak = svc.sample()?;
    let c1 = props.read()?;
    seen.look(&ours)?;
    seen.note(&what, r);
    svc.check_running()?;
    crate::stop_service(svc, &what, &mut r.notes)?;
    let calls = calls.map(Tally::summary);
    let run = StormRun {
        target_rate: STORM_RATE,
        achieved_rate: end.churn.per_s(),
        connections: end.churn.connections,
        window: end.churn.elapsed,
        calls,
        service_cpu_pct: service::cpu_percent(&s0, &s1, ticks),
        daemon_cpu_pct: d0
            .zip(end.daemon)
            .map(|(a, b)| service::cpu_percent(&a, &b, ticks)),
        rss_kib: s1.rss_kib,
        hwm_kib: peak.hwm_kib,
        kernel_drops: c1.kernel_drops.saturating_sub(c0.kernel_drops),
        trimmed: c0.trimmed.zip(c1.trimmed).map(|(a, b)| b.saturating_sub(a)),
    };
    eprintln!(
        "leco-bench: {what}: {} connections, {} conn/s; {}service {} of one core, peak RSS {} KiB, {} kernel drops",
        run.connections,
        report::fmt_num(run.achieved_rate, 0),
        run.calls.as_ref().map_or(String::new(), |c| format!(
            "{} of {} calls answered, p50 {} p99 {} max {}; ",
            c.answered,
            c.asked,
            report::fmt_latency(c.p50, CALL_WAIT),
            report::fmt_latency(c.p99, CALL_WAIT),
            report::fmt_latency(c.max, CALL_WAIT),
        )),
        report::fmt_pct(run.service_cpu_pct),
        run.hwm_kib,
        run.kernel_drops,
    );
    Ok(run)
}

/// What the callers got, before it is summarised.
#[derive(Debug, Default)]
struct Tally {
    /// Each answered call's time from the call to its reply.
    answered: Vec<Duration>,
    /// Calls answered with an error.
    failed: u64,
    /// Calls not answered within [`CALL_WAIT`].
    timed_out: u64,
    /// Calls not made because an earlier one of the same caller timed out.
    skipped: u64,
    /// The largest reply body, bytes.
    largest: usize,
    /// The first error reply, to tell what it was.
    first_error: Option<String>,
    /// From the storm's start to the first call.
    first_call: Duration,
    /// From the storm's start to the last answer (or give-up).
    last_answer: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.answered.extend(other.answered);
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        self.skipped += other.skipped;
        self.largest = self.largest.max(other.largest);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_answer = self.last_answer.max(other.last_answer);
    }

    /// Percentiles over every call asked for, those not answered ranking
    /// above all that were.
    fn summary(mut self) -> SnapshotCalls {
        self.answered.sort_unstable();
        let unanswered = self.failed + self.timed_out + self.skipped;
        let p = |q| report::percentile(&self.answered, unanswered, q);
        SnapshotCalls {
            asked: self.answered.len() as u64 + unanswered,
            answered: self.answered.len() as u64,
            failed: self.failed,
            timed_out: self.timed_out + self.skipped,
            p50: p(50.0),
            p99: p(99.0),
            max: p(100.0),
            largest_reply: self.largest,
            first_error: self.first_error,
            first_call: self.first_call,
            last_answer: self.last_answer,
        }
    }
}

/// `c.count` callers, each on a bus connection of its own, calling
/// `Snapshot()` `c.calls_each` times back to back, on one current-thread
/// runtime (the calls wait on the service, not on this thread); `storm`
/// is when the storm started.
fn call_snapshots(address: &str, c: Callers, storm: Instant) -> Result<Tally> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("callers: tokio runtime")?;
    rt.block_on(async {
        // All connected before any calls, so that they all call at once.
        let mut conns = Vec::with_capacity(c.count);
        for _ in 0..c.count {
            conns.push(dbus::connect(address).await?);
        }
        let first_call = storm.elapsed();
        let callers: Vec<_> = conns
            .into_iter()
            .map(|conn| tokio::spawn(caller(conn, c.calls_each, storm)))
            .collect();
        let mut all = Tally {
            first_call,
            ..Tally::default()
        };
        for t in callers {
            all.add(t.await.context("a Snapshot caller panicked")?);
        }
        Ok(all)
    })
}

/// One caller: `calls` calls of `Snapshot()`, each as soon as the last is
/// answered, timing each and keeping the reply undecoded (decoding would
/// put the bench's CPU on the cores the service needs).
async fn caller(conn: zbus::Connection, calls: usize, storm: Instant) -> Tally {
    let mut t = Tally::default();
    for i in 0..calls {
        let asked = Instant::now();
        let call = conn.call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            Some(INTERFACE),
            "Snapshot",
            &(),
        );
        match tokio::time::timeout(CALL_WAIT, call).await {
            Ok(Ok(reply)) => {
                t.answered.push(asked.elapsed());
                t.largest = t.largest.max(reply.body().len());
            }
            Ok(Err(e)) => {
                t.failed += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                t.timed_out += 1;
                t.skipped = (calls - i - 1) as u64;
                break;
            }
        }
    }
    t.last_answer = storm.elapsed();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unanswered_calls_rank_above_every_answer() {
        let mut all = Tally {
            first_call: ms(1_000),
            ..Tally::default()
        };
        all.add(Tally {
            answered: (1..=98).map(ms).collect(),
            largest: 10,
            last_answer: ms(3_000),
            ..Tally::default()
        });
        all.add(Tally {
            failed: 1,
            first_error: Some("org.freedesktop.DBus.Error.LimitsExceeded".into()),
            answered: vec![ms(500)],
            largest: 20,
            last_answer: ms(4_000),
            ..Tally::default()
        });
        let s = all.summary();
        assert_eq!(
            (s.asked, s.answered, s.failed, s.timed_out),
            (100, 99, 1, 0)
        );
        assert_eq!(s.p50, Some(ms(50)));
        assert_eq!(s.p99, Some(ms(500)));
        assert_eq!(s.max, None);
        assert_eq!(s.largest_reply, 20);
        assert_eq!((s.first_call, s.last_answer), (ms(1_000), ms(4_000)));
        assert!(s.first_error.is_some_and(|e| e.contains("LimitsExceeded")));
    }

    #[test]
    fn a_timed_out_caller_counts_the_calls_it_did_not_make() {
        let t = Tally {
            answered: vec![ms(5)],
            timed_out: 1,
            skipped: 18,
            ..Tally::default()
        };
        let s = t.summary();
        assert_eq!((s.asked, s.answered, s.timed_out), (20, 1, 19));
        assert_eq!(s.p50, None);
    }
}
