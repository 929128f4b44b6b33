//! `weftctl status`: does the store answer, and how many objects of each kind does it hold.

use anyhow::Context;
use serde::Serialize;
use weft_api::kinds;

#[derive(Serialize)]
struct Status {
    store: String,
    reachable: bool,
    revision: u64,
    objects: Vec<KindCount>,
}

#[derive(Serialize)]
struct KindCount {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    count: usize,
}

pub async fn run(setting: &str, json: bool) -> anyhow::Result<()> {
    let store = weft_api::store::open(setting)
        .await
        .with_context(|| format!("store {setting} does not answer"))?;
    let mut status = Status {
        store: store.describe(),
        reachable: true,
        revision: 0,
        objects: Vec::new(),
    };
    // Secrets are left out: reading them needs rights an operator may not have, and their
    // count tells nothing about weft.
    for kind in kinds::all().into_iter().filter(|kind| kind.kind != "Secret") {
        let list = store
            .list(&kind, None)
            .await
            .with_context(|| format!("listing {} in {setting}", kind.plural))?;
        status.revision = status.revision.max(list.revision.0);
        status.objects.push(KindCount {
            kind: kind.kind.clone(),
            api_version: kind.api_version(),
            count: list.items.len(),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!("store:     {}", status.store);
    println!("reachable: yes");
    println!("revision:  {}", status.revision);
    println!();
    println!("{:<20} {:<28} {:>7}", "KIND", "APIVERSION", "OBJECTS");
    for count in &status.objects {
        println!("{:<20} {:<28} {:>7}", count.kind, count.api_version, count.count);
    }
    Ok(())
}
