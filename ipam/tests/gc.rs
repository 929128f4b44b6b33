//! The GC on a real file store: it releases what dead owners hold, never what a live pod holds,
//! waits out the grace period, gives up spare empty blocks but not a node's last one, and
//! cleans up after a deleted node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;
use weft_api::resources::{AllowedUse, BlockAffinity, IPAMBlock, IPPool, IPPoolSpec, WeftNode, WeftNodeSpec};
use weft_api::{Store, StoreExt};
use weft_ipam::gc::{GcOptions, collect};
use weft_ipam::{Allocator, Request};

async fn allocator(pool: &str, block_size: u8) -> (Allocator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = weft_api::store::open(&format!("file:{}", dir.path().display()))
        .await
        .unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": pool})).unwrap();
    spec.block_size = Some(block_size);
    store.create_as(&IPPool::new("pool", spec)).await.unwrap();
    (Allocator::new(store).with_clock(|| 1_000), dir)
}

fn pod_request(node: &str, pod: &str) -> Request {
    Request {
        node: node.into(),
        handle: format!("net.{pod}.eth0"),
        ipv4: 1,
        ipv6: 0,
        pools: Vec::new(),
        attributes: BTreeMap::from([("namespace".into(), "x".into()), ("pod".into(), pod.into())]),
        allowed_use: AllowedUse::Workload,
        reserve_gateway: false,
    }
}

async fn add_pod(allocator: &Allocator, name: &str) {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "x"}})).unwrap();
    allocator.store().create_as(&pod).await.unwrap();
}

const RELEASE: GcOptions = GcOptions {
    grace_seconds: 60,
    dry_run: false,
};

#[tokio::test]
async fn a_live_pod_keeps_its_address_and_a_dead_one_loses_it_after_the_grace_period() {
    let (allocator, _dir) = allocator("198.18.0.0/24", 26).await;
    add_pod(&allocator, "alive").await;
    let alive = allocator.allocate(&pod_request("node-1", "alive")).await.unwrap();
    let dead = allocator.allocate(&pod_request("node-1", "dead")).await.unwrap();

    let early = collect(&allocator, RELEASE, 1_030).await.unwrap();
    assert!(
        early.leaks.is_empty(),
        "within the grace period nothing is a leak: {early:?}"
    );

    let dry = collect(
        &allocator,
        GcOptions {
            dry_run: true,
            ..RELEASE
        },
        1_100,
    )
    .await
    .unwrap();
    assert_eq!(dry.leaks.len(), 1);
    assert_eq!(dry.leaks[0].address, dead[0].address);
    assert!(dry.leaks[0].reason.contains("pod x/dead is gone"), "{:?}", dry.leaks[0]);
    assert!(dry.released.is_empty(), "a dry run releases nothing");

    let report = collect(&allocator, RELEASE, 1_100).await.unwrap();
    assert_eq!(report.released, [dead[0].address]);
    assert_eq!(report.handles_removed, ["net.dead.eth0"]);
    assert_eq!(
        allocator.addresses_of("net.alive.eth0").await.unwrap(),
        alive,
        "the live pod keeps its address"
    );
}

#[tokio::test]
async fn an_allocation_without_a_known_owner_is_never_released() {
    let (allocator, _dir) = allocator("198.18.0.0/24", 26).await;
    let mut request = pod_request("node-1", "anonymous");
    request.attributes.clear();
    allocator.allocate(&request).await.unwrap();
    let report = collect(&allocator, RELEASE, 10_000).await.unwrap();
    assert!(report.leaks.is_empty() && report.released.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_node_keeps_its_last_empty_block_and_gives_up_spare_ones() {
    // /30 blocks of 4 addresses: five pods take two blocks.
    let (allocator, _dir) = allocator("198.18.0.0/28", 30).await;
    for i in 0..5 {
        allocator
            .allocate(&pod_request("node-1", &format!("p{i}")))
            .await
            .unwrap();
    }
    for i in 0..5 {
        allocator.release_handle(&format!("net.p{i}.eth0")).await.unwrap();
    }
    let report = collect(&allocator, RELEASE, 2_000).await.unwrap();
    assert_eq!(report.blocks_released.len(), 1, "{report:?}");
    let (blocks, _) = allocator.store().list_as::<IPAMBlock>(None).await.unwrap();
    assert_eq!(blocks.len(), 1, "the node keeps one block");
    let (affinities, _) = allocator.store().list_as::<BlockAffinity>(None).await.unwrap();
    assert_eq!(affinities.len(), 1);
    assert_eq!(affinities[0].spec.cidr, blocks[0].spec.cidr);
}

#[tokio::test]
async fn the_blocks_of_a_deleted_node_are_released() {
    let (allocator, _dir) = allocator("198.18.0.0/24", 26).await;
    let store = allocator.store();
    for node in ["node-1", "node-2"] {
        store
            .create_as(&WeftNode::new(node, WeftNodeSpec::default()))
            .await
            .unwrap();
    }
    add_pod(&allocator, "on-node-2").await;
    let kept = allocator.allocate(&pod_request("node-2", "on-node-2")).await.unwrap();
    let mut orphan = pod_request("node-1", "gone");
    orphan.attributes.clear();
    allocator.allocate(&orphan).await.unwrap();
    // node-1 is deleted from the cluster.
    store
        .delete(
            &weft_api::Key::new(&weft_api::Kind::of::<WeftNode>(), None, "node-1"),
            None,
        )
        .await
        .unwrap();
    let report = collect(&allocator, RELEASE, 5_000).await.unwrap();
    assert_eq!(report.leaks.len(), 1, "{report:?}");
    assert!(report.leaks[0].reason.contains("node node-1 is gone"));
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await.unwrap();
    let affinities: Vec<Option<String>> = blocks.iter().map(|b| b.spec.affinity.clone()).collect();
    assert_eq!(affinities, [Some("node-2".to_owned())], "node-1's block is gone");
    assert_eq!(allocator.addresses_of("net.on-node-2.eth0").await.unwrap(), kept);
}

#[tokio::test]
async fn a_load_balancer_address_lives_as_long_as_its_service() {
    let (allocator, _dir) = allocator("198.18.0.0/24", 26).await;
    let store = allocator.store();
    let spec: IPPoolSpec =
        serde_json::from_value(json!({"cidr": "198.18.9.0/24", "blockSize": 28, "allowedUses": ["LoadBalancer"]}))
            .unwrap();
    store.create_as(&IPPool::new("lb-pool", spec)).await.unwrap();
    // The cluster tracks nodes: a node-less allocation would be a dead node's.
    store
        .create_as(&WeftNode::new("node-1", WeftNodeSpec::default()))
        .await
        .unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "x", "uid": "0b5e6e0c-1"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap();
    store.create_as(&service).await.unwrap();
    weft_ipam::loadbalancer::reconcile(store).await.unwrap();
    let stored: Service = store.get_as(Some("x"), "web").await.unwrap().unwrap();
    let ingress = weft_ipam::loadbalancer::ingress_ips(&stored);
    assert_eq!(ingress.len(), 1, "{stored:?}");
    assert!(ingress[0].to_string().starts_with("198.18.9."), "{ingress:?}");

    let report = collect(&allocator, RELEASE, u64::MAX / 2).await.unwrap();
    assert!(report.leaks.is_empty(), "the Service exists: {report:?}");
    assert!(report.blocks_released.is_empty(), "{report:?}");

    store
        .delete(
            &weft_api::Key::new(&weft_api::Kind::of::<Service>(), Some("x"), "web"),
            None,
        )
        .await
        .unwrap();
    // reconcile's allocator stamps allocations with the real clock: past the grace period.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3_600;
    let report = collect(&allocator, RELEASE, later).await.unwrap();
    assert_eq!(report.released, ingress, "{report:?}");
    assert!(report.leaks[0].reason.contains("service x/web is gone"), "{report:?}");
}
