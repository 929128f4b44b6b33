//! The door to nftables: apply a JSON batch atomically, list weft's table. The real
//! implementation runs Debian's `nft` through the `nftables` crate; tests of the pure core
//! never need it, and the namespace tests run it for real.

use serde_json::Value;

use crate::listing::{Listing, ListingError};
use crate::ruleset::TABLE;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "nft refused the batch (nothing was changed: batches are atomic); is the nftables package installed and are we root?"
    )]
    Apply(#[source] nftables::helper::NftablesError),
    #[error("cannot list table inet {TABLE}")]
    List(#[source] nftables::helper::NftablesError),
    #[error(transparent)]
    Listing(#[from] ListingError),
}

/// What felix needs from nftables.
pub trait Nft: Send + Sync + std::fmt::Debug {
    /// Applies one batch (`{"nftables": [...]}`) atomically.
    fn apply(&self, batch: &Value) -> Result<(), NftError>;
    /// The table as the kernel holds it; `None` when it does not exist.
    fn list(&self) -> Result<Option<Listing>, NftError>;
}

/// The `nft` binary on `PATH`, in the network namespace felix runs in.
#[derive(Debug, Default, Clone, Copy)]
pub struct NftBinary;

impl Nft for NftBinary {
    fn apply(&self, batch: &Value) -> Result<(), NftError> {
        nftables::helper::apply_ruleset_raw(
            &batch.to_string(),
            nftables::helper::DEFAULT_NFT,
            nftables::helper::DEFAULT_ARGS,
        )
        .map(|_| ())
        .map_err(NftError::Apply)
    }

    fn list(&self) -> Result<Option<Listing>, NftError> {
        match nftables::helper::get_current_ruleset_raw(nftables::helper::DEFAULT_NFT, ["list", "table", "inet", TABLE])
        {
            Ok(text) => Ok(Some(Listing::parse(&text)?)),
            Err(nftables::helper::NftablesError::NftFailed { stderr, .. }) if stderr.contains("No such file") => {
                Ok(None)
            }
            Err(error) => Err(NftError::List(error)),
        }
    }
}
