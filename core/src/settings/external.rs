//! External services: which implementation runs, and how calls to them are
//! retried and guarded.

use super::{Settings, choice, millis, secs};
use crate::error::ConfigError;
use serde::Deserialize;
use std::time::Duration;

choice! {
    /// Which implementation of each external service runs (`SERVICE_MODE`).
    pub enum ServiceMode from "SERVICE_MODE" {
        /// The in-process stand-ins only: mock embedder, local parsers. Free.
        Mock,
        /// The configured services only (the default).
        #[default]
        Real,
        /// The configured services; outside production, the stand-ins when a
        /// service is down (fallback vectors keep the mock's model name).
        Hybrid,
    }
}

choice! {
    /// `DOCPIPE_ENVIRONMENT`: `production` never falls back to stand-ins.
    enum Environment from "DOCPIPE_ENVIRONMENT" {
        #[default]
        Production,
        Dev,
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    /// `SERVICE_MODE`: real (default), mock or hybrid.
    #[serde(rename = "service_mode")]
    pub mode: ServiceMode,
    /// `DOCPIPE_ENVIRONMENT`: production (default) or dev.
    #[serde(rename = "docpipe_environment")]
    environment: Environment,
}

impl Settings for ServiceSettings {}

impl ServiceSettings {
    pub fn production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Whether a service that is down is stood in for (hybrid mode outside production).
    pub fn falls_back(&self) -> bool {
        self.mode == ServiceMode::Hybrid && !self.production()
    }
}

/// Retries, backoff and circuit breaker for calls to external services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ExternalPolicy {
    /// `EXTERNAL_MAX_ATTEMPTS` (5): attempts per call before the error goes
    /// back to the queue.
    #[serde(rename = "external_max_attempts")]
    pub max_attempts: u32,
    /// `EXTERNAL_FIRST_BACKOFF_MS` (500).
    #[serde(rename = "external_first_backoff_ms", deserialize_with = "millis")]
    pub first_backoff: Duration,
    /// `EXTERNAL_MAX_WAIT_SECS` (20): the longest wait spent in-process; a
    /// longer `Retry-After` is left to redelivery.
    #[serde(rename = "external_max_wait_secs", deserialize_with = "secs")]
    pub max_wait: Duration,
    /// `BREAKER_THRESHOLD` (5): failures in a row that open a service's breaker.
    #[serde(rename = "breaker_threshold")]
    pub breaker_threshold: u32,
    /// `BREAKER_COOLDOWN_SECS` (60).
    #[serde(rename = "breaker_cooldown_secs", deserialize_with = "secs")]
    pub breaker_cool_down: Duration,
}

impl Default for ExternalPolicy {
    fn default() -> Self {
        ExternalPolicy {
            max_attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(20),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(60),
        }
    }
}

impl Settings for ExternalPolicy {
    fn check(mut self) -> Result<Self, ConfigError> {
        self.max_attempts = self.max_attempts.max(1);
        Ok(self)
    }
}
