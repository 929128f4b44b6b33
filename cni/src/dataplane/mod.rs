//! The pod's data path through rtnetlink: a veth pair whose host side stays in the network
//! namespace the plugin runs in and whose peer is created directly in the pod's namespace as
//! the pod's interface; /32 and /128 addresses; a link-scope route to 169.254.1.1 (answered by
//! a permanent neighbour entry for the host veth's MAC and by proxy ARP) and a default route
//! through it; an IPv6 default route through the host veth's fixed link-local address
//! [`GATEWAY_V6`]; host routes to the pod; proxy ARP and forwarding on the host.
//!
//! Why it is shaped this way (each ADD is on a pod's start-up path):
//! - the peer is made inside the pod's namespace (`IFLA_NET_NS_FD` in the veth's peer), never
//!   moved there: moving a link between namespaces waits for an RCU grace period (15–40 ms
//!   measured here), creating it there does not;
//! - the host veth's link-local is ours (`addr_gen_mode` none, the address added without
//!   DAD), so no ADD waits for the kernel to make one, and the pod's neighbour entries for both
//!   gateways are permanent, so no first packet waits for ARP or NDP. No proxy NDP is needed:
//!   the pod only ever resolves the gateway, which the host veth really holds;
//! - requests that do not depend on each other's answers are pipelined on one socket per
//!   namespace (the kernel handles them in order), and the host and pod sides are configured
//!   at the same time.
//!
//! ADD comes in two halves so that the caller can allocate meanwhile: [`prepare`] builds
//! everything that needs no address, [`finish`] adds the addresses and host routes. It is
//! repeatable: an attachment that [`inspect`] finds intact is left alone; a damaged or
//! half-made one is removed and made again (same names, same MACs, so the same result). The
//! MTU is the configuration's or the uplink's ([`uplink`]).
//!
//! Must never: decide addresses (the caller allocates), touch an interface that is not the
//! attachment's, or fail teardown for something already gone.

mod inspect;
mod netns;
pub mod uplink;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use futures::future::{BoxFuture, try_join_all};
use futures::{TryFutureExt, TryStreamExt};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub use self::inspect::inspect;

/// The pod's IPv4 gateway: never on the wire, answered by the host veth.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The host side's MAC (as Calico's): the same on every veth, so the pod's neighbour entries
/// and the result never change for a repeated ADD.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's IPv6 gateway: the host veth's link-local, the EUI-64 address of [`HOST_MAC`]
/// (as Calico's), assigned by weft on every host veth.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("network namespace {path} does not exist")]
    NetnsMissing { path: PathBuf },
    #[error("cannot enter network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("the kernel refused to {operation}")]
    Kernel {
        operation: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot set {path}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Missing(String),
}

fn kernel(operation: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> DataplaneError {
    let operation = operation.into();
    move |source| DataplaneError::Kernel { operation, source }
}

/// What one attachment needs in the kernel, but its addresses.
#[derive(Debug, Clone)]
pub struct Plan {
    pub netns: PathBuf,
    pub host_ifname: String,
    pub pod_ifname: String,
    pub pod_mac: [u8; 6],
    /// The configured MTU; `None`: the uplink's ([`uplink`]).
    pub mtu: Option<u32>,
    /// The families the pod gets addresses of.
    pub ipv4: bool,
    pub ipv6: bool,
}

/// What the kernel holds after [`finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The MTU of both veth ends.
    pub mtu: u32,
}

/// An attachment after [`prepare`]: what [`finish`] completes once the addresses are known.
#[derive(Debug)]
pub struct Prepared {
    host: Handle,
    pod: Handle,
    netns_file: File,
    state: State,
}

#[derive(Debug)]
enum State {
    /// The host veth was there already: [`finish`] checks it and rebuilds it if damaged.
    Existing,
    /// Made by this call, everything but the addresses and the host routes.
    Fresh { host_index: u32, pod_index: u32, mtu: u32 },
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn prefix_len(address: &IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, DataplaneError> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(message))
            if message.raw_code() == -nix::libc::ENODEV || message.raw_code() == -nix::libc::ENOENT =>
        {
            Ok(None)
        }
        Err(source) => Err(kernel(format!("look up link {name}"))(source)),
    }
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

fn write_sysctl(path: &str, value: &str) -> Result<(), DataplaneError> {
    std::fs::write(path, value).map_err(|source| DataplaneError::Sysctl {
        path: path.to_owned(),
        source,
    })
}

/// Sets a host-wide switch only when it is off: a write of an unchanged value is not free for
/// every key (forwarding walks every interface).
fn ensure_sysctl(path: &str) -> Result<(), DataplaneError> {
    if std::fs::read_to_string(path).is_ok_and(|value| value.trim() == "1") {
        return Ok(());
    }
    write_sysctl(path, "1")
}

/// First half of ADD, which needs no address, so that it runs while the caller allocates:
/// the veth, both sides' sysctls, links up, the IPv6 gateway address, the pod's neighbour
/// entries and default routes. An attachment already there is left for [`finish`] to judge.
/// On failure nothing made here stays.
pub async fn prepare(plan: &Plan) -> Result<Prepared, DataplaneError> {
    let host = netns::host()?;
    let netns_file = netns::open(&plan.netns)?;
    let (pod, existing) = tokio::try_join!(
        netns::pod(&netns_file, &plan.netns),
        link_by_name(&host, &plan.host_ifname)
    )?;
    let state = if existing.is_some() {
        State::Existing
    } else {
        match build_base(&host, &pod, &netns_file, plan).await {
            Ok(state) => state,
            Err(error) => {
                undo(&host, plan).await;
                return Err(error);
            }
        }
    };
    Ok(Prepared {
        host,
        pod,
        netns_file,
        state,
    })
}

/// Second half of ADD: the pod's addresses and the host routes to them. A repeated ADD of an
/// intact attachment changes nothing (the pod keeps its traffic); a damaged or half-made one is
/// removed and made again. On failure nothing of the attachment stays.
pub async fn finish(prepared: Prepared, plan: &Plan, addresses: &[IpAddr]) -> Result<Made, DataplaneError> {
    let Prepared {
        host,
        pod,
        netns_file,
        state,
    } = prepared;
    let made = async {
        let (host_index, pod_index, mtu) = match state {
            State::Fresh {
                host_index,
                pod_index,
                mtu,
            } => (host_index, pod_index, mtu),
            State::Existing => {
                let inspection = inspect::inspect_with(&host, &pod, plan, addresses).await?;
                if inspection.problems.is_empty()
                    && let Some(mtu) = inspection.mtu
                {
                    return Ok(Made { mtu });
                }
                tracing::info!(host = %plan.host_ifname, problems = ?inspection.problems, "rebuilding a damaged attachment");
                teardown_host(&host, &plan.host_ifname).await?;
                match build_base(&host, &pod, &netns_file, plan).await? {
                    State::Fresh {
                        host_index,
                        pod_index,
                        mtu,
                    } => (host_index, pod_index, mtu),
                    State::Existing => unreachable!("build_base always makes a fresh attachment"),
                }
            }
        };
        tokio::try_join!(
            host_routes(&host, host_index, &plan.host_ifname, addresses),
            pod_addresses(&pod, pod_index, &plan.pod_ifname, addresses)
        )?;
        Ok(Made { mtu })
    }
    .await;
    if made.is_err() {
        undo(&host, plan).await;
    }
    made
}

/// Removes what a failed ADD made, and says so when even that fails.
async fn undo(host: &Handle, plan: &Plan) {
    if let Err(error) = teardown_host(host, &plan.host_ifname).await {
        tracing::warn!(%error, host = %plan.host_ifname, "cannot remove the veth of a failed ADD");
    }
}

/// Creates the veth with its peer directly in the pod, then configures both sides at once.
async fn build_base(host: &Handle, pod: &Handle, netns_file: &File, plan: &Plan) -> Result<State, DataplaneError> {
    let mtu = match plan.mtu {
        Some(mtu) => mtu,
        None => uplink::derive(host).await?,
    };
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(plan.pod_ifname.clone())
        .address(plan.pod_mac.to_vec())
        .mtu(mtu)
        .setns_by_fd(netns_file.as_raw_fd())
        .build();
    let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(plan.host_ifname.clone())
        .address(HOST_MAC.to_vec())
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    host.link().add(veth).execute().await.map_err(kernel(format!(
        "create veth {} with {} in {}",
        plan.host_ifname,
        plan.pod_ifname,
        plan.netns.display()
    )))?;
    let (host_index, pod_index) = tokio::try_join!(configure_host(host, plan), configure_pod(pod, plan))?;
    Ok(State::Fresh {
        host_index,
        pod_index,
        mtu,
    })
}

/// The host side: sysctls while the link is down (no address of the kernel's own making),
/// then, pipelined: up and the IPv6 gateway address. Returns the veth's index.
async fn configure_host(host: &Handle, plan: &Plan) -> Result<u32, DataplaneError> {
    let ifname = &plan.host_ifname;
    let index = link_by_name(host, ifname)
        .await?
        .ok_or_else(|| DataplaneError::Missing(format!("veth {ifname} vanished after it was made")))?
        .header
        .index;
    if plan.ipv4 {
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{ifname}/proxy_arp"), "1")?;
        write_sysctl(&format!("/proc/sys/net/ipv4/neigh/{ifname}/proxy_delay"), "0")?;
        ensure_sysctl("/proc/sys/net/ipv4/ip_forward")?;
    }
    if plan.ipv6 {
        // 1: no link-local of the kernel's; ours is added below, without DAD.
        write_sysctl(&format!("/proc/sys/net/ipv6/conf/{ifname}/addr_gen_mode"), "1")?;
        ensure_sysctl("/proc/sys/net/ipv6/conf/all/forwarding")?;
    }
    let up = host
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .map_err(kernel(format!("bring {ifname} up")));
    let gateway = async {
        if !plan.ipv6 {
            return Ok(());
        }
        let mut request = host.address().add(index, IpAddr::V6(GATEWAY_V6), 64).replace();
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        request
            .execute()
            .await
            .map_err(kernel(format!("add {GATEWAY_V6}/64 to {ifname}")))
    };
    tokio::try_join!(up, gateway)?;
    Ok(index)
}

/// The host routes to the pod's addresses, pipelined.
async fn host_routes(host: &Handle, index: u32, ifname: &str, addresses: &[IpAddr]) -> Result<(), DataplaneError> {
    try_join_all(addresses.iter().map(|address| {
        let route = match address {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(*v4, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(*v6, 128)
                .output_interface(index)
                .build(),
        };
        replace_route(host, route, format!("add the host route to {address} via {ifname}"))
    }))
    .await?;
    Ok(())
}

/// Adds (or replaces) `route`; `what` names it in the error.
fn replace_route(handle: &Handle, route: RouteMessage, what: String) -> BoxFuture<'_, Result<(), DataplaneError>> {
    Box::pin(handle.route().add(route).replace().execute().map_err(kernel(what)))
}

/// Inside the pod, pipelined: the link up, the gateways' neighbour entries, the link route to
/// 169.254.1.1 and the default routes (none needs the pod's own addresses). Returns the pod
/// interface's index.
async fn configure_pod(pod: &Handle, plan: &Plan) -> Result<u32, DataplaneError> {
    let ifname = &plan.pod_ifname;
    let index = link_by_name(pod, ifname)
        .await?
        .ok_or_else(|| DataplaneError::Missing(format!("{ifname} is not in the pod's namespace")))?
        .header
        .index;
    // Requests in the order the kernel must see them (it handles one socket's in order).
    let mut requests: Vec<BoxFuture<'_, Result<(), DataplaneError>>> = Vec::new();
    requests.push(Box::pin(
        pod.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .map_err(kernel(format!("bring {ifname} up"))),
    ));
    let mut gateways = Vec::new();
    if plan.ipv4 {
        gateways.push(IpAddr::V4(GATEWAY_V4));
    }
    if plan.ipv6 {
        gateways.push(IpAddr::V6(GATEWAY_V6));
    }
    for gateway in gateways {
        requests.push(Box::pin(
            pod.neighbours()
                .add(index, gateway)
                .link_layer_address(&HOST_MAC)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .map_err(kernel(format!("add the neighbour entry of {gateway}"))),
        ));
    }
    if plan.ipv4 {
        let to_gateway = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(GATEWAY_V4, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        requests.push(replace_route(
            pod,
            to_gateway,
            format!("add the link route to {GATEWAY_V4}"),
        ));
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(index)
            .build();
        requests.push(replace_route(
            pod,
            default,
            format!("add the default route via {GATEWAY_V4}"),
        ));
    }
    if plan.ipv6 {
        let default = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GATEWAY_V6)
            .output_interface(index)
            .build();
        requests.push(replace_route(
            pod,
            default,
            format!("add the pod's IPv6 default route via {GATEWAY_V6}"),
        ));
    }
    try_join_all(requests).await?;
    Ok(index)
}

/// The pod's own addresses (/32, /128 without DAD), pipelined.
async fn pod_addresses(pod: &Handle, index: u32, ifname: &str, addresses: &[IpAddr]) -> Result<(), DataplaneError> {
    try_join_all(addresses.iter().map(|address| {
        let prefix = prefix_len(address);
        let mut request = pod.address().add(index, *address, prefix).replace();
        if address.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request
            .execute()
            .map_err(kernel(format!("add {address}/{prefix} to {ifname}")))
    }))
    .await?;
    Ok(())
}

async fn teardown_host(handle: &Handle, host_ifname: &str) -> Result<bool, DataplaneError> {
    let Some(link) = link_by_name(handle, host_ifname).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(rtnetlink::Error::NetlinkError(message)) if message.raw_code() == -nix::libc::ENODEV => Ok(false),
        Err(source) => Err(kernel(format!("delete {host_ifname}"))(source)),
    }
}

/// Removes the attachment: the veth (its peer and every route through it go with it). Nothing
/// left to remove is success. Returns whether there was a veth.
pub async fn teardown(host_ifname: &str) -> Result<bool, DataplaneError> {
    let handle = netns::host()?;
    teardown_host(&handle, host_ifname).await
}

/// Gives up a prepared attachment (its allocation failed): removes the veth if this call made
/// it; an attachment that was there before is left for DEL.
pub async fn abandon(prepared: Prepared, plan: &Plan) {
    if matches!(prepared.state, State::Fresh { .. }) {
        undo(&prepared.host, plan).await;
    }
}

/// The door between the CNI verbs and the kernel: [`Kernel`] is the real one; unit tests of
/// the verbs' error paths use a test double. The real one is proven in network namespaces
/// (tests/plugin.rs), which no double replaces.
#[async_trait::async_trait]
pub trait Dataplane: Send + Sync {
    /// What [`Dataplane::prepare`] hands to [`Dataplane::finish`].
    type Prepared: Send;
    async fn prepare(&self, plan: &Plan) -> Result<Self::Prepared, DataplaneError>;
    async fn finish(&self, prepared: Self::Prepared, plan: &Plan, addresses: &[IpAddr])
    -> Result<Made, DataplaneError>;
    async fn abandon(&self, prepared: Self::Prepared, plan: &Plan);
    async fn teardown(&self, host_ifname: &str) -> Result<bool, DataplaneError>;
    async fn inspect(&self, plan: &Plan, addresses: &[IpAddr]) -> Result<Vec<String>, DataplaneError>;
}

/// The kernel's data path, through rtnetlink (this module's functions).
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

#[async_trait::async_trait]
impl Dataplane for Kernel {
    type Prepared = Prepared;

    async fn prepare(&self, plan: &Plan) -> Result<Prepared, DataplaneError> {
        prepare(plan).await
    }

    async fn finish(&self, prepared: Prepared, plan: &Plan, addresses: &[IpAddr]) -> Result<Made, DataplaneError> {
        finish(prepared, plan, addresses).await
    }

    async fn abandon(&self, prepared: Prepared, plan: &Plan) {
        abandon(prepared, plan).await
    }

    async fn teardown(&self, host_ifname: &str) -> Result<bool, DataplaneError> {
        teardown(host_ifname).await
    }

    async fn inspect(&self, plan: &Plan, addresses: &[IpAddr]) -> Result<Vec<String>, DataplaneError> {
        inspect(plan, addresses).await
    }
}
