//! NetworkPolicy semantics on real nftables: the upstream Kubernetes e2e model (namespaces x,
//! y, z; pods a, b, c labelled pod=<name>; TCP and UDP servers on 80 and 81 with named ports),
//! weft-felix running in the node's namespace, the whole 9×9 matrix probed for each case.
//!
//! The cases run one after another on one lab (policy changes are what felix must follow).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, Pod, Probe, pod_object, policy};
use serde_json::json;
use weft_topology_tests::require_netns;

fn is(pod: Pod, id: &str) -> bool {
    pod.id() == id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_matrix_follows_networking_k8s_io_v1() {
    let Some(_support) = require_netns() else { return };
    let mut cluster = Cluster::new().await;
    cluster.start_felix();

    cluster.expect("no policy: every pod reaches every pod", |_, _, _| true);

    cluster
        .put(policy("x", "deny-ingress", json!({"podSelector": {}})))
        .await;
    cluster.expect("default deny ingress in x", |_, _, to| to.namespace != "x");
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ))
        .await;
    cluster.expect("default deny egress in x", |_, from, _| from.namespace != "x");
    cluster.clear_policies().await;

    let allow_from_b = json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]});
    cluster.put(policy("x", "allow-a", allow_from_b)).await;
    cluster.expect("podSelector: x/a only from x/b", |_, from, to| {
        !is(to, "x/a") || is(from, "x/b")
    });

    // Policy update: the same policy now allows x/c instead.
    cluster
        .put(policy(
            "x",
            "allow-a",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
        ))
        .await;
    cluster.expect("policy update: x/a only from x/c", |_, from, to| {
        !is(to, "x/a") || is(from, "x/c")
    });

    // Pod label change: y... x/b relabelled pod=c is now allowed too.
    let xb = Pod {
        namespace: "x",
        name: "b",
    };
    cluster.put(pod_object(&xb, "c")).await;
    cluster.expect("pod label change: x/b labelled pod=c", |_, from, to| {
        !is(to, "x/a") || is(from, "x/c") || is(from, "x/b")
    });
    cluster.put(pod_object(&xb, "b")).await;
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        ))
        .await;
    cluster.expect("namespaceSelector: x/a only from y", |_, from, to| {
        !is(to, "x/a") || from.namespace == "y"
    });

    // Namespace label change: z joins.
    cluster
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "z", "labels": {"ns": "y"}}}))
        .await;
    cluster.expect("namespace label change: z labelled ns=y", |_, from, to| {
        !is(to, "x/a") || from.namespace != "x"
    });
    cluster
        .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "z", "labels": {"ns": "z"}}}))
        .await;
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "and",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                   "podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
        ))
        .await;
    cluster.expect("AND in one peer: x/a only from y/c", |_, from, to| {
        !is(to, "x/a") || is(from, "y/c")
    });
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "or",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                  {"podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
        ))
        .await;
    cluster.expect("OR across peers: x/a from y/* or x/c", |_, from, to| {
        !is(to, "x/a") || from.namespace == "y" || is(from, "x/c")
    });
    cluster.clear_policies().await;

    cluster
        .put(policy("x", "expressions", json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]},
                                   "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]}}]}]})))
        .await;
    cluster.expect("matchExpressions: x/a, x/b only from x and z", |_, from, to| {
        !(is(to, "x/a") || is(to, "x/b")) || from.namespace != "y"
    });
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "block",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.2.0/24", "except": ["198.18.2.2/32"]}}]}]}),
        ))
        .await;
    cluster.expect("ipBlock with except: x/a from y but not y/b", |_, from, to| {
        !is(to, "x/a") || (from.namespace == "y" && from.name != "b")
    });
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "named",
            json!({"podSelector": {},
            "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}, {"port": "serve-80-tcp"}]}]}),
        ))
        .await;
    cluster.expect("named ports: x takes UDP 81 and TCP 80 only", |probe, _, to| {
        to.namespace != "x" || matches!(probe, Probe::Udp(81) | Probe::Tcp(80))
    });
    cluster.clear_policies().await;

    cluster
        .put(policy(
            "x",
            "egress-named",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
        ))
        .await;
    cluster.expect("egress named port: x sends TCP 81 only", |probe, from, _| {
        from.namespace != "x" || probe == Probe::Tcp(81)
    });
    cluster.clear_policies().await;

    cluster
        .put(policy("x", "range", json!({"podSelector": {},
            "ingress": [{"ports": [{"protocol": "UDP", "port": 81, "endPort": 90}, {"protocol": "TCP", "port": 70, "endPort": 75}, {"port": 80}]}]})))
        .await;
    cluster.expect(
        "endPort and a port list: x takes UDP 81-90, TCP 70-75 and 80",
        |probe, _, to| to.namespace != "x" || matches!(probe, Probe::Udp(81) | Probe::Tcp(80)),
    );
    cluster.clear_policies().await;

    // Ingress and egress together on one node: x may only send to y; y only takes pod=a.
    cluster
        .put(policy(
            "x",
            "to-y",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        ))
        .await;
    cluster
        .put(policy(
            "y",
            "from-a",
            json!({"podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
        ))
        .await;
    cluster.expect("egress and ingress both apply", |_, from, to| {
        let egress = from.namespace != "x" || to.namespace == "y";
        let ingress = to.namespace != "y" || from.name == "a";
        egress && ingress
    });
    cluster.clear_policies().await;

    // An invalid policy leaves the valid ones in force.
    cluster
        .put(policy(
            "x",
            "bad",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
        ))
        .await;
    cluster.put(policy("y", "deny", json!({"podSelector": {}}))).await;
    cluster.expect("invalid policy skipped, others in force", |_, _, to| {
        to.namespace != "y"
    });
    assert!(
        cluster.felix_log().contains("endPort 80 is below port 90"),
        "felix reports the invalid policy:\n{}",
        cluster.felix_log()
    );
    cluster.clear_policies().await;
    cluster.expect("all policies gone: open again", |_, _, _| true);
    let log = cluster.felix_log();
    assert!(
        !log.contains("incremental update refused") && !log.contains("programming nftables failed"),
        "every change applied as a valid nft batch:\n{log}"
    );
}
