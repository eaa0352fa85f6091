//! What a person calls the program behind a connection (`program`): the
//! script an interpreter runs rather than the interpreter, the Flatpak app,
//! the executable rather than one of its threads' names.
//!
//! Everything here reads what enrichment already holds (the kernel's task
//! name, the executable, the command line, the cgroup): no more /proc.

use leco_proto::SafeText;

/// The task name the kernel keeps is cut to this many bytes.
const COMM_MAX: usize = 15;

/// What the owner of a connection is, from what is known of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The task name when the connection was made.
    pub comm: Option<&'a str>,
    /// Whether that task was a thread of the process other than its main
    /// one: its name is the thread's ("Socket Thread"), not the program's.
    pub thread: bool,
    /// The executable's path.
    pub exe: Option<&'a str>,
    /// The command line.
    pub cmdline: Option<&'a [SafeText]>,
    /// The Flatpak app id.
    pub app_id: Option<&'a str>,
    /// The systemd unit.
    pub unit: Option<&'a str>,
}

/// The best short name of what is running, in this order: the script or
/// module an interpreter runs; the Flatpak app id; the executable's name,
/// where the task name is a cut of it or a thread's; a service's name,
/// where the task name is a cut of it; else the task name (the main
/// thread's is the process's own choice: a forked worker's, a multi-call
/// binary's).
pub fn program(f: &Facts<'_>) -> Option<SafeText> {
    let exe = f
        .exe
        .map(|e| base(e.strip_suffix(" (deleted)").unwrap_or(e)));
    let args = f.cmdline.unwrap_or(&[]);
    let argv0 = args.first().map(|a| base(a));
    if let Some(kind) = exe.or(argv0).and_then(Interpreter::of) {
        if let Some(script) = kind.script(args.get(1..).unwrap_or(&[])) {
            return Some(script.into());
        }
    }
    if let Some(app) = f.app_id.filter(|a| !a.is_empty()) {
        return Some(app.into());
    }
    let comm = f.comm.filter(|c| !c.is_empty());
    if let Some(exe) = exe.filter(|e| !e.is_empty()) {
        // A cut name, or a thread's (a browser's "Socket Thread"): the
        // executable is clearer, unless the process renamed itself (sshd's
        // "sshd: alice") or is one of a multi-call binary's names (busybox).
        let cut_of_exe = comm.is_some_and(|c| exe.starts_with(c));
        if cut_of_exe || (f.thread && argv0 == Some(exe)) || comm.is_none() {
            return Some(exe.into());
        }
    }
    if let (Some(c), Some(stem)) = (comm, f.unit.and_then(|u| u.strip_suffix(".service"))) {
        if c.len() >= COMM_MAX && stem.starts_with(c) {
            return Some(stem.into());
        }
    }
    comm.map(SafeText::from)
}

/// The last part of a path.
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The interpreters whose command lines say what they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interpreter {
    Python,
    Node,
    Perl,
    Ruby,
    Shell,
    Java,
}

impl Interpreter {
    /// The interpreter executable `name` is, versioned names included
    /// (`python3.11`, `perl5.36.0`).
    fn of(name: &str) -> Option<Interpreter> {
        let versioned = |stem: &str| {
            name.strip_prefix(stem)
                .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        };
        Some(match name {
            _ if versioned("python") || versioned("pypy") => Interpreter::Python,
            "node" | "nodejs" => Interpreter::Node,
            _ if versioned("perl") => Interpreter::Perl,
            _ if versioned("ruby") => Interpreter::Ruby,
            "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "busybox-sh" => {
                Interpreter::Shell
            }
            "java" => Interpreter::Java,
            _ => return None,
        })
    }

    /// Options of this interpreter that take the next argument as their
    /// value (when not joined to it).
    fn takes_value(self, opt: &str) -> bool {
        let with_value: &[&str] = match self {
            Interpreter::Python => &["-W", "-X", "--check-hash-based-pycs"],
            Interpreter::Node => &[
                "-r",
                "--require",
                "--import",
                "--loader",
                "--experimental-loader",
                "-C",
                "--conditions",
                "--title",
                "--env-file",
            ],
            Interpreter::Perl => &["-I", "-M", "-m", "-x"],
            Interpreter::Ruby => &["-r", "-I", "-C", "-E", "--encoding"],
            Interpreter::Shell => &["-o", "+o", "-O", "+O", "--rcfile", "--init-file"],
            Interpreter::Java => &[
                "-cp",
                "-classpath",
                "--class-path",
                "-p",
                "--module-path",
                "--upgrade-module-path",
                "--add-modules",
                "--add-opens",
                "--add-exports",
                "--add-reads",
                "--patch-module",
                "--limit-modules",
            ],
        };
        with_value.contains(&opt)
    }

    /// Whether `opt` makes the interpreter run code given on its command
    /// line, not a file: nothing to name but the interpreter.
    fn runs_inline(self, opt: &str) -> bool {
        match self {
            Interpreter::Python => opt == "-c" || opt.starts_with("-c"),
            Interpreter::Node => matches!(opt, "-e" | "--eval" | "-p" | "--print"),
            Interpreter::Perl => opt.starts_with("-e") || opt.starts_with("-E"),
            Interpreter::Ruby => opt.starts_with("-e"),
            // `-c`, alone or in a cluster (`-lc`, `-ec`).
            Interpreter::Shell => {
                opt.len() > 1
                    && opt.starts_with('-')
                    && !opt.starts_with("--")
                    && opt[1..].contains('c')
            }
            Interpreter::Java => false,
        }
    }

    /// What `args` (the command line after the interpreter) make it run,
    /// named short: a script's file name, a module, a jar, a main class.
    fn script(self, args: &[SafeText]) -> Option<String> {
        let mut it = args.iter().map(|a| &**a);
        while let Some(a) = it.next() {
            if a == "--" {
                return it.next().map(|s| base(s).to_owned());
            }
            if a == "-" {
                return None; // standard input: nothing to name
            }
            if !a.starts_with('-') {
                return Some(match self {
                    Interpreter::Java => main_class(a),
                    _ => base(a).to_owned(),
                });
            }
            if self.runs_inline(a) {
                return None;
            }
            match (self, a) {
                (Interpreter::Python, "-m") => return it.next().map(str::to_owned),
                (Interpreter::Python, m) if m.starts_with("-m") => {
                    return Some(m[2..].to_owned());
                }
                (Interpreter::Java, "-jar") => return it.next().map(|j| base(j).to_owned()),
                (Interpreter::Java, "-m" | "--module") => {
                    return it
                        .next()
                        .map(|m| main_class(m.split('/').next().unwrap_or(m)));
                }
                _ => {}
            }
            if self.takes_value(a) {
                it.next();
            }
        }
        None
    }
}

/// The short name of a Java main class or module: its last part.
fn main_class(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<SafeText> {
        line.split(' ').map(SafeText::from).collect()
    }

    /// The program of a process whose executable is `exe`, running `line`.
    fn of(exe: &str, line: &str) -> Option<String> {
        let cmdline = args(line);
        let comm = base(exe).chars().take(COMM_MAX).collect::<String>();
        program(&Facts {
            comm: Some(&comm),
            exe: Some(exe),
            cmdline: Some(&cmdline),
            ..Facts::default()
        })
        .map(|p| p.to_string())
    }

    #[test]
    fn interpreters_name_what_they_run() {
        let cases = [
            (
                "/usr/bin/python3.11",
                "/usr/bin/python3 /usr/bin/foo",
                "foo",
            ),
            (
                "/usr/bin/python3.11",
                "python3 -m http.server 8000",
                "http.server",
            ),
            (
                "/usr/bin/python3.11",
                "python3 -mhttp.server",
                "http.server",
            ),
            (
                "/usr/bin/python3.11",
                "python3 -u -W ignore x/tool.py -v",
                "tool.py",
            ),
            ("/usr/bin/python3.11", "python3 -c print(1)", "python3.11"),
            ("/usr/bin/python3.11", "python3", "python3.11"),
            ("/usr/bin/node", "node server.js", "server.js"),
            (
                "/usr/bin/node",
                "node -r dotenv/config /srv/app/main.mjs",
                "main.mjs",
            ),
            ("/usr/bin/node", "node -e 1", "node"),
            (
                "/usr/bin/perl",
                "perl -w /usr/bin/cpan-outdated",
                "cpan-outdated",
            ),
            ("/usr/bin/perl", "perl -I lib script.pl", "script.pl"),
            ("/usr/bin/perl", "perl -e 1", "perl"),
            (
                "/usr/bin/ruby3.1",
                "ruby -r socket bin/rails server",
                "rails",
            ),
            ("/usr/bin/bash", "bash script.sh", "script.sh"),
            ("/usr/bin/bash", "/bin/bash -o pipefail ./backup", "backup"),
            ("/usr/bin/bash", "bash -lc curl", "bash"),
            ("/usr/bin/dash", "/bin/sh -e /etc/cron.daily/x", "x"),
            (
                "/usr/lib/jvm/bin/java",
                "java -Xmx1g -jar /opt/app.jar --port 1",
                "app.jar",
            ),
            (
                "/usr/lib/jvm/bin/java",
                "java -cp a.jar:b.jar com.example.Server",
                "Server",
            ),
            (
                "/usr/lib/jvm/bin/java",
                "java -m org.ex.mod/org.ex.Main",
                "mod",
            ),
            ("/usr/bin/python3.11", "python3 -- -weird.py", "-weird.py"),
        ];
        for (exe, line, want) in cases {
            assert_eq!(of(exe, line).as_deref(), Some(want), "{exe}: {line}");
        }
    }

    #[test]
    fn an_interpreter_is_known_by_its_command_line_when_its_executable_is_not() {
        let cmdline = args("python3 /usr/bin/foo");
        let got = program(&Facts {
            comm: Some("python3"),
            cmdline: Some(&cmdline),
            ..Facts::default()
        });
        assert_eq!(got.as_deref(), Some("foo"));
    }

    #[test]
    fn other_programs_by_their_clearest_name() {
        let cmdline = args("/usr/lib/firefox-esr/firefox-esr");
        let facts = Facts {
            comm: Some("Socket Thread"),
            thread: true,
            exe: Some("/usr/lib/firefox-esr/firefox-esr"),
            cmdline: Some(&cmdline),
            ..Facts::default()
        };
        // A thread's name: the executable's is clearer.
        assert_eq!(program(&facts).as_deref(), Some("firefox-esr"));
        // A Flatpak app: its id.
        let flatpak = Facts {
            app_id: Some("org.mozilla.firefox"),
            ..facts
        };
        assert_eq!(program(&flatpak).as_deref(), Some("org.mozilla.firefox"));
        // The main thread's own name: the process chose it.
        let named = Facts {
            comm: Some("leco-worker"),
            thread: false,
            ..facts
        };
        assert_eq!(program(&named).as_deref(), Some("leco-worker"));
        // A name the process gave itself, or a multi-call binary's: kept.
        let renamed = args("sshd: alice [priv]");
        let sshd = Facts {
            comm: Some("sshd"),
            exe: Some("/usr/sbin/sshd"),
            cmdline: Some(&renamed),
            ..Facts::default()
        };
        assert_eq!(program(&sshd).as_deref(), Some("sshd"));
        let applet = args("wget -q x");
        let busybox = Facts {
            comm: Some("wget"),
            exe: Some("/bin/busybox"),
            cmdline: Some(&applet),
            ..Facts::default()
        };
        assert_eq!(program(&busybox).as_deref(), Some("wget"));
        // A cut task name, the process gone: the service says it whole.
        let gone = Facts {
            comm: Some("systemd-timesyn"),
            unit: Some("systemd-timesyncd.service"),
            ..Facts::default()
        };
        assert_eq!(program(&gone).as_deref(), Some("systemd-timesyncd"));
        // A cut name of the executable: the executable's whole.
        let cut = Facts {
            comm: Some("gnome-software-"),
            exe: Some("/usr/bin/gnome-software-service (deleted)"),
            ..Facts::default()
        };
        assert_eq!(program(&cut).as_deref(), Some("gnome-software-service"));
        assert_eq!(program(&Facts::default()), None);
    }
}
