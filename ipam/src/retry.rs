//! Bounded, jittered backoff for compare-and-swap loops: many allocators losing the same race
//! spread out instead of colliding again in lockstep.

use std::time::Duration;

use crate::error::IpamError;

/// Waits between attempts; after `max` waits, gives up with [`IpamError::Contention`].
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    max: u32,
}

impl Backoff {
    pub fn new(max: u32) -> Backoff {
        Backoff { attempt: 0, max }
    }

    /// Sleeps before the next attempt at writing `object`: about 1 ms doubling to at most
    /// 64 ms, times a random factor in [0.5, 1.5).
    pub async fn wait(&mut self, object: &str) -> Result<(), IpamError> {
        if self.attempt >= self.max {
            return Err(IpamError::Contention {
                object: object.to_owned(),
                attempts: self.attempt,
            });
        }
        let base = 1u64 << self.attempt.min(6);
        let jittered = Duration::from_micros(base * 1000).mul_f64(0.5 + fastrand::f64());
        self.attempt += 1;
        tokio::time::sleep(jittered).await;
        Ok(())
    }
}
