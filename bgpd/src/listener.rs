//! Incoming TCP connections (RFC 4271 §8.2.1): one listening socket for IPv4 and IPv6.
//!
//! Owns the listening socket (`[::]:listen_port`, dual stack; `0.0.0.0` if the host has no
//! IPv6) and handing each accepted connection to the session task of the configured peer with
//! that source address. A connection from an address that is not a configured peer is closed at
//! once. Runs until the cancellation token fires.
//!
//! Must never: read from a connection (the session task does), or decide about collisions.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::md5;
use crate::peers::ListenerPeers;
use crate::ttl;

/// How many connections may wait in the kernel's accept queue.
const BACKLOG: i32 = 64;

/// Binds the listening socket on `port`, with the TCP MD5 key of every peer that has one
/// (set before listening, so no connection is ever accepted unsigned).
pub fn bind(port: u16, keys: &[(IpAddr, &[u8])]) -> io::Result<TcpListener> {
    let dual = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
        Ok(socket)
    };
    let (socket, ipv6) = match dual() {
        Ok(socket) => (socket, true),
        Err(_) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
            (socket, false)
        }
    };
    for (peer, key) in keys {
        if !ipv6 && peer.is_ipv6() {
            continue; // no IPv6 here: that peer cannot connect anyway
        }
        md5::set_key(socket.as_fd(), *peer, key, ipv6)?;
    }
    ttl::apply_to_listener(&socket, ipv6)?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until cancelled, passing each to its peer's session task. `peers`
/// changes on a configuration reload; `keys` are the TCP MD5 keys [`bind`] set, and the keys
/// of peers added or removed later are set or deleted as they come and go.
pub async fn run(
    listener: TcpListener,
    mut peers: watch::Receiver<ListenerPeers>,
    keys: Vec<(IpAddr, Vec<u8>)>,
    cancel: CancellationToken,
) {
    let mut applied: HashMap<IpAddr, Vec<u8>> = keys.into_iter().collect();
    let ipv6 = listener.local_addr().is_ok_and(|address| address.is_ipv6());
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            changed = peers.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = peers.borrow_and_update().clone();
                update_keys(&listener, ipv6, &mut applied, &current);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let address = remote.ip().to_canonical();
        let Some(session) = peers.borrow().get(&address).map(|peer| peer.inbound.clone()) else {
            tracing::info!(%address, "connection from an address that is not a configured peer closed");
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%address, %error, "cannot disable Nagle on an accepted connection");
        }
        // A full queue means the session task has connections it has not looked at yet: this
        // one is a collision it would refuse anyway.
        if session.try_send(stream).is_err() {
            tracing::info!(%address, "connection refused: the session has one pending");
        }
    }
}

/// Sets the TCP MD5 keys of `peers` on the listening socket and deletes those of peers gone.
fn update_keys(listener: &TcpListener, ipv6: bool, applied: &mut HashMap<IpAddr, Vec<u8>>, peers: &ListenerPeers) {
    let wanted: HashMap<IpAddr, Vec<u8>> = peers
        .iter()
        .filter_map(|(address, peer)| Some((*address, peer.key.clone()?)))
        .filter(|(address, _)| ipv6 || address.is_ipv4())
        .collect();
    let gone: Vec<IpAddr> = applied.keys().filter(|a| !wanted.contains_key(*a)).copied().collect();
    for address in gone {
        applied.remove(&address);
        // An empty key deletes the peer's key (linux/tcp.h).
        if let Err(error) = md5::set_key(listener.as_fd(), address, &[], ipv6) {
            tracing::warn!(peer = %address, %error, "cannot delete the TCP MD5 key on the listener");
        }
    }
    for (address, key) in wanted {
        if applied.get(&address) == Some(&key) {
            continue;
        }
        match md5::set_key(listener.as_fd(), address, &key, ipv6) {
            Ok(()) => {
                applied.insert(address, key);
            }
            Err(error) => tracing::warn!(peer = %address, %error, "cannot set the TCP MD5 key on the listener"),
        }
    }
}
