//! Regression tests of "hold under abuse" on the service's side: the bus
//! name cannot be taken over, losing the bus stops the service loudly (so
//! systemd starts it again), and what hostile processes and users write —
//! comms that are not UTF-8, names that mimic the line's separator — is
//! escaped, never dropped or passed on raw. Needs root (CI runs as root).

mod common;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{client, runtime, start, Service, BIN};
use leco_testkit::bus::TestBus;
use leco_testkit::{require_root, spawn_named};

/// The unique name owning org.leco.Overseer1 on `bus`.
fn owner(bus: &TestBus) -> Option<String> {
    runtime().block_on(async {
        let conn = client(bus).await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("DBus proxy");
        let name = zbus::names::BusName::from_static_str("org.leco.Overseer1").expect("name");
        dbus.get_name_owner(name).await.ok().map(|o| o.to_string())
    })
}

/// Waits up to `limit` for `svc` to exit; its exit code and stderr.
fn exit_within(svc: &mut Service, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = svc.child.try_wait().expect("try_wait") {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn the_bus_name_cannot_be_taken_over() {
    if !require_root("the_bus_name_cannot_be_taken_over") {
        return;
    }
    let bus = TestBus::start().expect("private dbus-daemon");
    let _first = start(&bus, &[]);
    let held = owner(&bus).expect("the first service owns the name");

    // A second service says who serves already, and stops.
    let second = std::process::Command::new(BIN)
        .args(["--standalone", "--bus-address", bus.address()])
        .output()
        .expect("run a second service");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("org.leco.Overseer1 is already served") && err.contains(&held),
        "{err}"
    );

    // Root may own the name by policy, but asking to replace the owner
    // (flag 2, ReplaceExisting) does not take it.
    let reply = runtime().block_on(async {
        let conn = client(&bus).await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("DBus proxy");
        let name = zbus::names::WellKnownName::from_static_str("org.leco.Overseer1").expect("name");
        dbus.request_name(name, zbus::fdo::RequestNameFlags::ReplaceExisting.into())
            .await
            .expect("RequestName answers")
    });
    assert_eq!(reply, zbus::fdo::RequestNameReply::InQueue);
    assert_eq!(owner(&bus), Some(held), "the first service still serves");
}

#[test]
fn losing_the_bus_stops_the_service_with_an_error() {
    if !require_root("losing_the_bus_stops_the_service_with_an_error") {
        return;
    }
    let mut bus = TestBus::start().expect("private dbus-daemon");
    let mut svc = start(&bus, &[]);
    // Idle: nothing is sent, so only watching the connection can notice.
    std::thread::sleep(Duration::from_millis(300));
    bus.restart().expect("restart dbus-daemon");
    let code = exit_within(&mut svc, Duration::from_secs(5));
    let (_, err) = svc.terminate();
    // 75, EX_TEMPFAIL: what makes the unit restart it.
    assert_eq!(code, Some(75), "{err:#?}");
    assert!(err.iter().any(|l| l.contains("lost the bus")), "{err:#?}");
}

#[test]
fn a_comm_that_is_not_utf8_hides_nothing() {
    if !require_root("a_comm_that_is_not_utf8_hides_nothing") {
        return;
    }
    let mut svc = Service::start(&["--standalone", "--json"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let child = spawn_named("leco-t-bytes", move |_| {
        let name = b"\xff\xfeleco\x1b[2J\0";
        // SAFETY: `name` is NUL-terminated.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        let Ok(_s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        std::thread::sleep(Duration::from_millis(1500));
        0
    });
    let (_conn, _) = listener.accept().expect("accept");
    let new = svc.wait_json(|v| v["kind"] == "new" && v["remote_port"] == port);
    assert_eq!(new["pid"], child.pid());
    assert_eq!(new["comm"], "\u{fffd}\u{fffd}leco\\u{1b}[2J");
    let me = std::env::current_exe().expect("exe");
    assert_eq!(new["exe"], me.to_string_lossy().as_ref());
    assert!(
        new["cmdline"].as_array().is_some_and(|a| !a.is_empty()),
        "{new}"
    );
    assert_eq!(child.wait(), 0);
}

#[test]
fn names_cannot_fake_the_line_or_its_separator() {
    if !require_root("names_cannot_fake_the_line_or_its_separator") {
        return;
    }
    let mut svc = Service::start(&["--standalone"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // 15 bytes: what the kernel keeps of a comm.
    let child = spawn_named(" :: root :: ss", move |_| {
        let Ok(_s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        std::thread::sleep(Duration::from_millis(500));
        0
    });
    let (_conn, _) = listener.accept().expect("accept");
    let line = svc.wait_line(|l| {
        (l.starts_with("+ ") && l.contains(&format!(" {port}/tcp"))).then(|| l.to_owned())
    });
    assert!(line.contains("::  :\\u{3a} root :\\u{3a} ss ::"), "{line}");
    assert_eq!(line.matches(" :: ").count(), 3, "{line}");
    assert_eq!(child.wait(), 0);
}

#[test]
fn load_without_privileges_names_them_first() {
    if !require_root("load_without_privileges_names_them_first") {
        return;
    }
    use std::os::unix::process::CommandExt;
    for args in [
        &["load"][..],
        &["load", "--pin", "/sys/fs/bpf/leco-test-nobody"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run as nobody");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains("CAP_BPF"), "{args:?}: {err}");
        assert!(!err.contains("NOTIFY_SOCKET"), "{args:?}: {err}");
    }
}

#[test]
fn a_huge_command_line_is_bounded_and_marked() {
    if !require_root("a_huge_command_line_is_bounded_and_marked") {
        return;
    }
    let mut svc = Service::start(&["--standalone", "--json"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // 1.5 MB of arguments (each at the kernel's 128 KiB limit), and a
    // connection made by bash itself.
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 2; exec 3>&-"
        ))
        .args(std::iter::repeat_n("x".repeat(120 * 1024), 12))
        .spawn()
        .expect("bash with a huge command line");
    let (_conn, _) = listener.accept().expect("accept");
    let new = svc.wait_json(|v| v["kind"] == "new" && v["remote_port"] == port);
    let args = new["cmdline"].as_array().expect("cmdline");
    let total: usize = args.iter().map(|a| a.as_str().map_or(0, str::len)).sum();
    assert!(
        total <= leco_proto::MAX_CMDLINE_BYTES,
        "{total} bytes of command line"
    );
    assert!(
        args.last()
            .and_then(|a| a.as_str())
            .is_some_and(|a| a.ends_with(leco_proto::CUT_MARK)),
        "the cut is marked: {:?}",
        &args[args.len().saturating_sub(2)..]
    );
    assert_eq!(args[0], "bash");
    assert!(child.wait().expect("bash").success());
}

/// The D-Bus error name of calling `member(args)` on `interface`.
async fn call_error<B>(conn: &zbus::Connection, interface: &str, member: &str, args: &B) -> String
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    match conn
        .call_method(
            Some("org.leco.Overseer1"),
            "/org/leco/Overseer1",
            Some(interface),
            member,
            args,
        )
        .await
    {
        Ok(reply) => format!("answered {:?}", reply.body().signature().to_string()),
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(e) => format!("{e}"),
    }
}

#[test]
fn methods_refuse_arguments_they_do_not_take() {
    if !require_root("methods_refuse_arguments_they_do_not_take") {
        return;
    }
    let bus = TestBus::start().expect("private dbus-daemon");
    let _svc = start(&bus, &[]);
    runtime().block_on(async {
        let conn = client(&bus).await;
        let invalid = "org.freedesktop.DBus.Error.InvalidArgs";
        let leco = "org.leco.Overseer1";
        assert_eq!(call_error(&conn, leco, "Snapshot", &(7u32,)).await, invalid);
        assert_eq!(
            call_error(&conn, leco, "SnapshotSince", &("x",)).await,
            invalid
        );
        assert_eq!(call_error(&conn, leco, "SnapshotSince", &()).await, invalid);
        assert_eq!(
            call_error(&conn, leco, "Snapshot", &()).await,
            "answered \"aa{sv}\""
        );
        assert_eq!(
            call_error(&conn, leco, "SnapshotSince", &(0u64,)).await,
            "answered \"aa{sv}\""
        );
        // Read-only properties say so.
        let props = "org.freedesktop.DBus.Properties";
        let value = zbus::zvariant::Value::from("9.9");
        assert_eq!(
            call_error(&conn, props, "Set", &(leco, "Version", value)).await,
            "org.freedesktop.DBus.Error.PropertyReadOnly"
        );
        let value = zbus::zvariant::Value::from(1u64);
        assert_eq!(
            call_error(&conn, props, "Set", &(leco, "NoSuchThing", value)).await,
            "org.freedesktop.DBus.Error.UnknownProperty"
        );
    });
}

#[test]
fn huge_command_lines_keep_snapshot_small() {
    if !require_root("huge_command_lines_keep_snapshot_small") {
        return;
    }
    let bus = TestBus::start().expect("private dbus-daemon");
    let _svc = start(&bus, &[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // 30 connections from one process with 1.5 MB of command line: once a
    // 47 MB Snapshot() that got the service dropped from the bus.
    let mut bash = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 30); do exec {{fd}}<>/dev/tcp/127.0.0.1/{port}; done; sleep 3"
        ))
        .args(std::iter::repeat_n("z".repeat(120 * 1024), 12))
        .spawn()
        .expect("bash with a huge command line");
    let accepted: Vec<TcpStream> = (0..30)
        .map(|_| listener.accept().expect("accept").0)
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let bytes = runtime().block_on(async {
        let conn = client(&bus).await;
        let reply = common::snapshot_reply(&conn)
            .await
            .expect("Snapshot answers");
        reply.body().len()
    });
    assert!(
        bytes < 256 << 10,
        "Snapshot of 30 such connections: {bytes} bytes"
    );
    drop(accepted);
    assert!(bash.wait().expect("bash").success());
}
