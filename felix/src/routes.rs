//! Host routes and proxy ARP of this node's endpoints: weft-cni creates them; felix puts back
//! what drifted (a route deleted by hand, proxy ARP turned off). Only interfaces that exist are
//! touched: a pod being torn down is the CNI plugin's business.
//!
//! The door is iproute2's `ip` (`ip -j route show`, `ip -batch -`) and `/proc/sys/net`.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// One endpoint's host side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRoutes {
    pub interface: String,
    pub addresses: Vec<IpAddr>,
}

/// What a reconcile repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    pub routes: usize,
    pub proxy_arp: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot run `ip {args}`: is iproute2 installed?")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("cannot set {path}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn conf_dir(interface: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{interface}")
}

/// Whether the interface exists in this network namespace (`/proc/sys/net` is per namespace).
fn exists(interface: &str) -> bool {
    !interface.contains('/') && Path::new(&conf_dir(interface)).exists()
}

fn ip(args: &[&str], stdin: Option<&str>) -> Result<String, RouteError> {
    let joined = args.join(" ");
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RouteError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|source| RouteError::Spawn {
            args: joined.clone(),
            source,
        })?;
    }
    let output = child.wait_with_output().map_err(|source| RouteError::Spawn {
        args: joined.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(RouteError::Failed {
            args: joined,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `(destination, device)` of the host routes present now.
fn present() -> Result<BTreeSet<(String, String)>, RouteError> {
    let mut routes = BTreeSet::new();
    for family in ["-4", "-6"] {
        let text = ip(&["-j", family, "route", "show", "table", "main"], None)?;
        let listed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        for route in listed.as_array().into_iter().flatten() {
            if let (Some(dst), Some(dev)) = (
                route.get("dst").and_then(Value::as_str),
                route.get("dev").and_then(Value::as_str),
            ) {
                let dst = dst.trim_end_matches("/32").trim_end_matches("/128");
                routes.insert((dst.to_owned(), dev.to_owned()));
            }
        }
    }
    Ok(routes)
}

/// Puts back missing host routes and proxy ARP of `endpoints`.
pub fn reconcile(endpoints: &[EndpointRoutes]) -> Result<Repairs, RouteError> {
    let mut repairs = Repairs::default();
    if !endpoints.iter().any(|e| exists(&e.interface)) {
        return Ok(repairs);
    }
    let present = present()?;
    let mut batch = String::new();
    for endpoint in endpoints.iter().filter(|e| exists(&e.interface)) {
        for address in &endpoint.addresses {
            if present.contains(&(address.to_string(), endpoint.interface.clone())) {
                continue;
            }
            let (length, scope) = if address.is_ipv4() {
                (32, " scope link")
            } else {
                (128, "")
            };
            batch.push_str(&format!(
                "route replace {address}/{length} dev {}{scope}\n",
                endpoint.interface
            ));
            repairs.routes += 1;
        }
        if endpoint.addresses.iter().any(IpAddr::is_ipv4) {
            let path = format!("{}/proxy_arp", conf_dir(&endpoint.interface));
            if std::fs::read_to_string(&path).map(|v| v.trim() != "1").unwrap_or(false) {
                std::fs::write(&path, "1").map_err(|source| RouteError::Sysctl { path, source })?;
                repairs.proxy_arp += 1;
            }
        }
    }
    if !batch.is_empty() {
        ip(&["-batch", "-"], Some(&batch))?;
    }
    Ok(repairs)
}
