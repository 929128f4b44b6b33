//! max-prefix: a peer that advertises more prefixes than its limit loses its session with a
//! Cease, Maximum Number of Prefixes Reached (RFC 4486), its routes leave weft's RIB and kernel,
//! and with a restart time the session is tried again later (and ended again while the flood
//! goes on). FRR 8 is the flooding ToR, in namespaces (the lab of `common`).

mod common;

use anyhow::Result;
use common::*;
use weft_topology_tests::{require_netns, wait_until};

/// FRR announces this many prefixes (198.18.100.0/24 and 198.18.101.0/24 … ) to a peer whose
/// limit is 10.
const ANNOUNCED: u8 = 12;
const LIMIT: usize = 10;

#[test]
fn a_peer_announcing_more_than_max_prefix_is_stopped_with_a_cease_and_retried_after_the_restart_time() -> Result<()> {
    if require_netns().is_none() || !Frr::installed() {
        return Ok(());
    }
    let mut frr = Frr::new("frr")?;
    let node = WeftNode::new("node")?;
    wire(&frr.netns, &node.netns)?;
    let networks: String = (1..ANNOUNCED)
        .map(|i| format!("  network 198.18.{}.0/24\n", 100 + u16::from(i)))
        .collect();
    let conf = frr_tor_conf(TOR_V4, &[(NODE_V4, "ipv4")], &[], &[]).replace(
        &format!("  network {TOR_PREFIX_V4}\n"),
        &format!("  network {TOR_PREFIX_V4}\n{networks}"),
    );
    frr.configure(&conf)?;
    node.configure(
        "",
        &[WeftPeer::new(TOR_V4, 4_200_000_002, "ipv4-unicast")
            .with(&format!("max_prefix: {{ limit: {LIMIT}, restart_time: 3 }}"))],
    )?;
    frr.start()?;
    let _weft = node.start()?;

    // FRR reports the Cease it received from weft.
    wait_until("FRR to receive weft's max-prefix Cease", DEADLINE, POLL, || {
        let json = frr.vtysh_json(&format!("show bgp neighbors {NODE_V4} json"))?;
        Ok::<_, anyhow::Error>(json.to_string().contains("Maximum Number of Prefixes Reached"))
    })?;
    let neighbor = frr.vtysh_json(&format!("show bgp neighbors {NODE_V4} json"))?;
    assert!(
        neighbor[NODE_V4]["connectionsEstablished"].as_u64() >= Some(1),
        "{neighbor}"
    );
    // Nothing of the flood stays in weft's RIB or kernel.
    wait_until("the flooding peer's routes to leave weft", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            node.learned(TOR_PREFIX_V4)?.is_none()
                && node.kernel_routes()?.is_empty()
                && node.peer_state(TOR_V4)?.is_some_and(|s| s != "Established"),
        )
    })?;
    // After the restart time (3 s) weft tries again, and stops the session again.
    wait_until(
        "weft to retry after its restart time and stop again",
        DEADLINE,
        POLL,
        || {
            let json = frr.vtysh_json(&format!("show bgp neighbors {NODE_V4} json"))?;
            Ok::<_, anyhow::Error>(
                json[NODE_V4]["connectionsEstablished"].as_u64() >= Some(2)
                    && json[NODE_V4]["connectionsDropped"].as_u64() >= Some(2),
            )
        },
    )?;
    Ok(())
}
