//! The cluster loop ([`super::run`]) on the Kubernetes store: the node's configuration follows
//! objects written through the Kubernetes API. No API server can run on the machines weft is
//! built on, so the API is weft's `ApiServerDouble` (an HTTP server speaking the REST subset
//! weft uses), reached through kube-rs exactly as in a cluster.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weft_api::store::kube::KubeStore;
use weft_api::testing::ApiServerDouble;
use weft_api::{Key, Kind, Store, kinds};

use super::{Local, run};
use crate::config::Config;

async fn put(store: &dyn Store, value: Value) {
    let kind = kinds::by_name(value["kind"].as_str().unwrap()).unwrap();
    let key = Key::of_value(&kind, &value).unwrap();
    match store.get(&key).await.unwrap() {
        Some(current) => {
            store.update(&kind, value, current.revision).await.unwrap();
        }
        None => {
            store.create(&kind, value).await.unwrap();
        }
    }
}

fn weft_node(name: &str, address: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "weft.io/v1", "kind": "WeftNode",
        "metadata": {"name": name, "labels": labels},
        "spec": {"bgp": {"ipv4Address": address}},
    })
}

/// Waits (at most 20 s) for a published configuration that `check` accepts.
async fn wait_for(
    configs: &mut watch::Receiver<Option<Config>>,
    what: &str,
    check: impl Fn(&Config) -> bool,
) -> Config {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(config) = configs.borrow_and_update().clone()
                && check(&config)
            {
                return config;
            }
            configs.changed().await.unwrap();
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what}: not published within 20 s; last: {:?}", configs.borrow()))
}

fn peers(config: &Config) -> Vec<(IpAddr, u32)> {
    config.peers.iter().map(|peer| (peer.address, peer.asn)).collect()
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_follows_objects_written_through_the_kubernetes_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServerDouble::start().await.unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let store: Arc<dyn Store> = Arc::new(KubeStore::connect(Some(kubeconfig.to_str().unwrap())).await.unwrap());
    put(
        store.as_ref(),
        json!({"apiVersion": "weft.io/v1", "kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": {"asNumber": 65300}}),
    )
    .await;
    put(
        store.as_ref(),
        weft_node("node-a", "198.19.60.1/24", json!({"rack": "r1"})),
    )
    .await;
    put(
        store.as_ref(),
        weft_node("node-b", "198.19.60.2/24", json!({"rack": "r2"})),
    )
    .await;
    put(
        store.as_ref(),
        json!({"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pods"}, "spec": {"cidr": "198.18.0.0/16", "blockSize": 26}}),
    )
    .await;
    put(
        store.as_ref(),
        json!({
            "apiVersion": "weft.io/v1", "kind": "BlockAffinity", "metadata": {"name": "node-a-198-18-60-0-26"},
            "spec": {"node": "node-a", "cidr": "198.18.60.0/26", "state": "confirmed"},
        }),
    )
    .await;

    let (configs_tx, mut configs) = watch::channel(None);
    let cancel = CancellationToken::new();
    let local = Local {
        control_socket: PathBuf::from("/nonexistent/bgpd.sock"),
        metrics_listen: None,
    };
    let follow = tokio::spawn(run(store.clone(), "node-a".into(), local, configs_tx, cancel.clone()));

    // The mesh: node-a peers with node-b in the configured AS and announces its block.
    let first = wait_for(&mut configs, "the mesh configuration", |config| {
        peers(config) == [(address("198.19.60.2"), 65300)]
    })
    .await;
    assert_eq!(first.asn, 65300);
    assert_eq!(first.router_id.to_string(), "198.19.60.1");
    let originated: Vec<String> = first.originate.iter().map(|o| o.prefix.to_string()).collect();
    assert_eq!(originated, ["198.18.60.0/26"]);

    // A ToR for rack r1, chosen by node labels: node-a gets it, as an eBGP peer.
    put(
        store.as_ref(),
        json!({
            "apiVersion": "weft.io/v1", "kind": "BGPPeer", "metadata": {"name": "tor-r1"},
            "spec": {"peerIP": "198.19.60.254", "asNumber": 65000, "nodeSelector": "rack == 'r1'"},
        }),
    )
    .await;
    wait_for(&mut configs, "the rack's ToR as a peer", |config| {
        peers(config).contains(&(address("198.19.60.254"), 65000))
    })
    .await;

    // The ToR's TCP MD5 key from a Secret in weft-system: until that Secret exists the ToR is
    // left out (one of the same name in another namespace does not count), then it has the key.
    put(
        store.as_ref(),
        json!({
            "apiVersion": "weft.io/v1", "kind": "BGPPeer", "metadata": {"name": "tor-r1"},
            "spec": {"peerIP": "198.19.60.254", "asNumber": 65000, "nodeSelector": "rack == 'r1'",
                     "password": {"secretKeyRef": {"name": "bgp-passwords", "key": "tor-r1"}}},
        }),
    )
    .await;
    put(
        store.as_ref(),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bgp-passwords", "namespace": "default"},
            "data": {"tor-r1": "d3Jvbmc="},
        }),
    )
    .await;
    wait_for(&mut configs, "the ToR left out without its Secret", |config| {
        peers(config) == [(address("198.19.60.2"), 65300)]
    })
    .await;
    put(
        store.as_ref(),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bgp-passwords", "namespace": "weft-system"},
            "data": {"tor-r1": "czNjcmV0"},
        }),
    )
    .await;
    wait_for(&mut configs, "the ToR with the Secret's key", |config| {
        config.peers.iter().any(|peer| {
            peer.address == address("198.19.60.254")
                && peer.password == Some(crate::config::Password(b"s3cret".to_vec()))
        })
    })
    .await;

    // The block goes away (the node gave it up): it is no longer announced.
    store
        .delete(
            &Key::new(
                &Kind::of::<weft_api::resources::BlockAffinity>(),
                None,
                "node-a-198-18-60-0-26",
            ),
            None,
        )
        .await
        .unwrap();
    wait_for(&mut configs, "the block withdrawn", |config| {
        config.originate.is_empty()
    })
    .await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("the loop ends when cancelled")
        .unwrap();
}
