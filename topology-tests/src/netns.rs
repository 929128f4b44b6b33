//! Test network namespaces: unique per run, removed when dropped.
//!
//! Contract: a [`Netns`] is a named network namespace (`/run/netns/NAME`, made with
//! `ip netns add`) whose name is `wk<pid>-<n>-<label>`: the kit's prefix `wk`, the pid of the
//! creating process, a per-process counter and the caller's label. Parallel test processes
//! therefore never collide, and leftovers of a killed run are recognisable (see
//! [`crate::sweep`]). Loopback is up from the start.
//!
//! Dropping a `Netns` (also while unwinding from a panic) ends, in this order: the
//! [`Process`]es spawned in it (SIGTERM, bounded wait, SIGKILL), any other process still inside
//! it (daemons that forked away), then removes the namespace. Interfaces inside it, including
//! veth ends whose peers live elsewhere, go with it. Failures during drop are printed to
//! standard error (a test kit's output is read there); use [`Netns::remove`] to get them as an
//! error. The kit never removes a namespace whose name lacks its prefix.
//!
//! [`Netns::within`] runs a closure on a fresh thread that has entered the namespace
//! (`setns(2)`): sockets and netlink handles made there stay in the namespace afterwards.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sched::{CloneFlags, setns};

use crate::command::{NetnsCommand, Output, ip, ip_unchecked};
use crate::error::{Error, Result};
use crate::process::{self, Process, STOP_GRACE, Shared};
use crate::sweep;

/// Where iproute2 binds named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The prefix of every namespace the kit makes.
pub const PREFIX: &str = "wk";

/// Longest accepted label.
pub const MAX_LABEL: usize = 32;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A network namespace made by the kit; removed when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    label: String,
    path: PathBuf,
    processes: Mutex<Vec<Arc<Shared>>>,
    removed: bool,
}

impl Netns {
    /// Makes a namespace named `wk<pid>-<n>-<label>` with loopback up.
    ///
    /// The label is 1 to 32 characters of `A-Z a-z 0-9 _ -`. The first call in a process
    /// sweeps leftovers of dead runs first.
    pub fn new(label: &str) -> Result<Self> {
        validate_label(label)?;
        sweep::at_kit_start();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{label}", std::process::id());
        ip(&["netns", "add", &name])?;
        tracing::debug!(netns = %name, "network namespace added");
        let netns = Self::owning(name, label.to_owned());
        netns.link_up("lo")?;
        Ok(netns)
    }

    /// Takes ownership of an existing namespace of the kit (its name must carry the kit's
    /// prefix, `wk<pid>-<n>-<label>`): it is removed when the returned value is dropped. For
    /// tests that make namespaces by other means (a CNI plugin, a leftover under test).
    pub fn adopt(name: &str) -> Result<Self> {
        let Some(parsed) = sweep::parse_name(name) else {
            return Err(Error::NotKitNetns { name: name.to_owned() });
        };
        if !netns_exists(name) {
            return Err(Error::io(
                format!("adopt network namespace {name}"),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        Ok(Self::owning(name.to_owned(), parsed.label.to_owned()))
    }

    fn owning(name: String, label: String) -> Self {
        let path = Path::new(NETNS_DIR).join(&name);
        Self {
            name,
            label,
            path,
            processes: Mutex::new(Vec::new()),
            removed: false,
        }
    }

    /// The namespace's full name (`wk<pid>-<n>-<label>`), as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The label it was made with.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its bind mount, `/run/netns/NAME` (what a CNI plugin takes as `CNI_NETNS`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command to run inside the namespace (`ip netns exec NAME program …`).
    pub fn command(&self, program: &str) -> NetnsCommand<'_> {
        NetnsCommand::new(self, program)
    }

    /// Runs `argv` inside the namespace to completion; fails unless it exits with status 0.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        self.argv_command(argv)?.run()
    }

    /// Starts `argv` inside the namespace as a long-lived [`Process`].
    pub fn spawn(&self, argv: &[&str]) -> Result<Process> {
        self.argv_command(argv)?.spawn()
    }

    fn argv_command(&self, argv: &[&str]) -> Result<NetnsCommand<'_>> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::InvalidName {
                kind: "command",
                name: String::new(),
                reason: "argv is empty",
            });
        };
        Ok(self.command(program).args(args))
    }

    /// Runs `ip -n NAME ARGS…`, checked. Every argument that parses as an address or prefix
    /// must be in the test plan (see [`crate::address::check_ip_arguments`]).
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        crate::address::check_ip_arguments(args)?;
        ip(&self.ip_args(args))
    }

    /// Like [`Netns::ip`] but returns the output whatever the exit status.
    pub(crate) fn ip_unchecked(&self, args: &[&str]) -> Result<Output> {
        crate::address::check_ip_arguments(args)?;
        ip_unchecked(&self.ip_args(args))
    }

    fn ip_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        all
    }

    /// Runs `f` on a new thread that has entered this namespace and returns its result; a
    /// panic in `f` is resumed on the caller's thread.
    pub fn within<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file =
            File::open(&self.path).map_err(|source| Error::io(format!("open {}", self.path.display()), source))?;
        let name = &self.name;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns-{name}"))
                .spawn_scoped(scope, move || {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(|source| Error::sys(format!("enter network namespace {name}"), source))?;
                    Ok(f())
                })
                .map_err(|source| Error::io("start a thread", source))?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Keeps a second reference to a spawned process so that it is ended before the namespace
    /// goes; forgets processes that have exited and whose handles are gone.
    pub(crate) fn register(&self, process: Process) -> Process {
        let mut processes = self.processes.lock().unwrap_or_else(PoisonError::into_inner);
        processes.retain(|p| Arc::strong_count(p) > 1 || !p.is_finished());
        processes.push(process.shared());
        process
    }

    /// Ends every process spawned here (newest first), then any other process left inside.
    pub(crate) fn stop_processes(&self) -> Result<()> {
        let processes: Vec<_> = self
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        let mut first_error = None;
        for shared in processes.iter().rev() {
            if let Err(err) = shared.stop() {
                first_error.get_or_insert(err);
            }
        }
        if netns_exists(&self.name)
            && let Err(err) = process::end_members(&self.name, &self.path, STOP_GRACE)
        {
            first_error.get_or_insert(err);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ends its processes and removes the namespace now, reporting failures.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.teardown()
    }

    fn teardown(&self) -> Result<()> {
        let stopped = self.stop_processes();
        let deleted = delete(&self.name);
        stopped.and(deleted)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.removed
            && let Err(err) = self.teardown()
        {
            eprintln!("weft test kit: cannot clean up network namespace {}: {err}", self.name);
        }
    }
}

/// Removes the namespace `name` (`ip netns del`); one that is already gone is fine.
pub(crate) fn delete(name: &str) -> Result<()> {
    match ip(&["netns", "del", name]) {
        Ok(_) => {
            tracing::debug!(netns = %name, "network namespace removed");
            Ok(())
        }
        Err(_) if !netns_exists(name) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Does a named network namespace `name` exist (is `/run/netns/NAME` there)?
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

fn validate_label(label: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidName {
        kind: "namespace label",
        name: label.to_owned(),
        reason,
    };
    if label.is_empty() || label.len() > MAX_LABEL {
        return Err(invalid("must be 1 to 32 characters"));
    }
    if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid("only A-Z, a-z, 0-9, '_' and '-' are allowed"));
    }
    Ok(())
}

/// Checks an interface name the way the kernel will: 1 to 15 bytes, no `/`, `:` or whitespace.
pub(crate) fn validate_ifname(name: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidName {
        kind: "interface name",
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(invalid("must be 1 to 15 bytes"));
    }
    if name == "." || name == ".." || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(invalid("must not be '.', '..' or contain '/', ':' or whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked() {
        assert!(validate_label("router-1_a").is_ok());
        for bad in ["", "a b", "x/y", "é", &"a".repeat(33)] {
            assert!(validate_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("eth0.100").is_ok());
        for bad in ["", "a-very-long-name", "a/b", "a b", "..", "e:1"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
