//! OPEN message checks of RFC 4271 §6.2 that need the session's configuration.
//!
//! Owns: version, the peer's AS against the configured one (or any, for dynamic peers; RFC 6793
//! §4.1 for AS_TRANS), the BGP Identifier (a non-zero unicast address, RFC 4271 §6.2; for iBGP
//! not our own, RFC 6286 §2.2). The hold time and capabilities are checked by
//! [`crate::capabilities::negotiate`], which runs after this.
//!
//! Must never: look at anything but the two OPENs and the configuration.

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::capabilities::BgpCapability;
use netgauze_bgp_pkt::open::BgpOpenMessage;

use crate::capabilities::AS_TRANS;
use crate::codec::BGP_VERSION;
use crate::notification::{Notification, open};

/// Checks the peer's OPEN against what we expect of it.
pub fn check_open(
    received: &BgpOpenMessage,
    expected_asn: Option<u32>,
    local_asn: u32,
    local_router_id: Ipv4Addr,
) -> Result<(), Notification> {
    if received.version() != BGP_VERSION {
        return Err(Notification::open_message(
            open::UNSUPPORTED_VERSION_NUMBER,
            u16::from(BGP_VERSION).to_be_bytes().to_vec(),
        ));
    }
    let has_four_octet_as = received
        .capabilities()
        .into_iter()
        .any(|c| matches!(c, BgpCapability::FourOctetAs(_)));
    // RFC 6793 §4.1: AS_TRANS is a placeholder; a speaker without the capability cannot be it.
    let peer_asn = received.my_asn4();
    let bad_peer_as = (received.my_as() == AS_TRANS && !has_four_octet_as)
        || peer_asn == 0
        || expected_asn.is_some_and(|expected| expected != peer_asn);
    if bad_peer_as {
        return Err(Notification::open_message(
            open::BAD_PEER_AS,
            received.my_as().to_be_bytes().to_vec(),
        ));
    }
    let id = received.bgp_id();
    let internal = peer_asn == local_asn;
    if id.is_unspecified() || id.is_multicast() || id.is_broadcast() || (internal && id == local_router_id) {
        return Err(Notification::open_message(open::BAD_BGP_IDENTIFIER, Vec::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use netgauze_bgp_pkt::capabilities::FourOctetAsCapability;
    use netgauze_bgp_pkt::open::BgpOpenMessageParameter;

    use super::*;

    const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

    fn open_from(my_as: u16, id: Ipv4Addr, capabilities: Vec<BgpCapability>) -> BgpOpenMessage {
        BgpOpenMessage::new(
            my_as,
            90,
            id,
            vec![BgpOpenMessageParameter::new_capabilities(capabilities)],
        )
    }

    #[test]
    fn peer_with_an_unexpected_as_is_rejected_with_bad_peer_as() {
        let open = open_from(65009, Ipv4Addr::new(198, 19, 0, 1), vec![]);
        let notification = check_open(&open, Some(65000), 65001, LOCAL_ID).expect_err("wrong AS");
        assert_eq!(notification.subcode, open::BAD_PEER_AS);
        assert!(
            check_open(&open, None, 65001, LOCAL_ID).is_ok(),
            "a dynamic peer accepts any AS"
        );
    }

    #[test]
    fn as_trans_without_the_four_octet_capability_is_a_bad_peer_as() {
        let open = open_from(AS_TRANS, Ipv4Addr::new(198, 19, 0, 1), vec![]);
        assert!(check_open(&open, None, 65001, LOCAL_ID).is_err());
        let open = open_from(
            AS_TRANS,
            Ipv4Addr::new(198, 19, 0, 1),
            vec![BgpCapability::FourOctetAs(FourOctetAsCapability::new(4_200_000_000))],
        );
        assert!(check_open(&open, Some(4_200_000_000), 65001, LOCAL_ID).is_ok());
    }

    #[test]
    fn internal_peer_with_our_identifier_is_a_bad_bgp_identifier() {
        let open = open_from(65001, LOCAL_ID, vec![]);
        let notification = check_open(&open, Some(65001), 65001, LOCAL_ID).expect_err("same id");
        assert_eq!(notification.subcode, open::BAD_BGP_IDENTIFIER);
        let external = open_from(65000, LOCAL_ID, vec![]);
        assert!(
            check_open(&external, Some(65000), 65001, LOCAL_ID).is_ok(),
            "RFC 6286 allows it on eBGP"
        );
    }
}
