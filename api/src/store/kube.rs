//! placeholder
use super::*;
#[derive(Debug)]
pub struct KubeStore;
impl KubeStore {
    pub async fn connect(_kubeconfig: Option<&str>) -> Result<KubeStore, StoreError> { todo!() }
}
#[async_trait::async_trait]
impl Store for KubeStore {
    fn describe(&self) -> String { todo!() }
    async fn get(&self, _key: &Key) -> Result<Option<Object>, StoreError> { todo!() }
    async fn list(&self, _kind: &Kind, _namespace: Option<&str>) -> Result<ObjectList, StoreError> { todo!() }
    async fn create(&self, _kind: &Kind, _value: serde_json::Value) -> Result<Object, StoreError> { todo!() }
    async fn update(&self, _kind: &Kind, _value: serde_json::Value, _expected: Revision) -> Result<Object, StoreError> { todo!() }
    async fn delete(&self, _key: &Key, _expected: Option<Revision>) -> Result<Object, StoreError> { todo!() }
    async fn watch(&self, _kind: &Kind, _from: Revision) -> Result<WatchStream, StoreError> { todo!() }
}
