//! `weft-store-stress`: hammers one store object with read-modify-write increments, the way
//! the IPAM allocator updates a block, and prints each committed count on its own line.
//!
//! A tool for the store's conformance tests (several processes at once, `kill -9` mid-write)
//! and for an operator checking a store under load. Each increment re-reads on `Conflict` and
//! tries again, at most `--max-attempts` times.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use weft_api::{Key, Store, StoreError, kinds};

/// Increments a counter kept in an annotation of one object, by compare-and-swap.
#[derive(Debug, Parser)]
#[command(name = "weft-store-stress", version, about)]
struct Args {
    /// The datastore (file:DIR, etcd:URL, kubernetes[:KUBECONFIG]).
    #[arg(long, env = "WEFT_STORE")]
    store: String,
    /// The counter object's name (an IPAMHandle).
    #[arg(long, default_value = "stress-counter")]
    name: String,
    /// How many increments to commit.
    #[arg(long, default_value_t = 200)]
    times: u32,
    /// Attempts per increment before giving up.
    #[arg(long, default_value_t = 10_000)]
    max_attempts: u32,
}

fn counter_of(value: &serde_json::Value) -> u64 {
    value
        .pointer("/metadata/annotations/count")
        .and_then(|c| c.as_str())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn increment(store: &dyn Store, key: &Key, max_attempts: u32) -> Result<u64, StoreError> {
    let mut last_error = None;
    for attempt in 0..max_attempts {
        let result = match store.get(key).await? {
            None => {
                let value = json!({
                    "metadata": {"name": key.name, "annotations": {"count": "1"}},
                    "spec": {"handleID": key.name},
                });
                store.create(&key.kind, value).await.map(|_| 1)
            }
            Some(object) => {
                let next = counter_of(&object.value) + 1;
                let mut value = object.value.clone();
                value["metadata"]["annotations"]["count"] = json!(next.to_string());
                store.update(&key.kind, value, object.revision).await.map(|_| next)
            }
        };
        match result {
            Ok(count) => return Ok(count),
            Err(error) if error.is_conflict() => {
                last_error = Some(error);
                if attempt % 16 == 15 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or(StoreError::Invalid {
        key: key.to_string(),
        reason: "no attempt made".into(),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let store = match weft_api::store::open(&args.store).await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("weft-store-stress: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Some(kind) = kinds::by_name("IPAMHandle") else {
        eprintln!("weft-store-stress: the IPAMHandle kind is missing");
        return ExitCode::FAILURE;
    };
    let key = Key::new(&kind, None, &args.name);
    for _ in 0..args.times {
        match increment(store.as_ref(), &key, args.max_attempts).await {
            Ok(count) => println!("{count}"),
            Err(error) => {
                eprintln!("weft-store-stress: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
