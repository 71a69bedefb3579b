//! Logging setup shared by every binary.

use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `default_level`).
/// `LOG_FORMAT=json` gives one JSON object per line, for log pipelines; in
/// Lambda that is the default, without timestamps (CloudWatch adds its own).
/// JSON lines carry the fields of the current span (job and correlation ids).
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let settings = crate::settings::TelemetrySettings::from_process();
    let (json, in_lambda) = (settings.json_logs(), settings.in_lambda());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match (json, in_lambda) {
        (true, true) => builder.json().with_span_list(false).without_time().init(),
        (true, false) => builder.json().with_span_list(false).init(),
        (false, _) => builder.compact().init(),
    }
}
