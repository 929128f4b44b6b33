//! The `etcd:URL` store: etcd v3, for clusters without Kubernetes and for real concurrency.
//!
//! Keys: `/weft/<group>/<plural>/<name>` (cluster-scoped) and
//! `/weft/<group>/<plural>/<namespace>/<name>` (namespaced), `core` standing for Kubernetes'
//! core group. Values: the object's JSON without `resourceVersion`. Revisions are etcd's: an
//! object's is its `mod_revision`, a list's the response header's.
//!
//! Every conditional write is one etcd transaction: `create` compares `create_revision == 0`,
//! `update` and `delete` compare `mod_revision == expected`; the failure branch reads the key so
//! that the error says what is there now. Watches start at `from + 1` with `prev_kv` (deletions
//! carry the last state) and end with `Compacted` when etcd no longer has that history.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures::StreamExt;
use serde_json::Value;

use super::{
    Key, Kind, Object, ObjectList, Revision, Store, StoreError, WatchEvent, WatchStream, Write, check_kind,
    distinct_keys, normalize,
};

const ROOT: &str = "/weft/";

/// The `etcd:URL` backend. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.endpoints).finish()
    }
}

impl EtcdStore {
    /// Connects and checks that etcd answers (within a few seconds).
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10));
        let endpoint = endpoints.join(",");
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|error| StoreError::Unreachable {
                endpoint: endpoint.clone(),
                source: Box::new(error),
            })?;
        let store = EtcdStore {
            client,
            endpoints: endpoints.to_vec(),
        };
        let mut maintenance = store.client.maintenance_client();
        tokio::time::timeout(Duration::from_secs(5), maintenance.status())
            .await
            .map_err(|elapsed| StoreError::Unreachable {
                endpoint: endpoint.clone(),
                source: Box::new(elapsed),
            })?
            .map_err(|error| store.error(error))?;
        Ok(store)
    }

    fn error(&self, error: etcd_client::Error) -> StoreError {
        match error {
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => StoreError::Unreachable {
                endpoint: self.endpoints.join(","),
                source: Box::new(error),
            },
            // A status carrying a source is the client's own transport failing (a broken
            // connection reads as code Unknown), not an answer from etcd.
            etcd_client::Error::GRpcStatus(ref status)
                if matches!(
                    status.code() as i32,
                    grpc_code::UNAVAILABLE | grpc_code::DEADLINE_EXCEEDED | grpc_code::CANCELLED
                ) || std::error::Error::source(status).is_some() =>
            {
                StoreError::Unreachable {
                    endpoint: self.endpoints.join(","),
                    source: Box::new(error),
                }
            }
            error => StoreError::Backend {
                store: self.describe(),
                message: "etcd refused the request".into(),
                source: Some(Box::new(error)),
            },
        }
    }

    fn decode(&self, kind: &Kind, kv: &KeyValue, revision: i64) -> Result<Object, StoreError> {
        let location = format!("{} key {}", self.describe(), String::from_utf8_lossy(kv.key()));
        let value: Value = serde_json::from_slice(kv.value()).map_err(|error| StoreError::Corrupt {
            location: location.clone(),
            reason: format!("not JSON: {error}"),
        })?;
        check_kind(kind, &value, &location)?;
        let key = Key::of_value(kind, &value).map_err(|error| StoreError::Corrupt {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        if key_path(&key).as_bytes() != kv.key() {
            return Err(StoreError::Corrupt {
                location,
                reason: format!("holds {key}, which belongs elsewhere"),
            });
        }
        Ok(Object::new(key, revision_of(revision), value))
    }
}

/// gRPC status codes (grpc/doc/statuscodes.md) that mean "etcd is not there".
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const UNAVAILABLE: i32 = 14;
}

fn revision_of(revision: i64) -> Revision {
    Revision(u64::try_from(revision).unwrap_or(0))
}

fn kind_prefix(kind: &Kind) -> String {
    let group = if kind.group.is_empty() { "core" } else { &kind.group };
    format!("{ROOT}{group}/{}/", kind.plural)
}

fn key_path(key: &Key) -> String {
    match &key.namespace {
        Some(namespace) => format!("{}{namespace}/{}", kind_prefix(&key.kind), key.name),
        None => format!("{}{}", kind_prefix(&key.kind), key.name),
    }
}

fn as_i64(revision: Revision) -> i64 {
    i64::try_from(revision.0).unwrap_or(i64::MAX)
}

/// The key-value a transaction's failure branch read (its single `get`), if any.
fn read_back(response: &etcd_client::TxnResponse) -> Option<KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

fn encode(key: &Key, value: &Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Invalid {
        key: key.to_string(),
        reason: error.to_string(),
    })
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn describe(&self) -> String {
        format!("etcd:{}", self.endpoints.join(","))
    }

    async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        key.check()?;
        let response = self
            .client
            .kv_client()
            .get(key_path(key), None)
            .await
            .map_err(|error| self.error(error))?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(self.decode(&key.kind, kv, kv.mod_revision())?)),
            None => Ok(None),
        }
    }

    async fn list(&self, kind: &Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let prefix = match namespace {
            Some(namespace) if kind.namespaced => format!("{}{namespace}/", kind_prefix(kind)),
            _ => kind_prefix(kind),
        };
        let response = self
            .client
            .kv_client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|error| self.error(error))?;
        let items = response
            .kvs()
            .iter()
            .map(|kv| self.decode(kind, kv, kv.mod_revision()))
            .collect::<Result<_, _>>()?;
        Ok(ObjectList {
            items,
            revision: revision_of(header_revision(response.header())),
        })
    }

    async fn create(&self, kind: &Kind, value: Value) -> Result<Object, StoreError> {
        let key = Key::of_value(kind, &value)?;
        let value = normalize(kind, value);
        let path = key_path(&key);
        let txn = Txn::new()
            .when([Compare::create_revision(path.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(path.clone(), encode(&key, &value)?, None)])
            .or_else([TxnOp::get(path, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|error| self.error(error))?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.to_string() });
        }
        Ok(Object::new(key, revision_of(header_revision(response.header())), value))
    }

    async fn update(&self, kind: &Kind, value: Value, expected: Revision) -> Result<Object, StoreError> {
        let key = Key::of_value(kind, &value)?;
        let value = normalize(kind, value);
        let path = key_path(&key);
        let txn = Txn::new()
            .when([Compare::mod_revision(path.clone(), CompareOp::Equal, as_i64(expected))])
            .and_then([TxnOp::put(path.clone(), encode(&key, &value)?, None)])
            .or_else([TxnOp::get(path, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|error| self.error(error))?;
        if !response.succeeded() {
            return Err(match read_back(&response) {
                None => StoreError::NotFound { key: key.to_string() },
                Some(kv) => StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    found: Some(revision_of(kv.mod_revision())),
                },
            });
        }
        Ok(Object::new(key, revision_of(header_revision(response.header())), value))
    }

    async fn delete(&self, key: &Key, expected: Option<Revision>) -> Result<Object, StoreError> {
        key.check()?;
        let path = key_path(key);
        let condition = match expected {
            Some(expected) => Compare::mod_revision(path.clone(), CompareOp::Equal, as_i64(expected)),
            None => Compare::create_revision(path.clone(), CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([condition])
            .and_then([TxnOp::get(path.clone(), None), TxnOp::delete(path.clone(), None)])
            .or_else([TxnOp::get(path, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|error| self.error(error))?;
        let Some(kv) = read_back(&response) else {
            return Err(StoreError::NotFound { key: key.to_string() });
        };
        if !response.succeeded() {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expected.unwrap_or_default(),
                found: Some(revision_of(kv.mod_revision())),
            });
        }
        self.decode(&key.kind, &kv, header_revision(response.header()))
    }

    /// One etcd transaction: every condition in its `when`, every write in its `then`; the
    /// writes share the transaction's revision.
    async fn transact(&self, writes: Vec<Write>) -> Result<Vec<Object>, StoreError> {
        let keys = distinct_keys(&writes)?;
        let mut conditions = Vec::with_capacity(writes.len());
        let mut then = Vec::with_capacity(writes.len() * 2);
        let mut reads = Vec::with_capacity(writes.len());
        let mut values = Vec::with_capacity(writes.len());
        for (write, key) in writes.iter().zip(&keys) {
            let path = key_path(key);
            reads.push(TxnOp::get(path.clone(), None));
            match write {
                Write::Create { kind, value } => {
                    let value = normalize(kind, value.clone());
                    conditions.push(Compare::create_revision(path.clone(), CompareOp::Equal, 0));
                    then.push(TxnOp::put(path, encode(key, &value)?, None));
                    values.push(Some(value));
                }
                Write::Update { kind, value, expected } => {
                    let value = normalize(kind, value.clone());
                    conditions.push(Compare::mod_revision(path.clone(), CompareOp::Equal, as_i64(*expected)));
                    then.push(TxnOp::put(path, encode(key, &value)?, None));
                    values.push(Some(value));
                }
                Write::Delete { expected, .. } => {
                    conditions.push(match expected {
                        Some(expected) => Compare::mod_revision(path.clone(), CompareOp::Equal, as_i64(*expected)),
                        None => Compare::create_revision(path.clone(), CompareOp::Greater, 0),
                    });
                    then.push(TxnOp::get(path.clone(), None));
                    then.push(TxnOp::delete(path, None));
                    values.push(None);
                }
            }
        }
        let txn = Txn::new().when(conditions).and_then(then).or_else(reads);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|error| self.error(error))?;
        let responses = response.op_responses();
        if !response.succeeded() {
            // The failure branch read every key: name the first write whose condition failed.
            for ((write, key), read) in writes.iter().zip(&keys).zip(&responses) {
                let found = match read {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| revision_of(kv.mod_revision())),
                    _ => None,
                };
                write.check(key, found)?;
            }
            return Err(StoreError::Conflict {
                key: keys.iter().map(Key::to_string).collect::<Vec<_>>().join(", "),
                expected: Revision::default(),
                found: None,
            });
        }
        let revision = header_revision(response.header());
        let mut deleted = responses.iter().filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().cloned()),
            _ => None,
        });
        let mut written = Vec::with_capacity(writes.len());
        for (key, value) in keys.into_iter().zip(values) {
            written.push(match value {
                Some(value) => Object::new(key, revision_of(revision), value),
                None => match deleted.next().flatten() {
                    Some(kv) => self.decode(&key.kind, &kv, revision)?,
                    None => return Err(StoreError::NotFound { key: key.to_string() }),
                },
            });
        }
        Ok(written)
    }

    async fn watch(&self, kind: &Kind, from: Revision) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(as_i64(from) + 1);
        let stream = self
            .client
            .watch_client()
            .watch(kind_prefix(kind), Some(options))
            .await
            .map_err(|error| self.error(error))?;
        let store = self.clone();
        let kind = kind.clone();
        let events = stream
            .map(move |message| -> Vec<Result<WatchEvent, StoreError>> {
                let response = match message {
                    Ok(response) => response,
                    Err(error) => return vec![Err(store.error(error))],
                };
                if response.canceled() {
                    let error = if response.compact_revision() > 0 {
                        StoreError::Compacted {
                            store: store.describe(),
                            requested: from,
                            // etcd can replay from the compact revision itself: from = that - 1.
                            oldest: revision_of(response.compact_revision() - 1),
                        }
                    } else {
                        StoreError::Backend {
                            store: store.describe(),
                            message: format!("etcd cancelled the watch: {}", response.cancel_reason()),
                            source: None,
                        }
                    };
                    return vec![Err(error)];
                }
                response
                    .events()
                    .iter()
                    .filter_map(|event| {
                        let kv = event.kv()?;
                        Some(match event.event_type() {
                            EventType::Put => store.decode(&kind, kv, kv.mod_revision()).map(|object| {
                                if kv.version() == 1 {
                                    WatchEvent::Added(object)
                                } else {
                                    WatchEvent::Modified(object)
                                }
                            }),
                            EventType::Delete => {
                                let last = match event.prev_kv() {
                                    Some(prev) => store.decode(&kind, prev, kv.mod_revision()),
                                    None => Err(StoreError::Corrupt {
                                        location: format!(
                                            "{} key {}",
                                            store.describe(),
                                            String::from_utf8_lossy(kv.key())
                                        ),
                                        reason: "deleted, and etcd no longer has its last state".into(),
                                    }),
                                };
                                last.map(WatchEvent::Deleted)
                            }
                        })
                    })
                    .collect()
            })
            .flat_map(futures::stream::iter)
            .scan(false, |failed, item| {
                // A watch ends after its first error.
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(Box::pin(events))
    }
}
