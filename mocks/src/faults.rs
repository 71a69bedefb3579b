//! Fault injection shared by the mock servers: latency, 5xx, 429 with
//! `Retry-After`, malformed bodies, wrong dimensions and hung requests, each
//! drawn from a seeded sequence so a run with the same seed and request order
//! sees the same faults. Knobs come from `MOCK_FAULT_*` variables, or from
//! `PUT /mock/faults` while the server runs.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a mock should do wrong, and how often (rates are 0.0..=1.0 per request).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultKnobs {
    /// Added to every response.
    pub latency_ms: u64,
    /// Up to this much more, drawn per request.
    pub latency_jitter_ms: u64,
    /// Share of requests answered 500/503.
    pub error_rate: f64,
    /// Share of requests answered 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    /// The `Retry-After` of injected 429s, in seconds.
    pub retry_after_secs: u64,
    /// Instead, a `Retry-After` sent as it is (`inf`, `1e12`, `-1`, `soon`),
    /// without `retry-after-ms`: what a broken or hostile provider may send.
    pub retry_after_raw: Option<String>,
    /// Share of requests answered 200 with a body that is not the contract's JSON.
    pub malformed_rate: f64,
    /// Share of embedding requests answered with vectors one dimension short.
    pub wrong_dims_rate: f64,
    /// Share of requests that hang for `hang_secs` before answering.
    pub timeout_rate: f64,
    pub hang_secs: u64,
    pub seed: u64,
}

/// The fault chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    ServerError,
    RateLimited,
    Malformed,
    WrongDims,
    Hang,
}

impl FaultKnobs {
    /// From `MOCK_FAULT_<KNOB>` variables (e.g. `MOCK_FAULT_ERROR_RATE=0.1`).
    pub fn from_env() -> Result<FaultKnobs, String> {
        let mut knobs = serde_json::Map::new();
        for (name, value) in std::env::vars() {
            if let Some(knob) = name.strip_prefix("MOCK_FAULT_") {
                if knob == "RETRY_AFTER_RAW" {
                    knobs.insert(knob.to_ascii_lowercase(), value.into());
                    continue;
                }
                let number: serde_json::Number = value
                    .parse()
                    .map_err(|_| format!("{name}={value:?} is not a number"))?;
                knobs.insert(knob.to_ascii_lowercase(), number.into());
            }
        }
        serde_json::from_value(knobs.into()).map_err(|e| format!("MOCK_FAULT_*: {e}"))
    }
}

/// Chooses faults for successive requests and counts what it chose.
#[derive(Debug, Default)]
pub struct FaultInjector {
    knobs: Mutex<FaultKnobs>,
    requests: AtomicU64,
    injected: Mutex<Vec<Fault>>,
}

/// splitmix64: a well-mixed 64-bit value for each (seed, n).
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(value: u64) -> f64 {
    (value >> 11) as f64 / (1u64 << 53) as f64
}

impl FaultInjector {
    pub fn new(knobs: FaultKnobs) -> FaultInjector {
        FaultInjector {
            knobs: Mutex::new(knobs),
            ..FaultInjector::default()
        }
    }

    pub fn knobs(&self) -> FaultKnobs {
        self.knobs.lock().unwrap().clone()
    }

    pub fn set_knobs(&self, knobs: FaultKnobs) {
        *self.knobs.lock().unwrap() = knobs;
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<Fault> {
        self.injected.lock().unwrap().clone()
    }

    /// Waits the configured latency, then picks this request's fault, if any.
    pub async fn next(&self) -> Option<Fault> {
        let knobs = self.knobs();
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let draw = unit(mix(knobs.seed, n));
        let jitter = match knobs.latency_jitter_ms {
            0 => 0,
            max => mix(knobs.seed ^ 0x5555, n) % (max + 1),
        };
        let latency = Duration::from_millis(knobs.latency_ms + jitter);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut threshold = 0.0;
        let fault = [
            (knobs.error_rate, Fault::ServerError),
            (knobs.rate_limit_rate, Fault::RateLimited),
            (knobs.malformed_rate, Fault::Malformed),
            (knobs.wrong_dims_rate, Fault::WrongDims),
            (knobs.timeout_rate, Fault::Hang),
        ]
        .into_iter()
        .find_map(|(rate, fault)| {
            threshold += rate;
            (draw < threshold).then_some(fault)
        })?;
        self.injected.lock().unwrap().push(fault);
        if fault == Fault::Hang {
            tokio::time::sleep(Duration::from_secs(knobs.hang_secs.max(1))).await;
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn faults_follow_their_rates_and_the_seed() {
        let knobs = FaultKnobs {
            error_rate: 0.1,
            rate_limit_rate: 0.05,
            seed: 7,
            ..FaultKnobs::default()
        };
        let run = |knobs: FaultKnobs| async move {
            let injector = FaultInjector::new(knobs);
            let mut seen = Vec::new();
            for _ in 0..2000 {
                seen.push(injector.next().await);
            }
            seen
        };
        let first = run(knobs.clone()).await;
        assert_eq!(first, run(knobs.clone()).await, "same seed, same faults");
        let count = |f| first.iter().filter(|x| **x == Some(f)).count();
        assert!(
            (150..250).contains(&count(Fault::ServerError)),
            "{}",
            count(Fault::ServerError)
        );
        assert!(
            (60..140).contains(&count(Fault::RateLimited)),
            "{}",
            count(Fault::RateLimited)
        );
        assert_ne!(first, run(FaultKnobs { seed: 8, ..knobs }).await);
    }

    #[test]
    fn knobs_parse_from_json_and_refuse_unknown_ones() {
        let knobs: FaultKnobs =
            serde_json::from_str(r#"{"error_rate":0.1,"retry_after_secs":2}"#).unwrap();
        assert_eq!(knobs.retry_after_secs, 2);
        assert!(serde_json::from_str::<FaultKnobs>(r#"{"eror_rate":0.1}"#).is_err());
    }
}
