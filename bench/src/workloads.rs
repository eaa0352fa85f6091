//! Loopback workloads run inside the bench process: bulk TCP, connection
//! churn (free-running or paced) and small UDP datagrams.
//!
//! Each one binds its own ephemeral port on 127.0.0.1, runs for a fixed
//! duration and stops by itself, so a run is bounded in time whatever the
//! machine does.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Outcome of one bulk TCP run.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Bytes the server read.
    pub bytes: u64,
    /// From the first write to the server seeing end of stream.
    pub elapsed: Duration,
}

impl Bulk {
    /// Throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }
}

/// Outcome of one connection churn run.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Completed connect/accept/close cycles.
    pub connections: u64,
    /// Wall time of the client loop.
    pub elapsed: Duration,
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
    let server =
        thread::Builder::new()
            .name("bulk-server".into())
            .spawn(move || -> io::Result<u64> {
                let (mut s, _) = listener.accept()?;
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(total),
                        Ok(n) => total += n as u64,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })?;

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
    let bytes = join(server, "bulk server")?;
    Ok(Bulk {
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Accepts and immediately closes connections until `stop` is set and one
/// more connection wakes it up.
fn churn_server(listener: TcpListener, stop: Arc<AtomicBool>) -> io::Result<u64> {
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
        if stop.load(Ordering::Acquire) {
            return Ok(accepted);
        }
        accepted += 1;
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
    let accepted = accepted?;
    if accepted < done {
        return Err(anyhow!(
            "churn: server accepted {accepted} connections, client completed {done}"
        ));
    }
    Ok(Churn {
        connections: done,
        elapsed,
    })
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
        thread::Builder::new()
            .name("udp-receiver".into())
            .spawn(move || -> io::Result<u64> {
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
                                return Ok(received);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })?
    };

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
    stop.store(true, Ordering::Release);
    run.context("udp: sendto")?;
    let received = join(receiver, "udp receiver")?;
    Ok(Udp {
        sent,
        received,
        elapsed,
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
    }

    #[test]
    fn churn_completes_cycles() {
        let r = churn(SHORT, None).expect("churn run");
        assert!(r.connections > 0);
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
    fn udp_delivers() {
        let r = udp(SHORT).expect("udp run");
        assert!(r.sent > 0);
        assert!(r.received > 0 && r.received <= r.sent);
    }
}
