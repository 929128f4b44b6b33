//! Configuration reload on SIGHUP: what a new file changes, and carrying it out.
//!
//! [`plan`] compares the running configuration with the new one (pure): peers removed, added,
//! or changed (any of their settings, their policies' definitions included), and the originated
//! prefixes. Keys a running daemon cannot take over (its AS, router id, ports, sockets, kernel
//! and graceful restart settings) are refused with an error naming the key; the daemon then
//! keeps running with the old configuration, as for a file that does not parse.
//! In cluster mode ([`plan_live`], for configurations derived from the datastore) the speaker's
//! identity may change as well (its AS, router id, cluster id, and whether it reflects routes):
//! that re-peers every session, since each one negotiated the old identity.
//!
//! [`apply`] carries a plan out: removed peers get a Cease (Peer De-configured, RFC 4486) and
//! their session task ends; changed ones get a Cease (Other Configuration Change) and start
//! again with the new settings; the instance drops their routes, learns of the new peers before
//! their tasks start, and announces or withdraws the originated prefixes that changed. Peers
//! whose settings did not change are not touched: their sessions stay up.
//!
//! Must never: stop a session whose peer's settings are unchanged, or leave the daemon without
//! a configuration (an error keeps the old one whole).

use std::net::IpAddr;
use std::path::Path;

use tokio::sync::{mpsc, oneshot};
use weft_bgp_proto::notification::CeaseSubcode;

use std::net::Ipv4Addr;

use crate::config::{self, Config, ConfigError, Originated, PeerConfig};
use crate::control::ControlRequest;
use crate::kernel::FibRequest;
use crate::peers::Peers;
use crate::session::PeerCommand;

/// How long a changed peer stays down between our Cease and the new session (RFC 4271's
/// IdleHoldTime). A peer that supports graceful restart and sees a new connection while the
/// old one is still open treats it as our restart and closes the old one, possibly before it
/// has read the Cease (FRR does): the pause lets it read the Cease and close first.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a new configuration changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Peers no longer configured.
    pub removed: Vec<IpAddr>,
    /// Peers whose settings changed: re-established with the new ones.
    pub changed: Vec<PeerConfig>,
    /// New peers.
    pub added: Vec<PeerConfig>,
    /// The originated prefixes, when they changed.
    pub originate: Option<Vec<Originated>>,
    /// The speaker's new identity, when it changed (cluster mode only).
    pub identity: Option<Identity>,
}

impl Plan {
    /// Whether the new configuration changes nothing.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.changed.is_empty()
            && self.added.is_empty()
            && self.originate.is_none()
            && self.identity.is_none()
    }
}

/// Who the speaker is to its peers: what every session negotiated or depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Our AS.
    pub asn: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Our cluster id (RFC 4456).
    pub cluster_id: Ipv4Addr,
    /// Whether we reflect routes (some peer is a route reflector client).
    pub reflector: bool,
}

impl Identity {
    /// The identity `config` gives the speaker.
    pub fn of(config: &Config) -> Self {
        Self {
            asn: config.asn,
            router_id: config.router_id,
            cluster_id: config.cluster_id,
            reflector: config.peers.iter().any(|peer| peer.route_reflector_client),
        }
    }
}

/// What the instance does on a reload: forget `removed` (their routes go), then know `added`
/// (each with its session task's command queue), and originate `originate`.
#[derive(Debug)]
pub struct InstanceReload {
    /// Peers whose routes and state go (removed and changed ones).
    pub removed: Vec<IpAddr>,
    /// Peers to follow from now on (added and changed ones).
    pub added: Vec<(PeerConfig, mpsc::Sender<PeerCommand>)>,
    /// The originated prefixes, when they changed.
    pub originate: Option<Vec<Originated>>,
    /// The speaker's new identity, applied after `removed` are gone and before `added` come.
    pub identity: Option<Identity>,
}

/// What changes from `old` to `new`, or the first key whose change needs a restart.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, ConfigError> {
    plan_with(old, new, false)
}

/// [`plan`] for cluster mode: the speaker's identity may change too, which re-peers every
/// session (each negotiated the old one).
pub fn plan_live(old: &Config, new: &Config) -> Result<Plan, ConfigError> {
    plan_with(old, new, true)
}

fn plan_with(old: &Config, new: &Config, identity_may_change: bool) -> Result<Plan, ConfigError> {
    let identity = (Identity::of(old) != Identity::of(new)).then(|| Identity::of(new));
    if identity_may_change && identity.is_some() {
        let mut plan = Plan {
            identity,
            ..Plan::default()
        };
        restart_keys(old, new)?;
        for peer in &old.peers {
            if !new.peers.iter().any(|p| p.address == peer.address) {
                plan.removed.push(peer.address);
            }
        }
        for peer in &new.peers {
            if old.peers.iter().any(|p| p.address == peer.address) {
                plan.changed.push(peer.clone());
            } else {
                plan.added.push(peer.clone());
            }
        }
        if old.originate != new.originate {
            plan.originate = Some(new.originate.clone());
        }
        return Ok(plan);
    }
    restart("asn", old.asn != new.asn)?;
    restart("router_id", old.router_id != new.router_id)?;
    restart("cluster_id", old.cluster_id != new.cluster_id)?;
    let reflector = |config: &Config| config.peers.iter().any(|peer| peer.route_reflector_client);
    if reflector(old) != reflector(new) {
        return Err(ConfigError::Invalid {
            key: "peers[].route_reflector_client".to_owned(),
            message: "the first client makes weft a route reflector (and the last one undoes it): \
                      restart weft-bgpd (the rest of the file was not applied)"
                .to_owned(),
        });
    }
    restart_keys(old, new)?;
    let mut plan = Plan::default();
    for peer in &old.peers {
        match new.peers.iter().find(|p| p.address == peer.address) {
            None => plan.removed.push(peer.address),
            Some(now) if now != peer => plan.changed.push(now.clone()),
            Some(_) => {}
        }
    }
    for peer in &new.peers {
        if !old.peers.iter().any(|p| p.address == peer.address) {
            plan.added.push(peer.clone());
        }
    }
    if old.originate != new.originate {
        plan.originate = Some(new.originate.clone());
    }
    Ok(plan)
}

/// Cluster mode: the settings only a restart takes over (the kernel and graceful restart
/// settings; the listen port and addresses when the daemon could not bind them live) keep their running values in `new`, so that the rest of it can
/// be applied; returns the keys that differed (they take effect at the next start).
pub fn keep_restart_keys(current: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if new.listen_port != current.listen_port {
        kept.push("listen_port");
        new.listen_port = current.listen_port;
    }
    if new.listen_addresses != current.listen_addresses {
        kept.push("listen_addresses");
        new.listen_addresses.clone_from(&current.listen_addresses);
    }
    if new.control_socket != current.control_socket {
        kept.push("control_socket");
        new.control_socket.clone_from(&current.control_socket);
    }
    if new.metrics_listen != current.metrics_listen {
        kept.push("metrics_listen");
        new.metrics_listen = current.metrics_listen;
    }
    if (new.kernel_install, new.kernel_blackhole, new.kernel_max_paths)
        != (
            current.kernel_install,
            current.kernel_blackhole,
            current.kernel_max_paths,
        )
    {
        kept.push("kernel");
        new.kernel_install = current.kernel_install;
        new.kernel_blackhole = current.kernel_blackhole;
        new.kernel_max_paths = current.kernel_max_paths;
    }
    if (new.graceful_restart, new.select_defer_time) != (current.graceful_restart, current.select_defer_time) {
        kept.push("graceful_restart");
        new.graceful_restart = current.graceful_restart;
        new.select_defer_time = current.select_defer_time;
    }
    kept
}

/// An error naming `key` when it `changed`: it cannot change while the daemon runs.
fn restart(key: &str, changed: bool) -> Result<(), ConfigError> {
    if changed {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            message: "cannot change while weft-bgpd runs; restart it (the rest of the file was not applied)".to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The keys that need a restart in either mode (sockets, kernel, graceful restart).
fn restart_keys(old: &Config, new: &Config) -> Result<(), ConfigError> {
    restart("listen_port", old.listen_port != new.listen_port)?;
    restart("listen_addresses", old.listen_addresses != new.listen_addresses)?;
    restart("control_socket", old.control_socket != new.control_socket)?;
    restart("metrics_listen", old.metrics_listen != new.metrics_listen)?;
    restart("kernel.install", old.kernel_install != new.kernel_install)?;
    restart("kernel.blackhole", old.kernel_blackhole != new.kernel_blackhole)?;
    restart("kernel.max_paths", old.kernel_max_paths != new.kernel_max_paths)?;
    restart("graceful_restart", old.graceful_restart != new.graceful_restart)?;
    restart(
        "graceful_restart.select_defer_time",
        old.select_defer_time != new.select_defer_time,
    )
}

/// Reads `path` again and applies what changed; on an error (the file, or a key that needs a
/// restart) logs it and keeps `current`.
pub async fn reload(
    path: &Path,
    current: &mut Config,
    peers: &mut Peers,
    instance: &mpsc::Sender<ControlRequest>,
    fib: Option<&mpsc::Sender<FibRequest>>,
) {
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(error) => {
            tracing::error!(path = %path.display(), error = %format!("{error:#}"), "reload refused: invalid configuration; running on with the old one");
            return;
        }
    };
    let plan = match plan(current, &new) {
        Ok(plan) => plan,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "reload refused; running on with the old configuration");
            return;
        }
    };
    apply(plan, new, current, peers, instance, fib).await;
}

/// Carries `plan` (from `current` to `new`) out and makes `new` the current configuration.
pub async fn apply(
    plan: Plan,
    new: Config,
    current: &mut Config,
    peers: &mut Peers,
    instance: &mpsc::Sender<ControlRequest>,
    fib: Option<&mpsc::Sender<FibRequest>>,
) {
    if plan.is_empty() {
        tracing::info!("reload: nothing changed");
        *current = new;
        return;
    }
    tracing::info!(
        removed = plan.removed.len(),
        changed = plan.changed.len(),
        added = plan.added.len(),
        originate = plan.originate.is_some(),
        identity = plan.identity.is_some(),
        "reload"
    );
    for address in &plan.removed {
        peers.stop(*address, CeaseSubcode::PeerDeconfigured).await;
    }
    for peer in &plan.changed {
        peers.stop(peer.address, CeaseSubcode::OtherConfigurationChange).await;
    }
    if !plan.changed.is_empty() {
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
    if let Some(identity) = &plan.identity {
        peers.set_identity(identity.asn, identity.router_id);
    }
    let removed = plan
        .removed
        .iter()
        .copied()
        .chain(plan.changed.iter().map(|p| p.address))
        .collect();
    let added = plan
        .changed
        .iter()
        .chain(&plan.added)
        .map(|peer| (peer.clone(), peers.prepare(peer)))
        .collect();
    let (done_tx, done) = oneshot::channel();
    let request = InstanceReload {
        removed,
        added,
        originate: plan.originate.clone(),
        identity: plan.identity,
    };
    if instance
        .send(ControlRequest::Reload(Box::new(request), done_tx))
        .await
        .is_err()
        || done.await.is_err()
    {
        tracing::warn!("reload: the instance is gone");
        return;
    }
    // The instance knows the new peers now: their first events will not be missed.
    peers.spawn_prepared();
    if let (Some(originate), Some(fib)) = (&plan.originate, fib)
        && new.kernel_blackhole
        && fib
            .send(FibRequest::Blackholes(config::blackholes(originate)))
            .await
            .is_err()
    {
        tracing::warn!("the FIB task is gone; blackhole routes not updated");
    }
    *current = new;
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "asn: 65001\nrouter_id: 198.19.0.2\noriginate: [198.18.1.0/26]\npeers:\n";

    fn config(peers: &str) -> Config {
        let peers = if peers.is_empty() { "  []\n" } else { peers };
        Config::parse(&format!("{BASE}{peers}")).expect("valid")
    }

    #[test]
    fn unchanged_peers_are_left_alone_and_the_others_sorted_out() {
        let old = config(
            "  - {address: 198.19.0.1, asn: 65000}\n  - {address: 198.19.0.3, asn: 65000}\n  - {address: 198.19.0.4, asn: 65000}\n",
        );
        let new = config(
            "  - {address: 198.19.0.1, asn: 65000}\n  - {address: 198.19.0.3, asn: 65000, hold_time: 30}\n  - {address: 198.19.0.5, asn: 65000}\n",
        );
        let plan = plan(&old, &new).expect("a plan");
        assert_eq!(plan.removed, vec!["198.19.0.4".parse::<IpAddr>().expect("address")]);
        assert_eq!(plan.changed.len(), 1);
        assert_eq!(plan.changed[0].hold_time, 30);
        assert_eq!(plan.added.len(), 1);
        assert_eq!(plan.originate, None);
        assert!(super::plan(&old, &old).expect("a plan").is_empty());
    }

    #[test]
    fn a_changed_policy_definition_changes_its_peers() {
        let with = |pref: u32| {
            Config::parse(&format!(
                "asn: 65001\nrouter_id: 198.19.0.2\npolicies:\n  in:\n    - set: {{local_pref: {pref}}}\n      action: accept\n\
                 peers: [{{address: 198.19.0.1, asn: 65000, import: in}}]\n"
            ))
            .expect("valid")
        };
        assert_eq!(plan(&with(200), &with(300)).expect("a plan").changed.len(), 1);
    }

    #[test]
    fn originate_changes_are_planned() {
        let old = config("");
        let new = Config::parse("asn: 65001\nrouter_id: 198.19.0.2\noriginate: [198.18.1.64/26]\n").expect("valid");
        let plan = plan(&old, &new).expect("a plan");
        assert_eq!(
            plan.originate,
            Some(vec![Originated::plain(
                "198.18.1.64/26".parse().expect("prefix"),
                false
            )])
        );
    }

    #[test]
    fn cluster_mode_keeps_restart_keys_and_applies_the_rest() {
        let old = config("");
        let mut new =
            Config::parse("asn: 65001\nrouter_id: 198.19.0.2\nlisten_port: 1179\nlisten_addresses: [198.19.0.2]\noriginate: [198.18.1.64/26]\n")
                .expect("valid");
        assert_eq!(
            keep_restart_keys(&old, &mut new),
            vec!["listen_port", "listen_addresses"]
        );
        assert_eq!(new.listen_port, old.listen_port);
        assert!(new.listen_addresses.is_empty(), "every address, as running");
        let plan = plan_live(&old, &new).expect("a plan");
        assert!(plan.originate.is_some());
    }

    #[test]
    fn keys_that_need_a_restart_are_named() {
        let old = config("");
        let new = Config::parse("asn: 65002\nrouter_id: 198.19.0.2\n").expect("valid");
        let error = plan(&old, &new).expect_err("refused").to_string();
        assert!(error.starts_with("asn:"), "{error}");
        let new = Config::parse(&format!("{BASE}  []\nkernel: {{install: true}}\n")).expect("valid");
        let error = plan(&old, &new).expect_err("refused").to_string();
        assert!(error.starts_with("kernel.install:"), "{error}");
    }
}
