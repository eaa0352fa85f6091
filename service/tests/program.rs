//! `program`, what a person calls what is running: real interpreters (Python,
//! Node.js, Perl, Ruby, Bash, Java) run a script, a module or a jar that
//! connects to this test over loopback and waits, and the connection's
//! event names the script, not the interpreter. Needs root.

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Service;
use leco_testkit::require_root;
use serde_json::Value;

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("leco-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    /// Writes `file` with `text`; its path.
    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, text).expect("write a script");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps its child when dropped, whatever the test did.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first connection to `listener` within `within`.
fn accept_within(listener: &TcpListener, within: Duration, child: &mut Child) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = Instant::now() + within;
    loop {
        match listener.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the interpreter exited ({status}) before it connected");
        }
        assert!(Instant::now() < deadline, "no connection within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd PORT`, which connects to a listener of this test and waits
/// for it to close; the `program` of the connection's first event (which
/// must be the child's).
fn program_of(svc: &mut Service, mut cmd: Command) -> Value {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let port = listener.local_addr().expect("address").port();
    let mut child = Reaped(
        cmd.arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}")),
    );
    // The interpreter waits on the connection: it is alive, and its
    // command line readable, when the service enriches the event.
    let accepted = accept_within(&listener, Duration::from_secs(30), &mut child.0);
    let pid = child.0.id();
    let ev = svc
        .wait_json(|v| v["proto"] == "tcp" && v["direction"] == "out" && v["remote_port"] == port);
    assert_eq!(ev["pid"], pid, "{ev}");
    drop(accepted);
    let _ = child.0.wait();
    ev
}

fn interpreter(exe: &str, args: &[&dyn AsRef<std::ffi::OsStr>], cwd: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(args.iter().map(|a| a.as_ref())).current_dir(cwd);
    cmd
}

/// A Java program packed as `app.jar` in `dir` (javac and jar, the JDK's).
fn build_jar(dir: &Scratch) -> PathBuf {
    dir.write(
        "App.java",
        "public class App {\n\
         \x20   public static void main(String[] a) throws Exception {\n\
         \x20       try (var s = new java.net.Socket(\"127.0.0.1\", Integer.parseInt(a[0]))) {\n\
         \x20           s.getInputStream().read();\n\
         \x20       }\n\
         \x20   }\n\
         }\n",
    );
    let run = |cmd: &mut Command| {
        let out = cmd
            .current_dir(&dir.0)
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/deps.sh test installs a JDK)"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("javac").args(["-d", "classes", "App.java"]));
    run(Command::new("jar").args([
        "--create",
        "--file",
        "app.jar",
        "--main-class",
        "App",
        "-C",
        "classes",
        "App.class",
    ]));
    dir.0.join("app.jar")
}

/// The system's Python, rather than a version manager's shim on PATH.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn interpreters_are_named_by_what_they_run() {
    if !require_root("interpreters_are_named_by_what_they_run") {
        return;
    }
    let dir = Scratch::new("program");
    let d = &dir.0;
    let py = dir.write(
        "leco-fetch",
        "import socket, sys\n\
         s = socket.create_connection((\"127.0.0.1\", int(sys.argv[1])))\n\
         s.recv(1)\n",
    );
    dir.write(
        "lecomod.py",
        "import socket, sys\n\
         s = socket.create_connection((\"127.0.0.1\", int(sys.argv[1])))\n\
         s.recv(1)\n",
    );
    let js = dir.write(
        "server.js",
        "const s = require('net').connect(+process.argv[2], '127.0.0.1');\n\
         s.on('data', () => {});\n\
         s.on('end', () => process.exit(0));\n\
         s.on('error', () => process.exit(1));\n",
    );
    let pl = dir.write(
        "fetch.pl",
        "use IO::Socket::INET;\n\
         my $s = IO::Socket::INET->new(PeerAddr => \"127.0.0.1:$ARGV[0]\") or die \"$!\";\n\
         my $b; sysread($s, $b, 1);\n",
    );
    let rb = dir.write(
        "fetch.rb",
        "require 'socket'\n\
         s = TCPSocket.new('127.0.0.1', ARGV[0].to_i)\n\
         s.read(1)\n",
    );
    let sh = dir.write(
        "fetch.sh",
        "exec 3<>/dev/tcp/127.0.0.1/\"$1\"\nread -r -u 3 _ || true\n",
    );
    let jar = build_jar(&dir);
    let python = python();
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "python3 SCRIPT",
            interpreter(python, &[&py], d),
            "leco-fetch",
        ),
        (
            "python3 -u -m MODULE",
            interpreter(python, &[&"-u", &"-m", &"lecomod"], d),
            "lecomod",
        ),
        ("node SCRIPT", interpreter("node", &[&js], d), "server.js"),
        (
            "perl -w SCRIPT",
            interpreter("perl", &[&"-w", &pl], d),
            "fetch.pl",
        ),
        ("ruby SCRIPT", interpreter("ruby", &[&rb], d), "fetch.rb"),
        ("bash SCRIPT", interpreter("bash", &[&sh], d), "fetch.sh"),
        (
            "java -jar JAR",
            interpreter("java", &[&"-jar", &jar], d),
            "app.jar",
        ),
    ];
    let mut svc = Service::start(&["--standalone", "--json"]);
    let mut wrong = Vec::new();
    for (what, cmd, want) in cases {
        let ev = program_of(&mut svc, cmd);
        if ev["program"] != want {
            wrong.push(format!(
                "{what}: program {} (comm {}, exe {}, cmdline {}), not {want:?}",
                ev["program"], ev["comm"], ev["exe"], ev["cmdline"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `python3 -m http.server`: the connections it accepts are the module's.
#[test]
fn a_python_module_serving_is_named_on_what_it_accepts() {
    if !require_root("a_python_module_serving_is_named_on_what_it_accepts") {
        return;
    }
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    };
    let mut svc = Service::start(&["--standalone", "--json"]);
    let dir = Scratch::new("program-serve");
    let mut server = Reaped(
        Command::new(python())
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) => {
                if let Ok(Some(status)) = server.0.try_wait() {
                    panic!("http.server exited ({status})");
                }
                assert!(Instant::now() < deadline, "http.server not listening: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let ev =
        svc.wait_json(|v| v["proto"] == "tcp" && v["direction"] == "in" && v["local_port"] == port);
    assert_eq!(ev["program"], "http.server", "{ev}");
    assert_eq!(ev["pid"], server.0.id(), "{ev}");
    drop(conn);
}
