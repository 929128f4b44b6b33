//! Which pools a request may use, and which block of a pool to claim next. Pure.
//!
//! Pools are chosen, in order of precedence, by the request (pod annotation, then namespace
//! annotation, then CNI config: the caller resolves that order), else every enabled pool of
//! the family whose `nodeSelector` selects the node. A named pool must exist, be enabled, be of
//! the right use and select the node; otherwise the error says which of these failed.
//!
//! A node claims blocks starting at a position derived from its name, so nodes starting at
//! once spread over the pool instead of racing for its first block.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use weft_api::resources::{AllowedUse, IPPool};
use weft_api::selector::Selector;

use crate::error::IpamError;

/// Address family of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// A pool as the allocator uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
}

/// The pools of `family` that `node` (with `node_labels`) may allocate from.
pub fn select_pools(
    pools: &[IPPool],
    family: Family,
    node: &str,
    node_labels: &BTreeMap<String, String>,
    requested: &[IpNet],
    allowed_use: AllowedUse,
) -> Result<Vec<Pool>, IpamError> {
    let usable = |pool: &IPPool| -> Result<Pool, String> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let cidr: IpNet = pool
            .spec
            .cidr
            .parse()
            .map_err(|_| format!("pool {name} has an invalid cidr {:?}", pool.spec.cidr))?;
        if pool.spec.disabled {
            return Err(format!("pool {name} ({cidr}) is disabled"));
        }
        if !pool.spec.allowed_uses.contains(&allowed_use) {
            return Err(format!("pool {name} ({cidr}) is not for {allowed_use:?} addresses"));
        }
        let selector = Selector::parse(&pool.spec.node_selector)
            .map_err(|error| format!("pool {name} has an invalid nodeSelector: {error}"))?;
        if !selector.matches(node_labels) {
            return Err(format!(
                "pool {name} ({cidr}) does not select node {node} (nodeSelector {:?})",
                pool.spec.node_selector
            ));
        }
        let block_size = pool
            .spec
            .effective_block_size()
            .filter(|size| *size >= cidr.prefix_len() && *size <= cidr.max_prefix_len())
            .ok_or_else(|| format!("pool {name} has a block size that does not fit {cidr}"))?;
        if cidr.max_prefix_len() - block_size > 16 {
            return Err(format!(
                "pool {name}: /{block_size} blocks are larger than 65536 addresses"
            ));
        }
        Ok(Pool { name, cidr, block_size })
    };
    let of_family = |pool: &&IPPool| {
        pool.spec
            .cidr
            .parse::<IpNet>()
            .is_ok_and(|cidr| Family::of(&cidr) == family)
    };
    if requested.is_empty() {
        let mut selected: Vec<Pool> = pools.iter().filter(of_family).filter_map(|p| usable(p).ok()).collect();
        selected.sort_by_key(|pool| pool.cidr);
        if selected.is_empty() {
            return Err(IpamError::NoPool {
                family,
                node: node.to_owned(),
            });
        }
        return Ok(selected);
    }
    let mut selected = Vec::new();
    for cidr in requested.iter().filter(|cidr| Family::of(cidr) == family) {
        let pool = pools
            .iter()
            .find(|pool| pool.spec.cidr.parse::<IpNet>().is_ok_and(|c| c == *cidr))
            .ok_or_else(|| IpamError::UnknownPool { cidr: cidr.to_string() })?;
        selected.push(usable(pool).map_err(|reason| IpamError::PoolNotUsable { reason })?);
    }
    Ok(selected)
}

/// The number of blocks in a pool, capped at `u128::MAX` for huge IPv6 pools.
fn block_count(pool: &Pool) -> u128 {
    let bits = u32::from(pool.block_size - pool.cidr.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

fn block_at(pool: &Pool, index: u128) -> Option<IpNet> {
    let shift = u32::from(pool.cidr.max_prefix_len() - pool.block_size);
    let offset = index.checked_shl(shift)?;
    match pool.cidr {
        IpNet::V4(net) => {
            let base = u32::from(net.network());
            let address = base.checked_add(u32::try_from(offset).ok()?)?;
            ipnet::Ipv4Net::new(address.into(), pool.block_size).ok().map(IpNet::V4)
        }
        IpNet::V6(net) => {
            let base = u128::from(net.network());
            ipnet::Ipv6Net::new(base.checked_add(offset)?.into(), pool.block_size)
                .ok()
                .map(IpNet::V6)
        }
    }
}

/// The first block of `pool` not in `taken`, searching from a start derived from `node`.
/// Bounded: at most `taken.len() + 1` candidates are looked at.
pub fn next_free_block(pool: &Pool, taken: &BTreeSet<IpNet>, node: &str) -> Option<IpNet> {
    let count = block_count(pool);
    let start = u128::from(crate::names::fnv1a(node.as_bytes())) % count;
    let tries = (taken.len() as u128 + 1).min(count);
    (0..tries)
        .map(|step| (start + step) % count)
        .filter_map(|index| block_at(pool, index))
        .find(|block| !taken.contains(block))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_api::resources::IPPoolSpec;

    fn pool(name: &str, cidr: &str, selector: &str, disabled: bool) -> IPPool {
        let mut spec: IPPoolSpec = serde_json::from_value(serde_json::json!({"cidr": cidr})).unwrap();
        spec.node_selector = selector.into();
        spec.disabled = disabled;
        IPPool::new(name, spec)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn without_a_request_every_enabled_pool_selecting_the_node_is_used() {
        let pools = [
            pool("a", "198.18.0.0/16", "", false),
            pool("b", "198.19.0.0/24", "rack == 'r2'", false),
            pool("c", "198.19.1.0/24", "", true),
            pool("v6", "2001:db8::/48", "", false),
        ];
        let got = select_pools(
            &pools,
            Family::V4,
            "n1",
            &labels(&[("rack", "r1")]),
            &[],
            AllowedUse::Workload,
        )
        .unwrap();
        assert_eq!(got.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a"]);
        let got = select_pools(&pools, Family::V6, "n1", &labels(&[]), &[], AllowedUse::Workload).unwrap();
        assert_eq!((got[0].name.as_str(), got[0].block_size), ("v6", 122));
    }

    #[test]
    fn a_requested_pool_must_exist_be_enabled_and_select_the_node() {
        let pools = [
            pool("b", "198.19.0.0/24", "rack == 'r2'", false),
            pool("c", "198.19.1.0/24", "", true),
        ];
        let node = labels(&[("rack", "r1")]);
        let unknown = select_pools(
            &pools,
            Family::V4,
            "n1",
            &node,
            &["198.18.9.0/24".parse().unwrap()],
            AllowedUse::Workload,
        );
        assert!(matches!(unknown, Err(IpamError::UnknownPool { .. })), "{unknown:?}");
        let disabled = select_pools(
            &pools,
            Family::V4,
            "n1",
            &node,
            &["198.19.1.0/24".parse().unwrap()],
            AllowedUse::Workload,
        );
        assert!(disabled.unwrap_err().to_string().contains("disabled"));
        let elsewhere = select_pools(
            &pools,
            Family::V4,
            "n1",
            &node,
            &["198.19.0.0/24".parse().unwrap()],
            AllowedUse::Workload,
        );
        assert!(elsewhere.unwrap_err().to_string().contains("does not select node n1"));
    }

    #[test]
    fn no_pool_for_the_family_is_an_error_naming_it() {
        let pools = [pool("a", "198.18.0.0/16", "", false)];
        let error = select_pools(&pools, Family::V6, "n1", &labels(&[]), &[], AllowedUse::Workload).unwrap_err();
        assert!(error.to_string().contains("IPv6"), "{error}");
    }

    #[test]
    fn free_blocks_are_found_from_a_per_node_start_and_never_taken_twice() {
        let pool = Pool {
            name: "a".into(),
            cidr: "198.18.0.0/24".parse().unwrap(),
            block_size: 26,
        };
        let mut taken = BTreeSet::new();
        for _ in 0..4 {
            let block = next_free_block(&pool, &taken, "node-1").unwrap();
            assert!(pool.cidr.contains(&block) && block.prefix_len() == 26);
            assert!(taken.insert(block));
        }
        assert_eq!(next_free_block(&pool, &taken, "node-1"), None, "the pool is full");
        let huge = Pool {
            name: "v6".into(),
            cidr: "2001:db8::/48".parse().unwrap(),
            block_size: 122,
        };
        let block = next_free_block(&huge, &BTreeSet::new(), "node-1").unwrap();
        assert!(huge.cidr.contains(&block));
    }
}
