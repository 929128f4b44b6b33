//! The kernel FIB: best paths learned from peers, installed as routes with weft's own route
//! protocol number (`ip route show proto 87`), through rtnetlink.
//!
//! Owns the narrow door to the kernel's routing table ([`Fib`], real: [`NetlinkFib`]) and the
//! FIB task ([`run`]), which owns what weft has installed. The instance sends it batches of
//! [`FibChange`]s (one per prefix whose paths changed, one batch per UPDATE), over a bounded
//! queue, and never waits on netlink itself. The task takes every batch queued at once, keeps
//! the last change of each prefix, and has up to [`IN_FLIGHT`] netlink requests outstanding on
//! its one socket (the kernel acknowledges them in order; no round trip per route). At start the task keeps the weft routes a previous run left behind (graceful
//! restart: forwarding goes on while the sessions come back) and removes those the RIB does not
//! claim once it is in sync ([`FibRequest::Reconcile`]); on a clean stop it removes every route
//! it installed, on a stop for a restart none. A route the kernel refuses (a next hop that is not
//! directly reachable, say) is logged and skipped.
//!
//! Must never: touch a route of another protocol, decide which path is best (the instance
//! does), or hold the instance up.
//!
//! With `kernel.blackhole`, every originated prefix is backed by a blackhole route (also proto
//! 87) for as long as the task runs: packets to an address of the node's own block that no pod
//! holds are dropped on the node instead of following its default route back to the fabric.
//!
//! An IPv4 route through an IPv6 next hop (RFC 8950) is installed with `RTA_VIA`, as
//! `ip route add 198.18.1.0/26 via inet6 2001:db8:ff::2` does.
//!
//! ECMP: a prefix with several equal best paths is one kernel route with one next hop each
//! (`ip route` shows `nexthop via … nexthop via …`); losing a path replaces it with the rest.
//!
//! Not yet: route-event listening (a weft route someone else deletes stays deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use smallvec::SmallVec;
use tokio::sync::mpsc;
use weft_bgp_proto::Prefix;

use crate::installed::Installed;
use crate::metrics::KernelRoutes;
use crate::route_batch::{Reply, Request, RouteBatch};
use crate::shutdown::Shutdown;

/// weft's route protocol number (unassigned in iproute2's `rt_protos`; 87 is `W`).
pub const WEFT_ROUTE_PROTOCOL: u8 = 87;

/// Netlink requests outstanding at once: enough to keep the kernel busy, few enough that their
/// acknowledgements never overflow the socket's receive buffer.
pub const IN_FLIGHT: usize = 64;

/// Changes taken from the queue into one batch at most.
const MAX_BATCH: usize = 2048;

/// The next hops of one kernel route; one, the common case, held inline.
pub type NextHops = SmallVec<[IpAddr; 1]>;

/// What the instance asks of the FIB task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibRequest {
    /// What the kernel should hold for some prefixes; a later change to a prefix wins.
    Changes(Vec<FibChange>),
    /// The originated prefixes changed (configuration reload): the blackhole routes follow.
    Blackholes(Vec<Prefix>),
    /// The RIB is in sync after a restart (End-of-RIB from every peer, or the deadline): weft
    /// routes of the previous run that no change has claimed are stale; remove them.
    Reconcile,
}

/// A weft route found in the kernel at start: a previous run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// The prefix.
    pub prefix: Prefix,
    /// Its gateways, sorted; empty for a blackhole.
    pub next_hops: Vec<IpAddr>,
}

/// What the FIB should hold for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibChange {
    /// The prefix.
    pub prefix: Prefix,
    /// The next hops of its best learned paths (more than one: ECMP), best first; empty: no
    /// weft route.
    pub next_hops: NextHops,
}

/// One request to the kernel's routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibOperation {
    /// Install or replace the route to the prefix via these next hops (not empty).
    Replace(Prefix, NextHops),
    /// Remove weft's route to the prefix.
    Delete(Prefix),
}

impl FibOperation {
    fn prefix(&self) -> Prefix {
        match self {
            Self::Replace(prefix, _) | Self::Delete(prefix) => *prefix,
        }
    }
}

/// An error from the kernel.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    /// The route message could not be built (an IPv6 route through an IPv4 address).
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
    /// Installs or replaces the route to `prefix` via `next_hops` (one route, several next hops
    /// for ECMP); `next_hops` is not empty.
    fn replace(&mut self, prefix: Prefix, next_hops: &[IpAddr]) -> impl Future<Output = Result<(), FibError>> + Send;
    /// Installs or replaces a blackhole route for `prefix`.
    fn blackhole(&mut self, prefix: Prefix) -> impl Future<Output = Result<(), FibError>> + Send;
    /// Removes weft's route to `prefix`.
    fn delete(&mut self, prefix: Prefix) -> impl Future<Output = Result<(), FibError>> + Send;
    /// Every weft route in the kernel (what a previous run left).
    fn list(&mut self) -> impl Future<Output = Result<Vec<KernelRoute>, FibError>> + Send;
    /// Carries out `operations` (at most one per prefix, so their order does not matter); the
    /// outcome of each, in any order. This default does one after the other.
    fn apply_all(
        &mut self,
        operations: Vec<FibOperation>,
    ) -> impl Future<Output = Vec<(FibOperation, Result<(), FibError>)>> + Send
    where
        Self: Send,
    {
        async move {
            let mut outcomes = Vec::with_capacity(operations.len());
            for operation in operations {
                let result = match &operation {
                    FibOperation::Replace(prefix, next_hops) => self.replace(*prefix, next_hops).await,
                    FibOperation::Delete(prefix) => self.delete(*prefix).await,
                };
                outcomes.push((operation, result));
            }
            outcomes
        }
    }
}

/// The real FIB, over rtnetlink, in the network namespace the process runs in: single
/// requests and dumps through an rtnetlink connection, batches ([`Fib::apply_all`]) through a
/// socket of their own ([`RouteBatch`]).
#[derive(Debug, Clone)]
pub struct NetlinkFib {
    handle: Handle,
    /// Only ever locked on a blocking thread, never across an `.await`.
    batch: Arc<Mutex<RouteBatch>>,
}

impl NetlinkFib {
    /// Opens the netlink connection; must run inside the tokio runtime.
    pub fn connect() -> Result<Self, FibError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(FibError::Connect)?;
        tokio::spawn(connection);
        let batch = RouteBatch::open().map_err(FibError::Connect)?;
        Ok(Self {
            handle,
            batch: Arc::new(Mutex::new(batch)),
        })
    }

    /// Sends the requests in batches on the blocking thread pool; `None` if the batch socket
    /// failed (or its thread did).
    async fn send_batched(&self, requests: Vec<Request>) -> Option<Vec<Reply>> {
        let batch = self.batch.clone();
        let sent = tokio::task::spawn_blocking(move || {
            let mut batch = batch.lock().ok()?;
            match batch.apply(requests) {
                Ok(replies) => Some(replies),
                Err(error) => {
                    tracing::warn!(%error, "batched netlink requests failed; asking one by one");
                    None
                }
            }
        })
        .await;
        sent.ok().flatten()
    }

    /// Adds `message`'s route, replacing whatever route the prefix had.
    async fn add_replacing(
        handle: Handle,
        message: RouteMessage,
        operation: &'static str,
        prefix: Prefix,
    ) -> Result<(), FibError> {
        handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|source| FibError::Kernel {
                operation,
                prefix: prefix.to_string(),
                source,
            })
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

    /// The route to `prefix` via `next_hops`.
    fn route(prefix: Prefix, next_hops: &[IpAddr]) -> Result<RouteMessage, FibError> {
        Ok(match next_hops {
            [next_hop] => {
                let mut message = Self::message(prefix).build();
                message.attributes.push(next_hop_attribute(prefix, *next_hop)?);
                message
            }
            _ => {
                let hops = next_hops
                    .iter()
                    .map(|next_hop| {
                        let mut hop = RouteNextHop::default();
                        hop.attributes.push(next_hop_attribute(prefix, *next_hop)?);
                        Ok(hop)
                    })
                    .collect::<Result<_, FibError>>()?;
                Self::message(prefix).multipath(hops).build()
            }
        })
    }

    async fn execute(handle: Handle, operation: &FibOperation) -> Result<(), FibError> {
        match operation {
            FibOperation::Replace(prefix, next_hops) => {
                let message = Self::route(*prefix, next_hops)?;
                Self::add_replacing(handle, message, "add", *prefix).await
            }
            FibOperation::Delete(prefix) => Self::remove(handle, *prefix).await,
        }
    }

    async fn remove(handle: Handle, prefix: Prefix) -> Result<(), FibError> {
        // Any type: the kernel matches a unicast or a blackhole route alike.
        let message = Self::message(prefix).kind(RouteType::Unspec).build();
        handle
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
}

impl Fib for NetlinkFib {
    async fn replace(&mut self, prefix: Prefix, next_hops: &[IpAddr]) -> Result<(), FibError> {
        let message = Self::route(prefix, next_hops)?;
        Self::add_replacing(self.handle.clone(), message, "add", prefix).await
    }

    async fn blackhole(&mut self, prefix: Prefix) -> Result<(), FibError> {
        let message = Self::message(prefix).kind(RouteType::BlackHole).build();
        Self::add_replacing(self.handle.clone(), message, "add a blackhole for", prefix).await
    }

    async fn delete(&mut self, prefix: Prefix) -> Result<(), FibError> {
        Self::remove(self.handle.clone(), prefix).await
    }

    /// Batched ([`RouteBatch`]): [`crate::route_batch::CHUNK`] requests per `send`, only refusals
    /// answered. What it cannot tell (lost refusals, a failed socket) is asked again with
    /// acknowledgements, up to [`IN_FLIGHT`] requests outstanding.
    async fn apply_all(&mut self, operations: Vec<FibOperation>) -> Vec<(FibOperation, Result<(), FibError>)> {
        let mut outcomes = Vec::with_capacity(operations.len());
        let mut batched = Vec::with_capacity(operations.len());
        let mut requests = Vec::with_capacity(operations.len());
        for operation in operations {
            let request = match &operation {
                FibOperation::Replace(prefix, next_hops) => Self::route(*prefix, next_hops).map(Request::Replace),
                FibOperation::Delete(prefix) => {
                    Ok(Request::Delete(Self::message(*prefix).kind(RouteType::Unspec).build()))
                }
            };
            match request {
                Ok(request) => {
                    requests.push(request);
                    batched.push(operation);
                }
                Err(error) => outcomes.push((operation, Err(error))),
            }
        }
        let replies = self.send_batched(requests).await;
        let mut again = Vec::new();
        match replies {
            Some(replies) if replies.len() == batched.len() => {
                for (operation, reply) in batched.into_iter().zip(replies) {
                    match reply {
                        Reply::Done => outcomes.push((operation, Ok(()))),
                        Reply::Refused(error) => {
                            let failed = FibError::Kernel {
                                operation: match operation {
                                    FibOperation::Replace(..) => "add",
                                    FibOperation::Delete(_) => "delete",
                                },
                                prefix: operation.prefix().to_string(),
                                source: rtnetlink::Error::NetlinkError(error),
                            };
                            outcomes.push((operation, Err(failed)));
                        }
                        Reply::Unknown => again.push(operation),
                    }
                }
            }
            _ => again = batched,
        }
        let handle = &self.handle;
        let retried: Vec<_> = futures::stream::iter(again)
            .map(|operation| async move {
                let result = Self::execute(handle.clone(), &operation).await;
                (operation, result)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        outcomes.extend(retried);
        outcomes
    }

    async fn list(&mut self) -> Result<Vec<KernelRoute>, FibError> {
        let mut routes = self.dump(RouteMessageBuilder::<Ipv4Addr>::new().build()).await?;
        routes.extend(self.dump(RouteMessageBuilder::<Ipv6Addr>::new().build()).await?);
        Ok(routes.iter().filter_map(kernel_route).collect())
    }
}

/// The next hop of a route to `prefix`: `RTA_GATEWAY` of the prefix's family, or `RTA_VIA` for
/// an IPv4 route through an IPv6 address (RFC 8950).
fn next_hop_attribute(prefix: Prefix, next_hop: IpAddr) -> Result<RouteAttribute, FibError> {
    match (prefix, next_hop) {
        (Prefix::V4(_), IpAddr::V6(via)) => Ok(RouteAttribute::Via(RouteVia::Inet6(via))),
        (Prefix::V6(_), IpAddr::V4(_)) => Err(FibError::Build { prefix, next_hop }),
        _ => Ok(RouteAttribute::Gateway(RouteAddress::from(next_hop))),
    }
}

/// A dumped route as weft sees it; `None` for one weft cannot have made.
fn kernel_route(route: &RouteMessage) -> Option<KernelRoute> {
    let length = route.header.destination_prefix_length;
    let mut destination = None;
    let mut next_hops = Vec::new();
    let address = |address: &RouteAddress| match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    };
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(a) => destination = address(a),
            RouteAttribute::Gateway(a) => next_hops.extend(address(a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => next_hops.push(IpAddr::V6(*a)),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    for attribute in &hop.attributes {
                        match attribute {
                            RouteAttribute::Gateway(a) => next_hops.extend(address(a)),
                            RouteAttribute::Via(RouteVia::Inet6(a)) => next_hops.push(IpAddr::V6(*a)),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // A default route carries no destination attribute.
    let unspecified = match route.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        rtnetlink::packet_route::AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    };
    let destination = destination.or(unspecified)?;
    let prefix = Prefix::new(destination, length).ok()?;
    next_hops.sort_unstable();
    Some(KernelRoute { prefix, next_hops })
}

/// The FIB task: installs the `blackholes`, applies changes until cancelled (or the queue
/// closes), then removes what it installed and hands the FIB back.
///
/// `previous` are the weft routes a previous run left in the kernel (graceful restart, RFC
/// 4724 §4.1: forwarding goes on while the RIB is rebuilt). They stay untouched — a change to
/// the same next hops costs nothing, so a valid route never flaps — until
/// [`FibRequest::Reconcile`], which removes those no change has claimed.
pub async fn run<F: Fib + Send>(
    mut fib: F,
    mut requests: mpsc::Receiver<FibRequest>,
    blackholes: Vec<Prefix>,
    previous: Vec<KernelRoute>,
    kernel_routes: KernelRoutes,
    shutdown: Shutdown,
) -> F {
    let mut held: Vec<Prefix> = Vec::new();
    for prefix in blackholes {
        match fib.blackhole(prefix).await {
            Ok(()) => held.push(prefix),
            Err(error) => tracing::warn!(%prefix, %error, "blackhole route not installed"),
        }
    }
    let mut installed = Installed::default();
    let mut unclaimed: BTreeSet<Prefix> = BTreeSet::new();
    for route in previous {
        if held.contains(&route.prefix) {
            continue;
        }
        unclaimed.insert(route.prefix);
        if !route.next_hops.is_empty() {
            installed.insert(route.prefix, route.next_hops.into_iter().collect::<NextHops>());
        }
    }
    if !unclaimed.is_empty() {
        tracing::info!(
            count = unclaimed.len(),
            "weft routes of a previous run kept in the kernel until the RIB is in sync"
        );
    }
    // A request taken from the queue while gathering a batch, handled next.
    let mut next: Option<FibRequest> = None;
    loop {
        kernel_routes.set(installed.len() + held.len() + unclaimed.iter().filter(|p| !installed.contains(p)).count());
        let request = match next.take() {
            Some(request) => request,
            None => tokio::select! {
                () = shutdown.cancelled() => break,
                request = requests.recv() => match request {
                    Some(request) => request,
                    None => break,
                },
            },
        };
        match request {
            FibRequest::Changes(mut changes) => {
                // Whatever else is queued goes in the same batch: the kernel gets it pipelined.
                while changes.len() < MAX_BATCH {
                    match requests.try_recv() {
                        Ok(FibRequest::Changes(more)) => changes.extend(more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                for change in &changes {
                    unclaimed.remove(&change.prefix);
                }
                apply(&mut fib, &mut installed, changes).await;
            }
            FibRequest::Blackholes(wanted) => {
                for prefix in held.clone() {
                    if !wanted.contains(&prefix) {
                        held.retain(|p| *p != prefix);
                        if let Err(error) = fib.delete(prefix).await {
                            tracing::warn!(%prefix, %error, "blackhole route left in the kernel");
                        }
                    }
                }
                for prefix in wanted {
                    if held.contains(&prefix) {
                        continue;
                    }
                    match fib.blackhole(prefix).await {
                        Ok(()) => held.push(prefix),
                        Err(error) => tracing::warn!(%prefix, %error, "blackhole route not installed"),
                    }
                }
            }
            FibRequest::Reconcile => {
                let stale = std::mem::take(&mut unclaimed);
                let count = stale.len();
                for prefix in &stale {
                    installed.remove(prefix);
                }
                let deletes = stale.into_iter().map(FibOperation::Delete).collect();
                for (operation, result) in fib.apply_all(deletes).await {
                    if let Err(error) = result {
                        tracing::warn!(prefix = %operation.prefix(), %error, "stale weft route left in the kernel");
                    }
                }
                tracing::info!(removed = count, "kernel reconciled with the RIB");
            }
        }
    }
    if shutdown.for_restart() {
        tracing::info!(
            count = installed.len() + held.len() + unclaimed.len(),
            "stopping for a restart: weft routes left in the kernel"
        );
        return fib;
    }
    let deletes = installed
        .take_prefixes()
        .into_iter()
        .chain(held)
        .chain(unclaimed)
        .map(FibOperation::Delete)
        .collect();
    for (_, result) in fib.apply_all(deletes).await {
        if let Err(error) = result {
            tracing::warn!(%error, "route left in the kernel");
        }
    }
    fib
}

/// Brings the kernel to `changes` (the last change of a prefix wins), skipping what it already
/// holds, every request of the batch outstanding together ([`Fib::apply_all`]).
async fn apply<F: Fib + Send>(fib: &mut F, installed: &mut Installed, changes: Vec<FibChange>) {
    let mut wanted: BTreeMap<Prefix, NextHops> = BTreeMap::new();
    for FibChange { prefix, mut next_hops } in changes {
        // The kernel keeps a multipath route's next hops in its own order: compare as sets.
        next_hops.sort_unstable();
        next_hops.dedup();
        wanted.insert(prefix, next_hops);
    }
    let mut operations = Vec::new();
    // What a replaced route was, to restore should the kernel refuse the new one.
    let mut replaced: BTreeMap<Prefix, NextHops> = BTreeMap::new();
    for (prefix, next_hops) in wanted {
        if next_hops.is_empty() {
            if installed.remove(&prefix).is_some() {
                operations.push(FibOperation::Delete(prefix));
            }
        } else if installed.get(&prefix) != Some(&next_hops) {
            if let Some(before) = installed.insert(prefix, next_hops.clone()) {
                replaced.insert(prefix, before);
            }
            operations.push(FibOperation::Replace(prefix, next_hops));
        }
    }
    for (operation, result) in fib.apply_all(operations).await {
        let Err(error) = result else { continue };
        match operation {
            FibOperation::Replace(prefix, next_hops) => {
                match replaced.remove(&prefix) {
                    Some(before) => installed.insert(prefix, before),
                    None => installed.remove(&prefix),
                };
                tracing::warn!(%prefix, ?next_hops, %error, "kernel route not programmed");
            }
            FibOperation::Delete(prefix) => tracing::warn!(%prefix, %error, "kernel route not removed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIB in memory, recording the requests it saw.
    #[derive(Debug, Default)]
    struct FakeFib {
        routes: BTreeMap<Prefix, Vec<IpAddr>>,
        requests: Vec<String>,
    }

    impl Fib for FakeFib {
        async fn replace(&mut self, prefix: Prefix, next_hops: &[IpAddr]) -> Result<(), FibError> {
            let via: Vec<String> = next_hops.iter().map(IpAddr::to_string).collect();
            self.requests.push(format!("replace {prefix} via {}", via.join(" ")));
            self.routes.insert(prefix, next_hops.to_vec());
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

        async fn list(&mut self) -> Result<Vec<KernelRoute>, FibError> {
            Ok(self
                .routes
                .iter()
                .map(|(prefix, next_hops)| KernelRoute {
                    prefix: *prefix,
                    next_hops: next_hops.clone(),
                })
                .collect())
        }
    }

    fn change(prefix: &str, next_hops: &[&str]) -> FibChange {
        FibChange {
            prefix: prefix.parse().expect("prefix"),
            next_hops: next_hops.iter().map(|h| h.parse().expect("address")).collect(),
        }
    }

    #[tokio::test]
    async fn only_real_changes_reach_the_kernel() {
        let mut fib = FakeFib::default();
        let mut installed = Installed::default();
        for c in [
            change("198.18.100.0/24", &["198.19.0.1"]),
            change("198.18.100.0/24", &["198.19.0.1"]),
            change("198.18.100.0/24", &["198.19.0.3"]),
            change("198.18.100.0/24", &["198.19.0.3", "198.19.0.1"]),
            change("198.18.100.0/24", &["198.19.0.1", "198.19.0.3"]),
            change("198.18.100.0/24", &["198.19.0.1"]),
            change("198.18.101.0/24", &[]),
            change("198.18.100.0/24", &[]),
            change("198.18.100.0/24", &[]),
        ] {
            apply(&mut fib, &mut installed, vec![c]).await;
        }
        assert_eq!(
            fib.requests,
            [
                "replace 198.18.100.0/24 via 198.19.0.1",
                "replace 198.18.100.0/24 via 198.19.0.3",
                "replace 198.18.100.0/24 via 198.19.0.1 198.19.0.3",
                "replace 198.18.100.0/24 via 198.19.0.1",
                "delete 198.18.100.0/24",
            ]
        );
        assert!(installed.len() == 0 && fib.routes.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_task_removes_every_installed_route() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(FibRequest::Changes(vec![change(
            "2001:db8:100::/48",
            &["2001:db8:ff::1"],
        )]))
        .await
        .expect("queued");
        drop(tx); // the queue closing ends the task as a cancellation does
        let blackholes = vec!["198.18.1.0/26".parse().expect("prefix")];
        let fib = run(
            FakeFib::default(),
            rx,
            blackholes,
            Vec::new(),
            KernelRoutes::default(),
            Shutdown::new(),
        )
        .await;
        assert_eq!(
            fib.requests,
            [
                "blackhole 198.18.1.0/26",
                "replace 2001:db8:100::/48 via 2001:db8:ff::1",
                "delete 2001:db8:100::/48",
                "delete 198.18.1.0/26",
            ]
        );
        assert!(fib.routes.is_empty(), "{:?}", fib.routes);
    }

    #[tokio::test]
    async fn after_a_restart_valid_routes_stay_untouched_and_unclaimed_ones_go_at_reconcile() {
        let mut kernel = FakeFib::default();
        for (prefix, hop) in [("198.18.100.0/24", "198.19.0.1"), ("198.18.200.0/24", "198.19.0.1")] {
            kernel
                .routes
                .insert(prefix.parse().expect("prefix"), vec![hop.parse().expect("address")]);
        }
        let previous = kernel.list().await.expect("listed");
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            kernel,
            rx,
            Vec::new(),
            previous,
            KernelRoutes::default(),
            Shutdown::new(),
        ));
        // The RIB comes back with the same next hop for one prefix: nothing reaches the kernel.
        tx.send(FibRequest::Changes(vec![change("198.18.100.0/24", &["198.19.0.1"])]))
            .await
            .expect("queued");
        tx.send(FibRequest::Reconcile).await.expect("queued");
        drop(tx);
        let fib = task.await.expect("task");
        assert_eq!(
            fib.requests,
            [
                "delete 198.18.200.0/24", // reconcile: unclaimed
                "delete 198.18.100.0/24", // the end of the task (a clean stop)
            ]
        );
    }

    /// In a namespace of its own (198.19.0.2/24 on a veth link): a batch goes through the
    /// batch socket, what the kernel refuses is reported for that request only, and a large
    /// batch (several sends) lands whole and leaves whole.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_batch_installs_what_the_kernel_takes_and_reports_each_refusal() {
        use weft_topology_tests::{Netns, require_netns};
        let Some(_support) = require_netns() else { return };
        let netns = Netns::new("fib-batch").unwrap();
        netns
            .ip(&["link", "add", "weft0", "type", "veth", "peer", "name", "weft1"])
            .unwrap();
        netns.ip(&["addr", "add", "198.19.0.2/24", "dev", "weft0"]).unwrap();
        netns.ip(&["link", "set", "weft0", "up"]).unwrap();
        netns.ip(&["link", "set", "weft1", "up"]).unwrap();
        let via = |hop: &str| -> NextHops { std::iter::once(hop.parse::<IpAddr>().unwrap()).collect() };
        let prefix = |text: &str| -> Prefix { text.parse().unwrap() };
        netns
            .within(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let mut fib = NetlinkFib::connect().unwrap();
                    let operations = vec![
                        FibOperation::Replace(prefix("198.18.1.0/24"), via("198.19.0.1")),
                        // Not on a link of the namespace: the kernel refuses it.
                        FibOperation::Replace(prefix("198.18.2.0/24"), via("198.19.9.9")),
                        // Not there: refused too.
                        FibOperation::Delete(prefix("198.18.3.0/24")),
                        FibOperation::Replace(prefix("198.18.4.0/24"), via("198.19.0.1")),
                    ];
                    let mut outcomes: Vec<(String, bool)> = fib
                        .apply_all(operations)
                        .await
                        .into_iter()
                        .map(|(operation, result)| (operation.prefix().to_string(), result.is_ok()))
                        .collect();
                    outcomes.sort();
                    let expected: Vec<(String, bool)> = [
                        ("198.18.1.0/24", true),
                        ("198.18.2.0/24", false),
                        ("198.18.3.0/24", false),
                        ("198.18.4.0/24", true),
                    ]
                    .iter()
                    .map(|(p, ok)| ((*p).to_owned(), *ok))
                    .collect();
                    assert_eq!(outcomes, expected);
                    let mut listed: Vec<String> = fib
                        .list()
                        .await
                        .unwrap()
                        .iter()
                        .map(|route| route.prefix.to_string())
                        .collect();
                    listed.sort();
                    assert_eq!(listed, ["198.18.1.0/24", "198.18.4.0/24"]);

                    let many: Vec<Prefix> = (0..1000u32)
                        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0xC612_8000 + i)), 32).unwrap())
                        .collect();
                    let replaces = many
                        .iter()
                        .map(|p| FibOperation::Replace(*p, via("198.19.0.1")))
                        .collect();
                    assert!(fib.apply_all(replaces).await.iter().all(|(_, result)| result.is_ok()));
                    assert_eq!(fib.list().await.unwrap().len(), 1002);
                    let deletes = many.iter().map(|p| FibOperation::Delete(*p)).collect();
                    assert!(fib.apply_all(deletes).await.iter().all(|(_, result)| result.is_ok()));
                    assert_eq!(fib.list().await.unwrap().len(), 2);
                });
            })
            .unwrap();
    }
}
