//! Calls to external services (the embedding provider, LlamaParse), with one
//! place for their circuit breaker, rate limits, and retries with jittered
//! backoff that honour `Retry-After`.

pub mod breaker;
pub mod breakers;
pub mod health;
pub mod rate_limit;

use crate::error::{Error, Result};
use crate::settings::ExternalPolicy;
use backon::{BackoffBuilder, ExponentialBuilder};
use breaker::CircuitBreaker;
use bytes::Bytes;
use rate_limit::RateLimiter;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How one attempt at a call failed.
#[derive(Debug)]
pub enum Failure {
    /// The service is unwell (5xx, network, timeout, an answer off contract):
    /// retried, and counted by the breaker.
    Unavailable(Error),
    /// The service asked us to slow down (429), for this long if it said.
    RateLimited(Error, Option<Duration>),
    /// The request is refused for itself: retrying cannot help.
    Rejected(Error),
}

/// One external service as this process sees it.
pub struct ExternalService {
    pub name: &'static str,
    pub breaker: CircuitBreaker,
    pub limiter: RateLimiter,
    policy: ExternalPolicy,
    /// The breaker's change count when its state was last recorded; none
    /// (`u64::MAX`) until this instance first calls the service.
    reported_changes: AtomicU64,
    called: AtomicBool,
}

impl ExternalService {
    pub fn new(name: &'static str, policy: &ExternalPolicy, limiter: RateLimiter) -> Self {
        ExternalService {
            name,
            breaker: CircuitBreaker::new(policy.breaker_threshold, policy.breaker_cool_down),
            limiter: limiter.capped(policy.max_wait),
            policy: policy.clone(),
            reported_changes: AtomicU64::new(u64::MAX),
            called: AtomicBool::new(false),
        }
    }

    /// Runs `attempt` (one HTTP exchange carrying `tokens`) until it succeeds,
    /// is rejected, or the attempts or the longest wait allowed in-process are
    /// used up; then the error goes back to the caller (a transient one is
    /// retried later by queue redelivery). An open breaker fails at once.
    pub async fn call<T, F, Fut>(&self, tokens: u32, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.first_backoff)
            .with_max_delay(self.policy.max_wait)
            .with_jitter()
            .without_max_times()
            .build();
        self.called.store(true, Ordering::Relaxed);
        let mut attempts = 0;
        loop {
            if let Err(refused) = self.breaker.admit() {
                return Err(Error::Transient(format!(
                    "{} circuit breaker is open after repeated failures; next try in {} s",
                    self.name,
                    refused.retry_in.as_secs().max(1)
                )));
            }
            self.limiter.acquire(tokens).await;
            attempts += 1;
            let failure = match attempt().await {
                Ok(value) => {
                    self.breaker.record_success();
                    return Ok(value);
                }
                Err(failure) => failure,
            };
            let (error, wait) = match failure {
                Failure::Rejected(error) => {
                    // It answered: the service itself is up.
                    self.breaker.record_success();
                    return Err(error);
                }
                Failure::Unavailable(error) => {
                    if self.breaker.record_failure() {
                        tracing::warn!(service = self.name, "circuit breaker opened");
                    }
                    (error, backoff.next().unwrap_or(self.policy.max_wait))
                }
                Failure::RateLimited(error, asked) => {
                    let wait = asked.unwrap_or_else(|| backoff.next().unwrap_or_default());
                    self.limiter.pause(wait);
                    (error, wait)
                }
            };
            if attempts >= self.policy.max_attempts || wait > self.policy.max_wait {
                return Err(error);
            }
            tracing::warn!(
                service = self.name,
                attempts,
                wait_ms = wait.as_millis() as u64,
                %error,
                "retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// An HTTP client for one service: `timeout` per request, 10 s to connect.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    crate::ops::tls::crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::transient("building HTTP client", e))
}

/// Sends a request; network errors and timeouts mean the service is unavailable.
/// The error never carries the URL (it may hold credentials).
pub async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
    let unavailable = |e: reqwest::Error| {
        let kind = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        Failure::Unavailable(Error::transient(&format!("{what} {kind}"), e.without_url()))
    };
    let response = request.send().await.map_err(unavailable)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(unavailable)?;
    Ok((status, headers, body))
}

/// What an HTTP error status means: 408, 409 and 5xx are the service being
/// unwell, 429 is a rate limit (unless `quota_gone`: no retry helps then), and
/// anything else is a refusal of this request, turned into `rejected`.
pub fn status_failure(
    status: StatusCode,
    headers: &HeaderMap,
    detail: String,
    quota_gone: bool,
    rejected: impl FnOnce(String) -> Error,
) -> Failure {
    let code = status.as_u16();
    // The provider's words may echo the request's key.
    let detail = crate::ops::redact::credentials(&detail);
    match code {
        429 if !quota_gone => Failure::RateLimited(
            Error::Transient(format!("HTTP 429: {detail}")),
            rate_limit::retry_after(headers),
        ),
        408 | 409 | 500..=599 => {
            Failure::Unavailable(Error::Transient(format!("HTTP {code}: {detail}")))
        }
        _ => Failure::Rejected(rejected(format!("HTTP {code}: {detail}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breaker::BreakerState;
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicU32;

    fn service(max_attempts: u32, threshold: u32) -> ExternalService {
        let policy = ExternalPolicy {
            max_attempts,
            first_backoff: Duration::from_millis(1),
            max_wait: Duration::from_millis(50),
            breaker_threshold: threshold,
            breaker_cool_down: Duration::from_secs(60),
        };
        ExternalService::new(
            "test",
            &policy,
            RateLimiter::new(None, NonZeroU32::MIN, None),
        )
    }

    #[tokio::test]
    async fn unavailable_is_retried_rejected_is_not_and_long_waits_go_back_to_the_queue() {
        let service = service(4, 10);
        let calls = AtomicU32::new(0);
        let result = service
            .call(1, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(Failure::Unavailable(Error::Transient("503".into()))),
                    _ => Ok("done"),
                }
            })
            .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let result: Result<()> = service
            .call(1, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Rejected(Error::Transient("400".into())))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A Retry-After longer than the longest in-process wait is not slept on.
        calls.store(0, Ordering::SeqCst);
        let result: Result<()> = service
            .call(1, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure::RateLimited(
                    Error::Transient("429".into()),
                    Some(Duration::from_secs(30)),
                ))
            })
            .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_open_breaker_fails_fast_without_calling() {
        let service = service(1, 2);
        let calls = AtomicU32::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Failure::Unavailable(Error::Transient("down".into())))
        };
        for _ in 0..2 {
            assert!(service.call(1, failing).await.is_err());
        }
        assert_eq!(service.breaker.state(), BreakerState::Open);
        let error = service.call(1, failing).await.unwrap_err();
        assert!(error.is_transient());
        assert!(
            error.to_string().contains("circuit breaker is open"),
            "{error}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
