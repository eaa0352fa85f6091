//! `Snapshot()` and `SnapshotSince()` replies that many callers share and
//! nobody can make expensive.
//!
//! A reply is the whole table, so building one per call lets a handful of
//! clients calling in a loop eat the machine and starve the kernel reader.
//! Instead:
//!
//! - the table is taken and encoded at most once per interval, and every
//!   caller waiting meanwhile gets that one reply — always one taken after
//!   its call arrived, never an older one;
//! - the interval grows with what a reply costs (at least
//!   [`WORK_SHARE`] times the last one's work passes between two), so
//!   replies take a bounded share of a core however often they are asked
//!   for;
//! - encoding runs off the bus thread (signals keep flowing) with leco's
//!   own encoder ([`leco_proto::wire`]), and the monitor only hands over
//!   its records;
//! - a reply is at most [`MAX_REPLY_BYTES`], well under the system bus's
//!   32 MiB message limit: beyond it the least recently active connections
//!   are left out (counted in the `Trimmed` property), and replies are
//!   sent one at a time.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use leco_proto::wire;
use leco_proto::Connection;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};
use tokio::time::Instant;
use zbus::fdo;
use zbus::message::Message;

use super::Request;
use crate::stats::Stats;
use crate::table::most_recent_within;

/// Largest `Snapshot()` reply, in bytes: some 8,000 typical connections.
pub const MAX_REPLY_BYTES: usize = 4 << 20;

/// Replies built and not yet sent, at most: each is a message of its own
/// (up to [`MAX_REPLY_BYTES`]), so this bounds what callers can make the
/// service hold at once. One at a time also answers fastest: the bus
/// passes them on one by one anyway (measured with 20 callers in a storm:
/// p99 0.3 s and 33 MiB peak, against 0.8 s and 79 MiB with four).
const SENDING: usize = 1;

/// Least time between two takes of the table.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Between two takes passes at least this many times the work of the last:
/// replies cost at most about a fifth of a core.
const WORK_SHARE: u32 = 5;

/// One take of the table, encoded: the body of `Snapshot()` and where each
/// record's entries lie in it (for `SnapshotSince()`).
#[derive(Debug)]
struct Encoded {
    taken: Instant,
    body: Vec<u8>,
    records: Vec<(u64, Range<usize>)>,
}

impl Encoded {
    /// Encodes `conns` (in their order) within [`MAX_REPLY_BYTES`]; how
    /// many were left out.
    fn new(taken: Instant, conns: &[Connection]) -> (Encoded, usize) {
        let entries: Vec<Vec<u8>> = conns.iter().map(wire::entries).collect();
        let keep = within_budget(conns, &entries, MAX_REPLY_BYTES);
        let mut dicts = wire::Dicts::new();
        let mut records = Vec::with_capacity(conns.len());
        for (i, (c, e)) in conns.iter().zip(&entries).enumerate() {
            if keep[i] {
                records.push((c.last_seen_us, dicts.push(e)));
            }
        }
        let left_out = conns.len() - records.len();
        let encoded = Encoded {
            taken,
            body: dicts.finish(),
            records,
        };
        (encoded, left_out)
    }

    /// The body of `SnapshotSince(since_us)`: the records active since.
    fn since(&self, since_us: u64) -> Vec<u8> {
        let mut dicts = wire::Dicts::new();
        for (last_seen, range) in &self.records {
            if *last_seen >= since_us {
                dicts.push(&self.body[range.clone()]);
            }
        }
        dicts.finish()
    }
}

/// Which of `conns` fit in `budget` bytes once encoded: all when they do,
/// else the most recently active that do.
fn within_budget(conns: &[Connection], entries: &[Vec<u8>], budget: usize) -> Vec<bool> {
    // A record costs its entries plus its length and padding (at most 12);
    // the array its length (4).
    let cost = |i: usize| entries[i].len() + 12;
    let total: usize = 4 + (0..entries.len()).map(cost).sum::<usize>();
    if total <= budget {
        return vec![true; conns.len()];
    }
    let refs: Vec<&Connection> = conns.iter().collect();
    most_recent_within(&refs, cost, budget.saturating_sub(4))
}

/// What the takes of the table have been.
#[derive(Debug)]
struct Takes {
    latest: Option<Arc<Encoded>>,
    next: Instant,
}

/// Answers the snapshot methods.
#[derive(Debug)]
pub struct Replies {
    requests: mpsc::Sender<Request>,
    stats: Arc<Stats>,
    takes: Mutex<Takes>,
    sending: Semaphore,
}

impl Replies {
    /// Replies built from the tables the monitor loop hands over through
    /// `requests`.
    pub fn new(requests: mpsc::Sender<Request>, stats: Arc<Stats>) -> Replies {
        Replies {
            requests,
            stats,
            takes: Mutex::new(Takes {
                latest: None,
                next: Instant::now(),
            }),
            sending: Semaphore::new(SENDING),
        }
    }

    /// Answers a call of `Snapshot()` or `SnapshotSince(t)` in `msg`.
    pub async fn answer(&self, conn: &zbus::Connection, msg: &Message) -> fdo::Result<()> {
        let header = msg.header();
        let since = match arguments(msg) {
            Ok(since) => since,
            Err(e) => {
                conn.reply_dbus_error(&header, e)
                    .await
                    .map_err(|e| fdo::Error::Failed(e.to_string()))?;
                return Ok(());
            }
        };
        let asked = Instant::now();
        let result = self.take_after(asked).await;
        let _turn = self
            .sending
            .acquire()
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
        let sent = match result {
            Ok(encoded) => {
                let since_body;
                let body = match since {
                    None => &encoded.body,
                    Some(t) => {
                        since_body = encoded.since(t);
                        &since_body
                    }
                };
                let builder = Message::method_return(&header)?;
                // SAFETY: the body is `aa{sv}` in D-Bus marshalling as
                // zvariant makes it (leco-proto's wire tests hold the bytes
                // equal), in the builder's byte order, with no descriptors.
                let reply = unsafe { builder.build_raw_body(body, "aa{sv}", Vec::new()) }?;
                conn.send(&reply).await.map(drop)
            }
            Err(e) => conn.reply_dbus_error(&header, e).await.map(drop),
        };
        sent.map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// A take of the table made after `asked`: the latest if it is that
    /// recent, else a new one once the interval since the last has passed.
    async fn take_after(&self, asked: Instant) -> fdo::Result<Arc<Encoded>> {
        // One take at a time; callers queue here and mostly share it.
        let mut takes = self.takes.lock().await;
        if let Some(latest) = takes.latest.as_ref().filter(|l| l.taken >= asked) {
            return Ok(Arc::clone(latest));
        }
        tokio::time::sleep_until(takes.next).await;
        let taken = Instant::now();
        let (reply, answer) = oneshot::channel();
        let gone = || fdo::Error::Failed("the service is shutting down".into());
        // The monitor copies no more than a reply can hold.
        let budget = MAX_REPLY_BYTES;
        self.requests
            .send(Request::Snapshot { budget, reply })
            .await
            .map_err(|_| gone())?;
        let (conns, not_taken) = answer.await.map_err(|_| gone())?;
        let (encoded, not_encoded) =
            tokio::task::spawn_blocking(move || Encoded::new(taken, &conns))
                .await
                .map_err(|e| fdo::Error::Failed(format!("encoding the snapshot: {e}")))?;
        let left_out = not_taken + not_encoded;
        let work = taken.elapsed();
        takes.next = Instant::now() + (work * WORK_SHARE).max(MIN_INTERVAL);
        if left_out > 0 {
            self.stats
                .trimmed
                .fetch_add(left_out as u64, Ordering::Relaxed);
            tracing::debug!(left_out, "snapshot trimmed to {MAX_REPLY_BYTES} bytes");
        }
        tracing::debug!(
            connections = encoded.records.len(),
            bytes = encoded.body.len(),
            ?work,
            "snapshot taken"
        );
        let encoded = Arc::new(encoded);
        takes.latest = Some(Arc::clone(&encoded));
        Ok(encoded)
    }
}

/// The `since_us` of the call (`None` for `Snapshot()`), or the error for
/// arguments the method does not take.
fn arguments(msg: &Message) -> Result<Option<u64>, fdo::Error> {
    let header = msg.header();
    let member = header.member().map(|m| m.as_str()).unwrap_or_default();
    let body = msg.body();
    let signature = body.signature().to_string();
    match (member, signature.as_str()) {
        ("Snapshot", "") => Ok(None),
        ("SnapshotSince", "t") => body
            .deserialize::<u64>()
            .map(Some)
            .map_err(|e| fdo::Error::InvalidArgs(e.to_string())),
        (member, given) => Err(fdo::Error::InvalidArgs(format!(
            "{member} takes {}, not ({given})",
            if member == "Snapshot" {
                "no arguments"
            } else {
                "one argument (t since_us)"
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::conn;
    use leco_proto::Proto;

    #[test]
    fn all_fit_or_the_most_recent_do() {
        let conns: Vec<Connection> = (1..=10).map(|i| conn(i, Proto::Tcp)).collect();
        let entries: Vec<Vec<u8>> = conns.iter().map(wire::entries).collect();
        assert!(within_budget(&conns, &entries, usize::MAX)
            .iter()
            .all(|k| *k));
        let each = entries[0].len() + 12;
        let keep = within_budget(&conns, &entries, 4 + 3 * each);
        // Times are ids: the three last are the most recent.
        assert_eq!(
            keep,
            [false, false, false, false, false, false, false, true, true, true]
        );
    }

    #[test]
    fn since_keeps_what_was_active_since() {
        let conns: Vec<Connection> = (1..=5).map(|i| conn(i, Proto::Tcp)).collect();
        let (encoded, left_out) = Encoded::new(Instant::now(), &conns);
        assert_eq!(left_out, 0);
        let mut expected = wire::Dicts::new();
        for c in &conns[2..] {
            expected.push(&wire::entries(c));
        }
        assert_eq!(encoded.since(3), expected.finish());
        assert_eq!(encoded.since(0), encoded.body);
    }
}
