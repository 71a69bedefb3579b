//! Metadata sidecars: `<key>.metadata.json` beside a document sets its
//! attributes. A sidecar may arrive before or after its document; a change
//! or removal updates the document and its searchable chunks without
//! parsing or embedding anything again, unless it changes the attributes
//! marked `includeForEmbedding`: the document's chunks are embedded with
//! them, so its latest job runs again (parsed again, and its chunks
//! embedded again under the new attributes: the ledger shows them).

use super::Pipeline;
use super::ingest::{Reprocess, reprocess};
use docpipe_core::domain::keys::{UploadKey, sidecar_target};
use docpipe_core::domain::{ids, metadata};
use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::store::{documents, sidecars};

/// What became of a sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sidecar {
    /// Its attributes are the document's (once the document arrives).
    Applied,
    /// It breaks a rule, said here; the last good attributes stay.
    Refused(String),
    /// It is gone: the document keeps its object's attributes only.
    Removed,
}

/// What a sidecar notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarChange {
    /// The key of the document the sidecar describes.
    pub document_key: String,
    pub sidecar: Sidecar,
    /// Whether an existing document's metadata changed.
    pub changed: bool,
    /// Whether the attributes its chunks are embedded with changed, so
    /// that its latest job runs again.
    pub reembedded: bool,
}

/// Reads the sidecar at `sidecar_key` as it is now (created, rewritten or
/// deleted) and gives its document the attributes it holds.
pub async fn sidecar_changed(pipeline: &Pipeline, sidecar_key: &str) -> Result<SidecarChange> {
    let key = sidecar_target(sidecar_key).ok_or_else(|| Rejection::InvalidKey {
        key: sidecar_key.to_string(),
        detail: "not a metadata sidecar (<key>.metadata.json)".into(),
    })?;
    let tenant = UploadKey::parse(key)?.tenant();
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    documents::lock_key(&tx, key).await?;
    // Read under the lock: of two notifications racing for one sidecar, the
    // one that commits last read it last, so the newest content wins.
    let read = match pipeline
        .blobs
        .get(sidecar_key, metadata::MAX_SIDECAR_BYTES)
        .await
    {
        Ok(bytes) => Some(metadata::parse_sidecar(&bytes)),
        Err(Error::Rejected(Rejection::ObjectMissing { .. })) => None,
        Err(Error::Rejected(Rejection::TooLarge { size, limit })) => {
            Some(Err(format!("sidecar is {size} bytes; at most {limit}")))
        }
        Err(other) => return Err(other),
    };
    let embedded_before = sidecars::for_embedding(&tx, key).await?;
    let sidecar = match read {
        Some(Ok(read)) => {
            sidecars::put(&tx, key, tenant, &read).await?;
            Sidecar::Applied
        }
        Some(Err(problem)) => {
            let problem = format!("metadata sidecar not applied: {problem}");
            sidecars::refuse(&tx, key, tenant, &problem).await?;
            Sidecar::Refused(problem)
        }
        None => {
            sidecars::delete(&tx, key).await?;
            Sidecar::Removed
        }
    };
    let document_id = ids::document_id(tenant, key);
    let changed = documents::refresh_metadata(&tx, document_id).await?;
    let embedded_now = sidecars::for_embedding(&tx, key).await?;
    tx.commit().await?;
    let reembedded = embedded_now != embedded_before
        && matches!(
            reprocess(pipeline, document_id, "metadata-for-embedding").await?,
            Reprocess::Queued(_)
        );
    match &sidecar {
        Sidecar::Refused(problem) => tracing::warn!(key, %problem, "metadata sidecar refused"),
        _ => tracing::info!(key, ?sidecar, changed, reembedded, "metadata sidecar read"),
    }
    Ok(SidecarChange {
        document_key: key.to_string(),
        sidecar,
        changed,
        reembedded,
    })
}
