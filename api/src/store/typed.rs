//! Typed access on top of the JSON [`Store`]: read and write Rust resource types directly.
//!
//! The revision travels in `metadata.resourceVersion`, so an object read with `get_as` and
//! handed back to `update_as` is a compare-and-swap on the revision it was read at.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Key, Kind, KindScope, Revision, Store, StoreError, Write};

/// Typed helpers for every [`Store`].
#[async_trait::async_trait]
pub trait StoreExt {
    /// The object `name` (in `namespace` for namespaced kinds), if it exists.
    async fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Result<Option<K>, StoreError>
    where
        K: TypedResource;

    /// Every object of the type, and the revision to watch from.
    async fn list_as<K>(&self, namespace: Option<&str>) -> Result<(Vec<K>, Revision), StoreError>
    where
        K: TypedResource;

    async fn create_as<K>(&self, object: &K) -> Result<K, StoreError>
    where
        K: TypedResource;

    /// Writes `object` if the stored one is still at the revision in its
    /// `metadata.resourceVersion`.
    async fn update_as<K>(&self, object: &K) -> Result<K, StoreError>
    where
        K: TypedResource;
}

/// A resource type the store can hold.
pub trait TypedResource:
    ::kube::Resource<DynamicType = (), Scope: KindScope> + Serialize + DeserializeOwned + Send + Sync
{
}

impl<K> TypedResource for K where
    K: ::kube::Resource<DynamicType = (), Scope: KindScope> + Serialize + DeserializeOwned + Send + Sync
{
}

fn decode<K: TypedResource>(key: &Key, value: serde_json::Value) -> Result<K, StoreError> {
    serde_json::from_value(value).map_err(|error| StoreError::Corrupt {
        location: key.to_string(),
        reason: format!("does not decode as a {}: {error}", key.kind.kind),
    })
}

fn encode<K: TypedResource>(kind: &Kind, object: &K) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(object).map_err(|error| StoreError::Invalid {
        key: format!("{}/{}", kind.kind, object.meta().name.as_deref().unwrap_or("?")),
        reason: error.to_string(),
    })
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> StoreExt for S {
    async fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Result<Option<K>, StoreError>
    where
        K: TypedResource,
    {
        let key = Key::new(&Kind::of::<K>(), namespace, name);
        match self.get(&key).await? {
            Some(object) => Ok(Some(decode(&key, object.value)?)),
            None => Ok(None),
        }
    }

    async fn list_as<K>(&self, namespace: Option<&str>) -> Result<(Vec<K>, Revision), StoreError>
    where
        K: TypedResource,
    {
        let list = self.list(&Kind::of::<K>(), namespace).await?;
        let items = list
            .items
            .into_iter()
            .map(|object| decode(&object.key, object.value))
            .collect::<Result<_, _>>()?;
        Ok((items, list.revision))
    }

    async fn create_as<K>(&self, object: &K) -> Result<K, StoreError>
    where
        K: TypedResource,
    {
        let kind = Kind::of::<K>();
        let created = self.create(&kind, encode(&kind, object)?).await?;
        decode(&created.key, created.value)
    }

    async fn update_as<K>(&self, object: &K) -> Result<K, StoreError>
    where
        K: TypedResource,
    {
        let (kind, value, expected) = update_parts(object)?;
        let updated = self.update(&kind, value, expected).await?;
        decode(&updated.key, updated.value)
    }
}

/// The revision a typed object was read at, from its `metadata.resourceVersion`.
fn read_at<K: TypedResource>(key: &Key, object: &K, what: &str) -> Result<Revision, StoreError> {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .map(Revision)
        .ok_or_else(|| StoreError::Invalid {
            key: key.to_string(),
            reason: format!("{what} needs metadata.resourceVersion (read the object first)"),
        })
}

fn update_parts<K: TypedResource>(object: &K) -> Result<(Kind, serde_json::Value, Revision), StoreError> {
    let kind = Kind::of::<K>();
    let value = encode(&kind, object)?;
    let key = Key::of_value(&kind, &value)?;
    let expected = read_at(&key, object, "update")?;
    Ok((kind, value, expected))
}

impl Write {
    /// An update of a typed object read earlier: a compare-and-swap on the revision it was
    /// read at.
    pub fn update_of<K: TypedResource>(object: &K) -> Result<Write, StoreError> {
        let (kind, value, expected) = update_parts(object)?;
        Ok(Write::Update { kind, value, expected })
    }

    /// The deletion of a typed object read earlier, if it is still at that revision.
    pub fn delete_of<K: TypedResource>(object: &K) -> Result<Write, StoreError> {
        let kind = Kind::of::<K>();
        let key = Key::of_value(&kind, &encode(&kind, object)?)?;
        let expected = read_at(&key, object, "delete")?;
        Ok(Write::Delete {
            key,
            expected: Some(expected),
        })
    }
}
