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
fn weft_felix_refuses_a_bad_store_setting_saying_what_it_expects() {
    // Every binary is built now; weft-felix, the last stub, runs for real, so a run that cannot
    // work must fail and say why rather than start.
    let output = Command::new(binary("weft-felix").unwrap())
        .args(["--store", "nowhere:/x", "--nodename", "node-1"])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "weft-felix must not start on a store it cannot open"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected file:DIR"), "weft-felix: {stderr}");
}
