//! A real container runtime calls `weft-cni`: podman (Debian's 4.3, `network_backend = "cni"`)
//! runs two containers on a weft network inside a node namespace; they ping each other and the
//! node, and `podman rm` gives everything back. podman's calls (VERSION, ADD, DEL) go to the
//! plugin unmodified. Skips when podman is not installed (`apt-get install podman runc
//! busybox-static`); see /work/shared/REAL-COMPONENTS.md for why each setting is there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{weft_network, write};
use weft_api::StoreExt;
use weft_api::resources::WorkloadEndpoint;
use weft_topology_tests::{Netns, require_netns};

const NODE_V4: &str = "198.19.0.1";

fn found(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).exists()))
        .unwrap_or(false)
}

/// podman with private state under `dir`, started in the node's network namespace.
struct Podman {
    dir: PathBuf,
    netns: PathBuf,
}

impl Podman {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let root = self.dir.join("root");
        let runroot = self.dir.join("runroot");
        let tmpdir = self.dir.join("tmp");
        let output = Command::new("timeout")
            .arg("120")
            .arg("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .arg("podman")
            .args(["--root", &root.display().to_string()])
            .args(["--runroot", &runroot.display().to_string()])
            .args(["--tmpdir", &tmpdir.display().to_string()])
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "podman {args:?} failed: {stdout} {stderr}");
        stdout
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_runs_two_containers_on_weft_that_ping_each_other_and_are_removed_cleanly() {
    let Some(_support) = require_netns() else { return };
    let installed = found("podman") && found("runc") && Path::new("/bin/busybox").exists();
    if !weft_api::testing::require(
        installed,
        "podman, runc and busybox-static",
        "bash scripts/install-deps.sh",
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_owned();
    for sub in ["plugins", "net.d", "rootfs/bin", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_weft-cni"), dir.join("plugins/weft-cni")).unwrap();

    let store = weft_network(&dir, "198.18.9.0/24", &dir.join("net.d/weftnet.conflist")).await;
    write(
        &dir.join("containers.conf"),
        &format!(
            r#"[containers]
netns = "bridge"
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{netd}"
default_network = "weftnet"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"#,
            plugins = dir.join("plugins").display(),
            netd = dir.join("net.d").display(),
        ),
    );

    let node = Netns::new("podhost").unwrap();
    node.ip(&["address", "add", &format!("{NODE_V4}/32"), "dev", "lo"])
        .unwrap();
    let podman = Podman {
        dir: dir.clone(),
        netns: node.path().to_owned(),
    };

    // An image without a registry: busybox-static in a root filesystem.
    std::fs::copy("/bin/busybox", dir.join("rootfs/bin/busybox")).unwrap();
    for applet in ["sh", "ip", "ping", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join(format!("rootfs/bin/{applet}"))).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let packed = Command::new("tar")
        .args([
            "-C",
            &dir.join("rootfs").display().to_string(),
            "-cf",
            &tar.display().to_string(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(packed.success());
    podman.ok(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        &tar.display().to_string(),
        "localhost/weft-busybox:1",
    ]);

    for name in ["weft-a", "weft-b"] {
        podman.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "weftnet",
            "localhost/weft-busybox:1",
            "sleep",
            "300",
        ]);
    }
    let address = |name: &str| {
        podman.ok(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"weftnet\").IPAddress}}",
            name,
        ])
    };
    let (a, b) = (address("weft-a"), address("weft-b"));
    assert!(
        a.starts_with("198.18.9.") && b.starts_with("198.18.9.") && a != b,
        "{a} {b}"
    );
    podman.ok(&["exec", "weft-a", "ping", "-c", "2", "-W", "5", &b]);
    podman.ok(&["exec", "weft-b", "ping", "-c", "2", "-W", "5", &a]);
    podman.ok(&["exec", "weft-a", "ping", "-c", "2", "-W", "5", NODE_V4]);
    let (endpoints, _) = store.list_as::<WorkloadEndpoint>(None).await.unwrap();
    assert_eq!(endpoints.len(), 2, "one endpoint per container");

    podman.ok(&["rm", "--force", "--time", "0", "weft-a", "weft-b"]);
    let links = node.ip(&["-o", "link", "show"]).unwrap().stdout;
    assert!(!links.contains("wft"), "podman rm removed the veths: {links}");
    let (endpoints, _) = store.list_as::<WorkloadEndpoint>(None).await.unwrap();
    assert!(endpoints.is_empty(), "and the endpoint records");
    let log = std::fs::read_to_string(dir.join("cni.log")).unwrap();
    assert!(log.contains("attached") && log.contains("detached"), "{log}");
}
