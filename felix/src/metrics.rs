//! Prometheus metrics of the agent, served as text on `GET /metrics`:
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `weft_felix_apply_seconds{mode}` | histogram | time to program nftables (`full`, `incremental`, `check`) |
//! | `weft_felix_apply_failures_total` | counter | batches nft refused |
//! | `weft_felix_rules` | gauge | rules in `inet weft` |
//! | `weft_felix_set_elements` | gauge | elements of its named sets |
//! | `weft_felix_endpoints` | gauge | local endpoints programmed |
//! | `weft_felix_invalid_policies` | gauge | NetworkPolicies left out as invalid |
//! | `weft_felix_route_repairs_total` | counter | host routes and proxy ARP settings put back |

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

fn apply_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub apply_seconds: Family<ModeLabel, Histogram, fn() -> Histogram>,
    pub apply_failures: Counter,
    pub rules: Gauge,
    pub set_elements: Gauge,
    pub endpoints: Gauge,
    pub invalid_policies: Gauge,
    pub route_repairs: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weft_felix");
        let apply_seconds = Family::<ModeLabel, Histogram, fn() -> Histogram>::new_with_constructor(apply_histogram);
        let apply_failures = Counter::default();
        let rules = Gauge::default();
        let set_elements = Gauge::default();
        let endpoints = Gauge::default();
        let invalid_policies = Gauge::default();
        let route_repairs = Counter::default();
        registry.register("apply_seconds", "Time to program nftables", apply_seconds.clone());
        registry.register("apply_failures", "Batches nft refused", apply_failures.clone());
        registry.register("rules", "Rules in inet weft", rules.clone());
        registry.register("set_elements", "Elements of weft's named sets", set_elements.clone());
        registry.register("endpoints", "Local endpoints programmed", endpoints.clone());
        registry.register(
            "invalid_policies",
            "NetworkPolicies left out as invalid",
            invalid_policies.clone(),
        );
        registry.register(
            "route_repairs",
            "Host routes and proxy ARP settings put back",
            route_repairs.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            apply_seconds,
            apply_failures,
            rules,
            set_elements,
            endpoints,
            invalid_policies,
            route_repairs,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Serves `GET /metrics` on `address` until the task is dropped.
    pub async fn serve(self, address: SocketAddr) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        tracing::info!(%address, "serving metrics");
        Ok(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let metrics = self.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            if request.uri().path() == "/metrics" {
                                Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                    .body(Full::new(Bytes::from(metrics.encode())))
                            } else {
                                Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::from("try /metrics\n")))
                            }
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }))
    }
}
