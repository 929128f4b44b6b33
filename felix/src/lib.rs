//! weft-felix, the node's policy agent (DESIGN.md "Policy (felix)").
//!
//! Pure core: [`labels`], [`policy`], [`ranges`], [`calc`] (inputs → [`ruleset::Ruleset`]),
//! [`render`] (ruleset → nft JSON, whole or as a diff). Doors to the world: [`nft`] (the `nft`
//! binary), [`routes`] (host routes and proxy ARP), [`inputs`] (the datastore). The daemon
//! ([`daemon`]) ties them together and makes no policy decision of its own.

pub mod calc;
pub mod daemon;
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
