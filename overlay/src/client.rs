//! The overlay's bus client: leco-follow's follower on a small
//! current-thread tokio runtime in a thread of its own; what it learns
//! goes to the Wayland loop as [`BusEvent`]s over a channel, and a
//! [`Waker`] makes the loop's `poll(2)` return. The Wayland loop never
//! blocks on the bus and the bus never waits for a frame.

use std::sync::mpsc;

pub use leco_follow::{BusAddress, BusEvent, BusStatus};

use crate::app::wake::Waker;

/// The running bus thread and the receiving end of its events.
#[derive(Debug)]
pub struct BusClient {
    events: mpsc::Receiver<BusEvent>,
}

impl BusClient {
    /// Starts the bus thread. It connects, subscribes, takes snapshots and
    /// reconnects on its own for as long as the process lives; `waker` is
    /// woken after each batch of events it sends.
    pub fn spawn(address: BusAddress, waker: Waker) -> std::io::Result<BusClient> {
        let (tx, events) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("leco-bus".to_owned())
            .spawn(move || {
                let sink = Sink { tx, waker };
                runtime.block_on(leco_follow::follow(address, sink));
            })?;
        Ok(BusClient { events })
    }

    /// The next event already received, without waiting.
    pub fn try_next(&self) -> Option<BusEvent> {
        self.events.try_recv().ok()
    }
}

/// Sends events to the Wayland loop and wakes it.
struct Sink {
    tx: mpsc::Sender<BusEvent>,
    waker: Waker,
}

impl leco_follow::Sink for Sink {
    /// False once the Wayland loop has gone (the thread should end).
    fn send(&mut self, ev: BusEvent) -> bool {
        let ok = self.tx.send(ev).is_ok();
        self.waker.wake();
        ok
    }
}
