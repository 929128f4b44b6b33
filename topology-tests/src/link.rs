//! Interfaces of a test namespace: state, MTU and addresses.
//!
//! Contract: every operation runs `ip -n NAME …` against the kit's own namespace, never the
//! root one. Addresses must be inside the test plan ([`crate::address`]); IPv6 addresses are
//! added with `nodad`, so they are usable at once and tests never wait for duplicate address
//! detection. Interface names are checked (1 to 15 bytes) before any command runs.

use ipnet::IpNet;

use crate::address::interface_address;
use crate::error::{Error, Result};
use crate::netns::{Netns, validate_ifname};

impl Netns {
    /// Sets interface `ifname` up.
    pub fn link_up(&self, ifname: &str) -> Result<()> {
        validate_ifname(ifname)?;
        self.ip(&["link", "set", "dev", ifname, "up"]).map(drop)
    }

    /// Sets interface `ifname` down.
    pub fn link_down(&self, ifname: &str) -> Result<()> {
        validate_ifname(ifname)?;
        self.ip(&["link", "set", "dev", ifname, "down"]).map(drop)
    }

    /// Sets the MTU of interface `ifname`.
    pub fn set_mtu(&self, ifname: &str, mtu: u32) -> Result<()> {
        validate_ifname(ifname)?;
        self.ip(&["link", "set", "dev", ifname, "mtu", &mtu.to_string()])
            .map(drop)
    }

    /// The MTU of interface `ifname`.
    pub fn mtu(&self, ifname: &str) -> Result<u32> {
        validate_ifname(ifname)?;
        let output = self.ip(&["-o", "link", "show", "dev", ifname])?;
        let mut words = output.stdout.split_whitespace();
        words
            .by_ref()
            .find(|w| *w == "mtu")
            .and_then(|_| words.next())
            .and_then(|mtu| mtu.parse().ok())
            .ok_or_else(|| Error::Parse {
                text: output.stdout.clone(),
                expected: "`ip link` output with an mtu",
            })
    }

    /// Does interface `ifname` exist in this namespace?
    pub fn link_exists(&self, ifname: &str) -> Result<bool> {
        validate_ifname(ifname)?;
        let output = self.ip_unchecked(&["-o", "link", "show", "dev", ifname])?;
        if output.success() {
            Ok(true)
        } else if output.stderr.contains("does not exist") {
            Ok(false)
        } else {
            Err(Error::CommandFailed {
                command: format!("ip -n {} -o link show dev {ifname}", self.name()),
                status: output.status,
                stderr: output.stderr.trim().to_owned(),
            })
        }
    }

    /// The names of all interfaces in this namespace, loopback included.
    pub fn links(&self) -> Result<Vec<String>> {
        let output = self.ip(&["-o", "link", "show"])?;
        Ok(output
            .stdout
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .map(|name| name.trim_end_matches(':'))
            .map(|name| name.split_once('@').map_or(name, |(name, _)| name).to_owned())
            .collect())
    }

    /// Adds `address` (`198.18.0.1/24`, `2001:db8::1/64`; bare means a host prefix) to
    /// `ifname`, refusing anything outside the test plan. IPv6 addresses get `nodad`.
    pub fn add_address(&self, ifname: &str, address: &str) -> Result<IpNet> {
        validate_ifname(ifname)?;
        let net = interface_address(address)?;
        let text = net.to_string();
        let mut args = vec!["addr", "add", text.as_str(), "dev", ifname];
        if matches!(net, IpNet::V6(_)) {
            args.push("nodad");
        }
        self.ip(&args)?;
        Ok(net)
    }

    /// Removes `address` from `ifname`.
    pub fn del_address(&self, ifname: &str, address: &str) -> Result<()> {
        validate_ifname(ifname)?;
        let net = interface_address(address)?;
        self.ip(&["addr", "del", &net.to_string(), "dev", ifname]).map(drop)
    }

    /// Every address on `ifname`, IPv6 link-local ones included.
    pub fn addresses(&self, ifname: &str) -> Result<Vec<IpNet>> {
        validate_ifname(ifname)?;
        let output = self.ip(&["-o", "addr", "show", "dev", ifname])?;
        Ok(parse_addresses(&output.stdout))
    }
}

/// The `inet`/`inet6` addresses of `ip -o addr show` output.
fn parse_addresses(text: &str) -> Vec<IpNet> {
    let mut found = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if (word == "inet" || word == "inet6")
                && let Some(net) = words.next().and_then(|w| w.parse().ok())
            {
                found.push(net);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_are_parsed_from_ip_output() {
        let text = "2: eth0    inet 198.18.1.1/24 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                    2: eth0    inet6 2001:db8::1/64 scope global nodad \\       valid_lft forever preferred_lft forever\n\
                    2: eth0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n";
        let found = parse_addresses(text);
        let expected: Vec<IpNet> = ["198.18.1.1/24", "2001:db8::1/64", "fe80::1/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(found, expected);
    }
}
