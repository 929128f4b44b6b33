//! The `kubernetes` store backend, least powerful test first:
//! - the exact HTTP requests `KubeStore` sends and how it reads the answers, through a
//!   `tower-test` mock in place of the API server;
//! - `KubeStore` against `ApiServerDouble`, the in-repo test double of the API server (no
//!   kube-apiserver can be installed here), over real sockets on 127.0.0.1, from this process
//!   and from another one.
//!
//! The kinds are local to this file so that it does not depend on the resource types.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use hyper::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use weft_api::store::kube::KubeStore;
use weft_api::testing::api_server_double::ApiServerDouble;
use weft_api::{Key, Kind, Object, Revision, Store, StoreError, WatchEvent};

/// How long any single step may take before the test fails saying what it waited for.
const STEP: Duration = Duration::from_secs(10);

fn ippool() -> Kind {
    Kind {
        group: "weft.io".into(),
        version: "v1".into(),
        kind: "IPPool".into(),
        plural: "ippools".into(),
        namespaced: false,
    }
}

fn workload_endpoint() -> Kind {
    Kind {
        group: "weft.io".into(),
        version: "v1".into(),
        kind: "WorkloadEndpoint".into(),
        plural: "workloadendpoints".into(),
        namespaced: true,
    }
}

fn pool(name: &str, cidr: &str) -> Value {
    json!({"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}})
}

/// A pool as the API server answers with it.
fn stored_pool(name: &str, cidr: &str, resource_version: &str) -> Value {
    let mut value = pool(name, cidr);
    value["metadata"]["resourceVersion"] = json!(resource_version);
    value["metadata"]["uid"] = json!(format!("uid-{name}"));
    value
}

fn endpoint(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "weft.io/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"node": "node-1", "addresses": ["198.18.0.10/32"]},
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

// ---------------------------------------------------------------------------------------------
// The requests, through a tower-test mock.

type MockHandle = mock::Handle<Request<Body>, Response<Body>>;

fn mock_store() -> (KubeStore, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    (KubeStore::with_client(client, "http://api-server.invalid"), handle)
}

/// The next request the store sends, and where to answer it.
async fn next_request(handle: &mut MockHandle) -> Result<(Request<Body>, mock::SendResponse<Response<Body>>)> {
    tokio::time::timeout(STEP, handle.next_request())
        .await
        .context("waiting for the store's next request")?
        .context("the store dropped its client without another request")
}

fn path_and_query(request: &Request<Body>) -> String {
    request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default()
}

async fn body_json(request: Request<Body>) -> Result<Value> {
    let bytes = request.into_body().collect_bytes().await?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn respond(send: mock::SendResponse<Response<Body>>, code: u16, value: &Value) -> Result<()> {
    let response = Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value)?))?;
    send.send_response(response);
    Ok(())
}

fn respond_lines(send: mock::SendResponse<Response<Body>>, lines: &[Value]) -> Result<()> {
    let mut body = Vec::new();
    for line in lines {
        serde_json::to_writer(&mut body, line)?;
        body.push(b'\n');
    }
    send.send_response(Response::builder().status(200).body(Body::from(body))?);
    Ok(())
}

async fn finish<T: Send + 'static>(task: tokio::task::JoinHandle<T>) -> Result<T> {
    Ok(tokio::time::timeout(STEP, task)
        .await
        .context("waiting for the store call to finish")??)
}

#[tokio::test]
async fn get_of_a_namespaced_object_asks_for_its_namespaced_url() -> Result<()> {
    let (store, mut handle) = mock_store();
    let key = Key::new(&workload_endpoint(), Some("ns-a"), "wep-1");
    let task = tokio::spawn(async move { store.get(&key).await });
    let (request, send) = next_request(&mut handle).await?;
    assert_eq!(request.method(), Method::GET);
    assert_eq!(
        path_and_query(&request),
        "/apis/weft.io/v1/namespaces/ns-a/workloadendpoints/wep-1"
    );
    let mut answer = endpoint("ns-a", "wep-1");
    answer["metadata"]["resourceVersion"] = json!("5");
    respond(send, 200, &answer)?;
    let object = finish(task).await??.context("the object")?;
    assert_eq!(object.revision, Revision(5));
    assert_eq!(object.key, Key::new(&workload_endpoint(), Some("ns-a"), "wep-1"));
    assert_eq!(object.value["spec"]["node"], "node-1");
    assert_eq!(object.value["metadata"]["resourceVersion"], "5");
    Ok(())
}

#[tokio::test]
async fn get_of_a_missing_object_is_none() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move { store.get(&Key::new(&ippool(), None, "pool-a")).await });
    let (request, send) = next_request(&mut handle).await?;
    assert_eq!(path_and_query(&request), "/apis/weft.io/v1/ippools/pool-a");
    respond(
        send,
        404,
        &status(404, "NotFound", "ippools.weft.io \"pool-a\" not found"),
    )?;
    assert!(finish(task).await??.is_none());
    Ok(())
}

#[tokio::test]
async fn create_posts_the_object_without_a_resource_version() -> Result<()> {
    let (store, mut handle) = mock_store();
    let mut value = pool("pool-a", "198.18.0.0/16");
    value["metadata"]["resourceVersion"] = json!("99");
    value.as_object_mut().context("an object")?.remove("kind");
    let task = tokio::spawn(async move { store.create(&ippool(), value).await });
    let (request, send) = next_request(&mut handle).await?;
    assert_eq!(request.method(), Method::POST);
    assert_eq!(path_and_query(&request), "/apis/weft.io/v1/ippools?&fieldManager=weft");
    let body = body_json(request).await?;
    assert_eq!(body["kind"], "IPPool");
    assert_eq!(body["apiVersion"], "weft.io/v1");
    assert!(body["metadata"].get("resourceVersion").is_none(), "{body}");
    respond(send, 201, &stored_pool("pool-a", "198.18.0.0/16", "3"))?;
    let created = finish(task).await??;
    assert_eq!(created.revision, Revision(3));
    Ok(())
}

#[tokio::test]
async fn create_answered_with_409_is_already_exists() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move { store.create(&ippool(), pool("pool-a", "198.18.0.0/16")).await });
    let (_request, send) = next_request(&mut handle).await?;
    respond(
        send,
        409,
        &status(409, "AlreadyExists", "ippools.weft.io \"pool-a\" already exists"),
    )?;
    match finish(task).await? {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "IPPool/pool-a"),
        other => bail!("expected AlreadyExists, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn update_sends_put_with_the_expected_resource_version() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .update(&ippool(), pool("pool-a", "198.18.0.0/17"), Revision(7))
            .await
    });
    let (request, send) = next_request(&mut handle).await?;
    assert_eq!(request.method(), Method::PUT);
    assert_eq!(
        path_and_query(&request),
        "/apis/weft.io/v1/ippools/pool-a?&fieldManager=weft"
    );
    let body = body_json(request).await?;
    assert_eq!(body["metadata"]["resourceVersion"], "7");
    assert_eq!(body["spec"]["cidr"], "198.18.0.0/17");
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/17", "8"))?;
    let updated = finish(task).await??;
    assert_eq!(updated.revision, Revision(8));
    assert_eq!(updated.value["metadata"]["resourceVersion"], "8");
    Ok(())
}

#[tokio::test]
async fn update_answered_with_409_is_a_conflict_with_the_current_revision() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .update(&ippool(), pool("pool-a", "198.18.0.0/17"), Revision(7))
            .await
    });
    let (_put, send) = next_request(&mut handle).await?;
    respond(
        send,
        409,
        &status(
            409,
            "Conflict",
            "Operation cannot be fulfilled on ippools.weft.io \"pool-a\": the object has been modified",
        ),
    )?;
    let (get, send) = next_request(&mut handle).await?;
    assert_eq!(get.method(), Method::GET);
    assert_eq!(path_and_query(&get), "/apis/weft.io/v1/ippools/pool-a");
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "9"))?;
    match finish(task).await? {
        Err(StoreError::Conflict { key, expected, found }) => {
            assert_eq!(
                (key.as_str(), expected, found),
                ("IPPool/pool-a", Revision(7), Some(Revision(9)))
            );
        }
        other => bail!("expected Conflict, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn update_answered_with_404_is_not_found() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .update(&ippool(), pool("pool-a", "198.18.0.0/17"), Revision(7))
            .await
    });
    let (_put, send) = next_request(&mut handle).await?;
    respond(
        send,
        404,
        &status(404, "NotFound", "ippools.weft.io \"pool-a\" not found"),
    )?;
    assert!(matches!(finish(task).await?, Err(StoreError::NotFound { .. })));
    Ok(())
}

#[tokio::test]
async fn update_at_revision_zero_is_a_conflict_without_a_put() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .update(&ippool(), pool("pool-a", "198.18.0.0/17"), Revision(0))
            .await
    });
    let (get, send) = next_request(&mut handle).await?;
    assert_eq!(get.method(), Method::GET);
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "4"))?;
    match finish(task).await? {
        Err(StoreError::Conflict { found, .. }) => assert_eq!(found, Some(Revision(4))),
        other => bail!("expected Conflict, got {other:?}"),
    }
    let more = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(!matches!(more, Ok(Some(_))), "no PUT may follow");
    Ok(())
}

#[tokio::test]
async fn delete_with_a_revision_sends_preconditions() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .delete(&Key::new(&ippool(), None, "pool-a"), Some(Revision(7)))
            .await
    });
    let (get, send) = next_request(&mut handle).await?;
    assert_eq!(get.method(), Method::GET);
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "7"))?;
    let (delete, send) = next_request(&mut handle).await?;
    assert_eq!(delete.method(), Method::DELETE);
    assert_eq!(delete.uri().path(), "/apis/weft.io/v1/ippools/pool-a");
    let options = body_json(delete).await?;
    assert_eq!(options["preconditions"]["resourceVersion"], "7", "{options}");
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "7"))?;
    let deleted = finish(task).await??;
    assert_eq!((deleted.revision, deleted.key.name.as_str()), (Revision(7), "pool-a"));
    Ok(())
}

#[tokio::test]
async fn delete_answered_with_409_is_a_conflict() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .delete(&Key::new(&ippool(), None, "pool-a"), Some(Revision(7)))
            .await
    });
    let (_get, send) = next_request(&mut handle).await?;
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "7"))?;
    let (_delete, send) = next_request(&mut handle).await?;
    respond(
        send,
        409,
        &status(
            409,
            "Conflict",
            "Precondition failed: ResourceVersion in precondition: 7, ResourceVersion in object meta: 8",
        ),
    )?;
    let (_get, send) = next_request(&mut handle).await?;
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "8"))?;
    match finish(task).await? {
        Err(StoreError::Conflict { expected, found, .. }) => {
            assert_eq!((expected, found), (Revision(7), Some(Revision(8))))
        }
        other => bail!("expected Conflict, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn delete_of_an_object_past_the_expected_revision_is_a_conflict_without_a_delete() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move {
        store
            .delete(&Key::new(&ippool(), None, "pool-a"), Some(Revision(7)))
            .await
    });
    let (_get, send) = next_request(&mut handle).await?;
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "9"))?;
    match finish(task).await? {
        Err(StoreError::Conflict { found, .. }) => assert_eq!(found, Some(Revision(9))),
        other => bail!("expected Conflict, got {other:?}"),
    }
    let more = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(!matches!(more, Ok(Some(_))), "no DELETE may follow");
    Ok(())
}

#[tokio::test]
async fn delete_answered_with_a_status_returns_the_state_read_before() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move { store.delete(&Key::new(&ippool(), None, "pool-a"), None).await });
    let (_get, send) = next_request(&mut handle).await?;
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "7"))?;
    let (delete, send) = next_request(&mut handle).await?;
    let options = delete.into_body().collect_bytes().await?;
    assert!(
        !String::from_utf8_lossy(&options).contains("preconditions"),
        "no revision, no precondition"
    );
    respond(
        send,
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
    )?;
    let deleted = finish(task).await??;
    assert_eq!(
        (deleted.revision, deleted.value["spec"]["cidr"].as_str()),
        (Revision(7), Some("198.18.0.0/16"))
    );
    Ok(())
}

#[tokio::test]
async fn list_is_sorted_by_key_with_the_list_revision_and_kinds_filled_in() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move { store.list(&workload_endpoint(), Some("ns-a")).await });
    let (request, send) = next_request(&mut handle).await?;
    assert_eq!(
        path_and_query(&request),
        "/apis/weft.io/v1/namespaces/ns-a/workloadendpoints?"
    );
    let mut items = Vec::new();
    for (name, rv) in [("wep-b", "12"), ("wep-a", "11")] {
        let mut item = endpoint("ns-a", name);
        item["metadata"]["resourceVersion"] = json!(rv);
        let map = item.as_object_mut().context("an object")?;
        map.remove("kind");
        map.remove("apiVersion");
        items.push(item);
    }
    respond(
        send,
        200,
        &json!({"kind": "WorkloadEndpointList", "apiVersion": "weft.io/v1",
                "metadata": {"resourceVersion": "20"}, "items": items}),
    )?;
    let list = finish(task).await??;
    assert_eq!(list.revision, Revision(20));
    let names: Vec<_> = list.items.iter().map(|o| (o.key.name.as_str(), o.revision)).collect();
    assert_eq!(names, [("wep-a", Revision(11)), ("wep-b", Revision(12))]);
    assert_eq!(list.items[0].value["kind"], "WorkloadEndpoint");
    assert_eq!(list.items[0].value["apiVersion"], "weft.io/v1");
    Ok(())
}

#[tokio::test]
async fn a_resource_version_that_is_not_a_number_is_an_error_naming_the_object() -> Result<()> {
    let (store, mut handle) = mock_store();
    let task = tokio::spawn(async move { store.get(&Key::new(&ippool(), None, "pool-a")).await });
    let (_request, send) = next_request(&mut handle).await?;
    respond(send, 200, &stored_pool("pool-a", "198.18.0.0/16", "abc"))?;
    match finish(task).await? {
        Err(error @ StoreError::Backend { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("IPPool/pool-a") && message.contains("\"abc\""),
                "{message}"
            );
        }
        other => bail!("expected Backend, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn watch_sends_watch_true_with_the_revision_and_resumes_after_the_last_one_seen() -> Result<()> {
    let (store, mut handle) = mock_store();
    let watch = tokio::spawn(async move { store.watch(&ippool(), Revision(5)).await });
    let (request, send) = next_request(&mut handle).await?;
    let uri = path_and_query(&request);
    assert!(uri.starts_with("/apis/weft.io/v1/ippools?"), "{uri}");
    assert!(
        uri.contains("&watch=true") && uri.contains("&resourceVersion=5"),
        "{uri}"
    );
    respond_lines(
        send,
        &[
            json!({"type": "ADDED", "object": stored_pool("pool-a", "198.18.0.0/16", "6")}),
            json!({"type": "MODIFIED", "object": stored_pool("pool-a", "198.18.0.0/17", "7")}),
            json!({"type": "BOOKMARK", "object": {"apiVersion": "weft.io/v1", "kind": "IPPool",
                   "metadata": {"resourceVersion": "9"}}}),
        ],
    )?;
    let mut events = finish(watch).await??;
    let added = next_event(&mut events).await?;
    assert!(
        matches!(&added, WatchEvent::Added(o) if o.revision == Revision(6)),
        "{added:?}"
    );
    let modified = next_event(&mut events).await?;
    assert!(
        matches!(&modified, WatchEvent::Modified(o) if o.revision == Revision(7)),
        "{modified:?}"
    );

    // The server ended the first watch: the store asks again from the bookmark's revision.
    let reading = tokio::spawn(async move {
        let event = next_event(&mut events).await;
        (event, events)
    });
    let (request, send) = next_request(&mut handle).await?;
    let uri = path_and_query(&request);
    assert!(
        uri.contains("&watch=true") && uri.contains("&resourceVersion=9"),
        "{uri}"
    );
    respond_lines(
        send,
        &[json!({"type": "DELETED", "object": stored_pool("pool-a", "198.18.0.0/17", "10")})],
    )?;
    let (event, _events) = finish(reading).await?;
    let deleted = event?;
    assert!(
        matches!(&deleted, WatchEvent::Deleted(o) if o.revision == Revision(10)),
        "{deleted:?}"
    );
    Ok(())
}

#[tokio::test]
async fn watch_error_event_410_is_compacted_and_ends_the_stream() -> Result<()> {
    let (store, mut handle) = mock_store();
    let watch = tokio::spawn(async move { store.watch(&ippool(), Revision(5)).await });
    let (_request, send) = next_request(&mut handle).await?;
    respond_lines(
        send,
        &[json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 5 (42)")})],
    )?;
    let mut events = finish(watch).await??;
    match tokio::time::timeout(STEP, events.next()).await? {
        Some(Err(StoreError::Compacted { requested, oldest, .. })) => {
            assert_eq!((requested, oldest), (Revision(5), Revision(42)));
        }
        other => bail!("expected Compacted, got {other:?}"),
    }
    assert!(tokio::time::timeout(STEP, events.next()).await?.is_none());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Against the API server double.

struct Fixture {
    double: ApiServerDouble,
    store: KubeStore,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn fixture_with_history(history_limit: usize) -> Result<Fixture> {
    let double = ApiServerDouble::start_with_history_limit(history_limit).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    double.write_kubeconfig(&kubeconfig)?;
    let store = KubeStore::connect(Some(kubeconfig.to_str().context("a UTF-8 path")?)).await?;
    Ok(Fixture {
        double,
        store,
        kubeconfig,
        _dir: dir,
    })
}

async fn fixture() -> Result<Fixture> {
    fixture_with_history(weft_api::testing::api_server_double::DEFAULT_HISTORY_LIMIT).await
}

async fn next_event(events: &mut weft_api::store::WatchStream) -> Result<WatchEvent> {
    Ok(tokio::time::timeout(STEP, events.next())
        .await
        .context("waiting for a watch event")?
        .context("the watch ended")??)
}

fn summary(event: &WatchEvent) -> (&'static str, String, u64) {
    let (what, object): (&str, &Object) = match event {
        WatchEvent::Added(o) => ("added", o),
        WatchEvent::Modified(o) => ("modified", o),
        WatchEvent::Deleted(o) => ("deleted", o),
    };
    (what, object.key.name.clone(), object.revision.0)
}

#[tokio::test]
async fn the_store_creates_gets_lists_updates_and_deletes_through_the_double() -> Result<()> {
    let fixture = fixture().await?;
    let (double, store, kubeconfig) = (&fixture.double, &fixture.store, &fixture.kubeconfig);
    assert_eq!(store.describe(), format!("kubernetes:{}", kubeconfig.display()));
    let kind = ippool();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/17")).await?;
    let b = store.create(&kind, pool("pool-b", "198.18.128.0/17")).await?;
    assert!(a.revision < b.revision);
    assert_eq!(a.value["apiVersion"], "weft.io/v1");
    assert_eq!(a.value["kind"], "IPPool");
    assert!(a.value["metadata"]["uid"].is_string());

    let got = store.get(&a.key).await?.context("pool-a")?;
    assert_eq!(got, a);
    let list = store.list(&kind, None).await?;
    assert_eq!(list.revision, b.revision);
    assert_eq!(list.items, vec![a.clone(), b.clone()]);

    let mut changed = a.value.clone();
    changed["spec"]["cidr"] = json!("198.18.0.0/18");
    let updated = store.update(&kind, changed, a.revision).await?;
    assert!(updated.revision > b.revision);
    assert_eq!(updated.value["spec"]["cidr"], "198.18.0.0/18");
    assert_eq!(updated.value["metadata"]["generation"], 2);

    let deleted = store.delete(&a.key, Some(updated.revision)).await?;
    assert_eq!(deleted, updated);
    assert_eq!(store.get(&a.key).await?, None);
    assert!(matches!(
        store.delete(&a.key, None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        double.revision(),
        updated.revision.0 + 1,
        "the deletion is a write of its own"
    );
    Ok(())
}

#[tokio::test]
async fn a_create_of_an_existing_object_through_the_double_is_already_exists() -> Result<()> {
    let fixture = fixture().await?;
    let store = &fixture.store;
    store.create(&ippool(), pool("pool-a", "198.18.0.0/16")).await?;
    let again = store.create(&ippool(), pool("pool-a", "198.18.0.0/17")).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    Ok(())
}

#[tokio::test]
async fn a_stale_update_through_the_double_is_a_conflict_naming_the_current_revision() -> Result<()> {
    let fixture = fixture().await?;
    let store = &fixture.store;
    let kind = ippool();
    let first = store.create(&kind, pool("pool-a", "198.18.0.0/16")).await?;
    let second = store
        .update(&kind, pool("pool-a", "198.18.0.0/17"), first.revision)
        .await?;
    let stale = store
        .update(&kind, pool("pool-a", "198.18.0.0/18"), first.revision)
        .await;
    match stale {
        Err(StoreError::Conflict { expected, found, .. }) => {
            assert_eq!((expected, found), (first.revision, Some(second.revision)));
        }
        other => bail!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        store.get(&first.key).await?.context("pool-a")?,
        second,
        "a refused update changes nothing"
    );
    let missing = store
        .update(&kind, pool("pool-z", "198.18.0.0/18"), first.revision)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    Ok(())
}

#[tokio::test]
async fn a_stale_delete_through_the_double_is_a_conflict_and_deletes_nothing() -> Result<()> {
    let fixture = fixture().await?;
    let store = &fixture.store;
    let kind = ippool();
    let first = store.create(&kind, pool("pool-a", "198.18.0.0/16")).await?;
    let second = store
        .update(&kind, pool("pool-a", "198.18.0.0/17"), first.revision)
        .await?;
    let stale = store.delete(&first.key, Some(first.revision)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { found: Some(found), .. }) if found == second.revision),
        "{stale:?}"
    );
    assert_eq!(store.get(&first.key).await?.context("pool-a")?, second);
    Ok(())
}

#[tokio::test]
async fn namespaced_lists_through_the_double_cover_one_namespace_or_all() -> Result<()> {
    let fixture = fixture().await?;
    let store = &fixture.store;
    let kind = workload_endpoint();
    for (namespace, name) in [("ns-b", "wep-1"), ("ns-a", "wep-2"), ("ns-a", "wep-1")] {
        store.create(&kind, endpoint(namespace, name)).await?;
    }
    let all = store.list(&kind, None).await?;
    let keys: Vec<String> = all.items.iter().map(|o| o.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "WorkloadEndpoint/ns-a/wep-1",
            "WorkloadEndpoint/ns-a/wep-2",
            "WorkloadEndpoint/ns-b/wep-1"
        ]
    );
    let in_a = store.list(&kind, Some("ns-a")).await?;
    assert_eq!(in_a.items.len(), 2);
    assert_eq!(in_a.revision, all.revision);
    let got = store
        .get(&Key::new(&kind, Some("ns-b"), "wep-1"))
        .await?
        .context("wep-1")?;
    assert_eq!(got.value["metadata"]["namespace"], "ns-b");
    let cluster_scoped = store.list(&ippool(), Some("ns-a")).await;
    assert!(
        matches!(cluster_scoped, Err(StoreError::Invalid { .. })),
        "{cluster_scoped:?}"
    );
    let bad_namespace = store.list(&kind, Some("../ns-a")).await;
    assert!(
        matches!(bad_namespace, Err(StoreError::Invalid { .. })),
        "{bad_namespace:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_watch_through_the_double_delivers_every_change_in_order() -> Result<()> {
    let fixture = fixture().await?;
    let store = &fixture.store;
    let kind = ippool();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/17")).await?;
    store.create(&workload_endpoint(), endpoint("ns-a", "wep-1")).await?;
    let a2 = store.update(&kind, pool("pool-a", "198.18.0.0/18"), a.revision).await?;
    let b = store.create(&kind, pool("pool-b", "198.18.128.0/17")).await?;

    let mut events = store.watch(&kind, Revision(0)).await?;
    let deleted = store.delete(&a.key, Some(a2.revision)).await?;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut events).await?);
    }
    let summaries: Vec<_> = seen.iter().map(summary).collect();
    assert_eq!(
        summaries,
        [
            ("added", "pool-a".to_owned(), a.revision.0),
            ("modified", "pool-a".to_owned(), a2.revision.0),
            ("added", "pool-b".to_owned(), b.revision.0),
            ("deleted", "pool-a".to_owned(), b.revision.0 + 1),
        ]
    );
    assert_eq!(
        seen[3].object().value["spec"],
        deleted.value["spec"],
        "a deletion carries the last state"
    );

    // From the middle of the history: only what came after.
    let mut later = store.watch(&kind, a2.revision).await?;
    assert_eq!(summary(&next_event(&mut later).await?).1, "pool-b");
    Ok(())
}

#[tokio::test]
async fn a_watch_through_the_double_continues_across_a_restart() -> Result<()> {
    let fixture = fixture().await?;
    let (double, store) = (&fixture.double, &fixture.store);
    let kind = ippool();
    let list = store.list(&kind, None).await?;
    let mut events = store.watch(&kind, list.revision).await?;
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/17")).await?;
    assert_eq!(next_event(&mut events).await?.revision(), a.revision);

    double.restart().await?;
    let b = store.create(&kind, pool("pool-b", "198.18.128.0/17")).await?;
    let c = store.update(&kind, pool("pool-a", "198.18.0.0/18"), a.revision).await?;
    assert_eq!(next_event(&mut events).await?.revision(), b.revision);
    assert_eq!(next_event(&mut events).await?.revision(), c.revision);
    Ok(())
}

#[tokio::test]
async fn a_watch_from_before_the_double_history_is_compacted() -> Result<()> {
    let fixture = fixture_with_history(2).await?;
    let (double, store) = (&fixture.double, &fixture.store);
    let kind = ippool();
    for (name, cidr) in [
        ("pool-a", "198.18.0.0/18"),
        ("pool-b", "198.18.64.0/18"),
        ("pool-c", "198.18.128.0/18"),
    ] {
        store.create(&kind, pool(name, cidr)).await?;
    }
    let mut events = store.watch(&kind, Revision(0)).await?;
    match tokio::time::timeout(STEP, events.next()).await? {
        Some(Err(StoreError::Compacted { requested, oldest, .. })) => {
            assert_eq!((requested, oldest), (Revision(0), Revision(1)));
        }
        other => bail!("expected Compacted, got {other:?}"),
    }
    // From the oldest revision offered, the rest is still there.
    let mut events = store.watch(&kind, Revision(1)).await?;
    assert_eq!(summary(&next_event(&mut events).await?).1, "pool-b");

    double.compact();
    let mut events = store.watch(&kind, Revision(1)).await?;
    assert!(matches!(next_event(&mut events).await, Err(e) if e.to_string().contains("compacted")));
    Ok(())
}

/// The raw kube-rs API of IPPools on the double, without the store in between.
fn raw_pools(double: &ApiServerDouble) -> Result<kube::Api<kube::api::DynamicObject>> {
    let client = kube::Client::try_from(kube::Config::new(double.url().parse()?))?;
    let resource = kube::api::ApiResource {
        group: "weft.io".into(),
        version: "v1".into(),
        api_version: "weft.io/v1".into(),
        kind: "IPPool".into(),
        plural: "ippools".into(),
    };
    Ok(kube::Api::all_with(client, &resource))
}

#[tokio::test]
async fn the_double_answers_refusals_with_status_objects() -> Result<()> {
    let fixture = fixture().await?;
    let api = raw_pools(&fixture.double)?;
    let created: kube::api::DynamicObject = serde_json::from_value(pool("pool-a", "198.18.0.0/16"))?;
    api.create(&Default::default(), &created).await?;
    let mut stale = created.clone();
    stale.metadata.resource_version = Some("999".into());
    match api.replace("pool-a", &Default::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"), "{status:?}");
        }
        other => bail!("expected a 409 Status, got {other:?}"),
    }
    match api.create(&Default::default(), &created).await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists")),
        other => bail!("expected a 409 Status, got {other:?}"),
    }
    match api.get("pool-z").await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (404, "NotFound")),
        other => bail!("expected a 404 Status, got {other:?}"),
    }
    let selected = api.list(&kube::api::ListParams::default().labels("app=web")).await;
    assert!(
        matches!(selected, Err(kube::Error::Api(status)) if status.code == 400),
        "selectors are refused"
    );
    Ok(())
}

#[tokio::test]
async fn a_watch_on_the_double_ends_at_its_timeout() -> Result<()> {
    let fixture = fixture().await?;
    let api = raw_pools(&fixture.double)?;
    let started = std::time::Instant::now();
    let events = api.watch(&kube::api::WatchParams::default().timeout(1), "0").await?;
    let count = tokio::time::timeout(STEP, events.count())
        .await
        .context("waiting for the watch to end")?;
    assert_eq!(count, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_through_the_double_loses_no_update() -> Result<()> {
    const WRITERS: u64 = 8;
    const ATTEMPTS: usize = 200;
    let fixture = fixture().await?;
    let (store, kubeconfig) = (&fixture.store, &fixture.kubeconfig);
    let kind = ippool();
    let mut counter = pool("counter", "198.18.0.0/16");
    counter["spec"]["count"] = json!(0);
    store.create(&kind, counter).await?;
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        // A client of its own, as separate processes would have.
        let store = KubeStore::connect(Some(kubeconfig.to_str().context("a UTF-8 path")?)).await?;
        let kind = kind.clone();
        writers.spawn(async move {
            let key = Key::new(&kind, None, "counter");
            for _ in 0..ATTEMPTS {
                let current = store.get(&key).await?.context("the counter")?;
                let mut next = current.value.clone();
                next["spec"]["count"] = json!(current.value["spec"]["count"].as_u64().unwrap_or(0) + 1);
                match store.update(&kind, next, current.revision).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(error) => return Err(anyhow::Error::from(error)),
                }
            }
            bail!("no update went through in {ATTEMPTS} attempts")
        });
    }
    while let Some(result) = tokio::time::timeout(STEP * 3, writers.join_next()).await? {
        result??;
    }
    let counter = store
        .get(&Key::new(&kind, None, "counter"))
        .await?
        .context("the counter")?;
    assert_eq!(counter.value["spec"]["count"], WRITERS);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_api_server_is_unreachable_naming_its_url() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )?;
    let store = KubeStore::connect(Some(kubeconfig.to_str().context("a UTF-8 path")?)).await?;
    match store.get(&Key::new(&ippool(), None, "pool-a")).await {
        Err(StoreError::Unreachable { endpoint, .. }) => assert!(endpoint.contains(&port.to_string()), "{endpoint}"),
        other => bail!("expected Unreachable, got {other:?}"),
    }
    assert!(matches!(
        store.watch(&ippool(), Revision(0)).await,
        Err(StoreError::Unreachable { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_missing_kubeconfig_is_an_error_naming_it() -> Result<()> {
    let error = KubeStore::connect(Some("/nonexistent/weft/kubeconfig"))
        .await
        .err()
        .context("an error")?;
    assert!(error.to_string().contains("/nonexistent/weft/kubeconfig"), "{error}");
    Ok(())
}

/// Set for the child process of the test below: the kubeconfig to use.
const CHILD_KUBECONFIG: &str = "WEFT_TEST_API_SERVER_DOUBLE_KUBECONFIG";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_serves_another_process_through_its_kubeconfig() -> Result<()> {
    let fixture = fixture().await?;
    let (store, kubeconfig) = (&fixture.store, &fixture.kubeconfig);
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_process_creates_a_pool",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_KUBECONFIG, kubeconfig)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STEP * 3, child)
        .await
        .context("waiting for the child process")??;
    assert!(
        output.status.success(),
        "child: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let made = store.get(&Key::new(&ippool(), None, "from-child")).await?;
    assert_eq!(made.context("the child's pool")?.value["spec"]["cidr"], "198.19.0.0/24");
    Ok(())
}

/// Does its work only as the child process of the test above.
#[tokio::test]
async fn child_process_creates_a_pool() -> Result<()> {
    let Ok(kubeconfig) = std::env::var(CHILD_KUBECONFIG) else {
        return Ok(());
    };
    let store = KubeStore::connect(Some(&kubeconfig)).await?;
    store.create(&ippool(), pool("from-child", "198.19.0.0/24")).await?;
    Ok(())
}

#[tokio::test]
async fn a_kind_of_the_core_group_uses_the_core_urls() -> Result<()> {
    let fixture = fixture().await?;
    let store = &fixture.store;
    let namespaces = Kind {
        group: String::new(),
        version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
        namespaced: false,
    };
    let created = store
        .create(
            &namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns-a"}}),
        )
        .await?;
    assert_eq!(created.value["apiVersion"], "v1");
    let list = store.list(&namespaces, None).await?;
    assert_eq!(list.items.len(), 1);
    Ok(())
}
