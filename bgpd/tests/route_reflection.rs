//! weft-bgpd as a route reflector (RFC 4456) for two FRR 8 iBGP clients, in network namespaces
//! (only 198.18.0.0/15, removed at the end).
//!
//! ```text
//!   client a: AS 65001, id 198.19.0.1 ── 198.19.0.0/24 ── node: weft-bgpd, AS 65001, id 198.19.0.2
//!   originates 198.18.100.0/24                               reflector (cluster id = router id)
//!   client b: AS 65001, id 198.19.3.1 ── 198.19.3.0/24 ──┘
//!   originates 198.18.103.0/24
//! ```
//!
//! Proves: each client's prefix reaches the other client through weft, with ORIGINATOR_ID the
//! originating client's router id and CLUSTER_LIST weft's cluster id, as FRR shows them
//! (`show bgp ipv4 unicast PREFIX json`); and neither client is sent its own prefix back (weft's
//! Adj-RIB-Out for each holds the other's prefix and weft's own, nothing more).

mod common;

use anyhow::Result;
use common::*;
use serde_json::Value;
use weft_topology_tests::{require_netns, wait_for, wait_until};

const A: &str = "198.19.0.1";
const B: &str = "198.19.3.1";
const NODE_B_SIDE: &str = "198.19.3.2";
const A_PREFIX: &str = "198.18.100.0/24";
const B_PREFIX: &str = "198.18.103.0/24";

fn client_conf(router_id: &str, reflector: &str, prefix: &str) -> String {
    format!(
        "hostname client\nlog stdout debugging\nrouter bgp 65001\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n \
         no bgp network import-check\n no bgp default ipv4-unicast\n timers bgp 3 9\n neighbor {reflector} remote-as 65001\n \
         neighbor {reflector} timers connect 2\n address-family ipv4 unicast\n  network {prefix}\n  neighbor {reflector} activate\n \
         exit-address-family\n"
    )
}

/// The path FRR has for `prefix` from the reflector, once it has one.
fn reflected_path(frr: &Frr, prefix: &str) -> Result<Value> {
    Ok(wait_for(
        &format!("FRR to learn {prefix} from the reflector"),
        DEADLINE,
        POLL,
        || Ok::<_, anyhow::Error>(frr.paths(prefix)?.into_iter().next()),
    )?)
}

fn cluster_list(path: &Value) -> Vec<String> {
    path["clusterList"]["list"]
        .as_array()
        .map(|list| list.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn weft_reflects_each_clients_route_to_the_other_with_originator_id_and_cluster_list() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut a = Frr::new("rr-a")?;
    let mut b = Frr::new("rr-b")?;
    let node = WeftNode::new("rr-node")?;
    a.netns.veth("eth-node", &node.netns, "eth-a")?;
    b.netns.veth("eth-node", &node.netns, "eth-b")?;
    a.netns.add_address("eth-node", &format!("{A}/24"))?;
    node.netns.add_address("eth-a", &format!("{NODE_V4}/24"))?;
    b.netns.add_address("eth-node", &format!("{B}/24"))?;
    node.netns.add_address("eth-b", &format!("{NODE_B_SIDE}/24"))?;
    a.configure(&client_conf(A, NODE_V4, A_PREFIX))?;
    b.configure(&client_conf(B, NODE_B_SIDE, B_PREFIX))?;
    let client = |address: &str| WeftPeer::new(address, 65001, "ipv4-unicast").with("route_reflector_client: true");
    node.configure("", &[client(A), client(B)])?;
    a.start()?;
    b.start()?;
    let _weft = node.start()?;
    wait_until("both clients Established", DEADLINE, POLL, || node.established(2))?;

    let at_b = reflected_path(&b, A_PREFIX)?;
    assert_eq!(at_b["originatorId"], A, "ORIGINATOR_ID is client a: {at_b}");
    assert_eq!(cluster_list(&at_b), vec![NODE_V4.to_owned()], "CLUSTER_LIST: {at_b}");
    assert_eq!(at_b["nexthops"][0]["ip"], A, "the next hop is left alone: {at_b}");
    let at_a = reflected_path(&a, B_PREFIX)?;
    assert_eq!(at_a["originatorId"], B, "{at_a}");
    assert_eq!(cluster_list(&at_a), vec![NODE_V4.to_owned()], "{at_a}");

    // weft's own prefix goes to both; a client's own prefix never goes back to it.
    wait_until("weft's Adj-RIB-Outs settled", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(node.peers()?.iter().all(|p| p["prefixes_sent"] == 2))
    })?;
    assert!(!a.paths(NODE_PREFIX_V4)?.is_empty());
    a.stop_bgpd()?;
    b.stop_bgpd()?;
    Ok(())
}
