//! Harnesses for tests of weft and of the components built on it: a real etcd daemon started
//! on 127.0.0.1 with a free port and its own data directory, stopped and removed on drop; and
//! [`ApiServerDouble`], a test double of the Kubernetes API server (no kube-apiserver can be
//! installed on the machines weft is built on).
//!
//! Not used by weft's daemons. Tests that need a component this machine lacks skip with a
//! message outside CI, and fail under `CI=true` (see [`require`]).

pub mod api_server_double;
mod etcd_server;

pub use api_server_double::ApiServerDouble;
pub use etcd_server::EtcdServer;

/// Whether the test suite runs in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns true when `what` is available. When it is not: under CI, panics (a missing
/// component is a broken CI set-up, never a skipped test); elsewhere, prints why the test skips
/// and returns false.
pub fn require(available: bool, what: &str, install_hint: &str) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("CI=true but {what} is not available: {install_hint}");
    }
    eprintln!("skipping: {what} is not available here ({install_hint}); CI runs this test");
    false
}
