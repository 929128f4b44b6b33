//! Paths to the workspace's own binaries (`weft-cni`, `weft-bgpd`, …) for tests that run them as
//! a runtime or an operator would, whichever package the test lives in.
//!
//! Cargo exposes `CARGO_BIN_EXE_*` only for a test's own package; tests elsewhere find the
//! binary next to their own executable (`target/<profile>/`) and, when it is missing (a
//! `cargo test -p` that did not build it), build it once with the cargo running the tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The workspace binaries, as DESIGN.md names them.
pub const WORKSPACE_BINARIES: [&str; 6] = [
    "weft-bgpd",
    "weft-felix",
    "weft-cni",
    "weft-ipam",
    "weftctl",
    "weft-lab",
];

static BUILD: Mutex<()> = Mutex::new(());

/// The path of workspace binary `name`, built if needed.
pub fn binary(name: &str) -> Result<PathBuf> {
    let failed = |reason: String| Error::BinaryMissing {
        name: name.to_owned(),
        reason,
    };
    let exe = std::env::current_exe().map_err(|e| failed(format!("no current executable: {e}")))?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/
    let profile_dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .ok_or_else(|| failed(format!("{} has no parent directory", exe.display())))?
        .to_path_buf();
    let path = profile_dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    let _guard = BUILD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if path.exists() {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--workspace", "--bins"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let output = build.output().map_err(|e| failed(format!("cannot run cargo: {e}")))?;
    if !output.status.success() || !path.exists() {
        return Err(failed(format!(
            "cargo build did not produce {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(path)
}
