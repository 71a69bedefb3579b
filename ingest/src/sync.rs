//! A sync: the bucket under a tenant's folder (or a prefix of it) against
//! the documents table, for objects docpipe was never told of: a bucket
//! that held documents before it was watched, a lost or misconfigured
//! notification, objects written while the stack was down. Events give
//! latency; a sync gives the truth.
//!
//! The listing is read a page at a time (ListObjectsV2's byte order), and
//! each page is compared with the rows in the same stretch of that order,
//! so memory stays bounded whatever the bucket holds:
//! - a new or changed object (its version, the S3 ETag, differs from the
//!   one ingest read) is ingested exactly as its event would ingest it: the
//!   same deterministic ids, so an object synced and evented at once makes
//!   one job;
//! - a document whose object is not listed is removed as its delete event
//!   would remove it, unless its row was written after the sync began (an
//!   upload in flight), and only in stretches the listing covered: a
//!   listing that fails mid-way deletes nothing it did not see;
//! - sidecars added, changed or removed update metadata without embedding.

use crate::pipeline::Pipeline;
use crate::pipeline::ingest::{Change, Removal, ingest, remove};
use crate::pipeline::metadata::{Sidecar, sidecar_changed};
use crate::store::sync::{self as rows, Objects};
pub use crate::store::sync::{IngestionJob, Started, SyncCounts, SyncRow};
use docpipe_aws::blob::Listed;
use docpipe_core::domain::keys::{SIDECAR_SUFFIX, Tenant, UploadKey, sidecar_target};
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Error, Result};
use docpipe_core::store::sidecars;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::HashSet;
use std::time::SystemTime;

/// Objects of one page ingested (or re-read) at once.
const CONCURRENCY: usize = 8;
/// Objects a slice lists: one slice's work fits well inside a function's
/// deadline (each new object is read whole once, for its hash).
pub const SLICE_OBJECTS: usize = 250;
/// S3's longest key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// What a sync reads: a tenant's folder, or a prefix within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub tenant: Tenant,
    /// A key prefix within the tenant's folder (`uploads/acme/reports/`).
    pub prefix: String,
}

impl Scope {
    /// `path` (a folder or name prefix) under `tenant`'s folder; one with
    /// control characters or a `..` segment is refused, whoever gives it.
    pub fn new(tenant: Tenant, path: &str) -> std::result::Result<Scope, String> {
        let path = path.trim_start_matches('/');
        if path.chars().any(char::is_control) || path.split('/').any(|part| part == "..") {
            return Err(
                "prefix must be a folder or name prefix under the tenant's folder, without control characters or ..".into(),
            );
        }
        let prefix = tenant.upload_path(path);
        Ok(Scope { tenant, prefix })
    }
}

/// Starts a sync of `scope` (`dry_run`: counting what it would do, doing
/// nothing), as a knowledge base's ingestion job if one asked; or finds the
/// sync of that scope already running.
pub async fn start(
    pipeline: &Pipeline,
    scope: &Scope,
    dry_run: bool,
    job: Option<IngestionJob<'_>>,
) -> Result<Started> {
    let client = pipeline.db.get().await?;
    let scope = (scope.tenant.as_str(), scope.prefix.as_str());
    rows::create(&client, scope, dry_run, job).await
}

/// The uploads queue's message that asks for the next slice of sync `id`
/// (the queue's other messages are S3's notifications).
pub fn slice_message(id: uuid::Uuid) -> String {
    serde_json::json!({ "sync_slice": id }).to_string()
}

/// The sync a slice message names, if `body` is one.
pub fn read_slice_message(body: &str) -> Option<uuid::Uuid> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SliceMessage {
        sync_slice: uuid::Uuid,
    }
    serde_json::from_str::<SliceMessage>(body)
        .ok()
        .map(|message| message.sync_slice)
}

/// What one slice of a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slice {
    /// A page done; more to list.
    More(SyncCounts),
    /// The last page done: the sync is complete.
    Done(SyncCounts),
    /// Nothing: the sync is not running, or another slice holds it.
    Idle,
}

/// One slice of the running sync `id`: the listing's next page compared
/// and acted on, and the cursor and counts recorded with it, so that a sync
/// killed anywhere resumes from its last page (that page is compared again:
/// what it did is found done).
pub async fn slice(pipeline: &Pipeline, id: uuid::Uuid) -> Result<Slice> {
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let Some(row) = rows::lock(&tx, id).await? else {
        return Ok(Slice::Idle);
    };
    let scope = Scope {
        tenant: Tenant::new(&row.tenant)?,
        prefix: row.prefix.clone(),
    };
    let run = Run {
        pipeline,
        scope: &scope,
        dry_run: row.dry_run,
        started: row.started,
        correlation_id: format!("sync-{id}"),
    };
    let mut counts = row.counts.clone();
    let after = row.cursor.as_deref();
    let page = pipeline
        .blobs
        .list(&scope.prefix, after, SLICE_OBJECTS)
        .await?;
    let upto = match (page.truncated, page.objects.last()) {
        (true, Some(last)) => Some(last.key.as_str()),
        _ => None,
    };
    run.page(&page.objects, &mut counts).await?;
    run.deletions(after, upto, &page.objects, &mut counts)
        .await?;
    let done = upto.is_none();
    rows::advance(&tx, id, upto.or(after), &counts, done).await?;
    tx.commit().await?;
    Ok(if done {
        Slice::Done(counts)
    } else {
        Slice::More(counts)
    })
}

/// A sync of `scope` run to its end in this process (resuming the one of
/// that scope running, if any); `progress` sees the counts after each page.
pub async fn sync(
    pipeline: &Pipeline,
    scope: &Scope,
    dry_run: bool,
    mut progress: impl FnMut(&SyncCounts),
) -> Result<SyncCounts> {
    let id = start(pipeline, scope, dry_run, None).await?.id();
    loop {
        match slice(pipeline, id).await? {
            Slice::More(counts) => progress(&counts),
            Slice::Done(counts) => {
                progress(&counts);
                return Ok(counts);
            }
            Slice::Idle => {
                return Err(Error::Transient(format!(
                    "sync {id} is being worked elsewhere; see its progress there"
                )));
            }
        }
    }
}

struct Run<'a> {
    pipeline: &'a Pipeline,
    scope: &'a Scope,
    dry_run: bool,
    /// When the sync began, by the database's clock.
    started: SystemTime,
    correlation_id: String,
}

/// What became of one listed object.
enum Outcome {
    New,
    Modified,
    MetadataModified,
    Unchanged,
    Failed,
}

impl Run<'_> {
    /// Compares a page of the listing with the rows of its keys, and reads
    /// what is new or changed.
    async fn page(&self, objects: &[Listed], counts: &mut SyncCounts) -> Result<()> {
        let mut documents = Vec::new();
        let mut sidecars = Vec::new();
        for object in objects {
            match readable(&object.key) {
                Err(why) => *counts.skipped.entry(why).or_default() += 1,
                Ok(()) if object.key.ends_with(SIDECAR_SUFFIX) => sidecars.push(object),
                Ok(()) => documents.push(object),
            }
        }
        counts.documents_scanned += documents.len() as u64;
        counts.metadata_documents_scanned += sidecars.len() as u64;
        let client = self.pipeline.db.get().await?;
        let tenant = &self.scope.tenant;
        let document_versions =
            rows::versions(&client, Objects::Documents, tenant, &keys_of(&documents)).await?;
        let sidecar_versions =
            rows::versions(&client, Objects::Sidecars, tenant, &keys_of(&sidecars)).await?;
        drop(client);
        // Boxed, each with its own copy of what it compares: a stream of
        // futures borrowing from this frame would not be `Send` for every
        // lifetime, and the Lambda runtime needs it so.
        let mut work: Vec<BoxFuture<'_, Result<Outcome>>> = Vec::new();
        for (objects, versions, sidecar) in [
            (documents, &document_versions, false),
            (sidecars, &sidecar_versions, true),
        ] {
            for object in objects {
                let read_at = versions.get(&object.key).cloned();
                work.push(self.compare(object, read_at, sidecar).boxed());
            }
        }
        let outcomes: Vec<Result<Outcome>> = futures::stream::iter(work)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome? {
                Outcome::New => counts.new += 1,
                Outcome::Modified => counts.modified += 1,
                Outcome::MetadataModified => counts.metadata_modified += 1,
                Outcome::Unchanged => counts.unchanged += 1,
                Outcome::Failed => counts.failed += 1,
            }
        }
        Ok(())
    }

    /// `object` against the version it was last read at (`None` inside:
    /// a row without one; none: no row), read again if it changed.
    async fn compare(
        &self,
        object: &Listed,
        read_at: Option<Option<String>>,
        sidecar: bool,
    ) -> Result<Outcome> {
        if read_at.as_ref().and_then(Option::as_deref) == Some(object.version.as_str()) {
            return Ok(Outcome::Unchanged);
        }
        if sidecar {
            self.read_sidecar(object).await
        } else {
            self.ingest(object, read_at.is_some()).await
        }
    }

    /// Ingests a new or changed object as its event would.
    async fn ingest(&self, object: &Listed, known: bool) -> Result<Outcome> {
        let changed = if known {
            Outcome::Modified
        } else {
            Outcome::New
        };
        if self.dry_run {
            return Ok(changed);
        }
        match ingest(self.pipeline, &object.key, &self.correlation_id).await {
            Ok(done) if done.state == JobState::Failed => Ok(Outcome::Failed),
            // A version not known before (a row older than versions) whose
            // content is the same: read once, nothing to do.
            Ok(done) if known && done.change == Change::Unchanged => Ok(Outcome::Unchanged),
            Ok(_) => Ok(changed),
            // The document's own fault is its job's; others stop the sync,
            // which the next one resumes.
            Err(Error::Rejected(reason)) => {
                tracing::warn!(key = object.key, %reason, "sync could not ingest an object");
                Ok(Outcome::Failed)
            }
            Err(other) => Err(other),
        }
    }

    /// Reads a new or changed sidecar as its event would, and keeps the
    /// version it read.
    async fn read_sidecar(&self, object: &Listed) -> Result<Outcome> {
        if self.dry_run {
            return Ok(Outcome::MetadataModified);
        }
        let change = sidecar_changed(self.pipeline, &object.key).await?;
        if let Some(document_key) = sidecar_target(&object.key) {
            sidecars::set_version(
                &self.pipeline.db.get().await?,
                document_key,
                &object.version,
            )
            .await?;
        }
        Ok(match change.sidecar {
            Sidecar::Refused(_) => Outcome::Failed,
            _ => Outcome::MetadataModified,
        })
    }

    /// Removes the documents and sidecars whose objects the listing, in the
    /// stretch `(after, upto]` it covered, did not show.
    async fn deletions(
        &self,
        after: Option<&str>,
        upto: Option<&str>,
        listed: &[Listed],
        counts: &mut SyncCounts,
    ) -> Result<()> {
        let listed: HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        for objects in [Objects::Documents, Objects::Sidecars] {
            let mut from = after.map(str::to_string);
            loop {
                let scope = (self.scope.tenant.as_str(), self.scope.prefix.as_str());
                let client = self.pipeline.db.get().await?;
                let keys = rows::keys_between(
                    &client,
                    objects,
                    scope,
                    (from.as_deref(), upto),
                    self.started,
                )
                .await?;
                drop(client);
                for key in keys.iter().filter(|key| !listed.contains(key.as_str())) {
                    match objects {
                        Objects::Documents => counts.deleted += self.remove(key).await? as u64,
                        Objects::Sidecars => {
                            if !self.dry_run {
                                sidecar_changed(self.pipeline, key).await?;
                            }
                            counts.metadata_modified += 1;
                        }
                    }
                }
                if keys.len() < rows::RANGE_PAGE as usize {
                    break;
                }
                from = keys.last().cloned();
            }
        }
        Ok(())
    }

    /// Removes the document at `key` if its object is gone; whether it did.
    async fn remove(&self, key: &str) -> Result<bool> {
        if self.dry_run {
            return Ok(true);
        }
        Ok(matches!(
            remove(self.pipeline, key).await?,
            Removal::Removed { .. }
        ))
    }
}

fn keys_of<'a>(listed: &[&'a Listed]) -> Vec<&'a str> {
    listed.iter().map(|object| object.key.as_str()).collect()
}

/// Whether a listed key can be read as an upload, or why not.
fn readable(key: &str) -> std::result::Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("key over {MAX_KEY_BYTES} bytes"));
    }
    let document = sidecar_target(key).unwrap_or(key);
    UploadKey::parse(document)
        .map(|_| ())
        .map_err(|reason| match reason {
            docpipe_core::error::Rejection::InvalidKey { detail, .. } => detail,
            other => other.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_cannot_be_an_upload_is_skipped_with_its_reason() {
        assert_eq!(readable("uploads/acme/report.pdf"), Ok(()));
        assert_eq!(readable("uploads/acme/report.pdf.metadata.json"), Ok(()));
        let control = readable("uploads/acme/line\nbreak.txt").unwrap_err();
        assert!(control.contains("control characters"), "{control}");
        let long = readable(&format!("uploads/acme/{}", "x".repeat(1100))).unwrap_err();
        assert!(long.contains("1024 bytes"), "{long}");
        assert!(readable("uploads/acme/a/../b.txt").is_err());
        let scope = Scope::new(Tenant::new("acme").unwrap(), "/reports/").unwrap();
        assert_eq!(scope.prefix, "uploads/acme/reports/");
        assert!(Scope::new(Tenant::new("acme").unwrap(), "../globex/").is_err());
        assert!(Scope::new(Tenant::new("acme").unwrap(), "a\tb").is_err());
    }

    #[test]
    fn a_slice_message_names_its_sync_and_nothing_else_is_one() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(read_slice_message(&slice_message(id)), Some(id));
        for other in [
            r#"{"Records": []}"#,
            r#"{"sync_slice": "x"}"#,
            r#"{"sync_slice": "00000000-0000-0000-0000-000000000000", "more": 1}"#,
            "not json",
        ] {
            assert_eq!(read_slice_message(other), None, "{other}");
        }
    }
}
