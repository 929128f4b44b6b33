//! Names of IPAM objects in the store, derived from what they stand for, so that every
//! allocator computes the same name for the same block, affinity or handle.
//!
//! Store names allow lowercase letters, digits, `-` and `.` (RFC 1123). Block names spell the
//! CIDR (`198-18-0-64-26`, `2001-db8-100---122`); a handle's name is its id when that is
//! already a valid name, else a cleaned form with a stable hash of the id appended.

use ipnet::IpNet;

/// `198.18.0.64/26` → `198-18-0-64-26`.
pub fn block_name(cidr: &IpNet) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// The affinity of `node` for the block `cidr`.
pub fn affinity_name(node: &str, cidr: &IpNet) -> String {
    format!("{node}-{}", block_name(cidr))
}

/// The handle object's name for a handle id (`network.containerid.ifname`).
pub fn handle_name(handle_id: &str) -> String {
    let valid = !handle_id.is_empty()
        && handle_id.len() <= 200
        && handle_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !handle_id.starts_with(['-', '.'])
        && !handle_id.ends_with(['-', '.']);
    if valid {
        return handle_id.to_owned();
    }
    let mut cleaned: String = handle_id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(180)
        .collect();
    cleaned = cleaned.trim_matches(['-', '.']).to_owned();
    if cleaned.is_empty() {
        cleaned.push('h');
    }
    format!("{cleaned}-{:016x}", fnv1a(handle_id.as_bytes()))
}

/// FNV-1a, 64 bits: a stable hash (unlike std's), so names never change between versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn block_names_spell_the_cidr() {
        assert_eq!(block_name(&"198.18.0.64/26".parse().unwrap()), "198-18-0-64-26");
        assert_eq!(block_name(&"2001:db8:100::/122".parse().unwrap()), "2001-db8-100---122");
    }

    #[test]
    fn handle_names_are_valid_and_distinct() {
        assert_eq!(handle_name("weft.abc123.eth0"), "weft.abc123.eth0");
        let a = handle_name("My_Net.ABC.eth0");
        let b = handle_name("my-net.abc.eth0");
        assert_ne!(a, b, "cleaning never merges two ids");
        assert!(a.starts_with("my-net.abc.eth0-"), "{a}");
        let long = handle_name(&"x".repeat(400));
        assert!(long.len() <= 253);
    }
}
