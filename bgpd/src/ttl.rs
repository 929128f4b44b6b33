//! The TTL (IPv4) or hop limit (IPv6) of a session's packets: eBGP to a directly connected
//! peer, eBGP multihop, and GTSM (RFC 5082).
//!
//! | peer | sent with | accepted from |
//! | --- | --- | --- |
//! | eBGP | 1 (the peer is on a shared link, as BIRD, FRR and GoBGP default to) | any |
//! | eBGP, `multihop: N` | N | any |
//! | iBGP | 64 | any |
//! | `ttl_security: true` | 255 | at least 254 (RFC 5082 §3: at most one hop away) |
//!
//! Set on every outgoing socket before it connects, and on every accepted connection before
//! its first byte is read; the listening socket sends its SYN-ACKs with 255, so that a GTSM peer
//! takes them, and the accepted socket then gets its peer's values.
//!
//! Must never: decide anything but these two numbers.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use socket2::SockRef;

use crate::config::PeerConfig;
use crate::md5;

/// The TTL GTSM sends with (RFC 5082 §3).
pub const GTSM_TTL: u8 = 255;
/// The lowest TTL GTSM accepts: the peer is at most one hop away.
pub const GTSM_MINIMUM: u8 = 254;
/// The TTL of iBGP sessions (Linux's default).
const IBGP_TTL: u8 = 64;

/// What one peer's packets leave with and must arrive with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// TTL or hop limit of what we send.
    pub send: u8,
    /// The lowest TTL or hop limit accepted, if checked (GTSM).
    pub minimum: Option<u8>,
}

impl Ttl {
    /// The values for `peer`, a peer of AS `local_asn`.
    pub fn for_peer(peer: &PeerConfig, local_asn: u32) -> Self {
        if peer.ttl_security {
            return Self {
                send: GTSM_TTL,
                minimum: Some(GTSM_MINIMUM),
            };
        }
        let send = match peer.multihop {
            Some(hops) => hops,
            None if peer.asn == local_asn => IBGP_TTL,
            None => 1,
        };
        Self { send, minimum: None }
    }

    /// Sets both on `socket`, a connection to or from `peer`.
    pub fn apply(self, socket: &impl AsFd, peer: IpAddr) -> io::Result<()> {
        let socket = SockRef::from(socket);
        match peer {
            IpAddr::V4(_) => socket.set_ttl_v4(u32::from(self.send))?,
            IpAddr::V6(_) => socket.set_unicast_hops_v6(u32::from(self.send))?,
        }
        if let Some(minimum) = self.minimum {
            md5::set_min_ttl(socket.as_fd(), peer, minimum)?;
        }
        Ok(())
    }
}

/// The listening socket sends its SYN-ACKs with the GTSM TTL (both families on a dual-stack
/// socket); accepted connections then get their peer's values.
pub fn apply_to_listener(socket: &impl AsFd, ipv6: bool) -> io::Result<()> {
    let socket = SockRef::from(socket);
    socket.set_ttl_v4(u32::from(GTSM_TTL))?;
    if ipv6 {
        socket.set_unicast_hops_v6(u32::from(GTSM_TTL))?;
    }
    Ok(())
}
