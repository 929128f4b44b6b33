//! TCP MD5 signatures (RFC 2385): the key for one peer address on one socket.
//!
//! Owns the one `setsockopt(IPPROTO_TCP, TCP_MD5SIG)` weft makes. It is the crate's only unsafe
//! code, allowed here alone: no crate (libc aside, which only has the constant) wraps this
//! socket option (DEPENDENCIES.md). The key is set on the listening socket for every peer with
//! a password, before any connection is accepted, and on each outgoing socket before it
//! connects; the kernel then signs and checks every segment and silently drops unsigned or
//! wrongly signed ones (`nstat TcpExtTCPMD5Failure`).
//!
//! It also holds the other socket option no crate wraps, for the same reason:
//! `IP_MINTTL` / `IPV6_MINHOPCOUNT` ([`set_min_ttl`]), the receive half of GTSM (RFC 5082),
//! used by [`crate::ttl`].
//!
//! Must never: log the key, or be called with a key longer than [`MAX_KEY_LENGTH`] (the
//! configuration refuses those).

#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The longest key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY_LENGTH: usize = 80;

/// `struct tcp_md5sig` of `linux/tcp.h`.
#[repr(C)]
struct TcpMd5Sig {
    /// `struct __kernel_sockaddr_storage`: the peer's address (port ignored).
    address: [u8; 128],
    flags: u8,
    prefix_length: u8,
    key_length: u16,
    ifindex: i32,
    key: [u8; MAX_KEY_LENGTH],
}

/// Sets `key` for segments to and from `peer` on `socket`. `socket_is_ipv6`: the socket's
/// family; an IPv4 peer on an IPv6 socket is given as an IPv4-mapped address, as the kernel
/// expects for a dual-stack listener.
pub fn set_key(socket: BorrowedFd<'_>, peer: IpAddr, key: &[u8], socket_is_ipv6: bool) -> io::Result<()> {
    if key.len() > MAX_KEY_LENGTH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 key longer than 80 octets",
        ));
    }
    let mut signature = TcpMd5Sig {
        address: [0; 128],
        flags: 0,
        prefix_length: 0,
        key_length: u16::try_from(key.len()).unwrap_or(0),
        ifindex: 0,
        key: [0; MAX_KEY_LENGTH],
    };
    signature.key[..key.len()].copy_from_slice(key);
    let family = |value: libc::c_int| u16::try_from(value).unwrap_or(0).to_ne_bytes();
    match (peer, socket_is_ipv6) {
        (IpAddr::V4(v4), false) => {
            // struct sockaddr_in: family, port (0), address.
            signature.address[..2].copy_from_slice(&family(libc::AF_INET));
            signature.address[4..8].copy_from_slice(&v4.octets());
        }
        (peer, _) => {
            // struct sockaddr_in6: family, port (0), flow info (0), address, scope (0).
            let v6 = match peer {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            signature.address[..2].copy_from_slice(&family(libc::AF_INET6));
            signature.address[8..24].copy_from_slice(&v6.octets());
        }
    }
    let length = libc::socklen_t::try_from(std::mem::size_of::<TcpMd5Sig>()).unwrap_or(0);
    // SAFETY: `signature` is a fully initialised `struct tcp_md5sig` that outlives the call, and
    // `length` is its size; the kernel only reads it. The descriptor is borrowed, so it is open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            std::ptr::from_ref(&signature).cast::<libc::c_void>(),
            length,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the kernel drop every segment from `peer` that arrives on `socket` with a TTL (IPv4)
/// or hop limit (IPv6) below `minimum` (RFC 5082 §3; counted in `nstat TcpExtTCPMinTTLDrop`).
/// An IPv4 peer on a dual-stack socket is checked at the IPv4 level, as its packets are IPv4.
pub fn set_min_ttl(socket: BorrowedFd<'_>, peer: IpAddr, minimum: u8) -> io::Result<()> {
    let (level, name) = match peer {
        IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MINTTL),
        IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT),
    };
    let value = libc::c_int::from(minimum);
    let length = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(0);
    // SAFETY: `value` is an initialised int that outlives the call and `length` is its size;
    // the kernel only reads it. The descriptor is borrowed, so it is open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            length,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use socket2::{Domain, Protocol, Socket, Type};

    use super::*;

    #[test]
    fn the_struct_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn a_key_is_accepted_for_ipv4_and_ipv6_peers() {
        // An unbound socket: nothing is configured, no address is used.
        let v6 = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).expect("an IPv6 socket");
        let v4 = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("an IPv4 socket");
        let peer: IpAddr = "198.19.0.1".parse().expect("address");
        set_key(v4.as_fd(), peer, b"secret", false).expect("IPv4 peer on an IPv4 socket");
        set_key(v6.as_fd(), peer, b"secret", true).expect("IPv4 peer on a dual-stack socket");
        set_key(v6.as_fd(), "2001:db8::1".parse().expect("address"), b"secret", true).expect("IPv6 peer");
        let too_long = [b'k'; MAX_KEY_LENGTH + 1];
        assert!(set_key(v4.as_fd(), peer, &too_long, false).is_err());
    }

    #[test]
    fn a_minimum_ttl_is_accepted_for_ipv4_and_ipv6_peers() {
        let v6 = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).expect("an IPv6 socket");
        let v4 = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("an IPv4 socket");
        set_min_ttl(v4.as_fd(), "198.19.0.1".parse().expect("address"), 254).expect("IP_MINTTL");
        set_min_ttl(v6.as_fd(), "198.19.0.1".parse().expect("address"), 254).expect("IP_MINTTL, dual stack");
        set_min_ttl(v6.as_fd(), "2001:db8::1".parse().expect("address"), 254).expect("IPV6_MINHOPCOUNT");
    }
}
