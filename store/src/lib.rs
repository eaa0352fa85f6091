//! What leco remembers across restarts, in one SQLite file (WAL): the
//! programs that used the network and the destinations each talked to
//! (first and last seen, totals), and the connections that ended, for
//! `History()` and `Totals()`. The service decides what is new with
//! [`Known`] in memory, hands ended connections to the [`Writer`] (batched,
//! off the event path), and answers questions from a [`Reader`] of its
//! own, which never waits for the writer.
//!
//! Crash-safety is SQLite's: a `kill -9` loses at most the batch being
//! written (one second), and the file always opens.

mod known;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};

pub use known::{Destination, Known, Novelty, Seen, KNOWN_MAX};
pub use writer::{Ended, Limits, Sighting, Writer, WriterStats, COMMIT_EVERY, QUEUE_MAX};

/// The store's file in its directory.
pub const FILE: &str = "leco.sqlite";

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{}: made by a newer leco (layout {found}, this one knows {known}); \
         move it away to start afresh",
        path.display()
    )]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Connection,
    created_us: u64,
}

impl Store {
    /// Opens (creating if need be) the store in directory `dir`; `now_us`
    /// (realtime µs) is its birth if it is new.
    pub fn open(dir: &Path, now_us: u64) -> Result<Store, StoreError> {
        let path = dir.join(FILE);
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        schema::prepare(&conn).map_err(err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if found > schema::VERSION {
            return Err(StoreError::Newer {
                path,
                found,
                known: schema::VERSION,
            });
        }
        conn.execute_batch(schema::TABLES).map_err(err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {}", schema::VERSION))
            .map_err(err)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_us', ?1)",
            [writer::sql_u64(now_us)],
        )
        .map_err(err)?;
        let created: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'created_us'", [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        Ok(Store {
            path,
            conn,
            created_us: created.max(0) as u64,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the store was made (realtime µs).
    pub fn created_us(&self) -> u64 {
        self.created_us
    }

    /// Everything known, with nothing new until `warm_up` after the store
    /// was made.
    pub fn known(&self, warm_up: Duration) -> Result<Known, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let quiet = self.created_us.saturating_add(warm_up.as_micros() as u64);
        let mut known = Known::new(quiet);
        let mut programs = self
            .conn
            .prepare("SELECT program FROM programs")
            .map_err(err)?;
        let rows = programs
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(err)?;
        for p in rows {
            known.learn(&p.map_err(err)?, None);
        }
        let mut destinations = self
            .conn
            .prepare(
                "SELECT p.program, d.remote, d.port, d.proto
                 FROM destinations d JOIN programs p ON p.id = d.program",
            )
            .map_err(err)?;
        let rows = destinations
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u16>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(err)?;
        for row in rows {
            let (program, remote, port, proto) = row.map_err(err)?;
            let d = Destination {
                remote: &remote,
                port,
                proto: &proto,
            };
            known.learn(&program, Some(&d));
        }
        Ok(known)
    }

    /// The live connections' records kept when the service last stopped
    /// on this `load` of the kernel objects (JSON), taken: the next stop
    /// keeps its own. Those of another load are dropped (their ids mean
    /// nothing now).
    pub fn take_live(&self, load: &str) -> Result<Vec<String>, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut q = self
            .conn
            .prepare("SELECT record FROM live WHERE load = ?1 ORDER BY id")
            .map_err(err)?;
        let records = q
            .query_map([load], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        self.conn.execute("DELETE FROM live", []).map_err(err)?;
        Ok(records)
    }

    /// Starts writing on a thread of its own, pruning to `limits` with the
    /// clock `now_us` (realtime µs).
    pub fn into_writer(self, limits: Limits, now_us: fn() -> u64) -> Writer {
        Writer::start(self.conn, limits, now_us)
    }
}

/// A read-only connection, for questions.
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    conn: Connection,
}

/// What [`Reader::totals`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Program,
    Unit,
    User,
    Remote,
}

impl GroupBy {
    /// From the word `Totals()` takes.
    pub fn from_word(w: &str) -> Option<GroupBy> {
        Some(match w {
            "program" => GroupBy::Program,
            "unit" => GroupBy::Unit,
            "user" => GroupBy::User,
            "remote" => GroupBy::Remote,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Program => "program",
            GroupBy::Unit => "unit",
            GroupBy::User => "user",
            GroupBy::Remote => "remote",
        }
    }
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// The group (absent for connections without one, e.g. no unit).
    pub key: Option<String>,
    pub connections: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// First seen and last ended, realtime µs.
    pub first_us: u64,
    pub last_us: u64,
}

impl Reader {
    /// Opens the store in `dir` for reading.
    pub fn open(dir: &Path) -> Result<Reader, StoreError> {
        let path = dir.join(FILE);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|()| c))
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Ok(Reader { path, conn })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Connections that ended in `[since_us, until_us]`, newest first, at
    /// most `limit`: their records (JSON) as published.
    pub fn history(
        &self,
        since_us: u64,
        until_us: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT r.record FROM connections c JOIN records r ON r.id = c.id
                 WHERE c.ended_us BETWEEN ?1 AND ?2
                 ORDER BY c.ended_us DESC, c.id DESC LIMIT ?3",
            )
            .map_err(self.err())?;
        let rows = q
            .query_map(
                params![writer::sql_u64(since_us), writer::sql_u64(until_us), limit],
                |r| r.get::<_, String>(0),
            )
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Totals of the connections that ended since `since_us`, by `by`,
    /// most bytes first.
    pub fn totals(&self, since_us: u64, by: GroupBy) -> Result<Vec<Total>, StoreError> {
        let sql = format!(
            "SELECT {c}, count(*), sum(rx_bytes), sum(tx_bytes), min(first_us), max(ended_us)
             FROM connections WHERE ended_us >= ?1 GROUP BY {c}
             ORDER BY sum(rx_bytes) + sum(tx_bytes) DESC",
            c = by.column()
        );
        let mut q = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let u = |v: i64| v.max(0) as u64;
        let rows = q
            .query_map([writer::sql_u64(since_us)], |r| {
                Ok(Total {
                    key: r.get(0)?,
                    connections: u(r.get(1)?),
                    rx_bytes: u(r.get(2)?),
                    tx_bytes: u(r.get(3)?),
                    first_us: u(r.get(4)?),
                    last_us: u(r.get(5)?),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The database's size in bytes (free pages not counted).
    pub fn size(&self) -> Result<u64, StoreError> {
        writer::size(&self.conn).map_err(self.err())
    }

    /// SQLite's own check of the whole file: "ok", or what is damaged.
    pub fn integrity(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.err())
    }
}
