//! Running it: CloudWatch EMF metrics, logs, Secrets Manager, TLS roots.

pub mod metrics;
pub mod redact;
pub mod secrets;
pub mod telemetry;
pub mod tls;
