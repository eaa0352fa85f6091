//! The database's layout, and how a file is opened: WAL, so that readers
//! (`History()`, `Totals()`) never wait for the writer and a crash loses at
//! most the transaction being written, never what was committed.

use rusqlite::Connection;

/// `PRAGMA user_version` of this layout.
pub const VERSION: i64 = 1;

/// Every table, created if missing.
///
/// - `meta`: when this store was made (the warm-up counts from it).
/// - `programs`: a program identity, first and last seen, totals.
/// - `destinations`: per program, a remote (name, else address), port and
///   protocol, first and last seen, totals.
/// - `connections`: ended connections, newest last: the columns `Totals()`
///   groups and sums, narrow so that a month of them scans fast;
/// - `records`: each one's whole record as the service published it
///   (JSON, by the same id), so that `History()` gives back every key,
///   including ones added after the row was written.
/// - `live`: the live connections' records when the service last stopped,
///   with the load of the kernel objects they belong to (flow ids count
///   from 1 in each load, which a reboot or a full stop ends), so that
///   a restarted service gives them back as they were known (owners that
///   exited since, names learnt); read once and emptied at the next start.
pub const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS programs (
    id INTEGER PRIMARY KEY,
    program TEXT NOT NULL UNIQUE,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    connections INTEGER NOT NULL,
    rx_bytes INTEGER NOT NULL,
    tx_bytes INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS destinations (
    program INTEGER NOT NULL REFERENCES programs(id) ON DELETE CASCADE,
    remote TEXT NOT NULL,
    port INTEGER NOT NULL,
    proto TEXT NOT NULL,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    connections INTEGER NOT NULL,
    rx_bytes INTEGER NOT NULL,
    tx_bytes INTEGER NOT NULL,
    PRIMARY KEY (program, remote, port, proto)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS connections (
    id INTEGER PRIMARY KEY,
    first_us INTEGER NOT NULL,
    ended_us INTEGER NOT NULL,
    program TEXT NOT NULL,
    unit TEXT,
    user TEXT,
    remote TEXT NOT NULL,
    port INTEGER NOT NULL,
    proto TEXT NOT NULL,
    rx_bytes INTEGER NOT NULL,
    tx_bytes INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS connections_by_end ON connections (ended_us);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    record TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS live (
    id INTEGER PRIMARY KEY,
    load TEXT NOT NULL,
    record TEXT NOT NULL
) STRICT;
";

/// Sets the connection up: WAL with `synchronous=NORMAL` (a commit is
/// durable against a crash of the service, and against power loss up to
/// the last checkpoint; the file is never left corrupt), foreign keys, a
/// wait instead of an error while another connection writes, and room to
/// give pages back (incremental vacuum, used after pruning).
pub fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Only takes effect on a new file (before the first table).
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("the store's journal mode is {mode}, not WAL: readers may wait");
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )
}
