//! Shared by the service's integration tests: running the real binary and
//! reading what it prints.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use leco_testkit::bus::TestBus;
use serde_json::Value;
use zbus::zvariant::OwnedValue;
use zbus::MatchRule;

pub const BIN: &str = env!("CARGO_BIN_EXE_leco-service");

/// A running service with its stdout lines and stderr lines as channels.
pub struct Service {
    pub child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    err_seen: Vec<String>,
}

impl Service {
    /// Starts leco-service with `args` and waits for its readiness line.
    pub fn start(args: &[&str]) -> Service {
        Service::start_until(args, "watching connections")
    }

    /// Starts leco-service with `args` and waits for `ready` on stderr.
    pub fn start_until(args: &[&str], ready: &str) -> Service {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leco-service");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        let mut s = Service {
            child,
            stdout,
            stderr,
            err_seen: Vec::new(),
        };
        s.wait_stderr(ready);
        s
    }

    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.err_seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => self.err_seen.push(l),
                Err(_) => panic!("no `{needle}` on stderr; saw {:#?}", self.err_seen),
            }
        }
    }

    /// The first stdout line for which `pick` returns something.
    pub fn wait_line<T>(&mut self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(l) => {
                    if let Some(t) = pick(&l) {
                        return t;
                    }
                    seen.push(l);
                }
                Err(_) => panic!(
                    "no matching line among {seen:#?}; stderr {:#?}",
                    self.err_seen
                ),
            }
        }
    }

    pub fn wait_json(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        self.wait_line(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            pick(&v).then_some(v)
        })
    }

    /// Hands each JSON event to `step` until it says it is done (true) or
    /// `within` has passed; whether it was done. For tests that follow
    /// thousands of events and tell a failure in numbers.
    pub fn follow_json(&mut self, within: Duration, mut step: impl FnMut(&Value) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(l) = self.stdout.recv_timeout(left) else {
                return false;
            };
            let v: Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            if step(&v) {
                return true;
            }
        }
    }

    pub fn terminate(mut self) -> (i32, Vec<String>) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        self.err_seen.extend(self.stderr.iter());
        (
            status.code().unwrap_or(-1),
            std::mem::take(&mut self.err_seen),
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

// ---- the service on a private bus ----

pub type Dict = HashMap<String, OwnedValue>;

pub const READY: &str = "serving org.leco.Overseer1";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn start(bus: &TestBus, extra: &[&str]) -> Service {
    let mut args = vec!["--standalone", "--bus-address", bus.address()];
    args.extend_from_slice(extra);
    Service::start_until(&args, READY)
}

pub async fn client(bus: &TestBus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address())
        .expect("address")
        .build()
        .await
        .expect("connect to the test bus")
}

pub fn rule(arg0: Option<&str>) -> MatchRule<'static> {
    let mut b = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.leco.Overseer1")
        .expect("interface")
        .member("ConnectionEvent")
        .expect("member");
    if let Some(a) = arg0 {
        b = b.arg(0, a.to_owned()).expect("arg0");
    }
    b.build()
}

pub fn get<T: TryFrom<OwnedValue>>(d: &Dict, key: &str) -> Option<T> {
    d.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
}

/// Calls Snapshot() and returns the reply undecoded (for timing the answer).
pub async fn snapshot_reply(conn: &zbus::Connection) -> zbus::Result<zbus::Message> {
    conn.call_method(
        Some("org.leco.Overseer1"),
        "/org/leco/Overseer1",
        Some("org.leco.Overseer1"),
        "Snapshot",
        &(),
    )
    .await
}

pub async fn snapshot(conn: &zbus::Connection) -> zbus::Result<Vec<Dict>> {
    snapshot_reply(conn).await?.body().deserialize()
}

/// A property of the service, read as `t`.
pub async fn property_u64(conn: &zbus::Connection, name: &str) -> u64 {
    let v: OwnedValue = conn
        .call_method(
            Some("org.leco.Overseer1"),
            "/org/leco/Overseer1",
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.leco.Overseer1", name),
        )
        .await
        .expect("Get")
        .body()
        .deserialize()
        .expect("variant");
    u64::try_from(v).expect("u64")
}

/// The peak memory (VmHWM) of process `pid`, in KiB.
pub fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

/// A loopback server that accepts connections and closes each at once
/// (so that TIME_WAIT stays on its side), until [`AcceptAndClose::stop`].
pub struct AcceptAndClose {
    pub addr: std::net::SocketAddr,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl AcceptAndClose {
    pub fn start() -> AcceptAndClose {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let stop = std::sync::Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((s, _)) = listener.accept() {
                    drop(s);
                }
            }
        });
        AcceptAndClose { addr, done, thread }
    }

    pub fn stop(self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr); // unblock accept
        self.thread.join().expect("server");
    }
}
