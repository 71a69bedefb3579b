//! Messages between stages, and where they are sent (SQS in AWS, in-process locally).

use crate::error::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One unit of stage work. Small on purpose: text and vectors stay in the
/// blob store and Postgres.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum StageMessage {
    Parse {
        job_id: Uuid,
    },
    Chunk {
        job_id: Uuid,
    },
    /// Embed chunks `first_chunk .. first_chunk + chunk_count` of a job.
    Embed {
        job_id: Uuid,
        first_chunk: u32,
        chunk_count: u32,
    },
}

impl StageMessage {
    pub fn job_id(&self) -> Uuid {
        match self {
            StageMessage::Parse { job_id }
            | StageMessage::Chunk { job_id }
            | StageMessage::Embed { job_id, .. } => *job_id,
        }
    }

    pub fn stage(&self) -> &'static str {
        match self {
            StageMessage::Parse { .. } => "parse",
            StageMessage::Chunk { .. } => "chunk",
            StageMessage::Embed { .. } => "embed",
        }
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, messages: Vec<StageMessage>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_wire_form() {
        let job_id = Uuid::nil();
        let message = StageMessage::Embed {
            job_id,
            first_chunk: 128,
            chunk_count: 64,
        };
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(
            json,
            r#"{"stage":"embed","job_id":"00000000-0000-0000-0000-000000000000","first_chunk":128,"chunk_count":64}"#
        );
        assert_eq!(
            serde_json::from_str::<StageMessage>(&json).unwrap(),
            message
        );
        assert!(serde_json::from_str::<StageMessage>(r#"{"stage":"parse"}"#).is_err());
        assert!(serde_json::from_str::<StageMessage>(r#"{"stage":"nope","job_id":"x"}"#).is_err());
    }
}
