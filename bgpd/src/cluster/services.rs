//! Which Service prefixes this node advertises (DESIGN.md "BGP", origination; Calico's
//! "Advertise Kubernetes service IP addresses"). Pure: Services, EndpointSlices and the
//! `BGPConfiguration` in, prefixes with their communities out.
//!
//! What a node advertises:
//!
//! | what                                   | policy `Cluster`        | policy `Local`                       |
//! | -------------------------------------- | ----------------------- | ------------------------------------ |
//! | `serviceClusterIPs` / `serviceExternalIPs` / `serviceLoadBalancerIPs` CIDRs | every node | every node     |
//! | cluster IP /32 (/128)                  | no (the CIDR covers it) | nodes with a ready local endpoint    |
//! | external IP /32 (/128)                 | every node              | nodes with a ready local endpoint    |
//! | LoadBalancer ingress IP /32 (/128)     | every node              | nodes with a ready local endpoint    |
//!
//! - "Local" is `externalTrafficPolicy: Local`; for cluster IPs `internalTrafficPolicy: Local`
//!   counts as well (as in Calico). External and LoadBalancer IPs follow
//!   `externalTrafficPolicy` only.
//! - A ready local endpoint is an endpoint of an EndpointSlice of the Service (same namespace,
//!   label `kubernetes.io/service-name`) whose `nodeName` is this node and whose
//!   `conditions.ready` is not false (Kubernetes reads a missing `ready` as true). When the
//!   last one goes, the host route is no longer in the result: the caller withdraws it.
//! - An address outside the configured range of its kind is never advertised, whatever the
//!   Service says: the ranges are the operator's allow-list.
//! - Dual stack: every `clusterIPs` entry, every external and ingress address, either family.
//! - LoadBalancer ingress addresses count only while the Service is `type: LoadBalancer`;
//!   `ExternalName` Services and headless cluster IPs (`None`) have nothing to advertise.
//! - Communities: every `prefixAdvertisements` entry whose CIDR contains (or equals) the
//!   prefix contributes its communities; names are resolved through `communities`. A value
//!   that is neither a known name nor a community (`AA:NN` standard, `AA:NN:MM` large) is left
//!   out (validation reports it when the configuration is written).
//!
//! Never: I/O, logging, a clock. An unparsable address or CIDR is skipped, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_api::resources::BGPConfigurationSpec;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service prefixes `node` advertises, each with the BGP communities to attach
/// (`"65000:100"` standard, `"65000:1:2"` large). No configuration: nothing.
pub fn advertised(
    config: Option<&BGPConfigurationSpec>,
    services: &[Service],
    slices: &[EndpointSlice],
    node: &str,
) -> BTreeMap<IpNet, BTreeSet<String>> {
    let Some(config) = config else {
        return BTreeMap::new();
    };
    let ranges = Ranges::of(config);
    let mut prefixes: BTreeSet<IpNet> = ranges.all().collect();
    for service in services {
        prefixes.extend(host_routes(service, &ranges, slices, node));
    }
    let communities = CommunityRules::of(config);
    prefixes
        .into_iter()
        .map(|prefix| (prefix, communities.for_prefix(&prefix)))
        .collect()
}

/// The configured ranges, parsed (an unparsable one is skipped).
#[derive(Debug, Default)]
struct Ranges {
    cluster: Vec<IpNet>,
    external: Vec<IpNet>,
    load_balancer: Vec<IpNet>,
}

impl Ranges {
    fn of(config: &BGPConfigurationSpec) -> Ranges {
        let parse = |list: &[weft_api::resources::ServiceCidr]| -> Vec<IpNet> {
            list.iter()
                .filter_map(|entry| entry.cidr.trim().parse::<IpNet>().ok())
                .map(|net| net.trunc())
                .collect()
        };
        Ranges {
            cluster: parse(&config.service_cluster_ips),
            external: parse(&config.service_external_ips),
            load_balancer: parse(&config.service_load_balancer_ips),
        }
    }

    fn all(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.cluster
            .iter()
            .chain(&self.external)
            .chain(&self.load_balancer)
            .copied()
    }
}

fn within(ranges: &[IpNet], address: &IpAddr) -> bool {
    ranges.iter().any(|range| range.contains(address))
}

fn addresses<'a>(texts: impl IntoIterator<Item = &'a String>) -> impl Iterator<Item = IpAddr> {
    texts.into_iter().filter_map(|text| text.trim().parse::<IpAddr>().ok())
}

/// The Service's cluster IPs: `clusterIPs` (dual stack), else `clusterIP`; none when headless.
fn cluster_ips(spec: &ServiceSpec) -> Vec<IpAddr> {
    let listed = spec.cluster_ips.as_deref().unwrap_or_default();
    if listed.is_empty() {
        addresses(spec.cluster_ip.iter()).collect()
    } else {
        addresses(listed).collect()
    }
}

/// The /32 (/128) host routes `service` contributes on `node`.
fn host_routes(service: &Service, ranges: &Ranges, slices: &[EndpointSlice], node: &str) -> Vec<IpNet> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return Vec::new();
    }
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    // Read the slices only when a policy needs them.
    let local = if external_local || internal_local {
        has_ready_local_endpoint(service, slices, node)
    } else {
        false
    };

    let mut routes = Vec::new();
    if (external_local || internal_local) && local {
        routes.extend(
            cluster_ips(spec)
                .into_iter()
                .filter(|address| within(&ranges.cluster, address)),
        );
    }
    if !external_local || local {
        routes
            .extend(addresses(spec.external_ips.iter().flatten()).filter(|address| within(&ranges.external, address)));
        if kind == "LoadBalancer" {
            let ingress = service
                .status
                .iter()
                .filter_map(|status| status.load_balancer.as_ref())
                .filter_map(|load_balancer| load_balancer.ingress.as_ref())
                .flatten()
                .filter_map(|ingress| ingress.ip.as_ref());
            routes.extend(addresses(ingress).filter(|address| within(&ranges.load_balancer, address)));
        }
    }
    routes.into_iter().map(IpNet::from).collect()
}

/// True when an EndpointSlice of `service` has an endpoint on `node` that is not unready.
fn has_ready_local_endpoint(service: &Service, slices: &[EndpointSlice], node: &str) -> bool {
    let Some(name) = service.metadata.name.as_deref() else {
        return false;
    };
    let namespace = service.metadata.namespace.as_deref();
    slices
        .iter()
        .filter(|slice| {
            slice.metadata.namespace.as_deref() == namespace
                && slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
                    .is_some_and(|owner| owner == name)
        })
        .flat_map(|slice| &slice.endpoints)
        .any(|endpoint| {
            endpoint.node_name.as_deref() == Some(node)
                && endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false)
        })
}

/// `prefixAdvertisements` with names resolved: (CIDR, community values).
#[derive(Debug, Default)]
struct CommunityRules {
    rules: Vec<(IpNet, Vec<String>)>,
}

impl CommunityRules {
    fn of(config: &BGPConfigurationSpec) -> CommunityRules {
        let named: BTreeMap<&str, &str> = config
            .communities
            .iter()
            .map(|community| (community.name.as_str(), community.value.as_str()))
            .collect();
        let resolve = |text: &String| -> Option<String> {
            let value = named.get(text.as_str()).copied().unwrap_or(text.as_str()).trim();
            is_community(value).then(|| value.to_owned())
        };
        let rules = config
            .prefix_advertisements
            .iter()
            .filter_map(|advertisement| {
                let cidr = advertisement.cidr.trim().parse::<IpNet>().ok()?.trunc();
                Some((cidr, advertisement.communities.iter().filter_map(resolve).collect()))
            })
            .collect();
        CommunityRules { rules }
    }

    fn for_prefix(&self, prefix: &IpNet) -> BTreeSet<String> {
        self.rules
            .iter()
            .filter(|(cidr, _)| cidr.contains(prefix))
            .flat_map(|(_, values)| values.iter().cloned())
            .collect()
    }
}

/// `AA:NN` with 16-bit parts (RFC 1997) or `AA:NN:MM` with 32-bit parts (RFC 8092).
fn is_community(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.len() {
        2 => parts.iter().all(|part| part.parse::<u16>().is_ok()),
        3 => parts.iter().all(|part| part.parse::<u32>().is_ok()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::{Value, json};

    const NODE: &str = "node-1";
    const OTHER: &str = "node-2";

    fn config(value: Value) -> BGPConfigurationSpec {
        serde_json::from_value(value).unwrap()
    }

    /// Cluster IPs 198.19.128.0/20 and 2001:db8:5::/112, external IPs 198.19.200.0/24,
    /// LoadBalancer IPs 198.19.240.0/24 and 2001:db8:6::/112.
    fn ranges() -> BGPConfigurationSpec {
        config(json!({
            "serviceClusterIPs": [{"cidr": "198.19.128.0/20"}, {"cidr": "2001:db8:5::/112"}],
            "serviceExternalIPs": [{"cidr": "198.19.200.0/24"}],
            "serviceLoadBalancerIPs": [{"cidr": "198.19.240.0/24"}, {"cidr": "2001:db8:6::/112"}],
        }))
    }

    fn service(name: &str, spec: Value, ingress: &[&str]) -> Service {
        let ingress: Vec<Value> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    /// A slice of service `owner` in namespace `shop` with endpoints (node, ready).
    fn slice(name: &str, owner: &str, endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .enumerate()
            .map(|(i, (node, ready))| {
                let mut endpoint = json!({"addresses": [format!("198.18.0.{}", i + 10)], "nodeName": node});
                if let Some(ready) = ready {
                    endpoint["conditions"] = json!({"ready": ready});
                }
                endpoint
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {SERVICE_NAME_LABEL: owner}},
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn prefixes(result: &BTreeMap<IpNet, BTreeSet<String>>) -> Vec<String> {
        result.keys().map(ToString::to_string).collect()
    }

    fn the_ranges() -> Vec<&'static str> {
        vec![
            "198.19.128.0/20",
            "198.19.200.0/24",
            "198.19.240.0/24",
            "2001:db8:5::/112",
            "2001:db8:6::/112",
        ]
    }

    fn with(extra: &[&'static str]) -> Vec<String> {
        let mut all: Vec<IpNet> = the_ranges().into_iter().chain(extra.iter().copied()).map(net).collect();
        all.sort();
        all.dedup();
        all.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn without_a_configuration_nothing_is_advertised() {
        let local = service(
            "web",
            json!({"type": "LoadBalancer", "clusterIP": "198.19.128.10", "externalTrafficPolicy": "Local"}),
            &["198.19.240.1"],
        );
        let slices = [slice("web-1", "web", &[(NODE, Some(true))])];
        assert!(advertised(None, &[local], &slices, NODE).is_empty());
    }

    #[test]
    fn the_configured_ranges_are_advertised_from_every_node_even_without_services() {
        let config = ranges();
        for node in [NODE, OTHER] {
            assert_eq!(prefixes(&advertised(Some(&config), &[], &[], node)), with(&[]));
        }
    }

    #[test]
    fn unparsable_ranges_are_skipped_and_host_bits_are_cleared() {
        let config = config(json!({
            "serviceClusterIPs": [{"cidr": "not-a-cidr"}, {"cidr": "198.19.128.7/20"}],
        }));
        assert_eq!(
            prefixes(&advertised(Some(&config), &[], &[], NODE)),
            ["198.19.128.0/20"]
        );
    }

    #[test]
    fn a_cluster_policy_service_adds_no_cluster_ip_host_route() {
        let web = service("web", json!({"clusterIP": "198.19.128.10"}), &[]);
        let slices = [slice("web-1", "web", &[(NODE, Some(true))])];
        assert_eq!(prefixes(&advertised(Some(&ranges()), &[web], &slices, NODE)), with(&[]));
    }

    #[test]
    fn a_local_service_cluster_ip_is_advertised_only_from_nodes_with_a_ready_local_endpoint() {
        let web = service(
            "web",
            json!({"type": "NodePort", "clusterIP": "198.19.128.10", "externalTrafficPolicy": "Local"}),
            &[],
        );
        let slices = [slice("web-1", "web", &[(NODE, Some(true))])];
        let services = [web];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &slices, NODE)),
            with(&["198.19.128.10/32"])
        );
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &slices, OTHER)),
            with(&[]),
            "node-2 has no endpoint of web"
        );
    }

    #[test]
    fn internal_traffic_policy_local_localises_the_cluster_ip_but_not_external_ips() {
        let web = service(
            "web",
            json!({
                "clusterIP": "198.19.128.10",
                "externalIPs": ["198.19.200.5"],
                "internalTrafficPolicy": "Local",
            }),
            &[],
        );
        let slices = [slice("web-1", "web", &[(NODE, None)])];
        let services = [web];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &slices, NODE)),
            with(&["198.19.128.10/32", "198.19.200.5/32"])
        );
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &slices, OTHER)),
            with(&["198.19.200.5/32"]),
            "the external IP follows externalTrafficPolicy (Cluster): every node"
        );
    }

    #[test]
    fn when_the_last_local_endpoint_goes_the_host_routes_are_withdrawn() {
        let web = service(
            "web",
            json!({
                "type": "LoadBalancer",
                "clusterIP": "198.19.128.10",
                "externalIPs": ["198.19.200.5"],
                "externalTrafficPolicy": "Local",
            }),
            &["198.19.240.1"],
        );
        let services = [web];
        let two = [slice("web-1", "web", &[(NODE, Some(true)), (NODE, Some(true))])];
        let one = [slice("web-1", "web", &[(NODE, Some(true)), (OTHER, Some(true))])];
        let none = [slice("web-1", "web", &[(OTHER, Some(true))])];
        let hosts = ["198.19.128.10/32", "198.19.200.5/32", "198.19.240.1/32"];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &two, NODE)),
            with(&hosts)
        );
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &one, NODE)),
            with(&hosts)
        );
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &none, NODE)),
            with(&[]),
            "the endpoint moved to node-2: node-1 withdraws every host route of web"
        );
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &none, OTHER)),
            with(&hosts)
        );
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &[], NODE)),
            with(&[]),
            "no slice at all"
        );
    }

    #[test]
    fn a_not_ready_endpoint_does_not_count_and_a_missing_ready_condition_does() {
        let web = service(
            "web",
            json!({"type": "LoadBalancer", "clusterIP": "198.19.128.10", "externalTrafficPolicy": "Local"}),
            &["198.19.240.1"],
        );
        let services = [web];
        let not_ready = [slice("web-1", "web", &[(NODE, Some(false)), (OTHER, Some(true))])];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &not_ready, NODE)),
            with(&[])
        );
        let unknown = [slice("web-1", "web", &[(NODE, None)])];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &unknown, NODE)),
            with(&["198.19.128.10/32", "198.19.240.1/32"])
        );
        let split = [
            slice("web-1", "web", &[(NODE, Some(false))]),
            slice("web-2", "web", &[(NODE, Some(true))]),
        ];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &split, NODE)),
            with(&["198.19.128.10/32", "198.19.240.1/32"]),
            "any slice of the service may hold the ready endpoint"
        );
    }

    #[test]
    fn slices_of_other_services_or_namespaces_do_not_count() {
        let web = service(
            "web",
            json!({"clusterIP": "198.19.128.10", "externalTrafficPolicy": "Local"}),
            &[],
        );
        let services = [web];
        let other_service = [slice("db-1", "db", &[(NODE, Some(true))])];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &other_service, NODE)),
            with(&[])
        );
        let mut other_namespace = slice("web-1", "web", &[(NODE, Some(true))]);
        other_namespace.metadata.namespace = Some("staging".into());
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &[other_namespace], NODE)),
            with(&[])
        );
        let mut unlabelled = slice("web-1", "web", &[(NODE, Some(true))]);
        unlabelled.metadata.labels = None;
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &services, &[unlabelled], NODE)),
            with(&[])
        );
    }

    #[test]
    fn cluster_policy_load_balancer_and_external_ips_are_host_routes_from_every_node() {
        let web = service(
            "web",
            json!({"type": "LoadBalancer", "clusterIP": "198.19.128.10", "externalIPs": ["198.19.200.5"]}),
            &["198.19.240.1", "2001:db8:6::1"],
        );
        let services = [web];
        for node in [NODE, OTHER] {
            assert_eq!(
                prefixes(&advertised(Some(&ranges()), &services, &[], node)),
                with(&["198.19.200.5/32", "198.19.240.1/32", "2001:db8:6::1/128"])
            );
        }
    }

    #[test]
    fn addresses_outside_the_configured_ranges_are_never_advertised() {
        let web = service(
            "web",
            json!({
                "type": "LoadBalancer",
                "clusterIPs": ["198.18.200.10"],
                "externalIPs": ["198.18.201.5", "198.19.240.9"],
                "externalTrafficPolicy": "Local",
            }),
            // An external-range address as ingress does not count as a LoadBalancer IP.
            &["198.18.202.1", "198.19.200.7"],
        );
        let slices = [slice("web-1", "web", &[(NODE, Some(true))])];
        assert_eq!(prefixes(&advertised(Some(&ranges()), &[web], &slices, NODE)), with(&[]));
        let nothing_configured = config(json!({}));
        let open = service(
            "open",
            json!({"type": "LoadBalancer", "clusterIP": "198.19.128.10", "externalIPs": ["198.19.200.5"]}),
            &["198.19.240.1"],
        );
        assert!(advertised(Some(&nothing_configured), &[open], &[], NODE).is_empty());
    }

    #[test]
    fn dual_stack_services_advertise_every_cluster_ip() {
        let web = service(
            "web",
            json!({
                "type": "LoadBalancer",
                "clusterIP": "198.19.128.10",
                "clusterIPs": ["198.19.128.10", "2001:db8:5::a"],
                "ipFamilies": ["IPv4", "IPv6"],
                "externalTrafficPolicy": "Local",
            }),
            &["198.19.240.1", "2001:db8:6::1"],
        );
        let slices = [slice("web-1", "web", &[(NODE, Some(true))])];
        assert_eq!(
            prefixes(&advertised(Some(&ranges()), &[web], &slices, NODE)),
            with(&[
                "198.19.128.10/32",
                "2001:db8:5::a/128",
                "198.19.240.1/32",
                "2001:db8:6::1/128"
            ])
        );
    }

    #[test]
    fn headless_external_name_and_former_load_balancer_services_add_nothing() {
        let headless = service(
            "headless",
            json!({"clusterIP": "None", "clusterIPs": ["None"], "internalTrafficPolicy": "Local"}),
            &[],
        );
        let external_name = service(
            "alias",
            json!({"type": "ExternalName", "externalName": "example.invalid", "externalIPs": ["198.19.200.5"]}),
            &[],
        );
        // Was a LoadBalancer; the stale ingress left in its status is not advertised.
        let former = service(
            "former",
            json!({"type": "ClusterIP", "clusterIP": "198.19.128.11"}),
            &["198.19.240.1"],
        );
        let no_spec: Service =
            serde_json::from_value(json!({"metadata": {"name": "bare", "namespace": "shop"}})).unwrap();
        let slices = [
            slice("headless-1", "headless", &[(NODE, Some(true))]),
            slice("alias-1", "alias", &[(NODE, Some(true))]),
        ];
        assert_eq!(
            prefixes(&advertised(
                Some(&ranges()),
                &[headless, external_name, former, no_spec],
                &slices,
                NODE
            )),
            with(&[])
        );
    }

    #[test]
    fn communities_come_from_every_containing_prefix_advertisement_with_names_resolved() {
        let mut config = ranges();
        config.communities = serde_json::from_value(json!([
            {"name": "edge", "value": "65000:100"},
            {"name": "large", "value": "65000:1:2"},
        ]))
        .unwrap();
        config.prefix_advertisements = serde_json::from_value(json!([
            {"cidr": "198.19.240.0/24", "communities": ["edge", "65000:200"]},
            {"cidr": "198.19.240.1/32", "communities": ["large"]},
            {"cidr": "198.19.0.0/16", "communities": ["65001:1"]},
            {"cidr": "2001:db8::/32", "communities": ["65002:2", "no-such-name", "1:2:3:4"]},
            {"cidr": "not-a-cidr", "communities": ["65003:3"]},
        ]))
        .unwrap();
        let web = service(
            "web",
            json!({"type": "LoadBalancer", "clusterIP": "198.19.128.10"}),
            &["198.19.240.1", "2001:db8:6::1"],
        );
        let result = advertised(Some(&config), &[web], &[], NODE);
        let of = |prefix: &str| -> Vec<&str> { result[&net(prefix)].iter().map(String::as_str).collect() };
        assert_eq!(
            of("198.19.240.1/32"),
            ["65000:100", "65000:1:2", "65000:200", "65001:1"]
        );
        assert_eq!(of("198.19.240.0/24"), ["65000:100", "65000:200", "65001:1"]);
        assert_eq!(of("198.19.128.0/20"), ["65001:1"]);
        assert_eq!(
            of("2001:db8:6::1/128"),
            ["65002:2"],
            "unknown names and malformed values are left out; IPv4 rules never match IPv6"
        );
        assert_eq!(of("2001:db8:5::/112"), ["65002:2"]);
    }

    #[test]
    fn a_more_specific_prefix_advertisement_does_not_apply_to_the_wider_range() {
        let mut config = ranges();
        config.prefix_advertisements = serde_json::from_value(json!([
            {"cidr": "198.19.128.0/24", "communities": ["65000:7"]},
        ]))
        .unwrap();
        let result = advertised(Some(&config), &[], &[], NODE);
        assert!(result[&net("198.19.128.0/20")].is_empty());
    }

    #[test]
    fn communities_are_checked_by_their_form() {
        assert!(is_community("65000:100"));
        assert!(is_community("4200000000:1:2"));
        assert!(!is_community("70000:1"), "standard communities have 16-bit halves");
        assert!(!is_community("1:2:3:4"));
        assert!(!is_community("edge"));
    }
}
