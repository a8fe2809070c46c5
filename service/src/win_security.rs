//! Windows security for the device service and the agent: named pipes with
//! an explicit DACL ([`create_pipe`]), files only LocalSystem and
//! administrators can open ([`protect_path`], for the software key), and
//! who is at the other end of a pipe ([`peer_user`]): the account (SID) of the
//! process that connected, or of the process that serves a pipe a client
//! opened. The peer check is the per-connection proof, the Windows twin of
//! the Unix socket's `SO_PEERCRED` check, so a squatter's pipe or another
//! user's client is refused by identity rather than by ACLs alone.
//!
//! The Win32 calls need `unsafe`; on Windows they live here, except CNG's
//! NCrypt calls, which stay with their key backend (`keys::ncrypt`).
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::os::windows::io::RawHandle;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    ConvertStringSidToSidW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, EqualSid, GetTokenInformation, PROTECTED_DACL_SECURITY_INFORMATION,
    SECURITY_ATTRIBUTES, SetFileSecurityW, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// Which end of the pipe to identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The process that connected (a server asks about its client).
    Client,
    /// The process that created the pipe (a client asks who serves it).
    Server,
}

/// A user's SID, as the bytes of a `SID` structure.
#[derive(Clone, PartialEq, Eq)]
pub struct Sid(Vec<u8>);

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for Sid {
    /// The `S-1-5-21-…` form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: self.0 holds a complete SID copied from a TOKEN_USER or
        // made by ConvertStringSidToSidW; on success `text` is a
        // NUL-terminated LocalAlloc'd string we read and then free once.
        let ok = unsafe { ConvertSidToStringSidW(self.0.as_ptr() as *mut _, &mut text) };
        if ok == 0 || text.is_null() {
            return f.write_str("S-?");
        }
        // SAFETY: `text` is NUL-terminated (see above); we stop at the NUL.
        let s = unsafe {
            let mut len = 0;
            while *text.add(len) != 0 {
                len += 1;
            }
            String::from_utf16_lossy(std::slice::from_raw_parts(text, len))
        };
        // SAFETY: allocated by ConvertSidToStringSidW with LocalAlloc.
        unsafe { LocalFree(text.cast()) };
        f.write_str(&s)
    }
}

impl Sid {
    /// Parses the `S-1-…` form (for tests and well-known SIDs).
    pub fn parse(text: &str) -> std::io::Result<Sid> {
        let wide: Vec<u16> = text.encode_utf16().chain(Some(0)).collect();
        let mut sid = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; on success `sid` points to a
        // LocalAlloc'd SID that we copy and free once.
        let ok = unsafe { ConvertStringSidToSidW(wide.as_ptr(), &mut sid) };
        if ok == 0 || sid.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a valid SID from the call above.
        let bytes = unsafe { sid_bytes(sid) };
        // SAFETY: allocated by ConvertStringSidToSidW with LocalAlloc.
        unsafe { LocalFree(sid) };
        Ok(Sid(bytes))
    }
}

/// Copies a SID's bytes (its length from its sub-authority count).
///
/// # Safety
/// `sid` must point to a valid SID.
unsafe fn sid_bytes(sid: *mut core::ffi::c_void) -> Vec<u8> {
    // A SID is 8 bytes of header (revision, sub-authority count, 6-byte
    // authority) and 4 bytes per sub-authority.
    // SAFETY: the caller guarantees a valid SID, whose byte 1 is the count.
    let count = unsafe { *(sid as *const u8).add(1) } as usize;
    let len = 8 + 4 * count;
    // SAFETY: a valid SID is exactly `len` bytes long.
    unsafe { std::slice::from_raw_parts(sid as *const u8, len) }.to_vec()
}

/// Closes a handle on drop.
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed exactly once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The user SID of the process's token.
fn token_user(process: HANDLE) -> std::io::Result<Sid> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is a live process handle; on success `token` is a
    // new handle we own.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let token = Owned(token);
    let mut needed = 0u32;
    // SAFETY: a size query (null buffer, length 0) that only writes `needed`.
    unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // u64 storage keeps the TOKEN_USER suitably aligned.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buffer` has at least `needed` bytes, as the call asked.
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
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID
    // pointer points inside the same buffer, alive until we return.
    let sid = unsafe {
        let user = &*(buffer.as_ptr() as *const TOKEN_USER);
        sid_bytes(user.User.Sid)
    };
    Ok(Sid(sid))
}

/// The user SID this process runs as.
pub fn current_user() -> std::io::Result<Sid> {
    // SAFETY: the pseudo-handle of the current process needs no closing.
    token_user(unsafe { GetCurrentProcess() })
}

/// The user SID of the process at `end` of the pipe `pipe`.
pub fn peer_user(pipe: RawHandle, end: End) -> std::io::Result<Sid> {
    let mut pid = 0u32;
    // SAFETY: `pipe` is a live named-pipe handle borrowed from its owner;
    // the call only writes `pid`.
    let ok = unsafe {
        match end {
            End::Client => GetNamedPipeClientProcessId(pipe as HANDLE, &mut pid),
            End::Server => GetNamedPipeServerProcessId(pipe as HANDLE, &mut pid),
        }
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: opening a process by id for a limited query; a null handle
    // is the error case, checked below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let process = Owned(process);
    token_user(process.0)
}

/// LocalSystem, the account the device service runs as.
pub const LOCAL_SYSTEM: &str = "S-1-5-18";

/// A security descriptor made from SDDL text, freed on drop.
#[derive(Debug)]
pub struct SecurityDescriptor(*mut core::ffi::c_void);

// SAFETY: the descriptor is an immutable LocalAlloc'd block owned by this
// value; Windows only reads it, from any thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above: shared references only read it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Parses SDDL (`D:P(A;;GA;;;SY)…`).
    pub fn from_sddl(sddl: &str) -> std::io::Result<Self> {
        let wide: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut descriptor = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; on success `descriptor` is a
        // LocalAlloc'd block this value owns and frees once.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || descriptor.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(descriptor))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

/// Creates a pipe instance at `path` with `options`, whose DACL is
/// `descriptor` instead of the creator's default.
pub fn create_pipe(
    options: &ServerOptions,
    path: impl AsRef<OsStr>,
    descriptor: &SecurityDescriptor,
) -> std::io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: u32::try_from(std::mem::size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(u32::MAX),
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor
    // outlives the call (borrowed from `descriptor`); CreateNamedPipeW only
    // reads it.
    unsafe { options.create_with_security_attributes_raw(path, (&raw mut attributes).cast()) }
}

/// A DACL for secrets: LocalSystem and administrators only, nothing
/// inherited.
pub const PRIVATE_SDDL: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// Replaces the DACL of the file or directory at `path` with
/// `descriptor`'s, protected from inheritance: enforced at every use
/// rather than checked, so a loosened ACL is tightened again.
pub fn protect_path(
    path: &std::path::Path,
    descriptor: &SecurityDescriptor,
) -> std::io::Result<()> {
    use std::os::windows::ffi::OsStrExt as _;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    // SAFETY: `wide` is a NUL-terminated path and the descriptor is a valid
    // self-relative descriptor owned by `descriptor`; the call only reads
    // both.
    let ok = unsafe {
        SetFileSecurityW(
            wide.as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            descriptor.0,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// ERROR_PIPE_BUSY: every instance of the pipe is taken.
const ERROR_PIPE_BUSY: i32 = 231;

/// Opens the client end of the pipe at `path`, retrying for about two
/// seconds while every instance is busy (a server creates the next one
/// only after accepting a client).
pub async fn open_pipe_client(
    path: impl AsRef<OsStr>,
) -> std::io::Result<tokio::net::windows::named_pipe::NamedPipeClient> {
    let mut busy = 0;
    loop {
        match tokio::net::windows::named_pipe::ClientOptions::new().open(path.as_ref()) {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && busy < 40 => {
                busy += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Whether two SIDs are the same account.
pub fn same(a: &Sid, b: &Sid) -> bool {
    // SAFETY: both hold complete SIDs; EqualSid only reads them.
    unsafe { EqualSid(a.0.as_ptr() as *mut _, b.0.as_ptr() as *mut _) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_parse_print_and_compare() {
        let system = Sid::parse("S-1-5-18").unwrap();
        assert_eq!(system.to_string(), "S-1-5-18");
        let me = current_user().unwrap();
        assert!(me.to_string().starts_with("S-1-"), "{me}");
        assert!(same(&me, &me.clone()));
        assert!(!same(&me, &system) || me.to_string() == "S-1-5-18");
        assert!(Sid::parse("not a sid").is_err());
    }
}
