//! The MinRouteAdvertisementIntervalTimer of one peer (RFC 4271 §9.2.1.1).
//!
//! Owns, per prefix, when it was last advertised to the peer and whether a newer advertisement
//! waits. An advertisement of a prefix advertised less than the interval ago waits until the
//! interval has passed; then the caller exports the prefix again, as the Loc-RIB has it by
//! then, so a route that changed ten times in the interval reaches the peer once, in its latest
//! state. Withdrawals are not delayed (§9.2.1.1: the timer applies to advertisements, so that
//! an unreachable route is given up at once) and drop a waiting advertisement.
//!
//! ```text
//!   change ──▶ admit(prefix, now)
//!                 │ last advertised ≥ interval ago (or never): true, recorded: send now
//!                 │ less: false, pending until last + interval
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

/// One peer's MinRouteAdvertisementIntervalTimer, per prefix.
#[derive(Debug, Clone, Default)]
pub struct AdvertisementInterval {
    interval: Duration,
    /// When each prefix was last advertised, kept while that is less than `interval` ago.
    last: HashMap<Prefix, Instant>,
    /// Prefixes whose advertisement waits, and when it may go.
    pending: BTreeMap<Prefix, Instant>,
}

impl AdvertisementInterval {
    /// A timer of `interval`; zero: every advertisement goes at once.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            ..Self::default()
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
        match self.last.get(&prefix) {
            Some(&last) if now < last + self.interval => {
                self.pending.entry(prefix).or_insert(last + self.interval);
                false
            }
            _ => {
                self.last.insert(prefix, now);
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
        let interval = self.interval;
        self.last.retain(|_, last| now < *last + interval);
        due
    }

    /// How many advertisements wait.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> Prefix {
        text.parse().expect("prefix")
    }

    #[test]
    fn without_an_interval_everything_goes_at_once_and_nothing_is_kept() {
        let mut timer = AdvertisementInterval::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(timer.admit(prefix("198.18.1.0/24"), now));
        }
        assert_eq!(timer.next_deadline(), None);
        assert!(timer.last.is_empty());
    }

    #[test]
    fn a_flapping_route_is_advertised_once_per_interval_in_its_latest_state() {
        let interval = Duration::from_secs(5);
        let mut timer = AdvertisementInterval::new(interval);
        let start = Instant::now();
        let route = prefix("198.18.1.0/24");
        assert!(timer.admit(route, start), "the first advertisement goes at once");
        // Ten changes within the interval: none goes, one waits.
        for i in 1..=10 {
            assert!(!timer.admit(route, start + Duration::from_millis(100 * i)));
        }
        assert_eq!(timer.pending(), 1);
        assert_eq!(timer.next_deadline(), Some(start + interval));
        assert!(timer.due(start + Duration::from_secs(4)).is_empty(), "not yet");
        assert_eq!(timer.due(start + interval), vec![route]);
        assert!(
            timer.admit(route, start + interval),
            "the latest state goes at the deadline"
        );
        assert_eq!(timer.next_deadline(), None);
        // The next change waits for the next interval.
        assert!(!timer.admit(route, start + interval + Duration::from_secs(1)));
        assert_eq!(timer.next_deadline(), Some(start + interval * 2));
    }

    #[test]
    fn a_withdrawal_drops_the_waiting_advertisement_and_other_prefixes_are_independent() {
        let mut timer = AdvertisementInterval::new(Duration::from_secs(5));
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
        assert_eq!(timer.due(start + Duration::from_secs(5)), vec![one]);
    }

    #[test]
    fn old_records_are_forgotten() {
        let mut timer = AdvertisementInterval::new(Duration::from_secs(5));
        let start = Instant::now();
        for i in 0..100u8 {
            assert!(timer.admit(prefix(&format!("198.18.{i}.0/24")), start));
        }
        timer.due(start + Duration::from_secs(6));
        assert!(timer.last.is_empty());
    }
}
