//! The Kubernetes manifests in `deploy/` are what a cluster would accept: every document
//! deserializes into its Kubernetes API type with no field dropped (a misspelt or misplaced
//! field fails, as `kubectl apply --validate=strict` would), the CRDs are exactly what
//! `weftctl crds` prints, the ClusterRole covers every weft resource, and the init container's
//! program installs the plugins and the conflist.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `value` as `T`, failing when the round trip drops anything (an unknown field).
fn strict<T: DeserializeOwned + Serialize>(what: &str, value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    let mut dropped = Vec::new();
    missing(value, &back, String::new(), &mut dropped);
    assert!(
        dropped.is_empty(),
        "{what}: fields the Kubernetes API does not know: {dropped:?}"
    );
    typed
}

fn missing(original: &Value, back: &Value, path: String, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => missing(value, other, format!("{path}.{key}"), out),
                    None if !value.is_null() => out.push(format!("{path}.{key}")),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                missing(x, y, format!("{path}[{index}]"), out);
            }
        }
        _ => {}
    }
}

fn name_of(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[test]
fn every_document_is_a_valid_kubernetes_object() {
    let docs = documents("weft.yaml");
    let mut daemonsets = Vec::new();
    let mut roles = Vec::new();
    let mut config_maps = Vec::new();
    for doc in &docs {
        let what = name_of(doc);
        match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
            (Some("v1"), Some("Namespace")) => drop(strict::<Namespace>(&what, doc)),
            (Some("v1"), Some("ServiceAccount")) => drop(strict::<ServiceAccount>(&what, doc)),
            (Some("v1"), Some("ConfigMap")) => config_maps.push(strict::<ConfigMap>(&what, doc)),
            (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
                roles.push(strict::<ClusterRole>(&what, doc))
            }
            (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
                drop(strict::<ClusterRoleBinding>(&what, doc))
            }
            (Some("apps/v1"), Some("DaemonSet")) => daemonsets.push(strict::<DaemonSet>(&what, doc)),
            other => panic!("{what}: unexpected apiVersion/kind {other:?}"),
        }
    }
    assert_eq!(daemonsets.len(), 1, "one node DaemonSet");
    let spec = daemonsets[0].spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(spec.host_network, Some(true), "the node agents run on the host network");
    assert_eq!(spec.service_account_name.as_deref(), Some("weft-node"));
    let programs: Vec<String> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.command.as_ref().unwrap()[0].clone())
        .collect();
    for program in [
        "/usr/local/bin/weft-bgpd",
        "/usr/local/bin/weft-felix",
        "/usr/local/bin/weft-install-cni",
    ] {
        assert!(
            programs.iter().any(|p| p == program),
            "the DaemonSet runs {program}: {programs:?}"
        );
    }
    for container in &spec.containers {
        let env = container.env.as_ref().unwrap();
        let node = env.iter().find(|e| e.name == "WEFT_NODENAME").expect("WEFT_NODENAME");
        let field = node.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(
            field.field_path, "spec.nodeName",
            "{}: the node name comes from the pod",
            container.name
        );
    }

    // The conflist is JSON naming weft's plugins.
    let conflist: Value =
        serde_json::from_str(&config_maps[0].data.as_ref().unwrap()["10-weft.conflist"]).expect("conflist is JSON");
    assert_eq!(conflist["plugins"][0]["type"], "weft-cni");
    assert_eq!(conflist["plugins"][0]["ipam"]["type"], "weft-ipam");

    // The ClusterRole lets the node write every weft resource.
    let rules = roles[0].rules.as_ref().unwrap();
    for crd in weft_api::crd::all() {
        let plural = &crd.spec.names.plural;
        assert!(
            rules.iter().any(|rule| {
                rule.api_groups
                    .as_ref()
                    .is_some_and(|g| g.iter().any(|g| g == "weft.io"))
                    && rule.resources.as_ref().is_some_and(|r| r.iter().any(|r| r == plural))
                    && rule.verbs.iter().any(|v| v == "update")
            }),
            "the ClusterRole covers {plural}"
        );
    }
    // weft-bgpd in cluster mode follows (lists, then watches) what it reads.
    for (group, resource) in [
        ("", "nodes"),
        ("", "services"),
        ("", "secrets"),
        ("discovery.k8s.io", "endpointslices"),
    ] {
        assert!(
            rules.iter().any(|rule| {
                rule.api_groups.as_ref().is_some_and(|g| g.iter().any(|g| g == group))
                    && rule.resources.as_ref().is_some_and(|r| r.iter().any(|r| r == resource))
                    && ["list", "watch"]
                        .iter()
                        .all(|verb| rule.verbs.iter().any(|v| v == verb))
            }),
            "the ClusterRole lets the node list and watch {resource}"
        );
    }
}

#[test]
fn the_crds_are_what_weftctl_prints() {
    let on_disk = std::fs::read_to_string(deploy("crds.yaml")).unwrap();
    assert!(
        on_disk == weft_api::crd::manifests_yaml().unwrap(),
        "deploy/crds.yaml is stale: regenerate it with `weftctl crds > deploy/crds.yaml`"
    );
    for doc in documents("crds.yaml") {
        strict::<CustomResourceDefinition>(&name_of(&doc), &doc);
    }
}

#[test]
fn the_init_container_installs_the_plugins_and_the_conflist() {
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = root.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let (bin, host_bin, host_net, sa, cni) = (dir("bin"), dir("host-bin"), dir("host-net"), dir("sa"), dir("cni"));
    for plugin in ["weft-cni", "weft-ipam"] {
        std::fs::write(bin.join(plugin), format!("#!/bin/sh\necho {plugin}\n")).unwrap();
    }
    std::fs::write(sa.join("token"), "a-token").unwrap();
    std::fs::write(sa.join("ca.crt"), "a-ca").unwrap();
    let config_map = documents("weft.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    std::fs::write(
        cni.join("10-weft.conflist"),
        config_map["data"]["10-weft.conflist"].as_str().unwrap(),
    )
    .unwrap();
    let run = |node: Option<&str>| {
        let mut command = Command::new("sh");
        command
            .arg(deploy("install-cni.sh"))
            .env("WEFT_BIN_DIR", &bin)
            .env("WEFT_HOST_CNI_BIN", &host_bin)
            .env("WEFT_HOST_CNI_NET", &host_net)
            .env("WEFT_CNI_CONFIG", cni.join("10-weft.conflist"))
            .env("WEFT_SA_DIR", &sa)
            .env("KUBERNETES_SERVICE_HOST", "2001:db8::1")
            .env("KUBERNETES_SERVICE_PORT", "6443")
            .env_remove("WEFT_NODENAME");
        if let Some(node) = node {
            command.env("WEFT_NODENAME", node);
        }
        command.output().unwrap()
    };

    let refused = run(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("WEFT_NODENAME must be set"));
    assert!(
        !host_net.join("10-weft.conflist").exists(),
        "nothing written without a node name"
    );

    let out = run(Some("node-7"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for plugin in ["weft-cni", "weft-ipam"] {
        let installed = Command::new(host_bin.join(plugin)).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&installed.stdout).trim(), plugin);
    }
    let conflist: Value =
        serde_json::from_str(&std::fs::read_to_string(host_net.join("10-weft.conflist")).unwrap()).unwrap();
    assert_eq!(conflist["plugins"][0]["nodename"], "node-7");
    let kubeconfig = std::fs::read_to_string(host_net.join("weft-kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("server: https://[2001:db8::1]:6443"),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("token: a-token"), "{kubeconfig}");
    let leftovers: Vec<_> = std::fs::read_dir(&host_net)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
