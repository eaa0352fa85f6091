//! leco as installed on a real system: `make install` into a Debian 12 root
//! filesystem, booted with systemd-nspawn (systemd as PID 1, a real system
//! bus, D-Bus activation, the file descriptor store), and driven from
//! outside with nsenter. See ../shared/PLATFORM.md for why these flags.
//!
//! The root filesystem is built once by scripts/systest-rootfs.sh and cached
//! as a tarball under the target directory; every run unpacks a fresh copy.
//! Each run also checks the installed layout and the unit's security score
//! on the host, without booting anything.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NAME: &str = "org.leco.Overseer1";
const PATH: &str = "/org/leco/Overseer1";
/// The named process that makes the test's connection: bash started through
/// a symlink, so that its comm is this name.
const PROBE: &str = "lecoprobe";
/// Highest exposure `systemd-analyze security` may report for leco.service.
const MAX_EXPOSURE: f64 = 2.0;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The directory of the leco-service binary cargo built for this test.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_leco-service"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// The cache for the root filesystem: in the target directory of this build.
fn systest_dir() -> PathBuf {
    bin_dir()
        .parent()
        .expect("target directory")
        .join("systest")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `make install` (or uninstall) with this build's binaries.
fn make(target: &str, destdir: &Path) -> Output {
    run(Command::new("make")
        .arg("-C")
        .arg(workspace())
        .arg(target)
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg("PREFIX=/usr")
        .arg(format!("BIN={}", bin_dir().display())))
}

/// The installed files below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(
                    p.strip_prefix(root)
                        .expect("below root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn exposure(out: &Output) -> f64 {
    let all = text(&out.stdout) + &text(&out.stderr);
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level for leco.service"))
        .unwrap_or_else(|| panic!("no overall exposure in systemd-analyze's output:\n{all}"));
    line.split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line: {line}"))
}

/// `make install` lays out exactly the expected files with paths from
/// PREFIX, keeps an existing configuration, and `make uninstall` removes
/// everything it laid out; the installed unit's security exposure is at most
/// MAX_EXPOSURE. Needs no root and boots nothing.
#[test]
fn install_layout_and_security_score() {
    let scratch = tempdir("install");
    let dest = scratch.0.clone();
    check("make install", &make("install", &dest));

    let mut expected = vec![
        "etc/leco/config.kdl",
        "usr/bin/leco-service",
        "usr/lib/systemd/system/leco.service",
        "usr/lib/sysusers.d/leco.conf",
        "usr/share/dbus-1/system-services/org.leco.Overseer1.service",
        "usr/share/dbus-1/system.d/org.leco.Overseer1.conf",
    ];
    if bin_dir().join("leco-overlay").exists() {
        expected.push("usr/bin/leco-overlay");
    }
    if workspace().join("systemd/leco-overlay.service").exists() {
        expected.push("usr/lib/systemd/user/leco-overlay.service");
    }
    if bin_dir().join("leco-notify").exists() {
        expected.push("usr/bin/leco-notify");
    }
    expected.push("usr/lib/systemd/user/leco-notify.service");
    expected.push("usr/share/applications/leco.desktop");
    expected.sort();
    assert_eq!(files_below(&dest), expected, "make install's layout");

    let unit = fs::read_to_string(dest.join("usr/lib/systemd/system/leco.service"))
        .expect("installed unit");
    assert!(
        unit.contains("ExecStartPre=+/usr/bin/leco-service load")
            && unit.contains("ExecStart=/usr/bin/leco-service run")
            && !unit.contains("@bindir@"),
        "the installed unit's commands must come from PREFIX=/usr:\n{unit}"
    );
    assert_eq!(
        fs::read(dest.join("usr/bin/leco-service")).expect("installed binary"),
        fs::read(env!("CARGO_BIN_EXE_leco-service")).expect("built binary"),
        "make install must install this build's binary"
    );

    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", dest.display()))
        .arg("leco.service"));
    let score = exposure(&out);
    eprintln!("systemd-analyze security --offline=true leco.service: exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "leco.service's exposure is {score}, more than {MAX_EXPOSURE}:\n{}",
        text(&out.stdout)
    );

    // An administrator's configuration survives both install and uninstall.
    let conf = dest.join("etc/leco/config.kdl");
    fs::write(&conf, "service { backlog 10 }\n").expect("edit config");
    check("make install over an existing one", &make("install", &dest));
    assert_eq!(
        fs::read_to_string(&conf).expect("config"),
        "service { backlog 10 }\n",
        "make install overwrote an existing /etc/leco/config.kdl"
    );
    check("make uninstall", &make("uninstall", &dest));
    assert_eq!(
        files_below(&dest),
        vec!["etc/leco/config.kdl".to_string()],
        "make uninstall must remove what install laid out and keep a changed configuration"
    );
    fs::remove_file(&conf).expect("remove config");
    check("make install again", &make("install", &dest));
    check("make uninstall again", &make("uninstall", &dest));
    assert_eq!(
        files_below(&dest),
        Vec::<String>::new(),
        "make uninstall left files behind"
    );
}

/// A scratch directory under target/systest, removed when dropped (also
/// when a test fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir(what: &str) -> Scratch {
    let dir = systest_dir().join(format!("{what}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch directory");
    Scratch(dir)
}

/// A booted container: its systemd-nspawn process and the container's
/// PID 1 (as seen from the host). Powered off, killed if need be, and
/// cleaned up when dropped.
struct Container {
    /// Holds the root filesystem; removed after the container is gone.
    _scratch: Scratch,
    nspawn: Child,
    leader: u32,
    console: PathBuf,
}

impl Container {
    fn boot(scratch: Scratch, root: PathBuf) -> Container {
        let console = scratch.0.join("console.log");
        let log = fs::File::create(&console).expect("console log");
        let machine = format!("leco-systest-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .args(["-q", "-b", "-D"])
            .arg(&root)
            .arg(format!("--machine={machine}"))
            // The first four are needed on our machines (PLATFORM.md): no
            // machined, no host systemd, eBPF allowed. The loader also
            // attaches cgroup hooks, which takes CAP_NET_ADMIN: with a
            // network namespace of its own, the container cannot touch the
            // host's network with it (and its loopback is its own).
            .args([
                "--register=no",
                "--keep-unit",
                "--console=read-only",
                "--private-network",
                "--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN",
                "--system-call-filter=bpf perf_event_open",
                "--volatile=overlay",
                "--bind=/sys/fs/bpf",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn (apt-get install systemd-container)");
        let mut c = Container {
            _scratch: scratch,
            nspawn,
            leader: 0,
            console,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.leader == 0 {
            if let Ok(Some(status)) = c.nspawn.try_wait() {
                c.fail(&format!("systemd-nspawn exited at boot ({status})"));
            }
            if Instant::now() > deadline {
                c.fail("no systemd inside the container after 30 s");
            }
            c.leader = child_named(c.nspawn.id(), "systemd").unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until the container's systemd has its private socket, systemctl
        // cannot reach it and prints nothing.
        let state = c.wait_for("the container's systemd to answer", 60, || {
            let out = c.sh("systemctl is-system-running --wait");
            let state = text(&out.stdout).trim().to_string();
            (!state.is_empty()).then_some(state)
        });
        if !matches!(state.as_str(), "running" | "degraded") {
            c.fail(&format!("the container did not finish booting: {state}"));
        }
        c
    }

    /// Runs a bash script inside the container (all its namespaces), as
    /// root, with a clean environment and a time limit.
    fn sh(&self, script: &str) -> Output {
        run(Command::new("timeout")
            .args(["-k", "5", "90", "nsenter", "-t"])
            .arg(self.leader.to_string())
            .args(["-a", "--", "env", "-i"])
            .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["bash", "-c", script]))
    }

    /// Like `sh`, but the script must succeed; returns its stdout.
    fn ok(&self, what: &str, script: &str) -> String {
        let out = self.sh(script);
        if !out.status.success() {
            self.fail(&format!(
                "{what} failed ({}): `{script}`\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        text(&out.stdout)
    }

    /// Polls `probe` until it returns Some or `secs` pass.
    fn wait_for<T>(&self, what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {secs} s waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Fails the test with what the container's journal says.
    fn fail(&self, msg: &str) -> ! {
        let journal = if self.leader != 0 {
            let all = self.sh("journalctl -b --no-pager -o short-monotonic | tail -n 150");
            let unit = self.sh("journalctl -b --no-pager -o short-monotonic -u leco");
            format!(
                "--- journalctl -b (last 150 lines)\n{}\n--- journalctl -u leco\n{}",
                text(&all.stdout),
                text(&unit.stdout)
            )
        } else {
            String::new()
        };
        // The one way this went wrong that the journal does not explain at
        // its default level: systemd polls stored descriptors and closes any
        // that reports EPOLLERR, as BPF hash and array maps always do.
        let hint = if journal.contains("come without their manifest") {
            "\nHINT: maps missing from the descriptor store: does the loader send FDPOLL=0 \
             with FDSTORE=1? (systemd closes stored fds that poll EPOLLERR)\n"
        } else {
            ""
        };
        let console = fs::read_to_string(&self.console).unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{msg}\n{hint}{journal}\n--- systemd-nspawn console (last 40 lines)\n{}",
            tail.join("\n")
        );
    }

    fn leco_state(&self) -> String {
        text(&self.sh("systemctl is-active leco.service").stdout)
            .trim()
            .to_string()
    }

    /// `Snapshot()` as root, parsed from busctl's JSON.
    fn snapshot(&self) -> Vec<Value> {
        let out = self.ok(
            "Snapshot()",
            &format!("busctl --timeout=30 --json=short call {NAME} {PATH} {NAME} Snapshot"),
        );
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| self.fail(&format!("Snapshot's JSON: {e}: {out}")));
        v["data"][0]
            .as_array()
            .cloned()
            .unwrap_or_else(|| self.fail(&format!("Snapshot is not aa{{sv}}: {out}")))
    }

    /// The kernel ids of the eBPF programs whose links systemd's
    /// descriptor store (the container's PID 1) holds.
    fn stored_programs(&self) -> Vec<u32> {
        let dir = format!("/proc/{}/fdinfo", self.leader);
        let mut ids: Vec<u32> = fs::read_dir(&dir)
            .unwrap_or_else(|e| self.fail(&format!("{dir}: {e}")))
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter(|info| info.contains("link_id:"))
            .filter_map(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("prog_id:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The pid of a child of `parent` whose comm is `comm`.
fn child_named(parent: u32, comm: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(e.path().join("stat")).ok()?;
        // "PID (COMM) STATE PPID ...": COMM may contain spaces and parentheses.
        let (head, tail) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1;
        let ppid: u32 = tail.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && name == comm).then_some(pid)
    })
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.leader != 0 && matches!(self.nspawn.try_wait(), Ok(None)) {
            // SIGRTMIN+4 asks systemd to power off.
            let _ = Command::new("kill")
                .args(["-s", "SIGRTMIN+4", &self.leader.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.nspawn.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if matches!(self.nspawn.try_wait(), Ok(None)) {
            // Killing the container's init ends its whole PID namespace.
            if self.leader != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.leader.to_string()])
                    .status();
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        // nspawn leaves its (empty) cgroups behind when started from the
        // root cgroup; rmdir only removes empty ones, so others' stay.
        for hierarchy in ["unified", "systemd"] {
            for leaf in ["payload", "supervisor"] {
                let _ = Command::new("find")
                    .arg(format!("/sys/fs/cgroup/{hierarchy}/{leaf}"))
                    .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Points the container's systemd-resolved at a DNS server on its own
/// 127.0.0.1 (the test's responder), and nothing else.
fn configure_resolved(root: &Path) {
    let dir = root.join("etc/systemd/resolved.conf.d");
    fs::create_dir_all(&dir).expect("resolved.conf.d");
    fs::write(
        dir.join("leco-test.conf"),
        "[Resolve]\nDNS=127.0.0.1\nDomains=~.\nLLMNR=no\nMulticastDNS=no\nDNSSEC=no\n\
         DNSOverTLS=no\nCache=yes\n",
    )
    .expect("resolved drop-in");
}

/// The container's network namespace under a name of /run/netns (so the
/// test's DNS responder can join it), removed when dropped.
struct AttachedNetns(String);

impl AttachedNetns {
    fn attach(c: &Container) -> AttachedNetns {
        let name = format!("leco-systest-{}", std::process::id());
        check(
            "ip netns attach",
            &run(Command::new("ip").args(["netns", "attach", &name, &c.leader.to_string()])),
        );
        AttachedNetns(name)
    }
}

impl Drop for AttachedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Names from systemd-resolved's own account of its lookups: a lookup
/// through it (`resolvectl query`: no DNS on the wire from the program), a
/// connection to the address, named `resolved`, after resolved restarted
/// (leco's subscription ends with it; `run` exits to be started again, and
/// `load` subscribes anew); and a lookup served from resolved's cache
/// (after leco restarted, so it knew nothing of the name).
fn resolved_names(c: &Container) {
    use leco_testkit::dns::{Rec, Responder};
    let ns = AttachedNetns::attach(c);
    let a = |s: &str| Rec::A(s.parse().expect("IPv4"), 300);
    let zone = vec![
        ("web.leco.test".to_string(), a("198.51.100.7")),
        ("cached.leco.test".to_string(), a("198.51.100.8")),
    ];
    let _dns = Responder::start(&ns.0, zone);
    // From the host: the container has no iproute2.
    for a in ["198.51.100.7/32", "198.51.100.8/32"] {
        check(
            "an address for the answers",
            &run(Command::new("ip").args(["-n", &ns.0, "addr", "add", a, "dev", "lo"])),
        );
    }
    // Resolved answers only while some link is routable ("Network is
    // down" else): a veth pair with both ends in the container, and a
    // default route to its other end (no dummy module here).
    for args in [
        "link add lecoveth0 type veth peer name lecoveth1",
        "link set lecoveth0 up",
        "link set lecoveth1 up",
        "addr add 192.0.2.1/24 dev lecoveth0",
        "route add default via 192.0.2.2 dev lecoveth0",
    ] {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &ns.0]).args(args.split(' '));
        check(&format!("ip {args}"), &run(&mut cmd));
    }
    let port: u16 = 4748;
    c.ok(
        "the named listener",
        &format!(
            "systemd-run -q --unit=lecotest-named-listen \
             systemd-socket-activate -l 0.0.0.0:{port} -a --inetd sleep infinity"
        ),
    );
    c.wait_for("the named listener", 10, || {
        let log = c.sh("journalctl -q -u lecotest-named-listen -o cat");
        text(&log.stdout).contains("Listening on").then_some(())
    });
    // The first monitor went with the bus that was killed above.
    c.ok(
        "busctl monitor",
        &format!(
            "systemd-run -q --unit=lecotest-named-monitor \
             -p StandardOutput=file:/run/lecotest-named-monitor -p StandardError=journal \
             busctl --json=short monitor \
             --match=\"type='signal',interface='{NAME}',member='ConnectionEvent'\""
        ),
    );
    c.wait_for("busctl monitor to start", 10, || {
        let log = c.sh("journalctl -q -u lecotest-named-monitor -o cat");
        text(&log.stdout).contains("Monitoring").then_some(())
    });
    let journal = || c.sh("journalctl -q -o cat -u leco.service SYSLOG_IDENTIFIER=leco");
    let lookup_and_connect = |name: &str, addr: &str, unit: &str| -> String {
        let answer = c.ok(
            &format!("resolvectl query {name}"),
            &format!("resolvectl query --legend=yes {name}"),
        );
        if !answer.contains(addr) {
            c.fail(&format!(
                "resolvectl query {name} did not answer {addr}:\n{answer}"
            ));
        }
        c.ok(
            &format!("the probe to {name}"),
            &format!(
                "systemd-run -q --unit={unit} /run/{PROBE} \
                 -c 'exec 3<>/dev/tcp/{addr}/{port}; printf hello >&3; read -r <&3'"
            ),
        );
        let to_addr = || -> Vec<Value> {
            let log =
                fs::read_to_string(c.root_path("/run/lecotest-named-monitor")).unwrap_or_default();
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|m| m["payload"]["data"][1].clone())
                .filter(|conn| conn["remote_addr"]["data"] == addr)
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let named = loop {
            if let Some(n) = to_addr()
                .into_iter()
                .find(|conn| conn["remote_name"]["data"] == name)
            {
                break n;
            }
            if Instant::now() > deadline {
                c.fail(&format!(
                    "no event named the connection to {addr} {name}; its events: {:#?}",
                    to_addr()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if named["name_source"]["data"] != "resolved" {
            c.fail(&format!(
                "the connection to {name} was named from {}, not resolved's lookups: {named}",
                named["name_source"]["data"]
            ));
        }
        answer
    };
    let said = journal();
    if !text(&said.stdout).contains("subscribed to systemd-resolved's lookups, for `run`") {
        c.fail(&format!(
            "`load` did not subscribe to resolved:\n{}",
            text(&said.stdout)
        ));
    }
    // Resolved restarts (here first: it lost the bus when dbus-daemon was
    // killed above, and a restart is what brings it back there): leco's
    // subscription ends, leco is started again and subscribes anew.
    c.ok(
        "systemctl reset-failed leco",
        "systemctl reset-failed leco.service",
    );
    let restarts_before = c.ok("NRestarts", "systemctl show -P NRestarts leco.service");
    c.ok(
        "systemctl restart systemd-resolved",
        "systemctl restart systemd-resolved.service",
    );
    c.wait_for(
        "leco to be started again after resolved restarted",
        30,
        || {
            let restarts = c.ok("NRestarts", "systemctl show -P NRestarts leco.service");
            (restarts.trim() != restarts_before.trim() && c.leco_state() == "active").then_some(())
        },
    );
    lookup_and_connect("web.leco.test", "198.51.100.7", "lecotest-named-1");
    eprintln!(
        "booted_system: after systemctl restart systemd-resolved, leco was started again and \
         subscribed anew; resolvectl query, then a connection named by resolved's lookup"
    );

    // Resolved caches the next name; leco, restarted, knows nothing of it.
    c.ok("a first lookup", "resolvectl query cached.leco.test");
    c.ok(
        "systemctl reset-failed leco",
        "systemctl reset-failed leco.service",
    );
    c.ok("systemctl restart leco", "systemctl restart leco.service");
    let answer = lookup_and_connect("cached.leco.test", "198.51.100.8", "lecotest-named-2");
    if !answer.contains("cache") {
        c.fail(&format!(
            "the second lookup was not served from resolved's cache:\n{answer}"
        ));
    }
    eprintln!("booted_system: a lookup served from resolved's cache names the connection too");
}

/// The root filesystem with leco installed: a fresh copy of the cached
/// Debian 12 tarball plus the real `make install`.
fn prepare_root() -> (Scratch, PathBuf) {
    let script = workspace().join("scripts/systest-rootfs.sh");
    let out = run(Command::new(&script).arg(systest_dir()));
    check("scripts/systest-rootfs.sh", &out);
    let tarball = text(&out.stdout).trim().to_string();

    let scratch = tempdir("run");
    let root = scratch.0.join("root");
    fs::create_dir(&root).expect("root directory");
    check(
        "unpacking the root filesystem",
        &run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-xf", &tarball])),
    );
    check(
        "make install DESTDIR=ROOT PREFIX=/usr",
        &make("install", &root),
    );
    configure_resolved(&root);
    (scratch, root)
}

/// Everything issue 5 asks of the installed service, in one boot: D-Bus
/// activation, the privilege split, events and Snapshot, a restart that
/// keeps the kernel state, the access policy, nothing left loaded after a
/// stop, and a failed load that is readable and not retried forever.
#[test]
fn booted_system() {
    if !leco_testkit::require_root("booted_system") {
        return;
    }
    let started = Instant::now();
    eprintln!(
        "booted_system: root filesystem from target/systest (the first run builds it with \
         debootstrap: 1-3 minutes)"
    );
    let (scratch, root) = prepare_root();

    // Before boot: the unit is valid against the installed tree.
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg("leco.service"));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify --root=ROOT leco.service is not clean ({}):\n{said}",
        out.status
    );
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg("leco.service"));
    let score = exposure(&out);
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}");

    let c = Container::boot(scratch, root);
    eprintln!(
        "booted_system: container up after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The service user exists (sysusers.d at boot), and the test's readers.
    let leco_uid: u32 = c
        .ok("id -u leco (from sysusers.d/leco.conf)", "id -u leco")
        .trim()
        .parse()
        .expect("uid");
    c.ok(
        "adding the test users",
        "useradd -M -N -g users -G leco lecoreader && useradd -M -N -g users lecooutsider",
    );

    // Not running until a client calls.
    let state = c.leco_state();
    if state != "inactive" {
        c.fail(&format!(
            "leco.service is {state} before any client called it"
        ));
    }
    let before = c.snapshot();
    if c.leco_state() != "active" {
        c.fail("Snapshot() answered but leco.service is not active");
    }
    eprintln!(
        "booted_system: activated by Snapshot() ({} connections)",
        before.len()
    );

    // The privilege split: the main process as leco, without any
    // capability; the programs loaded by root.
    let pid = c
        .ok("MainPID", "systemctl show -P MainPID leco.service")
        .trim()
        .to_string();
    let status = c.ok(
        "the main process's status",
        &format!("cat /proc/{pid}/status"),
    );
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| c.fail(&format!("no {name} in /proc/{pid}/status:\n{status}")))
    };
    let uids: Vec<String> = field("Uid:").split_whitespace().map(String::from).collect();
    if uids.iter().any(|u| *u != leco_uid.to_string()) {
        c.fail(&format!(
            "the main process runs with uids {uids:?}, not leco's {leco_uid}"
        ));
    }
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        if field(cap) != "0000000000000000" {
            c.fail(&format!(
                "the main process has capabilities: {cap} {}",
                field(cap)
            ));
        }
    }
    let programs = c.stored_programs();
    if programs.is_empty() {
        c.fail("systemd's descriptor store holds no eBPF link (no handover?)");
    }
    for id in &programs {
        let out =
            run(Command::new("bpftool").args(["--json", "prog", "show", "id", &id.to_string()]));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if info["uid"] != 0 {
            c.fail(&format!(
                "program {id} was not loaded by root: {}",
                text(&out.stdout)
            ));
        }
    }
    eprintln!(
        "booted_system: main process pid {pid} uid {leco_uid}, CapEff 0; {} programs loaded by \
         root, held by systemd's store",
        programs.len()
    );
    // The `+` loader is outside the unit's sandbox: it confines itself, and
    // checks that it did (by trying what the sandbox forbids) before it
    // loads anything.
    let said = c.ok(
        "the loader's journal",
        "journalctl -q -o cat -u leco.service SYSLOG_IDENTIFIER=leco",
    );
    // (/run/leco links to /run/private/leco under DynamicUser=.)
    let confined = "leco-service: the loader ran confined to CAP_BPF CAP_DAC_OVERRIDE CAP_FOWNER \
                    CAP_NET_ADMIN CAP_PERFMON, a read-only system (writable: \
                    /run/private/leco), no home, no network";
    if !said.lines().any(|l| l == confined) {
        c.fail(&format!(
            "the loader did not say it ran confined (`{confined}`):\n{said}"
        ));
    }
    eprintln!("booted_system: {confined}");

    // A named loopback connection: signal and Snapshot.
    // Any port: the container has a network namespace of its own.
    let port: u16 = 4747;
    c.ok(
        "busctl monitor",
        &format!(
            "systemd-run -q --unit=lecotest-monitor -p StandardOutput=file:/run/lecotest-monitor -p StandardError=journal \
             busctl --json=short monitor \
             --match=\"type='signal',interface='{NAME}',member='ConnectionEvent'\""
        ),
    );
    c.wait_for("busctl monitor to start", 10, || {
        let log = c.sh("journalctl -q -u lecotest-monitor -o cat");
        text(&log.stdout).contains("Monitoring").then_some(())
    });
    c.ok(
        "the listener",
        &format!(
            "systemd-run -q --unit=lecotest-listen \
             systemd-socket-activate -l 127.0.0.1:{port} -a --inetd sleep infinity"
        ),
    );
    c.wait_for("the listener", 10, || {
        let log = c.sh("journalctl -q -u lecotest-listen -o cat");
        text(&log.stdout).contains("Listening on").then_some(())
    });
    c.ok(
        "the probe",
        &format!(
            "ln -sf /bin/bash /run/{PROBE} && systemd-run -q --unit=lecotest-probe /run/{PROBE} \
             -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; printf hello >&3; read -r <&3'"
        ),
    );
    let is_probe = |conn: &Value| {
        conn["comm"]["data"] == PROBE
            && conn["remote_port"]["data"].as_u64() == Some(port.into())
            && conn["direction"]["data"] == "out"
    };
    c.wait_for(
        "the probe's `new` ConnectionEvent on busctl monitor",
        15,
        || {
            let log = fs::read_to_string(c.root_path("/run/lecotest-monitor")).ok()?;
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|m| m["payload"]["data"][0] == "new" && is_probe(&m["payload"]["data"][1]))
                .then_some(())
        },
    );
    let conn = c.wait_for("the probe's connection in Snapshot()", 10, || {
        c.snapshot().into_iter().find(|v| is_probe(v))
    });
    let probe_pid = conn["pid"]["data"].clone();
    // The sandbox leaves the service what it reads of other processes in
    // /proc (no ProtectProc=invisible, no ProcSubset=pid). The kernel's pids
    // are the host's, which the container's /proc does not know, so this
    // reads the probe's files as the service would: in its mount namespace
    // (its own /proc instance), as leco, without capabilities.
    let probe_here = c
        .ok(
            "the probe's pid",
            "systemctl show -P MainPID lecotest-probe.service",
        )
        .trim()
        .to_string();
    let seen = c.ok(
        "reading another user's /proc files from inside the service's sandbox",
        &format!(
            "nsenter -t {pid} -m -- setpriv --reuid=leco --regid=leco --clear-groups \
             --inh-caps=-all --bounding-set=-all sh -c 'tr \"\\0\" \" \" \
             </proc/{probe_here}/cmdline; echo; grep -m1 ^Uid: /proc/{probe_here}/status; \
             cat /proc/{probe_here}/cgroup /proc/sys/net/ipv4/ip_local_port_range'"
        ),
    );
    if conn["unit"]["data"] != "lecotest-probe.service" {
        c.fail(&format!(
            "the probe's connection is not named by its unit: {conn}"
        ));
    }
    if !seen.contains("/dev/tcp") || !seen.contains("lecotest-probe.service") {
        c.fail(&format!(
            "inside leco.service's sandbox, /proc does not show the probe's command line and \
             cgroup:\n{seen}"
        ));
    }
    eprintln!(
        "booted_system: {PROBE} → 127.0.0.1:{port} seen as ConnectionEvent and in Snapshot \
         (unit {}); the sandbox's /proc shows other users' processes",
        conn["unit"]["data"]
    );

    // Its memory is capped as the unit says.
    let cap = c.ok("MemoryMax", "systemctl show -P MemoryMax leco.service");
    if cap.trim() != (160u64 << 20).to_string() {
        c.fail(&format!(
            "leco.service has MemoryMax {} (want 160M)",
            cap.trim()
        ));
    }
    // Its store: StateDirectory=, the service user's alone.
    let state = c.ok(
        "the state directory",
        "stat -L -c '%U %a' /var/lib/leco && stat -c '%U' /var/lib/leco/leco.sqlite",
    );
    if state.split_whitespace().collect::<Vec<_>>() != ["leco", "700", "leco"] {
        c.fail(&format!(
            "/var/lib/leco and its leco.sqlite must be user leco's, the directory mode 0700; \
             stat says: {state}"
        ));
    }
    // A connection that ends before the restart (a UDP datagram: its flow
    // ends as its socket closes).
    c.ok(
        "the datagram probe",
        &format!(
            "ln -sf /bin/bash /run/{PROBE}-udp && systemd-run -q --wait --unit=lecotest-udp \
             /run/{PROBE}-udp -c 'printf hello >/dev/udp/127.0.0.1/{port}'"
        ),
    );
    let ended_probe = |conn: &Value| {
        conn["comm"]["data"] == format!("{PROBE}-udp")
            && conn["proto"]["data"] == "udp"
            && conn["state"]["data"] == "closed"
    };
    let ended = c.wait_for("the datagram probe, ended, in Snapshot()", 10, || {
        c.snapshot().into_iter().find(|v| ended_probe(v))
    });
    // A restart keeps the kernel state: same programs, same connection.
    c.ok("systemctl restart leco", "systemctl restart leco.service");
    if c.leco_state() != "active" {
        c.fail("leco.service is not active after a restart");
    }
    let after = c.stored_programs();
    if after != programs {
        c.fail(&format!(
            "a restart replaced the programs ({programs:?} before, {after:?} after)"
        ));
    }
    let new_pid = c
        .ok("MainPID", "systemctl show -P MainPID leco.service")
        .trim()
        .to_string();
    if new_pid == pid {
        c.fail("systemctl restart did not restart the main process");
    }
    let snap = c.snapshot();
    if !snap
        .iter()
        .any(|v| is_probe(v) && v["pid"]["data"] == probe_pid)
    {
        c.fail(&format!(
            "after a restart, the probe's connection is not in Snapshot() ({} entries)",
            snap.len()
        ));
    }
    if !snap
        .iter()
        .any(|v| ended_probe(v) && v["id"]["data"] == ended["id"]["data"])
    {
        c.fail(&format!(
            "after a restart, the connection that ended before it is not in Snapshot() \
             ({} entries)",
            snap.len()
        ));
    }
    eprintln!(
        "booted_system: /var/lib/leco is leco's (0700); after systemctl restart, the live \
         connection and the one that ended before it are in Snapshot"
    );

    // Losing the bus (dbus-daemon killed; the socket starts it again)
    // stops the service with an error, and systemd starts it again.
    let restarts_before = c.ok("NRestarts", "systemctl show -P NRestarts leco.service");
    c.ok(
        "killing dbus-daemon",
        "systemctl kill --signal=KILL dbus.service",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        let restarts = c.ok("NRestarts", "systemctl show -P NRestarts leco.service");
        if restarts.trim() != restarts_before.trim() && c.leco_state() == "active" {
            break Some(restarts.trim().to_owned());
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let Some(restarts) = restarted else {
        c.fail(&format!(
            "after dbus-daemon died, leco.service was not restarted (NRestarts {}, state {})",
            restarts_before.trim(),
            c.leco_state()
        ));
    };
    let back = c.snapshot();
    if !back.iter().any(is_probe) {
        c.fail("after the bus came back, the probe's connection is not in Snapshot()");
    }
    eprintln!(
        "booted_system: dbus-daemon killed; leco lost the bus, exited with an error and was \
         restarted ({} restarts), keeping what it saw",
        restarts
    );

    // The policy: group leco reads, others are refused.
    c.ok(
        "Snapshot() as a member of group leco",
        &format!(
            "setpriv --reuid=lecoreader --regid=users --init-groups \
             busctl --timeout=30 call {NAME} {PATH} {NAME} Snapshot >/dev/null"
        ),
    );
    let out = c.sh(&format!(
        "setpriv --reuid=lecooutsider --regid=users --init-groups \
         dbus-send --system --print-reply --reply-timeout=30000 --dest={NAME} {PATH} \
         {NAME}.Snapshot"
    ));
    let err = text(&out.stderr);
    if out.status.success() || !err.contains("org.freedesktop.DBus.Error.AccessDenied") {
        c.fail(&format!(
            "a user outside group leco must get AccessDenied ({}):\n{}{err}",
            out.status,
            text(&out.stdout)
        ));
    }
    eprintln!("booted_system: group leco reads, an outsider gets AccessDenied");

    resolved_names(&c);

    // Stopping closes the store: nothing of leco stays loaded.
    c.ok("systemctl stop leco", "systemctl stop leco.service");
    if Path::new("/sys/fs/bpf/leco").exists() {
        c.fail("/sys/fs/bpf/leco exists: the service pinned objects");
    }
    c.wait_for("the programs to be unloaded after stop", 10, || {
        programs
            .iter()
            .all(|id| {
                !run(Command::new("bpftool").args(["prog", "show", "id", &id.to_string()]))
                    .status
                    .success()
            })
            .then_some(())
    });
    let out = c.ok("bpftool prog inside", "bpftool --json prog show");
    let left: Vec<Value> = serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p["id"]
                .as_u64()
                .is_some_and(|id| programs.contains(&(id as u32)))
        })
        .collect();
    if !left.is_empty() {
        c.fail(&format!("programs still loaded after stop: {left:?}"));
    }
    eprintln!(
        "booted_system: after systemctl stop, none of the {} programs is loaded",
        programs.len()
    );

    // After a stop (store and runtime directory gone) the next client gets
    // a fresh load.
    c.snapshot();
    let fresh = c.stored_programs();
    if fresh.is_empty() || fresh.iter().any(|id| programs.contains(id)) {
        c.fail(&format!(
            "activation after a stop did not load anew ({programs:?} before, {fresh:?} now)"
        ));
    }
    c.ok("systemctl stop leco", "systemctl stop leco.service");
    eprintln!("booted_system: activated again after the stop, with a fresh load");

    // A load that cannot work (here: the loader without its `+`, so as
    // leco without capabilities) fails once, readably, and stays failed.
    c.ok(
        "a drop-in that makes load fail",
        "mkdir -p /run/systemd/system/leco.service.d && printf '%s\\n' '[Service]' \
         'ExecStartPre=' 'ExecStartPre=/usr/bin/leco-service load' \
         >/run/systemd/system/leco.service.d/fail.conf && systemctl daemon-reload",
    );
    let out = c.sh("systemctl start leco.service");
    if out.status.success() {
        c.fail("leco.service started with a loader that cannot load");
    }
    std::thread::sleep(Duration::from_secs(5));
    let state = c.leco_state();
    let restarts = c.ok("NRestarts", "systemctl show -P NRestarts leco.service");
    if state != "failed" || restarts.trim() != "0" {
        c.fail(&format!(
            "after a failed load leco.service is {state} with {} restarts (want failed, 0)",
            restarts.trim()
        ));
    }
    let invocation = c
        .ok(
            "InvocationID",
            "systemctl show -P InvocationID leco.service",
        )
        .trim()
        .to_string();
    let said = c.ok(
        "the loader's journal",
        &format!("journalctl -q -o cat _SYSTEMD_INVOCATION_ID={invocation} SYSLOG_IDENTIFIER=leco"),
    );
    let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        c.fail(&format!(
            "a failed load must say why in one line; the loader said {} lines:\n{said}",
            lines.len()
        ));
    }
    let status = text(&c.sh("systemctl status --no-pager -l leco.service").stdout);
    if !status.contains(lines[0]) {
        c.fail(&format!(
            "systemctl status leco does not show the loader's reason `{}`:\n{status}",
            lines[0]
        ));
    }
    eprintln!(
        "booted_system: failed load, no restart, status says: {}",
        lines[0]
    );

    // Enabling it for boot works as the README says, alias included.
    c.ok(
        "systemctl enable leco",
        "rm -r /run/systemd/system/leco.service.d && systemctl daemon-reload && \
         systemctl reset-failed leco.service && systemctl enable leco.service && \
         test -L /etc/systemd/system/multi-user.target.wants/leco.service && \
         test -L /etc/systemd/system/dbus-org.leco.Overseer1.service",
    );
    eprintln!(
        "booted_system: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

impl Container {
    /// A path inside the running container, seen from the host (through
    /// its PID 1's root, which includes the volatile overlay).
    fn root_path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.leader))
    }
}
