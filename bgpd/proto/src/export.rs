//! Import and export decisions for one peer: policy and the attributes a peer is sent
//! (RFC 4271 §5.1, §9.1.3, §9.2; RFC 8212).
//!
//! Owns [`Policy`] (`accept`, `reject` or a [`NamedPolicy`]), its RFC 8212 default (an eBGP
//! session neither accepts nor sends anything without an explicit policy; iBGP defaults to
//! accept), [`import`] (AS_PATH loop detection, §9.1.2, then the policy) and
//! [`export_attributes`]: which best path a peer may see and with what attributes —
//! - never back to the peer it came from, never an iBGP-learned path to an iBGP peer (§9.2)
//!   unless we reflect it ([`crate::route_reflection`], RFC 4456);
//! - to eBGP: our AS prepended (§5.1.2), NEXT_HOP set to our address on the session (§5.1.3),
//!   or, with [`ExportSession::next_hop_keep`], a learned route's NEXT_HOP passed on unchanged
//!   (§5.1.3 lets a speaker do so when the next hop is reachable to the peer: the operator says
//!   it is, as with BIRD's `next hop keep`), LOCAL_PREF dropped (§5.1.5), MULTI_EXIT_DISC not
//!   passed on to another AS (§5.1.4);
//! - to iBGP: AS_PATH unchanged, LOCAL_PREF set (§5.1.5), NEXT_HOP kept for learned routes and
//!   set to our address for originated ones.
//!
//! Must never: do I/O or look at anything but the path, the peer and the session's addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::policy::NamedPolicy;
use crate::route::{Path, PathAttributes, PathSource, PeerInfo, Prefix};
use crate::route_reflection::{may_reflect, originator, reflected};

/// An import or export policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Let every route through.
    Accept,
    /// Let nothing through.
    Reject,
    /// A named policy of the configuration ([`crate::policy`]).
    Named(Arc<NamedPolicy>),
}

impl Policy {
    /// The policy when none is configured (RFC 8212 §3: reject for eBGP).
    pub const fn default_for(internal: bool) -> Self {
        if internal { Self::Accept } else { Self::Reject }
    }
}

/// One session as export sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSession {
    /// Our AS.
    pub local_asn: u32,
    /// The peer.
    pub peer: PeerInfo,
    /// Our IPv4 address for NEXT_HOP self, if the session has one.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Our IPv6 address for NEXT_HOP self, if the session has one.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// The export policy.
    pub policy: Policy,
    /// Our cluster id when we reflect routes (RFC 4456: some iBGP peer is our client); `None`:
    /// no iBGP-learned route goes to an iBGP peer.
    pub cluster_id: Option<Ipv4Addr>,
    /// eBGP: send learned routes with their own NEXT_HOP instead of ours (originated routes,
    /// and a next hop of the other family, still get ours). No effect on iBGP, where learned
    /// routes keep their NEXT_HOP anyway.
    pub next_hop_keep: bool,
    /// The peer takes IPv4 routes with an IPv6 next hop (RFC 8950, negotiated): on a session
    /// without an IPv4 address they carry our IPv6 one.
    pub extended_next_hop: bool,
}

impl ExportSession {
    /// Whether the peer can be sent a route to `prefix` through `next_hop`: a next hop of the
    /// prefix's family, or an IPv6 one for an IPv4 prefix with extended next hop.
    fn can_carry(&self, prefix: &Prefix, next_hop: IpAddr) -> bool {
        match (prefix, next_hop) {
            (Prefix::V4(_), IpAddr::V4(_)) | (Prefix::V6(_), IpAddr::V6(_)) => true,
            (Prefix::V4(_), IpAddr::V6(_)) => self.extended_next_hop,
            (Prefix::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

/// The attributes with which a route from a peer enters the Loc-RIB, or `None` if it may not:
/// our AS is in its AS_PATH (loop detection, RFC 4271 §9.1.2) or the import policy rejects it.
/// From an eBGP peer a LOCAL_PREF is dropped first (§5.1.5), so that only our policy sets one.
pub fn import(
    policy: &Policy,
    local_asn: u32,
    external: bool,
    prefix: &Prefix,
    attributes: &Arc<PathAttributes>,
) -> Option<Arc<PathAttributes>> {
    if attributes.as_path.contains(local_asn) {
        return None;
    }
    let received = if external && attributes.local_pref.is_some() {
        Arc::new(PathAttributes {
            local_pref: None,
            ..(**attributes).clone()
        })
    } else {
        attributes.clone()
    };
    match policy {
        Policy::Accept => Some(received),
        Policy::Reject => None,
        Policy::Named(named) => named.apply(prefix, &received, local_asn).map(Arc::new),
    }
}

/// The attributes to advertise `best` (the best path to `prefix`) with on `session`, or `None`
/// if the peer must not see it (it is then withdrawn if it was sent).
pub fn export_attributes(prefix: &Prefix, best: &Path, session: &ExportSession) -> Option<Arc<PathAttributes>> {
    let sent = default_export(prefix, best, session)?;
    match &session.policy {
        Policy::Accept => Some(sent),
        Policy::Reject => None,
        Policy::Named(named) => {
            let mut sent = named.apply(prefix, &sent, session.local_asn)?;
            if !session.peer.internal {
                sent.local_pref = None; // never to another AS (§5.1.5), whatever the policy set
            }
            Some(Arc::new(sent))
        }
    }
}

/// What the peer is sent before export policy.
fn default_export(prefix: &Prefix, best: &Path, session: &ExportSession) -> Option<Arc<PathAttributes>> {
    if session.policy == Policy::Reject {
        return None;
    }
    let mut reflect = None;
    if let PathSource::Peer(from) = best.source {
        if from.address == session.peer.address {
            return None;
        }
        if from.internal && session.peer.internal {
            // §9.2: never iBGP to iBGP, unless we reflect it (RFC 4456 §6), and then never to
            // the router that originated it.
            let cluster_id = session.cluster_id?;
            if !may_reflect(&from, &session.peer) || originator(&best.attributes, &from) == session.peer.router_id {
                return None;
            }
            reflect = Some((from, cluster_id));
        }
    }
    let self_next_hop = match prefix {
        Prefix::V4(_) => session.next_hop_v4.map(IpAddr::V4).or_else(|| {
            session
                .next_hop_v6
                .filter(|_| session.extended_next_hop)
                .map(IpAddr::V6)
        }),
        Prefix::V6(_) => session.next_hop_v6.map(IpAddr::V6),
    };
    let attributes = &best.attributes;
    if session.peer.internal {
        let next_hop = match best.source {
            PathSource::Peer(_) if session.can_carry(prefix, attributes.next_hop) => attributes.next_hop,
            // Ours, or learned through an IPv6 next hop the peer cannot take for an IPv4
            // route (RFC 8950 not negotiated with it): we are the next hop.
            _ => self_next_hop?,
        };
        let sent = PathAttributes {
            origin: attributes.origin,
            as_path: attributes.as_path.clone(),
            next_hop,
            med: attributes.med,
            local_pref: Some(best.local_pref()),
            communities: attributes.communities.clone(),
            large_communities: attributes.large_communities.clone(),
            originator_id: attributes.originator_id,
            cluster_list: attributes.cluster_list.clone(),
            aggregator: attributes.aggregator,
            atomic_aggregate: attributes.atomic_aggregate,
        };
        return Some(Arc::new(match reflect {
            Some((from, cluster_id)) => reflected(&sent, &from, cluster_id),
            // Originated here or learned over eBGP: neither attribute belongs to it.
            None => PathAttributes {
                originator_id: None,
                cluster_list: Vec::new(),
                ..sent
            },
        }));
    }
    let med = match best.source {
        // Our own MED (none today) may go to a neighbouring AS; a learned one may not.
        PathSource::Local => attributes.med,
        PathSource::Peer(_) => None,
    };
    let next_hop = match best.source {
        PathSource::Peer(_) if session.next_hop_keep && session.can_carry(prefix, attributes.next_hop) => {
            attributes.next_hop
        }
        _ => self_next_hop?,
    };
    Some(Arc::new(PathAttributes {
        origin: attributes.origin,
        as_path: attributes.as_path.prepend(session.local_asn),
        next_hop,
        med,
        local_pref: None,
        communities: attributes.communities.clone(),
        large_communities: attributes.large_communities.clone(),
        originator_id: None,
        cluster_list: Vec::new(),
        aggregator: attributes.aggregator,
        atomic_aggregate: attributes.atomic_aggregate,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{AsPath, Origin};

    fn peer(last: u8, asn: u32, internal: bool) -> PeerInfo {
        PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 19, 0, last)),
            router_id: Ipv4Addr::new(198, 19, 1, last),
            asn,
            internal,
            reflector_client: false,
        }
    }

    fn session(peer: PeerInfo, policy: Policy) -> ExportSession {
        ExportSession {
            local_asn: 65001,
            peer,
            next_hop_v4: Some(Ipv4Addr::new(198, 19, 0, 2)),
            next_hop_v6: None,
            policy,
            cluster_id: None,
            next_hop_keep: false,
            extended_next_hop: false,
        }
    }

    fn local_path() -> Path {
        Path {
            source: PathSource::Local,
            attributes: Arc::new(PathAttributes {
                origin: Origin::Igp,
                as_path: AsPath::default(),
                next_hop: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                med: None,
                local_pref: None,
                communities: Vec::new(),
                large_communities: Vec::new(),
                originator_id: None,
                cluster_list: Vec::new(),
                aggregator: None,
                atomic_aggregate: false,
            }),
        }
    }

    fn prefix(text: &str) -> Prefix {
        text.parse().expect("prefix")
    }

    #[test]
    fn ebgp_gets_our_as_prepended_and_next_hop_self() {
        let tor = session(peer(1, 65000, false), Policy::Accept);
        let sent = export_attributes(&prefix("198.18.1.0/26"), &local_path(), &tor).expect("exported");
        assert_eq!(sent.as_path.asns(), vec![65001]);
        assert_eq!(sent.next_hop, IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)));
        assert_eq!(sent.local_pref, None);
    }

    #[test]
    fn ebgp_with_next_hop_keep_gets_a_learned_routes_own_next_hop_and_ours_for_originated_ones() {
        let learned_from = |from: PeerInfo, next_hop: &str| Path {
            source: PathSource::Peer(from),
            attributes: Arc::new(PathAttributes {
                next_hop: next_hop.parse().expect("address"),
                ..(*local_path().attributes).clone()
            }),
        };
        let mut tor = session(peer(1, 65000, false), Policy::Accept);
        tor.next_hop_keep = true;
        let ours = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2));
        let from_ibgp = learned_from(peer(3, 65001, true), "198.19.0.3");
        let sent = export_attributes(&prefix("198.18.3.0/26"), &from_ibgp, &tor).expect("exported");
        assert_eq!(sent.next_hop.to_string(), "198.19.0.3", "the original next hop");
        assert_eq!(sent.as_path.asns(), vec![65001], "our AS still prepended");
        let from_ebgp = learned_from(peer(4, 65004, false), "198.19.0.4");
        let sent = export_attributes(&prefix("198.18.4.0/26"), &from_ebgp, &tor).expect("exported");
        assert_eq!(sent.next_hop.to_string(), "198.19.0.4");
        let sent = export_attributes(&prefix("198.18.1.0/26"), &local_path(), &tor).expect("exported");
        assert_eq!(sent.next_hop, ours, "an originated route has no next hop but ours");
        // A next hop of the other family is not one the peer can use on this prefix.
        let odd = learned_from(peer(3, 65001, true), "2001:db8:ff::3");
        let sent = export_attributes(&prefix("198.18.3.0/26"), &odd, &tor).expect("exported");
        assert_eq!(sent.next_hop, ours);
        // Without it: next hop self.
        tor.next_hop_keep = false;
        let sent = export_attributes(&prefix("198.18.3.0/26"), &from_ibgp, &tor).expect("exported");
        assert_eq!(sent.next_hop, ours);
    }

    #[test]
    fn ipv4_routes_go_over_an_ipv6_session_with_our_ipv6_next_hop_only_with_extended_next_hop() {
        let ours: Ipv6Addr = "2001:db8:ff::2".parse().expect("address");
        let mut tor = ExportSession {
            next_hop_v4: None,
            next_hop_v6: Some(ours),
            ..session(peer(1, 65000, false), Policy::Accept)
        };
        assert_eq!(export_attributes(&prefix("198.18.1.0/26"), &local_path(), &tor), None);
        tor.extended_next_hop = true;
        let sent = export_attributes(&prefix("198.18.1.0/26"), &local_path(), &tor).expect("exported");
        assert_eq!(sent.next_hop, IpAddr::V6(ours));
        // iBGP: a learned IPv4 route's IPv6 next hop passes on when the peer takes it; to a
        // peer that does not, we are the next hop.
        let learned = Path {
            source: PathSource::Peer(peer(4, 65004, false)),
            attributes: Arc::new(PathAttributes {
                next_hop: "2001:db8:ff::4".parse().expect("address"),
                ..(*local_path().attributes).clone()
            }),
        };
        let mut ibgp = session(peer(3, 65001, true), Policy::Accept);
        let sent = export_attributes(&prefix("198.18.4.0/24"), &learned, &ibgp).expect("exported");
        assert_eq!(sent.next_hop.to_string(), "198.19.0.2", "next hop self");
        ibgp.extended_next_hop = true;
        let sent = export_attributes(&prefix("198.18.4.0/24"), &learned, &ibgp).expect("exported");
        assert_eq!(sent.next_hop.to_string(), "2001:db8:ff::4", "the learned next hop");
    }

    #[test]
    fn nothing_is_sent_to_ebgp_without_an_export_policy() {
        let tor = session(peer(1, 65000, false), Policy::default_for(false));
        assert_eq!(export_attributes(&prefix("198.18.1.0/26"), &local_path(), &tor), None);
    }

    #[test]
    fn a_family_without_a_session_address_is_not_sent() {
        let tor = session(peer(1, 65000, false), Policy::Accept);
        assert_eq!(export_attributes(&prefix("2001:db8:1::/64"), &local_path(), &tor), None);
    }

    #[test]
    fn a_route_goes_neither_back_to_its_peer_nor_from_ibgp_to_ibgp() {
        let learned = |from: PeerInfo| Path {
            source: PathSource::Peer(from),
            ..local_path()
        };
        let ibgp = session(peer(3, 65001, true), Policy::Accept);
        assert_eq!(
            export_attributes(&prefix("198.18.2.0/24"), &learned(peer(3, 65001, true)), &ibgp),
            None
        );
        assert_eq!(
            export_attributes(&prefix("198.18.2.0/24"), &learned(peer(4, 65001, true)), &ibgp),
            None
        );
        assert!(export_attributes(&prefix("198.18.2.0/24"), &learned(peer(1, 65000, false)), &ibgp).is_some());
    }

    #[test]
    fn a_reflector_passes_client_routes_on_with_originator_and_cluster_list() {
        let cluster = Ipv4Addr::new(198, 19, 0, 2);
        let client = PeerInfo {
            reflector_client: true,
            ..peer(3, 65001, true)
        };
        let learned = Path {
            source: PathSource::Peer(client),
            ..local_path()
        };
        let mut other = session(peer(4, 65001, true), Policy::Accept);
        other.cluster_id = Some(cluster);
        let sent = export_attributes(&prefix("198.18.2.0/24"), &learned, &other).expect("reflected");
        assert_eq!(sent.originator_id, Some(client.router_id));
        assert_eq!(sent.cluster_list, vec![cluster]);
        // Never back to its originator, even over another session.
        let mut originator = session(peer(5, 65001, true), Policy::Accept);
        originator.peer.router_id = client.router_id;
        originator.cluster_id = Some(cluster);
        assert_eq!(export_attributes(&prefix("198.18.2.0/24"), &learned, &originator), None);
        // Non-client to non-client: not reflected.
        let from_non_client = Path {
            source: PathSource::Peer(peer(6, 65001, true)),
            ..local_path()
        };
        assert_eq!(
            export_attributes(&prefix("198.18.2.0/24"), &from_non_client, &other),
            None
        );
        // To eBGP: neither attribute.
        let reflected_path = Path {
            source: PathSource::Peer(client),
            attributes: sent.clone(),
        };
        let tor = session(peer(1, 65000, false), Policy::Accept);
        let out = export_attributes(&prefix("198.18.2.0/24"), &reflected_path, &tor).expect("exported");
        assert_eq!((out.originator_id, out.cluster_list.len()), (None, 0));
    }

    #[test]
    fn routes_with_our_as_in_the_path_are_not_imported() {
        let mut attributes = (*local_path().attributes).clone();
        attributes.as_path = AsPath::default().prepend(65001).prepend(65000);
        let attributes = Arc::new(attributes);
        let p = prefix("198.18.2.0/24");
        assert!(import(&Policy::Accept, 65001, true, &p, &attributes).is_none());
        assert!(import(&Policy::Accept, 65002, true, &p, &attributes).is_some());
        assert!(import(&Policy::Reject, 65002, true, &p, &attributes).is_none());
    }

    #[test]
    fn local_pref_from_ebgp_is_dropped_at_import_and_a_policy_may_set_one() {
        use crate::policy::{Actions, Statement, Verdict};
        let mut attributes = (*local_path().attributes).clone();
        attributes.local_pref = Some(500);
        let attributes = Arc::new(attributes);
        let p = prefix("198.18.2.0/24");
        let ebgp = import(&Policy::Accept, 65001, true, &p, &attributes).expect("accepted");
        assert_eq!(ebgp.local_pref, None);
        let ibgp = import(&Policy::Accept, 65001, false, &p, &attributes).expect("accepted");
        assert_eq!(ibgp.local_pref, Some(500));
        let prefer = Policy::Named(Arc::new(NamedPolicy {
            name: "prefer".to_owned(),
            statements: vec![Statement {
                actions: Actions {
                    local_pref: Some(200),
                    ..Actions::default()
                },
                verdict: Some(Verdict::Accept),
                ..Statement::default()
            }],
        }));
        let set = import(&prefer, 65001, true, &p, &attributes).expect("accepted");
        assert_eq!(set.local_pref, Some(200));
    }
}
