//! The `kubernetes` backend of [`Store`]: weft's resources as custom resources (and Kubernetes'
//! own kinds) in the API server, through kube-rs.
//!
//! Owns the mapping between the store's contract and the Kubernetes REST API:
//! - a [`Kind`] is an [`ApiResource`]; every call goes through `Api<DynamicObject>`, namespaced
//!   or cluster-wide as the key says;
//! - a [`Revision`] is `metadata.resourceVersion` read as a number (an API server on etcd 3
//!   hands out etcd's revision: one counter for every kind, growing with each write). A version
//!   that is not a number is an error naming the object, never guessed at;
//! - `create` is a POST (409 is [`StoreError::AlreadyExists`]);
//! - `update` is a PUT carrying the expected revision in `metadata.resourceVersion`: the API
//!   server does the compare-and-swap (409 is [`StoreError::Conflict`], 404
//!   [`StoreError::NotFound`]). Revision 0 is never sent, since the API server would take an
//!   empty or zero version as "overwrite whatever is there";
//! - `delete` reads the object first (its last state, and a conflict without a write when it is
//!   already past the expected revision), then DELETEs with
//!   `preconditions.resourceVersion` when a revision is expected;
//! - `watch` is a `?watch=true&resourceVersion=R` stream, re-opened from the last revision seen
//!   whenever the API server ends it normally (its watch timeout), so it lasts until dropped
//!   (see the `watch` submodule);
//! - objects are returned as the API server sent them; only a missing `apiVersion`/`kind` (list
//!   items of Kubernetes' own kinds) is filled in.
//!
//! Errors: transport failures are [`StoreError::Unreachable`] naming the server's URL; 400 and
//! 422 are [`StoreError::Invalid`]; anything else the API server refuses is
//! [`StoreError::Backend`] with its HTTP code, reason and message.
//!
//! Must never retry a request: kube's retry of 429/503/504 answers is switched off too (a
//! create retried after a lost answer would fail with `AlreadyExists` for its own first try).
//! Callers own every retry.
//!
//! Differences from the other backends that callers can notice (they come from Kubernetes):
//! an update that changes nothing keeps the object's revision and makes no watch event, and a
//! watch from a revision older than the API server's watch cache (minutes) fails with
//! [`StoreError::Compacted`].

mod watch;

use std::fmt;

use ::kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use serde_json::Value;

use super::{Key, Kind, Object, ObjectList, Revision, Store, StoreError, WatchStream, normalize, set_resource_version};

/// The field manager named in every write (`managedFields` shows weft as the writer).
const FIELD_MANAGER: &str = "weft";

/// The `kubernetes[:KUBECONFIG]` store.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
    /// The setting it was opened with, for [`Store::describe`].
    setting: String,
    /// The API server's URL, for [`StoreError::Unreachable`].
    endpoint: String,
}

impl fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeStore")
            .field("setting", &self.setting)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// Opens the store through a kubeconfig file, or (`None`) through the configuration kube-rs
    /// infers: `$KUBECONFIG` or `~/.kube/config`, else the pod's service account in-cluster.
    ///
    /// Nothing is sent to the API server yet: an unreachable server shows up as
    /// [`StoreError::Unreachable`] on the first call.
    pub async fn connect(kubeconfig: Option<&str>) -> Result<KubeStore, StoreError> {
        let (setting, config) = match kubeconfig {
            None => {
                let setting = "kubernetes".to_owned();
                let config = Config::infer().await.map_err(|error| StoreError::Backend {
                    store: setting.clone(),
                    message: "found no Kubernetes configuration (in-cluster service account, $KUBECONFIG or \
                              ~/.kube/config)"
                        .into(),
                    source: Some(Box::new(error)),
                })?;
                (setting, config)
            }
            Some(path) => {
                let setting = format!("kubernetes:{path}");
                let cannot_load = |error: ::kube::config::KubeconfigError| StoreError::Backend {
                    store: setting.clone(),
                    message: format!("cannot load kubeconfig {path}"),
                    source: Some(Box::new(error)),
                };
                let kubeconfig = Kubeconfig::read_from(path).map_err(cannot_load)?;
                let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(cannot_load)?;
                (setting, config)
            }
        };
        KubeStore::from_config(setting, config)
    }

    /// Opens the store with a kube-rs configuration; `setting` is what [`Store::describe`]
    /// returns.
    pub fn from_config(setting: impl Into<String>, mut config: Config) -> Result<KubeStore, StoreError> {
        let setting = setting.into();
        // Callers own every retry (see the module documentation).
        config.default_retry = false;
        let endpoint = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|error| StoreError::Backend {
            store: setting.clone(),
            message: format!("cannot make a client for {endpoint}"),
            source: Some(Box::new(error)),
        })?;
        Ok(KubeStore {
            client,
            setting,
            endpoint,
        })
    }

    /// Uses an existing client (a `tower-test` mock in tests); `endpoint` names the server in
    /// errors.
    pub fn with_client(client: Client, endpoint: impl Into<String>) -> KubeStore {
        KubeStore {
            client,
            setting: "kubernetes".to_owned(),
            endpoint: endpoint.into(),
        }
    }

    /// The API server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = api_resource(kind);
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn api_for(&self, key: &Key) -> Api<DynamicObject> {
        self.api(&key.kind, key.namespace.as_deref())
    }

    /// An object as the API server sent it, with its key and revision.
    fn object_from(&self, kind: &Kind, object: DynamicObject) -> Result<Object, StoreError> {
        let resource_version = object.metadata.resource_version.clone();
        let name = object.metadata.name.clone().unwrap_or_default();
        let mut value = serde_json::to_value(&object).map_err(|error| StoreError::Backend {
            store: self.endpoint.clone(),
            message: format!("{}/{name} does not encode as JSON", kind.kind),
            source: Some(Box::new(error)),
        })?;
        if let Some(map) = value.as_object_mut() {
            map.entry("apiVersion")
                .or_insert_with(|| Value::String(kind.api_version()));
            map.entry("kind").or_insert_with(|| Value::String(kind.kind.clone()));
        }
        let key = Key::of_value(kind, &value)?;
        let revision = self.revision_of(&key.to_string(), resource_version.as_deref())?;
        Ok(Object::new(key, revision, value))
    }

    /// `metadata.resourceVersion` (of an object or a list) as a revision.
    fn revision_of(&self, location: &str, resource_version: Option<&str>) -> Result<Revision, StoreError> {
        let Some(resource_version) = resource_version else {
            return Err(StoreError::Backend {
                store: self.endpoint.clone(),
                message: format!("{location} came without metadata.resourceVersion"),
                source: None,
            });
        };
        resource_version
            .parse()
            .map(Revision)
            .map_err(|error| StoreError::Backend {
                store: self.endpoint.clone(),
                message: format!(
                    "{location} has resourceVersion {resource_version:?}, which is not a number: weft needs an API \
                     server whose versions are etcd revisions"
                ),
                source: Some(Box::new(error)),
            })
    }

    /// Classifies a failed call about `location` by what the caller should do next.
    fn classify(&self, location: &str, error: ::kube::Error) -> StoreError {
        match error {
            ::kube::Error::Api(status) if matches!(status.code, 400 | 422) => StoreError::Invalid {
                key: location.to_owned(),
                reason: status.message.clone(),
            },
            ::kube::Error::Api(status) => StoreError::Backend {
                store: self.endpoint.clone(),
                message: format!(
                    "{location}: the API server answered {} {}: {}",
                    status.code, status.reason, status.message
                ),
                source: Some(Box::new(::kube::Error::Api(status))),
            },
            error @ (::kube::Error::HyperError(_) | ::kube::Error::Service(_) | ::kube::Error::ReadEvents(_)) => {
                StoreError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    source: Box::new(error),
                }
            }
            error => StoreError::Backend {
                store: self.endpoint.clone(),
                message: format!("{location}: request failed"),
                source: Some(Box::new(error)),
            },
        }
    }

    /// The conflict to report for `key` after a write at `expected` was refused: the current
    /// revision when one more read can tell it.
    async fn conflict(&self, key: &Key, expected: Revision) -> StoreError {
        let found = match self.get(key).await {
            Ok(current) => current.map(|object| object.revision),
            Err(error) => {
                tracing::debug!(key = %key, %error, "cannot read the current revision after a conflict");
                None
            }
        };
        StoreError::Conflict {
            key: key.to_string(),
            expected,
            found,
        }
    }
}

/// The kube-rs description of a kind, enough to build its URLs.
fn api_resource(kind: &Kind) -> ApiResource {
    ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    }
}

/// A value to send, as kube-rs' dynamic object (its metadata must decode as `ObjectMeta`).
fn dynamic_from(key: &Key, value: Value) -> Result<DynamicObject, StoreError> {
    serde_json::from_value(value).map_err(|error| StoreError::Invalid {
        key: key.to_string(),
        reason: format!("not a Kubernetes object: {error}"),
    })
}

/// Kubernetes' own kinds whose `status` is written only through the `/status` subresource.
fn has_status_subresource(kind: &Kind) -> bool {
    kind.group.is_empty() && matches!(kind.plural.as_str(), "services" | "pods" | "nodes" | "namespaces")
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    }
}

#[async_trait::async_trait]
impl Store for KubeStore {
    fn describe(&self) -> String {
        self.setting.clone()
    }

    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        key.check()?;
        match self.api_for(key).get_opt(&key.name).await {
            Ok(Some(object)) => self.object_from(&key.kind, object).map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(self.classify(&key.to_string(), error)),
        }
    }

    async fn list(&self, kind: &Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let location = match namespace {
            Some(namespace) => format!("{}/{namespace}", kind.kind),
            None => kind.kind.clone(),
        };
        if namespace.is_some() {
            // The namespace goes into the URL: it must be a namespaced kind's valid namespace.
            Key::new(kind, namespace, &kind.plural)
                .check()
                .map_err(|error| match error {
                    StoreError::Invalid { reason, .. } => StoreError::Invalid {
                        key: location.clone(),
                        reason,
                    },
                    error => error,
                })?;
        }
        let list = self
            .api(kind, namespace)
            .list(&ListParams::default())
            .await
            .map_err(|error| self.classify(&location, error))?;
        let revision = self.revision_of(
            &format!("the list of {location}"),
            list.metadata.resource_version.as_deref(),
        )?;
        let mut items = list
            .items
            .into_iter()
            .map(|object| self.object_from(kind, object))
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| (&a.key.namespace, &a.key.name).cmp(&(&b.key.namespace, &b.key.name)));
        Ok(ObjectList { items, revision })
    }

    async fn create(&self, kind: &Kind, value: Value) -> Result<Object, StoreError> {
        let key = Key::of_value(kind, &value)?;
        let object = dynamic_from(&key, normalize(kind, value))?;
        match self.api_for(&key).create(&post_params(), &object).await {
            Ok(created) => self.object_from(kind, created),
            Err(::kube::Error::Api(status)) if status.code == 409 => {
                Err(StoreError::AlreadyExists { key: key.to_string() })
            }
            Err(error) => Err(self.classify(&key.to_string(), error)),
        }
    }

    async fn update(&self, kind: &Kind, value: Value, expected: Revision) -> Result<Object, StoreError> {
        let key = Key::of_value(kind, &value)?;
        if expected == Revision(0) {
            // No object is at revision 0, and the API server would read "0" as "any".
            return match self.get(&key).await? {
                None => Err(StoreError::NotFound { key: key.to_string() }),
                Some(current) => Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    found: Some(current.revision),
                }),
            };
        }
        let mut value = normalize(kind, value);
        set_resource_version(&mut value, expected);
        let status = value.get("status").cloned();
        let object = dynamic_from(&key, value)?;
        let api = self.api_for(&key);
        let updated = match api.replace(&key.name, &post_params(), &object).await {
            Ok(updated) => updated,
            Err(::kube::Error::Api(status)) if status.code == 409 => return Err(self.conflict(&key, expected).await),
            Err(::kube::Error::Api(status)) if status.code == 404 => {
                return Err(StoreError::NotFound { key: key.to_string() });
            }
            Err(error) => return Err(self.classify(&key.to_string(), error)),
        };
        // Kubernetes' own kinds keep their status through a replace: write it through `/status`
        // (a second write, so a writer in between can make it a conflict after the first).
        if has_status_subresource(kind) && updated.data.get("status") != status.as_ref() {
            let mut with_status = updated;
            let revision = with_status.metadata.resource_version.clone();
            match (&status, with_status.data.as_object_mut()) {
                (Some(status), Some(data)) => {
                    data.insert("status".into(), status.clone());
                }
                (None, Some(data)) => {
                    data.remove("status");
                }
                _ => {}
            }
            return match api.replace_status(&key.name, &post_params(), &with_status).await {
                Ok(updated) => self.object_from(kind, updated),
                Err(::kube::Error::Api(status)) if status.code == 409 => {
                    let expected = revision
                        .as_deref()
                        .and_then(|rv| rv.parse().ok())
                        .map_or(expected, Revision);
                    Err(self.conflict(&key, expected).await)
                }
                Err(error) => Err(self.classify(&key.to_string(), error)),
            };
        }
        self.object_from(kind, updated)
    }

    async fn delete(&self, key: &Key, expected: Option<Revision>) -> Result<Object, StoreError> {
        // Read first: the API server answers some deletes with a Status rather than the object,
        // and a revision already past `expected` is a conflict without a write.
        let Some(current) = self.get(key).await? else {
            return Err(StoreError::NotFound { key: key.to_string() });
        };
        if let Some(expected) = expected
            && current.revision != expected
        {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                found: Some(current.revision),
            });
        }
        let mut params = DeleteParams::default();
        if let Some(expected) = expected {
            params = params.preconditions(Preconditions {
                resource_version: Some(expected.to_string()),
                uid: None,
            });
        }
        match self.api_for(key).delete(&key.name, &params).await {
            // The deleted object, or a Status: then the state read above is the last one.
            Ok(answer) => match answer.left() {
                Some(deleted) => self.object_from(&key.kind, deleted),
                None => Ok(current),
            },
            Err(::kube::Error::Api(status)) if status.code == 409 => match expected {
                Some(expected) => Err(self.conflict(key, expected).await),
                None => Err(self.classify(&key.to_string(), ::kube::Error::Api(status))),
            },
            Err(::kube::Error::Api(status)) if status.code == 404 => Err(StoreError::NotFound { key: key.to_string() }),
            Err(error) => Err(self.classify(&key.to_string(), error)),
        }
    }

    async fn watch(&self, kind: &Kind, from: Revision) -> Result<WatchStream, StoreError> {
        watch::open(self.clone(), kind.clone(), from).await
    }
}
