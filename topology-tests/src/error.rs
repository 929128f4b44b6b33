//! The kit's one error type.
//!
//! Contract: every fallible function of the kit returns [`Error`]; each variant names the thing
//! that failed (the address, the command line, what was awaited) so a failing test's message is
//! enough to act on. Lower-level causes travel through `#[source]`, never through string
//! concatenation. Standard error of a failed command is kept because it is the cause a person
//! reads first.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Result with the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the network-namespace test kit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address or prefix outside weft's test address plan.
    #[error("address {address} is outside weft's test address plan ({allowed})")]
    OutsidePlan {
        /// The refused address or prefix, as given.
        address: String,
        /// What would have been accepted here.
        allowed: &'static str,
    },

    /// Text that does not parse as what was expected.
    #[error("cannot parse {text:?} as {expected}")]
    Parse {
        /// The text as given.
        text: String,
        /// What it should have been.
        expected: &'static str,
    },

    /// A namespace label, interface name or command line the kit will not use.
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        /// What the name is for (`"namespace label"`, `"interface name"`, …).
        kind: &'static str,
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A route that cannot be rendered into an `ip route` command.
    #[error("invalid route to {destination}: {reason}")]
    InvalidRoute {
        /// The route's destination as given.
        destination: String,
        /// Why it is refused.
        reason: String,
    },

    /// A sysctl key that is not a per-namespace `net.*` key.
    #[error("sysctl key {key:?} refused: {reason}")]
    SysctlKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A command could not be started at all.
    #[error("cannot start `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why `fork`/`exec` failed.
        #[source]
        source: io::Error,
    },

    /// A workspace binary could not be found or built.
    #[error("workspace binary {name} is not available: {reason}")]
    BinaryMissing {
        /// The binary's name.
        name: String,
        /// What went wrong.
        reason: String,
    },

    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },

    /// A command did not finish in its time bound and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        /// The command line.
        command: String,
        /// Its time bound.
        timeout: Duration,
    },

    /// A bounded wait ran out of time.
    #[error("timed out after {waited:?} ({attempts} checks, deadline {deadline:?}) waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the wait lasted.
        waited: Duration,
        /// The deadline it was given.
        deadline: Duration,
        /// How many times the condition was checked.
        attempts: u64,
    },

    /// The check of a bounded wait failed, which ends the wait at once.
    #[error("stopped waiting for {what}: the check failed")]
    Check {
        /// What was awaited.
        what: String,
        /// The check's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A spawned process exited while something was expected of it.
    #[error("`{command}` exited ({status}); standard error ends with: {stderr_tail}")]
    ProcessExited {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// The end of its standard error.
        stderr_tail: String,
    },

    /// A process did not die even after SIGKILL and a bounded wait.
    #[error("process {pid} (`{command}`) still runs after SIGKILL")]
    Unkillable {
        /// Its pid.
        pid: u32,
        /// The command line.
        command: String,
    },

    /// Processes inside a namespace survived SIGKILL and a bounded wait.
    #[error("processes {pids:?} in network namespace {netns} survive SIGKILL")]
    MembersSurvive {
        /// The namespace's name.
        netns: String,
        /// The surviving pids.
        pids: Vec<u32>,
    },

    /// An I/O operation of the kit itself failed.
    #[error("cannot {action}")]
    Io {
        /// What the kit was doing, as a verb phrase.
        action: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A system call made through `nix` failed.
    #[error("cannot {action}")]
    Sys {
        /// What the kit was doing, as a verb phrase.
        action: String,
        /// The operating system's error.
        #[source]
        source: nix::Error,
    },

    /// A lab has no namespace with this label.
    #[error("no network namespace labelled {label:?} in this lab")]
    UnknownNetns {
        /// The label asked for.
        label: String,
    },

    /// A lab already has a namespace with this label.
    #[error("a network namespace labelled {label:?} is already in this lab")]
    DuplicateNetns {
        /// The label given twice.
        label: String,
    },

    /// A namespace name that does not carry the kit's prefix: the kit never touches it.
    #[error("{name:?} is not a network namespace of this kit (names look like wk<pid>-<n>-<label>)")]
    NotKitNetns {
        /// The name as given.
        name: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `action`.
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }

    /// An [`Error::Sys`] for `action`.
    pub(crate) fn sys(action: impl Into<String>, source: nix::Error) -> Self {
        Self::Sys {
            action: action.into(),
            source,
        }
    }
}
