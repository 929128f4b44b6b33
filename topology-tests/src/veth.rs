//! Veth pairs between test namespaces.
//!
//! Contract: both ends are created directly inside their namespaces
//! (`ip link add A netns NS1 type veth peer name B netns NS2`), so no interface ever appears
//! in the root namespace, not even for a moment, and names only need to be unique per
//! namespace. Both ends are set up. A pair needs no cleanup of its own: it is destroyed with
//! either namespace; [`VethPair::delete`] removes it earlier.

use crate::command::ip;
use crate::error::Result;
use crate::netns::{Netns, validate_ifname};

/// One end of a veth pair: an interface in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEnd {
    /// The namespace's full name.
    pub netns: String,
    /// The interface's name.
    pub name: String,
}

/// A veth pair made by [`Netns::veth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    /// The end in the namespace `veth` was called on.
    pub a: LinkEnd,
    /// The end in the peer namespace.
    pub b: LinkEnd,
}

impl Netns {
    /// Creates a veth pair: `name` in this namespace, `peer_name` in `peer` (which may be this
    /// namespace too), and sets both ends up.
    pub fn veth(&self, name: &str, peer: &Netns, peer_name: &str) -> Result<VethPair> {
        validate_ifname(name)?;
        validate_ifname(peer_name)?;
        ip(&[
            "link",
            "add",
            name,
            "netns",
            self.name(),
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ])?;
        self.link_up(name)?;
        peer.link_up(peer_name)?;
        Ok(VethPair {
            a: LinkEnd {
                netns: self.name().to_owned(),
                name: name.to_owned(),
            },
            b: LinkEnd {
                netns: peer.name().to_owned(),
                name: peer_name.to_owned(),
            },
        })
    }
}

impl VethPair {
    /// Sets the MTU of both ends.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        for end in [&self.a, &self.b] {
            ip(&["-n", &end.netns, "link", "set", "dev", &end.name, "mtu", &mtu])?;
        }
        Ok(())
    }

    /// Deletes the pair (deleting one end removes both).
    pub fn delete(&self) -> Result<()> {
        ip(&["-n", &self.a.netns, "link", "del", "dev", &self.a.name]).map(drop)
    }
}
