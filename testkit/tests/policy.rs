//! The D-Bus policy in dbus-policy/, enforced by a real dbus-daemon
//! configured like the system bus, with clients running as different users.
//!
//! Users: root; `leco` (the service's own user); `leco-test-reader` (member
//! of group `leco`, like a desktop user who opted in); `leco-test-other` (an
//! ordinary user). They are created once and left in place (see
//! `ensure_user`).
//!
//! The service itself is played by `FakeService` below, a minimal raw-socket
//! D-Bus client that owns the name as root, emits a signal and answers every
//! method call, so the policy is tested without eBPF and without zbus.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use leco_testkit::bus::{
    busctl_as, ensure_group, ensure_user, error_name, monitor_as, policy_dir, TestBus,
};
use leco_testkit::require_root;

const NAME: &str = "org.leco.Overseer1";
const PATH: &str = "/org/leco/Overseer1";
const READER: &str = "leco-test-reader";
const OTHER: &str = "leco-test-other";
const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
const WAIT: Duration = Duration::from_secs(5);

/// The users every test here may run clients as; must exist before the bus
/// starts, since dbus-daemon resolves policy users when it loads them.
fn users() {
    ensure_group("leco");
    ensure_user("leco", &[]);
    ensure_user(READER, &["leco"]);
    ensure_user(OTHER, &[]);
}

fn request_name(user: Option<&str>, bus: &TestBus) -> std::process::Output {
    busctl_as(
        user,
        bus.address(),
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
            "su",
            NAME,
            "0",
        ],
    )
}

fn show(out: &std::process::Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Asserts that RequestName as `user` made it the primary owner (reply 1).
fn assert_can_own(user: Option<&str>, bus: &TestBus) {
    let out = request_name(user, bus);
    assert!(out.status.success(), "{user:?} RequestName: {}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "u 1",
        "{user:?}: 1 = DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER"
    );
}

/// Asserts that RequestName as `user` was refused with AccessDenied.
fn assert_cannot_own(user: &str, bus: &TestBus) {
    let out = request_name(Some(user), bus);
    assert!(!out.status.success(), "{user} RequestName: {}", show(&out));
    assert_eq!(
        error_name(&out).as_deref(),
        Some(ACCESS_DENIED),
        "{user} RequestName: {}\nbus log:\n{}",
        show(&out),
        bus.log()
    );
}

#[test]
fn bus_starts_serves_other_users_and_drop_kills_it() {
    if !require_root("bus_starts_serves_other_users_and_drop_kills_it") {
        return;
    }
    users();
    assert!(
        policy_dir().join("org.leco.Overseer1.conf").is_file(),
        "the policy file exists"
    );
    let bus = TestBus::start().expect("start dbus-daemon");
    let (pid, dir) = (bus.pid(), bus.dir().to_path_buf());
    let socket = dir.join("bus");
    assert!(
        bus.address()
            .starts_with(&format!("unix:path={}", socket.display())),
        "{}",
        bus.address()
    );
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o755, "other users can reach the socket");
    assert_eq!(mode(&socket), 0o777, "dbus-daemon opens the socket to all");

    // Connecting and talking to the bus driver works for anyone.
    for user in [None, Some(OTHER), Some(READER), Some("leco")] {
        let out = busctl_as(
            user,
            bus.address(),
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetId",
            ],
        );
        assert!(out.status.success(), "{user:?} GetId: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("s \""));
    }
    // The policy's users and group resolved: no "Unknown username" warnings.
    let log = bus.log();
    assert!(!log.contains("Unknown"), "daemon log:\n{log}");

    let cmdline = format!("/proc/{pid}/cmdline");
    assert!(
        std::fs::read_to_string(&cmdline)
            .unwrap_or_default()
            .contains("dbus-daemon"),
        "the daemon runs as pid {pid}"
    );
    drop(bus);
    // Reaped, so the pid is gone (or, improbably, reused by something else).
    assert!(
        !std::fs::read_to_string(&cmdline)
            .unwrap_or_default()
            .contains(&dir.to_string_lossy().to_string()),
        "dbus-daemon {pid} still running after drop"
    );
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// The test users, then a private bus that knows them; `None` (a loud
/// skip) without root.
fn bus_with_users(test: &str) -> Option<TestBus> {
    if !require_root(test) {
        return None;
    }
    users();
    Some(TestBus::start().expect("start dbus-daemon"))
}

#[test]
fn root_can_own_the_name() {
    if let Some(bus) = bus_with_users("root_can_own_the_name") {
        assert_can_own(None, &bus);
    }
}

#[test]
fn service_user_can_own_the_name() {
    if let Some(bus) = bus_with_users("service_user_can_own_the_name") {
        assert_can_own(Some("leco"), &bus);
    }
}

#[test]
fn ordinary_user_cannot_own_the_name() {
    if let Some(bus) = bus_with_users("ordinary_user_cannot_own_the_name") {
        assert_cannot_own(OTHER, &bus);
    }
}

#[test]
fn reader_cannot_own_the_name() {
    if let Some(bus) = bus_with_users("reader_cannot_own_the_name") {
        assert_cannot_own(READER, &bus);
    }
}

#[test]
fn ensure_user_is_idempotent_under_concurrency() {
    if !require_root("ensure_user_is_idempotent_under_concurrency") {
        return;
    }
    let ids: Vec<(u32, u32)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| s.spawn(|| ensure_user(READER, &["leco"])))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("ensure_user thread"))
            .collect()
    });
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let groups = std::process::Command::new("id")
        .args(["--groups", "--name", READER])
        .output()
        .expect("id");
    let groups = String::from_utf8_lossy(&groups.stdout).into_owned();
    assert!(
        groups.split_whitespace().any(|g| g == "leco"),
        "{READER} is in group leco: {groups}"
    );
}

/// Every way a client reaches the service: its own interface and the
/// standard ones that busctl, gdbus and the like use.
const CALLS: &[&[&str]] = &[
    &[NAME, PATH, NAME, "Snapshot"],
    &[
        NAME,
        PATH,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        NAME,
    ],
    &[
        NAME,
        PATH,
        "org.freedesktop.DBus.Introspectable",
        "Introspect",
    ],
    &[NAME, PATH, "org.freedesktop.DBus.Peer", "Ping"],
];

fn call_as(user: Option<&str>, bus: &TestBus, call: &[&str]) -> std::process::Output {
    let mut args = vec!["call"];
    args.extend_from_slice(call);
    busctl_as(user, bus.address(), &args)
}

#[test]
fn root_and_readers_may_call_the_service_others_are_denied() {
    if !require_root("root_and_readers_may_call_the_service_others_are_denied") {
        return;
    }
    users();
    let bus = TestBus::start().expect("start dbus-daemon");
    let service = FakeService::connect(bus.address()).expect("connect the fake service");
    assert_eq!(service.request_name(NAME), 1, "primary owner");

    for user in [None, Some(READER)] {
        for call in CALLS {
            let out = call_as(user, &bus, call);
            assert!(out.status.success(), "{user:?} {call:?}: {}", show(&out));
        }
    }
    let mut by_unique_name = CALLS[0].to_vec();
    by_unique_name[0] = service.unique_name.as_str();
    for call in CALLS.iter().copied().chain([&by_unique_name[..]]) {
        let out = call_as(Some(OTHER), &bus, call);
        assert!(!out.status.success(), "{OTHER} {call:?}: {}", show(&out));
        assert_eq!(
            error_name(&out).as_deref(),
            Some(ACCESS_DENIED),
            "{OTHER} {call:?}: {}",
            show(&out)
        );
    }
    assert_eq!(
        service.calls_answered(),
        2 * CALLS.len() as u32,
        "no call of {OTHER} reached the service"
    );
}

#[test]
fn signals_reach_root_and_readers_only() {
    if !require_root("signals_reach_root_and_readers_only") {
        return;
    }
    users();
    let bus = TestBus::start().expect("start dbus-daemon");
    let service = FakeService::connect(bus.address()).expect("connect the fake service");
    assert_eq!(service.request_name(NAME), 1, "primary owner");

    let rule = format!("type='signal',interface='{NAME}'");
    let reader = monitor_as(Some(READER), bus.address(), &rule).expect("reader's monitor");
    let other = monitor_as(Some(OTHER), bus.address(), &rule).expect("other's monitor");
    // Root as a plain subscriber: a root dbus-monitor would be a true
    // monitor, which sees everything whatever the policy.
    let root = FakeService::connect(bus.address()).expect("connect root's subscriber");
    root.call_bus("AddMatch", "s", &string_body(&rule));

    service.emit_connection_event("new");
    // Once the bus answered a later call of the service, it has routed the
    // signal: each recipient's queue has it before anything sent from now on.
    service.call_bus("GetId", "", &[]);
    // A signal everyone may receive (root's busctl does not own the name).
    let barrier = busctl_as(None, bus.address(), &["emit", PATH, NAME, "Barrier"]);
    assert!(barrier.status.success(), "emit barrier: {}", show(&barrier));

    let seen = reader
        .wait_for("member=ConnectionEvent", WAIT)
        .unwrap_or_else(|| panic!("reader got no ConnectionEvent: {:?}", reader.messages()));
    assert!(seen.contains("string \"new\""), "{seen}");
    assert!(
        root.wait_signal("ConnectionEvent", WAIT),
        "root got no ConnectionEvent"
    );

    assert!(
        other.wait_for("member=Barrier", WAIT).is_some(),
        "{OTHER} got the barrier signal: {:?}\n{}",
        other.messages(),
        other.stderr()
    );
    let leaked: Vec<String> = other
        .messages()
        .into_iter()
        .filter(|m| m.contains("member=ConnectionEvent"))
        .collect();
    assert!(leaked.is_empty(), "{OTHER} received {leaked:?}");
}

// ---------------------------------------------------------------------------
// FakeService: just enough of the D-Bus wire protocol (little-endian
// marshalling, EXTERNAL authentication) to stand in for the service.

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;
const NO_REPLY_EXPECTED: u8 = 1;

/// A received message: its type, serial, the header fields used here, body.
#[derive(Debug, Default, Clone)]
struct Msg {
    kind: u8,
    flags: u8,
    serial: u32,
    little_endian: bool,
    member: Option<String>,
    error_name: Option<String>,
    reply_serial: Option<u32>,
    sender: Option<String>,
    body: Vec<u8>,
}

impl Msg {
    fn u32_at(&self, at: usize) -> u32 {
        let b: [u8; 4] = self.body[at..at + 4].try_into().expect("4 bytes");
        if self.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    /// The body's first value as a string (signature `s…`).
    fn first_string(&self) -> String {
        let n = self.u32_at(0) as usize;
        String::from_utf8_lossy(&self.body[4..4 + n]).into_owned()
    }
}

/// A connection as root that answers every method call with an empty reply
/// (from a reader thread) and records the signals it receives.
#[derive(Debug)]
struct FakeService {
    writer: Arc<Mutex<UnixStream>>,
    serial: Arc<AtomicU32>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    unique_name: String,
}

#[derive(Debug, Default)]
struct Shared {
    replies: HashMap<u32, Msg>,
    signals: Vec<Msg>,
    answered: u32,
    closed: bool,
}

/// Little-endian marshalling, aligned from the start of the message (which
/// is also the start of the body, both being 8-aligned).
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn align(&mut self, n: usize) {
        while !self.0.len().is_multiple_of(n) {
            self.0.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    fn signature(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
}

fn string_body(s: &str) -> Vec<u8> {
    let mut b = Buf::default();
    b.string(s);
    b.0
}

/// A header field value.
enum Field<'a> {
    /// `o` or `s`
    Str(&'a str, &'a str),
    Sig(&'a str),
    U32(u32),
}

fn encode(
    kind: u8,
    flags: u8,
    serial: u32,
    fields: &[(u8, Field)],
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut h = Buf::default();
    h.0.extend_from_slice(&[b'l', kind, flags, 1]);
    h.u32(body.len() as u32);
    h.u32(serial);
    let len_at = h.0.len();
    h.u32(0);
    h.align(8);
    let start = h.0.len();
    let sig_field = (8, Field::Sig(sig));
    let with_sig = (!sig.is_empty()).then_some(&sig_field);
    for (code, value) in fields.iter().chain(with_sig) {
        h.align(8);
        h.u8(*code);
        match value {
            Field::Str(t, s) => {
                h.signature(t);
                h.string(s);
            }
            Field::Sig(s) => {
                h.signature("g");
                h.signature(s);
            }
            Field::U32(v) => {
                h.signature("u");
                h.u32(*v);
            }
        }
    }
    let len = (h.0.len() - start) as u32;
    h.0[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    h.align(8);
    h.0.extend_from_slice(body);
    h.0
}

fn read_msg(r: &mut impl Read) -> io::Result<Msg> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head)?;
    let little_endian = head[0] == b'l';
    let u32_at = |b: &[u8], at: usize| {
        let b: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let body_len = u32_at(&head, 4) as usize;
    let fields_end = 16 + u32_at(&head, 12) as usize;
    let body_at = fields_end.next_multiple_of(8);
    let mut all = head.to_vec();
    all.resize(body_at + body_len, 0);
    r.read_exact(&mut all[16..])?;

    let mut m = Msg {
        kind: head[1],
        flags: head[2],
        serial: u32_at(&head, 8),
        little_endian,
        body: all[body_at..].to_vec(),
        ..Msg::default()
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected header field");
    let mut p = 16;
    while p < fields_end {
        p = p.next_multiple_of(8);
        let code = all[p];
        let t = all[p + 2];
        p += 4; // code, signature length 1, type, NUL
        let text = match t {
            b's' | b'o' => {
                p = p.next_multiple_of(4);
                let n = u32_at(&all, p) as usize;
                let s = String::from_utf8_lossy(&all[p + 4..p + 4 + n]).into_owned();
                p += 4 + n + 1;
                Some(s)
            }
            b'g' => {
                let n = all[p] as usize;
                p += 1 + n + 1;
                None
            }
            b'u' => {
                p = p.next_multiple_of(4);
                if code == 5 {
                    m.reply_serial = Some(u32_at(&all, p));
                }
                p += 4;
                None
            }
            _ => return Err(bad()),
        };
        match code {
            3 => m.member = text,
            4 => m.error_name = text,
            7 => m.sender = text,
            _ => {}
        }
    }
    Ok(m)
}

fn socket_path(address: &str) -> io::Result<&str> {
    address
        .strip_prefix("unix:")
        .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix("path=")))
        .ok_or_else(|| io::Error::other(format!("not a unix:path address: {address}")))
}

impl FakeService {
    /// Connects, authenticates as root (EXTERNAL) and says Hello.
    fn connect(address: &str) -> io::Result<FakeService> {
        let mut sock = UnixStream::connect(socket_path(address)?)?;
        sock.set_read_timeout(Some(WAIT))?;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        sock.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            sock.read_exact(&mut byte)?;
            line.push(byte[0]);
        }
        if !line.starts_with(b"OK ") {
            return Err(io::Error::other(format!(
                "auth: {}",
                String::from_utf8_lossy(&line)
            )));
        }
        sock.write_all(b"BEGIN\r\n")?;
        sock.set_read_timeout(None)?;

        let writer = Arc::new(Mutex::new(sock.try_clone()?));
        let serial = Arc::new(AtomicU32::new(1));
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let reader = {
            let (writer, serial, shared) = (
                Arc::clone(&writer),
                Arc::clone(&serial),
                Arc::clone(&shared),
            );
            std::thread::spawn(move || serve(sock, &writer, &serial, &shared))
        };
        let mut service = FakeService {
            writer,
            serial,
            shared,
            reader: Some(reader),
            unique_name: String::new(),
        };
        service.unique_name = service.call_bus("Hello", "", &[]).first_string();
        Ok(service)
    }

    fn send(&self, kind: u8, flags: u8, fields: &[(u8, Field)], sig: &str, body: &[u8]) -> u32 {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let msg = encode(kind, flags, serial, fields, sig, body);
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&msg)
            .expect("write to the bus");
        serial
    }

    /// Calls a method of the bus driver and returns its reply; panics on an
    /// error reply or none.
    fn call_bus(&self, member: &str, sig: &str, body: &[u8]) -> Msg {
        let serial = self.send(
            METHOD_CALL,
            0,
            &[
                (1, Field::Str("o", "/org/freedesktop/DBus")),
                (2, Field::Str("s", "org.freedesktop.DBus")),
                (3, Field::Str("s", member)),
                (6, Field::Str("s", "org.freedesktop.DBus")),
            ],
            sig,
            body,
        );
        let (lock, cv) = &*self.shared;
        let s = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut s, _) = cv
            .wait_timeout_while(s, WAIT, |s| !s.closed && !s.replies.contains_key(&serial))
            .unwrap_or_else(|p| p.into_inner());
        let reply = s
            .replies
            .remove(&serial)
            .unwrap_or_else(|| panic!("no reply to {member}"));
        assert_eq!(
            reply.kind,
            METHOD_RETURN,
            "{member}: {:?} {}",
            reply.error_name,
            if reply.kind == ERROR {
                reply.first_string()
            } else {
                String::new()
            }
        );
        reply
    }

    /// RequestName(name, 0) → the bus's reply code (1 = primary owner).
    fn request_name(&self, name: &str) -> u32 {
        let mut body = Buf::default();
        body.string(name);
        body.u32(0);
        self.call_bus("RequestName", "su", &body.0).u32_at(0)
    }

    /// Emits ConnectionEvent(kind, {"pid": <u32 42>}) as the service would.
    fn emit_connection_event(&self, kind: &str) {
        let mut b = Buf::default();
        b.string(kind);
        let len_at = b.0.len().next_multiple_of(4);
        b.u32(0);
        b.align(8);
        let start = b.0.len();
        b.align(8);
        b.string("pid");
        b.signature("u");
        b.u32(42);
        let len = (b.0.len() - start) as u32;
        b.0[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        self.send(
            SIGNAL,
            NO_REPLY_EXPECTED,
            &[
                (1, Field::Str("o", PATH)),
                (2, Field::Str("s", NAME)),
                (3, Field::Str("s", "ConnectionEvent")),
            ],
            "sa{sv}",
            &b.0,
        );
    }

    /// Waits until a signal named `member` has arrived.
    fn wait_signal(&self, member: &str, timeout: Duration) -> bool {
        let (lock, cv) = &*self.shared;
        let s = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = cv
            .wait_timeout_while(s, timeout, |s| {
                !s.closed
                    && !s
                        .signals
                        .iter()
                        .any(|m| m.member.as_deref() == Some(member))
            })
            .unwrap_or_else(|p| p.into_inner());
        s.signals
            .iter()
            .any(|m| m.member.as_deref() == Some(member))
    }

    /// How many method calls (other than replies to the bus) were answered.
    fn calls_answered(&self) -> u32 {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered
    }
}

/// The reader thread: answers method calls, files replies and signals.
fn serve(
    mut sock: UnixStream,
    writer: &Mutex<UnixStream>,
    serial: &AtomicU32,
    shared: &(Mutex<Shared>, Condvar),
) {
    let (lock, cv) = shared;
    while let Ok(m) = read_msg(&mut sock) {
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        match m.kind {
            METHOD_CALL if m.flags & NO_REPLY_EXPECTED == 0 => {
                let mut fields = vec![(5, Field::U32(m.serial))];
                if let Some(sender) = &m.sender {
                    fields.push((6, Field::Str("s", sender)));
                }
                let serial = serial.fetch_add(1, Ordering::Relaxed);
                let reply = encode(METHOD_RETURN, NO_REPLY_EXPECTED, serial, &fields, "", &[]);
                let _ = writer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_all(&reply);
                s.answered += 1;
            }
            METHOD_RETURN | ERROR => {
                if let Some(r) = m.reply_serial {
                    s.replies.insert(r, m);
                }
            }
            SIGNAL => s.signals.push(m),
            _ => {}
        }
        cv.notify_all();
    }
    lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    cv.notify_all();
}

impl Drop for FakeService {
    fn drop(&mut self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}
