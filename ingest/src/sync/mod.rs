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

mod compare;
mod inventory;
mod reconcile;

use crate::pipeline::Pipeline;
use crate::store::sync as rows;
pub use crate::store::sync::{IngestionJob, Started, StartedBy, SyncCounts, SyncRow};
use compare::{Listing, Run};
use docpipe_core::domain::keys::Tenant;
use docpipe_core::error::{Error, Rejection, Result, Wait};
pub use inventory::{INVENTORY_PREFIX, Manifest};
pub use reconcile::{Reconcile, Reconciled, reconcile};
use std::time::{Duration, SystemTime};

/// Objects a slice lists: one slice's work fits well inside a function's
/// deadline (each new object is read whole once, for its hash).
pub const SLICE_OBJECTS: usize = 250;

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
/// nothing) for whoever asked `by`; or finds the sync of that scope
/// already running.
pub async fn start(
    pipeline: &Pipeline,
    scope: &Scope,
    dry_run: bool,
    by: StartedBy<'_>,
) -> Result<Started> {
    let client = pipeline.db.get().await?;
    let scope = (scope.tenant.as_str(), scope.prefix.as_str());
    rows::create(&client, scope, dry_run, by).await
}

/// Starts a sync of `scope` that lists from the S3 Inventory report whose
/// manifest is at `manifest` (in `bucket`, the pipeline's, under
/// `inventory/`), not from ListObjectsV2. Refused while a sync of the
/// scope runs: its listing is not this one.
pub async fn start_from_inventory(
    pipeline: &Pipeline,
    scope: &Scope,
    dry_run: bool,
    (bucket, manifest): (&str, &str),
) -> Result<Started> {
    let report = Manifest::read(pipeline, manifest).await?;
    if report.source_bucket != bucket {
        return Err(inventory::bad(format!(
            "{manifest} is bucket {}'s report, not {bucket}'s",
            report.source_bucket
        )));
    }
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let pair = (scope.tenant.as_str(), scope.prefix.as_str());
    let started = rows::create(&tx, pair, dry_run, StartedBy::Request).await?;
    let Started::New(id) = started else {
        return Err(Error::Transient(format!(
            "sync {} of {} is running; start this one after it",
            started.id(),
            scope.prefix
        )));
    };
    // Bounded by MAX_FILES, well inside an i32.
    let files = report.files() as i32;
    rows::use_inventory(&tx, id, (manifest, files), report.taken()?).await?;
    tx.commit().await?;
    Ok(started)
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
    /// Nothing added: the tenant's documents in the pipeline are at their
    /// bound, or its spending is stopped; the next slice goes after the wait.
    Waiting(Wait),
    /// Nothing: the sync is not running, or another slice holds it.
    Idle,
    /// The sync ended failed, for this reason (recorded on its row).
    Failed(Rejection),
}

/// One slice of the running sync `id`: the listing's next page compared
/// and acted on, and the cursor and counts recorded with it, so that a sync
/// killed anywhere resumes from its last page (that page is compared again:
/// what it did is found done). A sync listing from an inventory report
/// first stages the report, a file per slice.
pub async fn slice(pipeline: &Pipeline, id: uuid::Uuid) -> Result<Slice> {
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let Some(row) = rows::lock(&tx, id).await? else {
        return Ok(Slice::Idle);
    };
    let worked = match &row.inventory {
        Some(report) => stage_next_file(pipeline, &tx, &row, report).await,
        None => Ok(false),
    };
    let worked = match worked {
        Ok(true) => Ok(Slice::More(row.counts.clone())),
        Ok(false) => next_page(pipeline, &tx, &row).await,
        Err(error) => Err(error),
    };
    let slice = match worked {
        // A listing or page no retry can mend (a key S3 could not have
        // listed, a report that is not the bucket's): the sync ends failed,
        // saying why, with nothing past its cursor deleted, rather than
        // retrying until its message is lost.
        Err(Error::Rejected(reason)) => {
            rows::fail(&tx, id, &reason.to_string()).await?;
            Slice::Failed(reason)
        }
        other => other?,
    };
    tx.commit().await?;
    Ok(slice)
}

/// Stages the next file of the sync's inventory report, if one is left
/// (the manifest is read only then).
async fn stage_next_file(
    pipeline: &Pipeline,
    tx: &deadpool_postgres::Transaction<'_>,
    row: &SyncRow,
    report: &rows::InventoryListing,
) -> Result<bool> {
    if report.files_staged >= report.file_count {
        return Ok(false);
    }
    let manifest = Manifest::read(pipeline, &report.manifest).await?;
    // S3 never rewrites a report; one that changed under the sync would
    // leave the files it no longer names unstaged, their documents read
    // as deleted.
    if i32::try_from(manifest.files()) != Ok(report.file_count) {
        return Err(inventory::bad(format!(
            "{} now lists {} files, {} when the sync began",
            report.manifest,
            manifest.files(),
            report.file_count
        )));
    }
    let next = usize::try_from(report.files_staged).unwrap_or(usize::MAX);
    manifest
        .stage_file(pipeline, tx, (row.id, &row.prefix), next)
        .await?;
    rows::file_staged(tx, row.id).await?;
    Ok(true)
}

/// The listing's next page of the sync, compared and acted on (or a wait,
/// while its tenant's documents fill the pipeline).
async fn next_page(
    pipeline: &Pipeline,
    tx: &deadpool_postgres::Transaction<'_>,
    row: &SyncRow,
) -> Result<Slice> {
    // A backfill goes at the pipeline's pace: other tenants' uploads never
    // queue behind more of it than the bound.
    if !row.dry_run
        && let Some(wait) = rows::backlog(tx, &row.tenant, pipeline.sync_in_flight).await?
    {
        rows::wait(tx, row.id, &wait.reason).await?;
        return Ok(Slice::Waiting(wait));
    }
    let scope = Scope {
        tenant: Tenant::new(&row.tenant)?,
        prefix: row.prefix.clone(),
    };
    let run = Run {
        pipeline,
        scope: &scope,
        listing: match row.inventory {
            Some(_) => Listing::Inventory(row.id),
            None => Listing::Bucket,
        },
        dry_run: row.dry_run,
        started: (row.inventory.as_ref())
            .map_or(row.started, |report| report.taken.min(row.started)),
        correlation_id: format!("sync-{}", row.id),
    };
    let mut counts = row.counts.clone();
    let after = row.cursor.as_deref();
    let upto = run.next_page(after, &mut counts).await?;
    let done = upto.is_none();
    rows::advance(tx, row.id, upto.as_deref().or(after), &counts, done).await?;
    Ok(if done {
        Slice::Done(counts)
    } else {
        Slice::More(counts)
    })
}

/// What a sync run in this process reports as it goes.
pub enum Progress<'a> {
    /// The counts after a page.
    Counts(&'a SyncCounts),
    /// Waiting before the next page, and why.
    Waiting(&'a Wait),
}

/// A sync of `scope` run to its end in this process (resuming the one of
/// that scope running, if any); `progress` sees each page and each wait.
pub async fn sync(
    pipeline: &Pipeline,
    scope: &Scope,
    dry_run: bool,
    progress: impl FnMut(Progress<'_>),
) -> Result<SyncCounts> {
    let id = start(pipeline, scope, dry_run, StartedBy::Request)
        .await?
        .id();
    work_to_end(pipeline, id, progress).await
}

/// The running sync `id` worked to its end in this process; `progress`
/// sees each page and each wait.
pub async fn work_to_end(
    pipeline: &Pipeline,
    id: uuid::Uuid,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<SyncCounts> {
    loop {
        match slice(pipeline, id).await? {
            Slice::More(counts) => progress(Progress::Counts(&counts)),
            Slice::Done(counts) => {
                progress(Progress::Counts(&counts));
                return Ok(counts);
            }
            Slice::Waiting(wait) => {
                progress(Progress::Waiting(&wait));
                tokio::time::sleep(wait_for(&wait).min(rows::BACKLOG_RECHECK)).await;
            }
            Slice::Failed(reason) => return Err(reason.into()),
            Slice::Idle => {
                return Err(Error::Transient(format!(
                    "sync {id} is being worked elsewhere; see its progress there"
                )));
            }
        }
    }
}

/// How long until `wait` is over (at least a second, at most the 15
/// minutes an SQS message can be delayed).
pub fn wait_for(wait: &Wait) -> Duration {
    wait.until
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .clamp(Duration::from_secs(1), Duration::from_secs(900))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_stays_in_its_tenant_s_folder() {
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
