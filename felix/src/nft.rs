//! The door to nftables: apply one batch atomically, list weft's table. The real
//! implementation sends element-only batches (pod churn) as an nf_tables netlink batch of its
//! own ([`netlink`]), and everything else (full loads, rule changes, interval sets) to Debian's
//! `nft` as text (`nft -f -`); it lists the table with `nft -j list` through the `nftables`
//! crate. Tests of the pure core never need it; the namespace tests run it for real.

pub mod netlink;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::listing::{Listing, ListingError};
use crate::render::Batch;
use crate::ruleset::TABLE;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (is the nftables package installed?)")]
    Run(#[source] std::io::Error),
    #[error("nft refused the batch (nothing was changed: batches are atomic): {stderr}")]
    Apply { stderr: String },
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error("cannot list table inet {TABLE}")]
    List(#[source] nftables::helper::NftablesError),
    #[error(transparent)]
    Listing(#[from] ListingError),
}

/// What felix needs from nftables.
pub trait Nft: Send + Sync + std::fmt::Debug {
    /// Applies one batch atomically.
    fn apply(&self, batch: &Batch) -> Result<(), NftError>;
    /// The table as the kernel holds it; `None` when it does not exist.
    fn list(&self) -> Result<Option<Listing>, NftError>;
}

/// The kernel of the network namespace felix runs in: netlink for element batches, the `nft`
/// binary on `PATH` for the rest.
#[derive(Debug, Default, Clone, Copy)]
pub struct NftBinary;

impl NftBinary {
    /// `nft -f -` with `text` on its standard input.
    fn load(text: &str) -> Result<(), NftError> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Run)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(NftError::Run)?;
        }
        let output = child.wait_with_output().map_err(NftError::Run)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(NftError::Apply {
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}

impl Nft for NftBinary {
    fn apply(&self, batch: &Batch) -> Result<(), NftError> {
        match batch {
            Batch::Text(text) => Self::load(text),
            Batch::Elements(changes) => match netlink::send(changes) {
                // Too large for one netlink send: nft takes it (as rarely as a full resync).
                Err(netlink::NetlinkError::TooLarge { .. }) => Self::load(&batch.to_text()),
                other => Ok(other?),
            },
        }
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
