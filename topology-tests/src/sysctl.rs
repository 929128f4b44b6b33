//! Sysctls of a test namespace.
//!
//! Contract: only `net.*` keys, which the kernel keeps per network namespace, are read or
//! written, and only from a thread that has entered the namespace ([`Netns::within`]): the
//! root namespace's settings are never touched. Keys are dotted (`net.ipv4.ip_forward`) or
//! slashed (`net/ipv4/conf/eth0.100/forwarding`, needed when an interface name has a dot).
//! Global `net.*` keys (`net.core.rmem_max`, …) do not exist inside a namespace and fail.

use std::fs;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::netns::Netns;

impl Netns {
    /// Writes `value` to sysctl `key` inside this namespace.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        self.within(|| fs::write(&path, value))?
            .map_err(|source| Error::io(format!("set sysctl {key}={value} in {}", self.name()), source))
    }

    /// Reads sysctl `key` inside this namespace (trimmed).
    pub fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        let text = self
            .within(|| fs::read_to_string(&path))?
            .map_err(|source| Error::io(format!("read sysctl {key} in {}", self.name()), source))?;
        Ok(text.trim().to_owned())
    }

    /// Turns on IPv4 and IPv6 forwarding (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`).
    pub fn enable_forwarding(&self) -> Result<()> {
        self.set_sysctl("net.ipv4.ip_forward", "1")?;
        self.set_sysctl("net.ipv6.conf.all.forwarding", "1")
    }
}

/// `/proc/sys/…` for a `net.*` key.
fn sysctl_path(key: &str) -> Result<PathBuf> {
    let refuse = |reason| Error::SysctlKey {
        key: key.to_owned(),
        reason,
    };
    let separator = if key.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = key.split(separator).collect();
    if parts.first() != Some(&"net") || parts.len() < 2 {
        return Err(refuse("only net.* keys are per network namespace"));
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(refuse("empty, '.' or '..' component"));
    }
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }

    #[test]
    fn keys_outside_net_are_refused() {
        for bad in [
            "kernel.pid_max",
            "vm.swappiness",
            "net",
            "net..x",
            "net/../kernel/pid_max",
            "/net/ipv4",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad}");
        }
    }
}
