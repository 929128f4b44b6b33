//! Running programs with a time bound, inside a lab namespace or not.
//!
//! Output goes to anonymous files, not pipes: daemons that fork (FRR's `-d`, BIRD) keep their
//! inherited descriptors, and a pipe held open by them would block the reader forever.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Default bound of a command.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished command printed.
pub struct Ran {
    pub stdout: String,
}

/// `ip netns exec NETNS argv…`, checked.
pub fn in_netns(netns: &str, argv: &[&str]) -> Result<Ran> {
    let mut full = vec!["ip", "netns", "exec", netns];
    full.extend_from_slice(argv);
    run(&full, &[], None, TIMEOUT)
}

/// Runs `argv` with extra environment and optional standard input, bounded by `timeout`;
/// fails with its standard error unless it exits 0.
pub fn run(argv: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>, timeout: Duration) -> Result<Ran> {
    let (program, args) = argv.split_first().context("empty command")?;
    let mut stdout = tempfile::tempfile().context("cannot make a temporary file")?;
    let mut stderr = tempfile::tempfile().context("cannot make a temporary file")?;
    let mut input = match stdin {
        Some(bytes) => {
            let mut file = tempfile::tempfile().context("cannot make a temporary file")?;
            std::io::Write::write_all(&mut file, bytes)?;
            file.seek(SeekFrom::Start(0))?;
            Stdio::from(file)
        }
        None => Stdio::null(),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(std::mem::replace(&mut input, Stdio::null()))
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?);
    for (key, value) in env {
        command.env(key, value);
    }
    let shown = argv.join(" ");
    let mut child = command.spawn().with_context(|| format!("cannot start {shown}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown}: no exit after {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |file: &mut std::fs::File| -> Result<String> {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text)?;
        Ok(text)
    };
    let out = read(&mut stdout)?;
    if !status.success() {
        let err = read(&mut stderr)?;
        let detail = if err.trim().is_empty() { out.trim() } else { err.trim() };
        bail!("{shown}: {status}: {detail}");
    }
    Ok(Ran { stdout: out })
}

/// Starts a long-lived program inside `netns` in its own process group (a Ctrl-C at the
/// terminal that ran `weft-lab up` does not reach it), output to `log`. Returns its pid.
pub fn spawn_daemon(netns: &str, argv: &[&str], log: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {} in {netns}", argv.join(" ")))?;
    Ok(child.id())
}

/// Waits, bounded, until `ready` holds; `what` names it in the error. Checks after 1 ms, then
/// twice as long each time up to every 50 ms: a daemon that opens its socket in 10 ms is seen
/// then, not at the next 50 ms tick (which, across 400 nodes, was seconds of `up`).
pub fn wait(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    while started.elapsed() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    bail!("{what}: not ready after {deadline:?}")
}
