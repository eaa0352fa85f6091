//! Waking the Wayland loop from another thread: a socket pair whose read
//! end the loop polls, written at most once per batch of news.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The sending side: cheap to clone, safe to call from any thread.
#[derive(Debug, Clone)]
pub struct Waker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: UnixStream,
    /// Set when a byte is in flight and the loop has not yet drained it, so
    /// a burst of 100 events costs the loop one wake-up, not 100.
    pending: AtomicBool,
}

/// The loop's side: poll [`WakeReceiver::as_fd`] for reading, then call
/// [`WakeReceiver::drain`] before looking at the news.
#[derive(Debug)]
pub struct WakeReceiver {
    rx: UnixStream,
    inner: Arc<Inner>,
}

/// A connected pair.
pub fn pair() -> io::Result<(Waker, WakeReceiver)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    let inner = Arc::new(Inner {
        tx,
        pending: AtomicBool::new(false),
    });
    Ok((
        Waker {
            inner: Arc::clone(&inner),
        },
        WakeReceiver { rx, inner },
    ))
}

impl Waker {
    /// Makes the loop's next (or current) poll return.
    pub fn wake(&self) {
        if !self.inner.pending.swap(true, Ordering::AcqRel) {
            // A full socket buffer already means "wake up": ignore errors.
            let _ = (&self.inner.tx).write(&[1]);
        }
    }
}

impl WakeReceiver {
    /// Empties the socket and re-arms the waker. Call before reading the
    /// news, so that news sent after this call wakes the loop again.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.rx.read(&mut buf), Ok(n) if n > 0) {}
        // Re-armed only after the reads: re-armed before, a wake between
        // the two wrote a byte these reads took, left `pending` set, and
        // every later wake was swallowed until something else woke the
        // loop (seen in CI: a reload's outcome never taken). A wake that
        // finds `pending` still set here sent its news before, and the
        // caller reads the news next.
        self.inner.pending.store(false, Ordering::Release);
    }
}

impl AsFd for WakeReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_writes_one_byte_and_drain_rearms() {
        let (w, mut r) = pair().expect("pair");
        for _ in 0..100 {
            w.wake();
        }
        let mut buf = [0u8; 8];
        assert_eq!((&r.rx).read(&mut buf).expect("one byte"), 1);
        r.drain();
        w.wake();
        assert_eq!((&r.rx).read(&mut buf).expect("again"), 1);
    }
}
