//! Client-side request and token rate limits, shared by every concurrent call
//! to one service in this process, plus the pauses the service asks for
//! (`Retry-After`, `x-ratelimit-remaining-*: 0`).
//!
//! Tokens use a GCRA limiter (governor) whose burst is one request (at most
//! a twentieth of the limit) and whose rate is the limit less that burst, so
//! no 60-second window ever carries more than the limit, and steady state
//! runs at 95 % or more of it.

use governor::clock::DefaultClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter as Gcra};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

type Limiter = Gcra<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware>;

pub struct RateLimiter {
    tokens: Option<(Limiter, u32)>,
    requests: Option<Limiter>,
    paused_until: Mutex<Option<Instant>>,
    /// The longest pause a service may impose on this process: whatever it
    /// asks, callers never wait longer (a longer wait goes back to the queue).
    max_pause: Duration,
}

/// A limiter allowing `per_minute` cells a minute, at most `burst` at once.
fn gcra(per_minute: NonZeroU32, burst: NonZeroU32) -> Limiter {
    let period = Duration::from_secs(60) / per_minute.get();
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("a non-zero period")
        .allow_burst(burst);
    Gcra::direct(quota)
}

impl RateLimiter {
    /// `tokens_per_minute` with requests of at most `max_request_tokens`,
    /// and `requests_per_minute`; `None` means unlimited.
    pub fn new(
        tokens_per_minute: Option<NonZeroU32>,
        max_request_tokens: NonZeroU32,
        requests_per_minute: Option<NonZeroU32>,
    ) -> Self {
        RateLimiter {
            tokens: tokens_per_minute.map(|tpm| {
                let twentieth = NonZeroU32::new(tpm.get() / 20).unwrap_or(NonZeroU32::MIN);
                let burst = max_request_tokens.min(twentieth);
                let rate = NonZeroU32::new(tpm.get() - burst.get()).unwrap_or(NonZeroU32::MIN);
                (gcra(rate, burst), burst.get())
            }),
            requests: requests_per_minute.map(|rpm| gcra(rpm, NonZeroU32::MIN)),
            paused_until: Mutex::new(None),
            max_pause: Duration::MAX,
        }
    }

    /// Pauses the service asks for last at most `max_pause`.
    pub fn capped(mut self, max_pause: Duration) -> Self {
        self.max_pause = max_pause;
        self
    }

    /// The most tokens one request may carry under this limiter.
    pub fn max_request_tokens(&self) -> Option<u32> {
        self.tokens.as_ref().map(|(_, burst)| *burst)
    }

    /// Waits until a request of `tokens` may go out.
    pub async fn acquire(&self, tokens: u32) {
        loop {
            let paused = *self.paused_until.lock().unwrap();
            match paused {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await
                }
                _ => break,
            }
        }
        if let Some(requests) = &self.requests {
            requests.until_ready().await;
        }
        if let Some((limiter, burst)) = &self.tokens
            && let Some(n) = NonZeroU32::new(tokens.min(*burst))
        {
            // Cannot fail: n is at most the burst.
            let _ = limiter.until_n_ready(n).await;
        }
    }

    /// Stops every caller for `wait` (the service said so), at most the cap.
    pub fn pause(&self, wait: Duration) {
        let now = Instant::now();
        let Some(until) = now.checked_add(wait.min(self.max_pause)) else {
            return;
        };
        let mut paused = self.paused_until.lock().unwrap();
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Pauses until the service's window resets when its `x-ratelimit-remaining-*`
    /// headers say nothing is left.
    pub fn observe(&self, headers: &reqwest::header::HeaderMap) {
        for kind in ["tokens", "requests"] {
            let header = |name: String| headers.get(name).and_then(|v| v.to_str().ok());
            let exhausted = header(format!("x-ratelimit-remaining-{kind}"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                == Some(0);
            if exhausted
                && let Some(reset) =
                    header(format!("x-ratelimit-reset-{kind}")).and_then(parse_reset)
            {
                tracing::info!(
                    kind,
                    wait_ms = reset.as_millis() as u64,
                    "provider quota used up; pausing"
                );
                self.pause(reset);
            }
        }
    }
}

/// When the service may be called again, from `retry-after-ms` or
/// `retry-after` (seconds or an HTTP date). Whatever a service sends, this
/// never panics: garbage and negative values are `None` (the caller's own
/// backoff applies), infinite or huge ones saturate (and are capped by the
/// caller).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    let value = header("retry-after")?.trim();
    match value.parse::<f64>() {
        Ok(secs) => seconds(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()),
    }
}

/// A wait of `secs` seconds: `None` for NaN or a negative number, saturating
/// at [`Duration::MAX`].
fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// OpenAI's reset durations: `6m0s`, `1.5s`, `20ms`, `1h2m3s`.
pub fn parse_reset(value: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += number
            * match unit {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 0.001,
                _ => return None,
            };
        rest = tail;
    }
    seconds(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_parse() {
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_reset("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset(""), None);
        assert_eq!(parse_reset("99999999999999999999999h"), Some(Duration::MAX));
    }

    #[test]
    fn hostile_retry_after_values_never_panic() {
        let headers = |name: &'static str, value: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert(name, value.parse().unwrap());
            retry_after(&map)
        };
        assert_eq!(headers("retry-after", "2"), Some(Duration::from_secs(2)));
        assert_eq!(headers("retry-after", "inf"), Some(Duration::MAX));
        assert_eq!(
            headers("retry-after", "1e12"),
            Some(Duration::from_secs(1_000_000_000_000))
        );
        assert_eq!(headers("retry-after", "1e400"), Some(Duration::MAX));
        assert_eq!(headers("retry-after", "-5"), None);
        assert_eq!(headers("retry-after", "NaN"), None);
        assert_eq!(headers("retry-after", "soon, maybe"), None);
        assert_eq!(headers("retry-after-ms", "inf"), Some(Duration::MAX));
        assert_eq!(headers("retry-after-ms", "-1"), None);
        assert_eq!(
            headers("retry-after-ms", "250"),
            Some(Duration::from_millis(250))
        );
        let past = headers("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(past, Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_huge_pause_is_capped() {
        let limiter =
            RateLimiter::new(None, NonZeroU32::MIN, None).capped(Duration::from_millis(100));
        limiter.pause(Duration::MAX);
        limiter.pause(Duration::from_secs(1_000_000_000_000));
        let start = Instant::now();
        limiter.acquire(1).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(90) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn tokens_flow_at_the_limit_after_one_request_of_burst() {
        // 60 000 tokens a minute = 1 000 a second; requests of at most 500.
        let limiter =
            RateLimiter::new(NonZeroU32::new(60_000), NonZeroU32::new(500).unwrap(), None);
        assert_eq!(limiter.max_request_tokens(), Some(500));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire(500).await;
        }
        // The first 500 are the burst; the other 2 000 take two seconds.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_pause_holds_every_caller() {
        let limiter = RateLimiter::new(None, NonZeroU32::MIN, None);
        limiter.pause(Duration::from_millis(200));
        limiter.pause(Duration::from_millis(10));
        let start = Instant::now();
        limiter.acquire(1).await;
        assert!(start.elapsed() >= Duration::from_millis(190));
    }
}
