//! The allocator on a real file store: affinity, claiming, borrowing, caps, release.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use weft_api::resources::{AllowedUse, BlockAffinity, IPAMBlock, IPAMConfig, IPAMConfigSpec, IPPool, IPPoolSpec};
use weft_api::{Store, StoreExt};
use weft_ipam::{Allocator, IpamError, Request};

struct Fixture {
    allocator: Allocator,
    _dir: tempfile::TempDir,
}

async fn fixture(pools: &[(&str, &str, u8)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = weft_api::store::open(&format!("file:{}", dir.path().display()))
        .await
        .unwrap();
    for (name, cidr, block_size) in pools {
        let mut spec: IPPoolSpec = serde_json::from_value(serde_json::json!({"cidr": cidr})).unwrap();
        spec.block_size = Some(*block_size);
        store.create_as(&IPPool::new(name, spec)).await.unwrap();
    }
    Fixture {
        allocator: Allocator::new(store),
        _dir: dir,
    }
}

async fn set_config(fixture: &Fixture, config: IPAMConfigSpec) {
    fixture
        .allocator
        .store()
        .create_as(&IPAMConfig::new("default", config))
        .await
        .unwrap();
}

fn request(node: &str, handle: &str, ipv4: usize, ipv6: usize) -> Request {
    Request {
        node: node.into(),
        handle: handle.into(),
        ipv4,
        ipv6,
        pools: Vec::new(),
        attributes: BTreeMap::new(),
        allowed_use: AllowedUse::Workload,
        reserve_gateway: false,
    }
}

async fn blocks(fixture: &Fixture) -> Vec<(String, Option<String>)> {
    let (blocks, _) = fixture.allocator.store().list_as::<IPAMBlock>(None).await.unwrap();
    blocks.into_iter().map(|b| (b.spec.cidr, b.spec.affinity)).collect()
}

#[tokio::test]
async fn a_node_claims_a_block_and_allocates_from_it_first() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26)]).await;
    let a = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 1, 0))
        .await
        .unwrap();
    let b = f
        .allocator
        .allocate(&request("node-1", "net.b.eth0", 1, 0))
        .await
        .unwrap();
    assert_eq!(a[0].block, b[0].block, "the second pod uses the node's block");
    assert_ne!(a[0].address, b[0].address);
    let blocks = blocks(&f).await;
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].1.as_deref(), Some("node-1"));
    let (affinities, _) = f.allocator.store().list_as::<BlockAffinity>(None).await.unwrap();
    assert_eq!(affinities.len(), 1);
    assert_eq!(affinities[0].spec.state, weft_api::resources::AffinityState::Confirmed);
}

#[tokio::test]
async fn two_nodes_get_different_blocks() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26)]).await;
    let a = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 1, 0))
        .await
        .unwrap();
    let b = f
        .allocator
        .allocate(&request("node-2", "net.b.eth0", 1, 0))
        .await
        .unwrap();
    assert_ne!(a[0].block, b[0].block);
}

#[tokio::test]
async fn dual_stack_gives_one_address_of_each_family() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26), ("v6", "2001:db8:100::/120", 122)]).await;
    let got = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 1, 1))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].address.is_ipv4() && got[1].address.is_ipv6());
    assert!("2001:db8:100::/120".parse::<IpNet>().unwrap().contains(&got[1].address));
}

#[tokio::test]
async fn allocating_again_for_the_same_handle_returns_what_it_holds() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26)]).await;
    let first = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 1, 0))
        .await
        .unwrap();
    let again = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 1, 0))
        .await
        .unwrap();
    assert_eq!(first, again);
}

#[tokio::test]
async fn release_by_handle_frees_exactly_its_addresses_and_is_idempotent() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26)]).await;
    let a = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 2, 0))
        .await
        .unwrap();
    let b = f
        .allocator
        .allocate(&request("node-1", "net.b.eth0", 1, 0))
        .await
        .unwrap();
    let mut released = f.allocator.release_handle("net.a.eth0").await.unwrap();
    released.sort();
    let mut expected: Vec<IpAddr> = a.iter().map(|x| x.address).collect();
    expected.sort();
    assert_eq!(released, expected);
    assert!(f.allocator.release_handle("net.a.eth0").await.unwrap().is_empty());
    assert!(f.allocator.release_handle("never-existed").await.unwrap().is_empty());
    assert_eq!(f.allocator.addresses_of("net.b.eth0").await.unwrap(), b);
}

#[tokio::test]
async fn a_full_block_leads_to_a_new_block_then_borrowing_then_exhaustion() {
    // A /29 pool of two /30 blocks: 8 addresses.
    let f = fixture(&[("v4", "198.18.0.0/29", 30)]).await;
    for i in 0..5 {
        f.allocator
            .allocate(&request("node-1", &format!("net.a{i}.eth0"), 1, 0))
            .await
            .unwrap();
    }
    assert_eq!(blocks(&f).await.len(), 2, "node-1 claimed both blocks");
    // node-2 finds no free block and borrows from node-1's.
    let borrowed = f
        .allocator
        .allocate(&request("node-2", "net.b.eth0", 3, 0))
        .await
        .unwrap();
    assert_eq!(borrowed.len(), 3);
    let full = f.allocator.allocate(&request("node-2", "net.c.eth0", 1, 0)).await;
    match full {
        Err(IpamError::Exhausted { wanted, got, .. }) => assert_eq!((wanted, got), (1, 0)),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert!(
        f.allocator.addresses_of("net.c.eth0").await.unwrap().is_empty(),
        "nothing half-done"
    );
}

#[tokio::test]
async fn strict_affinity_forbids_borrowing_and_the_block_cap_is_named() {
    let f = fixture(&[("v4", "198.18.0.0/28", 30)]).await;
    set_config(
        &f,
        IPAMConfigSpec {
            strict_affinity: true,
            max_blocks_per_host: 1,
            ..IPAMConfigSpec::default()
        },
    )
    .await;
    for i in 0..4 {
        f.allocator
            .allocate(&request("node-1", &format!("net.a{i}.eth0"), 1, 0))
            .await
            .unwrap();
    }
    let capped = f.allocator.allocate(&request("node-1", "net.x.eth0", 1, 0)).await;
    assert!(
        matches!(capped, Err(IpamError::BlockCapReached { max: 1, .. })),
        "{capped:?}"
    );
    assert!(capped.unwrap_err().to_string().contains("maxBlocksPerHost"));
    // Another node still gets its own block.
    f.allocator
        .allocate(&request("node-2", "net.y.eth0", 1, 0))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_dual_stack_request_takes_nothing() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26)]).await;
    let result = f.allocator.allocate(&request("node-1", "net.a.eth0", 1, 1)).await;
    assert!(matches!(result, Err(IpamError::NoPool { .. })), "{result:?}");
    let (blocks, _) = f.allocator.store().list_as::<IPAMBlock>(None).await.unwrap();
    assert!(
        blocks.iter().all(|b| b.spec.allocations.iter().all(Option::is_none)),
        "the IPv4 address was given back"
    );
}

#[tokio::test]
async fn reserved_addresses_are_never_handed_out() {
    let f = fixture(&[("v4", "198.18.0.0/30", 30)]).await;
    set_config(
        &f,
        IPAMConfigSpec {
            reserved_cidrs: vec!["198.18.0.0/31".into()],
            ..IPAMConfigSpec::default()
        },
    )
    .await;
    let got = f
        .allocator
        .allocate(&request("node-1", "net.a.eth0", 2, 0))
        .await
        .unwrap();
    let got: Vec<String> = got.iter().map(|a| a.address.to_string()).collect();
    assert_eq!(got, ["198.18.0.2", "198.18.0.3"]);
}

#[tokio::test]
async fn an_unknown_requested_pool_is_named() {
    let f = fixture(&[("v4", "198.18.0.0/24", 26)]).await;
    let mut r = request("node-1", "net.a.eth0", 1, 0);
    r.pools = vec!["198.19.0.0/24".parse().unwrap()];
    let error = f.allocator.allocate(&r).await.unwrap_err();
    assert!(
        error.to_string().contains("pool 198.19.0.0/24 does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn a_gateway_style_request_keeps_each_blocks_network_gateway_and_broadcast() {
    let f = fixture(&[("v4", "198.18.0.0/29", 29)]).await;
    let mut r = request("node-1", "net.a.eth0", 5, 0);
    r.reserve_gateway = true;
    let got = f.allocator.allocate(&r).await.unwrap();
    let got: Vec<String> = got.iter().map(|a| a.address.to_string()).collect();
    assert_eq!(
        got,
        ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.0.6"]
    );
    assert_eq!(
        weft_ipam::allocator::block_gateway(&"198.18.0.0/29".parse().unwrap()).to_string(),
        "198.18.0.1"
    );
    r.handle = "net.b.eth0".into();
    r.ipv4 = 1;
    assert!(matches!(
        f.allocator.allocate(&r).await,
        Err(IpamError::Exhausted { .. })
    ));
}
