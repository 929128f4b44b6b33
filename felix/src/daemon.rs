//! The agent: list and watch the store, recompute on every change (debounced), program the
//! difference into nftables, resync from the kernel at start and periodically (restoring what
//! another process changed in `inet weft`), and keep endpoint routes. On shutdown the table
//! stays: pods stay protected while felix is away.
//!
//! One task owns all state; a watcher task per kind forwards store events over a bounded
//! channel. The daemon makes no policy decision: [`crate::calc`] does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use weft_api::store::{Kind, Revision, Store, WatchEvent};

use crate::calc::{self, Calculation};
use crate::inputs::{self, Cache};
use crate::metrics::{Metrics, ModeLabel};
use crate::nft::{Nft, NftError};
use crate::render;
use crate::routes::{self, EndpointRoutes};
use crate::ruleset::Ruleset;

#[derive(Clone, Debug)]
pub struct Config {
    pub node: String,
    /// How often the kernel is compared with what felix wants.
    pub resync: Duration,
    /// How long to gather store events before recomputing.
    pub debounce: Duration,
    pub metrics: Metrics,
}

enum Message {
    Event(Kind, WatchEvent),
    /// The watch of a kind ended or failed: list it again.
    Relist(Kind),
}

/// Runs until `shutdown` resolves.
pub async fn run(
    store: Arc<dyn Store>,
    nft: Arc<dyn Nft>,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (sender, mut receiver) = mpsc::channel::<Message>(1024);
    let mut cache = Cache::default();
    for kind in inputs::kinds() {
        list_and_watch(&store, &kind, &mut cache, &sender).await?;
    }
    let mut agent = Agent {
        nft,
        node: config.node.clone(),
        applied: None,
        problems: Vec::new(),
        metrics: config.metrics.clone(),
    };
    agent.program(&cache, true).await;
    let mut resync = tokio::time::interval(config.resync);
    resync.tick().await;
    tokio::pin!(shutdown);
    loop {
        let full = tokio::select! {
            _ = &mut shutdown => break,
            _ = resync.tick() => true,
            message = receiver.recv() => {
                let Some(message) = message else { break };
                let deadline = tokio::time::Instant::now() + config.debounce;
                let mut next = Some(message);
                // Gather what arrives within the debounce window, bounded in count.
                for _ in 0..10_000 {
                    let Some(message) = next.take() else { break };
                    match message {
                        Message::Event(kind, event) => match event {
                            WatchEvent::Added(o) | WatchEvent::Modified(o) => cache.upsert(&kind, o.value),
                            WatchEvent::Deleted(o) => cache.remove(&kind, &o.value),
                        },
                        Message::Relist(kind) => {
                            if let Err(error) = list_and_watch(&store, &kind, &mut cache, &sender).await {
                                tracing::warn!(kind = %kind, %error, "relist failed; retrying at the next resync");
                                let sender = sender.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                    let _ = sender.send(Message::Relist(kind)).await;
                                });
                            }
                        }
                    }
                    next = tokio::time::timeout_at(deadline, receiver.recv()).await.ok().flatten();
                }
                false
            }
        };
        agent.program(&cache, full).await;
    }
    tracing::info!("shutting down; the nftables table stays in place");
    Ok(())
}

async fn list_and_watch(
    store: &Arc<dyn Store>,
    kind: &Kind,
    cache: &mut Cache,
    sender: &mpsc::Sender<Message>,
) -> anyhow::Result<()> {
    let list = store.list(kind, None).await?;
    cache.replace_kind(kind, list.items.into_iter().map(|o| o.value));
    let from: Revision = list.revision;
    let mut stream = store.watch(kind, from).await?;
    let sender = sender.clone();
    let kind = kind.clone();
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if sender.send(Message::Event(kind.clone(), event)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(kind = %kind, %error, "watch failed; listing again");
                    break;
                }
            }
        }
        let _ = sender.send(Message::Relist(kind)).await;
    });
    Ok(())
}

struct Agent {
    nft: Arc<dyn Nft>,
    node: String,
    /// What the kernel holds as far as felix knows (None: unknown, resync).
    applied: Option<Ruleset>,
    problems: Vec<String>,
    metrics: Metrics,
}

impl Agent {
    async fn program(&mut self, cache: &Cache, resync: bool) {
        let (inputs, decode_errors) = cache.inputs(&self.node);
        let calculation: Calculation = calc::calculate(&inputs);
        let mut problems: Vec<String> = decode_errors.iter().map(ToString::to_string).collect();
        problems.extend(calculation.problems.iter().map(ToString::to_string));
        if problems != self.problems {
            for problem in &problems {
                tracing::warn!(%problem, "policy left out");
            }
            self.problems = problems;
        }
        let desired = calculation.ruleset;
        self.metrics.invalid_policies.set(calculation.problems.len() as i64);
        self.metrics.endpoints.set(calculation.endpoints.len() as i64);
        self.metrics
            .rules
            .set(desired.chains.values().map(|c| c.rules.len()).sum::<usize>() as i64);
        self.metrics.set_elements.set(
            (desired.sets.values().map(|s| s.elements.len()).sum::<usize>()
                + desired.maps.values().map(|m| m.len()).sum::<usize>()) as i64,
        );
        let started = Instant::now();
        let nft = self.nft.clone();
        let previous = if resync { None } else { self.applied.clone() };
        let wanted = desired.clone();
        let result = tokio::task::spawn_blocking(move || apply(nft.as_ref(), previous.as_ref(), &wanted)).await;
        match result {
            Ok(Ok(outcome)) => {
                let mode = match outcome {
                    Outcome::Unchanged if resync => "check",
                    Outcome::Unchanged => "unchanged",
                    Outcome::Incremental(_) => "incremental",
                    Outcome::Full => "full",
                };
                self.metrics
                    .apply_seconds
                    .get_or_create(&ModeLabel { mode: mode.into() })
                    .observe(started.elapsed().as_secs_f64());
                if outcome != Outcome::Unchanged {
                    tracing::info!(
                        ?outcome,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "programmed inet weft"
                    );
                }
                self.applied = Some(desired);
            }
            Ok(Err(error)) => {
                self.metrics.apply_failures.inc();
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "programming nftables failed; retrying at the next resync");
                self.applied = None;
            }
            Err(error) => {
                tracing::error!(%error, "programming task failed");
                self.applied = None;
            }
        }
        let endpoints: Vec<EndpointRoutes> = inputs
            .endpoints
            .iter()
            .filter(|e| e.node == self.node)
            .map(|e| EndpointRoutes {
                interface: e.interface.clone(),
                addresses: e.addresses.clone(),
            })
            .collect();
        match tokio::task::spawn_blocking(move || routes::reconcile(&endpoints)).await {
            Ok(Ok(repairs)) if repairs != routes::Repairs::default() => {
                self.metrics
                    .route_repairs
                    .inc_by((repairs.routes + repairs.proxy_arp) as u64);
                tracing::info!(
                    routes = repairs.routes,
                    proxy_arp = repairs.proxy_arp,
                    "repaired endpoint routes"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "endpoint routes not reconciled"),
            Err(error) => tracing::warn!(%error, "route task failed"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Incremental(usize),
    Full,
}

/// Brings the kernel to `desired`: the difference from `previous` when known, else (resync)
/// compare with the kernel and replace the table when they differ.
fn apply(nft: &dyn Nft, previous: Option<&Ruleset>, desired: &Ruleset) -> Result<Outcome, NftError> {
    if let Some(previous) = previous
        && let Some(batch) = render::diff(previous, desired)
    {
        if batch.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        let operations = batch.len();
        match nft.apply(&render::Batch::of(batch)) {
            Ok(()) => return Ok(Outcome::Incremental(operations)),
            Err(error) => tracing::warn!(%error, "incremental update refused; replacing the table"),
        }
    }
    let kernel = nft.list()?;
    if let Some(kernel) = &kernel
        && render::matches_kernel(desired, kernel)
    {
        return Ok(Outcome::Unchanged);
    }
    if kernel.is_some() && previous.is_none() {
        tracing::info!("inet weft differs from what felix wants; restoring it");
    }
    nft.apply(&render::full(desired, kernel.as_ref()))?;
    Ok(Outcome::Full)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use crate::render::Batch;

    use super::*;
    use crate::calc::{Endpoint, Inputs, calculate};
    use crate::listing::Listing;

    /// A test double of nftables: records batches, refuses them on demand, and lists what it
    /// was given as the kernel would (rule comments, set and map elements). The real `nft` is
    /// exercised by the namespace tests.
    #[derive(Debug, Default)]
    struct RecordingNftDouble {
        batches: Mutex<Vec<Batch>>,
        refuse_next: Mutex<bool>,
        kernel: Mutex<Option<Listing>>,
    }

    impl Nft for RecordingNftDouble {
        fn apply(&self, batch: &Batch) -> Result<(), NftError> {
            let mut refuse = self.refuse_next.lock().unwrap();
            if *refuse {
                *refuse = false;
                return Err(NftError::Listing(crate::listing::ListingError {
                    reason: "refused by the test double".into(),
                }));
            }
            self.batches.lock().unwrap().push(batch.clone());
            Ok(())
        }

        fn list(&self) -> Result<Option<Listing>, NftError> {
            Ok(self.kernel.lock().unwrap().clone())
        }
    }

    fn listing_of(ruleset: &Ruleset) -> Listing {
        let mut listing = Listing::default();
        for (name, chain) in &ruleset.chains {
            listing.chains.insert(
                name.clone(),
                chain
                    .rules
                    .iter()
                    .map(|r| crate::listing::ListedRule {
                        comment: Some(render::comment(r)),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        for (name, set) in &ruleset.sets {
            listing
                .sets
                .insert(name.clone(), set.elements.iter().map(render::element).collect());
        }
        for (name, map) in &ruleset.maps {
            listing.maps.insert(
                name.clone(),
                map.iter()
                    .map(|(k, v)| serde_json::json!([k, render::verdict(v)]))
                    .collect(),
            );
        }
        listing
    }

    fn ruleset(pods: usize) -> Ruleset {
        let inputs = Inputs {
            node: "n1".into(),
            endpoints: (0..pods)
                .map(|i| Endpoint {
                    namespace: "x".into(),
                    pod: format!("p{i}"),
                    node: "n1".into(),
                    interface: format!("wft{i}"),
                    addresses: vec![format!("198.18.0.{}", i + 1).parse().unwrap()],
                    labels: Default::default(),
                    ports: vec![],
                })
                .collect(),
            ..Inputs::default()
        };
        calculate(&inputs).ruleset
    }

    #[test]
    fn a_kernel_without_the_table_gets_a_full_replace() {
        let nft = RecordingNftDouble::default();
        assert_eq!(apply(&nft, None, &ruleset(2)).unwrap(), Outcome::Full);
        assert_eq!(nft.batches.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_kernel_that_matches_is_left_alone_at_resync() {
        let nft = RecordingNftDouble::default();
        let wanted = ruleset(2);
        *nft.kernel.lock().unwrap() = Some(listing_of(&wanted));
        assert_eq!(apply(&nft, None, &wanted).unwrap(), Outcome::Unchanged);
        assert!(nft.batches.lock().unwrap().is_empty());
    }

    #[test]
    fn a_kernel_changed_behind_felixs_back_is_replaced_at_resync() {
        let nft = RecordingNftDouble::default();
        let wanted = ruleset(2);
        let mut tampered = listing_of(&wanted);
        tampered.chains.get_mut("forward").unwrap().pop();
        *nft.kernel.lock().unwrap() = Some(tampered);
        assert_eq!(apply(&nft, None, &wanted).unwrap(), Outcome::Full);
    }

    #[test]
    fn a_change_is_applied_as_a_difference_and_a_refused_one_as_a_full_replace() {
        let nft = RecordingNftDouble::default();
        let (before, after) = (ruleset(2), ruleset(3));
        assert_eq!(apply(&nft, Some(&before), &after).unwrap(), Outcome::Incremental(1));
        assert!(
            matches!(nft.batches.lock().unwrap()[0], Batch::Elements(_)),
            "a pod added is an element batch (netlink), not nft text"
        );
        assert_eq!(apply(&nft, Some(&after), &after).unwrap(), Outcome::Unchanged);
        *nft.refuse_next.lock().unwrap() = true;
        assert_eq!(apply(&nft, Some(&before), &after).unwrap(), Outcome::Full);
    }
}
