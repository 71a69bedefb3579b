//! The job state machine: one transition table, checked in one place.

use serde::{Deserialize, Serialize};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Where a job is. A stage message is only acted on while the job is in the
/// state that stage expects; otherwise it is stale and acknowledged. Its
/// name is its text everywhere: JSON, logs, and the `state` columns (text
/// with a CHECK of these names, read and written as `JobState`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum JobState {
    /// Created by ingest; waiting for parse.
    Queued,
    /// Text extracted to the blob store; waiting for chunk.
    Parsed,
    /// Chunks buffered; embed batches in flight.
    Chunked,
    /// Chunks and vectors are live in `document_chunks`.
    Complete,
    /// Stopped with a recorded reason.
    Failed,
    /// A newer version of the document replaced this one before it finished.
    Superseded,
}

/// Every legal move, and the audit action recorded for it. Nothing else moves a job.
pub const TRANSITIONS: &[(JobState, JobState, &str)] = {
    use JobState::*;
    &[
        (Queued, Parsed, "parsed"),
        (Parsed, Chunked, "chunked"),
        (Chunked, Complete, "finalized"),
        (Queued, Failed, "failed"),
        (Parsed, Failed, "failed"),
        (Chunked, Failed, "failed"),
        (Queued, Superseded, "superseded"),
        (Parsed, Superseded, "superseded"),
        (Chunked, Superseded, "superseded"),
        // A finished version, once a newer one is live in its place.
        (Complete, Superseded, "replaced"),
        // The same content uploaded again after a different version, or a reprocess.
        (Complete, Queued, "requeued"),
        (Failed, Queued, "requeued"),
        (Superseded, Queued, "requeued"),
    ]
};

impl JobState {
    pub const ALL: &[JobState] = <JobState as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<JobState> {
        s.parse().ok()
    }

    /// Terminal states end a job's processing; only a requeue leaves them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Complete | JobState::Failed | JobState::Superseded
        )
    }

    /// The audit action of the move `self -> to`, or `None` if it is illegal.
    pub fn action_to(self, to: JobState) -> Option<&'static str> {
        TRANSITIONS
            .iter()
            .find(|(from, target, _)| *from == self && *target == to)
            .map(|(_, _, action)| *action)
    }
}

impl ToSql for JobState {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for JobState {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let name = <&str as FromSql>::from_sql(ty, raw)?;
        JobState::parse(name).ok_or_else(|| format!("unknown job state {name:?}").into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn every_pair_is_legal_exactly_when_listed() {
        let legal = [
            (Queued, Parsed),
            (Parsed, Chunked),
            (Chunked, Complete),
            (Queued, Failed),
            (Parsed, Failed),
            (Chunked, Failed),
            (Queued, Superseded),
            (Parsed, Superseded),
            (Chunked, Superseded),
            (Complete, Superseded),
            (Complete, Queued),
            (Failed, Queued),
            (Superseded, Queued),
        ];
        for &from in JobState::ALL {
            for &to in JobState::ALL {
                assert_eq!(
                    from.action_to(to).is_some(),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_states_only_leave_by_requeue_or_a_replacement() {
        for (from, to, action) in TRANSITIONS {
            if from.is_terminal() {
                let replaced = (*from, *to, *action) == (Complete, Superseded, "replaced");
                assert!(
                    replaced || (*to, *action) == (Queued, "requeued"),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for &state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert_eq!(JobState::parse("running"), None);
    }
}
