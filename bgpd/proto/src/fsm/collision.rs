//! BGP connection collision detection (RFC 4271 §6.8, RFC 6286 §2.3), as a pure decision.
//!
//! When two connections to the same peer both reach OpenSent or OpenConfirm, the one initiated
//! by the speaker with the higher BGP Identifier survives (RFC 4271 §6.8, comparing the
//! identifiers as unsigned 4-octet integers). With equal identifiers on an eBGP session, the one
//! initiated by the speaker with the larger AS number survives (RFC 6286 §2.3). The driver owns
//! both connections; it asks [`resolve_collision`] which to keep and sends a Cease Connection
//! Collision Resolution ([`crate::notification::CeaseSubcode::ConnectionCollisionResolution`])
//! on the other.
//!
//! Must never: look at anything but identifiers and AS numbers.

use std::net::Ipv4Addr;

/// Which connection of a colliding pair to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keep {
    /// The connection we opened.
    LocallyInitiated,
    /// The connection the peer opened.
    RemotelyInitiated,
}

/// One speaker's identity for collision resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Speaker {
    /// BGP Identifier.
    pub router_id: Ipv4Addr,
    /// AS number.
    pub asn: u32,
}

/// Decides which connection survives a collision. `None` when both identifiers and AS numbers
/// are equal, which [`super::open_check::check_open`] already rejects as a Bad BGP Identifier.
pub fn resolve_collision(local: Speaker, remote: Speaker) -> Option<Keep> {
    let (local_id, remote_id) = (u32::from(local.router_id), u32::from(remote.router_id));
    let local_wins = if local_id != remote_id {
        local_id > remote_id
    } else if local.asn != remote.asn {
        local.asn > remote.asn
    } else {
        return None;
    };
    Some(if local_wins {
        Keep::LocallyInitiated
    } else {
        Keep::RemotelyInitiated
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker(id: [u8; 4], asn: u32) -> Speaker {
        Speaker {
            router_id: Ipv4Addr::from(id),
            asn,
        }
    }

    #[test]
    fn collision_keeps_the_connection_initiated_by_the_higher_identifier() {
        let low = speaker([198, 19, 0, 1], 65000);
        let high = speaker([198, 19, 0, 2], 65001);
        assert_eq!(resolve_collision(high, low), Some(Keep::LocallyInitiated));
        assert_eq!(resolve_collision(low, high), Some(Keep::RemotelyInitiated));
    }

    #[test]
    fn identifiers_compare_as_unsigned_integers() {
        let small = speaker([9, 0, 0, 1], 65000);
        let large = speaker([200, 0, 0, 1], 65000);
        assert_eq!(resolve_collision(large, small), Some(Keep::LocallyInitiated));
    }

    #[test]
    fn equal_identifiers_on_ebgp_keep_the_connection_of_the_larger_as() {
        let ours = speaker([198, 19, 0, 1], 65001);
        let theirs = speaker([198, 19, 0, 1], 65000);
        assert_eq!(resolve_collision(ours, theirs), Some(Keep::LocallyInitiated));
        assert_eq!(resolve_collision(ours, ours), None);
    }
}
