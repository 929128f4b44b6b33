//! The objects felix reads from the datastore, kept by key, and their translation into the
//! calculation's [`Inputs`]: a WorkloadEndpoint joined with its Pod (labels, named container
//! ports), Namespace labels (with the `kubernetes.io/metadata.name` label the API server adds),
//! NetworkPolicies and pools.
//!
//! Pure: the daemon fills the cache from list and watch.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;
use weft_api::resources::{IPPool, WorkloadEndpoint};
use weft_api::store::Kind;

use crate::calc::{Endpoint, Inputs, NamedPort, Pool};
use crate::policy::Protocol;

/// The kinds felix watches.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind::of::<WorkloadEndpoint>(),
        Kind::of::<Pod>(),
        Kind::of::<Namespace>(),
        Kind::of::<NetworkPolicy>(),
        Kind::of::<IPPool>(),
    ]
}

/// Objects by kind name and `namespace/name`, decoded once when they arrive (recomputing after
/// a change must not decode thousands of unchanged pods again).
#[derive(Clone, Debug, Default)]
pub struct Cache {
    objects: BTreeMap<String, BTreeMap<String, Object>>,
    /// How many objects do not decode (none: [`Cache::decode_errors`] has nothing to look for).
    unreadable: usize,
}

/// One stored object, decoded.
#[derive(Clone, Debug)]
enum Object {
    Endpoint(Box<WorkloadEndpoint>),
    Pod(Box<Pod>),
    Namespace(Box<Namespace>),
    Policy(Box<NetworkPolicy>),
    Pool(Box<IPPool>),
    /// It does not decode (the reason), or is of a kind felix does not read.
    Unreadable(String),
}

impl Object {
    fn decode(kind: &str, value: Value) -> Object {
        fn with<T: serde::de::DeserializeOwned>(value: Value, wrap: fn(Box<T>) -> Object) -> Object {
            match serde_json::from_value::<T>(value) {
                Ok(object) => wrap(Box::new(object)),
                Err(error) => Object::Unreadable(error.to_string()),
            }
        }
        match kind {
            "WorkloadEndpoint" => with(value, Object::Endpoint),
            "Pod" => with(value, Object::Pod),
            "Namespace" => with(value, Object::Namespace),
            "NetworkPolicy" => with(value, Object::Policy),
            "IPPool" => with(value, Object::Pool),
            other => Object::Unreadable(format!("felix does not read kind {other}")),
        }
    }
}

/// What the calculation reads, endpoints by WorkloadEndpoint key.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    pub endpoints: BTreeMap<String, Endpoint>,
    pub namespaces: BTreeMap<String, crate::labels::Labels>,
    pub policies: Vec<NetworkPolicy>,
    pub pools: Vec<Pool>,
}

fn count_unreadable<'a>(objects: impl IntoIterator<Item = &'a Object>) -> usize {
    objects
        .into_iter()
        .filter(|o| matches!(o, Object::Unreadable(_)))
        .count()
}

/// An object that did not decode: reported, left out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name} does not decode: {reason}")]
pub struct DecodeError {
    pub kind: String,
    pub name: String,
    pub reason: String,
}

/// The cache key of an object: `namespace/name`.
pub fn key_of(value: &Value) -> String {
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    format!("{namespace}/{name}")
}

impl Cache {
    pub fn replace_kind(&mut self, kind: &Kind, values: impl IntoIterator<Item = Value>) {
        let objects: BTreeMap<String, Object> = values
            .into_iter()
            .map(|v| (key_of(&v), Object::decode(&kind.kind, v)))
            .collect();
        self.unreadable += count_unreadable(objects.values());
        if let Some(old) = self.objects.insert(kind.kind.clone(), objects) {
            self.unreadable = self.unreadable.saturating_sub(count_unreadable(old.values()));
        }
    }

    pub fn upsert(&mut self, kind: &Kind, value: Value) {
        let key = key_of(&value);
        let object = Object::decode(&kind.kind, value);
        self.unreadable += count_unreadable([&object]);
        let old = self.objects.entry(kind.kind.clone()).or_default().insert(key, object);
        self.unreadable = self.unreadable.saturating_sub(count_unreadable(old.iter()));
    }

    pub fn remove(&mut self, kind: &Kind, value: &Value) {
        if let Some(objects) = self.objects.get_mut(&kind.kind) {
            let old = objects.remove(&key_of(value));
            self.unreadable = self.unreadable.saturating_sub(count_unreadable(old.iter()));
        }
    }

    /// Every object felix reads, listed from `store` now.
    pub async fn load(store: &dyn weft_api::store::Store) -> Result<Cache, weft_api::store::StoreError> {
        let mut cache = Cache::default();
        for kind in kinds() {
            let list = store.list(&kind, None).await?;
            cache.replace_kind(&kind, list.items.into_iter().map(|o| o.value));
        }
        Ok(cache)
    }

    /// The objects of one kind that decoded (`pick` says which variant); the others as errors.
    fn decoded<'a, T>(
        &'a self,
        kind: &str,
        pick: fn(&'a Object) -> Option<&'a T>,
        errors: &mut Vec<DecodeError>,
    ) -> Vec<&'a T> {
        let mut out = Vec::new();
        for (name, object) in self.objects.get(kind).into_iter().flatten() {
            if let Object::Unreadable(reason) = object {
                errors.push(DecodeError {
                    kind: kind.to_owned(),
                    name: name.clone(),
                    reason: reason.clone(),
                });
            } else if let Some(object) = pick(object) {
                out.push(object);
            }
        }
        out
    }

    /// The Pod endpoint `namespace`/`pod` belongs to.
    fn pod(&self, namespace: &str, pod: &str) -> Option<&Pod> {
        let pods = self.objects.get("Pod")?;
        let found = |key: &str| match pods.get(key) {
            Some(Object::Pod(p)) => Some(p.as_ref()),
            _ => None,
        };
        // A Pod stored without a namespace is in `default`.
        found(&format!("{namespace}/{pod}")).or_else(|| {
            if namespace == "default" {
                found(&format!("/{pod}"))
            } else {
                None
            }
        })
    }

    /// Namespace and pod name of a WorkloadEndpoint.
    fn pod_of(endpoint: &WorkloadEndpoint) -> (String, String) {
        let namespace = endpoint.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let pod = if endpoint.spec.pod.is_empty() {
            endpoint.metadata.name.clone().unwrap_or_default()
        } else {
            endpoint.spec.pod.clone()
        };
        (namespace, pod)
    }

    /// A WorkloadEndpoint joined with its Pod.
    fn join(&self, endpoint: &WorkloadEndpoint) -> Endpoint {
        let (namespace, pod) = Self::pod_of(endpoint);
        let spec = &endpoint.spec;
        let pod_object = self.pod(&namespace, &pod);
        let labels = pod_object.and_then(|p| p.metadata.labels.clone()).unwrap_or_default();
        let mut ports: Vec<NamedPort> = spec
            .ports
            .iter()
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone(),
                    protocol: Protocol::parse(&p.protocol)?,
                    port: p.port,
                })
            })
            .collect();
        if let Some(pod_spec) = pod_object.and_then(|p| p.spec.as_ref()) {
            for container in &pod_spec.containers {
                for port in container.ports.iter().flatten() {
                    let (Some(name), Ok(number)) = (&port.name, u16::try_from(port.container_port)) else {
                        continue;
                    };
                    let Some(protocol) = Protocol::parse(port.protocol.as_deref().unwrap_or("TCP")) else {
                        continue;
                    };
                    ports.push(NamedPort {
                        name: name.clone(),
                        protocol,
                        port: number,
                    });
                }
            }
        }
        ports.sort();
        ports.dedup();
        let addresses: Vec<IpAddr> = spec
            .ip_networks
            .iter()
            .filter_map(|n| {
                n.parse::<IpNet>()
                    .map(|n| n.addr())
                    .or_else(|_| n.parse::<IpAddr>())
                    .ok()
            })
            .collect();
        Endpoint {
            namespace,
            pod,
            node: spec.node.clone(),
            interface: spec.interface_name.clone(),
            addresses,
            labels,
            ports,
        }
    }

    /// The endpoint of the WorkloadEndpoint stored at `key` (`namespace/name`), joined with
    /// its Pod; `None` when there is none or it does not decode.
    pub fn endpoint(&self, key: &str) -> Option<Endpoint> {
        match self.objects.get("WorkloadEndpoint")?.get(key)? {
            Object::Endpoint(endpoint) => Some(self.join(endpoint)),
            _ => None,
        }
    }

    /// The keys of the WorkloadEndpoints joined with the Pod stored at `pod_key`.
    pub fn endpoints_of_pod(&self, pod_key: &str) -> Vec<String> {
        let Some((pod_namespace, pod_name)) = pod_key.split_once('/') else {
            return Vec::new();
        };
        let namespace_matches =
            |namespace: &str| namespace == pod_namespace || (pod_namespace.is_empty() && namespace == "default");
        self.objects
            .get("WorkloadEndpoint")
            .into_iter()
            .flatten()
            .filter(|(_, object)| match object {
                Object::Endpoint(endpoint) => {
                    let namespace = endpoint.metadata.namespace.as_deref().unwrap_or("default");
                    let pod = if endpoint.spec.pod.is_empty() {
                        endpoint.metadata.name.as_deref().unwrap_or("")
                    } else {
                        endpoint.spec.pod.as_str()
                    };
                    pod == pod_name && namespace_matches(namespace)
                }
                _ => false,
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Every endpoint of the cluster by WorkloadEndpoint key, joined with its Pod.
    pub fn endpoints(&self, errors: &mut Vec<DecodeError>) -> BTreeMap<String, Endpoint> {
        let mut endpoints = BTreeMap::new();
        for (key, object) in self.objects.get("WorkloadEndpoint").into_iter().flatten() {
            match object {
                Object::Endpoint(endpoint) => {
                    endpoints.insert(key.clone(), self.join(endpoint));
                }
                Object::Unreadable(reason) => errors.push(DecodeError {
                    kind: "WorkloadEndpoint".into(),
                    name: key.clone(),
                    reason: reason.clone(),
                }),
                _ => {}
            }
        }
        endpoints
    }

    /// Every object that does not decode.
    pub fn decode_errors(&self) -> Vec<DecodeError> {
        let mut errors = Vec::new();
        if self.unreadable == 0 {
            return errors;
        }
        for (kind, objects) in &self.objects {
            for (name, object) in objects {
                if let Object::Unreadable(reason) = object {
                    errors.push(DecodeError {
                        kind: kind.clone(),
                        name: name.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        errors
    }

    /// The calculation's inputs for `node`, and the objects left out.
    pub fn inputs(&self, node: &str) -> (Inputs, Vec<DecodeError>) {
        let (parts, errors) = self.parts();
        let inputs = Inputs {
            node: node.to_owned(),
            endpoints: parts.endpoints.into_values().collect(),
            namespaces: parts.namespaces,
            policies: parts.policies,
            pools: parts.pools,
        };
        (inputs, errors)
    }

    /// What the calculation reads, endpoints by key, and the objects left out (in kind order).
    pub fn parts(&self) -> (Parts, Vec<DecodeError>) {
        let mut errors = Vec::new();
        let endpoints = self.endpoints(&mut errors);
        let mut namespaces = BTreeMap::new();
        let namespace_objects = self.decoded(
            "Namespace",
            |o| {
                if let Object::Namespace(n) = o {
                    Some(n.as_ref())
                } else {
                    None
                }
            },
            &mut errors,
        );
        for namespace in namespace_objects {
            let name = namespace.metadata.name.clone().unwrap_or_default();
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels.insert("kubernetes.io/metadata.name".into(), name.clone());
            namespaces.insert(name, labels);
        }
        let pools = self
            .decoded(
                "IPPool",
                |o| {
                    if let Object::Pool(p) = o {
                        Some(p.as_ref())
                    } else {
                        None
                    }
                },
                &mut errors,
            )
            .into_iter()
            .filter_map(|pool| {
                Some(Pool {
                    cidr: pool.spec.cidr.parse::<IpNet>().ok()?.trunc(),
                    nat_outgoing: pool.spec.nat_outgoing,
                })
            })
            .collect();
        let policies = self
            .decoded(
                "NetworkPolicy",
                |o| {
                    if let Object::Policy(p) = o {
                        Some(p.as_ref())
                    } else {
                        None
                    }
                },
                &mut errors,
            )
            .into_iter()
            .cloned()
            .collect();
        let parts = Parts {
            endpoints,
            namespaces,
            policies,
            pools,
        };
        // Every kind's, the Pods' included (they reach the calculation through the join).
        (parts, self.decode_errors())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn an_endpoint_takes_labels_and_named_ports_from_its_pod() {
        let kinds = kinds();
        let mut cache = Cache::default();
        cache.upsert(
            &kinds[0],
            json!({"apiVersion": "weft.io/v1", "kind": "WorkloadEndpoint",
                   "metadata": {"namespace": "x", "name": "n1-a-eth0"},
                   "spec": {"node": "n1", "pod": "a", "interfaceName": "wft0", "ipNetworks": ["198.18.0.1/32", "2001:db8::1/128"]}}),
        );
        cache.upsert(
            &kinds[1],
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x", "name": "a", "labels": {"pod": "a"}},
                   "spec": {"containers": [{"name": "c", "ports": [{"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"}]}]}}),
        );
        cache.upsert(
            &kinds[2],
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        );
        let (inputs, errors) = cache.inputs("n1");
        assert!(errors.is_empty(), "{errors:?}");
        let endpoint = &inputs.endpoints[0];
        assert_eq!(endpoint.labels["pod"], "a");
        assert_eq!(endpoint.addresses.len(), 2);
        assert_eq!(
            endpoint.ports,
            vec![NamedPort {
                name: "serve-80-udp".into(),
                protocol: Protocol::Udp,
                port: 80
            }]
        );
        assert_eq!(inputs.namespaces["x"]["kubernetes.io/metadata.name"], "x");
    }

    #[test]
    fn an_object_that_does_not_decode_is_reported_at_every_calculation_and_left_out() {
        let kinds = kinds();
        let mut cache = Cache::default();
        let broken = json!({"metadata": {"namespace": "x", "name": "bad"}, "spec": {"podSelector": 7}});
        cache.upsert(&kinds[3], broken.clone());
        for _ in 0..2 {
            let (inputs, errors) = cache.inputs("n1");
            assert!(inputs.policies.is_empty());
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].kind, "NetworkPolicy");
            assert_eq!(errors[0].name, "x/bad");
        }
        cache.remove(&kinds[3], &broken);
        assert!(cache.inputs("n1").1.is_empty());
    }
}
