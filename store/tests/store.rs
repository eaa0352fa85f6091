//! The store on a real SQLite file in a scratch directory: what is new,
//! what is remembered across an open, history and totals, the warm-up,
//! pruning by age and size, and a `kill -9` in the middle of writing.

use std::time::Duration;

use leco_store::{Destination, Ended, GroupBy, Limits, Novelty, Reader, Sighting, Store};
use leco_testkit::scratch_dir;

const DAY_US: u64 = 86_400_000_000;
/// A fixed clock for the tests: 2026-12-01.
const NOW: u64 = 1_796_083_200_000_000;

fn now() -> u64 {
    NOW
}

const KEEP: Limits = Limits {
    retention: Duration::from_secs(30 * 86_400),
    max_bytes: 1 << 30,
};

fn ended(program: &str, remote: &str, ended_us: u64, bytes: u64) -> Ended {
    Ended {
        first_us: ended_us - 1_000_000,
        ended_us,
        program: program.into(),
        unit: Some(format!("{program}.service")),
        user: Some("alice".into()),
        remote: remote.into(),
        port: 443,
        proto: "tcp".into(),
        rx_bytes: bytes,
        tx_bytes: bytes / 2,
        record: format!(r#"{{"program":"{program}","remote":"{remote}","ended":{ended_us}}}"#),
    }
}

fn web(remote: &str) -> Destination<'_> {
    Destination {
        remote,
        port: 443,
        proto: "tcp",
    }
}

#[test]
fn what_is_new_is_remembered_and_history_and_totals_read_it_back() {
    let dir = scratch_dir("store-roundtrip");
    let store = Store::open(&dir, NOW).expect("open");
    let mut known = store.known(Duration::ZERO).expect("known");
    assert!(known.is_empty());
    assert_eq!(
        known.check("curl", &web("example.org"), NOW).novelty,
        Some(Novelty::Program)
    );
    assert_eq!(
        known.check("curl", &web("example.net"), NOW).novelty,
        Some(Novelty::Destination)
    );
    let writer = store.into_writer(KEEP, now);
    for (i, (program, remote)) in [
        ("curl", "example.org"),
        ("curl", "example.net"),
        ("firefox", "example.org"),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(writer.record(ended(program, remote, NOW + i as u64, 1000)));
    }
    writer.flush();
    assert_eq!(
        writer
            .stats()
            .written
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    drop(writer);

    // Opened again (a restart): all of it is known, nothing new.
    let store = Store::open(&dir, NOW + 5).expect("reopen");
    assert_eq!(store.created_us(), NOW, "born once");
    let mut known = store.known(Duration::ZERO).expect("known");
    assert_eq!(known.len(), (2, 3));
    for (p, r) in [("curl", "example.org"), ("firefox", "example.org")] {
        assert_eq!(known.check(p, &web(r), NOW + 10).novelty, None, "{p} → {r}");
    }
    assert_eq!(
        known
            .check("firefox", &web("example.net"), NOW + 10)
            .novelty,
        Some(Novelty::Destination)
    );

    let reader = Reader::open(&dir).expect("reader");
    let history = reader.history(0, u64::MAX, 10).expect("history");
    assert_eq!(history.len(), 3);
    assert!(history[0].contains("firefox"), "newest first: {history:?}");
    assert_eq!(
        reader.history(NOW + 1, NOW + 1, 10).expect("window").len(),
        1
    );
    assert_eq!(reader.history(0, u64::MAX, 2).expect("limit").len(), 2);
    let totals = reader.totals(0, GroupBy::Program).expect("totals");
    assert_eq!(totals.len(), 2);
    let curl = totals
        .iter()
        .find(|t| t.key.as_deref() == Some("curl"))
        .expect("curl");
    assert_eq!(
        (curl.connections, curl.rx_bytes, curl.tx_bytes),
        (2, 2000, 1000)
    );
    assert_eq!(totals[0].key.as_deref(), Some("curl"), "most bytes first");
    let by_remote = reader.totals(0, GroupBy::Remote).expect("by remote");
    assert_eq!(by_remote.len(), 2);
    assert_eq!(reader.integrity().expect("check"), "ok");
}

#[test]
fn first_sightings_are_known_after_a_crash_before_their_end() {
    let dir = scratch_dir("store-sightings");
    let store = Store::open(&dir, NOW).expect("open");
    let mut known = store.known(Duration::ZERO).expect("known");
    let seen = known.check("sshd", &web("10.0.0.1"), NOW);
    assert_eq!(seen.novelty, Some(Novelty::Program));
    assert!(seen.first);
    let writer = store.into_writer(KEEP, now);
    assert!(writer.seen(Sighting {
        at_us: NOW,
        program: "sshd".into(),
        remote: "10.0.0.1".into(),
        port: 443,
        proto: "tcp".into(),
    }));
    writer.flush();
    // No connection ended: the sighting alone is remembered.
    drop(writer);
    let store = Store::open(&dir, NOW).expect("reopen");
    let mut known = store.known(Duration::ZERO).expect("known");
    let again = known.check("sshd", &web("10.0.0.1"), NOW + 1);
    assert_eq!((again.novelty, again.first), (None, false));
    let reader = Reader::open(&dir).expect("reader");
    assert!(reader.history(0, u64::MAX, 10).expect("history").is_empty());
}

#[test]
fn live_records_are_given_back_once_and_only_to_their_load() {
    let dir = scratch_dir("store-live");
    let store = Store::open(&dir, NOW).expect("open");
    let writer = store.into_writer(KEEP, now);
    writer.keep_live(
        "load-a",
        vec![(7, "{\"id\":7}".into()), (9, "{\"id\":9}".into())],
    );
    drop(writer);
    let store = Store::open(&dir, NOW).expect("reopen");
    assert_eq!(
        store.take_live("load-a").expect("take"),
        ["{\"id\":7}", "{\"id\":9}"]
    );
    assert!(store.take_live("load-a").expect("taken").is_empty());
    let writer = store.into_writer(KEEP, now);
    writer.keep_live("load-a", vec![(7, "{}".into())]);
    drop(writer);
    let store = Store::open(&dir, NOW).expect("reopen");
    assert!(
        store.take_live("load-b").expect("other load").is_empty(),
        "another load's flow ids mean nothing"
    );
}

#[test]
fn a_fresh_store_learns_quietly_through_its_warm_up() {
    let dir = scratch_dir("store-warmup");
    let store = Store::open(&dir, NOW).expect("open");
    let hour = Duration::from_secs(3600);
    let mut known = store.known(hour).expect("known");
    let minute = 60_000_000;
    assert_eq!(
        known
            .check("curl", &web("example.org"), NOW + minute)
            .novelty,
        None
    );
    let after = NOW + 61 * minute;
    assert_eq!(
        known.check("curl", &web("example.org"), after).novelty,
        None,
        "learnt"
    );
    assert_eq!(
        known.check("ssh", &web("example.org"), after).novelty,
        Some(Novelty::Program)
    );
    // The warm-up counts from the store's birth, not from this start.
    drop(known);
    drop(store);
    let store = Store::open(&dir, NOW + 2 * 3_600_000_000).expect("reopen");
    let mut known = store.known(hour).expect("known");
    assert_eq!(
        known
            .check("wget", &web("example.org"), NOW + 2 * 3_600_000_000)
            .novelty,
        Some(Novelty::Program)
    );
}

#[test]
fn pruning_removes_the_oldest_by_age_then_by_size() {
    let dir = scratch_dir("store-prune");
    let store = Store::open(&dir, NOW - 40 * DAY_US).expect("open");
    let week = Limits {
        retention: Duration::from_secs(7 * 86_400),
        max_bytes: 1 << 30,
    };
    let writer = store.into_writer(week, now);
    for day in 0..20u64 {
        writer.record(ended(
            &format!("p{day}"),
            "example.org",
            NOW - day * DAY_US,
            10,
        ));
    }
    writer.prune_at(NOW);
    drop(writer);
    let reader = Reader::open(&dir).expect("reader");
    let left = reader.history(0, u64::MAX, 100).expect("history");
    assert_eq!(left.len(), 8, "days 0..=7 stay: {left:?}");
    // Programs not seen within the retention go with their destinations.
    let store = Store::open(&dir, NOW).expect("reopen");
    assert_eq!(store.known(Duration::ZERO).expect("known").len(), (8, 8));

    // By size: big records past a small bound, the oldest go first.
    let small = Limits {
        retention: Duration::from_secs(30 * 86_400),
        max_bytes: 256 << 10,
    };
    let writer = store.into_writer(small, now);
    for i in 0..400u64 {
        let mut e = ended("big", "example.org", NOW + 1 + i, 10);
        e.record = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(4000));
        writer.record(e);
    }
    writer.flush();
    let before = Reader::open(&dir).expect("reader").size().expect("size");
    assert!(before > 256 << 10, "{before} bytes written");
    writer.prune_at(NOW);
    drop(writer);
    let reader = Reader::open(&dir).expect("reader");
    let size = reader.size().expect("size");
    assert!(size <= 256 << 10, "{size} bytes after pruning");
    let newest = reader.history(0, u64::MAX, 1).expect("history");
    assert!(newest[0].contains("\"i\":399"), "the newest stays");
    assert_eq!(reader.integrity().expect("check"), "ok");
    // Each connection's record went with it, and only those.
    let db = rusqlite::Connection::open(dir.join(leco_store::FILE)).expect("open");
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(count("records"), count("connections"));
}

/// Set in the writer process the kill test starts (this test binary
/// again): the directory to write in.
const WRITER_ENV: &str = "LECO_STORE_TEST_WRITER";

/// The writer process: commits 100 connections at a time, printing the
/// count committed after each, until killed.
fn write_until_killed(dir: &std::path::Path) -> ! {
    use std::io::Write;
    let store = Store::open(dir, NOW).expect("open");
    let writer = store.into_writer(KEEP, now);
    let mut committed = 0u64;
    let mut out = std::io::stdout();
    loop {
        for _ in 0..100 {
            writer.record(ended("curl", "example.org", NOW + committed, 1));
            committed += 1;
        }
        writer.flush();
        let _ = writeln!(out, "committed {committed}");
        let _ = out.flush();
    }
}

#[test]
fn a_kill_9_while_writing_leaves_every_commit_and_a_sound_file() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        write_until_killed(std::path::Path::new(&dir));
    }
    use std::io::BufRead;
    let dir = scratch_dir("store-kill");
    // A process of its own (not a fork of this multi-threaded one, whose
    // other tests may hold SQLite's locks at the fork).
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_kill_9_while_writing_leaves_every_commit_and_a_sound_file",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the writer process");
    let lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acknowledged = 0u64;
    for line in lines {
        let line = line.expect("a line");
        if let Some(n) = line.strip_prefix("committed ") {
            acknowledged = n.parse().expect("a count");
            if acknowledged >= 2_000 {
                break;
            }
        }
    }
    assert!(
        acknowledged >= 2_000,
        "the writer stopped at {acknowledged}"
    );
    // Mid-write: the writer goes on until the signal lands.
    child.kill().expect("kill -9");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "killed: {status}");
    let reader = Reader::open(&dir).expect("the file opens after kill -9");
    assert_eq!(reader.integrity().expect("check"), "ok");
    let kept = reader
        .history(0, u64::MAX, u32::MAX)
        .expect("history")
        .len() as u64;
    assert!(
        kept >= acknowledged,
        "{kept} connections kept, {acknowledged} were committed"
    );
    // And it is still a store to write in.
    let store = Store::open(&dir, NOW).expect("reopen");
    assert_eq!(store.known(Duration::ZERO).expect("known").len(), (1, 1));
}
