//! The plain UDP sockets beside the WireGuard one: the client's local UDP
//! forwards and the gateway's connected sockets to UDP targets.
//!
//! Both drivers read these the same way (until the socket runs dry, then
//! register for its wakeup) and forget an idle flow after the same time, so
//! that lives here once. What a datagram means stays with each side.

use std::io;
use std::task::Context;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Idle UDP flows are forgotten after this: on the client one per local
/// source address, on the gateway one per (peer, target, in-tunnel source).
pub(crate) const FLOW_IDLE: Duration = Duration::from_secs(120);

/// Receive from `socket` into `buf` with `recv` (`try_recv_from`, or
/// `try_recv` on a connected socket) and hand each datagram to `handle`, for
/// at most `limit` tries. Stops when the socket runs dry (registering for
/// its wakeup) or fails. Returns whether any datagram arrived.
pub(crate) fn recv_each<A>(
    socket: &UdpSocket,
    buf: &mut [u8],
    cx: &mut Context<'_>,
    limit: usize,
    mut recv: impl FnMut(&UdpSocket, &mut [u8]) -> io::Result<(usize, A)>,
    mut handle: impl FnMut(A, &[u8]),
) -> bool {
    let mut progress = false;
    for _ in 0..limit {
        match recv(socket, buf) {
            Ok((n, from)) => {
                progress = true;
                handle(from, &buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.poll_recv_ready(cx).is_ready() {
                    continue;
                }
                break;
            }
            Err(_) => break,
        }
    }
    progress
}

/// Datagrams for one flow's connected socket, gathered so that a burst goes
/// out in one system call (`udp::send_segments`). The gateway reads a
/// peer's datagrams for a target from its in-tunnel socket in bursts (the
/// client sends up to 64 in one system call); sending each with its own
/// `send` cost most of the gateway's time per datagram, and woke the
/// target once per datagram.
#[derive(Debug)]
pub(crate) struct Segments<K> {
    key: Option<K>,
    data: Vec<u8>,
    segment: usize,
    count: usize,
    /// The last datagram was shorter than `segment`: nothing may follow.
    closed: bool,
}

impl<K: Copy + PartialEq> Segments<K> {
    pub(crate) fn new() -> Self {
        Segments {
            key: None,
            data: Vec::new(),
            segment: 0,
            count: 0,
            closed: false,
        }
    }

    /// Whether a datagram of `len` bytes for `key` can join what is
    /// gathered; if not, send what is gathered first.
    pub(crate) fn fits(&self, key: K, len: usize) -> bool {
        self.count == 0
            || (self.key == Some(key)
                && !self.closed
                && super::udp::joins_batch(self.count, self.data.len(), self.segment, len))
    }

    /// Add a datagram (which [`Segments::fits`]).
    pub(crate) fn push(&mut self, key: K, datagram: &[u8]) {
        if self.count == 0 {
            self.key = Some(key);
            self.segment = datagram.len();
        }
        self.closed = datagram.len() < self.segment;
        self.data.extend_from_slice(datagram);
        self.count += 1;
    }

    /// Hand what is gathered to `send` (its flow, the bytes and the segment
    /// size), and start empty.
    pub(crate) fn flush(&mut self, send: impl FnOnce(K, &[u8], usize)) {
        if let Some(key) = self.key.take()
            && self.count > 0
        {
            send(key, &self.data, self.segment);
        }
        self.data.clear();
        self.count = 0;
        self.closed = false;
    }
}

// Elsewhere a batch holds one datagram (no segmentation offload).
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn flushed(s: &mut Segments<u8>) -> Option<(u8, usize, usize)> {
        let mut out = None;
        s.flush(|k, data, segment| out = Some((k, data.len(), segment)));
        out
    }

    #[test]
    fn equal_datagrams_of_one_flow_share_a_send() {
        let mut s = Segments::new();
        for _ in 0..10 {
            assert!(s.fits(1, 1000));
            s.push(1, &[0; 1000]);
        }
        // A shorter one may end the batch; then nothing more joins.
        assert!(s.fits(1, 300));
        s.push(1, &[0; 300]);
        assert!(!s.fits(1, 300));
        assert_eq!(flushed(&mut s), Some((1, 10_300, 1000)));
        assert_eq!(flushed(&mut s), None);
    }

    #[test]
    fn another_flow_a_longer_datagram_or_a_full_batch_starts_a_new_send() {
        let mut s = Segments::new();
        s.push(1, &[0; 1000]);
        assert!(!s.fits(2, 1000), "another flow");
        assert!(!s.fits(1, 1001), "longer than the segment");
        for _ in 1..64 {
            s.push(1, &[0; 1000]);
        }
        assert!(!s.fits(1, 1000), "64 datagrams, or 64,000 bytes, at most");
        assert_eq!(flushed(&mut s), Some((1, 64_000, 1000)));
        // Empty datagrams are sent alone.
        s.push(3, &[]);
        assert!(!s.fits(3, 0));
        assert_eq!(flushed(&mut s), Some((3, 0, 0)));
    }
}
