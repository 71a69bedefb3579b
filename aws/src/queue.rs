//! Messages between stages, and where they are sent (SQS in AWS, in-process locally).

use async_trait::async_trait;
use docpipe_core::error::Result;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// One unit of stage work. Small on purpose: text and vectors stay in the
/// blob store and Postgres.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMessage {
    pub job_id: Uuid,
    /// Follows one upload through every stage's log lines.
    pub correlation_id: String,
    #[serde(flatten)]
    pub stage: Stage,
    /// How often this message let another tenant's work go first
    /// (`pipeline::fair_share`); absent when never.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub yields: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Which stage runs next, with the part of the job it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    Parse,
    /// Check on a document submitted to LlamaParse (the `attempt`-th check).
    ParseCheck {
        attempt: u32,
    },
    Chunk,
    /// Embed chunks `first_chunk .. first_chunk + chunk_count`.
    Embed {
        first_chunk: u32,
        chunk_count: u32,
    },
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Parse | Stage::ParseCheck { .. } => "parse",
            Stage::Chunk => "chunk",
            Stage::Embed { .. } => "embed",
        }
    }
}

impl StageMessage {
    pub fn new(job_id: Uuid, correlation_id: impl Into<String>, stage: Stage) -> StageMessage {
        StageMessage {
            job_id,
            correlation_id: correlation_id.into(),
            stage,
            yields: 0,
        }
    }

    /// The message for `stage` of the same job, keeping the correlation id.
    pub fn next(&self, stage: Stage) -> StageMessage {
        StageMessage::new(self.job_id, self.correlation_id.clone(), stage)
    }

    /// This message, once more having let another tenant's work go first.
    pub fn yielded(&self) -> StageMessage {
        StageMessage {
            yields: self.yields + 1,
            ..self.clone()
        }
    }
}

/// SQS's longest delivery delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, messages: Vec<StageMessage>) -> Result<()>;
    /// Sends `message` to be delivered after `delay` (at most [`MAX_DELAY`]):
    /// how a stage checks back later without sleeping.
    async fn send_later(&self, message: StageMessage, delay: Duration) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_wire_form() {
        let message = StageMessage::new(
            Uuid::nil(),
            "req-1",
            Stage::Embed {
                first_chunk: 128,
                chunk_count: 64,
            },
        );
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(
            json,
            r#"{"job_id":"00000000-0000-0000-0000-000000000000","correlation_id":"req-1","stage":"embed","first_chunk":128,"chunk_count":64}"#
        );
        assert_eq!(
            serde_json::from_str::<StageMessage>(&json).unwrap(),
            message
        );
        let parse = r#"{"stage":"parse","job_id":"00000000-0000-0000-0000-000000000000","correlation_id":"c"}"#;
        assert_eq!(
            serde_json::from_str::<StageMessage>(parse).unwrap().stage,
            Stage::Parse
        );
        for bad in [
            r#"{"stage":"parse"}"#,
            r#"{"stage":"nope","job_id":"00000000-0000-0000-0000-000000000000","correlation_id":"c"}"#,
            r#"{"stage":"embed","job_id":"00000000-0000-0000-0000-000000000000","correlation_id":"c"}"#,
            r#"{"job_id":"00000000-0000-0000-0000-000000000000","correlation_id":"c"}"#,
        ] {
            assert!(serde_json::from_str::<StageMessage>(bad).is_err(), "{bad}");
        }
    }
}
