//! Circuit breaker per external service: after `threshold` failures in a row
//! the service is left alone for `cool_down`, during which calls fail fast as
//! transient errors (the message is retried later instead of waiting on a
//! dead service). Then one probe call is let through: success closes the
//! breaker, failure opens it again.

use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BreakerState {
    Closed,
    /// Failing fast until the cool-down ends.
    Open,
    /// One probe call is under way.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
    /// Bumped on every change of state, so a reporter knows when to write one.
    changes: AtomicU64,
}

/// The breaker refused a call; when it will let one through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_in: Duration,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(Inner {
                consecutive_failures: 0,
                opened_at: None,
                probing: false,
            }),
            changes: AtomicU64::new(0),
        }
    }

    /// How many times the state has changed: opened, probed, closed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> BreakerState {
        let inner = self.inner.lock().unwrap();
        match inner.opened_at {
            None => BreakerState::Closed,
            Some(_) if inner.probing => BreakerState::HalfOpen,
            Some(at) if at.elapsed() >= self.cool_down => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// May a call go out now? While open, no; after the cool-down, one probe.
    pub fn admit(&self) -> Result<(), Refused> {
        let mut inner = self.inner.lock().unwrap();
        let Some(opened_at) = inner.opened_at else {
            return Ok(());
        };
        let open_for = opened_at.elapsed();
        if open_for >= self.cool_down && !inner.probing {
            inner.probing = true;
            self.changes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Err(Refused {
            retry_in: self.cool_down.saturating_sub(open_for),
        })
    }

    pub fn record_success(&self) {
        let mut inner = self.inner.lock().unwrap();
        if inner.opened_at.is_some() {
            tracing::info!("circuit breaker closed: the service answered again");
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        *inner = Inner {
            consecutive_failures: 0,
            opened_at: None,
            probing: false,
        };
    }

    /// Returns whether this failure opened (or re-opened) the breaker.
    pub fn record_failure(&self) -> bool {
        let mut inner = self.inner.lock().unwrap();
        inner.consecutive_failures += 1;
        let opens = inner.probing
            || (inner.opened_at.is_none() && inner.consecutive_failures >= self.threshold);
        if opens {
            inner.opened_at = Some(Instant::now());
            inner.probing = false;
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        opens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_probes_once_after_the_cool_down() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(breaker.admit().is_ok());
            assert!(!breaker.record_failure());
        }
        breaker.record_success();
        for _ in 0..2 {
            breaker.record_failure();
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        assert_eq!(breaker.changes(), 0, "closed all along");
        assert!(breaker.record_failure());
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit().is_err());

        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit().is_ok(), "one probe after the cool-down");
        assert!(breaker.admit().is_err(), "only one");
        assert!(breaker.record_failure(), "a failed probe re-opens");
        assert_eq!(breaker.state(), BreakerState::Open);

        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit().is_ok());
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit().is_ok() && breaker.admit().is_ok());
        breaker.record_success();
        assert_eq!(
            breaker.changes(),
            5,
            "opened, probed, re-opened, probed, closed"
        );
    }
}
