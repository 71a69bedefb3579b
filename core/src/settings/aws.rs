//! The deployed stack's resources (Lambda, and the local runner against an
//! emulator), and the sweeper's patience.

use super::{Settings, invalid, secs};
use crate::error::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// The stage queues' URLs: `PARSE_QUEUE_URL`, `CHUNK_QUEUE_URL`, `EMBED_QUEUE_URL`.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueUrls {
    #[serde(rename = "parse_queue_url")]
    pub parse: String,
    #[serde(rename = "chunk_queue_url")]
    pub chunk: String,
    #[serde(rename = "embed_queue_url")]
    pub embed: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AwsResources {
    /// `DOCPIPE_BUCKET` (required): the bucket holding `uploads/` and `parsed/`.
    #[serde(rename = "docpipe_bucket")]
    pub bucket: String,
    /// The stage queues (required).
    #[serde(flatten)]
    pub queues: QueueUrls,
    /// `S3_FORCE_PATH_STYLE` (false): path-style S3 addressing (emulators);
    /// real S3 takes virtual-hosted style.
    #[serde(default)]
    pub s3_force_path_style: bool,
    /// `MAX_RECEIVE_COUNT` (5): the queues' redrive `maxReceiveCount`, the
    /// receive after which a failing message goes to its dead-letter queue
    /// and its job is failed.
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
    /// `UPLOADS_QUEUE_URL` (none): the queue of S3's notifications, which
    /// also carries a sync's slices (`POST /v1/syncs`), one after another.
    #[serde(default)]
    pub uploads_queue_url: Option<String>,
}

fn default_max_receive_count() -> u32 {
    5
}

impl Settings for AwsResources {
    fn check(self) -> Result<Self, ConfigError> {
        if self.max_receive_count == 0 {
            return Err(invalid("MAX_RECEIVE_COUNT", 0, "must be at least 1"));
        }
        Ok(self)
    }
}

/// When the sweeper treats an unfinished job as stuck, and how often it
/// resumes one before failing it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SweepPolicy {
    /// Idle time after which a job in `queued` (`SWEEP_QUEUED_TIMEOUT_SECS`,
    /// 900), `parsed` (`SWEEP_PARSED_TIMEOUT_SECS`, 900) or `chunked`
    /// (`SWEEP_CHUNKED_TIMEOUT_SECS`, 1800) is stuck.
    #[serde(rename = "sweep_queued_timeout_secs", deserialize_with = "secs")]
    pub queued_timeout: Duration,
    #[serde(rename = "sweep_parsed_timeout_secs", deserialize_with = "secs")]
    pub parsed_timeout: Duration,
    #[serde(rename = "sweep_chunked_timeout_secs", deserialize_with = "secs")]
    pub chunked_timeout: Duration,
    /// `SWEEP_MAX_RETRIES` (3): resumes per job before it fails with `stuck`.
    #[serde(rename = "sweep_max_retries")]
    pub max_retries: u32,
    /// `SWEEP_BATCH` (100): jobs claimed per run.
    #[serde(rename = "sweep_batch")]
    pub batch: u32,
    /// `SWEEP_MODEL_CHANGE_CHUNKS` (1000): during a model change, chunks
    /// embedded by the next model per run.
    #[serde(rename = "sweep_model_change_chunks")]
    pub model_change_batch: u32,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        SweepPolicy {
            queued_timeout: Duration::from_secs(900),
            parsed_timeout: Duration::from_secs(900),
            chunked_timeout: Duration::from_secs(1800),
            max_retries: 3,
            batch: 100,
            model_change_batch: 1000,
        }
    }
}

impl Settings for SweepPolicy {}

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::*;

    #[test]
    fn resources_are_required_and_typed() {
        let err = env(&[]).load::<AwsResources>().unwrap_err();
        assert_eq!(err.to_string(), "DOCPIPE_BUCKET is not set");
        let resources = env(&[
            ("DOCPIPE_BUCKET", "b"),
            ("PARSE_QUEUE_URL", "p"),
            ("CHUNK_QUEUE_URL", "c"),
            ("EMBED_QUEUE_URL", "e"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("MAX_RECEIVE_COUNT", "3"),
        ])
        .load::<AwsResources>()
        .unwrap();
        assert!(resources.s3_force_path_style);
        assert_eq!(resources.max_receive_count, 3);
        assert_eq!(resources.queues.embed, "e");
        let sweep = env(&[
            ("SWEEP_MAX_RETRIES", "7"),
            ("SWEEP_CHUNKED_TIMEOUT_SECS", "60"),
        ])
        .load::<SweepPolicy>()
        .unwrap();
        assert_eq!(sweep.max_retries, 7);
        assert_eq!(sweep.chunked_timeout, Duration::from_secs(60));
    }
}
