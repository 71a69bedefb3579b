//! One page of a sync: the listed objects compared with their rows and
//! acted on (read, re-read, sidecar applied), and the rows in the stretch
//! the page covered whose object is gone, removed.

use super::{SLICE_OBJECTS, Scope};
use crate::pipeline::Pipeline;
use crate::pipeline::ingest::{Change, Removal, ingest, remove, send_to_parse};
use crate::pipeline::metadata::{Sidecar, sidecar_changed};
use crate::store::sync::{self as rows, Objects, Read, SyncCounts};
use docpipe_aws::blob::Listed;
use docpipe_core::domain::keys::{SIDECAR_SUFFIX, UploadKey, sidecar_target};
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Error, Result};
use docpipe_core::store::sidecars;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::HashSet;
use std::time::SystemTime;

/// Objects of one page ingested (or re-read) at once.
const CONCURRENCY: usize = 8;
/// Why an empty object without a row is not read.
const EMPTY: &str = "empty object (0 bytes): nothing to index";
/// S3's longest key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Where a sync's listing comes from.
pub(super) enum Listing {
    /// ListObjectsV2.
    Bucket,
    /// The sync's staged inventory report.
    Inventory(uuid::Uuid),
}

pub(super) struct Run<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) scope: &'a Scope,
    pub(super) listing: Listing,
    pub(super) dry_run: bool,
    /// When the sync's listing was taken, by the database's clock (or the
    /// inventory report's).
    pub(super) started: SystemTime,
    pub(super) correlation_id: String,
}

/// What became of one listed object.
enum Outcome {
    New,
    Modified,
    MetadataModified,
    Unchanged,
    /// Failed, for the reason its code names.
    Failed(&'static str),
}

impl Run<'_> {
    /// The listing's page after `after` compared and acted on, and the rows
    /// in the stretch it covered whose object is gone removed; the page's
    /// last key, if the listing goes on past it.
    pub(super) async fn next_page(
        &self,
        after: Option<&str>,
        counts: &mut SyncCounts,
    ) -> Result<Option<String>> {
        let page = match self.listing {
            Listing::Bucket => {
                let blobs = &self.pipeline.blobs;
                blobs.list(&self.scope.prefix, after, SLICE_OBJECTS).await?
            }
            Listing::Inventory(id) => {
                let client = self.pipeline.db.get().await?;
                rows::inventory_page(&client, id, after, SLICE_OBJECTS).await?
            }
        };
        let upto = match (page.truncated, page.objects.last()) {
            (true, Some(last)) => Some(last.key.as_str()),
            _ => None,
        };
        self.page(&page.objects, counts).await?;
        self.deletions(after, upto, &page.objects, counts).await?;
        Ok(upto.map(str::to_string))
    }

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
                let read = versions.get(&object.key).cloned();
                // Empty objects (folder markers, placeholders) make no rows:
                // a million of them cost a listing, not a million failed
                // jobs. One that empties a document is read, and fails it.
                if read.is_none() && object.size == 0 {
                    *counts.skipped.entry(EMPTY.into()).or_default() += 1;
                    continue;
                }
                work.push(self.compare(object, read, sidecar).boxed());
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
                Outcome::Failed(code) => {
                    counts.failed += 1;
                    *counts.failures.entry(code.into()).or_default() += 1;
                }
            }
        }
        Ok(())
    }

    /// `object` against what its row says (none: no row), read again if it
    /// changed.
    async fn compare(&self, object: &Listed, read: Option<Read>, sidecar: bool) -> Result<Outcome> {
        let Some(read) = read else {
            return self.read_new(object, sidecar, false).await;
        };
        if read.version.as_deref() != Some(object.version.as_str()) {
            return self.read_new(object, sidecar, true).await;
        }
        // A worker killed between an ingest's commit and its message left
        // the job queued with nothing to move it: the page, compared again,
        // sends it again (a stage takes a message twice harmlessly).
        if let Some(job) = read.queued_job
            && !self.dry_run
        {
            send_to_parse(self.pipeline, job, &self.correlation_id).await?;
        }
        Ok(Outcome::Unchanged)
    }

    async fn read_new(&self, object: &Listed, sidecar: bool, known: bool) -> Result<Outcome> {
        if sidecar {
            self.read_sidecar(object).await
        } else {
            self.ingest(object, known).await
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
            Ok(done) if done.state == JobState::Failed => {
                Ok(Outcome::Failed(done.failure.unwrap_or("failed")))
            }
            // A version not known before (a row older than versions) whose
            // content is the same: read once, nothing to do.
            Ok(done) if known && done.change == Change::Unchanged => Ok(Outcome::Unchanged),
            Ok(_) => Ok(changed),
            // The document's own fault is its job's; others stop the sync,
            // which the next one resumes.
            Err(Error::Rejected(reason)) => {
                tracing::warn!(key = object.key, %reason, "sync could not ingest an object");
                Ok(Outcome::Failed(reason.code()))
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
            Sidecar::Refused(_) => Outcome::Failed("sidecar_refused"),
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
    }
}
