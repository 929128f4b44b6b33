//! The CNI verbs of `weft-cni` (DESIGN.md "CNI"; CNI spec 1.1.0, results down to 0.3.1 by
//! rscni): ADD allocates through the ipam library and builds the data path ([`dataplane`]),
//! DEL undoes it and never fails for what is already gone, CHECK verifies the kernel state,
//! STATUS asks the store and the pools, GC releases attachments the runtime no longer knows.
//!
//! The handle of an attachment is `network.containerid.ifname`, as weft-ipam's. Allocations and
//! releases on one host are serialised by the same file lock weft-ipam takes; the data path of
//! each pod (its own veth and namespace) is built outside the lock, so pods set up in parallel. Errors are CNI error objects: 7
//! for a wrong configuration (naming the key), 4 for a missing variable, 11 when the store is
//! unreachable, 100 when the pools are exhausted, 110 when CHECK finds the attachment damaged,
//! 111 when the kernel refuses the data path.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use nix::fcntl::Flock;
use rscni_plugin::error::Error as CniError;
use rscni_plugin::types::{Args, CNIResult, Interface, IpConfig, Route};
use weft_api::resources::{AllowedUse, WorkloadEndpoint, WorkloadEndpointSpec};
use weft_api::{Key, Kind, Store, StoreError, StoreExt};
use weft_ipam::cni::config::parse_cni_args;
use weft_ipam::cni::{cni_error, lock_host, log_to_file, pools_usable, stale_attachments, valid_attachments};
use weft_ipam::gc::{ATTRIBUTE_CONTAINER, ATTRIBUTE_NAMESPACE, ATTRIBUTE_POD};
use weft_ipam::{Allocator, IpamError, Request};

use crate::config::{CniConfig, endpoint_name, host_interface_name, pod_mac};
use crate::dataplane::{self, DataplaneError, GATEWAY_V4, HOST_MAC, Plan, format_mac};

/// The allocation attribute naming the pod's interface (as weft-ipam's).
const ATTRIBUTE_IFNAME: &str = weft_ipam::cni::ATTRIBUTE_IFNAME;
/// CHECK found the attachment not as ADD made it.
pub const CODE_DAMAGED: u32 = 110;
/// The kernel refused part of the data path.
pub const CODE_KERNEL: u32 = 111;

/// The plugin. It keeps nothing between calls.
#[derive(Debug, Default)]
pub struct WeftCni;

fn store_error(error: StoreError) -> CniError {
    cni_error(IpamError::Store(error))
}

fn dataplane_error(error: DataplaneError) -> CniError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    match error {
        DataplaneError::NetnsMissing { .. } | DataplaneError::Netns { .. } => CniError::InvalidNetNS(message),
        _ => CniError::Custom(CODE_KERNEL, "cannot build the pod's data path".into(), message),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// One attachment: what ADD, DEL and CHECK agree on.
struct Attachment {
    container: String,
    ifname: String,
    handle: String,
    host_ifname: String,
    pod_mac: [u8; 6],
}

/// What one call needs: the parsed configuration and the store.
struct Call {
    config: CniConfig,
    network: String,
    allocator: Allocator,
}

impl Call {
    async fn open(args: &Args) -> Result<Call, CniError> {
        let netconf = args.config();
        let config = CniConfig::parse(
            &netconf.r#type,
            &netconf.custom,
            netconf.ipam.as_ref().map(|ipam| (ipam.r#type.as_str(), &ipam.custom)),
        )
        .map_err(|error| CniError::InvalidNetworkConfig(error.to_string()))?;
        log_to_file(config.log_file.as_deref(), &config.log_level);
        let store: Arc<dyn Store> = weft_api::store::open(&config.store).await.map_err(store_error)?;
        Ok(Call {
            network: netconf.name.clone(),
            allocator: Allocator::new(store),
            config,
        })
    }

    /// The host's IPAM lock, held while the guard lives: around allocations and releases.
    fn lock(&self) -> Result<Flock<File>, CniError> {
        lock_host(&self.config.lock_file)
    }

    fn node(&self) -> String {
        self.config.nodename.clone().unwrap_or_else(hostname)
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.allocator.store()
    }

    fn attachment(&self, args: &Args) -> Result<Attachment, CniError> {
        let container = args
            .container_id()
            .ok_or_else(|| CniError::missing_env(&["CNI_CONTAINERID"]))?
            .as_ref()
            .to_owned();
        let ifname = args
            .ifname()
            .ok_or_else(|| CniError::missing_env(&["CNI_IFNAME"]))?
            .as_ref()
            .to_owned();
        Ok(self.attachment_of(&container, &ifname))
    }

    fn attachment_of(&self, container: &str, ifname: &str) -> Attachment {
        Attachment {
            handle: format!("{}.{container}.{ifname}", self.network),
            host_ifname: host_interface_name(&self.network, container, ifname),
            pod_mac: pod_mac(&self.network, container, ifname),
            container: container.to_owned(),
            ifname: ifname.to_owned(),
        }
    }

    fn endpoint_key(&self, args: &Args, attachment: &Attachment) -> (String, String) {
        let pod = parse_cni_args(args.args());
        let namespace = pod.namespace.unwrap_or_else(|| "default".to_owned());
        let name = endpoint_name(
            &self.node(),
            pod.name.as_deref().unwrap_or(&attachment.container),
            &attachment.ifname,
        );
        (namespace, name)
    }

    async fn delete_endpoint(&self, namespace: &str, name: &str) -> Result<(), CniError> {
        let key = Key::new(&Kind::of::<WorkloadEndpoint>(), Some(namespace), name);
        match self.store().delete(&key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(error) => Err(store_error(error)),
        }
    }
}

/// The result of an ADD: host veth (index 0), pod interface (index 1), addresses, routes.
fn result_of(
    attachment: &Attachment,
    netns: &str,
    mtu: Option<u32>,
    addresses: &[IpAddr],
    made: &dataplane::Made,
) -> CNIResult {
    let interface = |name: &str, mac: &[u8], sandbox: Option<String>| Interface {
        name: name.to_owned(),
        mac: format_mac(mac),
        mtu,
        sandbox,
        socket_path: None,
        pci_id: None,
    };
    let v6_gateway = made.host_link_local.map(IpAddr::V6);
    let ips = addresses
        .iter()
        .map(|address| IpConfig {
            interface: Some(1),
            address: IpNet::from(*address),
            gateway: if address.is_ipv4() {
                Some(IpAddr::V4(GATEWAY_V4))
            } else {
                v6_gateway
            },
        })
        .collect();
    let route = |dst: &str, gw: Option<IpAddr>| {
        dst.parse().ok().map(|dst| Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        })
    };
    let mut routes = Vec::new();
    if addresses.iter().any(IpAddr::is_ipv4) {
        routes.extend(route("0.0.0.0/0", Some(IpAddr::V4(GATEWAY_V4))));
    }
    if addresses.iter().any(IpAddr::is_ipv6) {
        routes.extend(route("::/0", v6_gateway));
    }
    CNIResult {
        interfaces: vec![
            interface(&attachment.host_ifname, &HOST_MAC, None),
            interface(&attachment.ifname, &attachment.pod_mac, Some(netns.to_owned())),
        ],
        ips,
        routes,
        dns: None,
    }
}

impl Call {
    async fn add(&self, args: &Args, attachment: &Attachment, netns: &str) -> Result<CNIResult, CniError> {
        let pod = parse_cni_args(args.args());
        let mut attributes = BTreeMap::new();
        attributes.insert(ATTRIBUTE_CONTAINER.to_owned(), attachment.container.clone());
        attributes.insert(ATTRIBUTE_IFNAME.to_owned(), attachment.ifname.clone());
        if let (Some(namespace), Some(name)) = (&pod.namespace, &pod.name) {
            attributes.insert(ATTRIBUTE_NAMESPACE.to_owned(), namespace.clone());
            attributes.insert(ATTRIBUTE_POD.to_owned(), name.clone());
        }
        let request = Request {
            node: self.node(),
            handle: attachment.handle.clone(),
            ipv4: usize::from(self.config.assign_ipv4),
            ipv6: usize::from(self.config.assign_ipv6),
            pools: self.config.pools.clone(),
            attributes,
            allowed_use: AllowedUse::Workload,
            reserve_gateway: false,
        };
        let assigned = {
            let _host = self.lock()?;
            self.allocator.allocate(&request).await.map_err(cni_error)?
        };
        let addresses: Vec<IpAddr> = assigned.iter().map(|a| a.address).collect();
        tracing::info!(handle = %attachment.handle, ?addresses, "allocated");
        let plan = Plan {
            netns: netns.into(),
            host_ifname: attachment.host_ifname.clone(),
            pod_ifname: attachment.ifname.clone(),
            pod_mac: attachment.pod_mac,
            mtu: self.config.mtu,
            addresses: addresses.clone(),
        };
        let made = match dataplane::setup(&plan).await {
            Ok(made) => made,
            Err(error) => {
                let error = dataplane_error(error);
                self.undo(attachment).await;
                return Err(error);
            }
        };
        let (namespace, name) = self.endpoint_key(args, attachment);
        let mut endpoint = WorkloadEndpoint::new(
            &name,
            WorkloadEndpointSpec {
                node: self.node(),
                orchestrator: if pod.name.is_some() { "k8s" } else { "cni" }.to_owned(),
                pod: pod.name.clone().unwrap_or_default(),
                container_id: attachment.container.clone(),
                endpoint: attachment.ifname.clone(),
                interface_name: attachment.host_ifname.clone(),
                mac: format_mac(&attachment.pod_mac),
                ip_networks: addresses.iter().map(|a| IpNet::from(*a).to_string()).collect(),
                ports: Vec::new(),
            },
        );
        endpoint.metadata.namespace = Some(namespace.clone());
        if let Err(error) = self.record(endpoint, &namespace, &name).await {
            if let Err(undo) = dataplane::teardown(&attachment.host_ifname).await {
                tracing::warn!(error = %undo, "cannot remove the veth of a failed ADD");
            }
            self.undo(attachment).await;
            return Err(error);
        }
        tracing::info!(handle = %attachment.handle, host = %attachment.host_ifname, "attached");
        Ok(result_of(attachment, netns, self.config.mtu, &addresses, &made))
    }

    /// Creates the endpoint record, or replaces the one a previous ADD left.
    async fn record(&self, endpoint: WorkloadEndpoint, namespace: &str, name: &str) -> Result<(), CniError> {
        match self.store().create_as(&endpoint).await {
            Ok(_) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                let mut replacement = endpoint;
                let existing: Option<WorkloadEndpoint> =
                    self.store().get_as(Some(namespace), name).await.map_err(store_error)?;
                replacement.metadata.resource_version = existing.and_then(|e| e.metadata.resource_version);
                self.store()
                    .update_as(&replacement)
                    .await
                    .map(|_| ())
                    .map_err(store_error)
            }
            Err(error) => Err(store_error(error)),
        }
    }

    /// Gives back what a failed ADD allocated.
    async fn undo(&self, attachment: &Attachment) {
        let _host = self.lock().ok();
        match self.allocator.release_handle(&attachment.handle).await {
            Ok(released) => tracing::info!(handle = %attachment.handle, ?released, "released after a failed ADD"),
            Err(error) => tracing::warn!(handle = %attachment.handle, %error, "cannot release after a failed ADD"),
        }
    }
}

fn netns_of(args: &Args) -> Result<String, CniError> {
    args.netns()
        .map(|p| p.display().to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| CniError::missing_env(&["CNI_NETNS"]))
}

#[async_trait::async_trait]
impl rscni_plugin::async_cni::Cni for WeftCni {
    async fn add(&self, args: Args) -> Result<CNIResult, CniError> {
        let call = Call::open(&args).await?;
        let attachment = call.attachment(&args)?;
        let netns = netns_of(&args)?;
        if !std::path::Path::new(&netns).exists() {
            return Err(CniError::InvalidNetNS(format!(
                "network namespace {netns} (CNI_NETNS) does not exist"
            )));
        }
        call.add(&args, &attachment, &netns).await
    }

    async fn del(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let attachment = call.attachment(&args)?;
        let removed = dataplane::teardown(&attachment.host_ifname)
            .await
            .map_err(dataplane_error)?;
        let released = {
            let _host = call.lock()?;
            call.allocator
                .release_handle(&attachment.handle)
                .await
                .map_err(cni_error)?
        };
        let (namespace, name) = call.endpoint_key(&args, &attachment);
        call.delete_endpoint(&namespace, &name).await?;
        tracing::info!(handle = %attachment.handle, removed, ?released, "detached");
        Ok(())
    }

    async fn check(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let attachment = call.attachment(&args)?;
        let netns = netns_of(&args)?;
        let held: Vec<IpAddr> = call
            .allocator
            .addresses_of(&attachment.handle)
            .await
            .map_err(cni_error)?
            .into_iter()
            .map(|a| a.address)
            .collect();
        if held.is_empty() {
            return Err(CniError::Custom(
                CODE_DAMAGED,
                "attachment damaged".into(),
                format!("handle {} holds no address", attachment.handle),
            ));
        }
        let mut problems = Vec::new();
        if let Some(previous) = &args.config().prev_result {
            for ip in &previous.ips {
                if !held.contains(&ip.address.addr()) {
                    problems.push(format!(
                        "{} of the previous result is not allocated to the pod",
                        ip.address
                    ));
                }
            }
        }
        let plan = Plan {
            netns: netns.into(),
            host_ifname: attachment.host_ifname.clone(),
            pod_ifname: attachment.ifname.clone(),
            pod_mac: attachment.pod_mac,
            mtu: call.config.mtu,
            addresses: held,
        };
        problems.extend(dataplane::inspect(&plan).await.map_err(dataplane_error)?);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CniError::Custom(
                CODE_DAMAGED,
                "attachment damaged".into(),
                problems.join("; "),
            ))
        }
    }

    async fn status(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args)
            .await
            .map_err(|error| CniError::PluginNotAvailable(format!("{}: {}", error.msg(), error.details())))?;
        pools_usable(
            call.store().as_ref(),
            &call.node(),
            &call.config.pools,
            call.config.assign_ipv4,
            call.config.assign_ipv6,
        )
        .await
    }

    async fn gc(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let valid = valid_attachments(&args);
        let stale = stale_attachments(call.store().as_ref(), &call.network, &args).await?;
        let mut failures = Vec::new();
        for (handle, (container, ifname)) in stale {
            let attachment = call.attachment_of(&container, &ifname);
            if let Err(error) = dataplane::teardown(&attachment.host_ifname).await {
                failures.push(format!("{}: {error}", attachment.host_ifname));
            }
            let host = call.lock()?;
            let result = call.allocator.release_handle(&handle).await;
            drop(host);
            match result {
                Ok(released) => tracing::info!(%handle, ?released, "released by CNI GC"),
                Err(error) => failures.push(format!("{handle}: {error}")),
            }
        }
        // Endpoint records of this network on this node that no valid attachment owns (the
        // host veth's name ties a record to its network).
        let node = call.node();
        let (endpoints, _) = call
            .store()
            .list_as::<WorkloadEndpoint>(None)
            .await
            .map_err(store_error)?;
        for endpoint in endpoints {
            let spec = &endpoint.spec;
            let ours = spec.node == node
                && spec.interface_name == host_interface_name(&call.network, &spec.container_id, &spec.endpoint);
            if !ours || valid.contains(&(spec.container_id.clone(), spec.endpoint.clone())) {
                continue;
            }
            if let Err(error) = dataplane::teardown(&spec.interface_name).await {
                failures.push(format!("{}: {error}", spec.interface_name));
            }
            let (namespace, name) = (
                endpoint.metadata.namespace.clone().unwrap_or_default(),
                endpoint.metadata.name.clone().unwrap_or_default(),
            );
            match call.delete_endpoint(&namespace, &name).await {
                Ok(()) => tracing::info!(%namespace, %name, "endpoint removed by CNI GC"),
                Err(error) => failures.push(format!("endpoint {namespace}/{name}: {}", error.details())),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CniError::IOFailure(format!(
                "could not release: {}",
                failures.join("; ")
            )))
        }
    }
}
