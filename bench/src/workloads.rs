//! Loopback workloads run inside the bench process: bulk TCP, connection
//! churn (free-running or paced) and small UDP datagrams.
//!
//! Each one binds its own ephemeral port on 127.0.0.1, runs for a fixed
//! duration and stops by itself, so a run is bounded in time whatever the
//! machine does. Each also reports the CPU time its own threads used: on a
//! shared machine that moves far less between runs than wall-clock
//! throughput, and it includes the kernel work done in those threads, eBPF
//! programs on their socket calls among it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// Size of one client write in the bulk workload.
pub const BULK_WRITE: usize = 1024;
/// Payload size of one datagram in the UDP workload.
pub const DATAGRAM: usize = 64;

/// Operations between two clock reads in the tight loops: a loopback write
/// is cheap enough that reading the clock every time would be a visible
/// share of the measured work.
const CLOCK_EVERY: usize = 64;

/// CPU time (user + system) the calling thread has used since it started.
pub fn thread_cpu() -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill in.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time used by the calling thread since `from`, a [`thread_cpu`]
/// reading taken in the same thread.
fn thread_cpu_since(from: Duration) -> io::Result<Duration> {
    Ok(thread_cpu()?.saturating_sub(from))
}

/// Nanoseconds of `cpu` per operation, `None` when nothing was done.
pub fn ns_per_op(cpu: Duration, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu.as_nanos() as f64 / ops as f64)
}

/// Outcome of one bulk TCP run.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Bytes the server read.
    pub bytes: u64,
    /// From the first write to the server seeing end of stream.
    pub elapsed: Duration,
    /// CPU time of the client and server threads.
    pub cpu: Duration,
}

impl Bulk {
    /// Throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }

    /// [`BULK_WRITE`]-byte writes that reached the server.
    pub fn writes(&self) -> u64 {
        self.bytes / BULK_WRITE as u64
    }
}

/// Outcome of one connection churn run.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Completed connect/accept/close cycles.
    pub connections: u64,
    /// Wall time of the client loop.
    pub elapsed: Duration,
    /// CPU time of the client and server threads.
    pub cpu: Duration,
}

impl Churn {
    /// Completed connections per second.
    pub fn per_s(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64()
    }
}

/// Outcome of one UDP run.
#[derive(Debug, Clone, Copy)]
pub struct Udp {
    /// Datagrams `sendto` accepted.
    pub sent: u64,
    /// Datagrams the receiver got (the rest were dropped on a full socket
    /// buffer).
    pub received: u64,
    /// Wall time of the sender loop.
    pub elapsed: Duration,
    /// CPU time of the sender thread.
    pub sender_cpu: Duration,
    /// CPU time of the receiver thread.
    pub receiver_cpu: Duration,
}

impl Udp {
    /// Datagrams sent per second.
    pub fn sent_per_s(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    /// Datagrams delivered per second.
    pub fn received_per_s(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU ns to send one datagram plus to receive one: each side divided
    /// by its own count, because the share dropped on the full receive
    /// buffer moves with the machine's load (from 1 % to half of them
    /// here) and would otherwise move the figure with it.
    pub fn cpu_ns_per_datagram(&self) -> Option<f64> {
        Some(ns_per_op(self.sender_cpu, self.sent)? + ns_per_op(self.receiver_cpu, self.received)?)
    }
}

fn join<T>(handle: JoinHandle<io::Result<T>>, what: &str) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("{what} thread panicked"))?
        .with_context(|| format!("{what} thread"))
}

/// One connection; the client writes [`BULK_WRITE`]-byte chunks for
/// `duration` while a server thread reads.
pub fn bulk_tcp(duration: Duration) -> Result<Bulk> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bulk: bind")?;
    let addr = listener.local_addr()?;
    let server = thread::Builder::new().name("bulk-server".into()).spawn(
        move || -> io::Result<(u64, Duration)> {
            let cpu = thread_cpu()?;
            let (mut s, _) = listener.accept()?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Ok((total, thread_cpu_since(cpu)?)),
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        },
    )?;

    let cpu = thread_cpu()?;
    let mut client = TcpStream::connect(addr).context("bulk: connect")?;
    let chunk = [0x5au8; BULK_WRITE];
    let start = Instant::now();
    let deadline = start + duration;
    while Instant::now() < deadline {
        for _ in 0..CLOCK_EVERY {
            client.write_all(&chunk).context("bulk: write")?;
        }
    }
    client.shutdown(Shutdown::Write)?;
    let client_cpu = thread_cpu_since(cpu)?;
    let (bytes, server_cpu) = join(server, "bulk server")?;
    Ok(Bulk {
        bytes,
        elapsed: start.elapsed(),
        cpu: client_cpu + server_cpu,
    })
}

/// Accepts and immediately closes connections until `stop` is set and one
/// more connection wakes it up; returns the connections accepted (the
/// wake-up one included when it is what ended the loop) and the thread's
/// CPU time.
fn churn_server(listener: TcpListener, stop: Arc<AtomicBool>) -> io::Result<(u64, Duration)> {
    let cpu = thread_cpu()?;
    let mut accepted = 0u64;
    loop {
        match listener.accept() {
            // Dropping closes at once: the server side takes the active
            // close and so the TIME_WAIT, which keeps the client's
            // ephemeral ports free for tens of thousands of cycles.
            Ok((s, _)) => drop(s),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Counted before looking at `stop`: the close above lets the client
        // complete its last cycle and set `stop` before this thread gets
        // here, and that connection must not go uncounted.
        accepted += 1;
        if stop.load(Ordering::Acquire) {
            return Ok((accepted, thread_cpu_since(cpu)?));
        }
    }
}

/// One full cycle: connect, wait for the server's close, close.
fn churn_cycle(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    let mut b = [0u8; 1];
    // Waiting for EOF makes the cycle complete (accept and close done)
    // before the next starts, and leaves the client with the passive close.
    while s.read(&mut b)? != 0 {}
    Ok(())
}

/// Connect/accept/close cycles from one client thread to one server
/// thread for `duration`: as fast as possible when `rate` is `None`, else
/// paced at `rate` connections per second (the caller reads the rate
/// actually achieved from the result).
pub fn churn(duration: Duration, rate: Option<f64>) -> Result<Churn> {
    let listener = TcpListener::bind("127.0.0.1:0").context("churn: bind")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        thread::Builder::new()
            .name("churn-server".into())
            .spawn(move || churn_server(listener, stop))?
    };

    let cpu = thread_cpu()?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut done = 0u64;
    let run = (|| -> io::Result<()> {
        match rate {
            None => {
                while Instant::now() < deadline {
                    churn_cycle(addr)?;
                    done += 1;
                }
            }
            Some(rate) => {
                // Batches every 10 ms, sleeping to an absolute schedule so
                // that oversleeping one tick is made up by the next.
                let tick = Duration::from_millis(10);
                let mut next = start;
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let due = (rate * (now - start).as_secs_f64()).ceil() as u64;
                    while done < due && Instant::now() < deadline {
                        churn_cycle(addr)?;
                        done += 1;
                    }
                    next += tick;
                    let now = Instant::now();
                    if next > now {
                        thread::sleep(next - now);
                    }
                }
            }
        }
        Ok(())
    })();
    let elapsed = start.elapsed();
    let client_cpu = thread_cpu_since(cpu);

    // Wake the server's blocking accept so that it sees `stop`, whether or
    // not the client loop failed.
    stop.store(true, Ordering::Release);
    let woke = TcpStream::connect(addr);
    // Without the wake-up connection the server may still be blocked in
    // accept: joining it would hang.
    let accepted = match woke {
        Ok(_) => join(server, "churn server"),
        Err(e) => Err(anyhow::Error::from(e).context("churn: waking the server")),
    };
    run.context("churn: client")?;
    let (accepted, server_cpu) = accepted?;
    if accepted < done {
        return Err(anyhow!(
            "churn: server accepted {accepted} connections, client completed {done}"
        ));
    }
    Ok(Churn {
        connections: done,
        elapsed,
        cpu: client_cpu.context("churn: client CPU time")? + server_cpu,
    })
}

/// One client connection of [`paced_connects`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    /// Its local (ephemeral) port.
    pub port: u16,
    /// Read just before `connect()` was called.
    pub started: Instant,
}

/// Outcome of one [`paced_connects`] run.
#[derive(Debug, Clone)]
pub struct Paced {
    /// Every connection made, in order.
    pub connects: Vec<Connect>,
    /// Wall time from the first due time to the last connection's period
    /// end (paced) or to the last connection made (unpaced).
    pub elapsed: Duration,
}

impl Paced {
    /// Connections made per second.
    pub fn per_s(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.connects.len() as f64 / s
        } else {
            0.0
        }
    }
}

/// Due time of connection `i` (from 0) at `rate` per second after `start`.
pub fn due(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// Listen backlog of [`paced_connects`]' server.
const LISTEN_BACKLOG: libc::c_int = 4096;
/// Connections [`paced_connects`]' client may have made beyond those the
/// server accepted; well within [`LISTEN_BACKLOG`] and the default 4,096
/// of `net.core.somaxconn`.
const MAX_UNACCEPTED: u64 = 1000;

/// Sockets kept open until a deadline each, in deadline order.
#[derive(Debug, Default)]
struct Held(VecDeque<(Instant, TcpStream)>);

impl Held {
    fn push(&mut self, until: Instant, s: TcpStream) {
        self.0.push_back((until, s));
    }

    /// Closes those whose time has come; returns the next deadline.
    fn close_due(&mut self, now: Instant) -> Option<Instant> {
        while self.0.front().is_some_and(|(until, _)| *until <= now) {
            self.0.pop_front();
        }
        self.0.front().map(|(until, _)| *until)
    }

    /// Waits for every deadline, closing each socket at its own.
    fn close_all_in_time(&mut self) {
        while let Some((until, s)) = self.0.pop_front() {
            let now = Instant::now();
            if until > now {
                thread::sleep(until - now);
            }
            drop(s);
        }
    }
}

/// Accepts connections and closes each `hold` after accepting it, until
/// `stop` is set and the accept queue is empty; returns how many it
/// accepted.
fn holding_server(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    hold: Duration,
    count: Arc<AtomicU64>,
) -> io::Result<u64> {
    listener.set_nonblocking(true)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut held = Held::default();
    let mut accepted = 0u64;
    loop {
        // Read before draining: a client that set it has made all its
        // connections, which are then in the queue.
        let stopping = stop.load(Ordering::Acquire);
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    accepted += 1;
                    count.store(accepted, Ordering::Release);
                    held.push(Instant::now() + hold, s);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if stopping {
            held.close_all_in_time();
            return Ok(accepted);
        }
        let now = Instant::now();
        let next = held.close_due(now);
        // Wake for the next close, or every 10 ms to look at `stop`.
        let wait = next.map_or(Duration::from_millis(10), |t| {
            t.saturating_duration_since(now)
                .min(Duration::from_millis(10))
        });
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: one valid pollfd for the listener, which outlives the call.
        if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Loopback TCP connections for `duration`, at `rate` per second each at
/// its own due time (not in batches), or as fast as one client thread can
/// when `rate` is `None`, noting when each `connect()` was called and the
/// ephemeral port it got.
///
/// The server closes each connection `hold` after accepting it and the
/// client `2 × hold` after connecting, so that neither side's end follows
/// its start within the same microseconds (the service would merge the
/// two events), and the server takes the active close and the TIME_WAIT,
/// which keeps the client's ephemeral ports free.
pub fn paced_connects(duration: Duration, rate: Option<f64>, hold: Duration) -> Result<Paced> {
    let listener = TcpListener::bind("127.0.0.1:0").context("paced connects: bind")?;
    let addr = listener.local_addr()?;
    // std listens with a backlog of 128: a server thread descheduled for
    // 16 ms at 8,000 connections/s would overflow it, and each SYN dropped
    // costs its client a 1 s retransmit. Listening again only raises it
    // (the kernel caps it at net.core.somaxconn).
    // SAFETY: listen(2) on a socket this function owns.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error()).context("paced connects: listen");
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        let accepted = accepted.clone();
        thread::Builder::new()
            .name("paced-server".into())
            .spawn(move || holding_server(listener, stop, hold, accepted))?
    };

    let mut connects = Vec::new();
    let mut held = Held::default();
    let start = Instant::now();
    let deadline = start + duration;
    let run = (|| -> io::Result<()> {
        for i in 0u64.. {
            let at = rate.map_or(start, |r| due(start, r, i));
            if at >= deadline || Instant::now() >= deadline {
                break;
            }
            // Close what has been held long enough, then wait for the due
            // time (a late connection goes at once: the schedule is
            // absolute).
            loop {
                let now = Instant::now();
                let wake = held.close_due(now).map_or(at, |c| c.min(at));
                if wake > now {
                    thread::sleep(wake - now);
                }
                if Instant::now() >= at {
                    break;
                }
            }
            // Unpaced, the client must not outrun the server's accepts
            // by more than the backlog holds.
            while connects.len() as u64 >= accepted.load(Ordering::Acquire) + MAX_UNACCEPTED {
                thread::sleep(Duration::from_micros(50));
            }
            let started = Instant::now();
            let s = TcpStream::connect(addr)?;
            let port = s.local_addr()?.port();
            connects.push(Connect { port, started });
            held.push(started + 2 * hold, s);
        }
        Ok(())
    })();
    let elapsed = match (connects.last(), rate) {
        // n paced connections span n periods.
        (Some(c), Some(r)) => c.started.duration_since(start) + Duration::from_secs_f64(1.0 / r),
        (Some(_), None) => start.elapsed(),
        (None, _) => Duration::ZERO,
    };
    // The last connections are held as long as the others.
    held.close_all_in_time();

    stop.store(true, Ordering::Release);
    let accepted = join(server, "paced server");
    run.context("paced connects: client")?;
    let accepted = accepted?;
    if accepted < connects.len() as u64 {
        return Err(anyhow!(
            "paced connects: server accepted {accepted} connections, client made {}",
            connects.len()
        ));
    }
    Ok(Paced { connects, elapsed })
}

/// `sendto` of [`DATAGRAM`]-byte datagrams from one unconnected socket to
/// a receiver thread for `duration`.
pub fn udp(duration: Duration) -> Result<Udp> {
    // Unconnected sockets on both ends, sendto and recvfrom: that is the
    // path leco's cgroup sendmsg/recvmsg hooks see.
    let rx = UdpSocket::bind("127.0.0.1:0").context("udp: bind receiver")?;
    let addr = rx.local_addr()?;
    rx.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let stop = stop.clone();
        thread::Builder::new().name("udp-receiver".into()).spawn(
            move || -> io::Result<(u64, Duration)> {
                let cpu = thread_cpu()?;
                let mut buf = [0u8; 2048];
                let mut received = 0u64;
                loop {
                    match rx.recv_from(&mut buf) {
                        Ok(_) => received += 1,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            // Quiet for a whole timeout after the sender
                            // stopped: the queue is drained.
                            if stop.load(Ordering::Acquire) {
                                return Ok((received, thread_cpu_since(cpu)?));
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            },
        )?
    };

    let cpu = thread_cpu()?;
    let tx = UdpSocket::bind("127.0.0.1:0").context("udp: bind sender")?;
    let payload = [0xa5u8; DATAGRAM];
    let start = Instant::now();
    let deadline = start + duration;
    let mut sent = 0u64;
    let run = (|| -> io::Result<()> {
        while Instant::now() < deadline {
            for _ in 0..CLOCK_EVERY {
                match tx.send_to(&payload, addr) {
                    Ok(_) => sent += 1,
                    // A full device queue is back-pressure, not a failure.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    })();
    let elapsed = start.elapsed();
    let sender_cpu = thread_cpu_since(cpu);
    stop.store(true, Ordering::Release);
    run.context("udp: sendto")?;
    let (received, receiver_cpu) = join(receiver, "udp receiver")?;
    Ok(Udp {
        sent,
        received,
        elapsed,
        sender_cpu: sender_cpu.context("udp: sender CPU time")?,
        receiver_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    #[test]
    fn bulk_moves_bytes() {
        let r = bulk_tcp(SHORT).expect("bulk run");
        assert!(r.bytes >= (CLOCK_EVERY * BULK_WRITE) as u64);
        assert!(r.mib_per_s() > 0.0);
        assert_eq!(r.writes(), r.bytes / BULK_WRITE as u64);
        assert!(r.cpu > Duration::ZERO);
    }

    #[test]
    fn churn_completes_cycles() {
        let r = churn(SHORT, None).expect("churn run");
        assert!(r.connections > 0);
        assert!(r.cpu > Duration::ZERO);
    }

    #[test]
    fn paced_churn_keeps_near_its_rate() {
        let r = churn(Duration::from_millis(500), Some(200.0)).expect("paced churn run");
        // 100 due; generous bounds because CI machines stall.
        assert!(
            (60..=110).contains(&r.connections),
            "{} connections",
            r.connections
        );
    }

    #[test]
    fn paced_connects_keep_their_schedule() {
        let t0 = Instant::now();
        let r = paced_connects(
            Duration::from_millis(300),
            Some(100.0),
            Duration::from_millis(20),
        )
        .expect("paced connects");
        // 30 due; generous bounds because CI machines stall.
        assert!(
            (20..=30).contains(&r.connects.len()),
            "{}",
            r.connects.len()
        );
        assert!(r.connects.windows(2).all(|w| w[0].started <= w[1].started));
        assert!(r.connects.iter().all(|c| c.port != 0));
        assert!(r.per_s() > 60.0 && r.per_s() <= 101.0, "{}", r.per_s());
        // Both sides held their ends: the client 40 ms after its last
        // connect.
        let last = r.connects.last().expect("some connections").started;
        assert!(t0.elapsed() >= last.duration_since(t0) + Duration::from_millis(40));
    }

    #[test]
    fn unpaced_connects_go_as_fast_as_they_can() {
        let r = paced_connects(Duration::from_millis(100), None, Duration::from_millis(5))
            .expect("unpaced connects");
        assert!(r.connects.len() > 10, "{}", r.connects.len());
        assert!(r.per_s() > 100.0, "{}", r.per_s());
    }

    #[test]
    fn due_times_are_absolute() {
        let t0 = Instant::now();
        assert_eq!(due(t0, 1000.0, 0), t0);
        assert_eq!(due(t0, 1000.0, 5), t0 + Duration::from_millis(5));
        assert_eq!(due(t0, 100.0, 100), t0 + Duration::from_secs(1));
    }

    #[test]
    fn udp_delivers() {
        let r = udp(SHORT).expect("udp run");
        assert!(r.sent > 0);
        assert!(r.received > 0 && r.received <= r.sent);
        assert!(r.sender_cpu > Duration::ZERO && r.receiver_cpu > Duration::ZERO);
        assert!(r.cpu_ns_per_datagram().is_some_and(|ns| ns > 0.0));
    }

    #[test]
    fn thread_cpu_counts_this_threads_work_only() {
        let before = thread_cpu().expect("thread CPU clock");
        // Another thread's spinning must not show up in this thread's
        // clock, which is what lets workloads sum their own threads.
        // Spinning to a CPU-time goal, not a wall-clock one, keeps this
        // deterministic on a loaded machine.
        let spinner = thread::spawn(|| {
            let mut x = 0u64;
            loop {
                let used = thread_cpu().expect("spinner CPU clock");
                if used >= Duration::from_millis(50) {
                    return used;
                }
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
        });
        let spun = spinner.join().expect("spinner thread");
        let mine = thread_cpu_since(before).expect("thread CPU clock");
        assert!(spun >= Duration::from_millis(50), "{spun:?}");
        assert!(mine < Duration::from_millis(25), "{mine:?} vs {spun:?}");
    }

    #[test]
    fn udp_cost_adds_each_sides_own_rate() {
        let u = Udp {
            sent: 1000,
            received: 500,
            elapsed: Duration::from_secs(1),
            sender_cpu: Duration::from_micros(3000),
            receiver_cpu: Duration::from_micros(1000),
        };
        // 3 µs per send + 2 µs per receive, whatever share was dropped.
        assert_eq!(u.cpu_ns_per_datagram(), Some(5000.0));
        let none_received = Udp { received: 0, ..u };
        assert_eq!(none_received.cpu_ns_per_datagram(), None);
    }

    #[test]
    fn ns_per_op_divides_and_refuses_zero_ops() {
        assert_eq!(ns_per_op(Duration::from_micros(3), 1000), Some(3.0));
        assert_eq!(ns_per_op(Duration::from_secs(1), 4), Some(250_000_000.0));
        assert_eq!(ns_per_op(Duration::from_secs(1), 0), None);
    }
}
