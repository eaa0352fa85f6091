//! Writes off the event path: the service hands ended connections to a
//! bounded queue and goes on; a thread of its own commits them in one
//! transaction a second (or sooner, once a batch is full), and prunes by
//! age and size once a minute. A full queue drops (and counts) rather than
//! slow the service down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

/// Connections (and first sightings) waiting to be written, at most: two
/// commits' worth at 1,000 a second, some 10 MiB with the largest records.
pub const QUEUE_MAX: usize = 2_048;

/// Rows per transaction, at most.
const BATCH: usize = 2_000;

/// How long a connection waits to be written, at most.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How often the store is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How much to keep.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections that ended longer ago go, and programs and destinations
    /// not seen since.
    pub retention: Duration,
    /// Past this size of the database file, the oldest connections go.
    pub max_bytes: u64,
}

/// One connection, as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// First seen and ended, realtime µs.
    pub first_us: u64,
    pub ended_us: u64,
    /// The program's identity (see the service's `program` key).
    pub program: String,
    pub unit: Option<String>,
    pub user: Option<String>,
    /// The remote's name when known, else its address.
    pub remote: String,
    pub port: u16,
    pub proto: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// The connection as the service published it, as JSON.
    pub record: String,
}

/// A program, and a destination of it, seen for the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// When, realtime µs.
    pub at_us: u64,
    pub program: String,
    pub remote: String,
    pub port: u16,
    pub proto: String,
}

/// What a batch writes.
enum Row {
    Seen(Box<Sighting>),
    Ended(Box<Ended>),
}

enum Op {
    Row(Row),
    /// Replace the live records with these (load, then id and JSON),
    /// then answer.
    Live(String, Vec<(u64, String)>, SyncSender<()>),
    /// Commit now, then answer.
    Flush(SyncSender<()>),
    /// Prune now (with this clock, realtime µs), then answer.
    Prune(u64, SyncSender<()>),
}

/// The sending side; dropping it commits what is queued and stops the
/// thread.
#[derive(Debug)]
pub struct Writer {
    queue: Option<SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
}

/// What the writer did.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Connections committed.
    pub written: AtomicU64,
    /// Connections dropped: the queue was full, or a write failed.
    pub dropped: AtomicU64,
    /// Connections removed by pruning.
    pub pruned: AtomicU64,
}

impl Writer {
    pub(crate) fn start(conn: Connection, limits: Limits, now_us: fn() -> u64) -> Writer {
        let (tx, rx) = mpsc::sync_channel(QUEUE_MAX);
        let stats = Arc::new(WriterStats::default());
        let s = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("leco-store".into())
            .spawn(move || write_loop(conn, rx, limits, now_us, &s))
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the store's writer thread: nothing is remembered");
        }
        Writer {
            queue: thread.as_ref().map(|_| tx),
            thread,
            stats,
        }
    }

    /// Queues `ended`; false (and counted) if the queue is full.
    pub fn record(&self, ended: Ended) -> bool {
        self.queue(Row::Ended(Box::new(ended)))
    }

    /// Queues a first sighting, so that what is known survives a crash
    /// before the connection ends; false (and counted) if the queue is full.
    pub fn seen(&self, sighting: Sighting) -> bool {
        self.queue(Row::Seen(Box::new(sighting)))
    }

    /// Replaces the live connections' records (id and JSON) kept for the
    /// next start on the same `load` of the kernel objects, once what is
    /// queued is written.
    pub fn keep_live(&self, load: &str, records: Vec<(u64, String)>) {
        let load = load.to_owned();
        self.ask(|ack| Op::Live(load, records, ack));
    }

    fn queue(&self, row: Row) -> bool {
        let Some(q) = &self.queue else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match q.try_send(Op::Row(row)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Commits everything queued before this call.
    pub fn flush(&self) {
        self.ask(Op::Flush);
    }

    /// Prunes now as if the time were `now_us`.
    pub fn prune_at(&self, now_us: u64) {
        self.ask(|ack| Op::Prune(now_us, ack));
    }

    fn ask(&self, op: impl FnOnce(SyncSender<()>) -> Op) {
        let Some(q) = &self.queue else { return };
        let (ack, done) = mpsc::sync_channel(1);
        if q.send(op(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Its counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the loop after a last commit.
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(
    mut conn: Connection,
    rx: Receiver<Op>,
    limits: Limits,
    now_us: fn() -> u64,
    stats: &WriterStats,
) {
    let mut batch: Vec<Row> = Vec::with_capacity(BATCH);
    let mut oldest = Instant::now();
    let mut pruned_at = Instant::now();
    loop {
        let wait = if batch.is_empty() {
            PRUNE_EVERY
        } else {
            COMMIT_EVERY.saturating_sub(oldest.elapsed())
        };
        match rx.recv_timeout(wait) {
            Ok(Op::Row(row)) => {
                if batch.is_empty() {
                    oldest = Instant::now();
                }
                batch.push(row);
                if batch.len() < BATCH {
                    continue;
                }
            }
            Ok(Op::Flush(ack)) => {
                commit(&mut conn, &mut batch, stats);
                let _ = ack.send(());
                continue;
            }
            Ok(Op::Live(load, records, ack)) => {
                commit(&mut conn, &mut batch, stats);
                if let Err(e) = keep_live(&mut conn, &load, &records) {
                    tracing::warn!("the store could not keep the live connections: {e}");
                }
                let _ = ack.send(());
                continue;
            }
            Ok(Op::Prune(now, ack)) => {
                commit(&mut conn, &mut batch, stats);
                prune(&conn, limits, now, stats);
                pruned_at = Instant::now();
                let _ = ack.send(());
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                commit(&mut conn, &mut batch, stats);
                return;
            }
        }
        commit(&mut conn, &mut batch, stats);
        if pruned_at.elapsed() >= PRUNE_EVERY {
            prune(&conn, limits, now_us(), stats);
            pruned_at = Instant::now();
        }
    }
}

/// Writes `batch` in one transaction and empties it.
fn commit(conn: &mut Connection, batch: &mut Vec<Row>, stats: &WriterStats) {
    if batch.is_empty() {
        return;
    }
    let n = batch.iter().filter(|r| matches!(r, Row::Ended(_))).count() as u64;
    match write(conn, batch) {
        Ok(()) => {
            stats.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            stats.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::warn!("the store could not write {n} connections: {e}");
        }
    }
    batch.clear();
}

fn write(conn: &mut Connection, batch: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut first_program = tx.prepare_cached(
            "INSERT INTO programs (program, first_us, last_us, connections, rx_bytes, tx_bytes)
             VALUES (?1, ?2, ?2, 0, 0, 0)
             ON CONFLICT (program) DO UPDATE SET last_us = max(last_us, excluded.last_us)
             RETURNING id",
        )?;
        let mut first_destination = tx.prepare_cached(
            "INSERT OR IGNORE INTO destinations
                (program, remote, port, proto, first_us, last_us, connections, rx_bytes, tx_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, 0, 0)",
        )?;
        let mut program = tx.prepare_cached(
            "INSERT INTO programs (program, first_us, last_us, connections, rx_bytes, tx_bytes)
             VALUES (?1, ?2, ?3, 1, ?4, ?5)
             ON CONFLICT (program) DO UPDATE SET
                first_us = min(first_us, excluded.first_us),
                last_us = max(last_us, excluded.last_us),
                connections = connections + 1,
                rx_bytes = rx_bytes + excluded.rx_bytes,
                tx_bytes = tx_bytes + excluded.tx_bytes
             RETURNING id",
        )?;
        let mut destination = tx.prepare_cached(
            "INSERT INTO destinations
                (program, remote, port, proto, first_us, last_us, connections, rx_bytes, tx_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8)
             ON CONFLICT (program, remote, port, proto) DO UPDATE SET
                first_us = min(first_us, excluded.first_us),
                last_us = max(last_us, excluded.last_us),
                connections = connections + 1,
                rx_bytes = rx_bytes + excluded.rx_bytes,
                tx_bytes = tx_bytes + excluded.tx_bytes",
        )?;
        let mut connection = tx.prepare_cached(
            "INSERT INTO connections (first_us, ended_us, program, unit, user, remote, port,
                proto, rx_bytes, tx_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut record = tx.prepare_cached("INSERT INTO records (id, record) VALUES (?1, ?2)")?;
        for row in batch {
            let e = match row {
                Row::Ended(e) => e,
                Row::Seen(s) => {
                    let at = sql_u64(s.at_us);
                    let id: i64 = first_program.query_row(params![s.program, at], |r| r.get(0))?;
                    first_destination.execute(params![id, s.remote, s.port, s.proto, at])?;
                    continue;
                }
            };
            let (first, ended) = (sql_u64(e.first_us), sql_u64(e.ended_us));
            let (rx, txb) = (sql_u64(e.rx_bytes), sql_u64(e.tx_bytes));
            let id: i64 =
                program.query_row(params![e.program, first, ended, rx, txb], |r| r.get(0))?;
            destination.execute(params![
                id, e.remote, e.port, e.proto, first, ended, rx, txb
            ])?;
            connection.execute(params![
                first, ended, e.program, e.unit, e.user, e.remote, e.port, e.proto, rx, txb
            ])?;
            record.execute(params![tx.last_insert_rowid(), e.record])?;
        }
    }
    tx.commit()
}

fn keep_live(conn: &mut Connection, load: &str, records: &[(u64, String)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM live", [])?;
    {
        let mut insert = tx
            .prepare_cached("INSERT OR REPLACE INTO live (id, load, record) VALUES (?1, ?2, ?3)")?;
        for (id, record) in records {
            insert.execute(params![sql_u64(*id), load, record])?;
        }
    }
    tx.commit()
}

/// SQLite integers are signed: counters past 2^63 stay at the top.
pub(crate) fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Removes what is older than the retention, then the oldest connections
/// while the file is larger than allowed.
fn prune(conn: &Connection, limits: Limits, now_us: u64, stats: &WriterStats) {
    let cutoff = sql_u64(now_us.saturating_sub(limits.retention.as_micros() as u64));
    let result = (|| -> rusqlite::Result<u64> {
        conn.execute(
            "DELETE FROM records WHERE id IN (SELECT id FROM connections WHERE ended_us < ?1)",
            [cutoff],
        )?;
        let mut removed =
            conn.execute("DELETE FROM connections WHERE ended_us < ?1", [cutoff])? as u64;
        conn.execute("DELETE FROM destinations WHERE last_us < ?1", [cutoff])?;
        conn.execute("DELETE FROM programs WHERE last_us < ?1", [cutoff])?;
        // A tenth of what is left at a time, until it fits (or is empty):
        // some 50 rounds take a million rows down to one.
        loop {
            conn.execute_batch("PRAGMA incremental_vacuum;")?;
            if size(conn)? <= limits.max_bytes {
                break;
            }
            let left: i64 = conn.query_row("SELECT count(*) FROM connections", [], |r| r.get(0))?;
            if left == 0 {
                break;
            }
            // The writer is the only one to write: both see the same oldest.
            let oldest = "SELECT id FROM connections ORDER BY ended_us LIMIT ?1";
            let n = (left / 10).max(1);
            conn.execute(&format!("DELETE FROM records WHERE id IN ({oldest})"), [n])?;
            removed += conn.execute(
                &format!("DELETE FROM connections WHERE id IN ({oldest})"),
                [n],
            )? as u64;
        }
        conn.execute_batch("PRAGMA incremental_vacuum;")?;
        Ok(removed)
    })();
    match result {
        Ok(n) => {
            stats.pruned.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!("the store could not be pruned: {e}"),
    }
}

/// The database's size in bytes, free pages not counted.
pub(crate) fn size(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * page) as u64)
}
