//! CHECK's view of an attachment: every piece ADD made, looked up in the kernel, and one
//! sentence for each that is missing or wrong. Reads only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use super::{
    DataplaneError, GATEWAY_V4, GATEWAY_V6, Plan, format_mac, kernel, link_by_name, link_mtu, netns, prefix_len,
};

/// What [`inspect_with`] found.
pub(super) struct Inspection {
    /// One sentence per problem; empty: the attachment is as ADD made it.
    pub problems: Vec<String>,
    /// The host veth's MTU, when it exists.
    pub mtu: Option<u32>,
}

/// What CHECK found wrong, one sentence each; empty: the attachment is as ADD made it.
pub async fn inspect(plan: &Plan, addresses: &[IpAddr]) -> Result<Vec<String>, DataplaneError> {
    let host = netns::host()?;
    let netns_file = netns::open(&plan.netns)?;
    let pod = netns::pod(&netns_file, &plan.netns).await?;
    Ok(inspect_with(&host, &pod, plan, addresses).await?.problems)
}

pub(super) async fn inspect_with(
    host: &Handle,
    pod: &Handle,
    plan: &Plan,
    addresses: &[IpAddr],
) -> Result<Inspection, DataplaneError> {
    let (mut host_side, pod_side) =
        tokio::try_join!(inspect_host(host, plan, addresses), inspect_pod(pod, plan, addresses))?;
    let (mut problems, pod_mtu) = pod_side;
    if let (Some(host_mtu), Some(pod_mtu)) = (host_side.mtu, pod_mtu)
        && host_mtu != pod_mtu
    {
        problems.push(format!(
            "the pod's {} has MTU {pod_mtu}, the host veth {host_mtu}",
            plan.pod_ifname
        ));
    }
    host_side.problems.extend(problems);
    Ok(host_side)
}

async fn addresses_of(handle: &Handle, index: u32, what: &str) -> Result<Vec<(IpAddr, u8)>, DataplaneError> {
    let mut held = Vec::new();
    let mut listed = handle.address().get().set_link_index_filter(index).execute();
    while let Some(message) = listed.try_next().await.map_err(kernel(format!("list {what}")))? {
        for attribute in &message.attributes {
            if let AddressAttribute::Address(address) = attribute {
                held.push((*address, message.header.prefix_len));
            }
        }
    }
    Ok(held)
}

async fn inspect_host(host: &Handle, plan: &Plan, addresses: &[IpAddr]) -> Result<Inspection, DataplaneError> {
    let mut problems = Vec::new();
    let Some(link) = link_by_name(host, &plan.host_ifname).await? else {
        problems.push(format!("the host veth {} is missing", plan.host_ifname));
        return Ok(Inspection { problems, mtu: None });
    };
    if !link.header.flags.contains(LinkFlags::Up) {
        problems.push(format!("the host veth {} is down", plan.host_ifname));
    }
    let mtu = link_mtu(&link);
    if let Some(wanted) = plan.mtu
        && mtu != Some(wanted)
    {
        problems.push(format!("the host veth {} does not have MTU {wanted}", plan.host_ifname));
    }
    let index = link.header.index;
    let routes = list_routes(host).await?;
    for address in addresses {
        let prefix = prefix_len(address);
        if !routes
            .iter()
            .any(|r| r.destination == Some((*address, prefix)) && r.oif == Some(index))
        {
            problems.push(format!(
                "the host route to {address}/{prefix} via {} is missing",
                plan.host_ifname
            ));
        }
    }
    if plan.ipv6
        && !addresses_of(host, index, "the host veth's addresses")
            .await?
            .contains(&(IpAddr::V6(GATEWAY_V6), 64))
    {
        problems.push(format!(
            "the host veth {} lacks the pod's IPv6 gateway {GATEWAY_V6}",
            plan.host_ifname
        ));
    }
    Ok(Inspection { problems, mtu })
}

/// The pod side's problems and its interface's MTU.
async fn inspect_pod(
    pod: &Handle,
    plan: &Plan,
    addresses: &[IpAddr],
) -> Result<(Vec<String>, Option<u32>), DataplaneError> {
    let ifname = &plan.pod_ifname;
    let mut problems = Vec::new();
    let Some(link) = link_by_name(pod, ifname).await? else {
        problems.push(format!("the pod has no interface {ifname}"));
        return Ok((problems, None));
    };
    if !link.header.flags.contains(LinkFlags::Up) {
        problems.push(format!("{ifname} in the pod is down"));
    }
    let mac = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(mac) => Some(mac.clone()),
        _ => None,
    });
    if mac.as_deref() != Some(&plan.pod_mac[..]) {
        problems.push(format!(
            "{ifname} in the pod does not have MAC {}",
            format_mac(&plan.pod_mac)
        ));
    }
    let index = link.header.index;
    let held = addresses_of(pod, index, "the pod's addresses").await?;
    for address in addresses {
        let prefix = prefix_len(address);
        if !held.contains(&(*address, prefix)) {
            problems.push(format!("{ifname} in the pod lacks {address}/{prefix}"));
        }
    }
    let routes = list_routes(pod).await?;
    let is_default = |r: &SeenRoute| r.destination.is_none_or(|(_, len)| len == 0);
    if plan.ipv4 {
        if !routes
            .iter()
            .any(|r| r.destination == Some((IpAddr::V4(GATEWAY_V4), 32)) && r.oif == Some(index))
        {
            problems.push(format!("the pod's link route to {GATEWAY_V4} is missing"));
        }
        if !routes
            .iter()
            .any(|r| r.v4 && is_default(r) && r.gateway == Some(IpAddr::V4(GATEWAY_V4)))
        {
            problems.push(format!("the pod's default route via {GATEWAY_V4} is missing"));
        }
    }
    if plan.ipv6
        && !routes
            .iter()
            .any(|r| !r.v4 && is_default(r) && r.gateway == Some(IpAddr::V6(GATEWAY_V6)) && r.oif == Some(index))
    {
        problems.push(format!("the pod's IPv6 default route via {GATEWAY_V6} is missing"));
    }
    Ok((problems, link_mtu(&link)))
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
