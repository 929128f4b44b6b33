//! The CNI verbs of `weft-cni` (DESIGN.md "CNI"; CNI spec 1.1.0, results down to 0.3.1 by
//! rscni): ADD allocates through the ipam library and builds the data path ([`dataplane`]),
//! DEL undoes it and never fails for what is already gone, CHECK verifies the kernel state,
//! STATUS asks the store and the pools, GC releases attachments the runtime no longer knows.
//!
//! The handle of an attachment is `network.containerid.ifname`, as weft-ipam's. Allocations and
//! releases on one host are serialised by the same file lock weft-ipam takes, held only around
//! them (the settings and pools are read before). Each pod's start-up path overlaps the disk
//! and the kernel: the allocation runs (on a thread of its own) while the address-free half of
//! the data path is built, and the endpoint record is written while the addresses and routes
//! go in; DEL releases while the kernel removes the veth. Errors are CNI error objects: 7 for a
//! wrong configuration (naming the key), 4 for a missing variable, 8 for a missing namespace,
//! 11 when the store is unreachable, 100 when the pools are exhausted, 110 when CHECK finds the
//! attachment damaged, 111 when the kernel refuses the data path.

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
use crate::dataplane::{self, Dataplane, DataplaneError, GATEWAY_V4, GATEWAY_V6, HOST_MAC, Kernel, Plan, format_mac};

/// The allocation attribute naming the pod's interface (as weft-ipam's).
const ATTRIBUTE_IFNAME: &str = weft_ipam::cni::ATTRIBUTE_IFNAME;
/// CHECK found the attachment not as ADD made it.
pub const CODE_DAMAGED: u32 = 110;
/// The kernel refused part of the data path.
pub const CODE_KERNEL: u32 = 111;

/// The plugin. It keeps nothing between calls; `D` is its data path (the kernel's, but in unit
/// tests of the verbs' error paths).
#[derive(Debug, Default)]
pub struct WeftCni<D = Kernel> {
    pub dataplane: D,
}

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
        delete_endpoint(self.store(), namespace, name).await
    }
}

/// The result of an ADD: host veth (index 0), pod interface (index 1), addresses, routes.
fn result_of(attachment: &Attachment, netns: &str, addresses: &[IpAddr], made: &dataplane::Made) -> CNIResult {
    let interface = |name: &str, mac: &[u8], sandbox: Option<String>| Interface {
        name: name.to_owned(),
        mac: format_mac(mac),
        mtu: Some(made.mtu),
        sandbox,
        socket_path: None,
        pci_id: None,
    };
    let v6_gateway = Some(IpAddr::V6(GATEWAY_V6));
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

/// Removes an endpoint record; one already gone is fine.
async fn delete_endpoint(store: &Arc<dyn Store>, namespace: &str, name: &str) -> Result<(), CniError> {
    let key = Key::new(&Kind::of::<WorkloadEndpoint>(), Some(namespace), name);
    match store.delete(&key, None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(error) => Err(store_error(error)),
    }
}

/// Creates the endpoint record, or replaces the one a previous ADD left.
async fn record(store: &Arc<dyn Store>, endpoint: WorkloadEndpoint) -> Result<(), CniError> {
    match store.create_as(&endpoint).await {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists { .. }) => {
            let mut replacement = endpoint;
            let existing: Option<WorkloadEndpoint> = store
                .get_as(
                    replacement.metadata.namespace.as_deref(),
                    replacement.metadata.name.as_deref().unwrap_or_default(),
                )
                .await
                .map_err(store_error)?;
            replacement.metadata.resource_version = existing.and_then(|e| e.metadata.resource_version);
            store.update_as(&replacement).await.map(|_| ()).map_err(store_error)
        }
        Err(error) => Err(store_error(error)),
    }
}

/// Runs store work on a thread of its own: the file store waits for the disk in the calling
/// thread, and this way those waits overlap with the kernel's work on the data path instead of
/// adding to it.
async fn off_thread<T: Send + 'static>(
    work: impl Future<Output = Result<T, CniError>> + Send + 'static,
) -> Result<T, CniError> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work))
        .await
        .map_err(|error| CniError::IOFailure(format!("a store task failed: {error}")))?
}

impl Call {
    fn plan(&self, attachment: &Attachment, netns: &str) -> Plan {
        Plan {
            netns: netns.into(),
            host_ifname: attachment.host_ifname.clone(),
            pod_ifname: attachment.ifname.clone(),
            pod_mac: attachment.pod_mac,
            mtu: self.config.mtu,
            ipv4: self.config.assign_ipv4,
            ipv6: self.config.assign_ipv6,
        }
    }

    /// ADD: the allocation and the address-free half of the data path at once, then the
    /// addresses and routes at the same time as the endpoint record.
    async fn add<D: Dataplane>(
        &self,
        dataplane: &D,
        args: &Args,
        attachment: &Attachment,
        netns: &str,
    ) -> Result<CNIResult, CniError> {
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
        let plan = self.plan(attachment, netns);
        let allocation = off_thread({
            let allocator = self.allocator.clone();
            let lock_file = self.config.lock_file.clone();
            async move {
                // The reads that do not depend on other pods' allocations come before the
                // lock, so that pods starting together queue for less time.
                let context = allocator.context(&request.node).await.map_err(cni_error)?;
                let _host = lock_host(&lock_file)?;
                allocator
                    .allocate_in_context(&request, &context)
                    .await
                    .map_err(cni_error)
            }
        });
        let (assigned, prepared) = tokio::join!(allocation, dataplane.prepare(&plan));
        let assigned = match assigned {
            Ok(assigned) => assigned,
            Err(error) => {
                if let Ok(prepared) = prepared {
                    dataplane.abandon(prepared, &plan).await;
                }
                return Err(error);
            }
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                self.undo(attachment).await;
                return Err(dataplane_error(error));
            }
        };
        let addresses: Vec<IpAddr> = assigned.iter().map(|a| a.address).collect();
        tracing::info!(handle = %attachment.handle, ?addresses, "allocated");

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
        let recording = off_thread({
            let store = Arc::clone(self.store());
            async move { record(&store, endpoint).await }
        });
        let (made, recorded) = tokio::join!(dataplane.finish(prepared, &plan, &addresses), recording);
        match (made, recorded) {
            (Ok(made), Ok(())) => {
                tracing::info!(handle = %attachment.handle, host = %attachment.host_ifname, "attached");
                Ok(result_of(attachment, netns, &addresses, &made))
            }
            (Err(error), recorded) => {
                // finish removed the veth.
                if recorded.is_ok()
                    && let Err(undo) = self.delete_endpoint(&namespace, &name).await
                {
                    tracing::warn!(error = %undo.details(), "cannot remove the endpoint record of a failed ADD");
                }
                self.undo(attachment).await;
                Err(dataplane_error(error))
            }
            (Ok(_), Err(error)) => {
                if let Err(undo) = dataplane.teardown(&attachment.host_ifname).await {
                    tracing::warn!(error = %undo, "cannot remove the veth of a failed ADD");
                }
                self.undo(attachment).await;
                Err(error)
            }
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
impl<D: Dataplane> rscni_plugin::async_cni::Cni for WeftCni<D> {
    async fn add(&self, args: Args) -> Result<CNIResult, CniError> {
        let call = Call::open(&args).await?;
        let attachment = call.attachment(&args)?;
        let netns = netns_of(&args)?;
        if !std::path::Path::new(&netns).exists() {
            return Err(CniError::InvalidNetNS(format!(
                "network namespace {netns} (CNI_NETNS) does not exist"
            )));
        }
        call.add(&self.dataplane, &args, &attachment, &netns).await
    }

    async fn del(&self, args: Args) -> Result<(), CniError> {
        let call = Call::open(&args).await?;
        let attachment = call.attachment(&args)?;
        let (namespace, name) = call.endpoint_key(&args, &attachment);
        // The store's part while the kernel removes the veth: an address released before its
        // old veth is gone is safe, a new pod's host route replaces the old one.
        let store_side = off_thread({
            let allocator = call.allocator.clone();
            let lock_file = call.config.lock_file.clone();
            let handle = attachment.handle.clone();
            async move {
                // The addresses, the handle and the endpoint record go in one commit.
                let endpoint = Key::new(&Kind::of::<WorkloadEndpoint>(), Some(&namespace), &name);
                let _host = lock_host(&lock_file)?;
                allocator
                    .release_handle_with(&handle, &[endpoint])
                    .await
                    .map_err(cni_error)
            }
        });
        let (removed, released) = tokio::join!(self.dataplane.teardown(&attachment.host_ifname), store_side);
        let removed = removed.map_err(dataplane_error)?;
        let released = released?;
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
        let plan = call.plan(&attachment, &netns);
        problems.extend(self.dataplane.inspect(&plan, &held).await.map_err(dataplane_error)?);
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
            if let Err(error) = self.dataplane.teardown(&attachment.host_ifname).await {
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
            if let Err(error) = self.dataplane.teardown(&spec.interface_name).await {
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

#[cfg(test)]
mod tests {
    //! The verbs' error paths, with a test double of the data path (the real one is tested in
    //! network namespaces, tests/plugin.rs) and a real file store.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Mutex;

    use rscni_plugin::async_cni::Cni;
    use rscni_plugin::test_util::ArgsBuilder;
    use serde_json::json;
    use weft_api::resources::{IPPool, IPPoolSpec};
    use weft_ipam::Assigned;

    use super::*;
    use crate::dataplane::Made;

    /// A test double of the data path: no kernel; each step succeeds unless the test made it
    /// fail, and every call is recorded.
    #[derive(Default)]
    struct FakeDataplane {
        fail_prepare: Option<fn() -> DataplaneError>,
        fail_finish: bool,
        calls: Mutex<Vec<&'static str>>,
    }

    impl FakeDataplane {
        fn called(&self, call: &'static str) {
            self.calls.lock().unwrap().push(call);
        }

        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Dataplane for FakeDataplane {
        type Prepared = ();

        async fn prepare(&self, _plan: &Plan) -> Result<(), DataplaneError> {
            self.called("prepare");
            self.fail_prepare.map_or(Ok(()), |error| Err(error()))
        }

        async fn finish(&self, _: (), _plan: &Plan, _addresses: &[IpAddr]) -> Result<Made, DataplaneError> {
            self.called("finish");
            if self.fail_finish {
                return Err(DataplaneError::Missing("the kernel said no (test double)".into()));
            }
            Ok(Made { mtu: 1500 })
        }

        async fn abandon(&self, _: (), _plan: &Plan) {
            self.called("abandon");
        }

        async fn teardown(&self, _host_ifname: &str) -> Result<bool, DataplaneError> {
            self.called("teardown");
            Ok(false)
        }

        async fn inspect(&self, _plan: &Plan, _addresses: &[IpAddr]) -> Result<Vec<String>, DataplaneError> {
            self.called("inspect");
            Ok(Vec::new())
        }
    }

    struct Node {
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
    }

    async fn node_with_pool(cidr: &str, block_size: u8) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = weft_api::store::open(&format!("file:{}", dir.path().join("store").display()))
            .await
            .unwrap();
        let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": cidr})).unwrap();
        spec.block_size = Some(block_size);
        store.create_as(&IPPool::new("pool", spec)).await.unwrap();
        Node { dir, store }
    }

    impl Node {
        fn args(&self, container: &str) -> Args {
            let config = json!({
                "cniVersion": "1.1.0",
                "name": "weftnet",
                "type": "weft-cni",
                "store": format!("file:{}", self.dir.path().join("store").display()),
                "nodename": "node-1",
                "lock_file": self.dir.path().join("cni.lock"),
                "ipam": {"type": "weft-ipam"},
            });
            ArgsBuilder::new()
                .container_id(container)
                .unwrap()
                // Any existing path: the test double never opens it.
                .netns(&self.dir.path().display().to_string())
                .ifname("eth0")
                .unwrap()
                .args(&format!("K8S_POD_NAMESPACE=shop;K8S_POD_NAME={container}"))
                .config(&config.to_string())
                .unwrap()
                .build()
                .unwrap()
        }

        async fn held(&self, container: &str) -> Vec<Assigned> {
            Allocator::new(Arc::clone(&self.store))
                .addresses_of(&format!("weftnet.{container}.eth0"))
                .await
                .unwrap()
        }

        async fn endpoints(&self) -> usize {
            self.store.list_as::<WorkloadEndpoint>(None).await.unwrap().0.len()
        }
    }

    #[tokio::test]
    async fn a_data_path_failing_after_the_allocation_gives_the_address_back_and_keeps_no_endpoint() {
        let node = node_with_pool("198.18.0.0/24", 26).await;
        let cni = WeftCni {
            dataplane: FakeDataplane {
                fail_finish: true,
                ..FakeDataplane::default()
            },
        };
        let error = cni.add(node.args("ctr-a")).await.unwrap_err();
        assert_eq!(u32::from(&error), CODE_KERNEL, "{}", error.details());
        assert!(error.details().contains("the kernel said no"), "{}", error.details());
        assert!(node.held("ctr-a").await.is_empty(), "the address was released");
        assert_eq!(node.endpoints().await, 0, "the endpoint record was removed");
        assert_eq!(cni.dataplane.calls(), ["prepare", "finish"]);
    }

    #[tokio::test]
    async fn an_allocation_that_fails_abandons_what_the_data_path_prepared() {
        let node = node_with_pool("198.18.1.0/32", 32).await;
        let cni = WeftCni {
            dataplane: FakeDataplane::default(),
        };
        cni.add(node.args("ctr-a")).await.unwrap();
        let error = cni.add(node.args("ctr-b")).await.unwrap_err();
        assert_eq!(u32::from(&error), weft_ipam::cni::CODE_POOLS_EXHAUSTED);
        assert_eq!(
            cni.dataplane.calls(),
            ["prepare", "finish", "prepare", "abandon"],
            "the second pod's veth is removed, nothing more"
        );
        assert_eq!(node.held("ctr-a").await.len(), 1, "the first pod keeps its address");
        assert_eq!(node.endpoints().await, 1);
    }

    #[tokio::test]
    async fn a_namespace_gone_before_the_data_path_is_code_8_and_gives_the_address_back() {
        let node = node_with_pool("198.18.2.0/24", 26).await;
        let cni = WeftCni {
            dataplane: FakeDataplane {
                fail_prepare: Some(|| DataplaneError::NetnsMissing {
                    path: "/run/netns/gone".into(),
                }),
                ..FakeDataplane::default()
            },
        };
        let error = cni.add(node.args("ctr-a")).await.unwrap_err();
        assert_eq!(u32::from(&error), 8, "{}", error.details());
        assert!(error.details().contains("/run/netns/gone"));
        assert!(node.held("ctr-a").await.is_empty());
        assert_eq!(node.endpoints().await, 0);
    }

    #[tokio::test]
    async fn del_of_an_attachment_already_gone_succeeds_and_del_after_add_clears_the_store() {
        let node = node_with_pool("198.18.3.0/24", 26).await;
        let cni = WeftCni {
            dataplane: FakeDataplane::default(),
        };
        cni.del(node.args("never-added")).await.unwrap();
        cni.add(node.args("ctr-a")).await.unwrap();
        assert_eq!(node.endpoints().await, 1);
        cni.del(node.args("ctr-a")).await.unwrap();
        cni.del(node.args("ctr-a")).await.unwrap();
        assert!(node.held("ctr-a").await.is_empty());
        assert_eq!(node.endpoints().await, 0);
    }
}
