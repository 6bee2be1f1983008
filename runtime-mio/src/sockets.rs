//! Sockets that share the listening port: the listener, and the dials of hole punches, which
//! must leave from the port the peer was told so that a TCP simultaneous open can meet them.
//! Both set SO_REUSEADDR and (on Unix) SO_REUSEPORT, which Linux requires of every socket bound
//! to a port a listener holds.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

fn shared(family: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(family), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    Ok(s)
}

/// A listener at `addr` that punch dials can share. A plain bind first, so that a port another
/// process holds is refused as before (SO_REUSEPORT alone would let two nodes of one user share
/// it); the port it got is then bound again, shared.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let port = TcpListener::bind(addr)?.local_addr()?.port();
    let s = shared(addr)?;
    s.bind(&SocketAddr::new(addr.ip(), port).into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A socket bound to local port `port` (the listener's), ready to dial `to`.
pub fn punch_socket(to: SocketAddr, port: u16) -> io::Result<Socket> {
    let s = shared(to)?;
    let local: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, port).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, port).into(),
    };
    s.bind(&local.into())?;
    Ok(s)
}
