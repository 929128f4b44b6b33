//! weft-felix, the node's policy agent (DESIGN.md "Policy (felix)").
//!
//! Pure core: [`labels`], [`policy`], [`ranges`], [`calc`] (inputs → [`ruleset::Ruleset`]),
//! [`incremental`] (the calculation kept between events: one pod's event recomputes that pod),
//! [`render`] (ruleset → nft text whole, or a difference: element changes or text). Doors to
//! the world: [`nft`] (an nf_tables netlink batch of our own for element changes, the `nft`
//! binary for the rest), [`routes`] (host routes and proxy ARP), [`inputs`] (the datastore).
//! The daemon ([`daemon`]) ties them together and makes no policy decision of its own.

pub mod calc;
pub mod daemon;
pub mod incremental;
pub mod inputs;
pub mod labels;
pub mod listing;
pub mod metrics;
pub mod nft;
pub mod policy;
pub mod ranges;
pub mod render;
pub mod routes;
pub mod ruleset;
pub mod show;
