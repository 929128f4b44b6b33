//! Cluster mode (`weft-bgpd --store file:DIR --nodename N`) in network namespaces: four nodes
//! on one L2 segment (a bridge in a switch namespace), one file store the test fills with
//! `WeftNode`s, confirmed `BlockAffinity`s, an `IPPool` and the `BGPConfiguration`.
//!
//! ```text
//!            switch: br0
//!    ┌─────────┬─────────┬─────────┐
//!    a .1      b .2      c .3      d .4        198.19.0.N/24, 2001:db8:ff::N/64 on eth0
//!    198.18.N.0/26, 2001:db8:1:N::/122           each node's confirmed blocks; AS 64512
//! ```
//!
//! Proves, one step at a time: (1) the full mesh comes up (one session per family) and every
//! node has every other node's blocks in its kernel FIB; (2) a change (a BGPPeer added for
//! node a, node d's AS changed) re-peers only the sessions it touches: the others keep their
//! uptime; (3) with the mesh off, node a a route reflector and a BGPPeer selecting it, every
//! node still learns every block, through it; (4) a BGPPeer with a bad peerIP is reported,
//! naming it and the key, and everything else stays up; (5) a Service external IP with
//! `externalTrafficPolicy: Local` is a /32 from the node with its endpoint only (with its
//! `prefixAdvertisements` community), and follows the endpoint to another node; (6) a BGPPeer
//! whose TCP MD5 key is in a Secret is left out (and reported) until the Secret exists in
//! weft-system, then its sessions come up signed, and a changed key re-peers them; (7) with
//! `bindMode: NodeIP` a running node closes its listening socket and listens on its BGP addresses
//! only, its sessions staying up, and is reached there when a session starts again.
//!
//! Only 198.18.0.0/15 and 2001:db8::/32 are used; the namespaces carry the kit's per-run
//! prefix and go when the test ends, also on failure (their processes with them); every wait
//! is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use weft_api::{Key, Store};
use weft_topology_tests::{Netns, Process, Signal, binary, require_netns, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
const NAMES: [&str; 4] = ["a", "b", "c", "d"];
/// The Service external IP range and the one Service address.
const SERVICE_RANGE: &str = "198.18.200.0/24";
const SERVICE_IP: &str = "198.18.200.10";

fn address(i: usize) -> String {
    format!("198.19.0.{}", i + 1)
}

fn address6(i: usize) -> String {
    format!("2001:db8:ff::{}", i + 1)
}

fn block(i: usize) -> String {
    format!("198.18.{}.0/26", i + 1)
}

fn block6(i: usize) -> String {
    format!("2001:db8:1:{}::/122", i + 1)
}

struct Node {
    name: &'static str,
    netns: Netns,
    socket: PathBuf,
    process: Option<Process>,
}

impl Node {
    fn peers(&self) -> Result<Option<Vec<Value>>> {
        let output = Command::new(binary("weftctl")?)
            .args(["--socket", self.socket.to_str().unwrap(), "bgp", "peers", "--json"])
            .output()?;
        if !output.status.success() {
            return Ok(None);
        }
        match serde_json::from_slice(&output.stdout)? {
            Value::Array(peers) => Ok(Some(peers)),
            other => bail!("weftctl bgp peers --json printed {other}"),
        }
    }

    /// Whether exactly the peers at `addresses` are configured, all Established.
    fn established_with(&self, addresses: &[String]) -> Result<bool> {
        let Some(peers) = self.peers()? else { return Ok(false) };
        let mut configured: Vec<String> = peers
            .iter()
            .filter_map(|peer| peer["address"].as_str().map(str::to_owned))
            .collect();
        configured.sort();
        let mut wanted = addresses.to_vec();
        wanted.sort();
        Ok(configured == wanted && peers.iter().all(|peer| peer["state"] == "Established"))
    }

    fn peer(&self, address: &str) -> Result<Value> {
        let peers = self.peers()?.context("weftctl bgp peers: no answer")?;
        peers
            .into_iter()
            .find(|peer| peer["address"] == address)
            .with_context(|| format!("{}: no peer {address}", self.name))
    }

    fn uptime(&self, address: &str) -> Result<u64> {
        Ok(self.peer(address)?["uptime_seconds"].as_u64().unwrap_or(0))
    }

    /// Each Established peer's uptime in seconds.
    fn uptimes(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let peers = self.peers()?.context("weftctl bgp peers: no answer")?;
        Ok(peers
            .iter()
            .filter(|peer| peer["state"] == "Established")
            .filter_map(|peer| Some((peer["address"].as_str()?.to_owned(), peer["uptime_seconds"].as_u64()?)))
            .collect())
    }

    /// weft's routes in the node's kernel, both families, one a line (ECMP next hops on their
    /// route's line).
    fn fib(&self) -> Result<String> {
        let v4 = self.netns.ip(&["-o", "-4", "route", "show", "proto", "87"])?.stdout;
        let v6 = self.netns.ip(&["-o", "-6", "route", "show", "proto", "87"])?.stdout;
        Ok(v4 + &v6)
    }

    /// Whether the kernel has a learned route (not a blackhole) to every other node's blocks,
    /// IPv4 and IPv6, and a blackhole for its own.
    fn has_every_other_block(&self, me: usize) -> Result<bool> {
        let fib = self.fib()?;
        let learned = |prefix: String| {
            fib.lines()
                .any(|line| line.starts_with(&format!("{prefix} ")) && line.contains(" via "))
        };
        let blackholed = |prefix: String| fib.contains(&format!("blackhole {prefix}"));
        Ok((0..NAMES.len())
            .filter(|i| *i != me)
            .all(|i| learned(block(i)) && learned(block6(i)))
            && blackholed(block(me))
            && blackholed(block6(me)))
    }

    fn stderr(&self) -> String {
        self.process
            .as_ref()
            .and_then(|process| process.stderr().ok())
            .unwrap_or_default()
    }
}

struct Lab {
    // Nodes first: their namespaces (and daemons) go before the switch's.
    nodes: Vec<Node>,
    _switch: Netns,
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    setting: String,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store_dir = dir.path().join("store");
        std::fs::create_dir_all(&store_dir)?;
        let setting = format!("file:{}", store_dir.display());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let store = runtime.block_on(weft_api::store::open(&setting))?;
        let switch = Netns::new("cm-switch")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.link_up("br0")?;
        let mut nodes = Vec::new();
        for (i, name) in NAMES.into_iter().enumerate() {
            let netns = Netns::new(&format!("cm-{name}"))?;
            let port = format!("port-{name}");
            switch.veth(&port, &netns, "eth0")?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
            switch.link_up(&port)?;
            netns.link_up("eth0")?;
            netns.add_address("eth0", &format!("{}/24", address(i)))?;
            netns.add_address("eth0", &format!("{}/64", address6(i)))?;
            nodes.push(Node {
                name,
                netns,
                socket: dir.path().join(format!("{name}.sock")),
                process: None,
            });
        }
        Ok(Self {
            nodes,
            _switch: switch,
            runtime,
            store,
            setting,
            _dir: dir,
        })
    }

    /// Creates the object, or replaces the stored one (compare-and-swap on its revision).
    fn put(&self, value: Value) -> Result<()> {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind_name = value["kind"].as_str().unwrap_or_default();
        let kind = weft_api::kinds::find(api_version, kind_name).context("an unknown kind")?;
        let key = Key::of_value(&kind, &value)?;
        self.runtime.block_on(async {
            for _ in 0..5 {
                let result = match self.store.get(&key).await? {
                    None => self.store.create(&kind, value.clone()).await.map(drop),
                    Some(current) => self
                        .store
                        .update(&kind, value.clone(), current.revision)
                        .await
                        .map(drop),
                };
                match result {
                    Err(error) if error.is_conflict() => continue,
                    other => return Ok(other?),
                }
            }
            bail!("{key} kept changing")
        })
    }

    fn delete(&self, api_version: &str, kind: &str, name: &str) -> Result<()> {
        let kind = weft_api::kinds::find(api_version, kind).context("an unknown kind")?;
        let key = Key::new(&kind, None, name);
        self.runtime.block_on(self.store.delete(&key, None))?;
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        Ok(())
    }

    fn start_node(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let process = node
            .netns
            .command(env!("CARGO_BIN_EXE_weft-bgpd"))
            .args(["--store", &self.setting, "--nodename", node.name])
            .args(["--control-socket", node.socket.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .spawn()?;
        node.process = Some(process);
        Ok(())
    }

    /// Stops node `i`'s weft-bgpd (SIGTERM, bounded wait) and starts it again.
    fn restart_node(&mut self, i: usize) -> Result<()> {
        if let Some(process) = self.nodes[i].process.take() {
            process.signal(Signal::SIGTERM)?;
            process.wait_exit(Duration::from_secs(10))?;
        }
        self.start_node(i)
    }

    /// Waits until every node has every other node's block in its kernel.
    fn wait_for_every_block(&self, step: &str) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            wait_until(
                &format!("{step}: node {} to have every other block in its FIB", node.name),
                DEADLINE,
                POLL,
                || node.has_every_other_block(i),
            )
            .with_context(|| self.diagnostics())?;
        }
        Ok(())
    }

    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            text.push_str(&format!(
                "--- node {}: peers {:?}\nfib:\n{}\nstderr (tail):\n{}\n",
                node.name,
                node.peers().ok().flatten(),
                node.fib().unwrap_or_default(),
                tail(&node.stderr(), 30)
            ));
        }
        text
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn weft_node(i: usize, bgp: Value, labels: Value) -> Value {
    let mut spec = json!({"ipv4Address": format!("{}/24", address(i)), "ipv6Address": format!("{}/64", address6(i))});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), bgp.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "weft.io/v1", "kind": "WeftNode",
        "metadata": {"name": NAMES[i], "labels": labels},
        "spec": {"bgp": spec}
    })
}

/// Every other node's addresses, both families.
fn others(me: usize) -> Vec<String> {
    (0..NAMES.len())
        .filter(|i| *i != me)
        .flat_map(|i| [address(i), address6(i)])
        .collect()
}

/// The reflector's addresses.
fn reflector() -> Vec<String> {
    vec![address(0), address6(0)]
}

#[test]
fn cluster_mode_meshes_re_peers_only_what_changed_reflects_survives_a_bad_peer_and_follows_a_service() -> Result<()> {
    if require_netns().is_none() {
        return Ok(());
    }
    let mut lab = Lab::new()?;
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"}, "spec": {"asNumber": 64512}
    }))?;
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "IPPool",
        "metadata": {"name": "pods"}, "spec": {"cidr": "198.18.0.0/16"}
    }))?;
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "IPPool",
        "metadata": {"name": "pods6"}, "spec": {"cidr": "2001:db8:1::/48"}
    }))?;
    for (i, name) in NAMES.into_iter().enumerate() {
        lab.put(weft_node(i, json!({}), json!({})))?;
        lab.put(json!({
            "apiVersion": "weft.io/v1", "kind": "BlockAffinity",
            "metadata": {"name": format!("{name}-block")},
            "spec": {"node": name, "cidr": block(i), "state": "confirmed"}
        }))?;
        lab.put(json!({
            "apiVersion": "weft.io/v1", "kind": "BlockAffinity",
            "metadata": {"name": format!("{name}-block6")},
            "spec": {"node": name, "cidr": block6(i), "state": "confirmed"}
        }))?;
    }
    lab.start()?;

    // (1) Full mesh: every session up, every block everywhere.
    for (i, node) in lab.nodes.iter().enumerate() {
        wait_until(
            &format!("node {}: a session with each of the other three", node.name),
            DEADLINE,
            POLL,
            || node.established_with(&others(i)),
        )
        .with_context(|| lab.diagnostics())?;
    }
    lab.wait_for_every_block("full mesh")?;

    // (2) A BGPPeer for node a only, and node d's AS changed: only d's sessions (and the new
    // peer) change; a–b, a–c, b–c keep their uptime.
    let (a, b) = (&lab.nodes[0], &lab.nodes[1]);
    let kept = [(a, address(1)), (a, address(2)), (b, address(2))];
    // Let every uptime reach at least a second, so that a reset shows.
    std::thread::sleep(Duration::from_secs(2));
    let before: Vec<u64> = kept
        .iter()
        .map(|(node, peer)| node.uptime(peer))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "tor-a"},
        "spec": {"peerIP": "198.19.0.200", "asNumber": 65100, "node": "a"}
    }))?;
    lab.put(weft_node(3, json!({"asNumber": 65004}), json!({})))?;
    let with_tor: Vec<String> = others(0).into_iter().chain(["198.19.0.200".to_owned()]).collect();
    wait_until("node a to configure the new BGPPeer", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(
            a.peers()?
                .is_some_and(|peers| peers.iter().any(|p| p["address"] == "198.19.0.200")),
        )
    })
    .with_context(|| lab.diagnostics())?;
    for (i, node) in lab.nodes.iter().enumerate() {
        wait_until(
            &format!("node {}: d's sessions again Established, in AS 65004", node.name),
            DEADLINE,
            POLL,
            || {
                if i == 3 {
                    return node.established_with(&others(3));
                }
                let d = node.peer(&address(3))?;
                let d6 = node.peer(&address6(3))?;
                Ok::<_, anyhow::Error>([d, d6].iter().all(|d| d["state"] == "Established" && d["asn"] == 65004))
            },
        )
        .with_context(|| lab.diagnostics())?;
    }
    lab.wait_for_every_block("after d's AS changed")?;
    let elapsed = started.elapsed().as_secs();
    for ((node, peer), before) in kept.iter().zip(before) {
        let after = node.uptime(peer)?;
        assert!(
            after + 1 >= before + elapsed,
            "node {}'s session with {peer} was reset: uptime {before} s, {elapsed} s later {after} s",
            node.name
        );
    }
    let tor = a.peer("198.19.0.200")?;
    assert_ne!(tor["state"], "Established", "nobody is at 198.19.0.200: {tor}");
    assert!(!a.established_with(&with_tor)?, "the ToR is down");

    // (3) Route reflection: mesh off, a reflects (cluster id 198.19.0.100), every node peers
    // with the reflector through one BGPPeer; d back in the cluster's AS.
    lab.delete("weft.io/v1", "BGPPeer", "tor-a")?;
    lab.put(weft_node(3, json!({}), json!({})))?;
    lab.put(weft_node(
        0,
        json!({"routeReflectorClusterID": "198.19.0.100"}),
        json!({"route-reflector": "true"}),
    ))?;
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "to-reflectors"},
        "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}
    }))?;
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"}, "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": false}
    }))?;
    for (i, node) in lab.nodes.iter().enumerate() {
        let wanted = if i == 0 { others(0) } else { reflector() };
        wait_until(
            &format!("node {}: sessions with the reflector only ({wanted:?})", node.name),
            DEADLINE,
            POLL,
            || node.established_with(&wanted),
        )
        .with_context(|| lab.diagnostics())?;
    }
    lab.wait_for_every_block("route reflection")?;
    let client = lab.nodes[0].peers()?.context("a answers")?;
    assert_eq!(client.len(), 6, "{client:?}");

    // (4) A BGPPeer whose peerIP is not an address (written past weftctl's validation) is
    // reported by every node, naming it and the key; nothing else changes.
    let before: Vec<u64> = (1..NAMES.len())
        .map(|i| lab.nodes[0].uptime(&address(i)))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "bad"},
        "spec": {"peerIP": "198.19.0.999", "asNumber": 65100}
    }))?;
    for node in &lab.nodes {
        wait_until(
            &format!("node {} to report BGPPeer/bad", node.name),
            DEADLINE,
            POLL,
            || {
                let stderr = node.stderr();
                Ok::<_, anyhow::Error>(stderr.lines().any(|line| {
                    line.contains("BGPPeer/bad") && line.contains("spec.peerIP") && line.contains("left out")
                }))
            },
        )
        .with_context(|| lab.diagnostics())?;
    }
    // Give a wrongly applied change time to show, then check nothing moved.
    std::thread::sleep(Duration::from_secs(2));
    let elapsed = started.elapsed().as_secs();
    for (i, before) in (1..NAMES.len()).zip(before) {
        let after = lab.nodes[0].uptime(&address(i))?;
        assert!(
            after + 1 >= before + elapsed,
            "the reflector's session with {} was reset: {before} s, {elapsed} s later {after} s",
            address(i)
        );
    }
    for (i, node) in lab.nodes.iter().enumerate() {
        let wanted = if i == 0 { others(0) } else { reflector() };
        assert!(node.established_with(&wanted)?, "{}", lab.diagnostics());
        assert!(node.has_every_other_block(i)?, "{}", lab.diagnostics());
    }

    // (5) A Service's external IP with externalTrafficPolicy Local is announced (a /32 with the
    // community of its prefixAdvertisement) only by the node with its ready endpoint, and
    // follows the endpoint to another node.
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {
            "asNumber": 64512, "nodeToNodeMeshEnabled": false,
            "serviceExternalIPs": [{"cidr": SERVICE_RANGE}],
            "prefixAdvertisements": [{"cidr": SERVICE_RANGE, "communities": ["65000:200"]}]
        }
    }))?;
    lab.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "ClusterIP", "externalIPs": [SERVICE_IP], "externalTrafficPolicy": "Local",
            "ports": [{"port": 80}]
        }
    }))?;
    let endpoint_on = |node: &str| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["198.18.2.5"], "nodeName": node, "conditions": {"ready": true}}]
        })
    };
    for serving in [1, 2] {
        lab.put(endpoint_on(NAMES[serving]))?;
        let via = format!("{SERVICE_IP} via {} ", address(serving));
        for (i, node) in lab.nodes.iter().enumerate() {
            let what = if i == serving {
                format!("node {}: no route to {SERVICE_IP} (it serves it)", node.name)
            } else {
                format!("node {}: {SERVICE_IP} through node {}", node.name, NAMES[serving])
            };
            wait_until(&what, DEADLINE, POLL, || {
                let fib = node.fib()?;
                let routes: Vec<&str> = fib
                    .lines()
                    .filter(|line| line.starts_with(&format!("{SERVICE_IP} ")))
                    .collect();
                Ok::<_, anyhow::Error>(if i == serving {
                    routes.is_empty()
                } else {
                    routes.len() == 1 && routes[0].starts_with(&via)
                })
            })
            .with_context(|| lab.diagnostics())?;
        }
    }
    let routes = Command::new(binary("weftctl")?)
        .args([
            "--socket",
            lab.nodes[0].socket.to_str().unwrap(),
            "bgp",
            "routes",
            "--json",
        ])
        .output()?;
    let routes: Value = serde_json::from_slice(&routes.stdout)?;
    let service = routes
        .as_array()
        .into_iter()
        .flatten()
        .find(|route| route["prefix"] == format!("{SERVICE_IP}/32") && route["best"] == true)
        .with_context(|| format!("the reflector's route to {SERVICE_IP}: {routes}"))?;
    assert!(
        service["communities"].to_string().contains("65000:200"),
        "the prefixAdvertisement's community: {service}"
    );

    // (6) The reflector sessions get a TCP MD5 key from a Secret in weft-system: before the
    // Secret exists every node leaves the BGPPeer out and says why; once it exists the
    // sessions come up signed; a changed key re-peers them with it.
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPPeer",
        "metadata": {"name": "to-reflectors"},
        "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'",
                 "password": {"secretKeyRef": {"name": "bgp-passwords", "key": "reflectors"}}}
    }))?;
    for node in &lab.nodes {
        wait_until(
            &format!("node {} to report the missing Secret", node.name),
            DEADLINE,
            POLL,
            || {
                let stderr = node.stderr();
                Ok::<_, anyhow::Error>(stderr.lines().any(|line| {
                    line.contains("BGPPeer/to-reflectors")
                        && line.contains("spec.password.secretKeyRef")
                        && line.contains("weft-system/bgp-passwords does not exist")
                }))
            },
        )
        .with_context(|| lab.diagnostics())?;
    }
    let secret = |key: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bgp-passwords", "namespace": "weft-system"},
            "data": {"reflectors": key}
        })
    };
    lab.put(secret("czNjcmV0"))?; // "s3cret"
    for (i, node) in lab.nodes.iter().enumerate() {
        let wanted = if i == 0 { others(0) } else { reflector() };
        wait_until(
            &format!(
                "node {}: sessions with the reflector signed with the Secret's key",
                node.name
            ),
            DEADLINE,
            POLL,
            || node.established_with(&wanted),
        )
        .with_context(|| lab.diagnostics())?;
    }
    let neighbor = Command::new(binary("weftctl")?)
        .args(["--socket", lab.nodes[0].socket.to_str().unwrap(), "bgp", "neighbor"])
        .args([&address(1), "--json"])
        .output()?;
    let neighbor: Value = serde_json::from_slice(&neighbor.stdout)?;
    assert_eq!(neighbor["md5"], true, "{neighbor}");
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    lab.put(secret("bjN3LWtleQ=="))?; // "n3w-key"
    wait_until(
        "the reflector's sessions re-established with the new key",
        DEADLINE,
        POLL,
        || {
            let elapsed = started.elapsed().as_secs();
            Ok::<_, anyhow::Error>(
                lab.nodes[0].established_with(&others(0))?
                    && others(0)
                        .iter()
                        .map(|peer| lab.nodes[0].uptime(peer))
                        .collect::<Result<Vec<u64>>>()?
                        .iter()
                        .all(|uptime| *uptime <= elapsed),
            )
        },
    )
    .with_context(|| lab.diagnostics())?;
    lab.wait_for_every_block("with TCP MD5 from a Secret")?;

    // (7) bindMode NodeIP, live: each node closes its listening socket and listens on its
    // BGP addresses only; the established sessions are not the listener's and stay up.
    let listening = |node: &Node| -> Result<Vec<String>> {
        let out = node.netns.run(&["ss", "-Htln", "sport", "=", ":179"])?.stdout;
        let mut locals: Vec<String> = out
            .lines()
            .filter_map(|line| line.split_whitespace().nth(3).map(str::to_owned))
            .collect();
        locals.sort();
        Ok(locals)
    };
    assert_eq!(listening(&lab.nodes[0])?, ["*:179"], "every address before bindMode");
    let before = lab.nodes[0].uptimes()?;
    assert!(!before.is_empty(), "node a has sessions before the rebind");
    lab.put(json!({
        "apiVersion": "weft.io/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {
            "asNumber": 64512, "nodeToNodeMeshEnabled": false, "bindMode": "NodeIP",
            "serviceExternalIPs": [{"cidr": SERVICE_RANGE}],
            "prefixAdvertisements": [{"cidr": SERVICE_RANGE, "communities": ["65000:200"]}]
        }
    }))?;
    let a = &lab.nodes[0];
    let wanted = vec!["198.19.0.1:179".to_owned(), format!("[{}]:179", address6(0))];
    wait_until("node a to listen on its BGP addresses only", DEADLINE, POLL, || {
        Ok::<_, anyhow::Error>(listening(a)? == wanted)
    })
    .with_context(|| format!("{:?}\n{}", listening(a), lab.diagnostics()))?;
    let after = a.uptimes()?;
    for (peer, uptime) in &before {
        assert!(
            after.get(peer).is_some_and(|now| now >= uptime),
            "the session with {peer} stayed up across the rebind: {before:?} then {after:?}"
        );
    }
    // The reflector has the lower address: it is the passive end of all its sessions, so
    // every other node reaches it on those addresses (with their TCP MD5 keys) once a
    // session starts again.
    lab.restart_node(0)?;
    for (i, node) in lab.nodes.iter().enumerate() {
        let wanted = if i == 0 { others(0) } else { reflector() };
        wait_until(
            &format!("node {}: sessions with the restarted reflector", node.name),
            DEADLINE,
            POLL,
            || node.established_with(&wanted),
        )
        .with_context(|| lab.diagnostics())?;
    }
    lab.wait_for_every_block("after the reflector listened on its BGP addresses")?;
    Ok(())
}
