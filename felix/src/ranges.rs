//! Address ranges: `ipBlock` CIDRs minus their `except` entries, and pools, as the merged,
//! non-overlapping ranges an nftables interval set accepts.
//!
//! Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An inclusive address range of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl AddressRange {
    pub fn single(address: IpAddr) -> AddressRange {
        AddressRange {
            first: address,
            last: address,
        }
    }

    pub fn of(net: &IpNet) -> AddressRange {
        AddressRange {
            first: net.network(),
            last: net.broadcast(),
        }
    }

    pub fn is_v4(&self) -> bool {
        self.first.is_ipv4()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.is_v4()
            && number(self.first) <= number(address)
            && number(address) <= number(self.last)
    }
}

fn number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn address(v4: bool, n: u128) -> IpAddr {
    if v4 {
        // Ranges of one family stay within it: n fits in 32 bits here.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// `cidr` without the `except` subnets, as sorted disjoint ranges.
pub fn subtract(cidr: &IpNet, except: &[IpNet]) -> Vec<AddressRange> {
    let v4 = cidr.addr().is_ipv4();
    let mut holes: Vec<(u128, u128)> = except
        .iter()
        .filter(|net| net.addr().is_ipv4() == v4)
        .map(|net| (number(net.network()), number(net.broadcast())))
        .collect();
    holes.sort();
    let (start, end) = (number(cidr.network()), number(cidr.broadcast()));
    let mut out = Vec::new();
    let mut next = start;
    let mut exhausted = false;
    for (hole_start, hole_end) in holes {
        if exhausted || hole_end < next || hole_start > end {
            continue;
        }
        if hole_start > next {
            out.push((next, hole_start - 1));
        }
        match hole_end.checked_add(1) {
            Some(after) => next = next.max(after),
            None => exhausted = true,
        }
    }
    if !exhausted && next <= end {
        out.push((next, end));
    }
    out.into_iter()
        .map(|(first, last)| AddressRange {
            first: address(v4, first),
            last: address(v4, last),
        })
        .collect()
}

/// Sorts and merges overlapping or adjacent ranges of one family.
pub fn merge(mut ranges: Vec<AddressRange>) -> Vec<AddressRange> {
    ranges.sort_by_key(|r| (number(r.first), number(r.last)));
    let mut out: Vec<AddressRange> = Vec::new();
    for range in ranges {
        if let Some(last) = out.last_mut()
            && last.is_v4() == range.is_v4()
            && number(range.first) <= number(last.last).saturating_add(1)
        {
            if number(range.last) > number(last.last) {
                last.last = range.last;
            }
            continue;
        }
        out.push(range);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn range(first: &str, last: &str) -> AddressRange {
        AddressRange {
            first: first.parse().unwrap(),
            last: last.parse().unwrap(),
        }
    }

    #[test]
    fn except_cuts_holes_out_of_the_block() {
        let ranges = subtract(&net("198.18.0.0/24"), &[net("198.18.0.64/26"), net("198.18.0.255/32")]);
        assert_eq!(
            ranges,
            vec![
                range("198.18.0.0", "198.18.0.63"),
                range("198.18.0.128", "198.18.0.254")
            ]
        );
        assert!(subtract(&net("198.18.0.0/24"), &[net("198.18.0.0/25"), net("198.18.0.128/25")]).is_empty());
        assert_eq!(
            subtract(&net("2001:db8::/32"), &[net("2001:db8::/33")]),
            vec![range("2001:db8:8000::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")]
        );
    }

    #[test]
    fn merge_joins_adjacent_and_overlapping_ranges() {
        let merged = merge(vec![
            AddressRange::of(&net("198.18.1.0/24")),
            AddressRange::of(&net("198.18.0.0/24")),
            AddressRange::of(&net("198.18.0.128/25")),
            AddressRange::of(&net("198.18.3.0/24")),
        ]);
        assert_eq!(
            merged,
            vec![range("198.18.0.0", "198.18.1.255"), range("198.18.3.0", "198.18.3.255")]
        );
    }
}
