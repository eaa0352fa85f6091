//! The store case: what remembering costs. Paced churn at 1,000 new
//! connections a second through the service without a store and with one
//! (its CPU, the rows written a second, any dropped); then a store of a
//! month (1 million ended connections over 30 days, written by leco-store
//! itself as the service would) for its size per 100,000 connections and
//! the latency of `History()` and `Totals()` over it, asked of the real
//! service on a private bus.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use leco_proto::{Connection, Direction, Proto};
use leco_store::{Ended, Limits, Store, FILE};
use leco_testkit::bus::TestBus;

use crate::report::{QueryTime, Report, StoreBench, StoreLeg, DRAIN};
use crate::service;
use crate::workloads::churn;
use crate::{start_bus_service, start_service, stop_service, Plan};

/// New connections a second through the service.
const RATE: f64 = 1_000.0;

/// Calls of each question, for its median and worst.
const CALLS: usize = 5;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A scratch state directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("leco-bench-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The store's files, in bytes (the database and its write-ahead log).
fn store_bytes(dir: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|ext| std::fs::metadata(dir.join(format!("{FILE}{ext}"))).ok())
        .map(|m| m.len())
        .sum()
}

pub fn phase(service: &Path, plan: &Plan, r: &mut Report) -> Result<StoreBench> {
    let churn_for = if plan.quick {
        Duration::from_secs(2)
    } else {
        plan.paced
    };
    let mut legs = Vec::new();
    for with_store in [false, true] {
        let state = Scratch::new("store-churn")?;
        let dir = state.0.to_str().context("UTF-8 scratch path")?.to_owned();
        let extra: Vec<&str> = if with_store {
            vec!["--state-dir", &dir, "--warm-up", "0"]
        } else {
            vec![]
        };
        let what = if with_store {
            "store: churn with a store"
        } else {
            "store: churn without a store"
        };
        let svc = start_service(service, &extra, what, &mut r.notes)?;
        std::thread::sleep(plan.idle);
        let from = svc.sample()?;
        let c = churn(churn_for, Some(RATE))?;
        std::thread::sleep(DRAIN + Duration::from_secs(1));
        let to = svc.sample()?;
        let stopped = stop_service(svc, what, &mut r.notes)?;
        let counters = stopped.counters.as_ref();
        legs.push(StoreLeg {
            with_store,
            connections: c.connections,
            time: c.elapsed,
            cpu: service::cpu_between(&from, &to, service::clock_ticks_per_s()),
            stored: counters.and_then(|k| k.get("stored")),
            dropped: counters.and_then(|k| k.get("store_dropped")),
            bytes: with_store.then(|| store_bytes(&state.0)),
        });
    }

    let rows: u64 = if plan.quick { 100_000 } else { 1_000_000 };
    let month = Scratch::new("store-month")?;
    let t0 = Instant::now();
    write_month(&month.0, rows)?;
    let build = t0.elapsed();
    let month_bytes = store_bytes(&month.0);
    eprintln!(
        "leco-bench: store: {rows} connections over 30 days written in {:.1} s, {} MiB",
        build.as_secs_f64(),
        month_bytes >> 20
    );
    let queries = ask_month(service, &month.0, r)?;
    Ok(StoreBench {
        rate: RATE,
        legs,
        month_rows: rows,
        month_build: build,
        month_bytes,
        queries,
        calls: CALLS,
    })
}

/// A realistic spread: 200 programs, 20,000 remotes, 5 users, 50 units.
fn record(i: u64, ended_us: u64) -> Ended {
    let program = format!("program-{}", i % 200);
    let remote = format!("host{}.example.org", (i * 7_919) % 20_000);
    let user = format!("user{}", i % 5);
    let unit = format!("app-{}.scope", i % 50);
    let c = Connection {
        direction: Some(Direction::Out),
        state: "closed".into(),
        local_addr: "10.0.0.2".into(),
        local_port: (32_768 + i % 28_000) as u16,
        remote_addr: format!("203.0.{}.{}", (i / 256) % 256, i % 256).into(),
        remote_port: 443,
        remote_name: Some(remote.as_str().into()),
        pid: Some(1_000 + (i % 30_000) as u32),
        comm: Some(program.as_str().into()),
        program: Some(program.as_str().into()),
        exe: Some(format!("/usr/bin/{program}").into()),
        uid: Some(1_000 + (i % 5) as u32),
        user: Some(user.as_str().into()),
        cgroup: Some(format!("/user.slice/user-1000.slice/{unit}").into()),
        unit: Some(unit.as_str().into()),
        first_seen_us: ended_us.saturating_sub(30_000_000),
        last_seen_us: ended_us,
        rx_bytes: 20_000 + i % 100_000,
        tx_bytes: 2_000 + i % 10_000,
        ..leco_proto::example::bare(i + 1, Proto::Tcp)
    };
    Ended {
        first_us: c.first_seen_us,
        ended_us,
        program,
        unit: Some(unit),
        user: Some(user),
        remote,
        port: 443,
        proto: "tcp".into(),
        rx_bytes: c.rx_bytes,
        tx_bytes: c.tx_bytes,
        record: serde_json::to_string(&c).unwrap_or_default(),
    }
}

/// Writes `rows` ended connections spread evenly over the last 30 days.
fn write_month(dir: &Path, rows: u64) -> Result<()> {
    let now = now_us();
    let span = 30 * 86_400_000_000u64;
    let start = now - span;
    let store = Store::open(dir, start).context("store: opening the month's store")?;
    let keep = Limits {
        retention: Duration::from_secs(3_650 * 86_400),
        max_bytes: u64::MAX,
    };
    let writer = store.into_writer(keep, now_us);
    for i in 0..rows {
        // Flushed every 2,000: the queue (2,048) never fills.
        if !writer.record(record(i, start + span / rows * i)) {
            anyhow::bail!("store: the writer's queue was full at row {i}");
        }
        if i % 2_000 == 1_999 {
            writer.flush();
        }
    }
    drop(writer);
    Ok(())
}

/// Asks the real service, serving the month's store on a private bus,
/// each question [`CALLS`] times.
fn ask_month(service: &Path, dir: &Path, r: &mut Report) -> Result<Vec<QueryTime>> {
    let bus = TestBus::start().context("store: starting a private dbus-daemon")?;
    let state = dir.to_str().context("UTF-8 path")?;
    let svc = start_bus_service(
        service,
        bus.address(),
        &["--state-dir", state, "--store-max-mib", "1048576"],
        "store: a month's store",
        &mut r.notes,
    )?;
    let now = now_us();
    let hour = 3_600_000_000u64;
    let questions: [(&str, Question); 5] = [
        (
            "History(last hour, 100)",
            Question::History(now - hour, now, 100),
        ),
        ("History(all, 1,000)", Question::History(0, u64::MAX, 1_000)),
        (
            "Totals(last day, program)",
            Question::Totals(now - 24 * hour, "program"),
        ),
        ("Totals(30 days, program)", Question::Totals(0, "program")),
        ("Totals(30 days, remote)", Question::Totals(0, "remote")),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address())?
            .method_timeout(Duration::from_secs(60))
            .build()
            .await?;
        let mut out = Vec::new();
        for (name, q) in questions {
            let mut times = Vec::new();
            let mut answers = 0;
            for _ in 0..CALLS {
                let t = Instant::now();
                let reply = match q {
                    Question::History(since, until, limit) => {
                        call(&conn, "History", &(since, until, limit)).await?
                    }
                    Question::Totals(since, by) => call(&conn, "Totals", &(since, by)).await?,
                };
                times.push(t.elapsed());
                let rows: Vec<std::collections::HashMap<String, zbus::zvariant::OwnedValue>> =
                    reply.body().deserialize()?;
                answers = rows.len();
            }
            times.sort();
            out.push(QueryTime {
                name: name.to_owned(),
                median: times[times.len() / 2],
                max: times[times.len() - 1],
                answers,
            });
        }
        anyhow::Ok(out)
    })?;
    stop_service(svc, "store: a month's store", &mut r.notes)?;
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Question {
    History(u64, u64, u32),
    Totals(u64, &'static str),
}

async fn call<B>(conn: &zbus::Connection, member: &str, body: &B) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(
        Some(leco_proto::BUS_NAME),
        leco_proto::OBJECT_PATH,
        Some(leco_proto::INTERFACE),
        member,
        body,
    )
    .await
}
