//! Each tenant's request rate on the API: its own allowance a minute
//! (`TENANT_API_REQUESTS_PER_MINUTE`, or its `tenant_limits` row), so one
//! tenant's burst never slows another's; and its searches in flight,
//! weighed by what they read. Counted per process: in Lambda per container,
//! with API Gateway's throttling bounding the whole.

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    DefaultClock,
    governor::middleware::NoOpMiddleware,
>;

/// How often a tenant's allowance is read again (an override takes effect
/// within this).
const RECHECK: Duration = Duration::from_secs(60);

pub struct TenantRates {
    default_per_minute: NonZeroU32,
    tenants: Mutex<HashMap<String, Allowance>>,
}

struct Allowance {
    per_minute: NonZeroU32,
    limiter: Arc<Limiter>,
    read_at: Instant,
}

/// A tenant over its allowance, and when it may ask again.
#[derive(Debug)]
pub struct OverLimit {
    pub per_minute: u32,
    pub retry_in: Duration,
}

impl TenantRates {
    pub fn new(default_per_minute: NonZeroU32) -> TenantRates {
        TenantRates {
            default_per_minute,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `requests` requests of `tenant` (one, or what a costly
    /// request weighs); `override_per_minute` reads its own allowance
    /// (awaited only when due).
    pub async fn admit(
        &self,
        tenant: &str,
        requests: NonZeroU32,
        override_per_minute: impl Future<Output = Option<u32>>,
    ) -> Result<(), OverLimit> {
        let due = self
            .tenants
            .lock()
            .unwrap()
            .get(tenant)
            .is_none_or(|allowance| allowance.read_at.elapsed() > RECHECK);
        if due {
            let per_minute = override_per_minute
                .await
                .and_then(NonZeroU32::new)
                .unwrap_or(self.default_per_minute);
            let mut tenants = self.tenants.lock().unwrap();
            let allowance = tenants
                .entry(tenant.to_string())
                .or_insert_with(|| Allowance {
                    per_minute,
                    limiter: Arc::new(RateLimiter::direct(Quota::per_minute(per_minute))),
                    read_at: Instant::now(),
                });
            if allowance.per_minute != per_minute {
                allowance.per_minute = per_minute;
                allowance.limiter = Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)));
            }
            allowance.read_at = Instant::now();
        }
        let (limiter, per_minute) = {
            let tenants = self.tenants.lock().unwrap();
            let allowance = &tenants[tenant];
            (allowance.limiter.clone(), allowance.per_minute.get())
        };
        match limiter.check_n(requests) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(OverLimit {
                per_minute,
                retry_in: not_until.wait_time_from(DefaultClock::default().now()),
            }),
            // Heavier than a whole minute's allowance: never admitted.
            Err(_) => Err(OverLimit {
                per_minute,
                retry_in: Duration::from_secs(60),
            }),
        }
    }
}

/// Chunk rows one search slot stands for: a search takes a slot per this
/// many rows it reads (hits and their context), at least one.
pub const ROWS_PER_SEARCH_SLOT: u64 = 500;

/// Each tenant's searches in flight, weighed by the rows they read: a
/// default search takes one of its slots, one of `top_k` 100 with 10
/// neighbours of context all of them. A search waits up to `wait` for its
/// slots, then is told to come back; so one tenant's heavy searches hold at
/// most its slots of the database pool and the CPU, never another's.
pub struct SearchSlots {
    per_tenant: u32,
    wait: Duration,
    tenants: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl SearchSlots {
    pub fn new(per_tenant: u32, wait: Duration) -> SearchSlots {
        SearchSlots {
            per_tenant: per_tenant.max(1),
            wait,
            tenants: Mutex::default(),
        }
    }

    /// The slots for a search of `tenant` reading `rows`, held until the
    /// permit drops; `None` if they did not come free within the wait.
    pub async fn take(&self, tenant: &str, rows: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slots = rows
            .div_ceil(ROWS_PER_SEARCH_SLOT)
            .clamp(1, u64::from(self.per_tenant)) as u32;
        let semaphore = Arc::clone(
            self.tenants
                .lock()
                .unwrap()
                .entry(tenant.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_tenant as usize))),
        );
        tokio::time::timeout(self.wait, semaphore.acquire_many_owned(slots))
            .await
            .ok()?
            .ok()
    }
}

/// Failed authentications, deployment-wide (per process): each is logged
/// (never the key) until they pass [`FAILED_AUTH_PER_SECOND`]; past it they
/// are answered 429 and counted, so a key-guessing flood is slowed, and
/// seen without flooding the log.
pub struct FailedAuthentications {
    limiter: Limiter,
    throttled: std::sync::atomic::AtomicU64,
}

/// Failed authentications a second answered 401 and logged one by one.
pub const FAILED_AUTH_PER_SECOND: u32 = 20;

impl Default for FailedAuthentications {
    fn default() -> Self {
        let rate = NonZeroU32::new(FAILED_AUTH_PER_SECOND).expect("not zero");
        FailedAuthentications {
            limiter: RateLimiter::direct(Quota::per_second(rate)),
            throttled: Default::default(),
        }
    }
}

impl FailedAuthentications {
    /// Counts one; how long the caller must wait if they come too fast.
    pub fn count(&self, hint: &str) -> Option<Duration> {
        use std::sync::atomic::Ordering;
        match self.limiter.check() {
            Ok(()) => {
                let throttled = self.throttled.swap(0, Ordering::Relaxed);
                tracing::warn!(hint, throttled_before = throttled, "authentication failed");
                None
            }
            Err(not_until) => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                Some(not_until.wait_time_from(DefaultClock::default().now()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_tenant_has_its_own_allowance() {
        let rates = TenantRates::new(NonZeroU32::new(3).unwrap());
        let one = NonZeroU32::MIN;
        for _ in 0..3 {
            rates.admit("acme", one, async { None }).await.unwrap();
        }
        let over = rates.admit("acme", one, async { None }).await.unwrap_err();
        assert_eq!(over.per_minute, 3);
        assert!(over.retry_in > Duration::from_secs(10), "{over:?}");
        // Another tenant is untouched, and one with an override has its own.
        rates.admit("globex", one, async { None }).await.unwrap();
        for _ in 0..5 {
            rates
                .admit("initech", one, async { Some(5) })
                .await
                .unwrap();
        }
        assert!(
            rates
                .admit("initech", one, async { Some(5) })
                .await
                .is_err()
        );
        // A request that weighs more takes more of the allowance.
        let two = NonZeroU32::new(2).unwrap();
        rates
            .admit("umbrella", two, async { Some(5) })
            .await
            .unwrap();
        rates
            .admit("umbrella", two, async { Some(5) })
            .await
            .unwrap();
        assert!(
            rates
                .admit("umbrella", two, async { Some(5) })
                .await
                .is_err()
        );
        assert!(
            rates
                .admit("hooli", NonZeroU32::new(6).unwrap(), async { Some(5) })
                .await
                .is_err()
        );
    }
}
