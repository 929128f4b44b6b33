//! Outgoing TCP connections to a peer (RFC 4271 §8.2.1: port 179).
//!
//! Owns opening one connection with a deadline and the socket options weft sets on every BGP
//! connection (no Nagle delay: a KEEPALIVE must not wait behind an acknowledgement; the TCP MD5
//! key, set before the SYN). The session
//! task decides when to connect; this module only connects.
//!
//! Must never: retry (the FSM's ConnectRetry timer does), or read or write BGP messages.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::md5;
use crate::ttl::Ttl;

/// Opens a connection to `remote`, signed with the TCP MD5 `key` if given (RFC 2385), with
/// the `ttl` of its peer ([`crate::ttl`]), from the local address `source` if given, failing
/// after `deadline`.
pub async fn connect(
    remote: SocketAddr,
    deadline: Duration,
    key: Option<&[u8]>,
    ttl: Ttl,
    source: Option<IpAddr>,
) -> io::Result<TcpStream> {
    let socket = match remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    ttl.apply(&socket, remote.ip())?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    if let Some(key) = key {
        md5::set_key(socket.as_fd(), remote.ip(), key, remote.is_ipv6())?;
    }
    match tokio::time::timeout(deadline, socket.connect(remote)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connection attempt timed out")),
    }
}
