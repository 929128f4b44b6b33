//! A configuration reload as the instance carries it out ([`crate::reload`]): peers forgotten
//! (their routes withdrawn from the Loc-RIB, the kernel and the other peers), the speaker's
//! identity (AS, router id, cluster id) changed once no peer is left (cluster mode re-peers
//! every session for it), peers added, and the originated prefixes announced or withdrawn
//! (or re-announced when their communities changed).
//!
//! Must never: touch a peer the reload does not name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_bgp_proto::graceful_restart::SessionEnd;
use weft_bgp_proto::{Path, PathSource, Prefix};

use super::{Instance, Peer, local_path};
use crate::config::Originated;
use crate::reload::InstanceReload;

impl Instance {
    pub(super) async fn reload(&mut self, reload: InstanceReload) {
        for address in reload.removed {
            self.forget(address).await;
        }
        if let Some(identity) = reload.identity {
            tracing::info!(
                asn = identity.asn,
                router_id = %identity.router_id,
                cluster_id = %identity.cluster_id,
                reflector = identity.reflector,
                "speaker identity changed"
            );
            self.asn = identity.asn;
            self.router_id = identity.router_id;
            self.own_cluster_id = identity.cluster_id;
            self.cluster_id = identity.reflector.then_some(identity.cluster_id);
        }
        for (config, commands) in reload.added {
            self.peers.insert(config.address, Peer::new(config, commands));
        }
        if let Some(originate) = reload.originate {
            self.originate(originate).await;
        }
        // A peer removed may have been the last one selection deferral waited for.
        self.end_deferral_when_in_sync().await;
    }

    /// Withdraws everything learned from the peer (its session ended with a Cease: nothing is
    /// kept stale) and forgets it.
    async fn forget(&mut self, address: IpAddr) {
        self.down(address, SessionEnd::Notification { hard_reset: true }).await;
        self.flush_stale(address, None).await;
        self.peers.remove(&address);
    }

    /// Makes `originate` the originated prefixes: the new ones are announced, the others
    /// withdrawn (or replaced by a learned path), those whose communities changed announced
    /// again.
    async fn originate(&mut self, originate: Vec<Originated>) {
        let current: BTreeMap<Prefix, Path> = self
            .loc_rib
            .iter()
            .filter_map(|(prefix, destination)| {
                let path = destination
                    .paths()
                    .iter()
                    .find(|path| path.source == PathSource::Local)?;
                Some((*prefix, path.clone()))
            })
            .collect();
        let wanted: BTreeSet<Prefix> = originate.iter().map(|originated| originated.prefix).collect();
        let mut touched = Vec::new();
        let mut changed = Vec::new();
        for prefix in current.keys() {
            if !wanted.contains(prefix) {
                touched.push(*prefix);
                if self.loc_rib.remove(prefix, &PathSource::Local) {
                    changed.push(*prefix);
                }
            }
        }
        for originated in &originate {
            let path = local_path(originated);
            let prefix = originated.prefix;
            match current.get(&prefix) {
                Some(existing) if *existing == path => {}
                existing => {
                    touched.push(prefix);
                    let best_changed = self.loc_rib.insert(prefix, path);
                    // New communities on a path that stays best change what the peers hold.
                    if best_changed || existing.is_some() {
                        changed.push(prefix);
                    }
                }
            }
        }
        tracing::info!(
            announced = originate.len(),
            changed = changed.len(),
            "originated prefixes reloaded"
        );
        self.program_fib(&touched).await;
        self.propagate(&changed).await;
    }
}
