//! LoadBalancer IPAM: gives `type: LoadBalancer` Services an address from the pools whose
//! `allowedUses` include `LoadBalancer`, and takes it back when the Service goes (DESIGN.md
//! "IPAM"; issue 7; what MetalLB and Calico's kube-controllers do on bare metal).
//!
//! One [`reconcile`] pass, safe to run on several nodes at once:
//! 1. **Release.** Every handle `lb.<namespace>.<name>[.<uid>]` whose Service is gone, was
//!    re-created (another uid), is no longer `type: LoadBalancer` or is no longer weft's (its
//!    `loadBalancerClass`) is released; if the Service is still there, the released addresses
//!    are first removed from its `status.loadBalancer.ingress` (status first, so a crash in
//!    between leaves a handle the next pass releases, never an ingress address nobody holds).
//! 2. **Assign.** Every Service of weft's (`type: LoadBalancer` with no `loadBalancerClass` or
//!    [`LOAD_BALANCER_CLASS`]) with no ingress gets one address per family of
//!    `spec.ipFamilies` (else the families of its cluster IPs, else IPv4) through the
//!    [`Allocator`] (affinity [`LOAD_BALANCER_NODE`], as Calico's `load-balancer` host), then
//!    `status.loadBalancer.ingress` by compare-and-swap on the Service. With
//!    `ipFamilyPolicy: PreferDualStack`, a family without a LoadBalancer pool is dropped;
//!    otherwise every family is required, all or nothing.
//!
//! Concurrency: every write is a compare-and-swap (blocks and handles inside the allocator, the
//! Service here). Two reconcilers that allocate for one Service at once use the same handle
//! and may each take an address; the Service's compare-and-swap lets exactly one ingress
//! through, and whoever loses (or any later pass) releases what the handle holds beyond the
//! ingress. An ingress, once written, is never replaced by this module.
//!
//! Not done (the Service is left pending, and the report says so): specific addresses asked
//! for with `spec.loadBalancerIP` or the [`ANNOTATION_LOAD_BALANCER_IPS`] annotation (the
//! allocator has no request for one given address yet). A Service whose ingress someone
//! else wrote is left alone.
//!
//! Owners: an allocation's owner is the Service its handle names (attributes `namespace`,
//! [`ATTRIBUTE_SERVICE`], [`ATTRIBUTE_UID`]); its `node` attribute is [`LOAD_BALANCER_NODE`],
//! which is no node, so the GC ([`crate::gc`]) must judge these handles by their Service and
//! leave their blocks' affinity alone.
//!
//! Never: replace an existing ingress, release an address still in a Service's ingress, write
//! without an expected revision.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use serde::Serialize;
use weft_api::resources::{AllowedUse, IPAMBlock, IPAMHandle, IPPool};
use weft_api::{Store, StoreError, StoreExt};

use crate::allocator::{Allocator, Assigned, Request};
use crate::block::Block;
use crate::error::IpamError;
use crate::names::block_name;
use crate::pools::{Family, select_pools};

/// The `spec.loadBalancerClass` of Services weft serves (besides those with none).
pub const LOAD_BALANCER_CLASS: &str = "weft.io/lb";
/// The affinity of LoadBalancer address blocks: no node's (Calico's `load-balancer` host).
pub const LOAD_BALANCER_NODE: &str = "load-balancer";
/// Handles of LoadBalancer addresses start with this: `lb.<namespace>.<name>[.<uid>]`.
pub const HANDLE_PREFIX: &str = "lb.";
/// Annotation asking for specific addresses (comma-separated), like MetalLB's and Calico's.
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "weft.io/loadBalancerIPs";
/// Allocation attribute naming the Service (with the allocator's `namespace`).
pub const ATTRIBUTE_SERVICE: &str = "service";
/// Allocation attribute holding the Service's uid, when it has one.
pub const ATTRIBUTE_UID: &str = "uid";

/// Attempts at writing one Service's status while others change it.
const ATTEMPTS: u32 = 8;

/// What one [`reconcile`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub assigned: Vec<Assignment>,
    pub released: Vec<Release>,
    pub pending: Vec<Pending>,
}

/// Addresses written into a Service's ingress by this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// `namespace/name`.
    pub service: String,
    pub addresses: Vec<IpAddr>,
}

/// Addresses given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// `namespace/name` of the Service the handle was for.
    pub service: String,
    pub handle: String,
    pub addresses: Vec<IpAddr>,
    pub reason: String,
}

/// A Service left without an address, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// `namespace/name`.
    pub service: String,
    pub reason: String,
}

/// Assigns and releases LoadBalancer addresses; see the module documentation.
pub async fn reconcile(store: &Arc<dyn Store>) -> Result<Report, IpamError> {
    let allocator = Allocator::new(Arc::clone(store));
    let mut report = Report::default();
    // Handles before Services: a handle listed here was taken for a Service that existed
    // before the Service list, so a Service missing from that list is really gone.
    let (handles, _) = store.list_as::<IPAMHandle>(None).await?;
    let (services, _) = store.list_as::<Service>(None).await?;
    release_orphans(&allocator, &handles, &services, &mut report).await?;

    let (pools, _) = store.list_as::<IPPool>(None).await?;
    for service in services.iter().filter(|service| is_ours(service)) {
        let name = service_name(service);
        let handle = handle_of(service);
        let ingress = ingress_ips(service);
        if has_ingress(service) {
            // Assigned already: drop what a lost race left on the handle.
            release_extras(&allocator, &name, &handle, &ingress, &mut report).await?;
            continue;
        }
        let requested = requested_addresses(service);
        if !requested.is_empty() {
            report.pending.push(Pending {
                service: name,
                reason: format!(
                    "asks for specific addresses ({}) through spec.loadBalancerIP or {ANNOTATION_LOAD_BALANCER_IPS}: \
                     not supported yet; remove the request to get an address from a LoadBalancer pool",
                    requested.join(", ")
                ),
            });
            continue;
        }
        let families = match families_to_allocate(service, &pools) {
            Ok(families) => families,
            Err(reason) => {
                report.pending.push(Pending { service: name, reason });
                continue;
            }
        };
        assign(&allocator, service.clone(), &families, &mut report).await?;
    }
    Ok(report)
}

/// True for a `type: LoadBalancer` Service weft serves (no class, or weft's).
pub fn is_ours(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer")
            && spec
                .load_balancer_class
                .as_deref()
                .is_none_or(|class| class == LOAD_BALANCER_CLASS)
    })
}

/// The handle of a Service's LoadBalancer addresses: `lb.<namespace>.<name>[.<uid>]`.
pub fn handle_of(service: &Service) -> String {
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    match service.metadata.uid.as_deref().filter(|uid| !uid.is_empty()) {
        Some(uid) => format!("{HANDLE_PREFIX}{namespace}.{name}.{uid}"),
        None => format!("{HANDLE_PREFIX}{namespace}.{name}"),
    }
}

fn service_name(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or_default(),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether `status.loadBalancer.ingress` has any entry (an address or a host name).
fn has_ingress(service: &Service) -> bool {
    ingress_entries(service).is_some_and(|entries| !entries.is_empty())
}

fn ingress_entries(service: &Service) -> Option<&Vec<LoadBalancerIngress>> {
    service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()
}

/// The addresses in `status.loadBalancer.ingress`.
pub fn ingress_ips(service: &Service) -> Vec<IpAddr> {
    ingress_entries(service)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ip.as_deref()?.trim().parse().ok())
        .collect()
}

/// Specific addresses the Service asks for (`spec.loadBalancerIP`, the annotation).
fn requested_addresses(service: &Service) -> Vec<String> {
    let from_spec = service
        .spec
        .as_ref()
        .and_then(|spec| spec.load_balancer_ip.as_deref())
        .into_iter();
    let from_annotation = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(ANNOTATION_LOAD_BALANCER_IPS))
        .into_iter()
        .flat_map(|list| list.split(','));
    let mut requested: Vec<String> = from_spec
        .chain(from_annotation)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
        .collect();
    requested.dedup();
    requested
}

/// The families a Service wants: `spec.ipFamilies`, else those of its cluster IPs, else IPv4.
pub fn families_of(service: &Service) -> Vec<Family> {
    let Some(spec) = &service.spec else {
        return vec![Family::V4];
    };
    let mut families: Vec<Family> = spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|family| match family.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect();
    if families.is_empty() {
        let cluster_ips = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
        families = cluster_ips
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| if ip.is_ipv4() { Family::V4 } else { Family::V6 })
            .collect();
    }
    let mut seen = BTreeSet::new();
    families.retain(|family| seen.insert(*family));
    if families.is_empty() {
        families.push(Family::V4);
    }
    families
}

/// The families to allocate, each with a usable LoadBalancer pool, or why there are none.
fn families_to_allocate(service: &Service, pools: &[IPPool]) -> Result<Vec<Family>, String> {
    let wanted = families_of(service);
    let has_pool = |family: Family| {
        select_pools(
            pools,
            family,
            LOAD_BALANCER_NODE,
            &BTreeMap::new(),
            &[],
            AllowedUse::LoadBalancer,
        )
        .is_ok()
    };
    let (usable, missing): (Vec<Family>, Vec<Family>) = wanted.iter().partition(|family| has_pool(**family));
    let prefer_dual_stack =
        service.spec.as_ref().and_then(|spec| spec.ip_family_policy.as_deref()) == Some("PreferDualStack");
    if missing.is_empty() || (prefer_dual_stack && !usable.is_empty()) {
        return Ok(usable);
    }
    let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
    Err(format!(
        "no enabled {} IPPool allows LoadBalancer addresses (allowedUses: [LoadBalancer], \
         nodeSelector empty or all())",
        missing.join(" or ")
    ))
}

/// One address per family from what `held` holds: the lowest, in the order of `families`.
fn choose(held: &[Assigned], families: &[Family]) -> Vec<IpAddr> {
    families
        .iter()
        .filter_map(|family| {
            held.iter()
                .map(|assigned| assigned.address)
                .filter(|address| Family::of(&ipnet::IpNet::from(*address)) == *family)
                .min()
        })
        .collect()
}

/// The Service with `addresses` as its whole ingress.
fn with_ingress(mut service: Service, addresses: &[IpAddr]) -> Service {
    let ingress: Vec<LoadBalancerIngress> = addresses
        .iter()
        .map(|address| LoadBalancerIngress {
            ip: Some(address.to_string()),
            ..LoadBalancerIngress::default()
        })
        .collect();
    let status = service.status.get_or_insert_with(ServiceStatus::default);
    let load_balancer = status.load_balancer.get_or_insert_with(LoadBalancerStatus::default);
    load_balancer.ingress = (!ingress.is_empty()).then_some(ingress);
    service
}

fn attributes_of(service: &Service) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    if let Some(namespace) = &service.metadata.namespace {
        attributes.insert(crate::gc::ATTRIBUTE_NAMESPACE.to_owned(), namespace.clone());
    }
    if let Some(name) = &service.metadata.name {
        attributes.insert(ATTRIBUTE_SERVICE.to_owned(), name.clone());
    }
    if let Some(uid) = &service.metadata.uid {
        attributes.insert(ATTRIBUTE_UID.to_owned(), uid.clone());
    }
    attributes
}

/// Allocates for one Service and writes its ingress; see the module documentation.
async fn assign(
    allocator: &Allocator,
    service: Service,
    families: &[Family],
    report: &mut Report,
) -> Result<(), IpamError> {
    let store = allocator.store();
    let name = service_name(&service);
    let handle = handle_of(&service);
    let request = Request {
        node: LOAD_BALANCER_NODE.to_owned(),
        handle: handle.clone(),
        ipv4: usize::from(families.contains(&Family::V4)),
        ipv6: usize::from(families.contains(&Family::V6)),
        pools: Vec::new(),
        attributes: attributes_of(&service),
        allowed_use: AllowedUse::LoadBalancer,
        reserve_gateway: false,
    };
    let mut current = service;
    for _ in 0..ATTEMPTS {
        let held = match allocator.allocate(&request).await {
            Ok(held) => held,
            Err(IpamError::Store(error)) => return Err(error.into()),
            Err(error) => {
                report.pending.push(Pending {
                    service: name,
                    reason: error.to_string(),
                });
                return Ok(());
            }
        };
        let chosen = choose(&held, families);
        match store.update_as(&with_ingress(current.clone(), &chosen)).await {
            Ok(written) => {
                if ingress_ips(&written) != chosen {
                    // The Kubernetes API server keeps status only through the status
                    // subresource; a store that drops it must not make us loop.
                    report.pending.push(Pending {
                        service: name,
                        reason: format!(
                            "the store ({}) did not keep status.loadBalancer.ingress",
                            store.describe()
                        ),
                    });
                    return Ok(());
                }
                tracing::info!(service = %name, addresses = ?chosen, "assigned load balancer addresses");
                report.assigned.push(Assignment {
                    service: name.clone(),
                    addresses: chosen.clone(),
                });
                release_extras(allocator, &name, &handle, &chosen, report).await?;
                return Ok(());
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        // Someone else wrote the Service meanwhile: see what it is now.
        let now = store
            .get_as::<Service>(
                current.metadata.namespace.as_deref(),
                current.metadata.name.as_deref().unwrap_or_default(),
            )
            .await?;
        match now {
            Some(now) if handle_of(&now) != handle => {}
            // No longer ours: the next pass clears whatever ingress it has and releases.
            Some(now) if !is_ours(&now) => return Ok(()),
            Some(now) if has_ingress(&now) => {
                // Another reconciler won: keep its choice, drop what we took beyond it.
                release_extras(allocator, &name, &handle, &ingress_ips(&now), report).await?;
                return Ok(());
            }
            Some(now) => {
                current = now;
                continue;
            }
            None => {}
        }
        // Deleted or re-created (another uid): what we took is nobody's.
        let addresses = allocator.release_handle(&handle).await?;
        if !addresses.is_empty() {
            report.released.push(Release {
                service: name,
                handle,
                addresses,
                reason: "the service was deleted while it was being assigned".into(),
            });
        }
        return Ok(());
    }
    report.pending.push(Pending {
        service: name,
        reason: format!("the service kept changing; gave up after {ATTEMPTS} attempts, the next pass retries"),
    });
    Ok(())
}

/// Releases what `handle` holds beyond `keep` (left by a reconciler that lost the race).
async fn release_extras(
    allocator: &Allocator,
    service: &str,
    handle: &str,
    keep: &[IpAddr],
    report: &mut Report,
) -> Result<(), IpamError> {
    let held = allocator.addresses_of(handle).await?;
    let extras: Vec<&Assigned> = held.iter().filter(|a| !keep.contains(&a.address)).collect();
    if extras.is_empty() {
        return Ok(());
    }
    let mut released = Vec::new();
    for extra in extras {
        // Release that allocation only (its sequence number), never the address handed out
        // again meanwhile.
        let Some(stored) = allocator
            .store()
            .get_as::<IPAMBlock>(None, &block_name(&extra.block))
            .await?
        else {
            continue;
        };
        let sequence = Block::from_spec(stored.spec)?
            .held()
            .into_iter()
            .find(|h| h.address == extra.address && h.handle == handle)
            .map(|h| h.sequence);
        if let Some(sequence) = sequence
            && allocator.release_address(extra.address, Some(sequence)).await?
        {
            released.push(extra.address);
        }
    }
    if !released.is_empty() {
        tracing::info!(%service, %handle, addresses = ?released, "released surplus load balancer addresses");
        report.released.push(Release {
            service: service.to_owned(),
            handle: handle.to_owned(),
            addresses: released,
            reason: "held beyond the service's ingress (a concurrent assignment lost)".into(),
        });
    }
    Ok(())
}

/// Releases the handles of Services that are gone or no longer weft's LoadBalancers.
async fn release_orphans(
    allocator: &Allocator,
    handles: &[IPAMHandle],
    services: &[Service],
    report: &mut Report,
) -> Result<(), IpamError> {
    let store = allocator.store();
    let by_handle: BTreeMap<String, &Service> = services.iter().map(|s| (handle_of(s), s)).collect();
    for stored in handles {
        let handle = stored.spec.handle_id.clone();
        if !handle.starts_with(HANDLE_PREFIX) {
            continue;
        }
        let (service, reason) = match by_handle.get(&handle) {
            Some(service) if is_ours(service) => continue,
            Some(service) => (service_name(service), "the service is no longer a weft LoadBalancer"),
            None => (
                service_of_handle(&handle),
                "the service is gone (or was re-created with another uid)",
            ),
        };
        if let Some(current) = by_handle.get(&handle) {
            let held: Vec<IpAddr> = allocator
                .addresses_of(&handle)
                .await?
                .iter()
                .map(|a| a.address)
                .collect();
            if !clear_ingress(store, current, &handle, &held).await? {
                continue; // it became a weft LoadBalancer again meanwhile
            }
        } else if let Some((namespace, name)) = service_key_of_handle(&handle)
            && store
                .get_as::<Service>(Some(namespace), name)
                .await?
                .is_some_and(|now| is_ours(&now) && handle_of(&now) == handle)
        {
            continue; // (re-)created since the list: its handle is in use again
        }
        let addresses = allocator.release_handle(&handle).await?;
        tracing::info!(%service, %handle, addresses = ?addresses, %reason, "released load balancer addresses");
        report.released.push(Release {
            service,
            handle,
            addresses,
            reason: reason.into(),
        });
    }
    Ok(())
}

/// The namespace and name a handle was made for (Kubernetes namespaces and Service names
/// hold no dots; a file-store name that does only makes this look-up miss).
fn service_key_of_handle(handle: &str) -> Option<(&str, &str)> {
    let mut parts = handle.strip_prefix(HANDLE_PREFIX)?.splitn(3, '.');
    Some((parts.next()?, parts.next()?))
}

/// `namespace/name` read back from a handle (for the report).
fn service_of_handle(handle: &str) -> String {
    match service_key_of_handle(handle) {
        Some((namespace, name)) => format!("{namespace}/{name}"),
        None => handle.to_owned(),
    }
}

/// Removes `addresses` from a Service's ingress, by compare-and-swap (re-read on conflict).
/// False when, re-read, the Service is a weft LoadBalancer of `handle` again: keep it all.
async fn clear_ingress(
    store: &Arc<dyn Store>,
    service: &Service,
    handle: &str,
    addresses: &[IpAddr],
) -> Result<bool, IpamError> {
    let namespace = service.metadata.namespace.as_deref();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let mut current = service.clone();
    for _ in 0..ATTEMPTS {
        if is_ours(&current) && handle_of(&current) == handle {
            return Ok(false);
        }
        let Some(entries) = ingress_entries(&current) else {
            return Ok(true);
        };
        let kept: Vec<LoadBalancerIngress> = entries
            .iter()
            .filter(|entry| {
                entry
                    .ip
                    .as_deref()
                    .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
                    .is_none_or(|ip| !addresses.contains(&ip))
            })
            .cloned()
            .collect();
        if kept.len() == entries.len() {
            return Ok(true);
        }
        let mut updated = current.clone();
        if let Some(load_balancer) = updated.status.as_mut().and_then(|s| s.load_balancer.as_mut()) {
            load_balancer.ingress = (!kept.is_empty()).then_some(kept);
        }
        match store.update_as(&updated).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(true),
            Err(StoreError::Conflict { .. }) => match store.get_as::<Service>(namespace, name).await? {
                Some(now) => current = now,
                None => return Ok(true),
            },
            Err(error) => return Err(error.into()),
        }
    }
    Err(IpamError::Contention {
        object: format!("Service {}", service_name(service)),
        attempts: ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_load_balancers_without_a_class_or_with_weft_s_are_ours() {
        let of = |spec: serde_json::Value| is_ours(&service(json!({"metadata": {"name": "a"}, "spec": spec})));
        assert!(of(json!({"type": "LoadBalancer"})));
        assert!(of(
            json!({"type": "LoadBalancer", "loadBalancerClass": LOAD_BALANCER_CLASS})
        ));
        assert!(!of(
            json!({"type": "LoadBalancer", "loadBalancerClass": "metallb.io/metallb"})
        ));
        assert!(!of(json!({"type": "ClusterIP"})));
        assert!(!of(json!({})));
    }

    #[test]
    fn handles_name_the_service_and_its_uid() {
        let with_uid = service(json!({"metadata": {"name": "web", "namespace": "shop", "uid": "0b6c-11"}}));
        assert_eq!(handle_of(&with_uid), "lb.shop.web.0b6c-11");
        let without = service(json!({"metadata": {"name": "web", "namespace": "shop"}}));
        assert_eq!(handle_of(&without), "lb.shop.web");
        assert_eq!(service_of_handle("lb.shop.web.0b6c-11"), "shop/web");
    }

    #[test]
    fn families_come_from_ip_families_then_cluster_ips_then_ipv4() {
        let of = |spec: serde_json::Value| families_of(&service(json!({"metadata": {"name": "a"}, "spec": spec})));
        assert_eq!(of(json!({"ipFamilies": ["IPv6", "IPv4"]})), [Family::V6, Family::V4]);
        assert_eq!(of(json!({"clusterIPs": ["2001:db8::a"]})), [Family::V6]);
        assert_eq!(of(json!({"clusterIP": "None"})), [Family::V4]);
        assert_eq!(of(json!({})), [Family::V4]);
    }

    #[test]
    fn requested_addresses_come_from_the_spec_and_the_annotation() {
        let asked = service(json!({
            "metadata": {"name": "a", "annotations": {ANNOTATION_LOAD_BALANCER_IPS: "198.18.9.1, 2001:db8::9"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "198.18.9.1"},
        }));
        assert_eq!(requested_addresses(&asked), ["198.18.9.1", "2001:db8::9"]);
    }

    #[test]
    fn the_lowest_address_of_each_family_is_chosen_in_family_order() {
        let held = |address: &str| Assigned {
            address: address.parse().unwrap(),
            block: ipnet::IpNet::from(address.parse::<IpAddr>().unwrap()),
        };
        let all = [held("198.18.9.5"), held("2001:db8::2"), held("198.18.9.3")];
        assert_eq!(
            choose(&all, &[Family::V6, Family::V4]),
            ["2001:db8::2".parse::<IpAddr>().unwrap(), "198.18.9.3".parse().unwrap()]
        );
    }
}
