//! Advertisements that waited for a peer's MinRouteAdvertisementIntervalTimer (RFC 4271
//! §9.2.1.1): when the next one is due, and sending them in the state the Loc-RIB has now.
//!
//! The decisions are the core's ([`weft_bgp_proto::advertisement_interval`]); export holds a
//! change back in [`Instance::export_to`]. Must never: send a withdrawal late (withdrawals never
//! wait).

use std::net::IpAddr;

use tokio::time::Instant;
use weft_bgp_proto::Prefix;

use super::Instance;

impl Instance {
    /// When some peer's waiting advertisement is due.
    pub(super) fn next_advertisement(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|peer| peer.session.as_ref()?.advertisement_interval.next_deadline())
            .min()
            .map(Instant::from_std)
    }

    /// Exports again, to each peer, the prefixes whose interval is over.
    pub(super) async fn advertise_due(&mut self) {
        let now = Instant::now().into_std();
        let due: Vec<(IpAddr, Vec<Prefix>)> = self
            .peers
            .iter_mut()
            .filter_map(|(address, peer)| {
                let prefixes = peer.session.as_mut()?.advertisement_interval.due(now);
                (!prefixes.is_empty()).then_some((*address, prefixes))
            })
            .collect();
        for (address, prefixes) in due {
            tracing::debug!(peer = %address, prefixes = prefixes.len(), "advertisement interval over");
            self.export_to(address, &prefixes).await;
        }
    }
}
