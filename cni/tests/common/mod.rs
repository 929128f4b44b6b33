//! What the runtime tests (podman, containerd) share: a weft network on a fresh file store.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use weft_api::StoreExt;
use weft_api::resources::{IPPool, IPPoolSpec};
use weft_api::store::Store;

/// Writes `text` to `path`, failing the test with the path when it cannot.
pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A file store under `dir` with one pool of /26 blocks in `cidr`, and a conflist at `conflist`
/// that runs weft-cni on it for node `node-1` (lock and log files under `dir`). Returns the
/// store.
pub async fn weft_network(dir: &Path, cidr: &str, conflist: &Path) -> Arc<dyn Store> {
    let setting = format!("file:{}", dir.join("store").display());
    let store = weft_api::store::open(&setting).await.expect("open the store");
    let mut spec: IPPoolSpec = serde_json::from_value(json!({ "cidr": cidr })).expect("pool spec");
    spec.block_size = Some(26);
    store
        .create_as(&IPPool::new("pod-pool", spec))
        .await
        .expect("create the pool");
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "weftnet",
        "plugins": [{
            "type": "weft-cni",
            "store": setting,
            "nodename": "node-1",
            "lock_file": dir.join("cni.lock"),
            "log_file": dir.join("cni.log"),
            "ipam": {"type": "weft-ipam", "pools": [cidr]},
        }],
    });
    write(conflist, &list.to_string());
    store
}
