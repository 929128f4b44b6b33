//! The session's timers (RFC 4271 §8, §10) as deadlines, not tasks.
//!
//! Owns which timers are running and when each fires. Time is a `std::time::Instant` passed in
//! by the caller; this module never reads a clock. The driver sleeps until
//! [`Timers::next_deadline`] and then reports [`crate::fsm::Event::TimerExpired`] for each timer
//! [`Timers::expired`] returns. A timer event for a timer that is not running (it was stopped
//! or restarted while the event was in flight) is stale and the session ignores it.
//!
//! Jitter (RFC 4271 §10: a random 75–100 % of ConnectRetryTime and KeepaliveTime) is applied by
//! the session from a seeded generator in [`crate::fsm::SessionConfig`], so runs are reproducible.
//!
//! Must never: read the clock, sleep, or spawn anything.

use std::time::{Duration, Instant};

/// The timers of RFC 4271 §8 that weft runs per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer: retry the TCP connection.
    ConnectRetry,
    /// HoldTimer: the peer has been silent too long.
    Hold,
    /// KeepaliveTimer: time to send a KEEPALIVE.
    Keepalive,
}

impl Timer {
    const ALL: [Timer; 3] = [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive];

    const fn index(self) -> usize {
        match self {
            Self::ConnectRetry => 0,
            Self::Hold => 1,
            Self::Keepalive => 2,
        }
    }
}

/// Deadlines of the running timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    deadlines: [Option<Instant>; 3],
}

impl Timers {
    /// Starts (or restarts) a timer to fire `after` from `now`. A zero duration stops it: RFC 4271
    /// §4.2 turns the hold and keepalive timers off when the hold time is zero.
    pub fn start(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer.index()] = if after.is_zero() { None } else { now.checked_add(after) };
    }

    /// Stops a timer.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Stops every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; 3];
    }

    /// Whether the timer is running.
    pub fn is_running(&self, timer: Timer) -> bool {
        self.deadlines[timer.index()].is_some()
    }

    /// When the timer fires, if it is running.
    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// The earliest deadline of all running timers.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The timers whose deadline is at or before `now`, earliest first.
    pub fn expired(&self, now: Instant) -> Vec<Timer> {
        let mut expired: Vec<(Instant, Timer)> = Timer::ALL
            .iter()
            .filter_map(|&timer| {
                self.deadline(timer)
                    .filter(|deadline| *deadline <= now)
                    .map(|d| (d, timer))
            })
            .collect();
        expired.sort_by_key(|(deadline, _)| *deadline);
        expired.into_iter().map(|(_, timer)| timer).collect()
    }
}

/// A small deterministic generator for RFC 4271 §10 jitter (xorshift64*): no clock, no OS
/// entropy, reproducible from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator from a seed; zero is replaced by a fixed non-zero constant.
    pub fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed },
        }
    }

    /// `duration` scaled by a factor in 75–100 % (RFC 4271 §10).
    pub fn apply(&mut self, duration: Duration) -> Duration {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let random = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let percent = 75 + (random % 26) as u32;
        duration * percent / 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_deadline_is_the_earliest_running_timer() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.start(Timer::Hold, now, Duration::from_secs(90));
        timers.start(Timer::Keepalive, now, Duration::from_secs(30));
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(30)));
        assert_eq!(
            timers.expired(now + Duration::from_secs(90)),
            vec![Timer::Keepalive, Timer::Hold]
        );
    }

    #[test]
    fn zero_duration_stops_the_timer() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.start(Timer::Hold, now, Duration::from_secs(3));
        timers.start(Timer::Hold, now, Duration::ZERO);
        assert!(!timers.is_running(Timer::Hold));
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn jitter_stays_between_three_quarters_and_the_full_duration() {
        let mut jitter = Jitter::new(7);
        for _ in 0..1000 {
            let jittered = jitter.apply(Duration::from_secs(120));
            assert!(jittered >= Duration::from_secs(90) && jittered <= Duration::from_secs(120));
        }
    }
}
