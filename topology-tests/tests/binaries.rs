//! Every binary DESIGN.md names exists, answers `--help` and `--version`, and one whose part is
//! not built yet says so and exits non-zero: never a fake success.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use weft_topology_tests::{WORKSPACE_BINARIES, binary};

#[test]
fn every_binary_answers_help_and_version() {
    for name in WORKSPACE_BINARIES {
        let path = binary(name).unwrap();
        let help = Command::new(&path).arg("--help").output().unwrap();
        assert!(help.status.success(), "{name} --help failed");
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("Usage:"), "{name} --help prints usage: {help}");
        let version = Command::new(&path).arg("--version").output().unwrap();
        assert!(version.status.success(), "{name} --version failed");
        assert_eq!(
            String::from_utf8_lossy(&version.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
        );
    }
}

#[test]
fn binaries_not_built_yet_exit_non_zero_saying_so() {
    /// A run of a binary as a user or runtime would start it.
    type Run = (
        &'static str,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );
    let runs: [Run; 1] = [("weft-felix", &["--store", "file:/nonexistent"], &[])];
    for (name, args, env) in runs {
        let output = Command::new(binary(name).unwrap())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} {args:?} must not pretend to work");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not implemented yet"), "{name}: {stderr}");
        if env.iter().any(|(k, _)| *k == "CNI_COMMAND") {
            // A runtime reads a CNI error object from stdout.
            let error: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert!(error["code"].as_u64().is_some() && error["msg"].is_string(), "{error}");
        }
    }
}
