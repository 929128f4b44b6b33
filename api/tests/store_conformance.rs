//! One conformance suite for every store backend: the file store, a real etcd started by the
//! test, and the Kubernetes backend against the in-repo API-server test double.
//!
//! Each `conformance!` case runs once per backend (`file_…`, `etcd_…`, `kube_…`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use weft_api::store::kube::KubeStore;
use weft_api::testing::{ApiServerDouble, EtcdServer, require};
use weft_api::{Key, Kind, Revision, Store, StoreError, WatchEvent, Write, kinds};

/// A store under test and whatever keeps it alive (a temporary dir, a daemon, a server).
struct Backend {
    store: Arc<dyn Store>,
    setting: String,
    server: Server,
    _dir: tempfile::TempDir,
}

enum Server {
    File,
    Etcd(EtcdServer),
    Kube(ApiServerDouble),
}

impl Backend {
    async fn file() -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let setting = format!("file:{}", dir.path().join("store").display());
        Some(Backend {
            store: weft_api::store::open(&setting).await.unwrap(),
            setting,
            server: Server::File,
            _dir: dir,
        })
    }

    async fn etcd() -> Option<Backend> {
        if !require(EtcdServer::binary().is_some(), "etcd", "apt-get install etcd-server") {
            return None;
        }
        let server = EtcdServer::start().unwrap();
        let setting = server.setting();
        Some(Backend {
            store: weft_api::store::open(&setting).await.unwrap(),
            setting,
            server: Server::Etcd(server),
            _dir: tempfile::tempdir().unwrap(),
        })
    }

    async fn kube() -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let server = ApiServerDouble::start().await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let setting = format!("kubernetes:{}", kubeconfig.display());
        Some(Backend {
            store: Arc::new(KubeStore::connect(Some(kubeconfig.to_str().unwrap())).await.unwrap()),
            setting,
            server: Server::Kube(server),
            _dir: dir,
        })
    }

    /// Restarts the server side (or reopens the file store), as after a crash or an upgrade.
    async fn restart(&mut self) {
        match &mut self.server {
            Server::File => {}
            Server::Etcd(server) => server.restart().unwrap(),
            Server::Kube(server) => server.restart().await.unwrap(),
        }
        self.store = weft_api::store::open(&self.setting).await.unwrap();
    }
}

fn pool_kind() -> Kind {
    kinds::by_name("IPPool").unwrap()
}

fn endpoint_kind() -> Kind {
    kinds::by_name("WorkloadEndpoint").unwrap()
}

fn pool(name: &str, cidr: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"cidr": cidr}})
}

fn endpoint(namespace: &str, name: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"node": "node-1", "interfaceName": "wft0123456789a", "ipNetworks": ["198.18.0.5/32"]},
    })
}

/// Collects `count` events from a watch, failing after `limit`.
async fn take_events(stream: &mut weft_api::store::WatchStream, count: usize, limit: Duration) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while events.len() < count {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(error))) => panic!("watch failed after {} events: {error}", events.len()),
            Ok(None) => panic!("watch ended after {} of {count} events", events.len()),
            Err(_) => panic!(
                "waited {limit:?} for {count} watch events, got {}: {events:?}",
                events.len()
            ),
        }
    }
    events
}

/// Asserts that no further event arrives within `quiet`.
async fn assert_no_more_events(stream: &mut weft_api::store::WatchStream, quiet: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(quiet, stream.next()).await {
        panic!("expected no more watch events, got {event:?}");
    }
}

fn summary(event: &WatchEvent) -> (&'static str, String, Option<String>) {
    let (kind, object) = match event {
        WatchEvent::Added(o) => ("added", o),
        WatchEvent::Modified(o) => ("modified", o),
        WatchEvent::Deleted(o) => ("deleted", o),
    };
    let cidr = object
        .value
        .pointer("/spec/cidr")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (kind, object.key.name.clone(), cidr)
}

// ---------------------------------------------------------------------------------------------
// The cases.

async fn create_get_list_update_delete(backend: Backend) {
    let store = backend.store;
    let kind = pool_kind();
    let created = store.create(&kind, pool("pool-b", "198.18.0.0/16")).await.unwrap();
    store.create(&kind, pool("pool-a", "2001:db8::/48")).await.unwrap();
    assert_eq!(
        created
            .value
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str),
        Some(created.revision.to_string().as_str()),
        "a read object carries its revision as metadata.resourceVersion"
    );
    assert_eq!(created.value["apiVersion"], "weft.io/v1");
    assert_eq!(created.value["kind"], "IPPool");

    let key = Key::new(&kind, None, "pool-b");
    let got = store.get(&key).await.unwrap().expect("pool-b exists");
    assert_eq!(got.revision, created.revision);
    assert_eq!(got.value["spec"]["cidr"], "198.18.0.0/16");

    let list = store.list(&kind, None).await.unwrap();
    let names: Vec<_> = list.items.iter().map(|o| o.key.name.as_str()).collect();
    assert_eq!(names, ["pool-a", "pool-b"], "a list is sorted by key");
    assert!(list.revision >= created.revision);

    let mut changed = got.value.clone();
    changed["spec"]["disabled"] = json!(true);
    let updated = store.update(&kind, changed, got.revision).await.unwrap();
    assert!(updated.revision > got.revision, "every write makes a larger revision");
    assert_eq!(store.get(&key).await.unwrap().unwrap().value["spec"]["disabled"], true);

    let deleted = store.delete(&key, Some(updated.revision)).await.unwrap();
    assert_eq!(
        deleted.value["spec"]["cidr"], "198.18.0.0/16",
        "delete returns the last state"
    );
    assert!(store.get(&key).await.unwrap().is_none());
    assert_eq!(store.list(&kind, None).await.unwrap().items.len(), 1);
}

async fn namespaced_objects_are_listed_per_namespace(backend: Backend) {
    let store = backend.store;
    let kind = endpoint_kind();
    store.create(&kind, endpoint("y", "pod-b-eth0")).await.unwrap();
    store.create(&kind, endpoint("x", "pod-a-eth0")).await.unwrap();
    store.create(&kind, endpoint("x", "pod-c-eth0")).await.unwrap();
    let in_x = store.list(&kind, Some("x")).await.unwrap();
    let names: Vec<_> = in_x.items.iter().map(|o| o.key.name.as_str()).collect();
    assert_eq!(names, ["pod-a-eth0", "pod-c-eth0"]);
    let all = store.list(&kind, None).await.unwrap();
    let keys: Vec<_> = all
        .items
        .iter()
        .map(|o| format!("{}/{}", o.key.namespace.as_deref().unwrap(), o.key.name))
        .collect();
    assert_eq!(keys, ["x/pod-a-eth0", "x/pod-c-eth0", "y/pod-b-eth0"]);
    let missing_namespace = store.create(&kind, pool("no-namespace", "198.18.0.0/24")).await;
    assert!(
        matches!(missing_namespace, Err(StoreError::Invalid { .. })),
        "{missing_namespace:?}"
    );
}

async fn create_of_an_existing_object_is_already_exists(backend: Backend) {
    let store = backend.store;
    let kind = pool_kind();
    store.create(&kind, pool("pool-a", "198.18.0.0/16")).await.unwrap();
    let again = store.create(&kind, pool("pool-a", "198.19.0.0/16")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    let kept = store.get(&Key::new(&kind, None, "pool-a")).await.unwrap().unwrap();
    assert_eq!(
        kept.value["spec"]["cidr"], "198.18.0.0/16",
        "the failed create changed nothing"
    );
}

async fn stale_revision_is_a_conflict_and_changes_nothing(backend: Backend) {
    let store = backend.store;
    let kind = pool_kind();
    let first = store.create(&kind, pool("pool-a", "198.18.0.0/16")).await.unwrap();
    let second = store
        .update(&kind, pool("pool-a", "198.18.0.0/17"), first.revision)
        .await
        .unwrap();

    let stale_update = store
        .update(&kind, pool("pool-a", "198.18.0.0/18"), first.revision)
        .await;
    match stale_update {
        Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected, first.revision),
        other => panic!("a stale update must be a Conflict, got {other:?}"),
    }
    let key = Key::new(&kind, None, "pool-a");
    let stale_delete = store.delete(&key, Some(first.revision)).await;
    assert!(
        matches!(stale_delete, Err(StoreError::Conflict { .. })),
        "{stale_delete:?}"
    );

    let now = store.get(&key).await.unwrap().unwrap();
    assert_eq!(now.revision, second.revision);
    assert_eq!(now.value["spec"]["cidr"], "198.18.0.0/17");

    let missing = Key::new(&kind, None, "pool-missing");
    let update_missing = store
        .update(&kind, pool("pool-missing", "198.18.0.0/16"), second.revision)
        .await;
    assert!(
        matches!(update_missing, Err(StoreError::NotFound { .. })),
        "{update_missing:?}"
    );
    let delete_missing = store.delete(&missing, None).await;
    assert!(
        matches!(delete_missing, Err(StoreError::NotFound { .. })),
        "{delete_missing:?}"
    );
}

async fn a_transaction_makes_every_write_and_watchers_see_each(backend: Backend) {
    let store = backend.store;
    let kind = pool_kind();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    let b = store.create(&kind, pool("pool-b", "198.18.1.0/24")).await.unwrap();
    let gone = store.create(&endpoint_kind(), endpoint("ns-1", "gone")).await.unwrap();
    let mut pools = store.watch(&kind, b.revision).await.unwrap();
    let written = store
        .transact(vec![
            Write::Update {
                kind: kind.clone(),
                value: pool("pool-a", "198.18.2.0/24"),
                expected: a.revision,
            },
            Write::Create {
                kind: kind.clone(),
                value: pool("pool-c", "198.18.3.0/24"),
            },
            Write::Delete {
                key: Key::new(&kind, None, "pool-b"),
                expected: Some(b.revision),
            },
            Write::Delete {
                key: gone.key.clone(),
                expected: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(written.len(), 4);
    // (A deletion's revision differs by backend: see the module documentation of the store.)
    assert!(
        written[..2].iter().all(|object| object.revision > gone.revision),
        "{written:?}"
    );
    assert_eq!(
        written[2].value["spec"]["cidr"], "198.18.1.0/24",
        "a deletion returns the last state"
    );

    let names: Vec<String> = store
        .list(&kind, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|object| format!("{}={}", object.key.name, object.value["spec"]["cidr"].as_str().unwrap()))
        .collect();
    assert_eq!(names, ["pool-a=198.18.2.0/24", "pool-c=198.18.3.0/24"]);
    assert!(store.get(&gone.key).await.unwrap().is_none());
    // The endpoint deleted in between is of another kind: the pool watch shows the pools only.
    let events: Vec<_> = take_events(&mut pools, 3, Duration::from_secs(10))
        .await
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        events,
        [
            ("modified", "pool-a".to_string(), Some("198.18.2.0/24".to_string())),
            ("added", "pool-c".to_string(), Some("198.18.3.0/24".to_string())),
            ("deleted", "pool-b".to_string(), Some("198.18.1.0/24".to_string())),
        ]
    );
    assert_no_more_events(&mut pools, Duration::from_millis(300)).await;
}

async fn a_transaction_with_one_failed_condition_changes_nothing(backend: Backend) {
    let store = backend.store;
    let kind = pool_kind();
    let first = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    let second = store
        .update(&kind, pool("pool-a", "198.18.1.0/24"), first.revision)
        .await
        .unwrap();
    let create_c = || Write::Create {
        kind: kind.clone(),
        value: pool("pool-c", "198.18.3.0/24"),
    };
    let stale = store
        .transact(vec![
            create_c(),
            Write::Update {
                kind: kind.clone(),
                value: pool("pool-a", "198.18.2.0/24"),
                expected: first.revision,
            },
        ])
        .await;
    match stale {
        Err(StoreError::Conflict { key, expected, found }) => {
            assert!(key.contains("pool-a"), "{key}");
            assert_eq!((expected, found), (first.revision, Some(second.revision)));
        }
        other => panic!("a stale update in a transaction must be a Conflict, got {other:?}"),
    }
    let missing = store
        .transact(vec![
            create_c(),
            Write::Delete {
                key: Key::new(&kind, None, "pool-missing"),
                expected: None,
            },
        ])
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    let existing = store
        .transact(vec![
            create_c(),
            Write::Create {
                kind: kind.clone(),
                value: pool("pool-a", "198.18.9.0/24"),
            },
        ])
        .await;
    assert!(
        matches!(existing, Err(StoreError::AlreadyExists { .. })),
        "{existing:?}"
    );
    let twice = store
        .transact(vec![
            create_c(),
            Write::Delete {
                key: Key::new(&kind, None, "pool-c"),
                expected: None,
            },
        ])
        .await;
    assert!(matches!(twice, Err(StoreError::Invalid { .. })), "{twice:?}");

    let list = store.list(&kind, None).await.unwrap();
    let names: Vec<&str> = list.items.iter().map(|object| object.key.name.as_str()).collect();
    assert_eq!(names, ["pool-a"], "no write of a failed transaction happened");
    assert_eq!(list.items[0].revision, second.revision);
}

async fn a_service_status_is_written_with_the_service(backend: Backend) {
    let store = backend.store;
    let kind = kinds::by_name("Service").unwrap();
    let created = store
        .create(
            &kind,
            json!({"metadata": {"name": "web", "namespace": "x"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    let mut value = created.value.clone();
    value["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.18.9.1"}]}});
    let updated = store.update(&kind, value, created.revision).await.unwrap();
    assert_eq!(
        updated.value["status"]["loadBalancer"]["ingress"][0]["ip"],
        "198.18.9.1"
    );
    let read = store.get(&created.key).await.unwrap().unwrap();
    assert_eq!(
        read.value["status"]["loadBalancer"]["ingress"][0]["ip"], "198.18.9.1",
        "{read:?}"
    );
    assert_eq!(read.revision, updated.revision);

    // Clearing the status and changing the spec in one update does both.
    let mut value = read.value.clone();
    value.as_object_mut().unwrap().remove("status");
    value["spec"]["type"] = json!("ClusterIP");
    store.update(&kind, value, read.revision).await.unwrap();
    let read = store.get(&created.key).await.unwrap().unwrap();
    assert_eq!(read.value["spec"]["type"], "ClusterIP");
    assert!(
        read.value
            .get("status")
            .is_none_or(|status| status.get("loadBalancer").is_none()),
        "{read:?}"
    );
}

async fn an_object_of_the_wrong_kind_is_refused(backend: Backend) {
    let store = backend.store;
    let mut value = pool("pool-a", "198.18.0.0/16");
    value["kind"] = json!("BGPPeer");
    let result = store.create(&pool_kind(), value).await;
    assert!(matches!(result, Err(StoreError::WrongKind { .. })), "{result:?}");
    let mut bad_name = pool("Pool_A", "198.18.0.0/16");
    bad_name["kind"] = json!("IPPool");
    let result = store.create(&pool_kind(), bad_name).await;
    assert!(matches!(result, Err(StoreError::Invalid { .. })), "{result:?}");
}

async fn watch_delivers_every_change_once_in_order(backend: Backend) {
    let store = backend.store;
    let kind = pool_kind();
    store.create(&kind, pool("before", "198.18.0.0/24")).await.unwrap();
    let start = store.list(&kind, None).await.unwrap().revision;
    let mut watch = store.watch(&kind, start).await.unwrap();

    let a = store.create(&kind, pool("pool-a", "198.18.1.0/24")).await.unwrap();
    // Another kind's change must not show up in this watch.
    store
        .create(&endpoint_kind(), endpoint("x", "pod-a-eth0"))
        .await
        .unwrap();
    let a2 = store
        .update(&kind, pool("pool-a", "198.18.2.0/24"), a.revision)
        .await
        .unwrap();
    store.create(&kind, pool("pool-b", "198.18.3.0/24")).await.unwrap();
    store
        .delete(&Key::new(&kind, None, "pool-a"), Some(a2.revision))
        .await
        .unwrap();

    let events = take_events(&mut watch, 4, Duration::from_secs(10)).await;
    let got: Vec<_> = events.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ("added", "pool-a".into(), Some("198.18.1.0/24".into())),
            ("modified", "pool-a".into(), Some("198.18.2.0/24".into())),
            ("added", "pool-b".into(), Some("198.18.3.0/24".into())),
            ("deleted", "pool-a".into(), Some("198.18.2.0/24".into())),
        ]
    );
    let revisions: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "revisions increase: {revisions:?}"
    );
    assert!(revisions[0] > start);
    assert_no_more_events(&mut watch, Duration::from_millis(300)).await;

    // Watching from the middle gives exactly the rest.
    let mut from_middle = store.watch(&kind, revisions[1]).await.unwrap();
    let rest = take_events(&mut from_middle, 2, Duration::from_secs(10)).await;
    assert_eq!(
        rest.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revisions[2..]
    );
    assert_no_more_events(&mut from_middle, Duration::from_millis(300)).await;
}

async fn watch_resumes_after_a_restart(mut backend: Backend) {
    let kind = pool_kind();
    let start = backend.store.list(&kind, None).await.unwrap().revision;
    let mut watch = backend.store.watch(&kind, start).await.unwrap();
    for i in 0..3 {
        backend
            .store
            .create(&kind, pool(&format!("pool-{i}"), &format!("198.18.{i}.0/24")))
            .await
            .unwrap();
    }
    let seen = take_events(&mut watch, 3, Duration::from_secs(10)).await;
    let last_seen = seen.last().unwrap().revision();
    drop(watch);

    backend.restart().await;
    for i in 3..6 {
        backend
            .store
            .create(&kind, pool(&format!("pool-{i}"), &format!("198.18.{i}.0/24")))
            .await
            .unwrap();
    }
    let mut resumed = backend.store.watch(&kind, last_seen).await.unwrap();
    let rest = take_events(&mut resumed, 3, Duration::from_secs(10)).await;
    let names: Vec<_> = rest.iter().map(|e| e.object().key.name.clone()).collect();
    assert_eq!(
        names,
        ["pool-3", "pool-4", "pool-5"],
        "exactly the changes after the last one seen"
    );
    assert_no_more_events(&mut resumed, Duration::from_millis(300)).await;
}

fn stress_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-store-stress"))
}

fn spawn_stress(setting: &str, name: &str, times: u32) -> Child {
    Command::new(stress_binary())
        .args(["--store", setting, "--name", name, "--times", &times.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn counter(store: &dyn Store, name: &str) -> u64 {
    let key = Key::new(&kinds::by_name("IPAMHandle").unwrap(), None, name);
    store
        .get(&key)
        .await
        .unwrap()
        .and_then(|o| o.value.pointer("/metadata/annotations/count")?.as_str()?.parse().ok())
        .unwrap_or(0)
}

async fn concurrent_processes_lose_no_increment(backend: Backend) {
    const PROCESSES: usize = 4;
    const TIMES: u32 = 200;
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_stress(&backend.setting, "counter", TIMES))
        .collect();
    let mut committed = BTreeSet::new();
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "a stress process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            assert!(
                committed.insert(line.parse::<u64>().unwrap()),
                "count {line} committed twice"
            );
        }
    }
    let total = PROCESSES as u64 * u64::from(TIMES);
    assert_eq!(committed.len() as u64, total);
    assert_eq!(
        counter(backend.store.as_ref(), "counter").await,
        total,
        "no increment lost"
    );
}

async fn kill_9_during_writes_leaves_a_readable_store(backend: Backend) {
    const PROCESSES: usize = 3;
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_stress(&backend.setting, "counter", 100_000))
        .collect();
    // Let them write for a while, then kill -9 each (by its own pid) mid-flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter(backend.store.as_ref(), "counter").await < 150 {
        assert!(Instant::now() < deadline, "the writers made no progress in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut acknowledged = 0u64;
    for child in &mut children {
        child.kill().unwrap();
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        let last = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        acknowledged = acknowledged.max(last);
    }
    // Reopen, as a new process would, and read everything.
    let store = weft_api::store::open(&backend.setting).await.unwrap();
    let value = counter(store.as_ref(), "counter").await;
    assert!(
        value >= acknowledged && value <= acknowledged + PROCESSES as u64,
        "the counter ({value}) holds every acknowledged increment ({acknowledged}) and at most one \
         unacknowledged one per killed writer"
    );
    let handles = store.list(&kinds::by_name("IPAMHandle").unwrap(), None).await.unwrap();
    assert_eq!(handles.items.len(), 1);
    // And the store still takes writes.
    store
        .create(&pool_kind(), pool("after-kill", "198.18.0.0/24"))
        .await
        .unwrap();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Backend::file().await {
                        super::$case(backend).await;
                    }
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Backend::etcd().await {
                        super::$case(backend).await;
                    }
                }
            )*
        }
        mod kube {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(backend) = super::Backend::kube().await {
                        super::$case(backend).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    create_get_list_update_delete,
    namespaced_objects_are_listed_per_namespace,
    create_of_an_existing_object_is_already_exists,
    stale_revision_is_a_conflict_and_changes_nothing,
    a_transaction_makes_every_write_and_watchers_see_each,
    a_transaction_with_one_failed_condition_changes_nothing,
    a_service_status_is_written_with_the_service,
    an_object_of_the_wrong_kind_is_refused,
    watch_delivers_every_change_once_in_order,
    watch_resumes_after_a_restart,
    concurrent_processes_lose_no_increment,
    kill_9_during_writes_leaves_a_readable_store,
);
