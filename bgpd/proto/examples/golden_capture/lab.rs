//! The capture lab: two network namespaces joined by a veth pair, one for the real peer and one
//! for the scripted speaker, and everything needed to tear them down again.
//!
//! Owns the namespaces (named `wgc<pid>-<peer>-peer` and `wgc<pid>-<peer>-us`, so two runs never
//! share a name), the processes started in them (killed by pid on drop, also when the capture
//! panics) and the run directory. Addresses: 198.18.0.1/30 and 2001:db8::1/64 on the peer's side,
//! 198.18.0.2/30 and 2001:db8::2/64 on ours; nothing else, and nothing in the host namespace.
//!
//! Must never: kill a process it did not start, wait without a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The peer's IPv4 address on the link.
pub const PEER_V4: &str = "198.18.0.1";
/// Our IPv4 address on the link.
pub const US_V4: &str = "198.18.0.2";
/// The peer's IPv6 address on the link.
pub const PEER_V6: &str = "2001:db8::1";
/// Our IPv6 address on the link.
pub const US_V6: &str = "2001:db8::2";

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Runs a command to completion; an error names the command and carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output: Output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program} {args:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?} exited with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command inside a namespace.
pub fn run_in(namespace: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["netns", "exec", namespace, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Polls `check` every 250 ms until it returns `Some` or `timeout` passes; `what` names what was
/// awaited in the error.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        thread::sleep(Duration::from_millis(250));
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn kill(signal: &str, pid: u32) {
    // Best effort: the process may have gone already.
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// One peer's namespaces, processes and directory; dropping it removes them all.
#[derive(Debug)]
pub struct Lab {
    /// The real peer's namespace.
    pub peer_namespace: String,
    /// The scripted speaker's namespace.
    pub us_namespace: String,
    /// Configuration, sockets, pid files and logs.
    pub dir: PathBuf,
    pid_files: Vec<PathBuf>,
    children: Vec<Child>,
    namespaces_created: Vec<String>,
    /// Whether dropping this value tears the lab down (the process that created it), or not (the
    /// scripted speaker, which only borrows the lab).
    owner: bool,
    /// Keep the run directory (configuration and logs) when tearing down, for a failed capture.
    keep_dir: bool,
}

impl Lab {
    /// Creates both namespaces and the link between them.
    pub fn create(peer: &str) -> Result<Self> {
        let prefix = format!("wgc{}-{peer}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let mut lab = Self {
            peer_namespace: format!("{prefix}-peer"),
            us_namespace: format!("{prefix}-us"),
            dir,
            pid_files: Vec::new(),
            children: Vec::new(),
            namespaces_created: Vec::new(),
            owner: true,
            keep_dir: false,
        };
        std::fs::create_dir_all(&lab.dir)?;
        for namespace in [lab.peer_namespace.clone(), lab.us_namespace.clone()] {
            run("ip", &["netns", "add", &namespace])?;
            lab.namespaces_created.push(namespace.clone());
            run_in(&namespace, "ip", &["link", "set", "lo", "up"])?;
            run_in(
                &namespace,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            )?;
        }
        let (peer_ns, us_ns) = (lab.peer_namespace.clone(), lab.us_namespace.clone());
        run(
            "ip",
            &[
                "link", "add", "us0", "netns", &us_ns, "type", "veth", "peer", "name", "peer0", "netns", &peer_ns,
            ],
        )?;
        for (namespace, device, v4, v6) in [(&peer_ns, "peer0", PEER_V4, PEER_V6), (&us_ns, "us0", US_V4, US_V6)] {
            run_in(namespace, "ip", &["addr", "add", &format!("{v4}/30"), "dev", device])?;
            run_in(
                namespace,
                "ip",
                &["addr", "add", &format!("{v6}/64"), "dev", device, "nodad"],
            )?;
            run_in(namespace, "ip", &["link", "set", device, "up"])?;
        }
        poll(
            "link-local addresses out of tentative state",
            Duration::from_secs(10),
            || {
                let tentative = run_in(&us_ns, "ip", &["-6", "addr", "show", "tentative"]).ok()?
                    + &run_in(&peer_ns, "ip", &["-6", "addr", "show", "tentative"]).ok()?;
                tentative.trim().is_empty().then_some(())
            },
        )?;
        Ok(lab)
    }

    /// The lab another process created, to run commands in; dropping it removes nothing.
    pub fn attach(peer_namespace: String, us_namespace: String, dir: PathBuf) -> Self {
        Self {
            peer_namespace,
            us_namespace,
            dir,
            pid_files: Vec::new(),
            children: Vec::new(),
            namespaces_created: Vec::new(),
            owner: false,
            keep_dir: false,
        }
    }

    /// Keeps the run directory when the lab is torn down (the capture failed: its logs matter).
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }

    /// A path in the run directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Remembers a daemon's pid file so the daemon is killed on drop.
    pub fn track_pid_file(&mut self, pid_file: PathBuf) {
        self.pid_files.push(pid_file);
    }

    /// Remembers a child process so it is killed on drop.
    pub fn track_child(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Runs a command inside the peer's namespace.
    pub fn in_peer(&self, program: &str, args: &[&str]) -> Result<String> {
        run_in(&self.peer_namespace, program, args)
    }

    fn started_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .pid_files
            .iter()
            .filter_map(|file| std::fs::read_to_string(file).ok())
            .filter_map(|text| text.trim().parse().ok())
            .collect();
        pids.extend(self.children.iter().map(Child::id));
        // Anything else still running in our namespaces was started by us too (a daemon that
        // forked before writing its pid file, a control client).
        for namespace in &self.namespaces_created {
            if let Ok(listed) = run("ip", &["netns", "pids", namespace]) {
                pids.extend(listed.lines().filter_map(|line| line.trim().parse::<u32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let pids = self.started_pids();
        for pid in &pids {
            kill("-TERM", *pid);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|pid| process_alive(*pid)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        for pid in pids.iter().filter(|pid| process_alive(**pid)) {
            kill("-KILL", *pid);
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        for namespace in &self.namespaces_created {
            if let Err(error) = run("ip", &["netns", "del", namespace]) {
                eprintln!("cleanup: {error}");
            }
        }
        if self.keep_dir || thread::panicking() {
            eprintln!("cleanup: logs and configuration kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
