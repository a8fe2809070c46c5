//! OSes without an owner lookup (macOS among them): nothing can prove who
//! connected, so [`super::LocalAccess::SameUser`] refuses (fail closed).
//! macOS could answer through libproc (`proc_pidfdinfo` with
//! `PROC_PIDFDSOCKETINFO` over this user's processes); until that exists,
//! using a tunnel there needs an explicit [`super::LocalAccess::Anyone`].

use std::net::SocketAddr;

use super::Refusal;

/// Always refuses: the owner cannot be determined here.
pub(super) fn check_same_user(_client: SocketAddr, _listener: SocketAddr) -> Result<(), Refusal> {
    Err(Refusal::Unsupported)
}

/// Always refuses: the owner cannot be determined here.
pub(super) fn check_udp_sender(_sender: SocketAddr, _listener: SocketAddr) -> Result<(), Refusal> {
    Err(Refusal::Unsupported)
}
