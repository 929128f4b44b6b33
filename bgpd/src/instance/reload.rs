//! A configuration reload as the instance carries it out ([`crate::reload`]): peers forgotten
//! (their routes withdrawn from the Loc-RIB, the kernel and the other peers), peers added, and
//! the originated prefixes announced or withdrawn.
//!
//! Must never: touch a peer the reload does not name.

use std::net::IpAddr;

use weft_bgp_proto::graceful_restart::SessionEnd;
use weft_bgp_proto::{PathSource, Prefix};

use super::{Instance, Peer, local_path};
use crate::reload::InstanceReload;

impl Instance {
    pub(super) async fn reload(&mut self, reload: InstanceReload) {
        for address in reload.removed {
            self.forget(address).await;
        }
        for (config, commands) in reload.added {
            self.peers.insert(config.address, Peer::new(config, commands));
        }
        if let Some(originate) = reload.originate {
            self.originate(originate).await;
        }
    }

    /// Withdraws everything learned from the peer (its session ended with a Cease: nothing is
    /// kept stale) and forgets it.
    async fn forget(&mut self, address: IpAddr) {
        self.down(address, SessionEnd::Notification { hard_reset: true }).await;
        self.flush_stale(address, None).await;
        self.peers.remove(&address);
    }

    /// Makes `originate` the originated prefixes: the new ones are announced, the others
    /// withdrawn (or replaced by a learned path).
    async fn originate(&mut self, originate: Vec<Prefix>) {
        let current: Vec<Prefix> = self
            .loc_rib
            .iter()
            .filter(|(_, destination)| destination.paths().iter().any(|path| path.source == PathSource::Local))
            .map(|(prefix, _)| *prefix)
            .collect();
        let mut touched = Vec::new();
        let mut changed = Vec::new();
        for prefix in &current {
            if !originate.contains(prefix) {
                touched.push(*prefix);
                if self.loc_rib.remove(prefix, &PathSource::Local) {
                    changed.push(*prefix);
                }
            }
        }
        for prefix in &originate {
            if !current.contains(prefix) {
                touched.push(*prefix);
                if self.loc_rib.insert(*prefix, local_path(prefix)) {
                    changed.push(*prefix);
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
