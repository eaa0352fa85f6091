//! `History()` and `Totals()`: questions to the store, answered from a
//! read-only connection of their own (WAL: never waiting for the writer),
//! one at a time on a blocking thread, so that neither the bus worker nor
//! the monitor waits on the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use leco_proto::Dicts;
use leco_store::{GroupBy, Reader, StoreError, Total};
use zbus::fdo;
use zbus::zvariant::{OwnedValue, Value};

use super::replies::MAX_REPLY_BYTES;
use crate::memory::decode;
use crate::table::weight;

/// Records `History()` gives at most, whatever its `limit`.
pub const HISTORY_MAX: u32 = 10_000;

/// Groups `Totals()` gives at most, the most bytes first.
pub const TOTALS_MAX: usize = 10_000;

/// The store's reader, if the service keeps a store.
#[derive(Debug, Clone, Default)]
pub struct History {
    store: Option<Arc<Store>>,
}

/// The store's directory and its reader, opened at first use.
#[derive(Debug)]
struct Store {
    dir: PathBuf,
    reader: tokio::sync::Mutex<Option<Reader>>,
}

/// A `Totals()` row as it goes on the bus.
pub type TotalDict = HashMap<String, OwnedValue>;

impl History {
    /// Questions to the store in `dir`; without one, every question is
    /// answered with an error that says why.
    pub fn new(dir: Option<&Path>) -> History {
        History {
            store: dir.map(|dir| {
                Arc::new(Store {
                    dir: dir.to_owned(),
                    reader: tokio::sync::Mutex::new(None),
                })
            }),
        }
    }

    /// Runs `ask` on the reader, opened at first use, on a blocking thread.
    async fn ask<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    ) -> fdo::Result<T> {
        let Some(store) = &self.store else {
            return Err(fdo::Error::NotSupported(
                "this leco-service keeps no store (no --state-dir): there is no history".into(),
            ));
        };
        // One question at a time: callers wait here, not on threads.
        let mut slot = store.reader.lock().await;
        let taken = slot.take();
        let dir = store.dir.clone();
        let (back, answer) = tokio::task::spawn_blocking(move || {
            let reader = match taken {
                Some(r) => r,
                None => match Reader::open(&dir) {
                    Ok(r) => r,
                    Err(e) => return (None, Err(e)),
                },
            };
            let answer = ask(&reader);
            (Some(reader), answer)
        })
        .await
        .map_err(|e| fdo::Error::Failed(format!("the store's reader stopped: {e}")))?;
        *slot = back;
        answer.map_err(|e| {
            tracing::warn!("answering from the store: {e}");
            fdo::Error::Failed(format!("reading the store: {e}"))
        })
    }

    /// Ended connections in `[since_us, until_us]`, newest first, at most
    /// `limit` (and [`HISTORY_MAX`], and what fits a reply).
    pub async fn history(&self, since_us: u64, until_us: u64, limit: u32) -> fdo::Result<Dicts> {
        if since_us > until_us {
            return Err(fdo::Error::InvalidArgs(format!(
                "since_us {since_us} is after until_us {until_us}"
            )));
        }
        let limit = limit.min(HISTORY_MAX);
        let records = self
            .ask(move |r| r.history(since_us, until_us, limit))
            .await?;
        let mut out = Vec::with_capacity(records.len());
        let mut bytes = 0;
        for json in records {
            let Some(c) = decode(&json) else { continue };
            bytes += weight(&c);
            if bytes > MAX_REPLY_BYTES {
                break;
            }
            out.push(c);
        }
        Ok(Dicts(out))
    }

    /// Totals since `since_us`, grouped by `group_by` (`program`, `unit`,
    /// `user` or `remote`).
    pub async fn totals(&self, since_us: u64, group_by: &str) -> fdo::Result<Vec<TotalDict>> {
        let Some(by) = GroupBy::from_word(group_by) else {
            return Err(fdo::Error::InvalidArgs(format!(
                "group_by {group_by:?}: expected \"program\", \"unit\", \"user\" or \"remote\""
            )));
        };
        let key = group_by.to_owned();
        let rows = self.ask(move |r| r.totals(since_us, by)).await?;
        Ok(rows
            .into_iter()
            .take(TOTALS_MAX)
            .map(|t| total_dict(&key, t))
            .collect())
    }
}

fn total_dict(key: &str, t: Total) -> TotalDict {
    let mut d = HashMap::new();
    let mut put = |k: &str, v: Value<'_>| {
        if let Ok(v) = OwnedValue::try_from(v) {
            d.insert(k.to_owned(), v);
        }
    };
    if let Some(k) = t.key.filter(|k| !k.is_empty()) {
        put(key, Value::from(leco_proto::sanitize(k.as_bytes())));
    }
    put("connections", Value::from(t.connections));
    put("rx_bytes", Value::from(t.rx_bytes));
    put("tx_bytes", Value::from(t.tx_bytes));
    put("first_seen_us", Value::from(t.first_us));
    put("last_seen_us", Value::from(t.last_us));
    d
}
