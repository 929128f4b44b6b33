//! LoadBalancer IPAM on a real file store (and on a real etcd for concurrent reconcilers):
//! assignment, dual stack, pending reasons, release, and two reconcilers at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use weft_api::resources::{IPAMBlock, IPAMHandle, IPPool, IPPoolSpec};
use weft_api::testing::{EtcdServer, require};
use weft_api::{Key, Kind, Store, StoreExt};
use weft_ipam::Allocator;
use weft_ipam::block::Block;
use weft_ipam::loadbalancer::{LOAD_BALANCER_CLASS, handle_of, ingress_ips, reconcile};

/// LoadBalancer pools: 198.19.240.0/28 in /30 blocks, 2001:db8:6::/124 in /126 blocks;
/// a Workload pool 198.18.0.0/24 that must never be used.
const LB_V4: &str = "198.19.240.0/28";
const LB_V6: &str = "2001:db8:6::/124";
const WORKLOAD: &str = "198.18.0.0/24";

struct Fixture {
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

async fn open(setting: &str) -> Arc<dyn Store> {
    weft_api::store::open(setting).await.unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&format!("file:{}", dir.path().display())).await;
    Fixture { store, dir }
}

impl Fixture {
    /// A second store on the same directory: another node's reconciler.
    async fn another_node(&self) -> Arc<dyn Store> {
        open(&format!("file:{}", self.dir.path().display())).await
    }
}

async fn add_pool(store: &Arc<dyn Store>, name: &str, cidr: &str, block_size: u8, uses: &[&str]) {
    let spec: IPPoolSpec = serde_json::from_value(json!({
        "cidr": cidr,
        "blockSize": block_size,
        "allowedUses": uses,
    }))
    .unwrap();
    store.create_as(&IPPool::new(name, spec)).await.unwrap();
}

async fn lb_pools(store: &Arc<dyn Store>) {
    add_pool(store, "workload", WORKLOAD, 26, &["Workload"]).await;
    add_pool(store, "lb-v4", LB_V4, 30, &["LoadBalancer"]).await;
    add_pool(store, "lb-v6", LB_V6, 126, &["LoadBalancer"]).await;
}

async fn create_service(store: &Arc<dyn Store>, name: &str, spec: Value) -> Service {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .unwrap();
    store.create_as(&service).await.unwrap()
}

fn load_balancer() -> Value {
    json!({"type": "LoadBalancer", "clusterIP": "198.19.128.10", "ports": [{"port": 80}]})
}

async fn service(store: &Arc<dyn Store>, name: &str) -> Option<Service> {
    store.get_as::<Service>(Some("shop"), name).await.unwrap()
}

async fn ingress(store: &Arc<dyn Store>, name: &str) -> Vec<IpAddr> {
    ingress_ips(&service(store, name).await.unwrap())
}

fn within(cidr: &str, address: &IpAddr) -> bool {
    cidr.parse::<IpNet>().unwrap().contains(address)
}

async fn held_by(store: &Arc<dyn Store>, handle: &str) -> Vec<IpAddr> {
    let held = Allocator::new(Arc::clone(store)).addresses_of(handle).await.unwrap();
    held.into_iter().map(|a| a.address).collect()
}

/// Every address held in every block, with its handle.
async fn every_allocation(store: &Arc<dyn Store>) -> Vec<(IpAddr, String)> {
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await.unwrap();
    blocks
        .into_iter()
        .flat_map(|b| Block::from_spec(b.spec).unwrap().held())
        .map(|h| (h.address, h.handle))
        .collect()
}

#[tokio::test]
async fn a_load_balancer_service_gets_one_address_from_a_load_balancer_pool() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let web = create_service(&f.store, "web", load_balancer()).await;
    create_service(
        &f.store,
        "internal",
        json!({"type": "ClusterIP", "clusterIP": "198.19.128.11"}),
    )
    .await;
    let mut theirs = load_balancer();
    theirs["loadBalancerClass"] = json!("metallb.io/metallb");
    create_service(&f.store, "theirs", theirs).await;
    let mut ours = load_balancer();
    ours["loadBalancerClass"] = json!(LOAD_BALANCER_CLASS);
    create_service(&f.store, "ours", ours).await;

    let report = reconcile(&f.store).await.unwrap();
    assert!(report.pending.is_empty() && report.released.is_empty(), "{report:?}");
    let assigned: BTreeSet<&str> = report.assigned.iter().map(|a| a.service.as_str()).collect();
    assert_eq!(assigned, BTreeSet::from(["shop/ours", "shop/web"]));

    let address = ingress(&f.store, "web").await;
    assert_eq!(address.len(), 1);
    assert!(within(LB_V4, &address[0]), "{address:?} is from the LoadBalancer pool");
    assert_eq!(
        held_by(&f.store, &handle_of(&web)).await,
        address,
        "the handle holds exactly it"
    );
    assert!(ingress(&f.store, "internal").await.is_empty());
    assert!(
        ingress(&f.store, "theirs").await.is_empty(),
        "another implementation's class"
    );
    let (blocks, _) = f.store.list_as::<IPAMBlock>(None).await.unwrap();
    assert!(
        blocks
            .iter()
            .all(|b| b.spec.affinity.as_deref() == Some("load-balancer")),
        "LoadBalancer blocks belong to no node"
    );

    let again = reconcile(&f.store).await.unwrap();
    assert_eq!(again, Default::default(), "a second pass changes nothing");
    assert_eq!(ingress(&f.store, "web").await, address);
}

#[tokio::test]
async fn a_dual_stack_service_gets_one_address_per_family_in_its_family_order() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let mut spec = load_balancer();
    spec["ipFamilies"] = json!(["IPv6", "IPv4"]);
    spec["ipFamilyPolicy"] = json!("RequireDualStack");
    let web = create_service(&f.store, "web", spec).await;
    let report = reconcile(&f.store).await.unwrap();
    assert!(report.pending.is_empty(), "{report:?}");
    let addresses = ingress(&f.store, "web").await;
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    assert!(
        within(LB_V6, &addresses[0]) && within(LB_V4, &addresses[1]),
        "{addresses:?}"
    );
    let mut held = held_by(&f.store, &handle_of(&web)).await;
    held.sort();
    let mut expected = addresses.clone();
    expected.sort();
    assert_eq!(held, expected);
}

#[tokio::test]
async fn prefer_dual_stack_without_an_ipv6_pool_gets_ipv4_and_require_dual_stack_waits() {
    let f = fixture().await;
    add_pool(&f.store, "lb-v4", LB_V4, 30, &["LoadBalancer"]).await;
    add_pool(&f.store, "workload-v6", "2001:db8:1::/120", 122, &["Workload"]).await;
    let mut prefer = load_balancer();
    prefer["ipFamilies"] = json!(["IPv4", "IPv6"]);
    prefer["ipFamilyPolicy"] = json!("PreferDualStack");
    create_service(&f.store, "prefer", prefer).await;
    let mut require = load_balancer();
    require["ipFamilies"] = json!(["IPv4", "IPv6"]);
    require["ipFamilyPolicy"] = json!("RequireDualStack");
    create_service(&f.store, "require", require).await;

    let report = reconcile(&f.store).await.unwrap();
    let prefer = ingress(&f.store, "prefer").await;
    assert!(prefer.len() == 1 && within(LB_V4, &prefer[0]), "{prefer:?}");
    assert!(ingress(&f.store, "require").await.is_empty());
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert_eq!(report.pending[0].service, "shop/require");
    assert!(
        report.pending[0].reason.contains("IPv6"),
        "{}",
        report.pending[0].reason
    );
    assert!(
        every_allocation(&f.store).await.len() == 1,
        "all or nothing: the required dual-stack service took no IPv4 address"
    );
}

#[tokio::test]
async fn without_a_load_balancer_pool_the_service_is_pending_and_the_report_says_why() {
    let f = fixture().await;
    add_pool(&f.store, "workload", WORKLOAD, 26, &["Workload"]).await;
    create_service(&f.store, "web", load_balancer()).await;
    let report = reconcile(&f.store).await.unwrap();
    assert!(report.assigned.is_empty());
    assert_eq!(report.pending.len(), 1);
    assert_eq!(report.pending[0].service, "shop/web");
    assert!(
        report.pending[0].reason.contains("IPv4") && report.pending[0].reason.contains("LoadBalancer"),
        "{}",
        report.pending[0].reason
    );
    assert!(ingress(&f.store, "web").await.is_empty());
    assert!(
        every_allocation(&f.store).await.is_empty(),
        "nothing from the Workload pool"
    );
}

#[tokio::test]
async fn when_the_pool_is_exhausted_the_rest_wait_until_an_address_is_released() {
    let f = fixture().await;
    // One /30 block: four addresses.
    add_pool(&f.store, "lb-v4", "198.19.240.0/30", 30, &["LoadBalancer"]).await;
    for i in 0..5 {
        create_service(&f.store, &format!("web-{i}"), load_balancer()).await;
    }
    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.assigned.len(), 4, "{report:?}");
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert!(
        report.pending[0].reason.contains("exhausted"),
        "{}",
        report.pending[0].reason
    );
    let waiting = report.pending[0].service.trim_start_matches("shop/").to_owned();
    let mut all: Vec<IpAddr> = Vec::new();
    for i in 0..5 {
        all.extend(ingress(&f.store, &format!("web-{i}")).await);
    }
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 4, "four distinct addresses");

    let gone = report.assigned[0].service.trim_start_matches("shop/").to_owned();
    let freed = ingress(&f.store, &gone).await;
    f.store
        .delete(&Key::new(&Kind::of::<Service>(), Some("shop"), &gone), None)
        .await
        .unwrap();
    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.released.len(), 1, "{report:?}");
    assert_eq!(report.released[0].addresses, freed);
    assert_eq!(report.assigned.len(), 1, "{report:?}");
    assert_eq!(report.assigned[0].service, format!("shop/{waiting}"));
    assert_eq!(
        ingress(&f.store, &waiting).await,
        freed,
        "the waiting service got the freed address"
    );
}

#[tokio::test]
async fn a_deleted_service_s_address_is_released_and_its_handle_removed() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let web = create_service(&f.store, "web", load_balancer()).await;
    reconcile(&f.store).await.unwrap();
    let address = ingress(&f.store, "web").await;
    f.store
        .delete(&Key::new(&Kind::of::<Service>(), Some("shop"), "web"), None)
        .await
        .unwrap();
    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.released.len(), 1, "{report:?}");
    assert_eq!(report.released[0].service, "shop/web");
    assert_eq!(report.released[0].addresses, address);
    assert!(held_by(&f.store, &handle_of(&web)).await.is_empty());
    assert!(every_allocation(&f.store).await.is_empty());
    let (handles, _) = f.store.list_as::<IPAMHandle>(None).await.unwrap();
    assert!(handles.is_empty(), "{handles:?}");
    assert_eq!(reconcile(&f.store).await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_service_that_is_no_longer_a_load_balancer_loses_its_ingress_and_address() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let web = create_service(&f.store, "web", load_balancer()).await;
    reconcile(&f.store).await.unwrap();
    let address = ingress(&f.store, "web").await;
    let mut changed = service(&f.store, "web").await.unwrap();
    changed.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    f.store.update_as(&changed).await.unwrap();

    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.released.len(), 1, "{report:?}");
    assert_eq!(report.released[0].addresses, address);
    assert!(ingress(&f.store, "web").await.is_empty(), "the ingress is cleared");
    assert!(held_by(&f.store, &handle_of(&web)).await.is_empty());
}

#[tokio::test]
async fn a_re_created_service_gets_a_new_handle_and_the_old_one_is_released() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let old = create_service(&f.store, "web", load_balancer()).await;
    reconcile(&f.store).await.unwrap();
    f.store
        .delete(&Key::new(&Kind::of::<Service>(), Some("shop"), "web"), None)
        .await
        .unwrap();
    let mut recreated: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web-2"},
        "spec": load_balancer(),
    }))
    .unwrap();
    recreated = f.store.create_as(&recreated).await.unwrap();
    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.released.len(), 1, "{report:?}");
    assert_eq!(report.released[0].handle, handle_of(&old));
    assert_eq!(report.assigned.len(), 1, "{report:?}");
    assert!(held_by(&f.store, &handle_of(&old)).await.is_empty());
    assert_eq!(
        held_by(&f.store, &handle_of(&recreated)).await,
        ingress(&f.store, "web").await
    );
}

#[tokio::test]
async fn a_service_asking_for_specific_addresses_is_left_pending_with_the_reason() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let mut spec = load_balancer();
    spec["loadBalancerIP"] = json!("198.19.240.9");
    create_service(&f.store, "pinned", spec).await;
    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert!(report.pending[0].reason.contains("198.19.240.9"), "{report:?}");
    assert!(every_allocation(&f.store).await.is_empty());
}

#[tokio::test]
async fn an_ingress_written_by_someone_else_is_left_alone() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    create_service(&f.store, "web", load_balancer()).await;
    let mut web = service(&f.store, "web").await.unwrap();
    web.status = Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "198.19.241.1"}]}})).unwrap());
    f.store.update_as(&web).await.unwrap();
    assert_eq!(reconcile(&f.store).await.unwrap(), Default::default());
    assert_eq!(
        ingress(&f.store, "web").await,
        ["198.19.241.1".parse::<IpAddr>().unwrap()]
    );
}

#[tokio::test]
async fn a_surplus_address_left_on_the_handle_is_released() {
    let f = fixture().await;
    lb_pools(&f.store).await;
    let web = create_service(&f.store, "web", load_balancer()).await;
    reconcile(&f.store).await.unwrap();
    let address = ingress(&f.store, "web").await;
    // What a reconciler that lost the race leaves: a second address on the same handle.
    let request = weft_ipam::Request {
        node: "load-balancer".into(),
        handle: handle_of(&web),
        ipv4: 2,
        ipv6: 0,
        pools: Vec::new(),
        attributes: Default::default(),
        allowed_use: weft_api::resources::AllowedUse::LoadBalancer,
        reserve_gateway: false,
    };
    Allocator::new(Arc::clone(&f.store)).allocate(&request).await.unwrap();
    assert_eq!(held_by(&f.store, &handle_of(&web)).await.len(), 2);
    let report = reconcile(&f.store).await.unwrap();
    assert_eq!(report.released.len(), 1, "{report:?}");
    assert_eq!(held_by(&f.store, &handle_of(&web)).await, address);
    assert_eq!(ingress(&f.store, "web").await, address);
}

/// Runs two reconcilers at once, on two store handles, until both are done; then checks that
/// every service has exactly one address, no two share one, and every handle holds exactly
/// its service's ingress.
async fn two_reconcilers_at_once(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    const SERVICES: usize = 6;
    lb_pools(&first).await;
    let mut services = Vec::new();
    for i in 0..SERVICES {
        services.push(create_service(&first, &format!("web-{i}"), load_balancer()).await);
    }
    let (a, b) = tokio::join!(
        tokio::spawn({
            let store = Arc::clone(&first);
            async move { reconcile(&store).await }
        }),
        tokio::spawn({
            let store = Arc::clone(&second);
            async move { reconcile(&store).await }
        }),
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert!(a.pending.is_empty() && b.pending.is_empty(), "{a:?} {b:?}");
    let mut seen = BTreeSet::new();
    for service in &services {
        let name = service.metadata.name.clone().unwrap();
        let addresses = ingress(&first, &name).await;
        assert_eq!(addresses.len(), 1, "{name}: {addresses:?}");
        assert!(within(LB_V4, &addresses[0]));
        assert!(seen.insert(addresses[0]), "{} given twice", addresses[0]);
        assert_eq!(held_by(&first, &handle_of(service)).await, addresses, "{name}");
    }
    assert_eq!(
        every_allocation(&first).await.len(),
        SERVICES,
        "no surplus address is left held"
    );
    let mut assigned: Vec<&str> = a
        .assigned
        .iter()
        .chain(&b.assigned)
        .map(|x| x.service.as_str())
        .collect();
    assigned.sort();
    assigned.dedup();
    assert_eq!(assigned.len(), SERVICES, "{a:?} {b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reconcilers_at_once_on_the_file_store_give_each_service_exactly_one_address() {
    for _ in 0..3 {
        let f = fixture().await;
        let second = f.another_node().await;
        two_reconcilers_at_once(Arc::clone(&f.store), second).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reconcilers_at_once_on_etcd_give_each_service_exactly_one_address() {
    if !require(EtcdServer::binary().is_some(), "etcd", "apt-get install etcd-server") {
        return;
    }
    let server = EtcdServer::start().unwrap();
    two_reconcilers_at_once(open(&server.setting()).await, open(&server.setting()).await).await;
}
