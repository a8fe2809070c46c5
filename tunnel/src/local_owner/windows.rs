//! Windows: the owner of a loopback connection's client end. The TCP table
//! (`GetExtendedTcpTable`, `TCP_TABLE_OWNER_PID_ALL`) names the process
//! whose socket goes from the client's address to the listener; that
//! process's token user (SID) must equal this process's. For a UDP
//! forward, the UDP table (`GetExtendedUdpTable`, `UDP_TABLE_OWNER_PID`)
//! names the process whose socket is bound to the sender's address.
//!
//! Every `unsafe` call of the tunnel crate lives here (and in
//! `core/buffers/glibc.rs`, one `mallopt`), each with its
//! `SAFETY` note. Opening another user's process usually fails for an
//! unprivileged agent: that too is a refusal (unknown is not pass).
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_INSUFFICIENT_BUFFER, HANDLE, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, GetExtendedUdpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCP6TABLE_OWNER_PID,
    MIB_TCPROW_OWNER_PID, MIB_TCPTABLE_OWNER_PID, MIB_UDP6ROW_OWNER_PID, MIB_UDP6TABLE_OWNER_PID,
    MIB_UDPROW_OWNER_PID, MIB_UDPTABLE_OWNER_PID, TCP_TABLE_OWNER_PID_ALL, UDP_TABLE_OWNER_PID,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{EqualSid, GetTokenInformation, TOKEN_QUERY, TokenUser};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::Refusal;
use super::proc_net::Miss;

/// The table can grow between the size query and the read.
const TABLE_ATTEMPTS: usize = 4;

/// `Ok` if the process owning the client's socket runs as this process's
/// user.
pub(super) fn check_same_user(client: SocketAddr, listener: SocketAddr) -> Result<(), Refusal> {
    same_user_as(owning_pid(client, listener)?)
}

/// `Ok` if the process owning the UDP socket bound to `sender` runs as this
/// process's user.
pub(super) fn check_udp_sender(sender: SocketAddr, _listener: SocketAddr) -> Result<(), Refusal> {
    same_user_as(udp_owning_pid(sender)?)
}

/// `Ok` if process `pid` runs as this process's user.
fn same_user_as(pid: u32) -> Result<(), Refusal> {
    let peer = process_user(pid).map_err(|source| Refusal::Io {
        what: "the connecting process's user",
        source,
    })?;
    let own = current_user().map_err(|source| Refusal::Io {
        what: "this process's user",
        source,
    })?;
    if peer.equals(&own) {
        Ok(())
    } else {
        Err(Refusal::OtherUser { pid })
    }
}

/// The PID owning the socket from `client` to `listener`, from the IPv4
/// table and then the IPv6 one (dual-stack sockets list mapped addresses
/// there).
fn owning_pid(client: SocketAddr, listener: SocketAddr) -> Result<u32, Refusal> {
    let want = (canonical(client), canonical(listener));
    let io_err = |source| Refusal::Io {
        what: "the TCP table (GetExtendedTcpTable)",
        source,
    };
    let mut found: Vec<u32> = Vec::new();
    if client.ip().to_canonical().is_ipv4() {
        let table = owner_table(AF_INET, tcp_call).map_err(io_err)?;
        for row in rows::<MIB_TCPTABLE_OWNER_PID>(&table) {
            let local = v4(row.dwLocalAddr, row.dwLocalPort);
            let remote = v4(row.dwRemoteAddr, row.dwRemotePort);
            if (canonical(local), canonical(remote)) == want {
                found.push(row.dwOwningPid);
            }
        }
    }
    let table = owner_table(AF_INET6, tcp_call).map_err(io_err)?;
    for row in rows::<MIB_TCP6TABLE_OWNER_PID>(&table) {
        let local = v6(row.ucLocalAddr, row.dwLocalPort);
        let remote = v6(row.ucRemoteAddr, row.dwRemotePort);
        if (canonical(local), canonical(remote)) == want {
            found.push(row.dwOwningPid);
        }
    }
    one_pid(found)
}

/// The PID owning the UDP socket bound to `sender`'s port on its address
/// or on the wildcard address (a dual-stack socket lists the mapped form).
fn udp_owning_pid(sender: SocketAddr) -> Result<u32, Refusal> {
    let (ip, port) = canonical(sender);
    let bound_here = |local: SocketAddr| {
        let (lip, lport) = canonical(local);
        lport == port && (lip == ip || lip.is_unspecified())
    };
    let io_err = |source| Refusal::Io {
        what: "the UDP table (GetExtendedUdpTable)",
        source,
    };
    let mut found: Vec<u32> = Vec::new();
    if ip.is_ipv4() {
        let table = owner_table(AF_INET, udp_call).map_err(io_err)?;
        for row in rows::<MIB_UDPTABLE_OWNER_PID>(&table) {
            if bound_here(v4(row.dwLocalAddr, row.dwLocalPort)) {
                found.push(row.dwOwningPid);
            }
        }
    }
    let table = owner_table(AF_INET6, udp_call).map_err(io_err)?;
    for row in rows::<MIB_UDP6TABLE_OWNER_PID>(&table) {
        if bound_here(v6(row.ucLocalAddr, row.dwLocalPort)) {
            found.push(row.dwOwningPid);
        }
    }
    one_pid(found)
}

/// The one owner among the matching rows.
fn one_pid(mut found: Vec<u32>) -> Result<u32, Refusal> {
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        // PID 0 is the idle "process" Windows shows for TIME_WAIT sockets.
        [0] => Err(Miss::NoOwner.into()),
        [pid] => Ok(*pid),
        [] => Err(Miss::NotFound.into()),
        _ => Err(Miss::Ambiguous.into()),
    }
}

/// An IPv4 row's address: the `u32` holds the address bytes in network
/// order as they lie in memory, the port is the low 16 bits, also in
/// network order.
fn v4(addr: u32, port: u32) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(addr.to_ne_bytes()).into(), row_port(port))
}

/// An IPv6 row's address (bytes in network order; the port as for IPv4).
fn v6(addr: [u8; 16], port: u32) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::from(addr).into(), row_port(port))
}

fn row_port(port: u32) -> u16 {
    u16::from_be((port & 0xFFFF) as u16)
}

fn canonical(addr: SocketAddr) -> (IpAddr, u16) {
    (addr.ip().to_canonical(), addr.port())
}

/// `GetExtendedTcpTable` or `GetExtendedUdpTable` for the owner-PID table
/// of one address family: (buffer, its capacity in bytes, family) to a
/// status, the capacity set to the size needed.
type TableCall = fn(*mut core::ffi::c_void, &mut u32, u32) -> u32;

fn tcp_call(buffer: *mut core::ffi::c_void, capacity: &mut u32, family: u32) -> u32 {
    // SAFETY: the caller passes a buffer writable for `capacity` bytes; the
    // call writes at most that many and stores the needed size.
    unsafe { GetExtendedTcpTable(buffer, capacity, 0, family, TCP_TABLE_OWNER_PID_ALL, 0) }
}

fn udp_call(buffer: *mut core::ffi::c_void, capacity: &mut u32, family: u32) -> u32 {
    // SAFETY: as for `tcp_call`.
    unsafe { GetExtendedUdpTable(buffer, capacity, 0, family, UDP_TABLE_OWNER_PID, 0) }
}

/// A whole owner-PID table of one address family, in a buffer of `u64`s
/// so the table's `u32` fields are aligned.
fn owner_table(family: u16, call: TableCall) -> io::Result<Vec<u64>> {
    let mut size = 0u32;
    for _ in 0..TABLE_ATTEMPTS {
        let mut buffer = vec![0u64; (size as usize).div_ceil(8).max(1)];
        let mut capacity = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
        match call(buffer.as_mut_ptr().cast(), &mut capacity, u32::from(family)) {
            NO_ERROR => return Ok(buffer),
            ERROR_INSUFFICIENT_BUFFER => size = capacity,
            code => return Err(io::Error::from_raw_os_error(code as i32)),
        }
    }
    Err(io::Error::other(
        "the socket table kept growing while being read",
    ))
}

/// The layout the owner-PID tables share: an entry count, then the rows.
trait Table {
    type Row: Copy;
    /// Where the rows start (the `table` field).
    const ROWS_AT: usize;
    fn count(&self) -> u32;
}

impl Table for MIB_TCPTABLE_OWNER_PID {
    type Row = MIB_TCPROW_OWNER_PID;
    const ROWS_AT: usize = std::mem::offset_of!(MIB_TCPTABLE_OWNER_PID, table);
    fn count(&self) -> u32 {
        self.dwNumEntries
    }
}

impl Table for MIB_TCP6TABLE_OWNER_PID {
    type Row = MIB_TCP6ROW_OWNER_PID;
    const ROWS_AT: usize = std::mem::offset_of!(MIB_TCP6TABLE_OWNER_PID, table);
    fn count(&self) -> u32 {
        self.dwNumEntries
    }
}

impl Table for MIB_UDPTABLE_OWNER_PID {
    type Row = MIB_UDPROW_OWNER_PID;
    const ROWS_AT: usize = std::mem::offset_of!(MIB_UDPTABLE_OWNER_PID, table);
    fn count(&self) -> u32 {
        self.dwNumEntries
    }
}

impl Table for MIB_UDP6TABLE_OWNER_PID {
    type Row = MIB_UDP6ROW_OWNER_PID;
    const ROWS_AT: usize = std::mem::offset_of!(MIB_UDP6TABLE_OWNER_PID, table);
    fn count(&self) -> u32 {
        self.dwNumEntries
    }
}

/// The rows of a table `GetExtendedTcpTable`/`GetExtendedUdpTable` filled
/// in, copied out. The
/// count is clamped to what fits in the buffer, so a wrong count cannot
/// read past it.
fn rows<T: Table>(buffer: &[u64]) -> Vec<T::Row> {
    let bytes = std::mem::size_of_val(buffer);
    if bytes < std::mem::size_of::<T>() {
        return Vec::new();
    }
    // SAFETY: the buffer is at least one `T` long, 8-aligned, and was
    // filled by the table call for this table type.
    let count = unsafe { &*(buffer.as_ptr() as *const T) }.count() as usize;
    let fits = (bytes - T::ROWS_AT) / std::mem::size_of::<T::Row>();
    let count = count.min(fits);
    // SAFETY: `count` rows start at `T::ROWS_AT` inside the buffer (the
    // bound above), aligned as the table type lays them out (the buffer is
    // 8-aligned), and initialized (zeroed, then written by the call). They
    // are copied out before the buffer goes away.
    unsafe {
        let first = (buffer.as_ptr() as *const u8).add(T::ROWS_AT) as *const T::Row;
        std::slice::from_raw_parts(first, count).to_vec()
    }
}

/// A SID, kept inside the `TOKEN_USER` buffer it came in.
struct TokenUserSid(Vec<u64>);

impl TokenUserSid {
    fn sid(&self) -> *mut core::ffi::c_void {
        // SAFETY: the buffer starts with the TOKEN_USER that
        // GetTokenInformation wrote (see `token_user`); its SID pointer
        // points inside this same buffer.
        unsafe {
            (*(self.0.as_ptr() as *const windows_sys::Win32::Security::TOKEN_USER))
                .User
                .Sid
        }
    }

    fn equals(&self, other: &TokenUserSid) -> bool {
        // SAFETY: both are valid SIDs inside buffers alive for this call.
        unsafe { EqualSid(self.sid(), other.sid()) != 0 }
    }
}

/// The user SID of `pid`'s token.
fn process_user(pid: u32) -> io::Result<TokenUserSid> {
    // SAFETY: opening a process by id for a limited query; a null handle
    // is the error case, checked below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    let process = Owned(process);
    token_user(process.0)
}

/// The user SID this process runs as.
fn current_user() -> io::Result<TokenUserSid> {
    // SAFETY: the pseudo-handle of the current process needs no closing.
    token_user(unsafe { GetCurrentProcess() })
}

/// The `TOKEN_USER` of a process's token.
fn token_user(process: HANDLE) -> io::Result<TokenUserSid> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is a live process handle; on success `token` is a
    // new handle we own (closed by `Owned`).
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = Owned(token);
    let mut needed = 0u32;
    // SAFETY: a size query (null buffer, length 0) that only writes `needed`.
    unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 storage keeps the TOKEN_USER suitably aligned.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buffer` has at least `needed` writable bytes, as asked.
    let ok = unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            needed,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TokenUserSid(buffer))
}

/// Closes a handle on drop.
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_fields_decode_in_network_order() {
        // 127.0.0.1:8080 as the table stores it.
        let addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let port = u32::from(8080u16.to_be());
        assert_eq!(v4(addr, port), "127.0.0.1:8080".parse().unwrap());
        let mut v6addr = [0u8; 16];
        v6addr[15] = 1;
        assert_eq!(v6(v6addr, port), "[::1]:8080".parse().unwrap());
    }

    /// Whether this runs under Wine (its ntdll exports `wine_get_version`).
    fn under_wine() -> bool {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: NUL-terminated names; ntdll is always loaded, and a null
        // module or a missing export is checked, never called.
        unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }

    #[test]
    fn a_connection_of_this_process_is_its_own() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (peer, local) = (
            accepted.peer_addr().unwrap(),
            accepted.local_addr().unwrap(),
        );
        match owning_pid(peer, local) {
            Ok(pid) => {
                assert_eq!(pid, std::process::id());
                check_same_user(peer, local).unwrap();
            }
            // Wine 8 lists the row with owning PID 0: the owner is unknown,
            // which must refuse (fail closed). Real Windows names the PID.
            Err(Refusal::Lookup(Miss::NoOwner)) if under_wine() => {
                let err = check_same_user(peer, local).unwrap_err();
                assert!(matches!(err, Refusal::Lookup(Miss::NoOwner)), "{err}");
            }
            Err(e) => panic!("no owner for this process's own connection: {e}"),
        }
        drop(client);
    }

    #[test]
    fn a_udp_sender_of_this_process_is_its_own() {
        let forward = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (from, to) = (sender.local_addr().unwrap(), forward.local_addr().unwrap());
        match udp_owning_pid(from) {
            Ok(pid) => {
                assert_eq!(pid, std::process::id());
                check_udp_sender(from, to).unwrap();
            }
            // As for TCP: Wine lists no owning PID, which refuses.
            Err(Refusal::Lookup(Miss::NoOwner)) if under_wine() => {
                assert!(check_udp_sender(from, to).is_err());
            }
            Err(e) => panic!("no owner for this process's own UDP socket: {e}"),
        }
        let err = check_udp_sender("127.0.0.1:1".parse().unwrap(), to).unwrap_err();
        assert!(matches!(err, Refusal::Lookup(Miss::NotFound)), "{err}");
    }

    #[test]
    fn an_unknown_connection_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let err = check_same_user("127.0.0.1:1".parse().unwrap(), local).unwrap_err();
        assert!(matches!(err, Refusal::Lookup(Miss::NotFound)), "{err}");
    }
}
