//! Reading the configuration again without holding up the drawing loop:
//! each read runs on a thread of its own and hands its outcome back through
//! the loop's wake-up socket ([`super::wake`]), so lines keep fading while
//! a file parses, however long the parser takes (up to its deadline) or
//! whatever the file turns out to be.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};

use super::wake::Waker;
use crate::config::OverlayConfig;

/// What a read gives: the new configuration, or why there is none.
pub type Outcome = anyhow::Result<OverlayConfig>;

/// Reads one configuration file in the background, one read at a time.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    load: fn(&Path) -> Outcome,
    waker: Waker,
    tx: Sender<Outcome>,
    rx: Receiver<Outcome>,
    /// A read is under way.
    reading: bool,
    /// The file changed again while it was: read it once more after.
    again: bool,
}

impl Reloader {
    /// Reads `path` as the overlay's configuration when asked, waking the
    /// loop through `waker` when the outcome is there.
    pub fn new(path: &Path, waker: Waker) -> Reloader {
        Reloader::with_loader(path, waker, super::glue::load_config)
    }

    /// The same, reading with `load`.
    fn with_loader(path: &Path, waker: Waker, load: fn(&Path) -> Outcome) -> Reloader {
        let (tx, rx) = mpsc::channel();
        Reloader {
            path: path.to_path_buf(),
            load,
            waker,
            tx,
            rx,
            reading: false,
            again: false,
        }
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts reading the file again and returns at once. While a read is
    /// under way, another follows it, so that the last edit is the one
    /// that counts, without reads piling up.
    pub fn request(&mut self) {
        if self.reading {
            self.again = true;
        } else {
            self.start();
        }
    }

    fn start(&mut self) {
        self.reading = true;
        let (path, load, tx, waker) = (
            self.path.clone(),
            self.load,
            self.tx.clone(),
            self.waker.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("leco-reload".into())
            .spawn(move || {
                // The receiver is gone only when the overlay is ending.
                let _ = tx.send(load(&path));
                waker.wake();
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(Err(anyhow::anyhow!(
                "cannot start a thread to read {}: {e}",
                self.path.display()
            )));
            self.waker.wake();
        }
    }

    /// The outcome of the last read, once it has come (after the loop was
    /// woken); `None` before, and for a read a newer one supersedes.
    pub fn take(&mut self) -> Option<Outcome> {
        let outcome = self.rx.try_recv().ok()?;
        self.reading = false;
        if std::mem::take(&mut self.again) {
            self.start();
            return None;
        }
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    use super::*;
    use crate::app::wake::{self, WakeReceiver};

    /// Waits, as the loop does, until the reloader wakes it, then takes
    /// the outcome; panics after `limit`.
    fn next_outcome(
        reloader: &mut Reloader,
        wake_rx: &mut WakeReceiver,
        limit: Duration,
    ) -> Outcome {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no outcome within {limit:?}");
            let mut fds = [PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32)
                .unwrap_or(PollTimeout::MAX);
            poll(&mut fds, ms).expect("poll");
            wake_rx.drain();
            if let Some(outcome) = reloader.take() {
                return outcome;
            }
        }
    }

    static READS: AtomicUsize = AtomicUsize::new(0);

    /// A parse that takes half a second, as a pathological file might.
    fn slow(_: &Path) -> Outcome {
        READS.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
        Ok(OverlayConfig::default())
    }

    #[test]
    fn a_slow_read_leaves_the_loop_free_and_arrives_later() {
        let (waker, mut wake_rx) = wake::pair().expect("wake pair");
        let mut reloader = Reloader::with_loader(Path::new("config.kdl"), waker, slow);
        let began = Instant::now();
        reloader.request();
        assert!(reloader.take().is_none(), "no outcome yet");
        // The file changes again while it is read: read once more, after.
        reloader.request();
        let returned = began.elapsed();
        assert!(
            returned < Duration::from_millis(100),
            "request took {returned:?}"
        );
        let outcome = next_outcome(&mut reloader, &mut wake_rx, Duration::from_secs(10));
        assert!(outcome.is_ok());
        let arrived = began.elapsed();
        assert!(
            arrived >= Duration::from_millis(1000),
            "two reads, one after the other: {arrived:?}"
        );
        assert_eq!(READS.load(Ordering::SeqCst), 2);
        assert!(reloader.take().is_none());
    }

    #[test]
    fn a_fifo_or_a_pathological_file_is_refused_without_waiting_for_it() {
        let dir = leco_testkit::scratch_dir("reload-refused");
        for (path, why) in leco_testkit::unusable_configs(&dir, "overlay") {
            let (waker, mut wake_rx) = wake::pair().expect("wake pair");
            let mut reloader = Reloader::new(&path, waker);
            let began = Instant::now();
            reloader.request();
            assert!(began.elapsed() < Duration::from_millis(100));
            let message = match next_outcome(&mut reloader, &mut wake_rx, Duration::from_secs(5)) {
                Ok(_) => panic!("{} was read", path.display()),
                Err(e) => format!("{e:#}"),
            };
            assert!(
                message.starts_with(&format!("{}{why}", path.display())),
                "{message}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
