//! `leco-service --standalone` end to end: the real binary, the real
//! programs, named child processes making loopback connections.
//! Needs root (CI runs as root; elsewhere these skip, loudly).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{lines, Service, BIN};
use leco_testkit::{require_root, spawn_named, ScratchCgroup};
use serde_json::Value;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64
}

#[test]
fn json_events_carry_the_contract_keys_and_enrichment() {
    if !require_root("json_events_carry_the_contract_keys_and_enrichment") {
        return;
    }
    let mut svc = Service::start(&["--standalone", "--json"]);
    let root = leco_bpf::cgroup2_root().expect("cgroup v2 mounted");
    let scope = format!("leco-test-{}.scope", std::process::id());
    let cg = ScratchCgroup::create(&root, &format!("leco-test.slice/{scope}")).expect("cgroup");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cgref = &cg;
    let child = spawn_named("leco-t-json", move |_| {
        if cgref.enter().is_err() {
            return 1;
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 2;
        };
        if s.write_all(&[0u8; 10_240]).is_err() {
            return 3;
        }
        // Stay alive a moment so /proc can be read, as for any real program.
        std::thread::sleep(Duration::from_millis(1500));
        0
    });
    let pid = child.pid();
    let (mut conn, _) = listener.accept().expect("accept");
    let new = svc.wait_json(|v| v["kind"] == "new" && v["remote_port"] == port);
    assert_eq!(new["proto"], "tcp");
    assert_eq!(new["family"], 4);
    assert_eq!(new["direction"], "out");
    assert_eq!(new["state"], "established");
    assert_eq!(new["pid"], pid);
    assert_eq!(new["comm"], "leco-t-json");
    assert_eq!(new["uid"], 0);
    assert_eq!(new["user"], "root");
    assert_eq!(new["remote_addr"], "127.0.0.1");
    assert_eq!(new["local_addr"], "127.0.0.1");
    let me = std::env::current_exe().expect("exe");
    assert_eq!(
        new["exe"],
        me.to_string_lossy().as_ref(),
        "forked from the test binary"
    );
    assert!(new["cmdline"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(new["cgroup"], format!("/leco-test.slice/{scope}"));
    assert_eq!(new["unit"], scope);
    assert!(new["id"].as_u64().is_some_and(|id| id > 0));
    let first = new["first_seen_us"].as_u64().expect("first_seen_us");
    assert!(
        first.abs_diff(now_us()) < 10_000_000,
        "realtime µs: {first}"
    );
    // Read everything: closing with unread data would reset the connection
    // (and leco would rightly report it as failed).
    std::io::Read::read_exact(&mut conn, &mut [0u8; 10_240]).expect("read");
    assert_eq!(child.wait(), 0);
    drop(conn);
    let closed = svc.wait_json(|v| v["kind"] == "closed" && v["id"] == new["id"]);
    assert_eq!(closed["tx_bytes"], 10_240);
    assert_eq!(closed["unit"], scope, "enrichment carried to the end");
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
}

#[test]
fn human_lines_show_traffic_past_the_threshold() {
    if !require_root("human_lines_show_traffic_past_the_threshold") {
        return;
    }
    let mut svc = Service::start(&["--standalone"]);
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = peer.local_addr().expect("addr").port();
    let child = spawn_named("leco-t-human", move |_| {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            return 1;
        };
        i32::from(s.send_to(&[0u8; 6000], ("127.0.0.1", port)).is_err())
    });
    assert_eq!(child.wait(), 0);
    let tail = format!(":: root :: leco-t-human :: 127.0.0.1 {port}/udp :: v 0B / 5.9K ^");
    let line = svc.wait_line(|l| l.ends_with(&tail).then(|| l.to_owned()));
    assert!(line.starts_with("+ "), "{line}");
    let hms = &line[2..10];
    assert!(
        hms.len() == 8 && hms.as_bytes()[2] == b':' && hms.as_bytes()[5] == b':',
        "{line}"
    );
    // The socket closed with the child: the flow ends.
    svc.wait_line(|l| (l.starts_with("- ") && l.ends_with(&tail)).then_some(()));
}

/// An accepted connection reads apart from an outgoing one: the peer, then
/// the local port it reached; the outgoing one keeps the classic shape.
#[test]
fn incoming_lines_name_the_port_reached_and_outgoing_ones_keep_their_shape() {
    if !require_root("incoming_lines_name_the_port_reached_and_outgoing_ones_keep_their_shape") {
        return;
    }
    let mut svc = Service::start(&["--standalone"]);
    let mut server = spawn_named("leco-t-accept", |p| {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            return 1;
        };
        let Ok(addr) = listener.local_addr() else {
            return 2;
        };
        p.send(u64::from(addr.port()));
        let Ok((mut s, _)) = listener.accept() else {
            return 3;
        };
        let mut b = [0u8; 1];
        i32::from(s.read_exact(&mut b).is_err()) * 4
    });
    let port = u16::try_from(server.recv()).expect("a port");
    let client = spawn_named("leco-t-connect", move |_| {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return 1;
        };
        i32::from(s.write_all(b"x").is_err()) * 2
    });
    assert_eq!(client.wait(), 0);
    assert_eq!(server.wait(), 0);
    let out = format!(":: root :: leco-t-connect :: 127.0.0.1 {port}/tcp");
    let inc = format!(":: root :: leco-t-accept :: 127.0.0.1 → :{port}/tcp");
    let (mut saw_out, mut saw_in) = (false, false);
    svc.wait_line(|l| {
        saw_out |= l.ends_with(&out);
        saw_in |= l.ends_with(&inc);
        (saw_out && saw_in).then_some(())
    });
}

#[test]
fn sigterm_exits_cleanly_and_detaches_every_program() {
    if !require_root("sigterm_exits_cleanly_and_detaches_every_program") {
        return;
    }
    let mut svc = Service::start(&["--standalone", "--json", "-v"]);
    let attached = svc.wait_stderr("attached programs:");
    let ids: Vec<u32> = attached
        .split_whitespace()
        .filter_map(|w| w.split_once('=').and_then(|(_, id)| id.parse().ok()))
        .collect();
    assert_eq!(
        ids.len(),
        leco_bpf::program_names().count(),
        "every program of bpf/src/programs.rs: {attached}"
    );
    assert!(
        bpftool_has(ids[0]),
        "program {} is loaded while running",
        ids[0]
    );
    let (code, err) = svc.terminate();
    assert_eq!(code, 0, "{err:#?}");
    assert!(
        err.iter().any(|l| l.contains("final counters: events=")),
        "{err:#?}"
    );
    // The kernel frees programs after an RCU grace period: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(id) = ids.iter().copied().find(|&id| bpftool_has(id)) {
        assert!(
            Instant::now() < deadline,
            "program {id} still loaded after exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bpftool_has(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool is installed (apt-get install bpftool)")
        .status
        .success()
}

#[test]
fn without_privileges_it_says_which_in_one_line() {
    if !require_root("without_privileges_it_says_which_in_one_line") {
        return;
    }
    let out = Command::new(BIN)
        .arg("--standalone")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("run it as root"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn closing_the_output_pipe_ends_the_service_quietly() {
    if !require_root("closing_the_output_pipe_ends_the_service_quietly") {
        return;
    }
    let mut child = Command::new(BIN)
        .args(["--standalone", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = lines(child.stderr.take().expect("stderr"));
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    stderr
        .recv_timeout(Duration::from_secs(20))
        .expect("readiness line");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let _c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let mut first = String::new();
    out.read_line(&mut first).expect("a line");
    drop(out); // like `| head -1`
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        // Keep events coming so the next write hits the closed pipe.
        let _ = TcpStream::connect(l.local_addr().expect("addr"));
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running after its reader left"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let out = Command::new(BIN)
        .args(["--standalone", "--update-interval", "0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("out of range"), "{err}");
    let help = Command::new(BIN).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--standalone") && help.contains("Examples"),
        "{help}"
    );
}

/// A configuration file that cannot be used ends the service at once with
/// one line naming it, before anything is loaded, whoever runs it: a FIFO
/// (which a blocking read would wait on forever) and the shapes the KDL
/// parser takes seconds to hours on.
#[test]
fn an_unusable_configuration_file_is_refused_at_once() {
    let dir = leco_testkit::scratch_dir("service-unusable");
    for (file, error) in leco_testkit::unusable_configs(&dir, "service") {
        let file = file.to_str().expect("UTF-8 path");
        for mode in [&["--standalone"][..], &["load"]] {
            let args = [mode, &["-c", file]].concat();
            let began = Instant::now();
            let (code, err) =
                leco_testkit::run_to_exit(Command::new(BIN).args(&args), Duration::from_secs(10));
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(
                err.starts_with(&format!("leco-service: {file}{error}")) && !err.contains('\n'),
                "{args:?}: {err}"
            );
            let took = began.elapsed();
            assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
        }
    }
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn lost_records_are_recovered_from_the_kernel_table() {
    if !require_root("lost_records_are_recovered_from_the_kernel_table") {
        return;
    }
    // A one-page ring buffer overflows under a burst: the service must say so
    // and still report every flow, from the kernel's table.
    let mut svc = Service::start(&["--standalone", "--json", "--ring-buffer-kib", "4"]);
    const PEERS: u16 = 2000;
    let mut child = spawn_named("leco-t-storm", |p| {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            return 1;
        };
        for port in 0..PEERS {
            if s.send_to(b"x", ("127.0.0.1", 30_000 + port)).is_err() {
                return 2;
            }
        }
        p.send(1);
        std::thread::sleep(Duration::from_secs(8));
        0
    });
    child.recv();
    let pid = child.pid();
    let mut ports = std::collections::HashSet::new();
    svc.wait_line(|l| {
        let v: Value = serde_json::from_str(l).expect("JSON");
        if v["kind"] == "new" && v["pid"] == pid {
            ports.insert(v["remote_port"].as_u64().unwrap_or(0));
        }
        (ports.len() == usize::from(PEERS)).then_some(())
    });
    svc.wait_stderr("ring buffer was full");
}
