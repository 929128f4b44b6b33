//! A second real container runtime calls `weft-cni`: containerd (Debian's 1.6) with
//! `ctr run --cni` runs two containers on a weft network inside a node namespace; they ping
//! each other and the node, and when they stop everything is given back (no veth left, the
//! addresses released, the endpoint records gone). ctr's calls go to the plugin unmodified.
//!
//! ctr calls CNI itself, from fixed paths: the first file in `/etc/cni/net.d`, plugins in
//! `/opt/cni/bin`. So each ctr runs in a private mount namespace (`unshare --mount
//! --propagation private`) where directories of the test are bound over those paths: the host's
//! files are never seen nor touched. containerd runs with its root, state and socket in a
//! temporary directory, the CRI plugin disabled, inside the node namespace, and is ended with
//! it. The image is made here, without a registry: busybox-static in an OCI image layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{weft_network, write};
use serde_json::{Value, json};
use weft_api::StoreExt;
use weft_api::resources::WorkloadEndpoint;
use weft_ipam::Allocator;
use weft_topology_tests::{Netns, Process, require_netns, wait_for, wait_until};

const NODE_V4: &str = "198.19.0.1";
const IMAGE: &str = "localhost/weft-busybox:1";

fn found(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).exists()))
        .unwrap_or(false)
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Stores `bytes` as a blob of the OCI layout in `layout`; its descriptor.
fn blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let staged = layout.join("blob.tmp");
    std::fs::write(&staged, bytes).unwrap();
    let digest = sha256(&staged);
    std::fs::rename(&staged, layout.join("blobs/sha256").join(&digest)).unwrap();
    json!({"mediaType": media_type, "digest": format!("sha256:{digest}"), "size": bytes.len()})
}

/// An OCI image archive holding a root filesystem with busybox-static, named [`IMAGE`].
fn busybox_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "ip", "ping", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join(format!("bin/{applet}"))).unwrap();
    }
    let layer = dir.join("layer.tar");
    let packed = Command::new("tar")
        .args([
            "-C",
            &rootfs.display().to_string(),
            "-cf",
            &layer.display().to_string(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(packed.success());
    let layout = dir.join("oci");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = blob(
        &layout,
        "application/vnd.oci.image.layer.v1.tar",
        &std::fs::read(&layer).unwrap(),
    );
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    });
    let config = blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let mut manifest = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    manifest["annotations"] = json!({
        "io.containerd.image.name": IMAGE,
        "org.opencontainers.image.ref.name": "1",
    });
    write(
        &layout.join("index.json"),
        &json!({"schemaVersion": 2, "manifests": [manifest]}).to_string(),
    );
    write(&layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#);
    let archive = dir.join("image.tar");
    let packed = Command::new("tar")
        .args([
            "-C",
            &layout.display().to_string(),
            "-cf",
            &archive.display().to_string(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(packed.success());
    archive
}

/// A bind mount that makes `target` show `source`'s content in a private mount namespace.
/// Where `target` does not exist, its deepest existing ancestor is covered instead by a
/// directory of the test that holds the same relative path (nothing is created on the host).
fn cover(work: &Path, source: &Path, target: &Path) -> (PathBuf, PathBuf) {
    let mut mount_point = target.to_owned();
    while !mount_point.exists() {
        mount_point = mount_point.parent().unwrap().to_owned();
    }
    assert!(
        mount_point.components().count() > 1,
        "will not cover / to provide {}",
        target.display()
    );
    let relative = target.strip_prefix(&mount_point).unwrap();
    if relative.as_os_str().is_empty() {
        return (source.to_owned(), mount_point);
    }
    let stand_in = work.join(format!("cover-{}", mount_point.display().to_string().replace('/', "-")));
    let inner = stand_in.join(relative);
    std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(source, &inner).unwrap();
    (stand_in, mount_point)
}

/// containerd, ended by its pid when the test ends (also on failure), after its containers:
/// their shims would outlive it.
struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    namespace: String,
    containers: Vec<&'static str>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            let _ = Command::new("timeout")
                .args([
                    "30",
                    "ctr",
                    "-a",
                    &self.socket.display().to_string(),
                    "-n",
                    &self.namespace,
                ])
                .args(args)
                .output();
        };
        for name in &self.containers {
            ctr(&["tasks", "kill", "-s", "KILL", name]);
            ctr(&["tasks", "delete", "--force", name]);
            ctr(&["containers", "delete", name]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // runc's state directory of this run's namespace, once empty.
        let _ = std::fs::remove_dir(Path::new("/run/containerd/runc").join(&self.namespace));
    }
}

struct Ctr {
    socket: PathBuf,
    namespace: String,
    /// (source, mount point) pairs bound in ctr's private mount namespace.
    binds: Vec<(PathBuf, PathBuf)>,
}

impl Ctr {
    fn args(&self) -> Vec<String> {
        vec![
            "ctr".into(),
            "-a".into(),
            self.socket.display().to_string(),
            "-n".into(),
            self.namespace.clone(),
        ]
    }

    /// ctr in the node namespace, in a private mount namespace with the CNI paths covered.
    fn command<'a>(&self, node: &'a Netns, args: &[&str]) -> weft_topology_tests::NetnsCommand<'a> {
        let mut script = String::from("set -e; ");
        for (source, target) in &self.binds {
            script.push_str(&format!("mount --bind '{}' '{}'; ", source.display(), target.display()));
        }
        script.push_str("exec \"$@\"");
        let mut argv: Vec<String> = vec![
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            script,
            "ctr-in-private-mounts".into(),
        ];
        argv.extend(self.args());
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        node.command("unshare").args(argv).timeout(Duration::from_secs(120))
    }

    fn ok(&self, node: &Netns, args: &[&str]) -> String {
        let output = self.command(node, args).output().unwrap();
        assert!(
            output.success(),
            "ctr {args:?} failed: {} {}",
            output.stdout,
            output.stderr
        );
        output.stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_two_containers_on_weft_that_ping_each_other_and_are_removed_cleanly() {
    let Some(_support) = require_netns() else { return };
    let installed =
        found("containerd") && found("ctr") && found("runc") && found("unshare") && Path::new("/bin/busybox").exists();
    if !weft_api::testing::require(
        installed,
        "containerd, runc and busybox-static",
        "bash scripts/install-deps.sh",
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_owned();
    for sub in ["bin", "net.d"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_weft-cni"), dir.join("bin/weft-cni")).unwrap();
    // go-cni also sets up the container's lo with the reference loopback plugin.
    std::os::unix::fs::symlink("/usr/lib/cni/loopback", dir.join("bin/loopback")).unwrap();

    let store = weft_network(&dir, "198.18.10.0/24", &dir.join("net.d/10-weftnet.conflist")).await;

    let node = Netns::new("ctrhost").unwrap();
    node.ip(&["address", "add", &format!("{NODE_V4}/32"), "dev", "lo"])
        .unwrap();
    let socket = dir.join("containerd.sock");
    write(
        &dir.join("containerd.toml"),
        &format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
            dir.join("root").display(),
            dir.join("state").display(),
            socket.display()
        ),
    );
    // In the root network namespace, like the recipe: `ip netns exec` would remount /sys and
    // hide the cgroup mounts runc needs. It needs no network; its containers get theirs by CNI.
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    // A containerd namespace of this run: runc keeps its state under /run/containerd/runc/NS.
    let namespace = format!("weft-{}", std::process::id());
    let containerd = Daemon {
        child: Command::new("containerd")
            .args(["--config", &dir.join("containerd.toml").display().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
        socket: socket.clone(),
        namespace: namespace.clone(),
        containers: vec!["weft-a", "weft-b"],
    };
    let ctr = Ctr {
        socket: socket.clone(),
        namespace: namespace.clone(),
        binds: vec![
            cover(&dir, &dir.join("net.d"), Path::new("/etc/cni/net.d")),
            cover(&dir, &dir.join("bin"), Path::new("/opt/cni/bin")),
        ],
    };
    // libcni's result cache: ours too, where the host has one to cover (else it makes it).
    let mut ctr = ctr;
    if Path::new("/var/lib/cni").is_dir() {
        std::fs::create_dir_all(dir.join("cni-cache")).unwrap();
        ctr.binds.push((dir.join("cni-cache"), PathBuf::from("/var/lib/cni")));
    }
    wait_until(
        "containerd answers",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok::<_, std::io::Error>(ctr.command(&node, &["version"]).output().is_ok_and(|o| o.success())),
    )
    .unwrap();
    let image = busybox_image(&dir);
    ctr.ok(&node, &["images", "import", &image.display().to_string()]);

    // `ctr run` without -d: it stays with the task, and when the task ends it calls CNI DEL
    // and (with --rm) deletes the container.
    let runs: Vec<Process> = ["weft-a", "weft-b"]
        .iter()
        .map(|name| {
            ctr.command(&node, &["run", "--rm", "--cni", IMAGE, name, "sleep", "300"])
                .spawn()
                .unwrap()
        })
        .collect();
    let address = |name: &str| -> String {
        wait_for(
            &format!("{name} runs with an address"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let output = ctr
                    .command(
                        &node,
                        &[
                            "tasks",
                            "exec",
                            "--exec-id",
                            &format!("ip-{name}"),
                            name,
                            "ip",
                            "-4",
                            "-o",
                            "addr",
                            "show",
                            "eth0",
                        ],
                    )
                    .output()
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(
                    output
                        .stdout
                        .split_whitespace()
                        .skip_while(|w| *w != "inet")
                        .nth(1)
                        .map(|a| a.split('/').next().unwrap_or_default().to_owned()),
                )
            },
        )
        .unwrap_or_else(|error| {
            panic!(
                "{error}; ctr: {:?}; log: {}",
                runs.iter().map(|r| r.stderr().unwrap_or_default()).collect::<Vec<_>>(),
                std::fs::read_to_string(dir.join("cni.log")).unwrap_or_default()
            )
        })
    };
    let (a, b) = (address("weft-a"), address("weft-b"));
    assert!(
        a.starts_with("198.18.10.") && b.starts_with("198.18.10.") && a != b,
        "{a} {b}"
    );
    for (from, to) in [("weft-a", b.as_str()), ("weft-b", a.as_str()), ("weft-a", NODE_V4)] {
        ctr.ok(
            &node,
            &[
                "tasks",
                "exec",
                "--exec-id",
                &format!("ping-{from}"),
                from,
                "ping",
                "-c",
                "2",
                "-W",
                "5",
                to,
            ],
        );
    }
    let (endpoints, _) = store.list_as::<WorkloadEndpoint>(None).await.unwrap();
    assert_eq!(endpoints.len(), 2, "one endpoint per container");
    let allocator = Allocator::new(store.clone());
    let handles: Vec<String> = endpoints
        .iter()
        .map(|e| format!("weftnet.{}.{}", e.spec.container_id, e.spec.endpoint))
        .collect();
    for handle in &handles {
        assert_eq!(
            allocator.addresses_of(handle).await.unwrap().len(),
            1,
            "{handle} holds the address"
        );
    }
    let links = node.ip(&["-o", "link", "show"]).unwrap().stdout;
    assert_eq!(links.matches("wft").count(), 2, "{links}");

    // Stop both: each ctr run sees its task end, calls DEL and removes the container.
    for (name, run) in ["weft-a", "weft-b"].iter().zip(&runs) {
        ctr.ok(&node, &["tasks", "kill", "-s", "KILL", name]);
        // ctr exits with the task's status (137: killed); what matters is what it cleaned up.
        run.wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|error| panic!("ctr run {name} did not end: {error}"));
    }
    let links = node.ip(&["-o", "link", "show"]).unwrap().stdout;
    assert!(!links.contains("wft"), "DEL removed the veths: {links}");
    let (endpoints, _) = store.list_as::<WorkloadEndpoint>(None).await.unwrap();
    assert!(endpoints.is_empty(), "and the endpoint records");
    for handle in &handles {
        assert!(
            allocator.addresses_of(handle).await.unwrap().is_empty(),
            "{handle} released"
        );
    }
    assert!(
        ctr.ok(&node, &["containers", "ls", "-q"]).trim().is_empty(),
        "the containers are gone"
    );
    let log = std::fs::read_to_string(dir.join("cni.log")).unwrap();
    assert!(log.contains("attached") && log.contains("detached"), "{log}");
    drop(containerd);
}
