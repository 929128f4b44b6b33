//! Named import and export policies against FRR 8, in namespaces (the lab of `common`, IPv4).
//!
//! FRR announces three prefixes: 198.18.100.0/24 tagged 65000:100 and 4200000002:1:1,
//! 198.18.101.0/24 tagged 65000:666 (a "do not use" community), and 198.18.50.0/24 outside
//! weft's prefix list. weft's import policy keeps only the first, with LOCAL_PREF 200 and a
//! community of its own; its export policy prepends AS 65001 twice and tags what it sends,
//! which FRR's RIB shows.

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{require_netns, wait_until};

const WEFT_POLICIES: &str = r#"prefix_lists:
  tor-routes: ["198.18.100.0/22 le 24"]
policies:
  from-tor:
    - match: { community: "65000:666" }
      action: reject
    - match:
        prefix_list: tor-routes
        large_community: "4200000002:1:1"
        as_path: { neighbor: 4200000002, max_length: 1 }
      set: { local_pref: 200, community: ["65001:7"] }
      action: accept
  to-tor:
    - set: { prepend: 2, community: ["65001:1"], large_community: ["65001:1:1"] }
      action: accept"#;

fn frr_conf() -> String {
    let conf = frr_tor_conf(TOR_V4, &[(NODE_V4, "ipv4")], &[], &[]);
    let conf = conf.replace(
        &format!("  network {TOR_PREFIX_V4}\n"),
        &format!(
            "  network {TOR_PREFIX_V4} route-map TAGGED\n  network 198.18.101.0/24 route-map DO-NOT-USE\n  \
             network 198.18.50.0/24 route-map TAGGED\n"
        ),
    );
    format!(
        "{conf}route-map TAGGED permit 10\n set community 65000:100\n set large-community 4200000002:1:1\n\
         route-map DO-NOT-USE permit 10\n set community 65000:666\n set large-community 4200000002:1:1\n"
    )
}

#[test]
fn named_import_and_export_policies_filter_and_tag_routes_both_ways_with_frr() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut frr = Frr::new("frr")?;
    let node = WeftNode::new("node")?;
    wire(&frr.netns, &node.netns)?;
    frr.configure(&frr_conf())?;
    node.configure(
        WEFT_POLICIES,
        &[WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast").policies("from-tor", "to-tor")],
    )?;
    frr.start()?;
    let _weft = node.start()?;
    wait_until("weft's session with FRR Established", DEADLINE, POLL, || {
        node.established(1)
    })?;

    // Import: one of three accepted, with our LOCAL_PREF and community added.
    let route = node.wait_for_route(TOR_PREFIX_V4)?;
    assert_eq!(route["local_pref"], 200, "{route}");
    assert_eq!(
        route["communities"],
        serde_json::json!(["65000:100", "65001:7"]),
        "{route}"
    );
    assert_eq!(
        route["large_communities"],
        serde_json::json!(["4200000002:1:1"]),
        "{route}"
    );
    // FRR also sends weft's own prefix back (it does no sender-side loop check): AS_PATH loop
    // detection drops that one.
    wait_until(
        "FRR's three prefixes and weft's own in weft's Adj-RIB-In",
        DEADLINE,
        POLL,
        || Ok::<_, anyhow::Error>(node.peers()?[0]["prefixes_received"] == 4),
    )?;
    let peer = &node.peers()?[0];
    assert_eq!(peer["prefixes_accepted"], 1, "{peer}");
    assert!(
        node.learned("198.18.101.0/24")?.is_none(),
        "the 65000:666 route is rejected"
    );
    assert!(node.learned("198.18.50.0/24")?.is_none(), "outside the prefix list");
    let routes = node.kernel_routes()?;
    assert!(
        has_route(&routes, TOR_PREFIX_V4, TOR_V4) && !routes.contains("198.18.101.0/24"),
        "{routes}"
    );

    // Export: FRR sees our AS three times and our communities.
    wait_until("FRR to learn weft's prefix", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(!frr.paths(NODE_PREFIX_V4)?.is_empty())
    })?;
    let path = &frr.paths(NODE_PREFIX_V4)?[0];
    assert_eq!(path["aspath"]["string"], "65001 65001 65001", "{path}");
    assert_eq!(path["community"]["string"], "65001:1", "{path}");
    assert_eq!(path["largeCommunity"]["string"], "65001:1:1", "{path}");
    Ok(())
}
