//! Following the datastore: one task per kind lists it, then watches from the list's revision,
//! and reports both to the cluster loop ([`super::run`]); the loop keeps the latest object of
//! every key.
//!
//! A watch that fails or ends (the store compacted its history, a connection dropped) is
//! started again from a fresh list after a pause that doubles up to [`MAX_PAUSE`]; the list
//! replaces what the loop held for the kind, so nothing seen before the failure lingers.
//!
//! Must never: decode objects or decide anything (the loop does), or stop retrying while the
//! loop runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_api::{Kind, Object, Store, WatchEvent};

/// First pause before a failed list or watch is tried again.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// Longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// What a kind's task reports.
#[derive(Debug)]
pub enum Report {
    /// Every object of kind `index` (a fresh list).
    Listed { index: usize, objects: Vec<Object> },
    /// One change of kind `index`.
    Changed { index: usize, event: WatchEvent },
}

/// The objects of every kind, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Objects {
    kinds: BTreeMap<usize, BTreeMap<String, Object>>,
}

impl Objects {
    /// Takes a report in; whether the objects changed.
    pub fn apply(&mut self, report: Report) -> bool {
        match report {
            Report::Listed { index, objects } => {
                let fresh: BTreeMap<String, Object> = objects.into_iter().map(|o| (name(&o), o)).collect();
                let old = self.kinds.insert(index, fresh);
                old.as_ref() != self.kinds.get(&index)
            }
            Report::Changed { index, event } => {
                let objects = self.kinds.entry(index).or_default();
                match event {
                    WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                        objects.insert(name(&object), object);
                    }
                    WatchEvent::Deleted(object) => {
                        objects.remove(&name(&object));
                    }
                }
                true
            }
        }
    }

    /// Whether kind `index` has been listed.
    pub fn listed(&self, index: usize) -> bool {
        self.kinds.contains_key(&index)
    }

    /// The objects of kind `index`.
    pub fn of(&self, index: usize) -> impl Iterator<Item = &Object> {
        self.kinds.get(&index).into_iter().flat_map(BTreeMap::values)
    }
}

fn name(object: &Object) -> String {
    match &object.key.namespace {
        Some(namespace) => format!("{namespace}/{}", object.key.name),
        None => object.key.name.clone(),
    }
}

/// Lists and watches `kind` (in `namespace` only, if given) until cancelled, reporting as kind
/// `index`.
pub async fn follow(
    store: Arc<dyn Store>,
    index: usize,
    kind: Kind,
    namespace: Option<&'static str>,
    reports: mpsc::Sender<Report>,
    cancel: CancellationToken,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = follow_once(&*store, index, &kind, namespace, &reports, &mut pause) => outcome,
        };
        match outcome {
            Ok(()) => tracing::warn!(kind = %kind.kind, "watch ended; listing again"),
            Err(error) => {
                tracing::warn!(kind = %kind.kind, %error, pause_ms = pause.as_millis() as u64, "cannot follow the datastore; trying again")
            }
        }
        if reports.is_closed() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One list and the watch after it; `Ok` when the watch ended. A watch covers every namespace:
/// the events of others than `namespace` are dropped here.
async fn follow_once(
    store: &dyn Store,
    index: usize,
    kind: &Kind,
    namespace: Option<&str>,
    reports: &mpsc::Sender<Report>,
    pause: &mut Duration,
) -> Result<(), weft_api::StoreError> {
    let list = store.list(kind, namespace).await?;
    let mut stream = store.watch(kind, list.revision).await?;
    if reports
        .send(Report::Listed {
            index,
            objects: list.items,
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    *pause = FIRST_PAUSE;
    while let Some(event) = stream.next().await {
        let event = event?;
        if !in_namespace(&event, namespace) {
            continue;
        }
        if reports.send(Report::Changed { index, event }).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Whether `event`'s object is in `namespace` (every object is, without one).
fn in_namespace(event: &WatchEvent, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|namespace| event.object().key.namespace.as_deref() == Some(namespace))
}

#[cfg(test)]
mod tests {
    use weft_api::{Key, Revision};

    use super::*;

    fn object(name: &str, revision: u64) -> Object {
        let kind = Kind::of::<weft_api::resources::WeftNode>();
        Object::new(
            Key::new(&kind, None, name),
            Revision(revision),
            serde_json::json!({"metadata": {"name": name}}),
        )
    }

    #[test]
    fn a_list_replaces_the_kind_and_events_follow_it() {
        let mut objects = Objects::default();
        assert!(!objects.listed(0));
        let listed = |objects: Vec<Object>| Report::Listed { index: 0, objects };
        assert!(objects.apply(listed(vec![object("a", 1), object("b", 2)])));
        assert!(objects.listed(0));
        assert!(
            !objects.apply(listed(vec![object("a", 1), object("b", 2)])),
            "the same list"
        );
        assert!(objects.apply(Report::Changed {
            index: 0,
            event: WatchEvent::Deleted(object("a", 3)),
        }));
        assert!(objects.apply(Report::Changed {
            index: 0,
            event: WatchEvent::Added(object("c", 4)),
        }));
        let names: Vec<&str> = objects.of(0).map(|o| o.key.name.as_str()).collect();
        assert_eq!(names, vec!["b", "c"]);
        assert!(
            objects.apply(listed(vec![object("d", 5)])),
            "a relist drops what is gone"
        );
        assert_eq!(objects.of(0).count(), 1);
    }

    #[test]
    fn a_namespace_keeps_only_the_events_of_its_objects() {
        let kind = Kind::of::<k8s_openapi::api::core::v1::Secret>();
        let secret = |namespace: &str| {
            WatchEvent::Modified(Object::new(
                Key::new(&kind, Some(namespace), "bgp"),
                Revision(1),
                serde_json::json!({}),
            ))
        };
        assert!(in_namespace(&secret("weft-system"), Some("weft-system")));
        assert!(!in_namespace(&secret("default"), Some("weft-system")));
        assert!(in_namespace(&secret("default"), None));
    }
}
