//! Probes of a local server's port: connect, and whether it answers `PING`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

pub(super) fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
}

/// Whether the server answers `PING` with `+PONG` (not an error such as `-LOADING`).
pub(super) fn pong(port: u16) -> bool {
    let Ok(mut s) = connect(port, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// Sends a raw RESP `PING`; Ok if the reply starts like a RESP status or error.
pub(super) fn ping(port: u16) -> io::Result<()> {
    let mut s = connect(port, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    match buf[..n].first() {
        Some(b'+' | b'-') => Ok(()),
        _ => Err(io::Error::other("unexpected reply to PING")),
    }
}
