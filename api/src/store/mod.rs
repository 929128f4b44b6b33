//! The datastore: one [`Store`] trait and its three backends, chosen by one setting.
//!
//! | setting                         | backend                   |
//! | ------------------------------- | ------------------------- |
//! | `file:DIR`                      | [`file::FileStore`]       |
//! | `etcd:http://HOST:2379[,…]`     | [`etcd::EtcdStore`]       |
//! | `kubernetes[:KUBECONFIG]`       | [`kube::KubeStore`]       |
//!
//! Objects are Kubernetes-shaped JSON (`apiVersion`, `kind`, `metadata`, `spec`, …) so that every
//! backend stores the same thing. Each write gets a [`Revision`] from one counter per store that
//! only grows (etcd's revision, the API server's `resourceVersion`, the file store's journal);
//! an object's revision is the revision of its last write. A read puts the revision into
//! `metadata.resourceVersion` as well, so typed objects carry it.
//!
//! Contract every backend keeps (checked by `api/tests/store_conformance.rs`):
//! - `create` of an existing key fails with [`StoreError::AlreadyExists`];
//! - `update` and `delete` with a revision other than the object's current one fail with
//!   [`StoreError::Conflict`] and change nothing;
//! - `watch(kind, from)` delivers every change of that kind with a revision above `from`,
//!   exactly once and in revision order; asking for history the store no longer keeps fails with
//!   [`StoreError::Compacted`] (list again, then watch from the list's revision);
//! - a corrupt or foreign object is an error naming it, never skipped in silence;
//! - [`Store::transact`] applies several writes, each with its own condition, all or none
//!   (file and etcd: one commit; see the method for Kubernetes).
//!
//! Where backends differ (callers must not depend on these):
//! - the Kubernetes API server keeps only minutes of history: list first, then watch from the
//!   list's revision; `watch` from `Revision(0)` there means "from now";
//! - on the Kubernetes API server an update that changes nothing keeps the revision and makes
//!   no watch event; file and etcd make a new revision for every write;
//! - the object `delete` returns carries the deletion's revision on file and etcd, the last
//!   write's on Kubernetes; the watch's `Deleted` event carries the deletion's everywhere.
//!
//! This module must never retry on its own: callers decide (compare-and-swap loops live in the
//! allocators that know what to re-read).

pub mod etcd;
pub mod file;
pub mod kube;
mod typed;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use typed::StoreExt;

/// The kind of an object: enough to address it in every backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    /// API group, empty for Kubernetes' core group (`v1`).
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Lowercase plural used in URLs and key paths (`ippools`).
    pub plural: String,
    pub namespaced: bool,
}

impl Kind {
    /// The kind of a Rust resource type (ours or one of Kubernetes').
    pub fn of<K>() -> Kind
    where
        K: ::kube::Resource<DynamicType = ()>,
        K::Scope: KindScope,
    {
        Kind {
            group: K::group(&()).into_owned(),
            version: K::version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            plural: K::plural(&()).into_owned(),
            namespaced: K::Scope::NAMESPACED,
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.api_version())
    }
}

/// Whether a `kube::Resource::Scope` is namespaced.
pub trait KindScope {
    const NAMESPACED: bool;
}

impl KindScope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl KindScope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// Where one object lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: Kind,
    /// `Some` exactly when the kind is namespaced.
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    pub fn new(kind: &Kind, namespace: Option<&str>, name: &str) -> Key {
        Key {
            kind: kind.clone(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// The key of a Kubernetes-shaped object, checking it against `kind`.
    pub fn of_value(kind: &Kind, value: &Value) -> Result<Key, StoreError> {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| StoreError::Invalid {
                key: format!("{kind}/?"),
                reason: "metadata.name is missing or empty".into(),
            })?;
        let namespace = value.pointer("/metadata/namespace").and_then(Value::as_str);
        let key = Key::new(kind, namespace, name);
        key.check()?;
        check_kind(kind, value, &key.to_string())?;
        Ok(key)
    }

    /// Names must be usable as a file name, an etcd key segment and a URL segment:
    /// RFC 1123 subdomain characters (Kubernetes' rule for most kinds), at most 253 bytes.
    pub fn check(&self) -> Result<(), StoreError> {
        let invalid = |reason: String| StoreError::Invalid {
            key: self.to_string(),
            reason,
        };
        match (&self.namespace, self.kind.namespaced) {
            (None, true) => {
                return Err(invalid(format!(
                    "{} is namespaced: a namespace is required",
                    self.kind.kind
                )));
            }
            (Some(_), false) => {
                return Err(invalid(format!(
                    "{} is cluster-scoped: it takes no namespace",
                    self.kind.kind
                )));
            }
            _ => {}
        }
        for part in self.namespace.iter().chain(std::iter::once(&self.name)) {
            let ok = !part.is_empty()
                && part.len() <= 253
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !part.starts_with(['-', '.'])
                && !part.ends_with(['-', '.']);
            if !ok {
                return Err(invalid(format!(
                    "{part:?} is not a valid name: use lowercase letters, digits, '-' and '.', \
                     starting and ending with a letter or digit, at most 253 characters"
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{}/{}", self.kind.kind, namespace, self.name),
            None => write!(f, "{}/{}", self.kind.kind, self.name),
        }
    }
}

/// A point in the store's history. Every write makes a new, larger one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One stored object as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub key: Key,
    /// The revision of the object's last write (its `metadata.resourceVersion`).
    pub revision: Revision,
    /// The whole object, `metadata.resourceVersion` included.
    pub value: Value,
}

impl Object {
    /// Builds an object from what a backend read, putting `revision` into the value.
    pub fn new(key: Key, revision: Revision, mut value: Value) -> Object {
        set_resource_version(&mut value, revision);
        Object { key, revision, value }
    }
}

/// The objects of one kind and the revision the list was taken at: watch from there.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    pub items: Vec<Object>,
    pub revision: Revision,
}

/// One change seen by a watch. The object's revision is the change's revision; a deletion
/// carries the object's last state with the revision of the deletion.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    Added(Object),
    Modified(Object),
    Deleted(Object),
}

impl WatchEvent {
    pub fn object(&self) -> &Object {
        match self {
            WatchEvent::Added(object) | WatchEvent::Modified(object) | WatchEvent::Deleted(object) => object,
        }
    }

    pub fn revision(&self) -> Revision {
        self.object().revision
    }
}

/// One write of a [`Store::transact`]: the same conditions as the single-object methods.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Fails with [`StoreError::AlreadyExists`] when the key exists.
    Create { kind: Kind, value: Value },
    /// Fails with [`StoreError::Conflict`] unless the object is at `expected`.
    Update {
        kind: Kind,
        value: Value,
        expected: Revision,
    },
    /// Fails unless the object exists (and is at `expected`, when given).
    Delete { key: Key, expected: Option<Revision> },
}

impl Write {
    /// The key written, checked.
    pub fn key(&self) -> Result<Key, StoreError> {
        match self {
            Write::Create { kind, value } | Write::Update { kind, value, .. } => Key::of_value(kind, value),
            Write::Delete { key, .. } => key.check().map(|()| key.clone()),
        }
    }
}

impl Write {
    /// Whether the write may happen to the object at `key` that is at `found` (`None`: absent).
    pub(crate) fn check(&self, key: &Key, found: Option<Revision>) -> Result<(), StoreError> {
        let key = key.to_string();
        match (self, found) {
            (Write::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists { key }),
            (Write::Update { .. } | Write::Delete { .. }, None) => Err(StoreError::NotFound { key }),
            (
                Write::Update { expected, .. }
                | Write::Delete {
                    expected: Some(expected),
                    ..
                },
                Some(found),
            ) if found != *expected => Err(StoreError::Conflict {
                key,
                expected: *expected,
                found: Some(found),
            }),
            _ => Ok(()),
        }
    }
}

/// Rejects a transaction that writes one key twice (its outcome would depend on the order).
pub(crate) fn distinct_keys(writes: &[Write]) -> Result<Vec<Key>, StoreError> {
    let mut keys: Vec<Key> = Vec::with_capacity(writes.len());
    for write in writes {
        let key = write.key()?;
        if keys.contains(&key) {
            return Err(StoreError::Invalid {
                key: key.to_string(),
                reason: "written twice in one transaction".into(),
            });
        }
        keys.push(key);
    }
    Ok(keys)
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// What went wrong, classified by what the caller should do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error("{key} not found")]
    NotFound { key: String },
    /// Someone else wrote first: re-read and try again.
    #[error("{key} changed meanwhile: expected revision {expected}, it is at {}", found.map_or("(deleted)".to_string(), |r| r.to_string()))]
    Conflict {
        key: String,
        expected: Revision,
        found: Option<Revision>,
    },
    /// The history asked for is gone: list again and watch from the list's revision.
    /// `oldest` is the oldest revision a watch can still start from.
    #[error(
        "revision {requested} of {store} is compacted away (oldest still watchable: {oldest}); list again and watch from there"
    )]
    Compacted {
        store: String,
        requested: Revision,
        oldest: Revision,
    },
    #[error("{location} is corrupt: {reason}")]
    Corrupt { location: String, reason: String },
    #[error("{location} holds a {found}, expected a {expected}")]
    WrongKind {
        location: String,
        expected: String,
        found: String,
    },
    #[error("invalid object {key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("store {endpoint} is unreachable")]
    Unreachable {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{operation} {path}")]
    Io {
        operation: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "invalid store setting {setting:?}: {reason} (expected file:DIR, etcd:http://HOST:PORT[,…] or kubernetes[:KUBECONFIG])"
    )]
    BadSetting { setting: String, reason: String },
    #[error("{store}: {message}")]
    Backend {
        store: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// True when re-reading and trying again may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
    }
}

/// The datastore. See the module documentation for the contract.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The setting this store was opened with (`file:/var/lib/weft/store`).
    fn describe(&self) -> String;

    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError>;

    /// Every object of `kind` (in `namespace` when given), sorted by key.
    async fn list(&self, kind: &Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError>;

    /// Stores a new object; its key comes from `metadata`.
    async fn create(&self, kind: &Kind, value: Value) -> Result<Object, StoreError>;

    /// Replaces an object if it is still at `expected`.
    async fn update(&self, kind: &Kind, value: Value, expected: Revision) -> Result<Object, StoreError>;

    /// Removes an object if it is still at `expected` (any revision when `None`); returns its
    /// last state.
    async fn delete(&self, key: &Key, expected: Option<Revision>) -> Result<Object, StoreError>;

    /// Changes of `kind` with a revision above `from`, in order, until the stream is dropped.
    async fn watch(&self, kind: &Kind, from: Revision) -> Result<WatchStream, StoreError>;

    /// Applies `writes` together: every condition is checked first, and either all writes
    /// happen or none does (the error is the first failed condition's). Returns the objects
    /// written, in order (a deletion's last state). A key may appear once.
    ///
    /// This default checks every condition by reading, then writes one after the other: the
    /// Kubernetes API has no multi-object transaction, so a writer racing in between can leave
    /// the first writes done and a later one failed. File and etcd commit them as one.
    async fn transact(&self, writes: Vec<Write>) -> Result<Vec<Object>, StoreError> {
        for (write, key) in writes.iter().zip(distinct_keys(&writes)?) {
            let found = self.get(&key).await?.map(|object| object.revision);
            write.check(&key, found)?;
        }
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            written.push(match write {
                Write::Create { kind, value } => self.create(&kind, value).await?,
                Write::Update { kind, value, expected } => self.update(&kind, value, expected).await?,
                Write::Delete { key, expected } => self.delete(&key, expected).await?,
            });
        }
        Ok(written)
    }
}

/// Opens the store a setting names (`file:DIR`, `etcd:URL[,URL…]`, `kubernetes[:KUBECONFIG]`).
pub async fn open(setting: &str) -> Result<Arc<dyn Store>, StoreError> {
    let bad = |reason: &str| StoreError::BadSetting {
        setting: setting.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(dir) = setting.strip_prefix("file:") {
        if dir.is_empty() {
            return Err(bad("file: needs a directory"));
        }
        Ok(Arc::new(file::FileStore::open(dir)?))
    } else if let Some(urls) = setting.strip_prefix("etcd:") {
        let endpoints: Vec<String> = urls.split(',').map(str::trim).map(str::to_owned).collect();
        if endpoints
            .iter()
            .any(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(bad("each etcd endpoint must start with http:// or https://"));
        }
        Ok(Arc::new(etcd::EtcdStore::connect(&endpoints).await?))
    } else if setting == "kubernetes" {
        Ok(Arc::new(kube::KubeStore::connect(None).await?))
    } else if let Some(path) = setting.strip_prefix("kubernetes:") {
        Ok(Arc::new(kube::KubeStore::connect(Some(path)).await?))
    } else {
        Err(bad("unknown backend"))
    }
}

/// Checks that `value` is an object of `kind` (when it says what it is) and fills in
/// `apiVersion` and `kind` when it does not.
pub(crate) fn check_kind(kind: &Kind, value: &Value, location: &str) -> Result<(), StoreError> {
    let Some(map) = value.as_object() else {
        return Err(StoreError::Invalid {
            key: location.to_owned(),
            reason: "not a JSON object".into(),
        });
    };
    let found_kind = map.get("kind").and_then(Value::as_str);
    let found_version = map.get("apiVersion").and_then(Value::as_str);
    let expected_version = kind.api_version();
    if found_kind.is_some_and(|k| k != kind.kind) || found_version.is_some_and(|v| v != expected_version) {
        return Err(StoreError::WrongKind {
            location: location.to_owned(),
            expected: kind.to_string(),
            found: format!(
                "{}.{}",
                found_kind.unwrap_or("(no kind)"),
                found_version.unwrap_or("(no apiVersion)")
            ),
        });
    }
    Ok(())
}

/// The value as a backend stores it: `apiVersion` and `kind` set, no `resourceVersion`.
pub(crate) fn normalize(kind: &Kind, mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(kind.api_version()));
        map.insert("kind".into(), Value::String(kind.kind.clone()));
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
    }
    value
}

pub(crate) fn set_resource_version(value: &mut Value, revision: Revision) {
    if let Some(map) = value.as_object_mut() {
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
        }
    }
}
