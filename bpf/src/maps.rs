//! The reading side: the event ring buffer and the flow table, through map
//! file descriptors of their own so that they outlive (or never need) the
//! loader's privileges.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, MapHandle, RingBuffer, RingBufferBuilder};

use crate::record::{pod_bytes, read_pod, Flow, FlowKey, Record, RecordError};
use crate::skel::{types, LecoSkel};

/// Counters kept by the kernel programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Records lost because the ring buffer was full. Never silently: the
    /// flows themselves are still in the flow table.
    pub ringbuf_drops: u64,
    /// Flows ever created (the last flow id handed out).
    pub flows_created: u64,
}

/// File descriptors of the maps user space reads.
#[derive(Debug)]
pub struct KernelMaps {
    events: MapHandle,
    flows: MapHandle,
    bss: MapHandle,
    /// Inbound attempts blocked before any socket: flows like the others,
    /// whose keys say so ([`FlowKey::is_blocked_inbound`]).
    blocked_in: MapHandle,
}

impl KernelMaps {
    pub(crate) fn from_skel(skel: &LecoSkel<'static>) -> libbpf_rs::Result<KernelMaps> {
        Ok(KernelMaps {
            events: MapHandle::try_from(&skel.maps.events)?,
            flows: MapHandle::try_from(&skel.maps.flows)?,
            bss: MapHandle::try_from(&skel.maps.bss)?,
            blocked_in: MapHandle::try_from(&skel.maps.blocked_in)?,
        })
    }

    pub(crate) fn from_handles(
        events: MapHandle,
        flows: MapHandle,
        bss: MapHandle,
        blocked_in: MapHandle,
    ) -> KernelMaps {
        KernelMaps {
            events,
            flows,
            bss,
            blocked_in,
        }
    }

    /// The map that holds the flow of `key`.
    fn table_of(&self, key: &FlowKey) -> &MapHandle {
        if key.is_blocked_inbound() {
            &self.blocked_in
        } else {
            &self.flows
        }
    }

    /// Which load these maps are: the flow table's kernel id, unique per
    /// boot. Flow ids count from 1 in each load, so a flow id means a
    /// connection only together with it.
    pub fn load_id(&self) -> u32 {
        self.flows.info().map_or(0, |i| i.info.id)
    }

    /// A reader of the event ring buffer.
    pub fn reader(&self) -> libbpf_rs::Result<RecordReader> {
        let pending: Arc<Mutex<Vec<Result<Record, RecordError>>>> = Arc::default();
        let sink = Arc::clone(&pending);
        let mut builder = RingBufferBuilder::new();
        builder.add(&self.events, move |bytes: &[u8]| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Record::decode(bytes));
            0
        })?;
        Ok(RecordReader {
            ring: builder.build()?,
            pending,
        })
    }

    /// The kernel's counters.
    pub fn counters(&self) -> libbpf_rs::Result<KernelCounters> {
        let value = self
            .bss
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .unwrap_or_default();
        if value.len() < std::mem::size_of::<types::bss>() {
            return Ok(KernelCounters::default());
        }
        let bss = read_pod::<types::bss>(&value[..std::mem::size_of::<types::bss>()]);
        Ok(KernelCounters {
            ringbuf_drops: bss.ringbuf_drops,
            flows_created: bss.flow_seq,
        })
    }

    /// The kernel's current view of one flow, if it still has it.
    pub fn flow(&self, key: &FlowKey) -> libbpf_rs::Result<Option<Flow>> {
        let raw_key = key.to_raw();
        let Some(value) = self
            .table_of(key)
            .lookup(pod_bytes(&raw_key), MapFlags::ANY)?
        else {
            return Ok(None);
        };
        Ok(decode_flow(&raw_key, &value))
    }

    /// Every flow in the kernel's tables (inbound blocked attempts
    /// included), for a client that (re)starts or lost records: the tables
    /// are the truth the ring buffer only reports on.
    pub fn flows(&self) -> Vec<Flow> {
        [&self.flows, &self.blocked_in]
            .into_iter()
            .flat_map(|map| {
                map.keys().filter_map(|k| {
                    let raw_key = read_pod::<types::leco_flow_key>(&k);
                    let value = map.lookup(&k, MapFlags::ANY).ok()??;
                    decode_flow(&raw_key, &value)
                })
            })
            .collect()
    }

    /// Removes a flow the caller knows has ended (a released UDP socket,
    /// an inbound blocked attempt gone quiet).
    pub fn forget(&self, key: &FlowKey) {
        // ENOENT: the kernel already dropped it (TCP close, LRU), fine.
        let _ = self.table_of(key).delete(pod_bytes(&key.to_raw()));
    }
}

fn decode_flow(raw_key: &types::leco_flow_key, value: &[u8]) -> Option<Flow> {
    if value.len() != std::mem::size_of::<types::leco_flow>() {
        return None;
    }
    let raw = read_pod::<types::leco_flow>(value);
    Flow::from_raw(FlowKey::from_raw(raw_key), &raw).ok()
}

/// Reads decoded events from the ring buffer, without busy polling: wait for
/// [`RecordReader::as_raw_fd`] to become readable (epoll, tokio `AsyncFd`),
/// then [`RecordReader::drain`].
///
/// The kernel wakes the reader at most once per `Options::wakeup_latency`
/// (waking costs more than recording). Records that arrive within that
/// interval after a wake-up do not wake it again, so after a drain that
/// returned records, drain again once the interval has passed, until a
/// drain returns none; only then wait for readability again.
pub struct RecordReader {
    ring: RingBuffer<'static>,
    pending: Arc<Mutex<Vec<Result<Record, RecordError>>>>,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader").finish_non_exhaustive()
    }
}

impl RecordReader {
    /// Moves every record available now into `out`; returns how many.
    pub fn drain(
        &mut self,
        out: &mut Vec<Result<Record, RecordError>>,
    ) -> libbpf_rs::Result<usize> {
        self.ring.consume()?;
        self.take(out)
    }

    /// Waits up to `timeout` for records, then moves them into `out`.
    pub fn poll(
        &mut self,
        timeout: Duration,
        out: &mut Vec<Result<Record, RecordError>>,
    ) -> libbpf_rs::Result<usize> {
        self.ring.poll(timeout)?;
        self.take(out)
    }

    fn take(&mut self, out: &mut Vec<Result<Record, RecordError>>) -> libbpf_rs::Result<usize> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let n = pending.len();
        out.append(&mut pending);
        Ok(n)
    }
}

impl AsRawFd for RecordReader {
    /// An epoll descriptor that is readable when records are waiting.
    fn as_raw_fd(&self) -> RawFd {
        self.ring.epoll_fd()
    }
}

impl AsFd for RecordReader {
    /// An epoll descriptor that is readable when records are waiting.
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the ring buffer owns this descriptor and closes it only
        // when dropped, which the borrow of `self` rules out meanwhile.
        unsafe { BorrowedFd::borrow_raw(self.ring.epoll_fd()) }
    }
}
