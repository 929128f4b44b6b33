//! The kernel FIB: best paths learned from peers, installed as routes with weft's own route
//! protocol number (`ip route show proto 87`), through rtnetlink.
//!
//! Owns the narrow door to the kernel's routing table ([`Fib`], real: [`NetlinkFib`]) and the
//! FIB task ([`run`]), which owns what weft has installed. The instance sends it one
//! [`FibChange`] per prefix whose best path changed, over a bounded queue, and never waits on
//! netlink itself. At start the task removes weft routes a previous run left behind; on
//! cancellation it removes every route it installed (without graceful restart, a route of a
//! dead speaker would blackhole traffic). A route the kernel refuses (a next hop that is not
//! directly reachable, say) is logged and skipped.
//!
//! Must never: touch a route of another protocol, decide which path is best (the instance
//! does), or hold the instance up.
//!
//! With `kernel.blackhole`, every originated prefix is backed by a blackhole route (also proto
//! 87) for as long as the task runs: packets to an address of the node's own block that no pod
//! holds are dropped on the node instead of following its default route back to the fabric.
//!
//! Not yet: ECMP multipath, a reconcile that keeps valid routes across a restart instead of
//! removing them, route-event listening.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_bgp_proto::Prefix;

/// weft's route protocol number (unassigned in iproute2's `rt_protos`; 87 is `W`).
pub const WEFT_ROUTE_PROTOCOL: u8 = 87;

/// What the FIB should hold for one prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FibChange {
    /// The prefix.
    pub prefix: Prefix,
    /// The next hop of its best learned path; `None`: no weft route.
    pub next_hop: Option<IpAddr>,
}

/// An error from the kernel.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    /// The route message could not be built (mixed address families).
    #[error("cannot build a route to {prefix} via {next_hop}")]
    Build {
        /// The prefix.
        prefix: Prefix,
        /// The next hop.
        next_hop: IpAddr,
    },
    /// The kernel refused a request.
    #[error("the kernel refused to {operation} the route to {prefix}")]
    Kernel {
        /// add, delete, list.
        operation: &'static str,
        /// The prefix.
        prefix: String,
        /// Its answer.
        #[source]
        source: rtnetlink::Error,
    },
}

/// The kernel routing table, as weft uses it.
pub trait Fib {
    /// Installs or replaces the route to `prefix` via `next_hop`.
    fn replace(&mut self, prefix: Prefix, next_hop: IpAddr) -> impl Future<Output = Result<(), FibError>> + Send;
    /// Installs or replaces a blackhole route for `prefix`.
    fn blackhole(&mut self, prefix: Prefix) -> impl Future<Output = Result<(), FibError>> + Send;
    /// Removes weft's route to `prefix`.
    fn delete(&mut self, prefix: Prefix) -> impl Future<Output = Result<(), FibError>> + Send;
    /// Removes every weft route (leftovers of an earlier run); how many there were.
    fn flush(&mut self) -> impl Future<Output = Result<usize, FibError>> + Send;
}

/// The real FIB, over rtnetlink, in the network namespace the process runs in.
#[derive(Debug, Clone)]
pub struct NetlinkFib {
    handle: Handle,
}

impl NetlinkFib {
    /// Opens the netlink connection; must run inside the tokio runtime.
    pub fn connect() -> Result<Self, FibError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    fn message(prefix: Prefix) -> RouteMessageBuilder<IpAddr> {
        let builder = RouteMessageBuilder::<IpAddr>::new();
        // Both calls only fail on mixed families, which a single prefix cannot produce.
        match builder.clone().destination_prefix(prefix.addr(), prefix.prefix_len()) {
            Ok(builder) => builder.protocol(RouteProtocol::Other(WEFT_ROUTE_PROTOCOL)),
            Err(_) => builder,
        }
    }

    async fn dump(&self, empty: RouteMessage) -> Result<Vec<RouteMessage>, FibError> {
        let routes: Vec<RouteMessage> =
            self.handle
                .route()
                .get(empty)
                .execute()
                .try_collect()
                .await
                .map_err(|source| FibError::Kernel {
                    operation: "list",
                    prefix: "any prefix".to_owned(),
                    source,
                })?;
        Ok(routes
            .into_iter()
            .filter(|route| route.header.protocol == RouteProtocol::Other(WEFT_ROUTE_PROTOCOL))
            .collect())
    }
}

impl Fib for NetlinkFib {
    async fn replace(&mut self, prefix: Prefix, next_hop: IpAddr) -> Result<(), FibError> {
        let message = Self::message(prefix)
            .gateway(next_hop)
            .map_err(|_| FibError::Build { prefix, next_hop })?
            .build();
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| FibError::Kernel {
                operation: "add",
                prefix: prefix.to_string(),
                source,
            })
    }

    async fn blackhole(&mut self, prefix: Prefix) -> Result<(), FibError> {
        let message = Self::message(prefix).kind(RouteType::BlackHole).build();
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| FibError::Kernel {
                operation: "add a blackhole for",
                prefix: prefix.to_string(),
                source,
            })
    }

    async fn delete(&mut self, prefix: Prefix) -> Result<(), FibError> {
        // Any type: the kernel matches a unicast or a blackhole route alike.
        let message = Self::message(prefix).kind(RouteType::Unspec).build();
        self.handle
            .route()
            .del(message)
            .execute()
            .await
            .map_err(|source| FibError::Kernel {
                operation: "delete",
                prefix: prefix.to_string(),
                source,
            })
    }

    async fn flush(&mut self) -> Result<usize, FibError> {
        let mut stale = self.dump(RouteMessageBuilder::<Ipv4Addr>::new().build()).await?;
        stale.extend(self.dump(RouteMessageBuilder::<Ipv6Addr>::new().build()).await?);
        let count = stale.len();
        for route in stale {
            self.handle
                .route()
                .del(route)
                .execute()
                .await
                .map_err(|source| FibError::Kernel {
                    operation: "delete",
                    prefix: "a stale weft route".to_owned(),
                    source,
                })?;
        }
        Ok(count)
    }
}

/// The FIB task: installs the `blackholes`, applies changes until cancelled (or the queue
/// closes), then removes what it installed and hands the FIB back.
pub async fn run<F: Fib>(
    mut fib: F,
    mut changes: mpsc::Receiver<FibChange>,
    blackholes: Vec<Prefix>,
    cancel: CancellationToken,
) -> F {
    match fib.flush().await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "stale weft routes removed from the kernel"),
        Err(error) => tracing::warn!(%error, "cannot remove stale weft routes"),
    }
    let mut held: Vec<Prefix> = Vec::new();
    for prefix in blackholes {
        match fib.blackhole(prefix).await {
            Ok(()) => held.push(prefix),
            Err(error) => tracing::warn!(%prefix, %error, "blackhole route not installed"),
        }
    }
    let mut installed: BTreeMap<Prefix, IpAddr> = BTreeMap::new();
    loop {
        let change = tokio::select! {
            () = cancel.cancelled() => break,
            change = changes.recv() => match change {
                Some(change) => change,
                None => break,
            },
        };
        apply(&mut fib, &mut installed, change).await;
    }
    for prefix in std::mem::take(&mut installed).into_keys().chain(held) {
        if let Err(error) = fib.delete(prefix).await {
            tracing::warn!(%error, "route left in the kernel");
        }
    }
    fib
}

async fn apply<F: Fib>(fib: &mut F, installed: &mut BTreeMap<Prefix, IpAddr>, change: FibChange) {
    let FibChange { prefix, next_hop } = change;
    let result = match next_hop {
        Some(next_hop) if installed.get(&prefix) == Some(&next_hop) => Ok(()),
        Some(next_hop) => fib.replace(prefix, next_hop).await.map(|()| {
            installed.insert(prefix, next_hop);
        }),
        None if installed.remove(&prefix).is_some() => fib.delete(prefix).await,
        None => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(%prefix, ?next_hop, %error, "kernel route not programmed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIB in memory, recording the requests it saw.
    #[derive(Debug, Default)]
    struct FakeFib {
        routes: BTreeMap<Prefix, IpAddr>,
        requests: Vec<String>,
    }

    impl Fib for FakeFib {
        async fn replace(&mut self, prefix: Prefix, next_hop: IpAddr) -> Result<(), FibError> {
            self.requests.push(format!("replace {prefix} via {next_hop}"));
            self.routes.insert(prefix, next_hop);
            Ok(())
        }

        async fn blackhole(&mut self, prefix: Prefix) -> Result<(), FibError> {
            self.requests.push(format!("blackhole {prefix}"));
            Ok(())
        }

        async fn delete(&mut self, prefix: Prefix) -> Result<(), FibError> {
            self.requests.push(format!("delete {prefix}"));
            self.routes.remove(&prefix);
            Ok(())
        }

        async fn flush(&mut self) -> Result<usize, FibError> {
            Ok(std::mem::take(&mut self.routes).len())
        }
    }

    fn change(prefix: &str, next_hop: Option<&str>) -> FibChange {
        FibChange {
            prefix: prefix.parse().expect("prefix"),
            next_hop: next_hop.map(|h| h.parse().expect("address")),
        }
    }

    #[tokio::test]
    async fn only_real_changes_reach_the_kernel() {
        let mut fib = FakeFib::default();
        let mut installed = BTreeMap::new();
        for c in [
            change("198.18.100.0/24", Some("198.19.0.1")),
            change("198.18.100.0/24", Some("198.19.0.1")),
            change("198.18.100.0/24", Some("198.19.0.3")),
            change("198.18.101.0/24", None),
            change("198.18.100.0/24", None),
            change("198.18.100.0/24", None),
        ] {
            apply(&mut fib, &mut installed, c).await;
        }
        assert_eq!(
            fib.requests,
            [
                "replace 198.18.100.0/24 via 198.19.0.1",
                "replace 198.18.100.0/24 via 198.19.0.3",
                "delete 198.18.100.0/24",
            ]
        );
        assert!(installed.is_empty() && fib.routes.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_task_removes_every_installed_route() {
        let (tx, rx) = mpsc::channel(4);
        let mut stale = FakeFib::default();
        stale.routes.insert(
            "198.18.9.0/24".parse().expect("prefix"),
            "198.19.0.9".parse().expect("address"),
        );
        tx.send(change("2001:db8:100::/48", Some("2001:db8:ff::1")))
            .await
            .expect("queued");
        drop(tx); // the queue closing ends the task as a cancellation does
        let blackholes = vec!["198.18.1.0/26".parse().expect("prefix")];
        let fib = run(stale, rx, blackholes, CancellationToken::new()).await;
        assert_eq!(
            fib.requests,
            [
                "blackhole 198.18.1.0/26",
                "replace 2001:db8:100::/48 via 2001:db8:ff::1",
                "delete 2001:db8:100::/48",
                "delete 198.18.1.0/26",
            ]
        );
        assert!(fib.routes.is_empty(), "stale routes flushed at start: {:?}", fib.routes);
    }
}
