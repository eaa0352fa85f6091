//! The kernel reader: a thread of its own that drains the event ring
//! buffer and hands the records to the monitor loop.
//!
//! The ring is small (it stays in cache, which keeps the hooks cheap), so
//! at 5,000 connections/s it holds some 50 ms of records. Read from the
//! async runtime, its wake-ups went through the bus worker's I/O driver,
//! and a worker busy with clients delayed them past that: records were
//! lost. Here nothing else runs on the reading thread; what the monitor
//! has not taken yet waits in user space, up to [`MAX_SPOOLED`] records,
//! and only beyond that does the reader stop draining (the kernel then
//! counts what it cannot record, and the monitor resyncs).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::Duration;

use leco_bpf::{Record, RecordError, RecordReader};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::mpsc;

/// Records read and not yet taken by the monitor, at most (one drain may
/// add what the ring holds on top: some 1,400 flows' records, or up to
/// 4,700 short DNS answers): about 0.4 s of a 5,000 connections/s storm,
/// six times what the ring holds of flows. At 248 bytes a record, with a
/// vector's slack, that is at most 6.1 MiB, and as much again for the
/// batch the monitor is handling.
pub const MAX_SPOOLED: usize = 8_192;

/// The DNS answers' bytes among them, at most (again with one drain on
/// top): a flood of answers (a user's own server in a namespace of theirs
/// can send them as fast as it likes) must not hold 8,192 of 1,232 bytes.
pub const MAX_SPOOLED_DNS_BYTES: usize = 1 << 20;

/// What one drain of the ring returned.
pub type Batch = Vec<Result<Record, RecordError>>;

/// What the reading thread sends.
#[derive(Debug)]
pub enum Delivery {
    /// Records, in the order the kernel wrote them.
    Records(Batch),
    /// Every record the ring held when [`Ring::catch_up`] asked came in
    /// the batches before this.
    CaughtUp,
}

/// The reading thread, and the batches it sends.
#[derive(Debug)]
pub struct Ring {
    /// Batches in the order read; closed once the thread has stopped.
    pub batches: mpsc::Receiver<io::Result<Delivery>>,
    stop: EventFd,
    catch_up: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Ring {
    /// Starts reading `reader`. The kernel wakes the reader at most once
    /// per `wakeup_latency`, so after a drain that found records the thread
    /// drains again that much later; when idle it still looks once per
    /// `idle_poll`, for records that arrived just after a drain without a
    /// wake-up of their own.
    pub fn start(
        reader: RecordReader,
        wakeup_latency: Duration,
        idle_poll: Duration,
    ) -> io::Result<Ring> {
        let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?;
        let stopped = stop.as_fd().try_clone_to_owned()?;
        let catch_up = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let asked = catch_up.as_fd().try_clone_to_owned()?;
        // One batch in flight: the thread merges what the monitor has not
        // taken into the next, so that the bound is in records.
        let (tx, batches) = mpsc::channel(1);
        let thread = std::thread::Builder::new()
            .name("leco-ring".into())
            .spawn(move || {
                let mut reading = Reading {
                    reader,
                    tx,
                    stopped,
                    asked,
                    spooled: Vec::new(),
                    dns_bytes: 0,
                };
                if let Err(e) = reading.run(wakeup_latency, idle_poll) {
                    // The monitor may have gone already; then nobody cares.
                    let _ = reading.tx.blocking_send(Err(e));
                }
            })?;
        Ok(Ring {
            batches,
            stop,
            catch_up,
            thread: Some(thread),
        })
    }

    /// Asks the thread to send what the ring holds now, then
    /// [`Delivery::CaughtUp`]: what the kernel wrote before this call is
    /// then in hand, and its tables can be read in order with it.
    pub fn catch_up(&self) {
        // Only fails if the counter would overflow: the thread resets it.
        let _ = self.catch_up.write(1);
    }

    /// Asks the thread to drain once more, send what it has and stop; the
    /// channel closes after that last batch.
    pub fn stop(&self) {
        // Only fails if the counter would overflow: it is written once.
        let _ = self.stop.write(1);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.stop();
        // The thread may wait to send: let it fail instead.
        self.batches.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reading thread's state.
struct Reading {
    reader: RecordReader,
    tx: mpsc::Sender<io::Result<Delivery>>,
    stopped: OwnedFd,
    asked: OwnedFd,
    spooled: Batch,
    /// The DNS answers' bytes in `spooled`.
    dns_bytes: usize,
}

/// Why the reading thread woke.
enum Woken {
    Stop,
    CatchUp,
    /// Records, or the timeout.
    Other,
}

/// Whether the monitor is still there to take records.
#[derive(PartialEq)]
enum Taken {
    Yes,
    Gone,
}

impl Reading {
    fn run(&mut self, wakeup_latency: Duration, idle_poll: Duration) -> io::Result<()> {
        // poll(2) counts whole milliseconds; never spin.
        let timeout = |d: Duration| {
            PollTimeout::try_from(d.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX)
        };
        let (lingering, idle) = (timeout(wakeup_latency), timeout(idle_poll));
        let mut behind = false;
        loop {
            // Records arrive in bursts, and the kernel does not wake us
            // again within `wakeup_latency` of the last wake-up: after a
            // drain that found some, or while the monitor has not taken
            // them, look again that much later. The idle look is a safety
            // net for records that came just after a drain.
            let woken = self.wait(if behind { lingering } else { idle })?;
            let found = self.drain()?;
            match woken {
                Woken::Stop => {
                    // Everything the ring holds now, however many spools.
                    while self.flush_blocking() == Taken::Yes && self.drain()? > 0 {}
                    return Ok(());
                }
                Woken::CatchUp => {
                    // The drain above may have stopped at a full spool.
                    if self.flush_blocking() == Taken::Gone
                        || (self.drain()? > 0 && self.flush_blocking() == Taken::Gone)
                        || self.tx.blocking_send(Ok(Delivery::CaughtUp)).is_err()
                    {
                        return Ok(());
                    }
                    continue;
                }
                Woken::Other => {}
            }
            if self.hand_over() == Taken::Gone {
                return Ok(());
            }
            behind = found > 0 || !self.spooled.is_empty();
        }
    }

    /// Waits up to `timeout` for records, the stop or a catch-up.
    fn wait(&self, timeout: PollTimeout) -> io::Result<Woken> {
        let mut fds = [
            PollFd::new(self.reader.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.stopped.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.asked.as_fd(), PollFlags::POLLIN),
        ];
        loop {
            match poll(&mut fds, timeout) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        let woke = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        if woke(1) {
            return Ok(Woken::Stop);
        }
        // Non-blocking: a read that finds nothing is a spurious wake.
        if woke(2) && nix::unistd::read(&self.asked, &mut [0u8; 8]).is_ok() {
            return Ok(Woken::CatchUp);
        }
        Ok(Woken::Other)
    }

    /// Moves what the ring holds into the spool, unless the spool is full:
    /// then the records stay in the ring. How many it moved.
    fn drain(&mut self) -> io::Result<usize> {
        if self.full() {
            return Ok(0);
        }
        let before = self.spooled.len();
        let n = self
            .reader
            .drain(&mut self.spooled)
            .map_err(io::Error::other)?;
        self.dns_bytes += self.spooled[before..]
            .iter()
            .map(|r| match r {
                Ok(Record::Dns(a)) => a.bytes.len(),
                _ => 0,
            })
            .sum::<usize>();
        Ok(n)
    }

    fn full(&self) -> bool {
        self.spooled.len() >= MAX_SPOOLED || self.dns_bytes >= MAX_SPOOLED_DNS_BYTES
    }

    /// Sends the spool if the monitor has room for it; waits for room only
    /// when the spool is full.
    fn hand_over(&mut self) -> Taken {
        if self.spooled.is_empty() {
            return Taken::Yes;
        }
        if self.full() {
            return self.flush_blocking();
        }
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Ok(take(&mut self.spooled, &mut self.dns_bytes)));
                Taken::Yes
            }
            Err(mpsc::error::TrySendError::Full(())) => Taken::Yes,
            Err(mpsc::error::TrySendError::Closed(())) => Taken::Gone,
        }
    }

    fn flush_blocking(&mut self) -> Taken {
        if self.spooled.is_empty() {
            return Taken::Yes;
        }
        let spool = take(&mut self.spooled, &mut self.dns_bytes);
        match self.tx.blocking_send(Ok(spool)) {
            Ok(()) => Taken::Yes,
            Err(_) => Taken::Gone,
        }
    }
}

/// The spool (and its count of DNS bytes), emptied. Not a method: the
/// sender's permit borrows the thread's state meanwhile.
fn take(spooled: &mut Batch, dns_bytes: &mut usize) -> Delivery {
    *dns_bytes = 0;
    Delivery::Records(std::mem::take(spooled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_fits_its_documented_bound() {
        // README, "What the service holds at most": the spool and the batch
        // being handled, each at most MAX_SPOOLED records and
        // MAX_SPOOLED_DNS_BYTES of answers, plus one ring's worth.
        let record = std::mem::size_of::<Result<Record, RecordError>>();
        // A 256 KiB ring of DNS records of the shortest kind (a 40-byte
        // head, a 2-byte message, rounded up to 8, and the ring's own
        // 8-byte head), and a vector's doubling.
        let ring = 256 << 10;
        let most = (MAX_SPOOLED + ring / 56) * record * 2;
        assert!(most <= 61 << 17, "{record} bytes a record: {most} bytes");
        assert!(MAX_SPOOLED_DNS_BYTES + ring <= 5 << 18);
    }
}
