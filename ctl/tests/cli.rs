//! weftctl as an operator uses it: CRD manifests, apply/get/delete on a store, status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::Value;

fn weftctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weftctl")).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "weftctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Kubernetes accepts only structural schemas: every node says its type, except where
/// `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields` says otherwise.
fn assert_structural(schema: &Value, path: &str) {
    let exempt = schema.get("x-kubernetes-int-or-string").is_some()
        || schema.get("x-kubernetes-preserve-unknown-fields").is_some();
    assert!(exempt || schema.get("type").is_some(), "{path} has no type: {schema}");
    for keyword in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
            for branch in branches {
                // Branches may only restate validation, not types (structural rule 3).
                assert!(
                    branch.get("type").is_none() || exempt,
                    "{path}.{keyword} declares a type: {branch}"
                );
            }
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            assert_structural(property, &format!("{path}.{name}"));
        }
    }
    if let Some(items) = schema.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        assert_structural(additional, &format!("{path}{{}}"));
    }
}

fn spec_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

#[test]
fn crds_are_structural_manifests_for_every_weft_kind() {
    let yaml = stdout(&weftctl(&["crds"]));
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let documents: Vec<&Value> = documents.iter().filter(|d| !d.is_null()).collect();
    let names: Vec<&str> = documents
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ippools.weft.io",
            "ipamblocks.weft.io",
            "blockaffinities.weft.io",
            "ipamhandles.weft.io",
            "ipamconfigs.weft.io",
            "bgpconfigurations.weft.io",
            "bgppeers.weft.io",
            "bgpfilters.weft.io",
            "weftnodes.weft.io",
            "workloadendpoints.weft.io",
        ]
    );
    for crd in &documents {
        let name = crd["metadata"]["name"].as_str().unwrap();
        assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(crd["kind"], "CustomResourceDefinition");
        assert_eq!(crd["spec"]["group"], "weft.io");
        let scope = if crd["spec"]["names"]["kind"] == "WorkloadEndpoint" {
            "Namespaced"
        } else {
            "Cluster"
        };
        assert_eq!(crd["spec"]["scope"], scope, "{name}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1");
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        assert_structural(&version["schema"]["openAPIV3Schema"], name);
    }
    let pool = spec_schema(documents[0]);
    assert!(
        pool["properties"]["cidr"]["pattern"].is_string(),
        "cidr is validated: {pool}"
    );
    assert_eq!(pool["required"], serde_json::json!(["cidr"]));
    let peer = spec_schema(documents[6]);
    assert_eq!(
        peer["properties"]["asNumber"]["minimum"], 1.0,
        "AS numbers start at 1: {peer}"
    );
    let affinity = spec_schema(documents[2]);
    assert_eq!(
        affinity["properties"]["state"]["enum"],
        serde_json::json!(["pending", "confirmed", "pendingDeletion"])
    );
}

#[test]
fn apply_get_status_and_delete_on_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    let file = dir.path().join("pools.yaml");
    std::fs::write(
        &file,
        "apiVersion: weft.io/v1\nkind: IPPool\nmetadata: {name: pods-v4}\nspec: {cidr: 198.18.0.0/16}\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: x}}\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(
        stdout(&weftctl(&["--store", &store, "apply", "-f", file])),
        "ippools/pods-v4 created\nnamespaces/x created\n"
    );
    assert_eq!(
        stdout(&weftctl(&["--store", &store, "apply", "-f", file])),
        "ippools/pods-v4 unchanged\nnamespaces/x unchanged\n"
    );
    let pool: Value = serde_json::from_str(&stdout(&weftctl(&[
        "--store", &store, "get", "ippool", "pods-v4", "-o", "json",
    ])))
    .unwrap();
    assert_eq!(pool["spec"]["cidr"], "198.18.0.0/16");

    let status: Value = serde_json::from_str(&stdout(&weftctl(&["--store", &store, "status", "--json"]))).unwrap();
    assert_eq!(status["reachable"], true);
    assert_eq!(status["revision"], 2);
    let count = |kind: &str| {
        status["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((count("IPPool"), count("Namespace"), count("Pod")), (1, 1, 0));

    assert_eq!(
        stdout(&weftctl(&["--store", &store, "delete", "-f", file])),
        "ippools/pods-v4 deleted\nnamespaces/x deleted\n"
    );
    let again = weftctl(&["--store", &store, "delete", "-f", file]);
    assert!(
        !again.status.success(),
        "deleting what is gone fails without --ignore-not-found"
    );
    stdout(&weftctl(&[
        "--store",
        &store,
        "delete",
        "-f",
        file,
        "--ignore-not-found",
    ]));
}

#[test]
fn a_file_with_one_bad_document_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: weft.io/v1\nkind: IPPool\nmetadata: {name: good}\nspec: {cidr: 198.18.0.0/16}\n\
         ---\napiVersion: weft.io/v1\nkind: IPPool\nmetadata: {name: bad}\nspec: {cidr: 198.18.0.0/33}\n\
         ---\napiVersion: weft.io/v1\nkind: BGPPeer\nmetadata: {name: peer}\nspec: {peerIP: 198.19.0.1, asNumber: 0}\n\
         ---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
    )
    .unwrap();
    let output = weftctl(&["--store", &store, "apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("nothing was changed"), "{message}");
    assert!(message.contains("document 2 (IPPool/bad): spec.cidr"), "{message}");
    assert!(message.contains("spec.asNumber: AS 0 is reserved"), "{message}");
    assert!(message.contains("Widget"), "{message}");
    let status: Value = serde_json::from_str(&stdout(&weftctl(&["--store", &store, "status", "--json"]))).unwrap();
    assert_eq!(status["revision"], 0, "no write happened: {status}");
}

#[test]
fn a_store_that_does_not_answer_is_named_in_the_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = format!("etcd:http://127.0.0.1:{port}");
    let output = weftctl(&["--store", &store, "status"]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    let output = weftctl(&["--store", "ftp://nowhere", "status"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid store setting"));
}

#[test]
fn ipam_pool_show_check_release_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("store").display());
    assert_eq!(
        stdout(&weftctl(&[
            "--store",
            &store,
            "ipam",
            "pool",
            "add",
            "198.18.0.0/24",
            "--block-size",
            "28"
        ])),
        "ippools/pool-198-18-0-0-24 created\n"
    );
    let overlap = weftctl(&["--store", &store, "ipam", "pool", "add", "198.18.0.128/25"]);
    assert!(String::from_utf8_lossy(&overlap.stderr).contains("overlaps pool pool-198-18-0-0-24"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let allocator = weft_ipam::Allocator::new(weft_api::store::open(&store).await.unwrap());
        for pod in ["a", "b"] {
            let request = weft_ipam::Request {
                node: "node-1".into(),
                handle: format!("net.{pod}.eth0"),
                ipv4: 1,
                ipv6: 0,
                pools: Vec::new(),
                attributes: [
                    ("namespace".to_owned(), "x".to_owned()),
                    ("pod".to_owned(), pod.to_owned()),
                ]
                .into(),
                allowed_use: weft_api::resources::AllowedUse::Workload,
                reserve_gateway: false,
            };
            allocator.allocate(&request).await.unwrap();
        }
    });

    let show: Value = serde_json::from_str(&stdout(&weftctl(&["--store", &store, "ipam", "show", "--json"]))).unwrap();
    assert_eq!(show["pools"][0]["cidr"], "198.18.0.0/24");
    assert_eq!(show["blocks"][0]["affinity"], "node-1");
    assert!(show["blocks"][0]["cidr"].as_str().unwrap().ends_with("/28"));
    let handles: Vec<&str> = show["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, ["net.a.eth0", "net.b.eth0"]);
    assert!(
        show["allocations"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("198.18.0.")
    );
    assert_eq!(show["nodes"]["node-1"]["used"], 2);

    let check: Value = serde_json::from_str(&stdout(&weftctl(&[
        "--store", &store, "ipam", "check", "--json", "--grace", "0",
    ])))
    .unwrap();
    assert_eq!(check["problems"], serde_json::json!([]));
    assert_eq!(
        check["leaks"].as_array().unwrap().len(),
        2,
        "no Pod objects: both are leaks"
    );

    stdout(&weftctl(&[
        "--store",
        &store,
        "ipam",
        "release",
        "--handle",
        "net.a.eth0",
    ]));
    let gc: Value = serde_json::from_str(&stdout(&weftctl(&[
        "--store", &store, "ipam", "gc", "--grace", "0", "--json",
    ])))
    .unwrap();
    assert_eq!(gc["released"].as_array().unwrap().len(), 1, "{gc}");
    let show: Value = serde_json::from_str(&stdout(&weftctl(&["--store", &store, "ipam", "show", "--json"]))).unwrap();
    assert_eq!(show["allocations"], serde_json::json!([]));
}
