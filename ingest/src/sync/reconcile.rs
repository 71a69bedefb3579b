//! The scheduled reconcile: a sync of every tenant folder the bucket holds,
//! a page of folders per message, so lost events are caught without anyone
//! asking.

use super::{Scope, Started, StartedBy, start};
use crate::pipeline::Pipeline;
use docpipe_core::domain::keys::{Tenant, UPLOAD_PREFIX};
use docpipe_core::error::{Error, Result};

/// The scheduled reconcile's message on the uploads queue: a sync of every
/// tenant's folder, a page of folders per message, `after` (a listing's
/// continuation) where this page begins. The schedule sends `{"reconcile": {}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl Reconcile {
    pub fn message(&self) -> String {
        serde_json::json!({ "reconcile": self }).to_string()
    }

    /// The reconcile `body` asks for, if it is one.
    pub fn read(body: &str) -> Option<Reconcile> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Message {
            reconcile: Reconcile,
        }
        serde_json::from_str::<Message>(body)
            .ok()
            .map(|message| message.reconcile)
    }
}

/// What one page of a reconcile started.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Each tenant folder's sync: new, already running, or stalled.
    pub syncs: Vec<Started>,
    /// The rest of the folders, if there are more.
    pub next: Option<Reconcile>,
}

/// One page of the scheduled reconcile: a sync of each tenant folder the
/// bucket's `uploads/` holds (whether or not docpipe has seen a document of
/// it), unless one runs. A folder that names no valid tenant is left alone.
pub async fn reconcile(pipeline: &Pipeline, page: &Reconcile) -> Result<Reconciled> {
    let folders = pipeline
        .blobs
        .folders(UPLOAD_PREFIX, page.after.as_deref())
        .await?;
    let mut syncs = Vec::new();
    for folder in &folders.folders {
        let name = folder[UPLOAD_PREFIX.len()..].trim_end_matches('/');
        let Ok(tenant) = Tenant::new(name) else {
            tracing::warn!(
                folder,
                "a folder under uploads/ that names no tenant; not synced"
            );
            continue;
        };
        let scope = Scope::new(tenant, "").map_err(Error::Transient)?;
        syncs.push(start(pipeline, &scope, false, StartedBy::Schedule).await?);
    }
    Ok(Reconciled {
        syncs,
        next: folders.next.map(|after| Reconcile { after: Some(after) }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::read_slice_message;

    #[test]
    fn the_schedule_s_message_asks_for_a_reconcile_from_the_first_folder() {
        // What the template's schedule sends.
        assert_eq!(
            Reconcile::read(r#"{"reconcile": {}}"#),
            Some(Reconcile::default())
        );
        let next = Reconcile {
            after: Some("token".into()),
        };
        assert_eq!(Reconcile::read(&next.message()), Some(next));
        for other in [r#"{"reconcile": {"x": 1}}"#, r#"{"sync_slice": 1}"#, "{}"] {
            assert_eq!(Reconcile::read(other), None, "{other}");
        }
        assert_eq!(read_slice_message(&Reconcile::default().message()), None);
    }
}
