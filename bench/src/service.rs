//! The leco-service process under test: started in standalone JSON mode or
//! serving a bus, waited for until its programs are in the kernel (and it
//! serves the bus), sampled through /proc,
//! stopped with SIGTERM and its final counters read from stderr.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::hooks::{self, Prog};
use crate::signals;

/// What leco-service prints on stderr once it serves the bus.
pub const BUS_READY: &str = "serving org.leco.Overseer1 on the";

/// How long leco-service gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time given to attach after every program shows up as loaded: libbpf
/// loads all programs first and attaches them one by one afterwards.
const ATTACH_SETTLE: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(100);
/// How long another build's set of programs must stay the same before it
/// counts as loaded: its program names need not be this build's, so there
/// is no list to wait for.
const OTHER_STABLE: Duration = Duration::from_secs(1);

/// Which programs a started service is expected to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This build's: every name in `leco_bpf::program_names`.
    ThisBuild,
    /// Another build's (`--against`): whatever it holds, once that stops
    /// changing.
    OtherBuild,
}

/// A running leco-service.
#[derive(Debug)]
pub struct Service {
    child: Option<Child>,
    pid: u32,
    stderr: Option<JoinHandle<String>>,
    progs: Vec<Prog>,
    missing: Vec<&'static str>,
    ready_after: Duration,
}

/// What a stopped leco-service left behind.
#[derive(Debug)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it had to be killed because SIGTERM did not end it in time.
    pub killed: bool,
    /// The final counters line, if it printed one.
    pub counters: Option<FinalCounters>,
}

impl Service {
    /// Starts `path --standalone --json EXTRA…` and waits up to `timeout` for its
    /// programs to be loaded; fails with its stderr if it exits first or
    /// loads none of them in time.
    pub fn start(path: &Path, extra: &[&str], timeout: Duration) -> Result<Service> {
        let mut args = vec!["--standalone", "--json"];
        args.extend_from_slice(extra);
        Service::spawn(path, &args, None, Expect::ThisBuild, timeout)
    }

    /// Like [`Service::start`] for another build of leco-service, whose
    /// programs may differ from this build's: it counts as loaded once it
    /// holds some programs and their set has not changed for a second.
    pub fn start_other(path: &Path, extra: &[&str], timeout: Duration) -> Result<Service> {
        let mut args = vec!["--standalone", "--json"];
        args.extend_from_slice(extra);
        Service::spawn(path, &args, None, Expect::OtherBuild, timeout)
    }

    /// Starts `path --standalone --bus-address ADDRESS EXTRA…` and waits up
    /// to `timeout` for its programs to be loaded and for it to say that it
    /// serves the bus ([`BUS_READY`] on stderr).
    pub fn start_on_bus(
        path: &Path,
        address: &str,
        extra: &[&str],
        timeout: Duration,
    ) -> Result<Service> {
        let mut args = vec!["--standalone", "--bus-address", address];
        args.extend_from_slice(extra);
        Service::spawn(path, &args, Some(BUS_READY), Expect::ThisBuild, timeout)
    }

    /// Starts `path ARGS…`, waits for its programs and, when given, for a
    /// stderr line containing `ready`.
    fn spawn(
        path: &Path,
        args: &[&str],
        ready: Option<&'static str>,
        expect: Expect,
        timeout: Duration,
    ) -> Result<Service> {
        let before: HashSet<u32> = hooks::list_progs()?.iter().map(|p| p.id).collect();
        let started = Instant::now();
        // Events go to /dev/null: draining them here would put the reader's
        // CPU time on the cores the workloads measure.
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", path.display()))?;
        let pid = child.id();
        signals::service_started(pid);
        let pipe = child.stderr.take().expect("stderr was set to piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        // Read continuously so that a chatty service never blocks on a
        // full pipe.
        let stderr = thread::Builder::new()
            .name("service-stderr".into())
            .spawn(move || read_stderr(pipe, ready, ready_tx))?;
        let mut svc = Service {
            child: Some(child),
            pid,
            stderr: Some(stderr),
            progs: Vec::new(),
            missing: Vec::new(),
            ready_after: Duration::ZERO,
        };
        match expect {
            Expect::ThisBuild => svc.wait_loaded(&before, started, timeout)?,
            Expect::OtherBuild => svc.wait_stable(&before, started, timeout)?,
        }
        if let Some(line) = ready {
            svc.wait_ready(&ready_rx, line, started + timeout)?;
        }
        Ok(svc)
    }

    /// Waits until the stderr reader saw the readiness line.
    fn wait_ready(
        &mut self,
        ready: &mpsc::Receiver<()>,
        line: &str,
        deadline: Instant,
    ) -> Result<()> {
        loop {
            match ready.recv_timeout(POLL) {
                Ok(()) => return Ok(()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stderr ended: it exited, or soon will.
                    thread::sleep(POLL);
                    self.check_running()?;
                    return Err(
                        self.fail(&format!("leco-service closed its stderr before `{line}`"))
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check_running()?;
                    if Instant::now() >= deadline {
                        return Err(self.fail(&format!(
                            "leco-service loaded its programs but did not print `{line}` in time"
                        )));
                    }
                }
            }
        }
    }

    fn wait_loaded(
        &mut self,
        before: &HashSet<u32>,
        started: Instant,
        timeout: Duration,
    ) -> Result<()> {
        loop {
            self.check_running()?;
            let ours = hooks::leco_progs_of(&hooks::list_progs()?, self.pid, before);
            let missing = hooks::missing(&ours);
            let timed_out = started.elapsed() >= timeout;
            if missing.is_empty() || (timed_out && !ours.is_empty()) {
                self.ready_after = started.elapsed();
                thread::sleep(ATTACH_SETTLE);
                self.check_running()?;
                self.progs = hooks::leco_progs_of(&hooks::list_progs()?, self.pid, before);
                self.missing = hooks::missing(&self.progs);
                return Ok(());
            }
            if timed_out {
                return Err(self.fail(&format!(
                    "leco-service loaded no on_* eBPF program within {} s",
                    timeout.as_secs()
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until the programs it holds, whatever their names, have not
    /// changed for [`OTHER_STABLE`].
    fn wait_stable(
        &mut self,
        before: &HashSet<u32>,
        started: Instant,
        timeout: Duration,
    ) -> Result<()> {
        let mut last: Vec<u32> = Vec::new();
        let mut since = Instant::now();
        loop {
            self.check_running()?;
            let now = hooks::held_by(&hooks::list_progs()?, self.pid, before);
            let ids: Vec<u32> = now.iter().map(|p| p.id).collect();
            if ids != last {
                last = ids;
                since = Instant::now();
            } else if !last.is_empty() && since.elapsed() >= OTHER_STABLE {
                // Stable for a second: attaching, which follows loading,
                // is as done as it will be.
                self.ready_after = started.elapsed();
                self.progs = now;
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(self.fail(&format!(
                    "the other leco-service {} within {} s",
                    if last.is_empty() {
                        "loaded no eBPF program"
                    } else {
                        "kept changing its eBPF programs"
                    },
                    timeout.as_secs()
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its programs, as listed once they were all loaded.
    pub fn progs(&self) -> &[Prog] {
        &self.progs
    }

    /// Ids of its programs.
    pub fn prog_ids(&self) -> HashSet<u32> {
        self.progs.iter().map(|p| p.id).collect()
    }

    /// Programs it did not load within the start timeout.
    pub fn missing(&self) -> &[&'static str] {
        &self.missing
    }

    /// Time from spawning it to seeing all its programs loaded.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Fails, with its stderr, if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().context("waiting for leco-service")?,
            None => return Err(anyhow!("leco-service was already stopped")),
        };
        match exited {
            Some(status) => Err(self.fail(&format!("leco-service exited unexpectedly ({status})"))),
            None => Ok(()),
        }
    }

    /// CPU time and memory now.
    pub fn sample(&self) -> Result<ProcSample> {
        ProcSample::read(self.pid)
    }

    /// Sends SIGTERM, waits for exit (killing it after a timeout), reads
    /// its final counters and waits for its programs to leave the kernel,
    /// so that a following baseline runs without them.
    pub fn stop(mut self) -> Result<Stopped> {
        let (status, killed) = self.terminate(STOP_TIMEOUT)?;
        let stderr = self.collect_stderr();
        let ids: HashSet<u32> = self.progs.iter().map(|p| p.id).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Programs are freed asynchronously once their last fd and link
        // are closed.
        while Instant::now() < deadline && hooks::list_progs()?.iter().any(|p| ids.contains(&p.id))
        {
            thread::sleep(POLL);
        }
        Ok(Stopped {
            status,
            killed,
            counters: parse_final_counters(&stderr),
        })
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status and
    /// whether it had to be killed.
    fn terminate(&mut self, grace: Duration) -> Result<(ExitStatus, bool)> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("leco-service was already stopped"))?;
        if let Some(status) = child.try_wait()? {
            self.child = None;
            signals::service_gone();
            return Ok((status, false));
        }
        // SAFETY: kill(2) on our own child, not yet reaped (try_wait above
        // said it is running), so the pid cannot have been reused.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        let mut killed = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill()?;
                killed = true;
                break child.wait()?;
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        signals::service_gone();
        Ok((status, killed))
    }

    fn collect_stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Stops it for good and builds an error carrying its stderr.
    fn fail(&mut self, what: &str) -> anyhow::Error {
        let _ = self.terminate(Duration::from_secs(2));
        anyhow!("{what}; its stderr: {}", one_line(&self.collect_stderr()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Error paths of the bench must not leave leco attached.
        if self.child.is_some() {
            let _ = self.terminate(Duration::from_secs(3));
        }
    }
}

/// Reads the service's stderr to its end, telling `ready_tx` once a line
/// contains `ready`, and returns it all.
fn read_stderr(pipe: impl Read, ready: Option<&str>, ready_tx: mpsc::Sender<()>) -> String {
    let mut all = Vec::new();
    let mut reader = BufReader::new(pipe);
    let mut told = false;
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !told && ready.is_some_and(|r| String::from_utf8_lossy(&line).contains(r)) {
            told = true;
            let _ = ready_tx.send(());
        }
        all.extend_from_slice(&line);
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Multi-line text squeezed onto one line of an error message, keeping
/// the end (where the reason usually is).
fn one_line(text: &str) -> String {
    const KEEP: usize = 1500;
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if joined.is_empty() {
        return "(empty)".into();
    }
    match joined.char_indices().rev().nth(KEEP) {
        Some((cut, _)) => format!("...{}", &joined[cut..]),
        None => joined,
    }
}

/// The `leco-service: final counters: events=N ringbuf_drops=N ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalCounters {
    values: Vec<(String, u64)>,
}

impl FinalCounters {
    /// The counter called `key`.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Events it read from the ring buffer.
    pub fn events(&self) -> Option<u64> {
        self.get("events")
    }

    /// Events the kernel side could not queue.
    pub fn ringbuf_drops(&self) -> Option<u64> {
        self.get("ringbuf_drops")
    }
}

/// The last final counters line in `stderr`, if any.
pub fn parse_final_counters(stderr: &str) -> Option<FinalCounters> {
    const MARK: &str = "final counters:";
    let line = stderr.lines().rev().find(|l| l.contains(MARK))?;
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let values: Vec<(String, u64)> = rest
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.trim_end_matches(',').parse().ok()?))
        })
        .collect();
    (!values.is_empty()).then_some(FinalCounters { values })
}

/// utime + stime, in clock ticks, from a `/proc/PID/stat` line.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // comm (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of `/proc/PID/status`, such as `VmRSS`.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// A process's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// utime + stime, all threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size.
    pub rss_kib: u64,
    /// Peak resident set size since start.
    pub hwm_kib: u64,
}

impl ProcSample {
    /// Reads process `pid`'s sample.
    pub fn read(pid: u32) -> Result<ProcSample> {
        let at = Instant::now();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let field =
            |k| status_kib(&status, k).ok_or_else(|| anyhow!("/proc/{pid}/status has no {k}"));
        Ok(ProcSample {
            at,
            cpu_ticks: cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot parse /proc/{pid}/stat"))?,
            rss_kib: field("VmRSS")?,
            hwm_kib: field("VmHWM")?,
        })
    }
}

/// CPU time used between two samples.
pub fn cpu_between(from: &ProcSample, to: &ProcSample, ticks_per_s: f64) -> Duration {
    let ticks = to.cpu_ticks.saturating_sub(from.cpu_ticks);
    Duration::from_nanos((ticks as f64 * 1e9 / ticks_per_s).round() as u64)
}

/// CPU used between two samples, in percent of one core.
pub fn cpu_percent(from: &ProcSample, to: &ProcSample, ticks_per_s: f64) -> f64 {
    let wall = to.at.duration_since(from.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    let cpu = to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / ticks_per_s;
    cpu / wall * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_final_counters_line() {
        let err = "starting\nleco-service: final counters: events=123 ringbuf_drops=0 decode_errors=0 tracked=5 backlog=10\n";
        let c = parse_final_counters(err).expect("line present");
        assert_eq!(c.events(), Some(123));
        assert_eq!(c.ringbuf_drops(), Some(0));
        assert_eq!(c.get("backlog"), Some(10));
        assert_eq!(c.get("nope"), None);
    }

    #[test]
    fn takes_the_last_counters_line_and_tolerates_its_absence() {
        let err = "leco-service: final counters: events=1 ringbuf_drops=2\nx\nleco-service: final counters: events=3 ringbuf_drops=4 junk\n";
        let c = parse_final_counters(err).expect("line present");
        assert_eq!((c.events(), c.ringbuf_drops()), (Some(3), Some(4)));
        assert_eq!(parse_final_counters("error: permission denied\n"), None);
        assert_eq!(parse_final_counters(""), None);
        assert_eq!(parse_final_counters("final counters: none"), None);
    }

    #[test]
    fn parses_proc_stat_with_awkward_comm() {
        let stat = "4242 (leco (svc) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 17 5 0 0 20 0 3 0 99 12345 678 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(22));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_proc_status_kib_fields() {
        let status =
            "Name:\tleco-service\nVmPeak:\t  20000 kB\nVmHWM:\t    9000 kB\nVmRSS:\t    8123 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(8123));
        assert_eq!(status_kib(status, "VmHWM"), Some(9000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let a = ProcSample::read(std::process::id()).expect("own /proc entry");
        assert!(a.rss_kib > 0 && a.hwm_kib >= a.rss_kib);
        assert!(clock_ticks_per_s() > 0.0);
    }

    #[test]
    fn cpu_percent_is_of_one_core() {
        let t0 = Instant::now();
        let a = ProcSample {
            at: t0,
            cpu_ticks: 100,
            rss_kib: 0,
            hwm_kib: 0,
        };
        let b = ProcSample {
            at: t0 + Duration::from_secs(2),
            cpu_ticks: 110,
            ..a
        };
        assert!((cpu_percent(&a, &b, 100.0) - 5.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&a, &a, 100.0), 0.0);
        assert_eq!(cpu_between(&a, &b, 100.0), Duration::from_millis(100));
        assert_eq!(cpu_between(&a, &b, 250.0), Duration::from_millis(40));
        // A sample read out of order counts as no CPU, not as a huge one.
        assert_eq!(cpu_between(&b, &a, 100.0), Duration::ZERO);
    }

    #[test]
    fn stderr_reader_tells_readiness_once_and_keeps_everything() {
        let text = "loading\nleco-service: serving org.leco.Overseer1 on the `unix:path=/x` bus\nserving org.leco.Overseer1 on the again\nlast without newline";
        let (tx, rx) = mpsc::channel();
        let all = read_stderr(text.as_bytes(), Some(BUS_READY), tx);
        assert_eq!(all, text);
        assert_eq!(rx.try_iter().count(), 1);
        let (tx, rx) = mpsc::channel();
        read_stderr("loading\n".as_bytes(), Some(BUS_READY), tx);
        assert_eq!(rx.try_iter().count(), 0);
        let (tx, rx) = mpsc::channel();
        read_stderr(text.as_bytes(), None, tx);
        assert_eq!(rx.try_iter().count(), 0);
    }

    #[test]
    fn stderr_fits_on_one_line() {
        assert_eq!(one_line("a\n\n  b  \n"), "a | b");
        assert_eq!(one_line("\n"), "(empty)");
        let long = "x".repeat(5000);
        let l = one_line(&long);
        assert!(l.starts_with("...") && l.len() < 1600);
    }
}
