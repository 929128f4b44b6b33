//! When object files are known to be on disk, and when they must be rebuilt from the journal.
//!
//! A write is durable once its journal line is fsynced. Object files are then replaced with a
//! rename but not fsynced: a process that dies leaves them in the page cache, whole, and only
//! a machine that loses power (or its kernel) can lose them. So every `CHECKPOINT_EVERY`
//! writes, and before the journal is compacted, the store syncs its file system and records
//! the revision reached and the machine's boot id (`DIR/checkpoint`). A store opened under
//! another boot id than the checkpoint's has been through a reboot: every journal entry after
//! the checkpoint is applied again wherever its object file is behind, missing or damaged.
//! Where the boot id cannot be read, object files are fsynced on every write instead.
//!
//! A periodic checkpoint is claimed under the store lock (`DIR/checkpoint.claimed`, so that the
//! writers that follow do not take one too) and taken after the lock is released: the file
//! system sync can be slow on a busy disk and no other writer waits for it. The one before a
//! compaction is taken under the lock.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::journal::io_error;
use crate::store::{Revision, StoreError};

/// Writes between two checkpoints. Each syncs the whole file system (10–100 ms on a busy
/// disk, paid by the writer that takes it); the price of a rare one is only that a reboot
/// re-checks up to this many journal entries' object files, once.
pub(super) const CHECKPOINT_EVERY: u64 = 4096;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct Checkpoint {
    /// Every write up to this revision is on disk, object files included.
    pub revision: Revision,
    pub boot_id: String,
}

/// This boot of the machine, if the kernel says (`/proc/sys/kernel/random/boot_id`).
pub(super) fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// The recorded checkpoint; `None` when there is none or it is unreadable (then everything
/// in the journal is checked again, which is always safe).
pub(super) fn read(dir: &Path) -> Option<Checkpoint> {
    let bytes = fs::read(dir.join("checkpoint")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The revision of the newest checkpoint a writer has claimed (`DIR/checkpoint.claimed`) and
/// may still be taking; 0 when none. Only spaces checkpoints out: it never says what is on disk.
pub(super) fn claimed(dir: &Path) -> Revision {
    fs::read_to_string(dir.join("checkpoint.claimed"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map_or(Revision(0), Revision)
}

/// Claims the checkpoint at `revision` (no fsync: a claim lost in a crash only means the next
/// checkpoint comes sooner).
pub(super) fn claim(dir: &Path, revision: Revision) -> Result<(), StoreError> {
    super::atomic_write(
        &dir.join("checkpoint.claimed"),
        revision.0.to_string().as_bytes(),
        false,
    )
}

/// Syncs the store's file system, then records `revision` as on disk.
pub(super) fn write(dir: &Path, revision: Revision, boot_id: &str) -> Result<(), StoreError> {
    let handle = fs::File::open(dir).map_err(io_error("open", dir))?;
    nix::unistd::syncfs(&handle).map_err(|errno| StoreError::Io {
        operation: "sync the file system of",
        path: dir.display().to_string(),
        source: errno.into(),
    })?;
    let checkpoint = Checkpoint {
        revision,
        boot_id: boot_id.to_owned(),
    };
    let bytes = serde_json::to_vec(&checkpoint).map_err(|error| StoreError::Invalid {
        key: dir.join("checkpoint").display().to_string(),
        reason: error.to_string(),
    })?;
    super::atomic_write(&dir.join("checkpoint"), &bytes, true)
}
