//! Running commands to completion, with a time bound, in the root or a test namespace.
//!
//! Contract: every command the kit runs has a time bound; on expiry its own child is killed
//! (through its `Child` handle, never by name) and [`Error::CommandTimeout`] is returned.
//! Standard output and error go to anonymous temporary files, not pipes, so a command (or a
//! daemon it leaves behind) can never block the kit by filling or holding a pipe. Standard
//! input is `/dev/null`. Checked runs fail with [`Error::CommandFailed`] carrying the exit
//! status and standard error.
//!
//! Commands inside a namespace run as `ip netns exec NAME argv…`: iproute2 enters the
//! namespace, gives the command a private mount namespace with the namespace's `/sys`, then
//! `exec`s, so the pid of the child is the pid of the command.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::process::Process;
use crate::wait::poll_backoff;

/// Time bound of the kit's own `ip` invocations.
pub const IP_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time bound of commands run with [`NetnsCommand::run`] and [`NetnsCommand::output`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// How the command exited.
    pub status: ExitStatus,
    /// Its standard output (lossy UTF-8).
    pub stdout: String,
    /// Its standard error (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Did the command exit with status 0?
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// A command to run inside a [`Netns`]; made by [`Netns::command`].
#[derive(Debug)]
#[must_use = "a command does nothing until run, output or spawn is called"]
pub struct NetnsCommand<'ns> {
    netns: &'ns Netns,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl<'ns> NetnsCommand<'ns> {
    pub(crate) fn new(netns: &'ns Netns, program: &str) -> Self {
        Self {
            netns,
            argv: vec![program.to_owned()],
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.argv.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.argv.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Gives the command these bytes on standard input (a CNI plugin's configuration, say)
    /// for [`run`](Self::run) and [`output`](Self::output); without it, stdin is empty.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets the time bound of [`run`](Self::run) and [`output`](Self::output).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the command to completion; fails unless it exits with status 0.
    pub fn run(self) -> Result<Output> {
        let line = self.display();
        checked(line, self.output()?)
    }

    /// Runs the command to completion, whatever its exit status.
    pub fn output(self) -> Result<Output> {
        let line = self.display();
        run_bounded_with_stdin(self.std_command()?, &line, self.timeout, self.stdin.as_deref())
    }

    /// Starts the command as a long-lived [`Process`] owned by the namespace: it is ended when
    /// the returned handle or the namespace is dropped, whichever comes first.
    pub fn spawn(self) -> Result<Process> {
        let line = self.display();
        let command = self.std_command()?;
        Ok(self.netns.register(Process::spawn(command, line, self.netns.name())?))
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut line = format!("ip netns exec {}", self.netns.name());
        for arg in &self.argv {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        line
    }

    fn std_command(&self) -> Result<Command> {
        if self.argv.first().is_none_or(|program| program.is_empty()) {
            return Err(Error::InvalidName {
                kind: "command",
                name: self.display(),
                reason: "the program name is empty",
            });
        }
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.netns.name()]).args(&self.argv);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(command)
    }
}

/// Runs `ip ARGS…` in the kit's own (root) namespace, checked, with [`IP_TIMEOUT`].
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    let line = format!("ip {}", args.join(" "));
    let mut command = Command::new("ip");
    command.args(args);
    checked(line.clone(), run_bounded(command, &line, IP_TIMEOUT)?)
}

/// Runs `ip ARGS…` like [`ip`] but returns the output whatever the exit status.
pub(crate) fn ip_unchecked(args: &[&str]) -> Result<Output> {
    let line = format!("ip {}", args.join(" "));
    let mut command = Command::new("ip");
    command.args(args);
    run_bounded(command, &line, IP_TIMEOUT)
}

fn checked(command: String, output: Output) -> Result<Output> {
    if output.success() {
        Ok(output)
    } else {
        Err(Error::CommandFailed {
            command,
            status: output.status,
            stderr: output.stderr.trim().to_owned(),
        })
    }
}

/// Runs `command` with output captured in anonymous files, killing it after `timeout`.
pub(crate) fn run_bounded(command: Command, line: &str, timeout: Duration) -> Result<Output> {
    run_bounded_with_stdin(command, line, timeout, None)
}

fn run_bounded_with_stdin(mut command: Command, line: &str, timeout: Duration, stdin: Option<&[u8]>) -> Result<Output> {
    let spawn_error = |source| Error::Spawn {
        command: line.to_owned(),
        source,
    };
    let mut stdout = tempfile::tempfile().map_err(spawn_error)?;
    let mut stderr = tempfile::tempfile().map_err(spawn_error)?;
    match stdin {
        Some(bytes) => {
            use std::io::{Seek, Write};
            let mut input = tempfile::tempfile().map_err(spawn_error)?;
            input.write_all(bytes).map_err(spawn_error)?;
            input.rewind().map_err(spawn_error)?;
            command.stdin(input);
        }
        None => {
            command.stdin(Stdio::null());
        }
    }
    command
        .stdout(stdout.try_clone().map_err(spawn_error)?)
        .stderr(stderr.try_clone().map_err(spawn_error)?);
    tracing::debug!(command = %line, "running command");
    let mut child = command.spawn().map_err(spawn_error)?;
    let wait_error = |source| Error::io(format!("wait for `{line}`"), source);
    let status = poll_backoff(timeout, || child.try_wait().map_err(wait_error))?;
    let Some(status) = status else {
        // Our own child, not yet reaped: its pid cannot have been reused.
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::CommandTimeout {
            command: line.to_owned(),
            timeout,
        });
    };
    Ok(Output {
        status,
        stdout: read_all(&mut stdout, line)?,
        stderr: read_all(&mut stderr, line)?,
    })
}

fn read_all(file: &mut File, line: &str) -> Result<String> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|source| Error::io(format!("read the output of `{line}`"), source))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Quotes an argument for display if it contains whitespace or quotes.
pub(crate) fn quote(arg: &str) -> String {
    if arg.is_empty() || arg.chars().any(|c| c.is_whitespace() || c == '\'' || c == '"') {
        format!("{arg:?}")
    } else {
        arg.to_owned()
    }
}
