//! How weft-bgpd stops: cleanly (SIGTERM, SIGINT) or for a restart (SIGUSR1).
//!
//! A clean stop sends every peer a Cease and removes weft's kernel routes. A stop for a restart
//! (graceful restart, RFC 4724 §4.1) closes the TCP connections without a NOTIFICATION, so that
//! peers keep our routes as stale, and leaves the kernel routes in place, so that forwarding goes
//! on until the next weft-bgpd finds and reconciles them.
//!
//! Must never: decide anything else; tasks read the mode once they see the cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// The daemon's one cancellation, and whether it is for a restart.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    for_restart: Arc<AtomicBool>,
}

impl Shutdown {
    /// Not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token tasks select on.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Completes once the daemon is stopping.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Stops the daemon; `for_restart`: keep forwarding state and say nothing to the peers.
    pub fn stop(&self, for_restart: bool) {
        self.for_restart.store(for_restart, Ordering::SeqCst);
        self.token.cancel();
    }

    /// Whether the stop is for a restart.
    pub fn for_restart(&self) -> bool {
        self.for_restart.load(Ordering::SeqCst)
    }
}
