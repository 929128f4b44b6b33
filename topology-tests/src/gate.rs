//! Whether namespace tests can run here, and skipping them when they cannot.
//!
//! Contract: [`netns_support`] probes once per process: effective uid 0, the capabilities
//! `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` and `CAP_NET_RAW`, iproute2's `ip`, and actually making and
//! removing a namespace. [`require_netns`] (and the [`skip_unless_netns!`](crate::skip_unless_netns)
//! macro) turns the answer into test control flow: outside CI (`CI` is not `"true"`) a test
//! without support prints why it skips and returns; under `CI=true` a missing capability is a
//! hard failure, because a CI run that silently skipped its namespace tests proves nothing.

use std::sync::OnceLock;

use crate::command::ip;
use crate::netns::Netns;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// Proof that namespace tests can run here.
#[derive(Debug, Clone)]
pub struct NetnsSupport {
    /// `ip -V`'s answer, e.g. `ip utility, iproute2-6.1.0, libbpf 1.1.2`.
    pub ip_version: String,
}

/// Probes (once per process) whether this process can make network namespaces; the error is a
/// sentence saying why not.
pub fn netns_support() -> Result<NetnsSupport, String> {
    static SUPPORT: OnceLock<Result<NetnsSupport, String>> = OnceLock::new();
    SUPPORT.get_or_init(probe).clone()
}

/// For a test's first line: `Some` if namespace tests can run; otherwise prints why the test
/// skips and returns `None`, or panics if `CI=true`.
pub fn require_netns() -> Option<NetnsSupport> {
    match netns_support() {
        Ok(support) => Some(support),
        Err(reason) => {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("this test");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: CI=true but network namespace tests cannot run here: {reason}");
            }
            eprintln!("skipping {test}: {reason} (with CI=true this is a failure)");
            None
        }
    }
}

/// Returns from the calling test unless network namespaces are usable (see
/// [`require_netns`]). `skip_unless_netns!()` returns `()`; `skip_unless_netns!(value)` returns
/// `value` (e.g. `Ok(())` in a test returning a `Result`).
#[macro_export]
macro_rules! skip_unless_netns {
    () => {
        if $crate::require_netns().is_none() {
            return;
        }
    };
    ($skipped:expr) => {
        if $crate::require_netns().is_none() {
            return $skipped;
        }
    };
}

fn probe() -> Result<NetnsSupport, String> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|err| format!("cannot read /proc/self/status: {err}"))?;
    let euid = field(&status, "Uid:").and_then(|uids| uids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err(format!(
            "not running as root (effective uid {})",
            euid.unwrap_or("unknown")
        ));
    }
    let caps = field(&status, "CapEff:")
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or("cannot read the effective capabilities")?;
    for (bit, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ] {
        if caps & (1 << bit) == 0 {
            return Err(format!("root but without {name}"));
        }
    }
    let version = ip(&["-V"]).map_err(|err| format!("iproute2's `ip` is not usable: {err}"))?;
    let netns = Netns::new("probe").map_err(|err| format!("cannot make a network namespace: {err}"))?;
    netns
        .remove()
        .map_err(|err| format!("cannot remove a network namespace: {err}"))?;
    Ok(NetnsSupport {
        ip_version: version.stdout.trim().to_owned(),
    })
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| line.strip_prefix(name)).map(str::trim)
}
