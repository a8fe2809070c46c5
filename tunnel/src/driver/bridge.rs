//! One OS TCP stream joined to one in-tunnel smoltcp TCP socket.
//!
//! Bytes move directly between the kernel socket and smoltcp's ring buffers
//! (`try_read` into the send buffer, `try_write` out of the receive buffer),
//! so there is no intermediate copy and no per-packet allocation.
//! Half-closes are forwarded both ways; a reset on either side resets the
//! other (a local reset uses SO_LINGER 0, so the application sees it at once).
//!
//! [`pump_all`] is the pass both drivers make over their connections each
//! turn, so dropping a finished one (here and in the core) is written once.

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::Shutdown;
use std::task::{Context, Poll};

use smoltcp::socket::tcp::{self, State};
use tokio::net::TcpStream;

/// What the pump did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// Still running; `true` if any byte or state moved.
    Running(bool),
    /// Both directions are finished (or one side reset); drop the bridge.
    Finished,
}

/// One connection's part in a [`pump_all`] pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Still open; `true` if any byte or state moved.
    Running(bool),
    /// Done: drop it, and free its in-tunnel socket. `progress` says whether
    /// that is news from this turn (a pump or connect outcome) rather than a
    /// socket the core had already let go of.
    Finished {
        /// Whether anything moved.
        progress: bool,
    },
}

impl From<Pumped> for Step {
    fn from(p: Pumped) -> Self {
        match p {
            Pumped::Running(p) => Step::Running(p),
            Pumped::Finished => Step::Finished { progress: true },
        }
    }
}

/// One pass over a driver's connections: `step` moves each one (first what
/// is the side's own, such as a SOCKS reply or a pending connect to the
/// target, then [`TcpBridge::pump`]). Those that finish are dropped from
/// `conns` and handed to `release`, which frees the in-tunnel socket. Both
/// get `core`, the owner of the in-tunnel sockets. Returns whether anything
/// moved.
pub(crate) fn pump_all<K, C, X>(
    conns: &mut HashMap<K, C>,
    core: &mut X,
    mut step: impl FnMut(&mut X, K, &mut C) -> Step,
    mut release: impl FnMut(&mut X, K),
) -> bool
where
    K: Copy + Eq + Hash,
{
    let mut progress = false;
    let mut finished = Vec::new();
    for (key, conn) in conns.iter_mut() {
        match step(core, *key, conn) {
            Step::Running(p) => progress |= p,
            Step::Finished { progress: p } => {
                progress |= p;
                finished.push(*key);
            }
        }
    }
    for key in finished {
        conns.remove(&key);
        release(core, key);
    }
    progress
}

/// Outcome of the in-tunnel connect, for SOCKS replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connect {
    /// Still in the handshake.
    Pending,
    /// The in-tunnel connection is up.
    Established,
    /// It failed (reset, timeout) before it was up.
    Failed,
}

#[derive(Debug)]
pub(crate) struct TcpBridge {
    stream: TcpStream,
    /// Bytes to write to the stream before any tunnel data (SOCKS reply).
    prefix: Vec<u8>,
    prefix_sent: usize,
    /// The local side sent EOF; FIN queued in the tunnel.
    local_eof: bool,
    /// The tunnel side's EOF was forwarded (shutdown write on the stream).
    remote_eof: bool,
    was_established: bool,
    /// Hold tunnel data back until the connect outcome is known (SOCKS).
    hold_until_connected: bool,
}

impl TcpBridge {
    pub(crate) fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            prefix: Vec::new(),
            prefix_sent: 0,
            local_eof: false,
            remote_eof: false,
            was_established: false,
            hold_until_connected: false,
        }
    }

    /// A bridge that first has to tell the local side how the connect went.
    pub(crate) fn new_held(stream: TcpStream) -> Self {
        let mut b = Self::new(stream);
        b.hold_until_connected = true;
        b
    }

    /// The connect outcome, tracked from the socket state.
    pub(crate) fn connect_state(&mut self, socket: &tcp::Socket<'_>) -> Connect {
        match socket.state() {
            State::SynSent | State::SynReceived | State::Listen => Connect::Pending,
            State::Closed if !self.was_established => Connect::Failed,
            _ => {
                self.was_established = true;
                Connect::Established
            }
        }
    }

    /// Queue bytes for the local side ahead of tunnel data and release the
    /// hold (used for the SOCKS reply).
    pub(crate) fn release_with_prefix(&mut self, prefix: Vec<u8>) {
        self.prefix = prefix;
        self.prefix_sent = 0;
        self.hold_until_connected = false;
    }

    pub(crate) fn is_held(&self) -> bool {
        self.hold_until_connected
    }

    /// Reset the local side at once (SO_LINGER 0, then drop).
    pub(crate) fn reset(self) {
        let _ = self.stream.set_zero_linger();
        drop(self.stream);
    }

    /// Close the local side after the prefix (e.g. a SOCKS failure reply) is
    /// written; returns true once done.
    pub(crate) fn flush_prefix(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        while self.prefix_sent < self.prefix.len() {
            match self.stream.try_write(&self.prefix[self.prefix_sent..]) {
                Ok(n) => self.prefix_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.stream.poll_write_ready(cx).is_pending() {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Move what can be moved without blocking, both ways.
    pub(crate) fn pump(&mut self, socket: &mut tcp::Socket<'_>, cx: &mut Context<'_>) -> Pumped {
        let connect = self.connect_state(socket);
        if connect == Connect::Established {
            // Connected: no more connect deadline; keepalive handles the rest.
            socket.set_timeout(None);
        }
        if self.hold_until_connected {
            return Pumped::Running(false);
        }
        let mut progress = false;
        match self.flush_prefix(cx) {
            Ok(true) => {}
            Ok(false) => return Pumped::Running(false),
            Err(_) => {
                socket.abort();
                return Pumped::Finished;
            }
        }

        // Local -> tunnel.
        while !self.local_eof && socket.may_send() && socket.send_queue() < socket.send_capacity() {
            let mut blocked = false;
            let mut eof = false;
            let mut failed = false;
            let r = socket.send(|buf| match self.stream.try_read(buf) {
                Ok(0) => {
                    eof = true;
                    (0, 0)
                }
                Ok(n) => (n, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    (0, 0)
                }
                Err(_) => {
                    failed = true;
                    (0, 0)
                }
            });
            match r {
                Ok(n) if n > 0 => progress = true,
                Ok(_) => {}
                Err(_) => break,
            }
            if failed {
                socket.abort();
                return Pumped::Finished;
            }
            if eof {
                socket.close();
                self.local_eof = true;
                progress = true;
                break;
            }
            if blocked {
                match self.stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => {
                        socket.abort();
                        return Pumped::Finished;
                    }
                    Poll::Pending => break,
                }
            }
        }

        // Tunnel -> local.
        while socket.can_recv() {
            let mut blocked = false;
            let mut failed = false;
            let r = socket.recv(|buf| match self.stream.try_write(buf) {
                Ok(n) => (n, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    (0, 0)
                }
                Err(_) => {
                    failed = true;
                    (0, 0)
                }
            });
            if let Ok(n) = r {
                progress |= n > 0;
            }
            if failed {
                socket.abort();
                return Pumped::Finished;
            }
            if blocked {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => {
                        socket.abort();
                        return Pumped::Finished;
                    }
                    Poll::Pending => break,
                }
            }
            if r.is_err() {
                break;
            }
        }

        let state = socket.state();
        // The tunnel side will send no more: forward the half-close.
        if !self.remote_eof
            && self.was_established
            && !socket.may_recv()
            && !socket.can_recv()
            && state != State::Closed
        {
            let _ = socket2::SockRef::from(&self.stream).shutdown(Shutdown::Write);
            self.remote_eof = true;
            progress = true;
        }
        match state {
            // Reset by the far side, or a failed connect: reset the local side.
            State::Closed if !(self.local_eof && self.remote_eof) => {
                let _ = self.stream.set_zero_linger();
                Pumped::Finished
            }
            State::Closed | State::TimeWait => Pumped::Finished,
            _ => Pumped::Running(progress),
        }
    }
}
