//! Bounded waiting: the only way the kit and its tests wait for something.
//!
//! Contract: every wait has a description of what is awaited, a deadline and a poll interval;
//! the loop is bounded both in time and in the number of checks (`deadline / poll + 2`), and on
//! expiry fails with [`Error::Timeout`] naming what was awaited and for how long. A check that
//! returns an error ends the wait at once with [`Error::Check`]: transient conditions must be
//! reported as "not yet" (`Ok(false)` / `Ok(None)`), not as errors. The sleeps between checks
//! here are the only sleeps the kit does; tests never sleep bare.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The shortest poll interval; shorter requests are raised to this to avoid spinning.
pub const MIN_POLL: Duration = Duration::from_millis(1);

/// Waits until `check` returns `Ok(true)`, checking every `poll` for at most `deadline`.
///
/// The first check runs at once. Fails with [`Error::Timeout`] (naming `what`, the time waited
/// and the number of checks) when the deadline passes, or with [`Error::Check`] as soon as
/// `check` returns an error.
pub fn wait_until<E>(
    what: &str,
    deadline: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<bool, E>,
) -> Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    wait_for(what, deadline, poll, || check().map(|done| done.then_some(())))
}

/// Waits until `check` returns `Ok(Some(value))` and returns the value; otherwise as
/// [`wait_until`].
pub fn wait_for<T, E>(
    what: &str,
    deadline: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    let poll = poll.max(MIN_POLL);
    let start = Instant::now();
    let max_attempts = max_attempts(deadline, poll);
    let mut attempts = 0;
    while attempts < max_attempts {
        attempts += 1;
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(source) => {
                return Err(Error::Check {
                    what: what.to_owned(),
                    source: source.into(),
                });
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            break;
        }
        thread::sleep(poll.min(deadline - elapsed));
    }
    Err(Error::Timeout {
        what: what.to_owned(),
        waited: start.elapsed(),
        deadline,
        attempts,
    })
}

/// Polls `check` with a back-off from 1 ms to 25 ms until it yields a value or `deadline`
/// passes (then `Ok(None)`): for the kit's own short waits (a command exiting, processes dying),
/// where the caller turns expiry into its own error.
pub(crate) fn poll_backoff<T>(deadline: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    const MAX_STEP: Duration = Duration::from_millis(25);
    let start = Instant::now();
    let mut step = MIN_POLL;
    for _ in 0..max_attempts(deadline, MIN_POLL) {
        if let Some(value) = check()? {
            return Ok(Some(value));
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return Ok(None);
        }
        thread::sleep(step.min(deadline - elapsed));
        step = (step * 2).min(MAX_STEP);
    }
    Ok(None)
}

fn max_attempts(deadline: Duration, poll: Duration) -> u64 {
    let per_poll = deadline.as_nanos() / poll.max(MIN_POLL).as_nanos();
    u64::try_from(per_poll).unwrap_or(u64::MAX).saturating_add(2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_first_check_runs_at_once_and_success_ends_the_wait() {
        let mut calls = 0;
        wait_until("nothing", Duration::ZERO, Duration::from_secs(1), || {
            calls += 1;
            Ok::<_, Error>(true)
        })
        .unwrap();
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_value_of_wait_for_is_returned() {
        let mut n = 0;
        let v = wait_for("n to reach 3", Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            Ok::<_, Error>((n == 3).then_some(n * 10))
        })
        .unwrap();
        assert_eq!(v, 30);
    }

    #[test]
    fn a_failing_check_ends_the_wait_at_once() {
        let mut calls = 0;
        let err = wait_until("the moon", Duration::from_secs(60), Duration::from_millis(1), || {
            calls += 1;
            Err::<bool, _>("no telescope")
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(
            matches!(err, Error::Check { ref what, .. } if what == "the moon"),
            "{err}"
        );
    }

    #[test]
    fn checks_are_bounded_in_number() {
        let mut calls = 0u64;
        let err = wait_until("never", Duration::from_millis(30), Duration::from_millis(10), || {
            calls += 1;
            Ok::<_, Error>(false)
        })
        .unwrap_err();
        assert!(calls <= 5, "{calls} checks");
        assert!(matches!(err, Error::Timeout { attempts, .. } if attempts == calls));
    }
}
