//! Property: over random interleavings of allocations and releases by several nodes, some of
//! them cut short by a crash after any number of writes, no address is ever held by two
//! handles, what a finished allocation returned stays its handle's until released, every
//! block stays consistent, and once everything is released (and the GC has cleaned up after
//! the crashes) the whole pool can be allocated again.
//!
//! A crash is simulated by `CrashAfterWrites`, a wrapper around the real file store that lets
//! a given number of writes through and fails every later one, as a process killed at that
//! point would leave things. (Real `kill -9` runs are in `concurrency.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_api::resources::{AllowedUse, IPAMBlock, IPPool, IPPoolSpec};
use weft_api::store::WatchStream;
use weft_api::{Key, Kind, Object, ObjectList, Revision, Store, StoreError, StoreExt};
use weft_ipam::block::Block;
use weft_ipam::gc::{GcOptions, collect};
use weft_ipam::{Allocator, Request};

/// Test double of a process dying mid-operation: the first `allowed` writes reach the real
/// store, every later write fails as if the process were gone.
#[derive(Debug)]
struct CrashAfterWrites {
    inner: Arc<dyn Store>,
    allowed: AtomicUsize,
}

impl CrashAfterWrites {
    fn write(&self) -> Result<(), StoreError> {
        let left = self.allowed.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StoreError::Unreachable {
                endpoint: "crashed process".into(),
                source: "simulated crash".into(),
            });
        }
        self.allowed.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for CrashAfterWrites {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, kind: &Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        self.inner.list(kind, namespace).await
    }
    async fn create(&self, kind: &Kind, value: Value) -> Result<Object, StoreError> {
        self.write()?;
        self.inner.create(kind, value).await
    }
    async fn update(&self, kind: &Kind, value: Value, expected: Revision) -> Result<Object, StoreError> {
        self.write()?;
        self.inner.update(kind, value, expected).await
    }
    async fn delete(&self, key: &Key, expected: Option<Revision>) -> Result<Object, StoreError> {
        self.write()?;
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, kind: &Kind, from: Revision) -> Result<WatchStream, StoreError> {
        self.inner.watch(kind, from).await
    }
}

#[derive(Debug, Clone)]
enum Op {
    Allocate { node: u8, handle: u8, count: u8 },
    Release { handle: u8 },
}

fn op() -> impl Strategy<Value = (Op, Option<u8>)> {
    let op = prop_oneof![
        3 => (0u8..3, 0u8..8, 1u8..4).prop_map(|(node, handle, count)| Op::Allocate { node, handle, count }),
        2 => (0u8..8).prop_map(|handle| Op::Release { handle }),
    ];
    // One operation in four crashes after 0 to 5 writes.
    (op, prop_oneof![3 => Just(None), 1 => (0u8..6).prop_map(Some)])
}

fn handle_name(handle: u8) -> String {
    format!("net.container-{handle}.eth0")
}

async fn holdings(store: &dyn Store) -> BTreeMap<IpAddr, String> {
    let (blocks, _) = store.list_as::<IPAMBlock>(None).await.unwrap();
    let mut held = BTreeMap::new();
    let mut cidrs = Vec::new();
    for stored in blocks {
        let block = Block::from_spec(stored.spec).expect("every block stays consistent");
        for other in &cidrs {
            assert!(
                !block.cidr().contains(other) && !ipnet::IpNet::contains(other, &block.cidr()),
                "blocks overlap"
            );
        }
        cidrs.push(block.cidr());
        for h in block.held() {
            assert!(held.insert(h.address, h.handle).is_none(), "{} held twice", h.address);
        }
    }
    held
}

async fn run(ops: Vec<(Op, Option<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = weft_api::store::open(&format!("file:{}", dir.path().display()))
        .await
        .unwrap();
    let mut spec: IPPoolSpec = serde_json::from_value(json!({"cidr": "198.18.0.0/28"})).unwrap();
    spec.block_size = Some(30);
    store.create_as(&IPPool::new("pool", spec)).await.unwrap();

    // What finished allocations returned and no finished release has given back yet.
    let mut model: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for (op, crash) in ops {
        let backing: Arc<dyn Store> = match crash {
            Some(writes) => Arc::new(CrashAfterWrites {
                inner: Arc::clone(&store),
                allowed: AtomicUsize::new(usize::from(writes)),
            }),
            None => Arc::clone(&store),
        };
        let allocator = Allocator::new(backing);
        match op {
            Op::Allocate { node, handle, count } => {
                let request = Request {
                    node: format!("node-{node}"),
                    handle: handle_name(handle),
                    ipv4: usize::from(count),
                    ipv6: 0,
                    pools: Vec::new(),
                    attributes: BTreeMap::from([
                        ("namespace".to_owned(), "x".to_owned()),
                        ("pod".to_owned(), format!("pod-{handle}")),
                    ]),
                    allowed_use: AllowedUse::Workload,
                    reserve_gateway: false,
                };
                if let Ok(assigned) = allocator.allocate(&request).await {
                    model
                        .entry(handle_name(handle))
                        .or_default()
                        .extend(assigned.iter().map(|a| a.address));
                }
            }
            Op::Release { handle } => {
                // A release cut short may have given back some addresses: from here on the
                // model claims nothing about this handle either way.
                let _ = allocator.release_handle(&handle_name(handle)).await;
                model.remove(&handle_name(handle));
            }
        }
        let held = holdings(store.as_ref()).await;
        for (handle, addresses) in &model {
            for address in addresses {
                assert_eq!(held.get(address), Some(handle), "{address} was returned to {handle}");
            }
        }
    }

    // Release everything, clean up after the crashes, then the whole pool is free again.
    let allocator = Allocator::new(Arc::clone(&store));
    for handle in 0..8 {
        allocator.release_handle(&handle_name(handle)).await.unwrap();
    }
    let options = GcOptions {
        grace_seconds: 0,
        dry_run: false,
    };
    collect(&allocator, options, u64::MAX / 2).await.unwrap();
    assert!(
        holdings(store.as_ref()).await.is_empty(),
        "nothing is held after release and GC"
    );
    let all = Request {
        node: "node-9".into(),
        handle: "net.everything.eth0".into(),
        ipv4: 16,
        ipv6: 0,
        pools: Vec::new(),
        attributes: BTreeMap::new(),
        allowed_use: AllowedUse::Workload,
        reserve_gateway: false,
    };
    let got = allocator
        .allocate(&all)
        .await
        .expect("every released address is allocatable again");
    assert_eq!(got.len(), 16);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_address_is_held_twice_and_everything_released_comes_back(ops in proptest::collection::vec(op(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}
