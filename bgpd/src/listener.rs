//! Incoming TCP connections (RFC 4271 §8.2.1): the listening sockets for IPv4 and IPv6.
//!
//! Owns the listening sockets and handing each accepted connection to the session task of the
//! configured peer with that source address. By default one socket listens on every address
//! (`[::]:listen_port`, dual stack; `0.0.0.0` if the host has no IPv6); with listen addresses
//! (cluster mode's `bindMode: NodeIP`) one socket per address, IPv6 ones for IPv6 only, bound
//! with `IP_FREEBIND` so that an address not (yet) on an interface still binds. A connection
//! from an address that is not a configured peer is closed at once. Each socket carries the TCP
//! MD5 keys of the peers of the families it takes. Runs until the cancellation token fires.
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

/// Which peers a listening socket hears from: what its local address says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reach {
    /// The socket is an IPv6 one (an IPv4 peer's key is then given IPv4-mapped).
    ipv6_socket: bool,
    ipv4: bool,
    ipv6: bool,
}

impl Reach {
    fn of(local: SocketAddr) -> Self {
        match local.ip() {
            IpAddr::V4(_) => Self {
                ipv6_socket: false,
                ipv4: true,
                ipv6: false,
            },
            // `[::]` is the dual-stack socket; a specific IPv6 address is bound IPv6-only.
            IpAddr::V6(address) => Self {
                ipv6_socket: true,
                ipv4: address.is_unspecified(),
                ipv6: true,
            },
        }
    }

    fn takes(self, peer: IpAddr) -> bool {
        if peer.is_ipv4() { self.ipv4 } else { self.ipv6 }
    }
}

/// Binds the listening sockets on `port`: one on every address when `addresses` is empty,
/// else one on each of them; each with the TCP MD5 key of every peer it may hear from that
/// has one (set before listening, so no connection is ever accepted unsigned).
pub fn bind(addresses: &[IpAddr], port: u16, keys: &[(IpAddr, &[u8])]) -> io::Result<Vec<TcpListener>> {
    let sockets = if addresses.is_empty() {
        vec![bind_every_address(port)?]
    } else {
        addresses
            .iter()
            .map(|address| bind_address(*address, port))
            .collect::<io::Result<Vec<Socket>>>()?
    };
    sockets.into_iter().map(|socket| listen(socket, keys)).collect()
}

/// `[::]:port` dual stack, or `0.0.0.0:port` on a host without IPv6.
fn bind_every_address(port: u16) -> io::Result<Socket> {
    let dual = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
        Ok(socket)
    };
    match dual() {
        Ok(socket) => Ok(socket),
        Err(_) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
            Ok(socket)
        }
    }
}

/// `address:port` only; an IPv6 address for IPv6 only. `IP_FREEBIND`: the address may not be
/// on an interface yet (a node's BGP address configured after weft-bgpd starts).
fn bind_address(address: IpAddr, port: u16) -> io::Result<Socket> {
    let socket = match address {
        IpAddr::V4(_) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_freebind_v4(true)?;
            socket
        }
        IpAddr::V6(_) => {
            let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_only_v6(true)?;
            socket.set_freebind_v6(true)?;
            socket
        }
    };
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(address, port).into())?;
    Ok(socket)
}

/// Sets the keys of the peers the bound `socket` may hear from, and listens.
fn listen(socket: Socket, keys: &[(IpAddr, &[u8])]) -> io::Result<TcpListener> {
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("a listening socket without an IP address"))?;
    let reach = Reach::of(local);
    for (peer, key) in keys {
        if reach.takes(*peer) {
            md5::set_key(socket.as_fd(), *peer, key, reach.ipv6_socket)?;
        }
    }
    ttl::apply_to_listener(&socket, reach.ipv6_socket)?;
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
    let reach = listener.local_addr().map_or(
        Reach {
            ipv6_socket: false,
            ipv4: true,
            ipv6: false,
        },
        Reach::of,
    );
    let mut applied: HashMap<IpAddr, Vec<u8>> = keys.into_iter().filter(|(peer, _)| reach.takes(*peer)).collect();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            changed = peers.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = peers.borrow_and_update().clone();
                update_keys(&listener, reach, &mut applied, &current);
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
fn update_keys(listener: &TcpListener, reach: Reach, applied: &mut HashMap<IpAddr, Vec<u8>>, peers: &ListenerPeers) {
    let ipv6 = reach.ipv6_socket;
    let wanted: HashMap<IpAddr, Vec<u8>> = peers
        .iter()
        .filter_map(|(address, peer)| Some((*address, peer.key.clone()?)))
        .filter(|(address, _)| reach.takes(*address))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weft_topology_tests::{Netns, require_netns};

    use super::*;

    /// Runs `test` on a runtime of its own inside a new network namespace (lo up, 198.19.0.1
    /// on it), so that no socket of the test lives in the machine's own namespace.
    fn in_netns(label: &str, test: impl std::future::Future<Output = ()> + Send) {
        let Some(_support) = require_netns() else { return };
        let netns = Netns::new(label).unwrap();
        netns.ip(&["addr", "add", "198.19.0.1/32", "dev", "lo"]).unwrap();
        netns
            .within(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(test)
            })
            .unwrap();
    }

    #[test]
    fn listen_addresses_get_a_socket_each_and_an_absent_one_still_binds() {
        in_netns("listen-addrs", async {
            // 198.18.0.1 and 2001:db8::1 are on no interface here: IP_FREEBIND binds them anyway.
            let addresses: Vec<IpAddr> = ["198.19.0.1", "198.18.0.1", "2001:db8::1"]
                .iter()
                .map(|text| text.parse().unwrap())
                .collect();
            let listeners = bind(&addresses, 0, &[]).unwrap();
            let locals: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
            let bound: Vec<IpAddr> = locals.iter().map(SocketAddr::ip).collect();
            assert_eq!(bound, addresses);
            let reach: Vec<Reach> = locals.iter().map(|local| Reach::of(*local)).collect();
            assert!(reach[0].takes("198.19.0.2".parse().unwrap()));
            assert!(!reach[0].takes("2001:db8::2".parse().unwrap()));
            assert!(reach[2].takes("2001:db8::2".parse().unwrap()));
            assert!(!reach[2].takes("198.19.0.2".parse().unwrap()), "IPv6 only");
            // The one on an interface accepts.
            let connect = tokio::net::TcpStream::connect(locals[0]);
            let (accepted, connected) = tokio::join!(listeners[0].accept(), connect);
            assert_eq!(accepted.unwrap().1.ip(), connected.unwrap().local_addr().unwrap().ip());
        });
    }

    #[test]
    fn every_address_is_one_dual_stack_socket() {
        in_netns("listen-any", async {
            let listeners = bind(&[], 0, &[]).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(listeners.len(), 1);
            let reach = Reach::of(listeners[0].local_addr().unwrap());
            assert!(reach.takes("198.19.0.2".parse().unwrap()));
        });
    }
}
