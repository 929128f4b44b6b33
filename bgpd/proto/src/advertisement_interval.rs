//! The MinRouteAdvertisementIntervalTimer of one peer (RFC 4271 §9.2.1.1).
//!
//! Owns, per prefix, until when a new advertisement to the peer must wait and whether one
//! waits. An advertisement of a prefix advertised less than the interval ago waits until the
//! interval has passed; then the caller exports the prefix again, as the Loc-RIB has it by
//! then, so a route that changed ten times in the interval reaches the peer once, in its latest
//! state. Withdrawals are not delayed (§9.2.1.1: the timer applies to advertisements, so that
//! an unreachable route is given up at once) and drop a waiting advertisement. Each interval
//! is jittered to 75–100 % of the configured one (§10), from a seed, so peers and prefixes do
//! not fall into step.
//!
//! ```text
//!   change ──▶ admit(prefix, now)
//!                 │ not held (never advertised, or the interval is over): true, held
//!                 │   for a jittered interval from now: send now
//!                 │ held: false, pending until the hold ends
//!   timer  ──▶ due(now): the pending prefixes whose time has come: export them again
//!   withdrawal ──▶ withdrawn(prefix): sent at once, nothing pending
//! ```
//!
//! An interval of zero (the default, as BIRD and FRR's datacenter profile) keeps no state at all.
//!
//! Must never: read a clock (`now` is passed in), decide what is sent (export does), or delay a
//! withdrawal.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::route::Prefix;
use crate::timers::Jitter;

/// One peer's MinRouteAdvertisementIntervalTimer, per prefix.
#[derive(Debug, Clone)]
pub struct AdvertisementInterval {
    interval: Duration,
    jitter: Jitter,
    /// Until when the next advertisement of each recently advertised prefix must wait.
    held: HashMap<Prefix, Instant>,
    /// Prefixes whose advertisement waits, and when it may go.
    pending: BTreeMap<Prefix, Instant>,
}

impl AdvertisementInterval {
    /// A timer of `interval`, jittered from `seed`; zero: every advertisement goes at once.
    pub fn new(interval: Duration, seed: u64) -> Self {
        Self {
            interval,
            jitter: Jitter::new(seed),
            held: HashMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether advertisements may wait at all (a non-zero interval): without, callers skip
    /// [`Self::admit`] and its bookkeeping.
    pub fn is_active(&self) -> bool {
        !self.interval.is_zero()
    }

    /// Whether an advertisement of `prefix` may be sent at `now`. If it may, it is recorded as
    /// sent; if not, the prefix waits and [`Self::due`] hands it back when the interval is over.
    pub fn admit(&mut self, prefix: Prefix, now: Instant) -> bool {
        if self.interval.is_zero() {
            return true;
        }
        match self.held.get(&prefix) {
            Some(&until) if now < until => {
                self.pending.entry(prefix).or_insert(until);
                false
            }
            _ => {
                self.held.insert(prefix, now + self.jitter.apply(self.interval));
                self.pending.remove(&prefix);
                true
            }
        }
    }

    /// The prefix is withdrawn (sent at once): a waiting advertisement is dropped.
    pub fn withdrawn(&mut self, prefix: &Prefix) {
        self.pending.remove(prefix);
    }

    /// When the next waiting advertisement may go.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// The prefixes whose wait is over at `now`, no longer pending: export them again now
    /// ([`Self::admit`] lets them through).
    pub fn due(&mut self, now: Instant) -> Vec<Prefix> {
        let due: Vec<Prefix> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(prefix, _)| *prefix)
            .collect();
        for prefix in &due {
            self.pending.remove(prefix);
        }
        self.held.retain(|_, until| now < *until);
        due
    }

    /// How many advertisements wait.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn prefix(text: &str) -> Prefix {
        text.parse().expect("prefix")
    }

    #[test]
    fn without_an_interval_everything_goes_at_once_and_nothing_is_kept() {
        let mut timer = AdvertisementInterval::new(Duration::ZERO, 1);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(timer.admit(prefix("198.18.1.0/24"), now));
        }
        assert_eq!(timer.next_deadline(), None);
        assert!(timer.held.is_empty());
    }

    #[test]
    fn a_flapping_route_is_advertised_once_per_interval_in_its_latest_state() {
        let interval = Duration::from_secs(4);
        let mut timer = AdvertisementInterval::new(interval, 7);
        let start = Instant::now();
        let route = prefix("198.18.1.0/24");
        assert!(timer.admit(route, start), "the first advertisement goes at once");
        // Changes within the first three seconds (75 % of the interval): none goes, one waits.
        for i in 1..=10 {
            assert!(!timer.admit(route, start + Duration::from_millis(250 * i)));
        }
        assert_eq!(timer.pending(), 1);
        let deadline = timer.next_deadline().expect("one waits");
        assert!(
            deadline >= start + interval * 3 / 4 && deadline <= start + interval,
            "jittered"
        );
        assert!(timer.due(deadline - Duration::from_millis(1)).is_empty(), "not yet");
        assert_eq!(timer.due(deadline), vec![route]);
        assert!(timer.admit(route, deadline), "the latest state goes at the deadline");
        assert_eq!(timer.next_deadline(), None);
        // The next change waits for the next interval.
        assert!(!timer.admit(route, deadline + Duration::from_millis(100)));
        let next = timer.next_deadline().expect("waits again");
        assert!(next >= deadline + interval * 3 / 4 && next <= deadline + interval);
    }

    #[test]
    fn the_jitter_spreads_the_intervals_between_three_quarters_and_all_of_it() {
        let interval = Duration::from_secs(4);
        let mut timer = AdvertisementInterval::new(interval, 42);
        let start = Instant::now();
        let holds: BTreeSet<Duration> = (0..50u8)
            .map(|i| {
                let route = prefix(&format!("198.18.{i}.0/24"));
                timer.admit(route, start);
                timer.held[&route] - start
            })
            .collect();
        assert!(holds.iter().all(|hold| *hold >= interval * 3 / 4 && *hold <= interval));
        assert!(holds.len() > 5, "spread: {holds:?}");
    }

    #[test]
    fn a_withdrawal_drops_the_waiting_advertisement_and_other_prefixes_are_independent() {
        let mut timer = AdvertisementInterval::new(Duration::from_secs(5), 1);
        let start = Instant::now();
        let (one, two) = (prefix("198.18.1.0/24"), prefix("2001:db8:1::/64"));
        assert!(timer.admit(one, start));
        assert!(!timer.admit(one, start + Duration::from_secs(1)));
        timer.withdrawn(&one);
        assert_eq!(timer.next_deadline(), None, "nothing waits after the withdrawal");
        assert!(
            timer.admit(two, start + Duration::from_secs(1)),
            "another prefix goes at once"
        );
        // Advertised again after the withdrawal but within the interval: it waits.
        assert!(!timer.admit(one, start + Duration::from_secs(2)));
        assert_eq!(timer.due(start + Duration::from_secs(6)), vec![one]);
    }

    #[test]
    fn old_records_are_forgotten() {
        let mut timer = AdvertisementInterval::new(Duration::from_secs(5), 1);
        let start = Instant::now();
        for i in 0..100u8 {
            assert!(timer.admit(prefix(&format!("198.18.{i}.0/24")), start));
        }
        timer.due(start + Duration::from_secs(6));
        assert!(timer.held.is_empty());
    }
}
