//! What only the etcd store has: an unreachable endpoint, foreign data under weft's keys,
//! compacted history. Against a real etcd started by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use weft_api::store::etcd::EtcdStore;
use weft_api::testing::{EtcdServer, require};
use weft_api::{Key, Store, StoreError, kinds};

fn etcd() -> Option<EtcdServer> {
    require(EtcdServer::binary().is_some(), "etcd", "apt-get install etcd-server").then(|| EtcdServer::start().unwrap())
}

#[tokio::test]
async fn an_unreachable_etcd_is_an_error_naming_the_endpoint() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let result = weft_api::store::open(&format!("etcd:{endpoint}")).await;
    match result {
        Err(error @ StoreError::Unreachable { .. }) => {
            assert!(error.to_string().contains(&endpoint), "{error}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15), "gave up in bounded time");
}

#[tokio::test]
async fn a_store_whose_etcd_dies_reports_it_unreachable() {
    let Some(mut server) = etcd() else { return };
    let store = EtcdStore::connect(&[server.url()]).await.unwrap();
    server.kill();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        store.list(&kinds::by_name("IPPool").unwrap(), None),
    )
    .await
    .expect("a request to a dead etcd ends in bounded time");
    assert!(matches!(result, Err(StoreError::Unreachable { .. })), "{result:?}");
}

#[tokio::test]
async fn foreign_data_under_weft_keys_is_an_error_naming_the_key() {
    let Some(server) = etcd() else { return };
    let store = EtcdStore::connect(&[server.url()]).await.unwrap();
    let mut raw = etcd_client::Client::connect([server.url()], None).await.unwrap();
    raw.put("/weft/weft.io/ippools/not-json", "{\"metadata\":", None)
        .await
        .unwrap();
    let kind = kinds::by_name("IPPool").unwrap();
    match store.get(&Key::new(&kind, None, "not-json")).await {
        Err(StoreError::Corrupt { location, .. }) => assert!(location.contains("/weft/weft.io/ippools/not-json")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    raw.delete("/weft/weft.io/ippools/not-json", None).await.unwrap();
    let peer = json!({"apiVersion": "weft.io/v1", "kind": "BGPPeer", "metadata": {"name": "peer"}, "spec": {}});
    raw.put("/weft/weft.io/ippools/peer", peer.to_string(), None)
        .await
        .unwrap();
    match store.list(&kind, None).await {
        Err(StoreError::WrongKind { location, .. }) => assert!(location.contains("/weft/weft.io/ippools/peer")),
        other => panic!("expected WrongKind, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_from_compacted_history_fails_with_compacted() {
    let Some(server) = etcd() else { return };
    let store = EtcdStore::connect(&[server.url()]).await.unwrap();
    let kind = kinds::by_name("IPPool").unwrap();
    let first = store
        .create(
            &kind,
            json!({"metadata": {"name": "pool-a"}, "spec": {"cidr": "198.18.0.0/24"}}),
        )
        .await
        .unwrap();
    let mut latest = first.clone();
    for i in 1..5 {
        latest = store
            .update(
                &kind,
                json!({"metadata": {"name": "pool-a"}, "spec": {"cidr": format!("198.18.{i}.0/24")}}),
                latest.revision,
            )
            .await
            .unwrap();
    }
    let mut raw = etcd_client::Client::connect([server.url()], None).await.unwrap();
    raw.compact(latest.revision.0 as i64, None).await.unwrap();
    let mut watch = store.watch(&kind, first.revision).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Err(StoreError::Compacted { oldest, .. }))) => assert_eq!(oldest.0, latest.revision.0 - 1),
        other => panic!("expected Compacted, got {other:?}"),
    }
}
