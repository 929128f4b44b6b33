//! `weftctl get KIND [NAME]`: stored objects as YAML or JSON.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use weft_api::{Key, kinds};

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind: `IPPool`, `ippools`, `WorkloadEndpoint`, `pods`, …
    kind: String,
    /// One object's name (default: every object of the kind).
    name: Option<String>,
    /// The namespace, for namespaced kinds (default: every namespace when listing).
    #[arg(short, long)]
    namespace: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Output::Yaml)]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Yaml,
    Json,
}

pub async fn run(setting: &str, args: GetArgs) -> anyhow::Result<()> {
    let Some(kind) = kinds::by_name(&args.kind) else {
        let known: Vec<String> = kinds::all().into_iter().map(|k| k.plural).collect();
        bail!("unknown kind {:?}; weft knows {}", args.kind, known.join(", "));
    };
    let store = weft_api::store::open(setting).await?;
    let values: Vec<serde_json::Value> = match &args.name {
        Some(name) => {
            let namespace = match (kind.namespaced, &args.namespace) {
                (true, None) => Some("default"),
                (true, Some(namespace)) => Some(namespace.as_str()),
                (false, _) => None,
            };
            let key = Key::new(&kind, namespace, name);
            let object = store.get(&key).await?.with_context(|| format!("{key} not found"))?;
            vec![object.value]
        }
        None => store
            .list(&kind, args.namespace.as_deref())
            .await?
            .items
            .into_iter()
            .map(|o| o.value)
            .collect(),
    };
    match args.output {
        Output::Json if args.name.is_some() => println!("{}", serde_json::to_string_pretty(&values[0])?),
        Output::Json => println!("{}", serde_json::to_string_pretty(&values)?),
        Output::Yaml => {
            for value in &values {
                print!("---\n{}", serde_saphyr::to_string(value)?);
            }
        }
    }
    Ok(())
}
