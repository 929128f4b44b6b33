//! weft's network-namespace test kit, the ground every namespace, topology and end-to-end
//! test of the project stands on (DESIGN.md, "Tests and the lab").
//!
//! Contract:
//! - **Isolation**: everything happens inside network namespaces the kit made, named
//!   `wk<pid>-<n>-<label>` ([`Netns`]); the root namespace is never configured (veth ends are
//!   created directly in their namespaces). Leftovers of dead runs are swept on first use
//!   ([`sweep()`]); namespaces of other prefixes or live processes are never touched.
//! - **Address safety**: only 198.18.0.0/15 and 2001:db8::/32 are configured; anything else is
//!   refused with an error naming it ([`address`]; IPv6 link-local only as a route gateway).
//! - **Cleanup**: dropping a [`Netns`], [`Lab`] or [`Process`], also while unwinding from a
//!   panic, ends processes (SIGTERM, bounded wait, SIGKILL, by their own pid) and removes the
//!   namespace.
//! - **Bounded time**: every command has a timeout and every wait ([`wait_until`],
//!   [`wait_for`]) a deadline and a bounded number of checks; tests never sleep bare.
//! - **Gating**: [`require_netns`] / [`skip_unless_netns!`] skip a test that cannot run here,
//!   except under `CI=true`, where that is a failure.
//!
//! It shells out to iproute2's `ip`, the real tool, and checks every exit status.
//!
//! ```no_run
//! # fn main() -> Result<(), weft_topology_tests::Error> {
//! use std::time::Duration;
//! use weft_topology_tests::{Lab, Route};
//!
//! let mut lab = Lab::new();
//! lab.add("host")?;
//! lab.add("router")?;
//! lab.veth("host", "eth0", "router", "eth0")?;
//! let (host, router) = (lab.netns("host")?, lab.netns("router")?);
//! host.add_address("eth0", "198.19.1.1/24")?;
//! router.add_address("eth0", "198.19.1.2/24")?;
//! host.add_route(&Route::default_v4().via("198.19.1.2"))?;
//! host.ping("198.19.1.2", Duration::from_secs(5))?;
//! # Ok(())
//! # }
//! ```

pub mod address;
mod binaries;
mod command;
mod error;
mod gate;
mod lab;
mod link;
mod netns;
mod ping;
mod process;
mod route;
pub mod sweep;
mod sysctl;
mod veth;
mod wait;

pub use binaries::{WORKSPACE_BINARIES, binary};
pub use command::{DEFAULT_TIMEOUT, IP_TIMEOUT, NetnsCommand, Output};
pub use error::{Error, Result};
pub use gate::{NetnsSupport, netns_support, require_netns};
pub use lab::Lab;
pub use netns::{MAX_LABEL, NETNS_DIR, Netns, PREFIX, netns_exists};
pub use process::{KILL_WAIT, Process, STOP_GRACE};
pub use route::{Family, NextHop, Route};
pub use sweep::{SweepReport, sweep};
pub use veth::{LinkEnd, VethPair};
pub use wait::{MIN_POLL, wait_for, wait_until};

pub use nix::sys::signal::Signal;
