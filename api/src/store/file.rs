//! placeholder
use super::*;
#[derive(Debug)]
pub struct FileStore;
impl FileStore {
    pub fn open(_dir: impl AsRef<std::path::Path>) -> Result<FileStore, StoreError> { todo!() }
}
#[async_trait::async_trait]
impl Store for FileStore {
    fn describe(&self) -> String { todo!() }
    async fn get(&self, _key: &Key) -> Result<Option<Object>, StoreError> { todo!() }
    async fn list(&self, _kind: &Kind, _namespace: Option<&str>) -> Result<ObjectList, StoreError> { todo!() }
    async fn create(&self, _kind: &Kind, _value: serde_json::Value) -> Result<Object, StoreError> { todo!() }
    async fn update(&self, _kind: &Kind, _value: serde_json::Value, _expected: Revision) -> Result<Object, StoreError> { todo!() }
    async fn delete(&self, _key: &Key, _expected: Option<Revision>) -> Result<Object, StoreError> { todo!() }
    async fn watch(&self, _kind: &Kind, _from: Revision) -> Result<WatchStream, StoreError> { todo!() }
}
