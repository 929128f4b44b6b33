//! The upstream Kubernetes NetworkPolicy e2e model on network namespaces: one node namespace
//! running weft-felix against a file store, nine pod namespaces (x, y, z × a, b, c) wired the
//! way weft-cni wires pods (veth `wft<ns><pod>`, /32 host route, proxy ARP), each serving TCP
//! and UDP on ports 80 and 81 from listeners this process opened inside the pod namespace.
//! Probes run in parallel, each bounded by [`PROBE_TIMEOUT`].

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_api::store::{Key, Kind, Store};
use weft_topology_tests::{Netns, Process, Route, wait_until};

pub const NODE: &str = "node-1";
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// One probe target: protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Tcp(u16),
    Udp(u16),
}

pub const PROBES: [Probe; 4] = [Probe::Tcp(80), Probe::Tcp(81), Probe::Udp(80), Probe::Udp(81)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: &'static str,
    pub name: &'static str,
}

impl Pod {
    pub fn all() -> Vec<Pod> {
        NAMESPACES
            .iter()
            .flat_map(|namespace| PODS.iter().map(move |name| Pod { namespace, name }))
            .collect()
    }

    pub fn address(&self) -> IpAddr {
        let n = NAMESPACES.iter().position(|n| *n == self.namespace).unwrap() as u8;
        let p = PODS.iter().position(|p| *p == self.name).unwrap() as u8;
        IpAddr::from([198, 18, 1 + n, 1 + p])
    }

    pub fn interface(&self) -> String {
        format!("wft{}{}", self.namespace, self.name)
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub node: Netns,
    pub pods: Vec<(Pod, Netns)>,
    pub felix: Option<Process>,
}

pub fn weft_felix() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-felix"))
}

fn kind(api_version: &str, kind: &str) -> Kind {
    weft_api::kinds::find(api_version, kind).unwrap()
}

impl Cluster {
    /// The node, nine pods with servers, their Namespace/Pod/WorkloadEndpoint objects, and a
    /// pool (natOutgoing) in the store. felix is not started yet.
    pub async fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let store = weft_api::store::open(&format!("file:{}", dir.path().join("store").display()))
            .await
            .unwrap();
        let node = Netns::new("node").unwrap();
        node.enable_forwarding().unwrap();
        let mut pods = Vec::new();
        for pod in Pod::all() {
            let netns = Netns::new(&format!("pod-{}-{}", pod.namespace, pod.name)).unwrap();
            node.veth(&pod.interface(), &netns, "eth0").unwrap();
            netns.add_address("eth0", &format!("{}/32", pod.address())).unwrap();
            netns.add_route(&Route::to("198.18.0.0/15").dev("eth0")).unwrap();
            node.add_route(&Route::to(&format!("{}/32", pod.address())).dev(&pod.interface()))
                .unwrap();
            node.set_sysctl(&format!("net/ipv4/conf/{}/proxy_arp", pod.interface()), "1")
                .unwrap();
            node.set_sysctl(&format!("net/ipv4/neigh/{}/proxy_delay", pod.interface()), "0")
                .unwrap();
            serve(&netns);
            pods.push((pod, netns));
        }
        let cluster = Cluster {
            dir,
            store,
            node,
            pods,
            felix: None,
        };
        cluster
            .put(
                json!({"apiVersion": "weft.io/v1", "kind": "IPPool", "metadata": {"name": "pods"},
                        "spec": {"cidr": "198.18.0.0/16", "natOutgoing": true}}),
            )
            .await;
        for namespace in NAMESPACES {
            cluster
                .put(json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": namespace, "labels": {"ns": namespace}}}))
                .await;
        }
        for (pod, _) in &cluster.pods {
            cluster.put(pod_object(pod, pod.name)).await;
            cluster
                .put(json!({"apiVersion": "weft.io/v1", "kind": "WorkloadEndpoint",
                    "metadata": {"namespace": pod.namespace, "name": format!("{NODE}-{}-eth0", pod.name)},
                    "spec": {"node": NODE, "orchestrator": "k8s", "pod": pod.name, "endpoint": "eth0",
                             "interfaceName": pod.interface(), "ipNetworks": [format!("{}/32", pod.address())]}}))
                .await;
        }
        cluster
    }

    pub fn setting(&self) -> String {
        format!("file:{}", self.dir.path().join("store").display())
    }

    /// Starts weft-felix in the node namespace and waits until it has programmed the table.
    pub fn start_felix(&mut self) {
        let felix = self
            .node
            .command(&weft_felix().display().to_string())
            .args([
                "--store",
                &self.setting(),
                "--nodename",
                NODE,
                "--resync-seconds",
                "0.5",
                "--debounce-ms",
                "10",
                "--log",
                "debug",
                "--metrics-address",
                "127.0.0.1:9091",
            ])
            .spawn()
            .unwrap();
        self.felix = Some(felix);
        let node = &self.node;
        wait_until(
            "weft-felix programs inet weft",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                Ok::<_, weft_topology_tests::Error>(
                    node.run(&["nft", "list", "map", "inet", "weft", "to-endpoint"])
                        .map(|o| o.stdout.contains("wftzc"))
                        .unwrap_or(false),
                )
            },
        )
        .unwrap_or_else(|e| panic!("{e}\nfelix stderr:\n{}", self.felix_log()));
    }

    /// felix's `/metrics` text, fetched inside the node namespace.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        self.node
            .within(|| {
                let mut stream =
                    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], 9091)), Duration::from_secs(5))
                        .unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nhost: felix\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let mut text = String::new();
                stream.read_to_string(&mut text).unwrap();
                text
            })
            .unwrap()
    }

    pub fn felix_log(&self) -> String {
        self.felix.as_ref().and_then(|f| f.stderr().ok()).unwrap_or_default()
    }

    /// Creates or replaces an object (as `weftctl apply -f` does).
    pub async fn put(&self, value: Value) {
        let kind = kind(value["apiVersion"].as_str().unwrap(), value["kind"].as_str().unwrap());
        let key = Key::of_value(&kind, &value).unwrap();
        match self.store.get(&key).await.unwrap() {
            Some(existing) => {
                self.store.update(&kind, value, existing.revision).await.unwrap();
            }
            None => {
                self.store.create(&kind, value).await.unwrap();
            }
        }
    }

    pub async fn delete_policy(&self, namespace: &str, name: &str) {
        let kind = kind("networking.k8s.io/v1", "NetworkPolicy");
        self.store
            .delete(&Key::new(&kind, Some(namespace), name), None)
            .await
            .unwrap();
    }

    /// Every NetworkPolicy removed.
    pub async fn clear_policies(&self) {
        let kind = kind("networking.k8s.io/v1", "NetworkPolicy");
        for object in self.store.list(&kind, None).await.unwrap().items {
            self.store.delete(&object.key, None).await.unwrap();
        }
    }

    fn netns(&self, pod: &Pod) -> &Netns {
        &self.pods.iter().find(|(p, _)| p == pod).unwrap().1
    }

    /// The whole 9×9 matrix for every probe, in parallel.
    pub fn probe_all(&self) -> Vec<(Probe, Pod, Pod, bool)> {
        let cases: Vec<(Probe, Pod, Pod)> = PROBES
            .iter()
            .flat_map(|probe| {
                Pod::all()
                    .into_iter()
                    .flat_map(move |from| Pod::all().into_iter().map(move |to| (*probe, from, to)))
            })
            .collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = cases
                .iter()
                .map(|(probe, from, to)| {
                    let netns = self.netns(from);
                    let (probe, from, to) = (*probe, *from, *to);
                    scope.spawn(move || {
                        (
                            probe,
                            from,
                            to,
                            netns.within(move || reach(probe, to.address())).unwrap(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// Probes until the matrix is `expected` (self-traffic never leaves a pod: always allowed),
    /// for at most `deadline`; panics with a readable diff.
    pub fn expect(&self, case: &str, expected: impl Fn(Probe, Pod, Pod) -> bool) {
        let expected = |probe, from: Pod, to: Pod| from == to || expected(probe, from, to);
        let started = std::time::Instant::now();
        let mut last = Vec::new();
        for _ in 0..40 {
            last = self.probe_all();
            if last
                .iter()
                .all(|(probe, from, to, ok)| expected(*probe, *from, *to) == *ok)
            {
                return;
            }
            // Generous: a loaded CI machine may take seconds to apply a batch; a wrong matrix
            // still fails, only later.
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        let mut report = format!("case {case:?}: reachability differs (. allowed, X denied, ! wrong)\n");
        for probe in PROBES {
            report.push_str(&format!("{probe:?}\n        "));
            for to in Pod::all() {
                report.push_str(&format!("{}{} ", to.namespace, to.name));
            }
            report.push('\n');
            for from in Pod::all() {
                report.push_str(&format!("  {}  ", from.id()));
                for to in Pod::all() {
                    let ok = last
                        .iter()
                        .find(|(p, f, t, _)| *p == probe && *f == from && *t == to)
                        .map(|r| r.3)
                        .unwrap();
                    let want = expected(probe, from, to);
                    let mark = match (ok, ok == want) {
                        (_, false) => '!',
                        (true, true) => '.',
                        (false, true) => 'X',
                    };
                    report.push_str(&format!(" {mark}  "));
                }
                report.push('\n');
            }
        }
        report.push_str(&format!(
            "wrong: {}\n",
            last.iter()
                .filter(|(probe, from, to, ok)| expected(*probe, *from, *to) != *ok)
                .map(|(probe, from, to, ok)| format!(
                    "{probe:?} {} -> {} got {}",
                    from.id(),
                    to.id(),
                    if *ok { "allowed" } else { "denied" }
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        let table = self
            .node
            .run(&["nft", "list", "table", "inet", "weft"])
            .map(|o| o.stdout)
            .unwrap_or_default();
        panic!(
            "{report}\nnft list table inet weft:\n{table}\nfelix log (tail):\n{}",
            tail(&self.felix_log(), 40)
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Pod object labelled `pod=<label>`, with named container ports serve-80-tcp … serve-81-udp.
pub fn pod_object(pod: &Pod, label: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": pod.namespace, "name": pod.name, "labels": {"pod": label}},
        "spec": {"nodeName": NODE, "containers": [{"name": "server", "image": "busybox", "ports": [
            {"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"},
            {"name": "serve-81-tcp", "containerPort": 81, "protocol": "TCP"},
            {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
            {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"}]}]}})
}

pub fn policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"namespace": namespace, "name": name}, "spec": spec})
}

/// TCP and UDP servers on 80 and 81, bound inside `netns`, served by threads of this process
/// for the rest of the test run (they end with it).
fn serve(netns: &Netns) {
    for port in [80u16, 81] {
        let (tcp, udp) = netns
            .within(move || {
                let any = SocketAddr::from(([0, 0, 0, 0], port));
                (TcpListener::bind(any).unwrap(), UdpSocket::bind(any).unwrap())
            })
            .unwrap();
        std::thread::spawn(move || {
            for stream in tcp.incoming() {
                drop(stream);
            }
        });
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            while let Ok((n, peer)) = udp.recv_from(&mut buffer) {
                let _ = udp.send_to(&buffer[..n], peer);
            }
        });
    }
}

/// One probe from the calling thread's namespace: a TCP handshake, or a UDP echo.
pub fn reach(probe: Probe, to: IpAddr) -> bool {
    match probe {
        Probe::Tcp(port) => TcpStream::connect_timeout(&SocketAddr::new(to, port), PROBE_TIMEOUT).is_ok(),
        Probe::Udp(port) => {
            let socket = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).unwrap();
            socket.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
            if socket.send_to(b"ping", SocketAddr::new(to, port)).is_err() {
                return false;
            }
            let mut buffer = [0u8; 8];
            match socket.recv_from(&mut buffer) {
                Ok((n, _)) => &buffer[..n] == b"ping",
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
                Err(_) => false,
            }
        }
    }
}
