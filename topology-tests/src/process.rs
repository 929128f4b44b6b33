//! Long-lived processes inside a test namespace, and ending every process left in one.
//!
//! Contract: a [`Process`] is a command started with `ip netns exec` (which `exec`s, so its pid
//! is the command's). Dropping the handle ends it: SIGTERM, a wait bounded by [`STOP_GRACE`],
//! then SIGKILL and a wait bounded by [`KILL_WAIT`]. Signals go only to the handle's own pid and
//! only while the child is not yet reaped, so a recycled pid is never hit. The owning
//! [`Netns`](crate::Netns) holds a second reference and ends the process before the namespace
//! is removed, should the handle outlive it. Standard output and error go to temporary files
//! (read them with [`Process::stdout`]); they are deleted with the last reference. When a
//! handle is dropped during a panic, the end of both files is printed to standard error, so a
//! failed test shows what its daemons said.
//!
//! [`end_members`] ends every process whose network namespace is a given namespace (daemons
//! that forked away from their `Process`); only the kit's own namespaces are ever given to it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::wait::{poll_backoff, wait_until};

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for a process to disappear after SIGKILL.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// How much of each output file is printed when a handle is dropped during a panic.
const TAIL_BYTES: usize = 4096;

/// A process running inside a test namespace; ended when dropped.
#[derive(Debug)]
pub struct Process {
    shared: Arc<Shared>,
}

/// The state a [`Process`] shares with the namespace that spawned it.
#[derive(Debug)]
pub(crate) struct Shared {
    command: String,
    pid: u32,
    stdout: NamedTempFile,
    stderr: NamedTempFile,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    child: Option<Child>,
    status: Option<ExitStatus>,
}

impl Process {
    pub(crate) fn spawn(mut command: Command, line: String, netns: &str) -> Result<Self> {
        let spawn_error = |source| Error::Spawn {
            command: line.clone(),
            source,
        };
        let file = |suffix: &str| {
            tempfile::Builder::new()
                .prefix(&format!("weft-kit-{netns}-"))
                .suffix(suffix)
                .tempfile()
                .map_err(spawn_error)
        };
        let (stdout, stderr) = (file(".stdout")?, file(".stderr")?);
        command
            .stdin(Stdio::null())
            .stdout(stdout.reopen().map_err(spawn_error)?)
            .stderr(stderr.reopen().map_err(spawn_error)?);
        tracing::debug!(command = %line, "spawning process");
        let child = command.spawn().map_err(spawn_error)?;
        let pid = child.id();
        let state = Mutex::new(State {
            child: Some(child),
            status: None,
        });
        Ok(Self {
            shared: Arc::new(Shared {
                command: line,
                pid,
                stdout,
                stderr,
                state,
            }),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The process id (the command's own, since `ip netns exec` execs).
    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.shared.command
    }

    /// Everything the process wrote to standard output so far.
    pub fn stdout(&self) -> Result<String> {
        read_lossy(self.shared.stdout.path())
    }

    /// Everything the process wrote to standard error so far.
    pub fn stderr(&self) -> Result<String> {
        read_lossy(self.shared.stderr.path())
    }

    /// The file that receives standard output (deleted with the handle).
    pub fn stdout_path(&self) -> &Path {
        self.shared.stdout.path()
    }

    /// The file that receives standard error (deleted with the handle).
    pub fn stderr_path(&self) -> &Path {
        self.shared.stderr.path()
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_status(&self) -> Result<Option<ExitStatus>> {
        self.shared.try_status()
    }

    /// Is the process still running?
    pub fn is_running(&self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Sends `signal` to the process, unless it has already exited.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let mut state = self.shared.lock();
        if self.shared.reap(&mut state)?.is_some() {
            return Ok(());
        }
        send(self.shared.pid, signal)
    }

    /// Waits for the process to exit by itself, for at most `deadline`.
    pub fn wait_exit(&self, deadline: Duration) -> Result<ExitStatus> {
        let what = format!("`{}` to exit", self.shared.command);
        crate::wait::wait_for(&what, deadline, Duration::from_millis(10), || self.try_status())
    }

    /// Waits until standard output or standard error contains `needle`; fails early with
    /// [`Error::ProcessExited`] (inside [`Error::Check`]) if the process exits first.
    pub fn wait_for_output(&self, needle: &str, deadline: Duration) -> Result<()> {
        let what = format!("{needle:?} in the output of `{}`", self.shared.command);
        wait_until(&what, deadline, Duration::from_millis(20), || {
            if self.stdout()?.contains(needle) || self.stderr()?.contains(needle) {
                return Ok(true);
            }
            match self.try_status()? {
                None => Ok(false),
                Some(status) => Err(self.exited(status)),
            }
        })
    }

    /// Ends the process now (SIGTERM, bounded wait, SIGKILL) and returns how it exited.
    pub fn stop(&self) -> Result<ExitStatus> {
        self.shared.stop()
    }

    fn exited(&self, status: ExitStatus) -> Error {
        Error::ProcessExited {
            command: self.shared.command.clone(),
            status,
            stderr_tail: tail(&self.stderr().unwrap_or_default(), 512).trim().to_owned(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(err) = self.shared.stop() {
            eprintln!("weft test kit: cannot end `{}`: {err}", self.shared.command);
        }
        if std::thread::panicking() {
            for (name, path) in [("stdout", self.stdout_path()), ("stderr", self.stderr_path())] {
                let text = read_lossy(path).unwrap_or_default();
                if !text.trim().is_empty() {
                    let command = &self.shared.command;
                    eprintln!("--- {name} of `{command}` (end) ---\n{}", tail(&text, TAIL_BYTES));
                }
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reaps the child if it has exited; returns its status if known.
    fn reap(&self, state: &mut State) -> Result<Option<ExitStatus>> {
        if let Some(status) = state.status {
            return Ok(Some(status));
        }
        let Some(child) = state.child.as_mut() else {
            return Ok(None);
        };
        let status = child
            .try_wait()
            .map_err(|source| Error::io(format!("wait for `{}`", self.command), source))?;
        if let Some(status) = status {
            state.status = Some(status);
            state.child = None;
        }
        Ok(status)
    }

    fn try_status(&self) -> Result<Option<ExitStatus>> {
        let mut state = self.lock();
        self.reap(&mut state)
    }

    /// Has the process exited (and been reaped)?
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().status.is_some()
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], SIGKILL, wait up to [`KILL_WAIT`].
    pub(crate) fn stop(&self) -> Result<ExitStatus> {
        let mut state = self.lock();
        if let Some(status) = self.reap(&mut state)? {
            return Ok(status);
        }
        // Not reaped: the pid is still ours (a zombie at worst), never someone else's.
        send(self.pid, Signal::SIGTERM)?;
        if let Some(status) = poll_backoff(STOP_GRACE, || self.reap(&mut state))? {
            return Ok(status);
        }
        tracing::debug!(pid = self.pid, command = %self.command, "process ignored SIGTERM");
        send(self.pid, Signal::SIGKILL)?;
        match poll_backoff(KILL_WAIT, || self.reap(&mut state))? {
            Some(status) => Ok(status),
            None => Err(Error::Unkillable {
                pid: self.pid,
                command: self.command.clone(),
            }),
        }
    }
}

fn send(pid: u32, signal: Signal) -> Result<()> {
    let raw = i32::try_from(pid).map_err(|_| Error::Parse {
        text: pid.to_string(),
        expected: "a process id",
    })?;
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(Error::sys(format!("send {signal} to pid {pid}"), source)),
    }
}

/// Pids of the processes (not zombies) whose network namespace is the one bound at `path`.
pub(crate) fn members(path: &Path) -> Result<Vec<u32>> {
    let target = fs::metadata(path).map_err(|source| Error::io(format!("stat {}", path.display()), source))?;
    let me = std::process::id();
    let entries = fs::read_dir("/proc").map_err(|source| Error::io("list the processes in /proc", source))?;
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Fails for zombies and for processes that just exited: both are not members.
        if let Ok(ns) = fs::metadata(entry.path().join("ns/net"))
            && ns.dev() == target.dev()
            && ns.ino() == target.ino()
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Ends every process inside the namespace bound at `path`: SIGTERM and up to `grace` (skipped
/// when `grace` is zero), then SIGKILL and up to [`KILL_WAIT`].
pub(crate) fn end_members(netns: &str, path: &Path, grace: Duration) -> Result<()> {
    let mut pids = members(path)?;
    if pids.is_empty() {
        return Ok(());
    }
    tracing::debug!(netns, ?pids, "ending processes left in namespace");
    if !grace.is_zero() {
        for &pid in &pids {
            send(pid, Signal::SIGTERM)?;
        }
        let gone = poll_backoff(grace, || Ok(members(path)?.is_empty().then_some(())))?;
        if gone.is_some() {
            return Ok(());
        }
        pids = members(path)?;
    }
    for &pid in &pids {
        send(pid, Signal::SIGKILL)?;
    }
    let gone = poll_backoff(KILL_WAIT, || Ok(members(path)?.is_empty().then_some(())))?;
    match gone {
        Some(()) => Ok(()),
        None => Err(Error::MembersSurvive {
            netns: netns.to_owned(),
            pids: members(path)?,
        }),
    }
}

fn read_lossy(path: &Path) -> Result<String> {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|source| Error::io(format!("read {}", path.display()), source))
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
