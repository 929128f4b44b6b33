//! What only the file store has: its crash states, damaged files and journal compaction.
//! The crash states are made by hand, byte for byte what a writer killed at that point leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use weft_api::store::file::{FileStore, FileStoreOptions};
use weft_api::{Key, Kind, Revision, Store, StoreError, Write, kinds};

fn pool_kind() -> Kind {
    kinds::by_name("IPPool").unwrap()
}

fn pool(name: &str, cidr: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"cidr": cidr}})
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn object_file(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("objects/weft.io/ippools").join(format!("{name}.json"))
}

#[tokio::test]
async fn a_torn_journal_line_is_cut_off_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    // A writer killed in the middle of its journal append: no newline, never committed.
    append(
        &dir.path().join("journal"),
        br#"{"revision":2,"change":"create","key":{"apiVer"#,
    );

    let reopened = FileStore::open(dir.path()).unwrap();
    let list = reopened.list(&kind, None).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.revision, a.revision);
    let b = reopened.create(&kind, pool("pool-b", "198.18.1.0/24")).await.unwrap();
    assert_eq!(
        b.revision,
        Revision(a.revision.0 + 1),
        "the torn write took no revision"
    );
    let journal = fs::read_to_string(dir.path().join("journal")).unwrap();
    assert!(
        journal.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{journal}"
    );
}

#[tokio::test]
async fn a_committed_write_whose_object_file_was_not_written_is_completed_by_the_next_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    // A writer killed after its journal entry was durable, before the object file's rename:
    // the entry is committed, the object file still holds the old state, and a temporary file
    // lies next to it.
    let entry = json!({
        "revision": a.revision.0 + 1,
        "change": "update",
        "key": {"apiVersion": "weft.io/v1", "kind": "IPPool", "plural": "ippools", "name": "pool-a"},
        "object": {"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pool-a"}, "spec": {"cidr": "198.18.7.0/24"}},
    });
    append(&dir.path().join("journal"), format!("{entry}\n").as_bytes());
    let temporary = object_file(dir.path(), "pool-a").with_file_name(".pool-a.json.tmp-99999-0");
    fs::write(&temporary, b"{\"revision\":").unwrap();

    let key = Key::new(&kind, None, "pool-a");
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(got.revision, Revision(a.revision.0 + 1));
    assert_eq!(
        got.value["spec"]["cidr"], "198.18.7.0/24",
        "the committed write is visible"
    );
    assert!(!temporary.exists(), "the dead writer's temporary file is gone");
    let list = store.list(&kind, None).await.unwrap();
    assert_eq!(list.items.len(), 1, "the temporary file is not an object");
}

#[tokio::test]
async fn a_committed_delete_whose_file_was_not_removed_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    let entry = json!({
        "revision": a.revision.0 + 1,
        "change": "delete",
        "key": {"apiVersion": "weft.io/v1", "kind": "IPPool", "plural": "ippools", "name": "pool-a"},
        "object": a.value,
    });
    append(&dir.path().join("journal"), format!("{entry}\n").as_bytes());
    assert!(store.get(&Key::new(&kind, None, "pool-a")).await.unwrap().is_none());
    assert!(!object_file(dir.path(), "pool-a").exists());
}

#[tokio::test]
async fn a_committed_transaction_whose_object_files_were_not_written_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    let key = |name: &str| json!({"apiVersion": "weft.io/v1", "kind": "IPPool", "plural": "ippools", "name": name});
    // A writer killed after its transaction's line was durable, before any object file.
    let batch = json!({"batch": [
        {"revision": a.revision.0 + 1, "change": "delete", "key": key("pool-a"), "object": a.value},
        {"revision": a.revision.0 + 2, "change": "create", "key": key("pool-b"),
         "object": {"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pool-b"}, "spec": {"cidr": "198.18.1.0/24"}}},
    ]});
    append(&dir.path().join("journal"), format!("{batch}\n").as_bytes());

    let list = store.list(&kind, None).await.unwrap();
    let names: Vec<&str> = list.items.iter().map(|object| object.key.name.as_str()).collect();
    assert_eq!(names, ["pool-b"], "both writes of the transaction are applied");
    assert_eq!(list.revision, Revision(a.revision.0 + 2));
    assert!(!object_file(dir.path(), "pool-a").exists());
}

#[tokio::test]
async fn a_torn_transaction_line_applies_none_of_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    let a = store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    // Killed in the middle of appending a transaction: its first entry is whole, the line is not.
    let batch = json!({"batch": [
        {"revision": a.revision.0 + 1, "change": "delete",
         "key": {"apiVersion": "weft.io/v1", "kind": "IPPool", "plural": "ippools", "name": "pool-a"}, "object": a.value},
    ]})
    .to_string();
    append(&dir.path().join("journal"), &batch.as_bytes()[..batch.len() - 2]);

    let reopened = FileStore::open(dir.path()).unwrap();
    let list = reopened.list(&kind, None).await.unwrap();
    assert_eq!(list.items.len(), 1, "pool-a is still there");
    assert_eq!(list.revision, a.revision);
    let written = reopened
        .transact(vec![
            Write::Delete {
                key: Key::new(&kind, None, "pool-a"),
                expected: Some(a.revision),
            },
            Write::Create {
                kind: kind.clone(),
                value: pool("pool-b", "198.18.1.0/24"),
            },
        ])
        .await
        .unwrap();
    let revisions: Vec<Revision> = written.iter().map(|object| object.revision).collect();
    assert_eq!(revisions, [Revision(a.revision.0 + 1), Revision(a.revision.0 + 2)]);
    let journal = fs::read_to_string(dir.path().join("journal")).unwrap();
    assert_eq!(
        journal.lines().count(),
        3,
        "header, pool-a, one line for the transaction: {journal}"
    );
}

#[tokio::test]
async fn a_truncated_object_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    store.create(&kind, pool("pool-b", "198.18.1.0/24")).await.unwrap();
    let path = object_file(dir.path(), "pool-a");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let list = store.list(&kind, None).await;
    match list {
        Err(StoreError::Corrupt { location, .. }) => assert!(location.ends_with("pool-a.json"), "{location}"),
        other => panic!("a list over a corrupt file must fail naming it, got {other:?}"),
    }
    let get = store.get(&Key::new(&kind, None, "pool-a")).await;
    assert!(matches!(get, Err(StoreError::Corrupt { .. })), "{get:?}");
    let message = get.unwrap_err().to_string();
    assert!(message.contains("pool-a.json"), "{message}");
    // The healthy object is still readable on its own.
    assert!(store.get(&Key::new(&kind, None, "pool-b")).await.unwrap().is_some());
}

#[tokio::test]
async fn the_newest_object_file_when_damaged_is_restored_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    let b = store.create(&kind, pool("pool-b", "198.18.1.0/24")).await.unwrap();
    fs::write(object_file(dir.path(), "pool-b"), b"{\"revis").unwrap();
    let got = store.get(&Key::new(&kind, None, "pool-b")).await.unwrap().unwrap();
    assert_eq!(got.revision, b.revision);
    assert_eq!(got.value["spec"]["cidr"], "198.18.1.0/24");
}

#[tokio::test]
async fn an_object_file_of_the_wrong_kind_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let kind = pool_kind();
    store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
    let path = object_file(dir.path(), "pool-a");
    let mut file: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    file["object"]["kind"] = json!("BGPPeer");
    fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    match store.list(&kind, None).await {
        Err(StoreError::WrongKind { location, found, .. }) => {
            assert!(location.ends_with("pool-a.json"), "{location}");
            assert!(found.starts_with("BGPPeer"), "{found}");
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    // A file whose name and content disagree is refused as well.
    fs::write(
        object_file(dir.path(), "pool-z"),
        fs::read(object_file(dir.path(), "pool-a")).unwrap(),
    )
    .unwrap();
    let result = store.get(&Key::new(&kind, None, "pool-z")).await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_watch_from_compacted_history_fails_with_compacted_and_a_fresh_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        journal_limit_bytes: 4096,
        watch_poll: Duration::from_millis(20),
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    let kind = pool_kind();
    let first = store.create(&kind, pool("pool-0", "198.18.0.0/24")).await.unwrap();
    for i in 1..60 {
        store
            .create(&kind, pool(&format!("pool-{i}"), &format!("198.18.{i}.0/24")))
            .await
            .unwrap();
    }
    assert!(fs::metadata(dir.path().join("journal")).unwrap().len() <= 4096 + 512);
    let mut stale = store.watch(&kind, first.revision).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), stale.next()).await {
        Ok(Some(Err(StoreError::Compacted { requested, .. }))) => assert_eq!(requested, first.revision),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Every object is still there, and a watch from the list's revision works.
    let list = store.list(&kind, None).await.unwrap();
    assert_eq!(list.items.len(), 60);
    let mut fresh = store.watch(&kind, list.revision).await.unwrap();
    store.create(&kind, pool("pool-new", "198.19.0.0/24")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), fresh.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.object().key.name, "pool-new");
}

#[tokio::test]
async fn a_watch_keeps_going_across_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions {
        journal_limit_bytes: 4096,
        watch_poll: Duration::from_millis(10),
    };
    let store = FileStore::open_with(dir.path(), options).unwrap();
    let kind = pool_kind();
    let start = store.list(&kind, None).await.unwrap().revision;
    let mut watch = store.watch(&kind, start).await.unwrap();
    let mut seen = Vec::new();
    for i in 0..40 {
        store
            .create(&kind, pool(&format!("pool-{i}"), &format!("198.18.{i}.0/24")))
            .await
            .unwrap();
        // Read as we go, so the watch is never further behind than the compaction keeps.
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(event.object().key.name.clone());
    }
    let expected: Vec<String> = (0..40).map(|i| format!("pool-{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn many_threads_of_one_process_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let kind = kinds::by_name("IPAMHandle").unwrap();
    let key = Key::new(&kind, None, "counter");
    let store = FileStore::open(dir.path()).unwrap();
    store
        .create(
            &kind,
            json!({"metadata": {"name": "counter", "annotations": {"count": "0"}}, "spec": {"handleID": "c"}}),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        // Separate store handles in one process, as separate components would hold.
        let store = FileStore::open(dir.path()).unwrap();
        let key = key.clone();
        let kind = kind.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for _ in 0..2000 {
                if done == 50 {
                    break;
                }
                let current = store.get(&key).await.unwrap().unwrap();
                let count: u64 = current.value["metadata"]["annotations"]["count"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut next = current.value.clone();
                next["metadata"]["annotations"]["count"] = json!((count + 1).to_string());
                match store.update(&kind, next, current.revision).await {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict { .. }) => {}
                    Err(other) => panic!("{other}"),
                }
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 200);
    let value = store.get(&key).await.unwrap().unwrap();
    assert_eq!(value.value["metadata"]["annotations"]["count"], "200");
}

#[tokio::test]
async fn writers_killed_at_random_points_never_leave_an_unreadable_store() {
    let dir = tempfile::tempdir().unwrap();
    let setting = format!("file:{}", dir.path().display());
    let kind = kinds::by_name("IPAMHandle").unwrap();
    let key = Key::new(&kind, None, "counter");
    let mut acknowledged = 0u64;
    for round in 0..8u64 {
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_weft-store-stress"))
                    .args(["--store", &setting, "--name", "counter", "--times", "100000"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // A different moment each round: 20 ms to 160 ms after the start.
        std::thread::sleep(Duration::from_millis(20 + 20 * round));
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
        let store = FileStore::open(dir.path()).unwrap();
        let count: u64 = match store.get(&key).await.unwrap() {
            Some(object) => object.value["metadata"]["annotations"]["count"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            None => 0,
        };
        assert!(
            count >= acknowledged && count <= acknowledged + 3,
            "round {round}: count {count}, acknowledged {acknowledged}"
        );
        acknowledged = count;
    }
}

#[tokio::test]
async fn after_a_reboot_object_files_lost_since_the_checkpoint_are_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let kind = pool_kind();
    {
        let store = FileStore::open(dir.path()).unwrap();
        store.create(&kind, pool("pool-a", "198.18.0.0/24")).await.unwrap();
        let b = store.create(&kind, pool("pool-b", "198.18.1.0/24")).await.unwrap();
        store
            .update(&kind, pool("pool-b", "198.18.2.0/24"), b.revision)
            .await
            .unwrap();
        store.create(&kind, pool("pool-c", "198.18.3.0/24")).await.unwrap();
        store.delete(&Key::new(&kind, None, "pool-c"), None).await.unwrap();
    }
    // What a power loss can leave: object files written after the last checkpoint are empty,
    // stale or missing, a deleted one is back; the checkpoint names another boot.
    fs::write(object_file(dir.path(), "pool-a"), b"").unwrap();
    fs::remove_file(object_file(dir.path(), "pool-b")).unwrap();
    fs::write(
        object_file(dir.path(), "pool-c"),
        serde_json::to_vec(&json!({"revision": 4, "object": {"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pool-c"}, "spec": {"cidr": "198.18.3.0/24"}}})).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.path().join("checkpoint"),
        br#"{"revision": 0, "bootId": "an-earlier-boot"}"#,
    )
    .unwrap();

    let store = FileStore::open(dir.path()).unwrap();
    let list = store.list(&kind, None).await.unwrap();
    let got: Vec<(String, String)> = list
        .items
        .iter()
        .map(|o| (o.key.name.clone(), o.value["spec"]["cidr"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        got,
        [
            ("pool-a".into(), "198.18.0.0/24".into()),
            ("pool-b".into(), "198.18.2.0/24".into())
        ],
        "every committed write is back, the deleted object stays deleted"
    );
    let checkpoint: Value = serde_json::from_slice(&fs::read(dir.path().join("checkpoint")).unwrap()).unwrap();
    assert_eq!(checkpoint["revision"], 5, "a new checkpoint for this boot");
    assert_ne!(checkpoint["bootId"], "an-earlier-boot");
}
