//! The agent: list and watch the store, recompute on every change (debounced; a pod's
//! WorkloadEndpoint and Pod events through the incremental calculation, anything else through
//! the whole one), program the difference into nftables, resync from the kernel at start and
//! periodically (restoring what another process changed in `inet weft`), and keep endpoint
//! routes (at every whole calculation). On shutdown the table stays: pods stay protected
//! while felix is away.
//!
//! One task owns all state; a watcher task per kind forwards store events over a bounded
//! channel. The daemon makes no policy decision: [`crate::calc`] and [`crate::incremental`]
//! do.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use weft_api::store::{Kind, Revision, Store, WatchEvent};

use crate::incremental::State;
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
    let mut agent = Agent::new(nft, &config.node, config.metrics.clone());
    for kind in inputs::kinds() {
        list_and_watch(&store, &kind, &mut agent, &sender).await?;
    }
    agent.program(true).await;
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
                            WatchEvent::Added(o) | WatchEvent::Modified(o) => agent.upsert(&kind, o.value),
                            WatchEvent::Deleted(o) => agent.remove(&kind, &o.value),
                        },
                        Message::Relist(kind) => {
                            if let Err(error) = list_and_watch(&store, &kind, &mut agent, &sender).await {
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
        agent.program(full).await;
    }
    tracing::info!("shutting down; the nftables table stays in place");
    Ok(())
}

async fn list_and_watch(
    store: &Arc<dyn Store>,
    kind: &Kind,
    agent: &mut Agent,
    sender: &mpsc::Sender<Message>,
) -> anyhow::Result<()> {
    let list = store.list(kind, None).await?;
    agent.replace_kind(kind, list.items.into_iter().map(|o| o.value));
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

/// What the store changed since the last programming.
#[derive(Debug, Default)]
struct Dirty {
    /// A policy, namespace or pool changed, or a kind was listed again: the whole calculation.
    full: bool,
    /// WorkloadEndpoints changed (keys).
    endpoints: BTreeSet<String>,
    /// Pods changed (keys): their endpoints are recomputed.
    pods: BTreeSet<String>,
}

/// The agent's state: the objects read from the store, the desired table computed from them
/// (kept between events, so a pod's event recomputes that pod only), and whether the kernel
/// holds it. Public for the benchmark, which drives it the way [`run`] does.
#[derive(Debug)]
pub struct Agent {
    nft: Arc<dyn Nft>,
    node: String,
    cache: Cache,
    dirty: Dirty,
    /// What felix wants; `None` before the first calculation.
    state: Option<State>,
    /// Whether the kernel holds `state`'s ruleset as far as felix knows (false: resync).
    in_sync: bool,
    problems: Vec<String>,
    metrics: Metrics,
}

impl Agent {
    pub fn new(nft: Arc<dyn Nft>, node: &str, metrics: Metrics) -> Agent {
        Agent {
            nft,
            node: node.to_owned(),
            cache: Cache::default(),
            dirty: Dirty {
                full: true,
                ..Dirty::default()
            },
            state: None,
            in_sync: false,
            problems: Vec::new(),
            metrics,
        }
    }

    /// Every object of `kind` as listed now.
    pub fn replace_kind(&mut self, kind: &Kind, values: impl IntoIterator<Item = Value>) {
        self.cache.replace_kind(kind, values);
        self.dirty.full = true;
    }

    /// An object added or modified.
    pub fn upsert(&mut self, kind: &Kind, value: Value) {
        self.touch(kind, &value);
        self.cache.upsert(kind, value);
    }

    /// An object deleted.
    pub fn remove(&mut self, kind: &Kind, value: &Value) {
        self.touch(kind, value);
        self.cache.remove(kind, value);
    }

    fn touch(&mut self, kind: &Kind, value: &Value) {
        match kind.kind.as_str() {
            "WorkloadEndpoint" => {
                self.dirty.endpoints.insert(inputs::key_of(value));
            }
            "Pod" => {
                self.dirty.pods.insert(inputs::key_of(value));
            }
            _ => self.dirty.full = true,
        }
    }

    /// Brings the kernel to what the store asks for: a pod's events through the incremental
    /// calculation and an element batch, anything else (and `resync`) through the whole
    /// calculation, compared with the kernel when `resync`.
    pub async fn program(&mut self, resync: bool) {
        let dirty = std::mem::take(&mut self.dirty);
        let incremental = !resync && !dirty.full && self.in_sync && self.state.is_some();
        if !incremental {
            self.program_whole(resync).await;
            return;
        }
        let Some(state) = self.state.as_mut() else { return };
        let mut keys = dirty.endpoints;
        for pod in &dirty.pods {
            keys.extend(self.cache.endpoints_of_pod(pod));
        }
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            state.update_endpoint(key, self.cache.endpoint(key));
        }
        let steps = state.take_steps();
        self.report(self.cache.decode_errors());
        if steps.is_empty() {
            return;
        }
        let started = Instant::now();
        let nft = self.nft.clone();
        let operations = steps.len();
        let result = tokio::task::spawn_blocking(move || nft.apply(&render::Batch::of(steps))).await;
        match result {
            Ok(Ok(())) => self.observe(Outcome::Incremental(operations), false, started),
            Ok(Err(error)) => {
                tracing::warn!(%error, "incremental update refused; replacing the table");
                self.in_sync = false;
                self.program_whole(false).await;
            }
            Err(error) => {
                tracing::error!(%error, "programming task failed");
                self.in_sync = false;
            }
        }
    }

    /// The whole calculation, applied as a difference from the previous one (or, at resync or
    /// when the kernel's state is unknown, compared with the kernel); then endpoint routes.
    async fn program_whole(&mut self, resync: bool) {
        let (parts, decode_errors) = self.cache.parts();
        let state = State::new(
            &self.node,
            parts.endpoints,
            parts.namespaces,
            &parts.policies,
            &parts.pools,
        );
        let previous = self.state.replace(state).filter(|_| self.in_sync && !resync);
        self.report(decode_errors);
        let Some(state) = self.state.as_ref() else { return };
        let started = Instant::now();
        let nft = self.nft.clone();
        let previous = previous.map(State::into_ruleset);
        let wanted = state.ruleset().clone();
        let endpoints: Vec<EndpointRoutes> = state
            .endpoints()
            .values()
            .filter(|e| e.node == self.node)
            .map(|e| EndpointRoutes {
                interface: e.interface.clone(),
                addresses: e.addresses.clone(),
            })
            .collect();
        let result = tokio::task::spawn_blocking(move || apply(nft.as_ref(), previous.as_ref(), &wanted)).await;
        match result {
            Ok(Ok(outcome)) => self.observe(outcome, resync, started),
            Ok(Err(error)) => {
                self.metrics.apply_failures.inc();
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "programming nftables failed; retrying at the next resync");
                self.in_sync = false;
            }
            Err(error) => {
                tracing::error!(%error, "programming task failed");
                self.in_sync = false;
            }
        }
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

    /// Logs the problems when they changed and sets the gauges of the desired table.
    fn report(&mut self, decode_errors: Vec<inputs::DecodeError>) {
        let Some(state) = self.state.as_ref() else { return };
        let mut problems: Vec<String> = decode_errors.iter().map(ToString::to_string).collect();
        problems.extend(state.problems().iter().map(ToString::to_string));
        if problems != self.problems {
            for problem in &problems {
                tracing::warn!(%problem, "policy left out");
            }
            self.problems = problems;
        }
        let desired = state.ruleset();
        self.metrics.invalid_policies.set(state.problems().len() as i64);
        self.metrics.endpoints.set(state.local_endpoints() as i64);
        self.metrics
            .rules
            .set(desired.chains.values().map(|c| c.rules.len()).sum::<usize>() as i64);
        self.metrics.set_elements.set(
            (desired.sets.values().map(|s| s.elements.len()).sum::<usize>()
                + desired.maps.values().map(|m| m.len()).sum::<usize>()) as i64,
        );
    }

    /// The kernel now holds the desired table.
    fn observe(&mut self, outcome: Outcome, resync: bool, started: Instant) {
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
        self.in_sync = true;
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

    fn stored_pod(i: usize, app: &str) -> (serde_json::Value, serde_json::Value) {
        (
            serde_json::json!({"metadata": {"namespace": "x", "name": format!("n1-p{i}-eth0")},
                   "spec": {"node": "n1", "pod": format!("p{i}"), "interfaceName": format!("wftunit{i}"),
                            "ipNetworks": [format!("198.18.0.{}/32", i + 1)]}}),
            serde_json::json!({"metadata": {"namespace": "x", "name": format!("p{i}"), "labels": {"app": app}},
                   "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}),
        )
    }

    #[tokio::test]
    async fn a_pods_events_are_programmed_as_the_difference_of_the_whole_calculations() {
        let nft = Arc::new(RecordingNftDouble::default());
        let mut agent = Agent::new(nft.clone(), "n1", Metrics::new());
        let kinds = inputs::kinds();
        agent.upsert(
            &kinds[3],
            serde_json::json!({"metadata": {"namespace": "x", "name": "web"},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                         "ports": [{"port": "http"}]}]}}),
        );
        for i in 0..3 {
            let (endpoint, pod) = stored_pod(i, ["web", "client", "other"][i]);
            agent.upsert(&kinds[0], endpoint);
            agent.upsert(&kinds[1], pod);
        }
        agent.program(true).await;
        assert!(matches!(nft.batches.lock().unwrap().last(), Some(Batch::Text(_))));
        let whole = |agent: &Agent| {
            let (inputs, _) = agent.cache.inputs("n1");
            calculate(&inputs).ruleset
        };
        let mut before = whole(&agent);
        // A pod added, relabelled, its Pod deleted, its endpoint deleted.
        let (endpoint, pod) = stored_pod(3, "client");
        let relabelled = stored_pod(3, "web").1;
        type Event<'a> = Box<dyn Fn(&mut Agent) + 'a>;
        let events: Vec<Event> = vec![
            Box::new(|agent| {
                agent.upsert(&kinds[0], endpoint.clone());
                agent.upsert(&kinds[1], pod.clone());
            }),
            Box::new(|agent| agent.upsert(&kinds[1], relabelled.clone())),
            Box::new(|agent| agent.remove(&kinds[1], &relabelled)),
            Box::new(|agent| agent.remove(&kinds[0], &endpoint)),
        ];
        for event in events {
            let batches = nft.batches.lock().unwrap().len();
            event(&mut agent);
            agent.program(false).await;
            let after = whole(&agent);
            let expected = render::diff(&before, &after).unwrap();
            let recorded = nft.batches.lock().unwrap();
            if expected.is_empty() {
                assert_eq!(recorded.len(), batches);
            } else {
                assert_eq!(recorded.len(), batches + 1);
                assert_eq!(recorded[batches], Batch::of(expected));
                assert!(
                    matches!(recorded[batches], Batch::Elements(_)),
                    "{:?}",
                    recorded[batches]
                );
            }
            drop(recorded);
            before = after;
        }
    }
}
