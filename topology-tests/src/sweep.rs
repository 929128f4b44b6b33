//! Sweeping leftovers: namespaces of the kit whose creating process is dead.
//!
//! Contract: a namespace is a leftover only if its name has the kit's exact shape
//! `wk<pid>-<n>[-<label>]` and no live process has that pid (a missing `/proc/<pid>` or a
//! zombie counts as dead). Namespaces of any other name, and of live processes (this one
//! included), are never touched. A leftover's remaining processes get SIGKILL (they belong to
//! the dead run) and the namespace is removed, and so are the output files its processes left
//! in the temporary directory (`weft-kit-wk<pid>-…`). [`sweep`] runs once per process on the kit's
//! first use (before the first namespace is made) and may be called again explicitly.
//!
//! The pid in the name is only meaningful in the pid namespace that made it: do not share
//! `/run/netns` between containers with different pid namespaces running this kit.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::{NETNS_DIR, PREFIX, delete, netns_exists};
use crate::process::end_members;

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Namespaces removed.
    pub removed: Vec<String>,
    /// Leftovers that could not be removed, with why.
    pub failures: Vec<Error>,
}

/// The parts of a kit namespace name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KitName<'a> {
    /// Pid of the process that made it.
    pub pid: u32,
    /// That process's counter.
    pub counter: u64,
    /// The label (may be empty).
    pub label: &'a str,
}

/// Parses `wk<pid>-<n>[-<label>]`; `None` for any other name.
pub fn parse_name(name: &str) -> Option<KitName<'_>> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (counter, label) = rest.split_once('-').unwrap_or((rest, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(counter) {
        return None;
    }
    Some(KitName {
        pid: pid.parse().ok()?,
        counter: counter.parse().ok()?,
        label,
    })
}

/// Is a process with this pid alive (present and not a zombie)? Unknown counts as alive.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Format: "pid (comm) S …"; comm may contain spaces and parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X' | 'x'))
        }
        Err(err) => err.kind() != ErrorKind::NotFound,
    }
}

/// Removes every namespace of the kit whose creating process is dead.
pub fn sweep() -> SweepReport {
    let mut report = SweepReport::default();
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return report,
        Err(source) => {
            report.failures.push(Error::io(format!("list {NETNS_DIR}"), source));
            return report;
        }
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(parsed) = parse_name(&name) else {
            continue;
        };
        if parsed.pid == me || pid_alive(parsed.pid) {
            continue;
        }
        match remove_leftover(&name) {
            Ok(true) => report.removed.push(name),
            Ok(false) => {}
            Err(err) => report.failures.push(err),
        }
    }
    sweep_output_files(&mut report);
    report
}

/// Removes the output files of [`Process`](crate::Process)es of dead runs
/// (`$TMPDIR/weft-kit-wk<pid>-…`), which a killed run could not delete.
fn sweep_output_files(report: &mut SweepReport) {
    let dir = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(parsed) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("weft-kit-"))
            .and_then(parse_name)
        else {
            continue;
        };
        if pid_alive(parsed.pid) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Err(source) = fs::remove_file(entry.path())
            && source.kind() != ErrorKind::NotFound
        {
            report
                .failures
                .push(Error::io(format!("remove {}", entry.path().display()), source));
        }
    }
}

/// Kills what is left inside and removes the namespace; `Ok(false)` if another sweep was
/// faster.
fn remove_leftover(name: &str) -> Result<bool> {
    let path = Path::new(NETNS_DIR).join(name);
    match end_members(name, &path, Duration::ZERO) {
        Ok(()) => {}
        Err(_) if !netns_exists(name) => return Ok(false),
        Err(err) => return Err(err),
    }
    delete(name)?;
    tracing::info!(netns = %name, "removed leftover network namespace of a dead test run");
    Ok(true)
}

/// Runs [`sweep`] once per process, before the kit makes its first namespace.
pub(crate) fn at_kit_start() {
    static START: Once = Once::new();
    START.call_once(|| {
        for err in sweep().failures {
            eprintln!("weft test kit: sweeping leftovers: {err}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_names_are_parsed() {
        assert_eq!(
            parse_name("wk123-4-router"),
            Some(KitName {
                pid: 123,
                counter: 4,
                label: "router"
            })
        );
        assert_eq!(
            parse_name("wk123-4-a-b"),
            Some(KitName {
                pid: 123,
                counter: 4,
                label: "a-b"
            })
        );
        assert_eq!(
            parse_name("wk123-4"),
            Some(KitName {
                pid: 123,
                counter: 4,
                label: ""
            })
        );
    }

    #[test]
    fn other_names_are_not_the_kits() {
        for other in [
            "wk", "wkx-1-a", "wk12", "wk-1-a", "wk12-x-a", "cni-1234", "awk1-2-a", "WK1-2-a",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn this_process_is_alive() {
        assert!(pid_alive(std::process::id()));
    }
}
