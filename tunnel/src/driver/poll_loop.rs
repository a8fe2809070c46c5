//! The poll loop both drivers run, with the per-side work behind [`Side`].
//!
//! The client and the gateway drive their cores the same way: one task, one
//! WireGuard UDP socket, one timer. Every turn reads the control channel,
//! receives datagrams into the core, lets the side move its own sockets,
//! sends what the core produced, and, once nothing moved, publishes a status
//! snapshot and sleeps until the core's next deadline. That tail lives here
//! once, so the budget, batching and sleeping cannot drift apart between the
//! two sides; each side keeps only what is its own.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use crate::driver::udp::{Outbox, UdpIo};

/// Most loop turns per wakeup before yielding to other tasks.
const TURNS_PER_WAKEUP: usize = 32;

/// One side of the tunnel (client or gateway) as the loop drives it.
///
/// As an [`Outbox`] it hands the core's datagrams to the WireGuard socket
/// and takes their buffers back. A hook returns `ControlFlow::Break` to end
/// the loop (shutdown, expiry), else whether anything moved.
pub(crate) trait Side: Outbox {
    /// Why the loop ended; handed to [`Side::teardown`].
    type Exit;

    /// Start of a turn, before any datagram is read: the control channel.
    fn control(&mut self, cx: &mut Context<'_>, now: Instant) -> ControlFlow<Self::Exit, bool>;

    /// One datagram from the WireGuard socket, for the core.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);

    /// Between receiving and sending: the side's own sockets and the core's
    /// timers.
    fn work(&mut self, cx: &mut Context<'_>, now: Instant) -> ControlFlow<Self::Exit, bool>;

    /// When the core needs a turn next if nothing wakes the task before.
    fn deadline(&mut self, now: Instant) -> Instant;

    /// Copy the state into the handle's status snapshot.
    fn publish_status(&mut self, now: Instant);

    /// Fail closed once the loop has ended. `udp` is still open, for the
    /// last datagrams (RSTs into the tunnel): see [`UdpIo::send_now`].
    fn teardown(&mut self, exit: Self::Exit, udp: &UdpIo);
}

/// The loop's own state: the WireGuard socket with its batching, the timer,
/// and the side it drives.
#[derive(Debug)]
pub(crate) struct Driver<S> {
    side: S,
    udp: UdpIo,
    sleep: Pin<Box<Sleep>>,
}

impl<S: Side> Driver<S> {
    /// Must be called within a tokio runtime (the timer registers with it).
    pub(crate) fn new(side: S, udp: UdpIo) -> Self {
        Self {
            side,
            udp,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// Run until a hook ends the loop, then tear the side down.
    pub(crate) async fn run(mut self) {
        let exit = poll_fn(|cx| self.poll(cx)).await;
        self.side.teardown(exit, &self.udp);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<S::Exit> {
        for _ in 0..TURNS_PER_WAKEUP {
            let now = Instant::now();
            let mut progress = match self.side.control(cx, now) {
                ControlFlow::Break(exit) => return Poll::Ready(exit),
                ControlFlow::Continue(p) => p,
            };
            let side = &mut self.side;
            progress |= self
                .udp
                .recv(cx, |from, d| side.handle_datagram(now, from, d));
            match self.side.work(cx, now) {
                ControlFlow::Break(exit) => return Poll::Ready(exit),
                ControlFlow::Continue(p) => progress |= p,
            }
            progress |= self.udp.send(cx, &mut self.side);
            if !progress {
                self.side.publish_status(now);
                let deadline = self.side.deadline(now);
                self.sleep.as_mut().reset(deadline.into());
                if self.sleep.as_mut().poll(cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, then continue.
        self.side.publish_status(Instant::now());
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
