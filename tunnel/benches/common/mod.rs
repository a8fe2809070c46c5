//! What both tunnel benches need: an upload sink to send through tunnels.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

/// Target that reads messages (u64 LE length, then that many bytes) and
/// answers each with one byte once it has read all of it, one thread per
/// connection.
pub fn sink_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 256 * 1024];
                let mut header = [0u8; 8];
                while s.read_exact(&mut header).is_ok() {
                    let mut left = usize::try_from(u64::from_le_bytes(header)).unwrap();
                    while left > 0 {
                        let want = left.min(buf.len());
                        match s.read(&mut buf[..want]) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left -= n,
                        }
                    }
                    if s.write_all(&[1]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
