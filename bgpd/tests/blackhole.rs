//! `kernel: {blackhole: true}`: while weft-bgpd runs, each originated prefix is backed by a
//! blackhole route with weft's protocol number; when it stops, the routes are gone. In a
//! network namespace of its own, with only 198.18.0.0/15 and 2001:db8::/32.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weft_topology_tests::{Netns, Signal, require_netns, wait_until};

fn weft_routes(node: &Netns) -> String {
    let v4 = node.ip(&["-4", "route", "show", "proto", "87"]).unwrap().stdout;
    let v6 = node.ip(&["-6", "route", "show", "proto", "87"]).unwrap().stdout;
    format!("{v4}{v6}")
}

#[test]
fn originated_prefixes_are_blackholed_while_the_speaker_runs() {
    let Some(_support) = require_netns() else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = Netns::new("bh-node").unwrap();
    let config = dir.path().join("bgpd.yaml");
    std::fs::write(
        &config,
        format!(
            "asn: 65001\nrouter_id: 198.19.0.2\nlisten_port: 0\ncontrol_socket: {}\n\
             originate: [198.18.1.0/26, \"2001:db8:1::/122\"]\nkernel: {{blackhole: true}}\n",
            dir.path().join("bgpd.sock").display()
        ),
    )
    .unwrap();
    let bgpd = node
        .spawn(&[env!("CARGO_BIN_EXE_weft-bgpd"), "--config", config.to_str().unwrap()])
        .unwrap();
    wait_until(
        "blackhole routes for both originated prefixes",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let routes = weft_routes(&node);
            Ok::<_, std::io::Error>(
                routes.contains("blackhole 198.18.1.0/26") && routes.contains("blackhole 2001:db8:1::/122"),
            )
        },
    )
    .unwrap();
    bgpd.signal(Signal::SIGTERM).unwrap();
    let status = bgpd.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "a clean shutdown: {status}");
    assert_eq!(weft_routes(&node), "", "the speaker's routes left with it");
}
