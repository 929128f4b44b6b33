//! The pod's data path through rtnetlink: a veth pair whose host side stays in the network
//! namespace the plugin runs in and whose peer becomes the pod's interface; /32 and /128
//! addresses; a link-scope route to 169.254.1.1 (answered by a permanent neighbour entry for
//! the host veth's MAC and by proxy ARP) and a default route through it; an IPv6 default route
//! through the host veth's link-local address; host routes to the pod; proxy ARP, proxy NDP and
//! forwarding on the host.
//!
//! The pod side is configured from a thread of its own that enters the pod's namespace by file
//! descriptor (`setns`) and opens a netlink socket there; no thread of the caller's runtime ever
//! changes namespace.
//!
//! [`setup`] is repeatable: an attachment that [`inspect`] finds intact is left alone; a
//! damaged or half-made one is removed and made again (same names, same MACs, so the same
//! result).
//!
//! Must never: decide addresses (the caller allocates), touch an interface that is not the
//! attachment's, or fail teardown for something already gone.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// The pod's IPv4 gateway: never on the wire, answered by the host veth.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The host side's MAC (as Calico's): the same on every veth, so the pod's neighbour entry and
/// the result never change for a repeated ADD.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// How long the host veth's link-local address may take to appear.
const LINK_LOCAL_WAIT: Duration = Duration::from_secs(3);

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

/// What one attachment needs in the kernel.
#[derive(Debug, Clone)]
pub struct Plan {
    pub netns: PathBuf,
    pub host_ifname: String,
    pub pod_ifname: String,
    pub pod_mac: [u8; 6],
    pub mtu: Option<u32>,
    pub addresses: Vec<IpAddr>,
}

/// What the kernel gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The host veth's link-local address, the pod's IPv6 gateway (when it has IPv6).
    pub host_link_local: Option<Ipv6Addr>,
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn connect() -> Result<Handle, DataplaneError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(DataplaneError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

fn open_netns(path: &Path) -> Result<File, DataplaneError> {
    File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DataplaneError::NetnsMissing { path: path.to_owned() },
        _ => DataplaneError::Netns {
            path: path.to_owned(),
            source,
        },
    })
}

/// Runs `work` with a netlink handle inside the namespace at `path`, on a thread of its own.
async fn in_netns<T, F, Fut>(path: &Path, work: F) -> Result<T, DataplaneError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, DataplaneError>>,
{
    let file = open_netns(path)?;
    let path = path.to_owned();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let outcome = (|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| DataplaneError::Netns {
                path: path.clone(),
                source: errno.into(),
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DataplaneError::Connect)?;
            runtime.block_on(async move { work(connect()?).await })
        })();
        let _ = sender.send(outcome);
    });
    receiver
        .await
        .map_err(|_| DataplaneError::Missing("the namespace thread ended without an answer".into()))?
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

fn write_sysctl(path: &str, value: &str) -> Result<(), DataplaneError> {
    std::fs::write(path, value).map_err(|source| DataplaneError::Sysctl {
        path: path.to_owned(),
        source,
    })
}

/// Creates the attachment. On failure it removes the veth again (nothing half made stays).
pub async fn setup(plan: &Plan) -> Result<Made, DataplaneError> {
    let handle = connect()?;
    // A repeated ADD of an intact attachment changes nothing (the pod keeps its traffic).
    if let Ok((problems, host_link_local)) = inspect_with(&handle, plan).await
        && problems.is_empty()
    {
        return Ok(Made { host_link_local });
    }
    // One that died halfway, or whose pieces were damaged: start from nothing.
    teardown_host(&handle, &plan.host_ifname).await?;
    let made = setup_inner(&handle, plan).await;
    if made.is_err()
        && let Err(error) = teardown_host(&handle, &plan.host_ifname).await
    {
        tracing::warn!(%error, host = %plan.host_ifname, "cannot remove the veth of a failed ADD");
    }
    made
}

async fn setup_inner(handle: &Handle, plan: &Plan) -> Result<Made, DataplaneError> {
    let netns = open_netns(&plan.netns)?;
    let wants_v6 = plan.addresses.iter().any(IpAddr::is_ipv6);
    let wants_v4 = plan.addresses.iter().any(IpAddr::is_ipv4);
    // The peer's temporary name on the host, until it is moved and renamed.
    let peer = format!("wfp{}", &plan.host_ifname[3..]);
    let mut veth = LinkVeth::new(&plan.host_ifname, &peer).address(HOST_MAC.to_vec());
    if let Some(mtu) = plan.mtu {
        veth = veth.mtu(mtu);
    }
    handle
        .link()
        .add(veth.build())
        .execute()
        .await
        .map_err(kernel(format!("create veth {} and {peer}", plan.host_ifname)))?;
    let host = link_by_name(handle, &plan.host_ifname)
        .await?
        .ok_or_else(|| DataplaneError::Missing(format!("veth {} vanished after it was made", plan.host_ifname)))?;
    let peer_link = link_by_name(handle, &peer)
        .await?
        .ok_or_else(|| DataplaneError::Missing(format!("veth peer {peer} vanished after it was made")))?;
    let host_index = host.header.index;

    // Host side sysctls, before the link comes up (no DAD on the host's link-local).
    let host_conf = |family: &str, key: &str| format!("/proc/sys/net/{family}/conf/{}/{key}", plan.host_ifname);
    if wants_v4 {
        write_sysctl(&host_conf("ipv4", "proxy_arp"), "1")?;
        write_sysctl(
            &format!("/proc/sys/net/ipv4/neigh/{}/proxy_delay", plan.host_ifname),
            "0",
        )?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    }
    if wants_v6 {
        write_sysctl(&host_conf("ipv6", "accept_dad"), "0")?;
        write_sysctl(&host_conf("ipv6", "proxy_ndp"), "1")?;
        write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(kernel(format!("bring {} up", plan.host_ifname)))?;

    // The peer into the pod, under its final name.
    let mut moved = LinkUnspec::new_with_index(peer_link.header.index)
        .setns_by_fd(netns.as_raw_fd())
        .name(plan.pod_ifname.clone())
        .address(plan.pod_mac.to_vec());
    if let Some(mtu) = plan.mtu {
        moved = moved.mtu(mtu);
    }
    handle
        .link()
        .set(moved.build())
        .execute()
        .await
        .map_err(kernel(format!(
            "move {peer} into {} as {}",
            plan.netns.display(),
            plan.pod_ifname
        )))?;

    let pod_ifname = plan.pod_ifname.clone();
    let addresses = plan.addresses.clone();
    in_netns(&plan.netns, move |pod| async move {
        configure_pod(&pod, &pod_ifname, &addresses).await
    })
    .await?;

    for address in &plan.addresses {
        let route = match address {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(*v4, 32)
                .output_interface(host_index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(*v6, 128)
                .output_interface(host_index)
                .build(),
        };
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(kernel(format!("add the host route to {address}")))?;
    }

    let host_link_local = if wants_v6 {
        let link_local = wait_for_link_local(handle, host_index, &plan.host_ifname).await?;
        let pod_ifname = plan.pod_ifname.clone();
        in_netns(&plan.netns, move |pod| async move {
            let index = pod_index(&pod, &pod_ifname).await?;
            let route = RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(link_local)
                .output_interface(index)
                .build();
            pod.route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(kernel(format!("add the pod's IPv6 default route via {link_local}")))
        })
        .await?;
        Some(link_local)
    } else {
        None
    };
    Ok(Made { host_link_local })
}

async fn pod_index(pod: &Handle, ifname: &str) -> Result<u32, DataplaneError> {
    Ok(link_by_name(pod, ifname)
        .await?
        .ok_or_else(|| DataplaneError::Missing(format!("{ifname} is not in the pod's namespace")))?
        .header
        .index)
}

/// Inside the pod: addresses, the way to 169.254.1.1, the default route, the link up.
async fn configure_pod(pod: &Handle, ifname: &str, addresses: &[IpAddr]) -> Result<(), DataplaneError> {
    let index = pod_index(pod, ifname).await?;
    pod.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(kernel(format!("bring {ifname} up")))?;
    for address in addresses {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        let mut request = pod.address().add(index, *address, prefix).replace();
        if address.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request
            .execute()
            .await
            .map_err(kernel(format!("add {address}/{prefix} to {ifname}")))?;
    }
    if addresses.iter().any(IpAddr::is_ipv4) {
        pod.neighbours()
            .add(index, IpAddr::V4(GATEWAY_V4))
            .link_layer_address(&HOST_MAC)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(kernel(format!("add the neighbour entry of {GATEWAY_V4}")))?;
        let to_gateway = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(GATEWAY_V4, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        pod.route()
            .add(to_gateway)
            .replace()
            .execute()
            .await
            .map_err(kernel(format!("add the link route to {GATEWAY_V4}")))?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(index)
            .build();
        pod.route()
            .add(default)
            .replace()
            .execute()
            .await
            .map_err(kernel(format!("add the default route via {GATEWAY_V4}")))?;
    }
    Ok(())
}

async fn link_local_of(handle: &Handle, index: u32) -> Result<Option<Ipv6Addr>, DataplaneError> {
    let mut addresses = handle.address().get().set_link_index_filter(index).execute();
    while let Some(message) = addresses.try_next().await.map_err(kernel("list addresses"))? {
        for attribute in &message.attributes {
            if let AddressAttribute::Address(IpAddr::V6(v6)) = attribute
                && v6.is_unicast_link_local()
            {
                return Ok(Some(*v6));
            }
        }
    }
    Ok(None)
}

async fn wait_for_link_local(handle: &Handle, index: u32, ifname: &str) -> Result<Ipv6Addr, DataplaneError> {
    let deadline = Instant::now() + LINK_LOCAL_WAIT;
    loop {
        if let Some(address) = link_local_of(handle, index).await? {
            return Ok(address);
        }
        if Instant::now() > deadline {
            return Err(DataplaneError::Missing(format!(
                "{ifname} has no IPv6 link-local address after {LINK_LOCAL_WAIT:?} (is IPv6 disabled on the host?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let handle = connect()?;
    teardown_host(&handle, host_ifname).await
}

/// What CHECK found wrong, one sentence each; empty: the attachment is as ADD made it.
pub async fn inspect(plan: &Plan) -> Result<Vec<String>, DataplaneError> {
    let handle = connect()?;
    Ok(inspect_with(&handle, plan).await?.0)
}

/// The problems CHECK reports, and the host veth's link-local address.
async fn inspect_with(handle: &Handle, plan: &Plan) -> Result<(Vec<String>, Option<Ipv6Addr>), DataplaneError> {
    let handle = handle.clone();
    let mut problems = Vec::new();
    let Some(host) = link_by_name(&handle, &plan.host_ifname).await? else {
        problems.push(format!("the host veth {} is missing", plan.host_ifname));
        return Ok((problems, None));
    };
    if !host.header.flags.contains(LinkFlags::Up) {
        problems.push(format!("the host veth {} is down", plan.host_ifname));
    }
    let host_index = host.header.index;
    let host_routes = list_routes(&handle).await?;
    for address in &plan.addresses {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        if !host_routes
            .iter()
            .any(|r| r.destination == Some((*address, prefix)) && r.oif == Some(host_index))
        {
            problems.push(format!(
                "the host route to {address}/{prefix} via {} is missing",
                plan.host_ifname
            ));
        }
    }
    let link_local = if plan.addresses.iter().any(IpAddr::is_ipv6) {
        link_local_of(&handle, host_index).await?
    } else {
        None
    };
    let pod_ifname = plan.pod_ifname.clone();
    let addresses = plan.addresses.clone();
    let pod_mac = plan.pod_mac;
    let pod_problems = in_netns(&plan.netns, move |pod| async move {
        let mut problems = Vec::new();
        let Some(link) = link_by_name(&pod, &pod_ifname).await? else {
            problems.push(format!("the pod has no interface {pod_ifname}"));
            return Ok(problems);
        };
        if !link.header.flags.contains(LinkFlags::Up) {
            problems.push(format!("{pod_ifname} in the pod is down"));
        }
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac.clone()),
            _ => None,
        });
        if mac.as_deref() != Some(&pod_mac[..]) {
            problems.push(format!(
                "{pod_ifname} in the pod does not have MAC {}",
                format_mac(&pod_mac)
            ));
        }
        let mut held = Vec::new();
        let mut listed = pod.address().get().set_link_index_filter(link.header.index).execute();
        while let Some(message) = listed.try_next().await.map_err(kernel("list the pod's addresses"))? {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(address) = attribute {
                    held.push((*address, message.header.prefix_len));
                }
            }
        }
        for address in &addresses {
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            if !held.contains(&(*address, prefix)) {
                problems.push(format!("{pod_ifname} in the pod lacks {address}/{prefix}"));
            }
        }
        let routes = list_routes(&pod).await?;
        let index = link.header.index;
        if addresses.iter().any(IpAddr::is_ipv4) {
            if !routes
                .iter()
                .any(|r| r.destination == Some((IpAddr::V4(GATEWAY_V4), 32)) && r.oif == Some(index))
            {
                problems.push(format!("the pod's link route to {GATEWAY_V4} is missing"));
            }
            if !routes.iter().any(|r| {
                r.destination.is_none_or(|(_, len)| len == 0) && r.gateway == Some(IpAddr::V4(GATEWAY_V4)) && r.v4
            }) {
                problems.push(format!("the pod's default route via {GATEWAY_V4} is missing"));
            }
        }
        if addresses.iter().any(IpAddr::is_ipv6)
            && !routes.iter().any(|r| {
                !r.v4
                    && r.destination.is_none_or(|(_, len)| len == 0)
                    && r.gateway.is_some()
                    && r.gateway == link_local.map(IpAddr::V6)
            })
        {
            problems.push("the pod's IPv6 default route via the host veth's link-local is missing".to_owned());
        }
        Ok(problems)
    })
    .await?;
    problems.extend(pod_problems);
    Ok((problems, link_local))
}

#[derive(Debug)]
struct SeenRoute {
    v4: bool,
    destination: Option<(IpAddr, u8)>,
    gateway: Option<IpAddr>,
    oif: Option<u32>,
}

fn seen(message: &RouteMessage, v4: bool) -> SeenRoute {
    let mut route = SeenRoute {
        v4,
        destination: None,
        gateway: None,
        oif: None,
    };
    let address = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(a) => {
                route.destination = address(a).map(|a| (a, message.header.destination_prefix_length))
            }
            RouteAttribute::Gateway(a) => route.gateway = address(a),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            _ => {}
        }
    }
    route
}

async fn list_routes(handle: &Handle) -> Result<Vec<SeenRoute>, DataplaneError> {
    let mut routes = Vec::new();
    let mut v4 = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(message) = v4.try_next().await.map_err(kernel("list IPv4 routes"))? {
        routes.push(seen(&message, true));
    }
    let mut v6 = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute();
    while let Some(message) = v6.try_next().await.map_err(kernel("list IPv6 routes"))? {
        routes.push(seen(&message, false));
    }
    Ok(routes)
}
