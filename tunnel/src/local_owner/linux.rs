//! Linux: the owner of a loopback connection's client end, from the
//! `/proc/net/tcp` and `/proc/net/tcp6` tables, and of a UDP forward's
//! sender, from `/proc/net/udp` and `/proc/net/udp6`.
//!
//! They are read through `/proc/thread-self/net/`, not `/proc/net/`
//! (`/proc/self/net/`, the main thread's network namespace): a thread may
//! have joined another namespace (`setns`), and its runtime's threads,
//! the blocking pool included, live where the listener was bound. A lookup
//! in the wrong namespace finds no row and refuses, never admits.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::Refusal;
use super::proc_net::{self, Miss};

/// IPv4 sockets, then IPv6 ones (an AF_INET6 client of an IPv4 listener
/// shows up there with a mapped address).
const TCP: &str = "/proc/thread-self/net/tcp";
const TCP6: &str = "/proc/thread-self/net/tcp6";
const UDP: &str = "/proc/thread-self/net/udp";
const UDP6: &str = "/proc/thread-self/net/udp6";

/// The client's row is normally there before `accept` returns (the client
/// is established first), so the retries are only for a slow kernel.
const ATTEMPTS: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(5);

/// `Ok` if the client's socket belongs to this process's effective uid.
pub(super) fn check_same_user(client: SocketAddr, listener: SocketAddr) -> Result<(), Refusal> {
    let own = nix::unistd::Uid::effective().as_raw();
    let peer = peer_uid(client, listener)?;
    if peer == own {
        Ok(())
    } else {
        Err(Refusal::OtherUid { peer, own })
    }
}

/// `Ok` if the UDP socket that sent from `sender` to the forward on
/// `listener` belongs to this process's effective uid. No retry: the
/// sender's socket exists before its datagram does.
pub(super) fn check_udp_sender(sender: SocketAddr, listener: SocketAddr) -> Result<(), Refusal> {
    let own = nix::unistd::Uid::effective().as_raw();
    let tables: &[&'static str] = if sender.ip().to_canonical().is_ipv4() {
        &[UDP, UDP6]
    } else {
        &[UDP6]
    };
    let mut owners = Vec::new();
    for &path in tables {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == UDP6 => continue,
            Err(source) => return Err(Refusal::Io { what: path, source }),
        };
        match proc_net::udp_owner_uid(&text, sender, listener) {
            Ok(uid) => owners.push(uid),
            Err(Miss::NotFound) => {}
            Err(miss) => return Err(miss.into()),
        }
    }
    owners.dedup();
    match owners.as_slice() {
        [] => Err(Miss::NotFound.into()),
        [peer] if *peer == own => Ok(()),
        [peer] => Err(Refusal::OtherUid { peer: *peer, own }),
        _ => Err(Miss::Ambiguous.into()),
    }
}

/// The uid owning the client's end, looking again a few times while it is
/// not in the tables.
fn peer_uid(client: SocketAddr, listener: SocketAddr) -> Result<u32, Refusal> {
    // An IPv6 client address can only be in tcp6; an IPv4 one is in tcp,
    // or in tcp6 when the client used a dual-stack socket.
    let tables: &[&'static str] = if client.ip().to_canonical().is_ipv4() {
        &[TCP, TCP6]
    } else {
        &[TCP6]
    };
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(RETRY_AFTER);
        }
        for &path in tables {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                // No IPv6 in this kernel: nothing can be there.
                Err(e) if e.kind() == io::ErrorKind::NotFound && path == TCP6 => continue,
                Err(source) => return Err(Refusal::Io { what: path, source }),
            };
            match proc_net::owner_uid(&text, client, listener) {
                Ok(uid) => return Ok(uid),
                Err(Miss::NotFound) => {}
                Err(miss) => return Err(miss.into()),
            }
        }
    }
    Err(Miss::NotFound.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_this_process_is_its_own() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (peer, local) = (
            accepted.peer_addr().unwrap(),
            accepted.local_addr().unwrap(),
        );
        assert_eq!(
            peer_uid(peer, local).unwrap(),
            nix::unistd::Uid::effective().as_raw()
        );
        check_same_user(peer, local).unwrap();
        drop(client);
    }

    #[test]
    fn a_udp_sender_of_this_process_is_its_own() {
        let forward = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = forward.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        check_udp_sender(sender.local_addr().unwrap(), to).unwrap();
        // Bound to the wildcard address: the datagram comes from loopback.
        let wildcard = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = wildcard.local_addr().unwrap().port();
        check_udp_sender(SocketAddr::from(([127, 0, 0, 1], port)), to).unwrap();
        let err = check_udp_sender("127.0.0.1:1".parse().unwrap(), to).unwrap_err();
        assert!(matches!(err, Refusal::Lookup(Miss::NotFound)), "{err}");
    }

    #[test]
    fn an_unknown_connection_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        // Nobody connected from port 1.
        let err = check_same_user("127.0.0.1:1".parse().unwrap(), local).unwrap_err();
        assert!(matches!(err, Refusal::Lookup(Miss::NotFound)), "{err}");
    }

    #[test]
    fn a_dual_stack_client_of_an_ipv4_listener_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let Ok(client) = std::net::TcpStream::connect(("::ffff:127.0.0.1", port)) else {
            return; // no IPv6 in this kernel
        };
        let (accepted, _) = listener.accept().unwrap();
        check_same_user(
            accepted.peer_addr().unwrap(),
            accepted.local_addr().unwrap(),
        )
        .unwrap();
        drop(client);
    }
}
