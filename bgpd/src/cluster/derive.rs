//! The datastore's BGP objects as one node's [`Config`]: pure, the heart of cluster mode.
//!
//! Calico's semantics (its `calico-node` BGP configuration), from a [`Snapshot`] of the objects:
//! - identity: the node's `WeftNode` gives its router id (the IPv4 BGP address), its AS
//!   (`spec.bgp.asNumber`, else `BGPConfiguration` `default`'s `asNumber`, else 64512) and,
//!   with `routeReflectorClusterID`, its cluster id; `BGPConfiguration` `node.<name>` overrides
//!   `default` for one node (listen port, bind mode, mesh, communities);
//! - listening: on every address, or with `bindMode: NodeIP` on the node's BGP addresses only
//!   (`spec.bgp.ipv4Address`/`ipv6Address` without their prefix length);
//! - node-to-node mesh (`nodeToNodeMeshEnabled`, default on): a session with every other node
//!   on each family both have an address of; the side with the lower address is passive, so
//!   that the two never race to connect;
//! - `BGPPeer`: applies to the node it names (`node`), the nodes its `nodeSelector` selects, or
//!   every node (neither); peers with `peerIP`, or with every node its `peerSelector` selects
//!   (their addresses and AS). A node selected by a `peerSelector` peers back with the nodes
//!   the `BGPPeer` applies to, so both ends of a node-to-node session are configured;
//! - route reflection: a node with a cluster id treats its iBGP peers of another (or no) cluster
//!   as its clients (RFC 4456); mesh sessions are never client sessions;
//! - per `BGPPeer`: the TCP MD5 key from `password.secretKeyRef` (a key of a `Secret` in
//!   weft's namespace, [`super::SECRET_NAMESPACE`], its value as is) or `password.file` (the
//!   file's contents without a final line end); a Secret or key that is missing leaves the
//!   peer out until it appears; `ttlSecurity` (GTSM, 1 or 2 hops), `sourceAddress`,
//!   `maxPrefixes` (down until the next change), `maxRestartTimeSeconds` (the Restart Time
//!   advertised to it), `keepOriginalNextHop` (on its eBGP sessions, learned routes keep their
//!   next hop);
//! - policies: iBGP sessions import and export everything; eBGP sessions import everything and
//!   export the pools' prefixes (not `disableBGPExport`) and the configured Service ranges;
//!   `filters` (BGPFilter names) come first, in order;
//! - origination: [`super::originate`].
//!
//! A bad object (a `BGPPeer` whose `peerIP` is not an address, a filter that does not exist, a
//! node without addresses) is a [`Problem`] naming it and its key, and is left out: the rest of
//! the configuration stands. Only what the node cannot run without (its own `WeftNode` and its
//! addresses, a bad AS) is an error of the whole derivation.
//!
//! Must never: do I/O (the driver reads password files and Secrets into the snapshot), or peer
//! with the node itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_api::resources::{
    BGPConfiguration, BGPConfigurationSpec, BGPFilter, BGPPeer, BGPPeerSpec, BindMode, BlockAffinity, IPPool,
    SourceAddress, WeftNode, WorkloadEndpoint, peer_address,
};
use weft_api::selector::Selector;
use weft_bgp_proto::AddressType;
use weft_bgp_proto::export::Policy;
use weft_bgp_proto::policy::{Conditions, NamedPolicy, PrefixList, PrefixListEntry, Statement, Verdict};

use super::filters::{self, Direction};
use super::originate::{self, Blocks};
use crate::config::{
    Config, DEFAULT_CONNECT_RETRY_TIME, DEFAULT_HOLD_TIME, DEFAULT_MAX_PATHS, DEFAULT_RESTART_TIME,
    DEFAULT_SELECT_DEFER_TIME, DEFAULT_SEND_HOLD_TIME, MaxPrefix, Password, PeerConfig,
};

/// The AS of nodes when nothing says otherwise (Calico's default).
pub const DEFAULT_ASN: u32 = 64512;
/// The BGP port.
const BGP_PORT: u16 = 179;
/// The source of node-to-node mesh sessions.
const MESH: &str = "node-to-node mesh";

/// Every object the derivation reads, as the driver last saw them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub configurations: Vec<BGPConfiguration>,
    pub peers: Vec<BGPPeer>,
    pub filters: Vec<BGPFilter>,
    pub nodes: Vec<WeftNode>,
    /// Labels of the Kubernetes `Node` objects, by name (merged with the `WeftNode`'s own).
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub affinities: Vec<BlockAffinity>,
    pub pools: Vec<IPPool>,
    pub endpoints: Vec<WorkloadEndpoint>,
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    /// `BGPPeer.password.file` contents by path, or why the file could not be read.
    pub password_files: BTreeMap<String, Result<Vec<u8>, String>>,
    /// The Secrets of [`super::SECRET_NAMESPACE`], by name: their values by key, decoded.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// What the command line sets rather than the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub control_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
}

/// Something wrong with one object: the object (`BGPPeer/tor`), the key (`spec.peerIP`), why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("{object}: {key}: {message}")]
pub struct Problem {
    pub object: String,
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(object: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            object: object.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The node's configuration and what was left out of it.
#[derive(Debug, Clone)]
pub struct Derived {
    pub config: Config,
    /// Objects (or parts of them) left out, each naming the object and key.
    pub problems: Vec<Problem>,
}

/// One weft node's BGP identity, checked.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    asn: u32,
    cluster_id: Option<Ipv4Addr>,
    labels: BTreeMap<String, String>,
}

impl Node {
    fn read(
        node: &WeftNode,
        default_asn: u32,
        kube_labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, Problem> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let object = format!("WeftNode/{name}");
        let bgp = node.spec.bgp.clone().unwrap_or_default();
        let address = |text: &Option<String>, key: &str| -> Result<Option<IpAddr>, Problem> {
            match text {
                None => Ok(None),
                Some(text) => {
                    let address = text
                        .parse::<IpNet>()
                        .map(|net| net.addr())
                        .or_else(|_| text.parse::<IpAddr>())
                        .map_err(|_| Problem::new(&object, key, format!("{text:?} is not an address/prefix-length")))?;
                    Ok(Some(address))
                }
            }
        };
        let v4 = match address(&bgp.ipv4_address, "spec.bgp.ipv4Address")? {
            None => None,
            Some(IpAddr::V4(v4)) => Some(v4),
            Some(IpAddr::V6(_)) => {
                return Err(Problem::new(&object, "spec.bgp.ipv4Address", "is an IPv6 address"));
            }
        };
        let v6 = match address(&bgp.ipv6_address, "spec.bgp.ipv6Address")? {
            None => None,
            Some(IpAddr::V6(v6)) => Some(v6),
            Some(IpAddr::V4(_)) => {
                return Err(Problem::new(&object, "spec.bgp.ipv6Address", "is an IPv4 address"));
            }
        };
        if v4.is_none() && v6.is_none() {
            return Err(Problem::new(
                &object,
                "spec.bgp",
                "has neither ipv4Address nor ipv6Address: the node cannot peer",
            ));
        }
        let asn = bgp.as_number.unwrap_or(default_asn);
        check_asn(&object, "spec.bgp.asNumber", asn)?;
        let cluster_id = match &bgp.route_reflector_cluster_id {
            None => None,
            Some(text) => Some(
                text.parse::<Ipv4Addr>()
                    .ok()
                    .filter(|id| !id.is_unspecified())
                    .ok_or_else(|| {
                        Problem::new(
                            &object,
                            "spec.bgp.routeReflectorClusterID",
                            format!("{text:?} is not a cluster id (a non-zero IPv4 address)"),
                        )
                    })?,
            ),
        };
        let mut labels = node.metadata.labels.clone().unwrap_or_default();
        if let Some(kube_labels) = kube_labels {
            for (key, value) in kube_labels {
                labels.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        Ok(Self {
            name,
            v4,
            v6,
            asn,
            cluster_id,
            labels,
        })
    }

    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4.map(IpAddr::V4).into_iter().chain(self.v6.map(IpAddr::V6))
    }

    /// Our address of the family of `peer`.
    fn address_for(&self, peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }
}

fn check_asn(object: &str, key: &str, asn: u32) -> Result<(), Problem> {
    match asn {
        0 => Err(Problem::new(object, key, "AS 0 is reserved (RFC 7607)")),
        23456 => Err(Problem::new(
            object,
            key,
            "AS 23456 is AS_TRANS, not a real AS (RFC 6793)",
        )),
        _ => Ok(()),
    }
}

/// `default` with `node.<node>`'s settings over it.
pub fn configuration(snapshot: &Snapshot, node: &str) -> BGPConfigurationSpec {
    let find = |name: &str| {
        snapshot
            .configurations
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .map(|c| c.spec.clone())
    };
    let mut merged = find("default").unwrap_or_default();
    if let Some(over) = find(&format!("node.{node}")) {
        merged.as_number = over.as_number.or(merged.as_number);
        merged.node_to_node_mesh_enabled = over.node_to_node_mesh_enabled.or(merged.node_to_node_mesh_enabled);
        merged.listen_port = over.listen_port.or(merged.listen_port);
        merged.bind_mode = over.bind_mode.or(merged.bind_mode);
        for (mine, theirs) in [
            (&mut merged.service_cluster_ips, over.service_cluster_ips),
            (&mut merged.service_external_ips, over.service_external_ips),
            (&mut merged.service_load_balancer_ips, over.service_load_balancer_ips),
        ] {
            if !theirs.is_empty() {
                *mine = theirs;
            }
        }
        if !over.prefix_advertisements.is_empty() {
            merged.prefix_advertisements = over.prefix_advertisements;
        }
        if !over.communities.is_empty() {
            merged.communities = over.communities;
        }
    }
    merged
}

/// Derives `node`'s configuration from the snapshot; `services` is what the Service module
/// advertises from this node (prefix → communities).
pub fn derive(
    snapshot: &Snapshot,
    node: &str,
    local: &Local,
    services: &BTreeMap<IpNet, BTreeSet<String>>,
) -> Result<Derived, Problem> {
    let mut problems = Vec::new();
    let global = configuration(snapshot, node);
    let default_asn = global.as_number.unwrap_or(DEFAULT_ASN);
    check_asn("BGPConfiguration/default", "spec.asNumber", default_asn)?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut me = None;
    for object in &snapshot.nodes {
        let name = object.metadata.name.as_deref().unwrap_or_default();
        match Node::read(object, default_asn, snapshot.node_labels.get(name)) {
            Ok(read) if read.name == node => me = Some(read),
            Ok(read) => nodes.push(read),
            Err(problem) if name == node => return Err(problem),
            Err(problem) => problems.push(problem),
        }
    }
    let me = me.ok_or_else(|| {
        Problem::new(
            format!("WeftNode/{node}"),
            "spec.bgp",
            "not found: the node's BGP addresses and AS come from its WeftNode",
        )
    })?;
    let router_id = me.v4.ok_or_else(|| {
        Problem::new(
            format!("WeftNode/{node}"),
            "spec.bgp.ipv4Address",
            "is needed: the IPv4 address is the node's BGP router id",
        )
    })?;
    let own: BTreeSet<IpAddr> = me.addresses().collect();
    // Nodes that share an address with another are left out (which one is meant?).
    let mut by_address: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for address in nodes.iter().flat_map(Node::addresses) {
        *by_address.entry(address).or_default() += 1;
    }
    nodes.retain(|other| {
        let clash = other
            .addresses()
            .find(|address| own.contains(address) || by_address.get(address).copied().unwrap_or(0) > 1);
        if let Some(address) = clash {
            problems.push(Problem::new(
                format!("WeftNode/{}", other.name),
                "spec.bgp",
                format!("{address} is another node's address too; the node is left out"),
            ));
        }
        clash.is_none()
    });

    let export_list = export_list(&snapshot.pools, &global);
    let mut peers = Peering::new(&me, export_list);
    if global.node_to_node_mesh_enabled.unwrap_or(true) {
        for other in &nodes {
            for address in other.addresses() {
                if me.address_for(address).is_some() {
                    peers.add_node(other, address, false, MESH, None);
                }
            }
        }
    }
    let mut bgp_peers: Vec<&BGPPeer> = snapshot.peers.iter().collect();
    bgp_peers.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for peer in bgp_peers {
        let name = peer.metadata.name.clone().unwrap_or_default();
        let object = format!("BGPPeer/{name}");
        if let Err(problem) = peers.add_bgp_peer(&object, &peer.spec, &nodes, snapshot) {
            problems.push(problem);
        }
    }

    let blocks = Blocks::new(&snapshot.affinities, &mut problems);
    let originate = originate::originate(
        node,
        &blocks,
        &snapshot.pools,
        &snapshot.endpoints,
        services,
        &global,
        &mut problems,
    );
    let config = Config {
        asn: me.asn,
        router_id,
        listen_port: global.listen_port.unwrap_or(BGP_PORT),
        // Calico's bindMode NodeIP: the node's BGP addresses only.
        listen_addresses: if global.bind_mode == Some(BindMode::NodeIP) {
            me.addresses().collect()
        } else {
            Vec::new()
        },
        control_socket: local.control_socket.clone(),
        metrics_listen: local.metrics_listen,
        cluster_id: me.cluster_id.unwrap_or(router_id),
        originate,
        kernel_install: true,
        kernel_blackhole: true,
        kernel_max_paths: DEFAULT_MAX_PATHS,
        graceful_restart: Some(DEFAULT_RESTART_TIME),
        select_defer_time: DEFAULT_SELECT_DEFER_TIME,
        peers: peers.configs.into_values().collect(),
    };
    problems.extend(peers.problems);
    Ok(Derived { config, problems })
}

/// What eBGP peers are sent without filters: the pools' prefixes and the Service ranges.
fn export_list(pools: &[IPPool], configuration: &BGPConfigurationSpec) -> Arc<PrefixList> {
    let pool_cidrs = pools
        .iter()
        .filter(|pool| !pool.spec.disable_bgp_export)
        .map(|pool| pool.spec.cidr.as_str());
    let service_cidrs = configuration
        .service_cluster_ips
        .iter()
        .chain(&configuration.service_external_ips)
        .chain(&configuration.service_load_balancer_ips)
        .map(|range| range.cidr.as_str());
    let mut entries: Vec<PrefixListEntry> = pool_cidrs
        .chain(service_cidrs)
        .filter_map(|cidr| cidr.parse::<IpNet>().ok())
        .map(|prefix| PrefixListEntry {
            prefix: prefix.trunc(),
            ge: None,
            le: Some(prefix.max_prefix_len()),
        })
        .collect();
    entries.sort_by_key(|entry| entry.prefix);
    entries.dedup();
    Arc::new(PrefixList(entries))
}

/// The peers being gathered for one node.
struct Peering<'a> {
    me: &'a Node,
    export_list: Arc<PrefixList>,
    /// By address; the first source of an address wins.
    configs: BTreeMap<IpAddr, PeerConfig>,
    /// Which object each address came from.
    sources: BTreeMap<IpAddr, String>,
    problems: Vec<Problem>,
}

/// Settings of a `BGPPeer` that apply to each session it makes.
#[derive(Debug, Default)]
struct Settings {
    password: Option<Password>,
    restart_time: Option<u16>,
    ttl_security: bool,
    use_node_address: bool,
    import: Vec<Statement>,
    export: Vec<Statement>,
    filters: String,
    max_prefix: Option<MaxPrefix>,
    next_hop_keep: bool,
}

impl<'a> Peering<'a> {
    fn new(me: &'a Node, export_list: Arc<PrefixList>) -> Self {
        Self {
            me,
            export_list,
            configs: BTreeMap::new(),
            sources: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    /// A session with another weft node at `address`.
    fn add_node(
        &mut self,
        other: &Node,
        address: IpAddr,
        client_capable: bool,
        source: &str,
        settings: Option<&Settings>,
    ) {
        // RFC 4456: a reflector's iBGP peers outside its cluster are its clients.
        let client = client_capable
            && other.asn == self.me.asn
            && self.me.cluster_id.is_some()
            && other.cluster_id != self.me.cluster_id;
        // Calico: the side with the lower address waits for the other to connect.
        let passive = self.me.address_for(address).is_some_and(|mine| mine < address);
        self.add(address, other.asn, passive, client, source, settings);
    }

    fn add(
        &mut self,
        address: IpAddr,
        asn: u32,
        passive: bool,
        client: bool,
        source: &str,
        settings: Option<&Settings>,
    ) {
        if self.me.addresses().any(|own| own == address) {
            return;
        }
        if let Some(first) = self.sources.get(&address)
            && !(first == MESH && source != MESH)
        {
            // An explicit BGPPeer replaces the mesh session to the same address.
            if first != source {
                self.problems.push(Problem::new(
                    source,
                    "spec",
                    format!("{address} is peered with by {first} already; this peering is left out"),
                ));
            }
            return;
        }
        let internal = asn == self.me.asn;
        let family = match address {
            IpAddr::V4(_) => AddressType::Ipv4Unicast,
            IpAddr::V6(_) => AddressType::Ipv6Unicast,
        };
        let default = Settings {
            use_node_address: true,
            ..Settings::default()
        };
        let settings = settings.unwrap_or(&default);
        let import = if settings.import.is_empty() {
            Policy::Accept
        } else {
            let mut statements = settings.import.clone();
            statements.push(accept_all());
            Policy::Named(Arc::new(NamedPolicy {
                name: format!("{}-import", settings.filters),
                statements,
            }))
        };
        let export = if internal && settings.export.is_empty() {
            Policy::Accept
        } else {
            let mut statements = settings.export.clone();
            if internal {
                statements.push(accept_all());
            } else {
                statements.push(Statement {
                    conditions: Conditions {
                        prefix_list: Some(self.export_list.clone()),
                        ..Conditions::default()
                    },
                    verdict: Some(Verdict::Accept),
                    ..Statement::default()
                });
            }
            let name = if settings.filters.is_empty() {
                "weft-export".to_owned()
            } else {
                format!("{}-export", settings.filters)
            };
            Policy::Named(Arc::new(NamedPolicy { name, statements }))
        };
        let config = PeerConfig {
            address,
            asn,
            password: settings.password.clone(),
            families: vec![family],
            import,
            export,
            passive,
            hold_time: DEFAULT_HOLD_TIME,
            connect_retry_time: Duration::from_secs(DEFAULT_CONNECT_RETRY_TIME),
            max_prefix: settings.max_prefix,
            ttl_security: settings.ttl_security,
            multihop: None,
            source_address: if settings.use_node_address {
                self.me.address_for(address)
            } else {
                None
            },
            route_reflector_client: client && internal,
            send_hold_time: Duration::from_secs(DEFAULT_SEND_HOLD_TIME.max(2 * u64::from(DEFAULT_HOLD_TIME))),
            restart_time: settings.restart_time,
            // Calico: on eBGP sessions only (iBGP keeps a learned route's next hop anyway).
            next_hop_keep: settings.next_hop_keep && !internal,
            // Calico's resources have no field for either; one session per family.
            extended_next_hop: false,
            extended_messages: false,
            advertisement_interval: Duration::ZERO,
        };
        self.configs.insert(address, config);
        self.sources.insert(address, source.to_owned());
    }

    /// The sessions one `BGPPeer` gives this node.
    fn add_bgp_peer(
        &mut self,
        object: &str,
        spec: &BGPPeerSpec,
        nodes: &[Node],
        snapshot: &Snapshot,
    ) -> Result<(), Problem> {
        if let Err(problems) = spec.validate() {
            let (key, message) = problems.0.first().cloned().unwrap_or_default();
            return Err(Problem::new(object, key, message));
        }
        let selector = |key: &str, text: &Option<String>| -> Result<Option<Selector>, Problem> {
            text.as_deref()
                .map(Selector::parse)
                .transpose()
                .map_err(|error| Problem::new(object, key, error.to_string()))
        };
        let node_selector = selector("spec.nodeSelector", &spec.node_selector)?;
        let peer_selector = selector("spec.peerSelector", &spec.peer_selector)?;
        let applies = |node: &Node| match (&spec.node, &node_selector) {
            (Some(name), _) => *name == node.name,
            (None, Some(selector)) => selector.matches(&node.labels),
            (None, None) => true,
        };
        let settings = self.settings(object, spec, snapshot)?;
        let me = self.me;
        match (&spec.peer_ip, &peer_selector) {
            (Some(peer_ip), _) => {
                if !applies(me) {
                    return Ok(());
                }
                let address: IpAddr = peer_address(peer_ip)
                    .parse()
                    .map_err(|_| Problem::new(object, "spec.peerIP", format!("{peer_ip:?} is not an IP address")))?;
                if let Some(port) = peer_port(peer_ip)
                    && port != BGP_PORT
                {
                    return Err(Problem::new(
                        object,
                        "spec.peerIP",
                        format!("{peer_ip}: ports other than {BGP_PORT} are not supported yet"),
                    ));
                }
                if address.is_unspecified() || address.is_multicast() {
                    return Err(Problem::new(
                        object,
                        "spec.peerIP",
                        format!("{address} cannot be a peer"),
                    ));
                }
                if me.address_for(address).is_none() {
                    return Err(Problem::new(
                        object,
                        "spec.peerIP",
                        format!("{address}: this node has no BGP address of that family"),
                    ));
                }
                let asn = spec.as_number.unwrap_or_default();
                check_asn(object, "spec.asNumber", asn)?;
                // A peer that is a weft node is a node: its cluster id tells whether it is a client.
                let node = nodes.iter().find(|node| node.addresses().any(|a| a == address));
                let client =
                    me.cluster_id.is_some() && asn == me.asn && node.and_then(|node| node.cluster_id) != me.cluster_id;
                self.add(address, asn, false, client, object, Some(&settings));
            }
            (None, Some(peer_selector)) => {
                // This node peers with the selected nodes, and a selected node peers back.
                let forward = applies(me);
                let backward = peer_selector.matches(&me.labels);
                for other in nodes {
                    let selected = (forward && peer_selector.matches(&other.labels)) || (backward && applies(other));
                    if !selected {
                        continue;
                    }
                    for address in other.addresses() {
                        if me.address_for(address).is_some() {
                            self.add_node(other, address, true, object, Some(&settings));
                        }
                    }
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// The per-session settings of a `BGPPeer`, or the first key weft cannot do.
    fn settings(&self, object: &str, spec: &BGPPeerSpec, snapshot: &Snapshot) -> Result<Settings, Problem> {
        let password = match &spec.password {
            None => None,
            Some(source) => match (&source.file, &source.secret_key_ref) {
                (Some(path), _) => {
                    let bytes = match snapshot.password_files.get(path) {
                        Some(Ok(bytes)) => bytes.clone(),
                        Some(Err(error)) => {
                            return Err(Problem::new(object, "spec.password.file", format!("{path}: {error}")));
                        }
                        None => return Err(Problem::new(object, "spec.password.file", format!("{path}: not read"))),
                    };
                    let key = trim_line_end(&bytes);
                    if key.is_empty() || key.len() > crate::md5::MAX_KEY_LENGTH {
                        return Err(Problem::new(
                            object,
                            "spec.password.file",
                            format!("{path}: a TCP MD5 key is 1 to 80 octets, this is {}", key.len()),
                        ));
                    }
                    Some(Password(key.to_vec()))
                }
                (None, Some(secret)) => {
                    let key = "spec.password.secretKeyRef";
                    let namespace = super::SECRET_NAMESPACE;
                    let values = snapshot.secrets.get(&secret.name).ok_or_else(|| {
                        Problem::new(
                            object,
                            key,
                            format!("Secret {namespace}/{} does not exist", secret.name),
                        )
                    })?;
                    let value = values.get(&secret.key).ok_or_else(|| {
                        Problem::new(
                            object,
                            key,
                            format!("Secret {namespace}/{} has no key {:?}", secret.name, secret.key),
                        )
                    })?;
                    if value.is_empty() || value.len() > crate::md5::MAX_KEY_LENGTH {
                        return Err(Problem::new(
                            object,
                            key,
                            format!(
                                "Secret {namespace}/{} key {:?}: a TCP MD5 key is 1 to 80 octets, this is {}",
                                secret.name,
                                secret.key,
                                value.len()
                            ),
                        ));
                    }
                    Some(Password(value.clone()))
                }
                (None, None) => None,
            },
        };
        let restart_time = match spec.max_restart_time_seconds {
            None => None,
            Some(seconds @ 1..=4095) => u16::try_from(seconds).ok(),
            Some(seconds) => {
                return Err(Problem::new(
                    object,
                    "spec.maxRestartTimeSeconds",
                    format!("{seconds} is out of range: 1 to 4095 seconds (12 bits, RFC 4724 §3)"),
                ));
            }
        };
        let ttl_security = match spec.ttl_security {
            None | Some(0) => false,
            Some(1 | 2) => true,
            Some(hops) => {
                return Err(Problem::new(
                    object,
                    "spec.ttlSecurity",
                    format!("{hops} hops: GTSM is supported for peers at most 2 hops away"),
                ));
            }
        };
        let mut import = Vec::new();
        let mut export = Vec::new();
        for (i, name) in spec.filters.iter().enumerate() {
            let key = format!("spec.filters[{i}]");
            let filter = snapshot
                .filters
                .iter()
                .find(|filter| filter.metadata.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| Problem::new(object, &key, format!("BGPFilter {name:?} does not exist")))?;
            for (direction, statements) in [(Direction::Import, &mut import), (Direction::Export, &mut export)] {
                let more = filters::statements(&filter.spec, direction).map_err(|error| {
                    Problem::new(
                        object,
                        &key,
                        format!("BGPFilter/{name}: {}: {}", error.key, error.message),
                    )
                })?;
                statements.extend(more);
            }
        }
        Ok(Settings {
            password,
            restart_time,
            ttl_security,
            use_node_address: spec.source_address != Some(SourceAddress::None),
            import,
            export,
            filters: spec.filters.join("+"),
            max_prefix: spec.max_prefixes.map(|limit| MaxPrefix {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
                restart_time: None,
            }),
            next_hop_keep: spec.keep_original_next_hop,
        })
    }
}

/// The port of `peerIP` (`198.19.0.1:1179`, `[2001:db8::1]:1179`), if it gives one.
fn peer_port(peer_ip: &str) -> Option<u16> {
    let port = match peer_ip.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?.1,
        None => match peer_ip.rsplit_once(':') {
            Some((address, port)) if !address.contains(':') => port,
            _ => return None,
        },
    };
    port.parse().ok()
}

fn accept_all() -> Statement {
    Statement {
        verdict: Some(Verdict::Accept),
        ..Statement::default()
    }
}

/// A password file's contents without its final line end.
fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}
