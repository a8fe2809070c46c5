//! The in-memory network device that joins smoltcp to WireGuard.
//!
//! smoltcp reads inner IP packets from `rx` (what boringtun decrypted) and
//! writes the packets it sends to `tx` (what boringtun will encrypt). Packet
//! buffers are recycled through a pool so the steady state allocates nothing.

use std::cell::RefCell;
use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Bound on queued packets in each direction; beyond it packets are dropped
/// (and counted by the caller), like a full NIC ring.
pub(crate) const QUEUE_LIMIT: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer, reused when one is available.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    /// A reused buffer with stale content, for a writer that resizes it to
    /// what it writes (shrinking a buffer costs nothing, unlike zeroing it).
    pub(crate) fn take_dirty(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    /// Give a buffer back. Only a bounded number is kept so a burst does not
    /// pin memory forever.
    pub(crate) fn give(&mut self, buf: Vec<u8>) {
        if self.free.len() < QUEUE_LIMIT {
            self.free.push(buf);
        }
    }
}

/// IP-medium device backed by two packet queues.
#[derive(Debug)]
pub(crate) struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    pool: RefCell<BufferPool>,
    mtu: usize,
}

impl QueueDevice {
    pub(crate) fn new(mtu: usize) -> Self {
        Self {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            pool: RefCell::new(BufferPool::default()),
            mtu,
        }
    }

    /// Queue an inner packet for smoltcp that is already in a buffer (from
    /// [`Self::take_buffer`]). Returns false (packet dropped) when the queue
    /// is full.
    pub(crate) fn push_rx_owned(&mut self, buf: Vec<u8>) -> bool {
        if self.rx.len() >= QUEUE_LIMIT {
            self.recycle(buf);
            return false;
        }
        self.rx.push_back(buf);
        true
    }

    /// A pooled buffer with stale content, to decrypt a packet into.
    pub(crate) fn take_buffer(&mut self) -> Vec<u8> {
        self.pool.borrow_mut().take_dirty()
    }

    /// The next packet smoltcp wants sent.
    pub(crate) fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.borrow_mut().give(buf);
    }

    /// Keep at most `keep` spare buffers (a peer that went idle gives back
    /// what a burst left in its pool).
    pub(crate) fn trim(&mut self, keep: usize) {
        let mut pool = self.pool.borrow_mut();
        pool.free.truncate(keep);
        pool.free.shrink_to(keep);
    }

    /// Forget queued packets (used when the tunnel is torn down).
    pub(crate) fn clear(&mut self) {
        self.rx.clear();
        self.tx.clear();
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let buf = self.rx.pop_front()?;
        Some((
            RxToken {
                buf,
                pool: &self.pool,
            },
            TxToken {
                tx: &mut self.tx,
                pool: &self.pool,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        if self.tx.len() >= QUEUE_LIMIT {
            return None;
        }
        Some(TxToken {
            tx: &mut self.tx,
            pool: &self.pool,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // Many packets per poll: smoltcp may emit a whole window at once.
        caps.max_burst_size = None;
        caps
    }
}

pub(crate) struct RxToken<'a> {
    buf: Vec<u8>,
    pool: &'a RefCell<BufferPool>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(&self.buf);
        self.pool.borrow_mut().give(self.buf);
        r
    }
}

pub(crate) struct TxToken<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    pool: &'a RefCell<BufferPool>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp writes every byte of the packet: no need to zero it first.
        let mut buf = self.pool.borrow_mut().take_dirty();
        buf.resize(len, 0);
        let r = f(&mut buf);
        self.tx.push_back(buf);
        r
    }
}
