//! Logs and metrics: their formats and where they go.

use super::{Env, Settings};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `LOG_FORMAT`: `json` for one JSON object a line (the default in
    /// Lambda), anything else for compact text (the default elsewhere).
    log_format: Option<String>,
    /// `EMF_OUTPUT`: where metrics go as CloudWatch EMF lines: `stdout` (the
    /// default in Lambda), `off` (the default elsewhere) or a file's path.
    pub emf_output: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME`, set by Lambda.
    aws_lambda_function_name: Option<String>,
}

impl Settings for TelemetrySettings {}

impl TelemetrySettings {
    /// From the process environment; every field is optional text, so it always reads.
    pub fn from_process() -> TelemetrySettings {
        Env::from_process().load().unwrap_or_default()
    }

    pub fn in_lambda(&self) -> bool {
        self.aws_lambda_function_name.is_some()
    }

    pub fn json_logs(&self) -> bool {
        self.log_format
            .as_deref()
            .map_or(self.in_lambda(), |format| format == "json")
    }
}
