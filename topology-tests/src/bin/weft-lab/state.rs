//! What a lab made, written after every step to `/run/weft-lab/<lab>/state.json`, so that
//! `down` (or the cleanup of a failed `up`) removes exactly that: the namespaces it added and
//! the processes it started, by pid, after checking the pid still runs the same program.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Where labs keep their state (tmpfs: gone at reboot, like the namespaces).
pub const STATE_ROOT: &str = "/run/weft-lab";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub lab: String,
    /// Namespaces in the order they were made (removed in reverse).
    pub namespaces: Vec<String>,
    pub processes: Vec<Started>,
    pub pods: Vec<Pod>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    pub node: String,
    pub program: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub node: String,
    pub name: String,
    pub netns: String,
    pub addresses: Vec<String>,
}

/// The lab's state directory.
pub fn dir(lab: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(lab)
}

impl State {
    pub fn load(lab: &str) -> Result<Option<Self>> {
        let path = dir(lab).join("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is corrupt; remove it and the lab's namespaces by hand",
                    path.display()
                )
            })?)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Written to a temporary file and renamed: a crash leaves the old or the new state.
    pub fn save(&self) -> Result<()> {
        let dir = dir(&self.lab);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let temporary = dir.join("state.json.new");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temporary, dir.join("state.json"))?;
        Ok(())
    }
}

/// Does `pid` still run `program` (its executable's file name)? A reused pid is not ours.
pub fn runs(pid: u32, program: &str) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    // A replaced binary shows as "NAME (deleted)".
    name == program || name.strip_suffix(" (deleted)") == Some(program)
}

/// SIGTERM, a bounded wait, then SIGKILL; only if the pid still runs `program`.
pub fn stop(started: &Started) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    // Right after a start the pid may still run `ip netns exec`, which execs the program.
    let ours = || runs(started.pid, &started.program) || runs(started.pid, "ip");
    if !ours() {
        return;
    }
    let Ok(raw) = i32::try_from(started.pid) else { return };
    let pid = Pid::from_raw(raw);
    let _ = kill(pid, Signal::SIGTERM);
    if crate::shell::wait("stop", Duration::from_secs(5), || !ours()).is_err() {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = crate::shell::wait("kill", Duration::from_secs(2), || !ours());
    }
}

/// SIGKILL right away (a crash), bounded wait; only if the pid still runs `program`.
pub fn kill(started: &Started) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if !runs(started.pid, &started.program) {
        return;
    }
    let Ok(raw) = i32::try_from(started.pid) else { return };
    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    let _ = crate::shell::wait("kill", Duration::from_secs(2), || !runs(started.pid, &started.program));
}
