//! Shared by the real-kernel tests: a loaded capture and what it reported.
#![allow(dead_code)] // each test file uses a different part

use std::time::{Duration, Instant};

use leco_bpf::{Capture, Flow, Options, Record, RecordKind};
use leco_testkit::patterns::Pair;

/// A loaded capture and everything it reported so far.
pub struct Probe {
    pub _capture: Capture,
    pub reader: leco_bpf::RecordReader,
    pub events: Vec<(RecordKind, Flow)>,
    pub released: Vec<u64>,
    /// DNS answers the kernel sent up.
    pub dns: Vec<leco_bpf::DnsAnswer>,
}

impl Probe {
    pub fn load() -> Probe {
        let capture = Capture::load(&Options::default()).expect("load eBPF programs");
        assert!(
            capture.degraded().is_empty(),
            "degraded: {:?}",
            capture.degraded()
        );
        Probe::of(capture)
    }

    /// Records the kernel could not queue because the ring was full.
    pub fn ring_drops(&self) -> u64 {
        self._capture
            .maps()
            .expect("maps")
            .counters()
            .expect("counters")
            .ringbuf_drops
    }

    /// Reads what `capture` reports.
    pub fn of(capture: Capture) -> Probe {
        Probe {
            reader: capture.maps().expect("maps").reader().expect("reader"),
            _capture: capture,
            events: Vec::new(),
            released: Vec::new(),
            dns: Vec::new(),
        }
    }

    /// Reads events until `done` holds for the flows matching `keep`, or fails
    /// after 5 s with what was seen.
    pub fn until(
        &mut self,
        keep: impl Fn(&Flow) -> bool,
        done: impl Fn(&[(RecordKind, Flow)]) -> bool,
    ) -> Vec<(RecordKind, Flow)> {
        let (mine, ok) = self.settle(keep, done, Duration::from_secs(5));
        assert!(ok, "timed out; saw {mine:#?}");
        mine
    }

    /// Reads events until `done` holds for the flows matching `keep`, or
    /// `within` has passed; returns those flows' events and whether `done`
    /// held (for tests whose failure is better told in numbers than in
    /// thousands of events).
    pub fn settle(
        &mut self,
        keep: impl Fn(&Flow) -> bool,
        done: impl Fn(&[(RecordKind, Flow)]) -> bool,
        within: Duration,
    ) -> (Vec<(RecordKind, Flow)>, bool) {
        let deadline = Instant::now() + within;
        loop {
            let mine: Vec<_> = self
                .events
                .iter()
                .filter(|(_, f)| keep(f))
                .cloned()
                .collect();
            if done(&mine) {
                return (mine, true);
            }
            if Instant::now() >= deadline {
                return (mine, false);
            }
            self.pump();
        }
    }

    /// Waits up to 100 ms for more events.
    pub fn pump(&mut self) {
        self.read(Duration::from_millis(100));
    }

    /// Waits up to `timeout` for more events, then takes all there are.
    pub fn read(&mut self, timeout: Duration) {
        let mut batch = Vec::new();
        self.reader.poll(timeout, &mut batch).expect("poll");
        // The kernel wakes a reader that lags behind no more (see
        // RecordReader): under a steady stream only a drain finds the rest.
        self.reader.drain(&mut batch).expect("drain");
        for e in batch {
            match e.expect("decode") {
                Record::Flow { kind, flow, .. } => self.events.push((kind, flow)),
                Record::Released { cookie, .. } => self.released.push(cookie),
                Record::Dns(answer) => self.dns.push(answer),
            }
        }
    }

    /// Waits for both children of `pair`, reading events meanwhile (a
    /// pattern of hundreds of connections would overflow the ring buffer
    /// before anyone read it); their exit codes, server first.
    pub fn while_running(&mut self, pair: Pair) -> (i32, i32) {
        let waiter = std::thread::spawn(move || pair.wait());
        while !waiter.is_finished() {
            // Often enough that the ring never fills.
            self.read(Duration::from_millis(2));
        }
        waiter.join().expect("waiting for the pair")
    }

    pub fn wait_released(&mut self, cookie: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.released.contains(&cookie) {
            assert!(
                Instant::now() < deadline,
                "socket release of {cookie} not reported"
            );
            self.pump();
        }
    }
}

pub fn kinds(events: &[(RecordKind, Flow)]) -> Vec<RecordKind> {
    events.iter().map(|(k, _)| *k).collect()
}
