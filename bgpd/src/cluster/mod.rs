//! Cluster mode (`weft-bgpd --store S --nodename N`): the node's configuration comes from the
//! datastore, and follows it.
//!
//! The loop ([`run`]) follows every kind the configuration depends on ([`watch`]):
//! `BGPConfiguration`, `BGPPeer`, `BGPFilter`, `WeftNode`, Kubernetes `Node` (labels),
//! `BlockAffinity`, `IPPool`, `WorkloadEndpoint`, `Service`, `EndpointSlice` and the `Secret`s of
//! weft's namespace ([`SECRET_NAMESPACE`], for `BGPPeer` passwords). After a change
//! it waits until the store has been quiet for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]), decodes
//! the objects (one that does not decode is reported by its key and left out), derives the
//! node's [`Config`] ([`derive`], pure) and, when it differs from the last one, hands it to the
//! daemon, which applies it as a reload does ([`crate::reload::plan_live`]): sessions whose
//! settings did not change stay up. Each object left out of the configuration is logged once,
//! naming it and its key; an error of the whole derivation (the node's own `WeftNode` missing
//! or without an IPv4 address) keeps the configuration in force as it was.
//!
//! When Services or IPPools change, the loop also runs LoadBalancer address assignment
//! ([`weft_ipam::loadbalancer::reconcile`]: idempotent and safe on every node at once).
//!
//! Must never: apply a configuration derived from a partial view (before every kind has been
//! listed once), or stop following the store while the daemon runs.

mod derive;
mod filters;
#[cfg(test)]
mod kube_tests;
mod originate;
mod services;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_api::resources::{BGPConfiguration, BGPFilter, BGPPeer, BlockAffinity, IPPool, WeftNode, WorkloadEndpoint};
use weft_api::{Kind, Store};

use crate::config::Config;
pub use derive::{Local, Problem, Snapshot};
use watch::{Objects, Report};

/// How long the store must be quiet before the configuration is derived again.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest wait for quiet: under constant churn the configuration still follows.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);
/// Reports queued from the watch tasks.
const REPORT_QUEUE: usize = 1024;
/// Longest a LoadBalancer assignment pass may take before the loop goes on without it.
const LOAD_BALANCER_DEADLINE: Duration = Duration::from_secs(30);

// The kinds followed, by index.
const CONFIGURATIONS: usize = 0;
const PEERS: usize = 1;
const FILTERS: usize = 2;
const NODES: usize = 3;
const KUBE_NODES: usize = 4;
const AFFINITIES: usize = 5;
const POOLS: usize = 6;
const ENDPOINTS: usize = 7;
const SERVICES: usize = 8;
const SLICES: usize = 9;
const SECRETS: usize = 10;

/// The namespace whose `Secret`s hold `BGPPeer` passwords (`password.secretKeyRef`): weft's own,
/// where `deploy/weft.yaml` runs it (Calico reads them from `calico-system`). Secrets elsewhere
/// are neither kept nor read.
pub const SECRET_NAMESPACE: &str = "weft-system";

fn kinds() -> Vec<Kind> {
    vec![
        Kind::of::<BGPConfiguration>(),
        Kind::of::<BGPPeer>(),
        Kind::of::<BGPFilter>(),
        Kind::of::<WeftNode>(),
        Kind::of::<k8s_openapi::api::core::v1::Node>(),
        Kind::of::<BlockAffinity>(),
        Kind::of::<IPPool>(),
        Kind::of::<WorkloadEndpoint>(),
        Kind::of::<k8s_openapi::api::core::v1::Service>(),
        Kind::of::<k8s_openapi::api::discovery::v1::EndpointSlice>(),
        Kind::of::<Secret>(),
    ]
}

/// The namespace kind `index` is followed in; `None`: every namespace.
fn namespace_of(index: usize) -> Option<&'static str> {
    (index == SECRETS).then_some(SECRET_NAMESPACE)
}

/// Follows the store and publishes `node`'s configuration on `configs` each time it changes,
/// until cancelled.
pub async fn run(
    store: Arc<dyn Store>,
    node: String,
    local: Local,
    configs: tokio::sync::watch::Sender<Option<Config>>,
    cancel: CancellationToken,
) {
    let kinds = kinds();
    let (reports_tx, mut reports) = mpsc::channel(REPORT_QUEUE);
    for (index, kind) in kinds.iter().enumerate() {
        tokio::spawn(watch::follow(
            store.clone(),
            index,
            kind.clone(),
            namespace_of(index),
            reports_tx.clone(),
            cancel.clone(),
        ));
    }
    drop(reports_tx);
    let mut objects = Objects::default();
    let mut reported: BTreeSet<Problem> = BTreeSet::new();
    let mut last_error: Option<Problem> = None;
    loop {
        let report = tokio::select! {
            () = cancel.cancelled() => return,
            report = reports.recv() => report,
        };
        let Some(report) = report else { return };
        let mut changed = BTreeSet::new();
        take(&mut objects, report, &mut changed);
        // Debounce: wait for quiet, bounded.
        let until = Instant::now() + MAX_DEBOUNCE;
        while Instant::now() < until {
            match tokio::time::timeout(DEBOUNCE, reports.recv()).await {
                Ok(Some(report)) => take(&mut objects, report, &mut changed),
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if changed.is_empty() || !(0..kinds.len()).all(|index| objects.listed(index)) {
            continue;
        }
        if changed.contains(&SERVICES) || changed.contains(&POOLS) {
            assign_load_balancer_addresses(&store).await;
        }
        let mut problems = Vec::new();
        let snapshot = snapshot(&objects, &mut problems);
        let configuration = derive::configuration(&snapshot, &node);
        let services = services::advertised(Some(&configuration), &snapshot.services, &snapshot.slices, &node);
        match derive::derive(&snapshot, &node, &local, &services) {
            Ok(derived) => {
                if let Some(error) = last_error.take() {
                    tracing::info!(was = %error, "the node's configuration is valid again");
                }
                problems.extend(derived.problems);
                let now: BTreeSet<Problem> = problems.into_iter().collect();
                for problem in now.difference(&reported) {
                    tracing::error!(object = %problem.object, key = %problem.key, message = %problem.message, "object left out of the configuration");
                }
                for problem in reported.difference(&now) {
                    tracing::info!(object = %problem.object, key = %problem.key, "object no longer left out");
                }
                reported = now;
                let config = derived.config;
                configs.send_if_modified(|current| {
                    if current.as_ref() == Some(&config) {
                        false
                    } else {
                        tracing::info!(
                            peers = config.peers.len(),
                            originate = config.originate.len(),
                            asn = config.asn,
                            "configuration derived from the datastore"
                        );
                        *current = Some(config);
                        true
                    }
                });
            }
            Err(error) => {
                if last_error.as_ref() != Some(&error) {
                    tracing::error!(object = %error.object, key = %error.key, message = %error.message, "cannot derive the node's configuration; the one in force stays");
                    last_error = Some(error);
                }
            }
        }
    }
}

fn take(objects: &mut Objects, report: Report, changed: &mut BTreeSet<usize>) {
    let index = match &report {
        Report::Listed { index, .. } | Report::Changed { index, .. } => *index,
    };
    if objects.apply(report) {
        changed.insert(index);
    }
}

/// Decodes every object; one that does not decode is a problem and left out.
fn snapshot(objects: &Objects, problems: &mut Vec<Problem>) -> Snapshot {
    fn decode<K: DeserializeOwned>(objects: &Objects, index: usize, problems: &mut Vec<Problem>) -> Vec<K> {
        objects
            .of(index)
            .filter_map(|object| match serde_json::from_value(object.value.clone()) {
                Ok(decoded) => Some(decoded),
                Err(error) => {
                    problems.push(Problem::new(
                        object.key.to_string(),
                        "object",
                        format!("does not decode: {error}"),
                    ));
                    None
                }
            })
            .collect()
    }
    let peers: Vec<BGPPeer> = decode(objects, PEERS, problems);
    let kube_nodes: Vec<k8s_openapi::api::core::v1::Node> = decode(objects, KUBE_NODES, problems);
    let password_files = peers
        .iter()
        .filter_map(|peer| peer.spec.password.as_ref()?.file.clone())
        .map(|path| {
            let contents = std::fs::read(&path).map_err(|error| error.to_string());
            (path, contents)
        })
        .collect();
    Snapshot {
        configurations: decode(objects, CONFIGURATIONS, problems),
        peers,
        filters: decode(objects, FILTERS, problems),
        nodes: decode(objects, NODES, problems),
        node_labels: kube_nodes
            .into_iter()
            .filter_map(|node| Some((node.metadata.name?, node.metadata.labels.unwrap_or_default())))
            .collect(),
        affinities: decode(objects, AFFINITIES, problems),
        pools: decode(objects, POOLS, problems),
        endpoints: decode(objects, ENDPOINTS, problems),
        services: decode(objects, SERVICES, problems),
        slices: decode(objects, SLICES, problems),
        password_files,
        secrets: secrets(objects, problems),
    }
}

/// The Secrets' values by name and key: `data` (base64 in the object, decoded), with
/// `stringData` over it as the API server would merge it (a file or etcd store keeps what
/// `weftctl apply` wrote). A Secret that does not decode is a problem whose message does not
/// quote the decoder (a base64 error shows the offending octet of the value).
fn secrets(objects: &Objects, problems: &mut Vec<Problem>) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    objects
        .of(SECRETS)
        .filter(|object| object.key.namespace.as_deref() == Some(SECRET_NAMESPACE))
        .filter_map(|object| match serde_json::from_value::<Secret>(object.value.clone()) {
            Ok(secret) => Some(secret),
            Err(_) => {
                problems.push(Problem::new(
                    object.key.to_string(),
                    "data",
                    "does not decode as a Secret (each value of data is base64)",
                ));
                None
            }
        })
        .filter_map(|secret| {
            let mut values: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0))
                .collect();
            for (key, value) in secret.string_data.unwrap_or_default() {
                values.insert(key, value.into_bytes());
            }
            Some((secret.metadata.name?, values))
        })
        .collect()
}

/// Gives `type: LoadBalancer` Services their addresses; a failure is logged (the next change
/// of a Service or pool tries again).
async fn assign_load_balancer_addresses(store: &Arc<dyn Store>) {
    match tokio::time::timeout(LOAD_BALANCER_DEADLINE, weft_ipam::loadbalancer::reconcile(store)).await {
        Ok(Ok(report)) => tracing::debug!(?report, "LoadBalancer addresses reconciled"),
        Ok(Err(error)) => tracing::warn!(%error, "LoadBalancer address assignment failed"),
        Err(_) => tracing::warn!("LoadBalancer address assignment did not finish in time"),
    }
}
