//! `weftctl apply -f` and `delete -f`: Kubernetes YAML into and out of the store.
//!
//! Every document of the file is checked before anything is written (known kind, name, and for
//! weft's kinds the type's own validation), so a bad file changes nothing. Writes are
//! compare-and-swap on the revision read just before, retried a bounded number of times.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use weft_api::{Key, Kind, Store, StoreError, kinds};

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The YAML file (several documents separated by `---`), or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    file: FileArgs,
    /// Do not fail for objects that are already gone.
    #[arg(long)]
    ignore_not_found: bool,
}

const ATTEMPTS: usize = 10;

/// The documents of the file with their kinds and keys, all checked.
fn read_documents(args: &FileArgs) -> anyhow::Result<Vec<(Kind, Key, Value)>> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let source = args.file.display();
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).with_context(|| format!("{source} is not valid YAML"))?;
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in documents.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let here = format!("{source}, document {}", index + 1);
        let api_version = document.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind_name = document.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = kinds::find(api_version, kind_name) else {
            problems.push(format!(
                "{here}: weft does not store {kind_name:?} of apiVersion {api_version:?}"
            ));
            continue;
        };
        let mut document = document;
        if kind.namespaced && document.pointer("/metadata/namespace").is_none() {
            document["metadata"]["namespace"] = Value::String("default".into());
        }
        match Key::of_value(&kind, &document) {
            Ok(key) => match weft_api::resources::validate_value(&kind.kind, &document) {
                Ok(()) => checked.push((kind, key, document)),
                Err(invalid) => problems.push(format!("{here} ({key}): {invalid}")),
            },
            Err(error) => problems.push(format!("{here}: {error}")),
        }
    }
    if !problems.is_empty() {
        bail!("nothing was changed:\n  {}", problems.join("\n  "));
    }
    Ok(checked)
}

/// The parts of an object a user writes: what `apply` compares to decide "unchanged".
fn user_content(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            metadata.remove(field);
        }
    }
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    value
}

async fn apply_one(store: &dyn Store, kind: &Kind, key: &Key, value: &Value) -> anyhow::Result<&'static str> {
    for _ in 0..ATTEMPTS {
        let result = match store.get(key).await? {
            None => store.create(kind, value.clone()).await.map(|_| "created"),
            Some(current) => {
                let mut wanted = user_content(value);
                wanted["apiVersion"] = current.value["apiVersion"].clone();
                wanted["kind"] = current.value["kind"].clone();
                if user_content(&current.value) == wanted {
                    return Ok("unchanged");
                }
                if let Some(status) = current.value.get("status") {
                    wanted["status"] = status.clone();
                }
                store.update(kind, wanted, current.revision).await.map(|_| "configured")
            }
        };
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(error) if error.is_conflict() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    bail!("{key} kept changing under us; gave up after {ATTEMPTS} attempts")
}

pub async fn apply(setting: &str, args: FileArgs) -> anyhow::Result<()> {
    let documents = read_documents(&args)?;
    let store = weft_api::store::open(setting).await?;
    for (kind, key, value) in &documents {
        let outcome = apply_one(store.as_ref(), kind, key, value)
            .await
            .with_context(|| format!("applying {key}"))?;
        println!("{}/{} {outcome}", kind.plural, key.name);
    }
    Ok(())
}

pub async fn delete(setting: &str, args: DeleteArgs) -> anyhow::Result<()> {
    let documents = read_documents(&args.file)?;
    let store = weft_api::store::open(setting).await?;
    let mut missing = Vec::new();
    for (kind, key, _) in &documents {
        match store.delete(key, None).await {
            Ok(_) => println!("{}/{} deleted", kind.plural, key.name),
            Err(StoreError::NotFound { .. }) => {
                println!("{}/{} not found", kind.plural, key.name);
                missing.push(key.to_string());
            }
            Err(error) => return Err(error).with_context(|| format!("deleting {key}")),
        }
    }
    if !missing.is_empty() && !args.ignore_not_found {
        bail!("not found: {}", missing.join(", "));
    }
    Ok(())
}
