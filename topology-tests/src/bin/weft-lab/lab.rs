//! `up`, `down` and `status` of one topology.
//!
//! Up, in containerlab's order: a namespace per node (`clab-<lab>-<node>`, containerlab's
//! container name), veth links made directly inside the two namespaces (the host's own
//! namespace is never configured), link addresses, forwarding on routers and weft nodes, weft
//! nodes' cluster files (weft-bgpd in cluster mode reads its configuration there), the node
//! programs, the `exec` commands, then pods. Every step is
//! recorded first; a failure tears down what was made and reports the step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::role::{self, Role, WeftNode};
use crate::shell::{self, in_netns};
use crate::state::{self, Pod, Started, State};
use crate::topology::Topology;

pub struct Lab {
    pub topology: Topology,
    pub roles: Vec<(String, Role)>,
}

impl Lab {
    pub fn new(topology: Topology) -> Result<Self> {
        let roles = topology
            .nodes
            .iter()
            .map(|(name, node)| Ok((name.clone(), Role::of(name, node)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { topology, roles })
    }

    pub fn name(&self) -> &str {
        &self.topology.name
    }

    pub fn netns(&self, node: &str) -> String {
        format!("clab-{}-{node}", self.name())
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        state::dir(self.name()).join(node)
    }

    /// The lab's shared datastore.
    pub fn store(&self) -> String {
        format!("file:{}", state::dir(self.name()).join("store").display())
    }

    /// Brings the lab up; a lab already up and healthy is left as it is.
    pub fn up(&self) -> Result<()> {
        if let Some(previous) = State::load(self.name())? {
            if self.healthy(&previous) {
                println!("lab {} is already up", self.name());
                return Ok(());
            }
            println!("lab {}: tearing down a partial or stale run first", self.name());
            self.teardown(previous);
        }
        let state = State {
            lab: self.name().to_owned(),
            ..State::default()
        };
        state.save()?;
        let recorder = Recorder::new(state);
        match self.build(&recorder) {
            Ok(()) => Ok(()),
            Err(error) => {
                eprintln!(
                    "weft-lab: bringing up {} failed; tearing down what was made",
                    self.name()
                );
                self.teardown(recorder.into_state());
                Err(error)
            }
        }
    }

    /// Nodes are independent of each other within a phase, so each phase runs on a few threads:
    /// namespaces, then links, then cluster files, programs, `exec`, then pods.
    fn build(&self, state: &Recorder) -> Result<()> {
        parallel(&self.roles, |(node, role)| {
            let netns = self.netns(node);
            add_netns(state, &netns).with_context(|| format!("node {node}"))?;
            std::fs::create_dir_all(self.node_dir(node))?;
            // Links made next get their IPv6 link-local address at once, not after duplicate
            // address detection: FRR will not peer over IPv6 on an interface without one, and
            // its bgpd gives up on a session it tried to start too early.
            in_netns(
                &netns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_dad=0",
                ],
            )
            .with_context(|| format!("node {node}: turning duplicate address detection off"))?;
            if role.forwards() {
                in_netns(
                    &netns,
                    &[
                        "sysctl",
                        "-qw",
                        "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1",
                    ],
                )
                .with_context(|| format!("node {node}: enabling forwarding"))?;
            }
            Ok(())
        })?;
        parallel(&self.topology.links, |link| {
            self.make_link(link).with_context(|| link.to_string())
        })?;
        // The cluster files first: in cluster mode weft-bgpd's configuration is in them.
        let mut applied = BTreeSet::new();
        for (node, role) in &self.roles {
            if let Role::Weft(weft) = role
                && let Some(cluster) = &weft.cluster
                && applied.insert(cluster.clone())
            {
                self.weftctl(&["apply", "-f", &cluster.display().to_string()])
                    .with_context(|| format!("node {node}: applying {}", cluster.display()))?;
            }
        }
        parallel(&self.roles, |(node, role)| {
            self.start(state, node, role).with_context(|| format!("node {node}"))
        })?;
        let execs: Vec<(&String, &crate::topology::Node)> = self.topology.nodes.iter().collect();
        parallel(&execs, |(node, spec)| {
            for command in &spec.exec {
                in_netns(&self.netns(node), &["sh", "-c", command])
                    .with_context(|| format!("node {node}: exec {command:?}"))?;
            }
            Ok(())
        })?;
        self.apply_pod_objects(self.roles.iter().filter_map(|(node, role)| match role {
            Role::Weft(weft) => Some((node.as_str(), 1..=weft.pods)),
            _ => None,
        }))?;
        parallel(&self.roles, |(node, role)| {
            if let Role::Weft(weft) = role {
                for index in 1..=weft.pods {
                    self.add_pod(state, node, index, weft.ipv6)
                        .with_context(|| format!("node {node}: pod {index}"))?;
                }
            }
            Ok(())
        })
    }

    fn make_link(&self, link: &crate::topology::Link) -> Result<()> {
        let (a, b) = (self.netns(&link.a.node), self.netns(&link.b.node));
        shell::run(
            &[
                "ip",
                "-n",
                &a,
                "link",
                "add",
                &link.a.interface,
                "type",
                "veth",
                "peer",
                "name",
                &link.b.interface,
                "netns",
                &b,
            ],
            &[],
            None,
            shell::TIMEOUT,
        )?;
        for (netns, interface) in [(&a, &link.a.interface), (&b, &link.b.interface)] {
            if let Some(mtu) = link.mtu {
                shell::run(
                    &["ip", "-n", netns, "link", "set", interface, "mtu", &mtu.to_string()],
                    &[],
                    None,
                    shell::TIMEOUT,
                )?;
            }
            shell::run(
                &["ip", "-n", netns, "link", "set", interface, "up"],
                &[],
                None,
                shell::TIMEOUT,
            )?;
        }
        for (on_a, on_b) in &link.addresses {
            for (netns, interface, address) in [(&a, &link.a.interface, on_a), (&b, &link.b.interface, on_b)] {
                let text = address.to_string();
                let mut argv = vec!["ip", "-n", netns, "addr", "add", &text, "dev", interface];
                if matches!(address, ipnet::IpNet::V6(_)) {
                    argv.push("nodad");
                }
                shell::run(&argv, &[], None, shell::TIMEOUT)?;
            }
        }
        Ok(())
    }

    fn start(&self, state: &Recorder, node: &str, role: &Role) -> Result<()> {
        let netns = self.netns(node);
        let dir = self.node_dir(node);
        match role {
            Role::Plain => {}
            Role::Frr { config } => {
                let frr = dir.join("frr");
                std::fs::create_dir_all(&frr)?;
                std::fs::copy(config, frr.join("frr.conf"))
                    .with_context(|| format!("cannot copy {}", config.display()))?;
                shell::run(
                    &["chown", "-R", "frr:frr", &frr.display().to_string()],
                    &[],
                    None,
                    shell::TIMEOUT,
                )?;
                let f = frr.display().to_string();
                for daemon in ["zebra", "bgpd"] {
                    let pid_file = frr.join(format!("{daemon}.pid"));
                    in_netns(
                        &netns,
                        &[
                            &format!("/usr/lib/frr/{daemon}"),
                            "-d",
                            "-P",
                            "0",
                            "--vty_socket",
                            &f,
                            "-z",
                            &format!("{f}/zserv.api"),
                            "-f",
                            &format!("{f}/frr.conf"),
                            "-i",
                            &pid_file.display().to_string(),
                            "--log",
                            &format!("file:{f}/{daemon}.log"),
                        ],
                    )
                    .with_context(|| format!("starting FRR's {daemon}"))?;
                    let pid = read_pid(&pid_file, daemon)?;
                    state.process(Started {
                        node: node.to_owned(),
                        program: daemon.to_owned(),
                        pid,
                    })?;
                    if daemon == "zebra" {
                        self.wait_for_zebra(node, &f)?;
                    }
                }
            }
            Role::Bird { config } => {
                let pid_file = dir.join("bird.pid");
                in_netns(
                    &netns,
                    &[
                        "bird",
                        "-c",
                        &config.display().to_string(),
                        "-s",
                        &dir.join("bird.ctl").display().to_string(),
                        "-P",
                        &pid_file.display().to_string(),
                    ],
                )
                .context("starting BIRD")?;
                let pid = read_pid(&pid_file, "bird")?;
                state.process(Started {
                    node: node.to_owned(),
                    program: "bird".to_owned(),
                    pid,
                })?;
            }
            Role::Weft(weft) => self.start_weft(state, node, weft)?,
        }
        Ok(())
    }

    /// bgpd started before zebra has read the interfaces cannot pick IPv6 next hops: FRR 8.4
    /// then resets its first sessions and can stay stuck in collision resolution. Wait until
    /// zebra lists every link interface of the node.
    fn wait_for_zebra(&self, node: &str, vty_dir: &str) -> Result<()> {
        // Every link interface of the node, up, with every address the lab gave it.
        let mut expected: Vec<String> = Vec::new();
        for link in &self.topology.links {
            for (end, index) in [(&link.a, 0), (&link.b, 1)] {
                if end.node != node {
                    continue;
                }
                expected.push(end.interface.clone());
                for pair in &link.addresses {
                    expected.push(if index == 0 { pair.0 } else { pair.1 }.to_string());
                }
            }
        }
        let netns = self.netns(node);
        shell::wait(
            "zebra learning the interfaces and addresses",
            Duration::from_secs(10),
            || {
                in_netns(
                    &netns,
                    &[
                        "vtysh",
                        "--vty_socket",
                        vty_dir,
                        "-d",
                        "zebra",
                        "-c",
                        "show interface brief",
                    ],
                )
                .is_ok_and(|ran| {
                    expected
                        .iter()
                        .all(|item| ran.stdout.split_whitespace().any(|word| word == item))
                })
            },
        )
    }

    fn start_weft(&self, state: &Recorder, node: &str, weft: &WeftNode) -> Result<()> {
        let dir = self.node_dir(node);
        // The control socket in the node's state directory (every node's container would have
        // /run/weft/bgpd.sock; here they share one /run).
        let socket = dir.join("bgpd.sock");
        let bgpd = binary("weft-bgpd")?.display().to_string();
        let argv = match &weft.bgpd {
            // Standalone: the node's own copy of its config, with that socket.
            Some(file) => {
                let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
                let mut config: Value =
                    serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", file.display()))?;
                config
                    .as_object_mut()
                    .with_context(|| format!("{} is not a mapping", file.display()))?
                    .insert("control_socket".into(), json!(socket));
                let copy = dir.join("bgpd.yaml");
                // JSON is YAML: the copy is read by the same parser.
                std::fs::write(&copy, serde_json::to_vec_pretty(&config)?)?;
                vec![bgpd, "--config".into(), copy.display().to_string()]
            }
            // Cluster mode: the configuration comes from the lab's store.
            None => vec![
                bgpd,
                "--store".into(),
                self.store(),
                "--nodename".into(),
                node.to_owned(),
                "--control-socket".into(),
                socket.display().to_string(),
            ],
        };
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let pid = shell::spawn_daemon(&self.netns(node), &argv, &dir.join("bgpd.log"))?;
        state.process(Started {
            node: node.to_owned(),
            program: "weft-bgpd".to_owned(),
            pid,
        })?;
        // Until `ip netns exec` has exec'd, the pid runs `ip`.
        let alive = || state::runs(pid, "weft-bgpd") || state::runs(pid, "ip");
        // In cluster mode the socket opens once the store holds the node's WeftNode: a node
        // that has not joined yet waits for it, running.
        let log = dir.join("bgpd.log");
        let waiting = || {
            weft.bgpd.is_none()
                && std::fs::read_to_string(&log).is_ok_and(|text| text.contains("waiting for the node's configuration"))
        };
        shell::wait("weft-bgpd's control socket", Duration::from_secs(15), || {
            socket.exists() || !alive() || (waiting() && state::runs(pid, "weft-bgpd"))
        })?;
        if !state::runs(pid, "weft-bgpd") {
            let log = std::fs::read_to_string(dir.join("bgpd.log")).unwrap_or_default();
            bail!("weft-bgpd exited: {}", log.trim());
        }
        if weft.felix {
            self.start_felix(state, node)?;
        }
        Ok(())
    }

    /// weft-felix on the lab's store: policy, endpoint routes and NAT for the node's pods.
    /// Ready once it has programmed its table.
    fn start_felix(&self, state: &Recorder, node: &str) -> Result<()> {
        let dir = self.node_dir(node);
        let felix = binary("weft-felix")?;
        let store = self.store();
        let netns = self.netns(node);
        let pid = shell::spawn_daemon(
            &netns,
            &[&felix.display().to_string(), "--store", &store, "--nodename", node],
            &dir.join("felix.log"),
        )?;
        state.process(Started {
            node: node.to_owned(),
            program: "weft-felix".to_owned(),
            pid,
        })?;
        let alive = || state::runs(pid, "weft-felix") || state::runs(pid, "ip");
        shell::wait("weft-felix's table inet weft", Duration::from_secs(20), || {
            !alive() || in_netns(&netns, &["nft", "list", "table", "inet", "weft"]).is_ok()
        })?;
        if !state::runs(pid, "weft-felix") {
            let log = std::fs::read_to_string(dir.join("felix.log")).unwrap_or_default();
            bail!("weft-felix exited: {}", log.trim());
        }
        Ok(())
    }

    /// The Pod objects a kubelet's API server would hold before the runtime creates the
    /// sandboxes (namespace `default`, labels `pod: <name>` and `weft.io/node: <node>`): what
    /// NetworkPolicies select.
    /// Stores the Pod objects of the pods `(node, indexes)` (and the `default` namespace).
    fn apply_pod_objects<'a>(
        &self,
        pods: impl IntoIterator<Item = (&'a str, std::ops::RangeInclusive<u32>)>,
    ) -> Result<()> {
        let mut documents = vec![json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": "default", "labels": { "kubernetes.io/metadata.name": "default" } },
        })];
        for (node, indexes) in pods {
            {
                for index in indexes {
                    let name = format!("{node}-pod{index}");
                    documents.push(json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {
                            "name": name, "namespace": "default",
                            "labels": { "pod": name, "weft.io/node": node },
                        },
                        "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "busybox" }] },
                    }));
                }
            }
        }
        if documents.len() == 1 {
            return Ok(());
        }
        let mut text = String::new();
        for document in documents {
            text.push_str("---\n");
            // JSON is YAML.
            text.push_str(&serde_json::to_string(&document)?);
            text.push('\n');
        }
        let file = state::dir(self.name()).join("pods.yaml");
        std::fs::write(&file, text)?;
        self.weftctl(&["apply", "-f", &file.display().to_string()])
            .context("storing the lab's Pod objects")?;
        Ok(())
    }

    fn add_pod(&self, state: &Recorder, node: &str, index: u32, ipv6: bool) -> Result<()> {
        let name = format!("{node}-pod{index}");
        let netns = format!("{}-pod{index}", self.netns(node));
        add_netns(state, &netns)?;
        let dir = self.node_dir(node);
        let config = json!({
            "cniVersion": "1.1.0",
            "name": "weftnet",
            "type": "weft-cni",
            "store": self.store(),
            "nodename": node,
            "lock_file": dir.join("cni.lock"),
            "log_file": dir.join("cni.log"),
            "ipam": { "type": "weft-ipam", "assign_ipv4": true, "assign_ipv6": ipv6 },
        });
        let cni = binary("weft-cni")?;
        let bin_dir = cni
            .parent()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default();
        let netns_path = format!("/run/netns/{netns}");
        let container = format!("{}-{name}", self.name());
        let args = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}");
        let ran = shell::run(
            &["ip", "netns", "exec", &self.netns(node), &cni.display().to_string()],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", &container),
                ("CNI_NETNS", &netns_path),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", &bin_dir),
                ("CNI_ARGS", &args),
            ],
            Some(&serde_json::to_vec(&config)?),
            shell::TIMEOUT,
        )?;
        let result: Value = serde_json::from_str(&ran.stdout).context("weft-cni printed no JSON result")?;
        let addresses = result["ips"]
            .as_array()
            .map(|ips| {
                ips.iter()
                    .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        state.pod(Pod {
            node: node.to_owned(),
            name,
            netns,
            addresses,
        })
    }

    /// Adds one more pod to a weft node of a running lab (its Pod object, then CNI ADD), as a
    /// runtime would for a new pod sandbox; it is removed with the lab.
    pub fn add_one_pod(&self, node: &str) -> Result<String> {
        let state = State::load(self.name())?.with_context(|| format!("lab {} is not up", self.name()))?;
        let Some((_, Role::Weft(weft))) = self.roles.iter().find(|(name, _)| name == node) else {
            bail!("no weft node named {node:?} in lab {}", self.name());
        };
        let index = (1..=role::MAX_PODS)
            .find(|index| !state.pods.iter().any(|pod| pod.name == format!("{node}-pod{index}")))
            .with_context(|| format!("node {node} has {} pods already", role::MAX_PODS))?;
        let ipv6 = weft.ipv6;
        self.apply_pod_objects([(node, index..=index)])?;
        let recorder = Recorder::new(state);
        let added = self.add_pod(&recorder, node, index, ipv6);
        recorder.into_state().save()?;
        added?;
        Ok(format!("{node}-pod{index}"))
    }

    /// Stops a node's programs and starts them again, its links, addresses and pods left as
    /// they are: `kill` sends SIGKILL (a crash), otherwise SIGTERM (a clean stop).
    pub fn restart(&self, node: &str, kill: bool) -> Result<()> {
        let mut state = State::load(self.name())?.with_context(|| format!("lab {} is not up", self.name()))?;
        let (_, role) = self
            .roles
            .iter()
            .find(|(name, _)| name == node)
            .with_context(|| format!("no node named {node:?} in lab {}", self.name()))?;
        let (stopping, others): (Vec<Started>, Vec<Started>) =
            state.processes.drain(..).partition(|started| started.node == node);
        state.processes = others;
        for started in &stopping {
            if kill {
                state::kill(started);
            } else {
                state::stop(started);
            }
        }
        // What the old programs left (pid files, a weft-bgpd socket after SIGKILL) must not be
        // mistaken for the new ones.
        let dir = self.node_dir(node);
        for leftover in ["bgpd.sock", "bird.pid", "frr/zebra.pid", "frr/bgpd.pid"] {
            let path = dir.join(leftover);
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        state.save()?;
        self.start(&Recorder::new(state), node, role)
            .with_context(|| format!("node {node}: restarting"))
    }

    /// weftctl against the lab's store.
    pub fn weftctl(&self, args: &[&str]) -> Result<String> {
        let weftctl = binary("weftctl")?;
        let store = self.store();
        let mut argv = vec![weftctl.to_str().context("binary path is not UTF-8")?, "--store", &store];
        argv.extend_from_slice(args);
        Ok(shell::run(&argv, &[], None, shell::TIMEOUT)?.stdout)
    }

    fn healthy(&self, state: &State) -> bool {
        let expected: usize = self.roles.len();
        state.namespaces.len() >= expected
            && state
                .namespaces
                .iter()
                .all(|n| Path::new("/run/netns").join(n).exists())
            && state.processes.iter().all(|p| state::runs(p.pid, &p.program))
    }

    /// Tears the lab down from its state; without state, removes the namespaces the
    /// topology would have made.
    pub fn down(&self) -> Result<()> {
        match State::load(self.name())? {
            Some(state) => self.teardown(state),
            None => {
                let mut state = State {
                    lab: self.name().to_owned(),
                    ..State::default()
                };
                for (node, role) in &self.roles {
                    state.namespaces.push(self.netns(node));
                    if let Role::Weft(weft) = role {
                        state
                            .namespaces
                            .extend((1..=weft.pods).map(|i| format!("{}-pod{i}", self.netns(node))));
                    }
                }
                self.teardown(state);
            }
        }
        let left: Vec<String> = self.leftover_namespaces();
        if !left.is_empty() {
            bail!("namespaces still present after down: {}", left.join(", "));
        }
        println!("lab {} is down", self.name());
        Ok(())
    }

    fn teardown(&self, state: State) {
        for started in state.processes.iter().rev() {
            state::stop(started);
        }
        for netns in state.namespaces.iter().rev() {
            if Path::new("/run/netns").join(netns).exists()
                && let Err(error) = shell::run(&["ip", "netns", "del", netns], &[], None, shell::TIMEOUT)
            {
                eprintln!("weft-lab: cannot remove namespace {netns}: {error:#}");
            }
        }
        let dir = state::dir(self.name());
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("weft-lab: cannot remove {}: {error}", dir.display());
        }
    }

    fn leftover_namespaces(&self) -> Vec<String> {
        let prefix = format!("clab-{}-", self.name());
        std::fs::read_dir("/run/netns")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| name.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A table of nodes, their programs and pods.
    pub fn status(&self) -> Result<String> {
        let state = State::load(self.name())?;
        let mut out = format!("lab {}: {}\n", self.name(), if state.is_some() { "up" } else { "down" });
        out.push_str(&format!(
            "{:<12} {:<6} {:<28} {:<30} {}\n",
            "NODE", "ROLE", "NAMESPACE", "PROGRAMS", "PODS"
        ));
        for (node, role) in &self.roles {
            let netns = self.netns(node);
            let present = Path::new("/run/netns").join(&netns).exists();
            let (programs, pods) = match &state {
                None => (String::from("-"), String::from("-")),
                Some(state) => (
                    state
                        .processes
                        .iter()
                        .filter(|p| &p.node == node)
                        .map(|p| {
                            let up = if state::runs(p.pid, &p.program) { "up" } else { "DOWN" };
                            format!("{}({up})", p.program)
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    state
                        .pods
                        .iter()
                        .filter(|p| &p.node == node)
                        .map(|p| format!("{}={}", p.name, p.addresses.join(",")))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            };
            let shown = if present { netns } else { format!("{netns} (missing)") };
            out.push_str(&format!(
                "{node:<12} {:<6} {shown:<28} {programs:<30} {pods}\n",
                role.describe()
            ));
        }
        Ok(out)
    }

    /// The argv to run `command` on `node` the way a user would in its container: FRR's
    /// vtysh, birdc and weftctl are pointed at the node's sockets.
    pub fn exec_argv(&self, node: &str, command: &[String]) -> Result<Vec<String>> {
        let Some((_, role)) = self.roles.iter().find(|(name, _)| name == node) else {
            bail!("no node named {node:?} in lab {}", self.name());
        };
        let dir = self.node_dir(node);
        let mut argv: Vec<String> = vec!["ip".into(), "netns".into(), "exec".into(), self.netns(node)];
        let (program, rest) = command.split_first().context("no command given")?;
        match (program.as_str(), role) {
            ("vtysh", Role::Frr { .. }) => {
                argv.extend([
                    "vtysh".into(),
                    "--vty_socket".into(),
                    dir.join("frr").display().to_string(),
                ]);
            }
            ("birdc", Role::Bird { .. }) => {
                argv.extend(["birdc".into(), "-s".into(), dir.join("bird.ctl").display().to_string()]);
            }
            ("weftctl", Role::Weft(_)) => {
                argv.extend([
                    binary("weftctl")?.display().to_string(),
                    "--socket".into(),
                    dir.join("bgpd.sock").display().to_string(),
                    "--store".into(),
                    self.store(),
                    "--nodename".into(),
                    node.to_owned(),
                ]);
            }
            _ => argv.push(program.clone()),
        }
        argv.extend(rest.iter().cloned());
        Ok(argv)
    }
}

fn add_netns(state: &Recorder, netns: &str) -> Result<()> {
    if Path::new("/run/netns").join(netns).exists() {
        bail!("namespace {netns} already exists (another lab of the same name?); `weft-lab down` it first");
    }
    state.namespace(netns)?;
    shell::run(&["ip", "netns", "add", netns], &[], None, shell::TIMEOUT)?;
    shell::run(
        &["ip", "-n", netns, "link", "set", "lo", "up"],
        &[],
        None,
        shell::TIMEOUT,
    )?;
    Ok(())
}

/// The lab's state shared by the threads of one phase; every record is saved at once, so a
/// crash of weft-lab leaves a state `down` can clean up from.
struct Recorder(Mutex<State>);

impl Recorder {
    fn new(state: State) -> Self {
        Self(Mutex::new(state))
    }

    fn into_state(self) -> State {
        self.0.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, change: impl FnOnce(&mut State)) -> Result<()> {
        let mut state = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut state);
        state.save()
    }

    fn namespace(&self, netns: &str) -> Result<()> {
        self.record(|state| state.namespaces.push(netns.to_owned()))
    }

    fn process(&self, started: Started) -> Result<()> {
        self.record(|state| state.processes.push(started))
    }

    fn pod(&self, pod: Pod) -> Result<()> {
        self.record(|state| state.pods.push(pod))
    }
}

/// Threads a phase runs on: enough to overlap the many short `ip` commands, few enough for a
/// small machine.
const WORKERS: usize = 8;

/// Runs `work` on every item on up to [`WORKERS`] threads; the first error is returned after
/// every started item has finished.
fn parallel<T: Sync>(items: &[T], work: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(items.len()) {
            scope.spawn(|| {
                loop {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { return };
                    if let Err(error) = work(item) {
                        let mut failed = failed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        failed.get_or_insert(error);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn read_pid(path: &Path, program: &str) -> Result<u32> {
    let mut pid = None;
    shell::wait(
        &format!("{program}'s pid file {}", path.display()),
        Duration::from_secs(10),
        || {
            pid = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok());
            pid.is_some()
        },
    )?;
    let pid = pid.context("no pid")?;
    if !state::runs(pid, program) {
        bail!("{program} (pid {pid}) exited right after starting; see its log");
    }
    Ok(pid)
}

/// weft's programs: beside weft-lab itself (one build), or in `WEFT_LAB_BIN_DIR`.
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("WEFT_LAB_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .parent()
            .context("weft-lab has no directory")?
            .to_path_buf(),
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{name} not found in {} (build the workspace: cargo build --release)",
            dir.display()
        );
    }
    Ok(path)
}
