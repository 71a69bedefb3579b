//! `docpipe sync s3://bucket/prefix`: the deployed pipeline's bucket under a
//! tenant's folder against its documents, as `docpipe_ingest::sync` does
//! it, with a progress line and a summary; `--inventory` lists from an S3
//! Inventory report instead of ListObjectsV2.

use anyhow::{Context, bail};
use docpipe_core::domain::keys::{Tenant, UPLOAD_PREFIX};
use docpipe_core::settings::Parts;
use docpipe_ingest::drivers::Deployment;
use docpipe_ingest::sync::{
    Progress, Scope, StartedBy, SyncCounts, start, start_from_inventory, work_to_end,
};
use indicatif::{ProgressBar, ProgressStyle};

/// The scope `url` (`s3://bucket/uploads/<tenant>/…`, or `s3://bucket/`
/// with `tenant`) names in `bucket`; a prefix outside the tenant's folder,
/// or another bucket, is refused.
pub fn scope(url: &str, tenant: Option<&str>, bucket: &str) -> anyhow::Result<Scope> {
    let Some((named, prefix)) = url
        .strip_prefix("s3://")
        .map(|rest| rest.split_once('/').unwrap_or((rest, "")))
    else {
        bail!("{url}: give s3://bucket/prefix");
    };
    if named != bucket {
        bail!("{url}: this deployment's bucket is {bucket}");
    }
    let in_uploads = prefix.strip_prefix(UPLOAD_PREFIX);
    let (named_tenant, path) = match in_uploads.map(|rest| rest.split_once('/')) {
        Some(Some((named, path))) => (Some(named), path),
        Some(None) | None if prefix.is_empty() || prefix == UPLOAD_PREFIX => (None, ""),
        _ => bail!("{url}: the prefix must be a tenant's folder, uploads/<tenant>/…"),
    };
    let tenant = match (named_tenant, tenant) {
        (Some(named), Some(given)) if named != given => {
            bail!("{url} is tenant {named}'s folder, not {given}'s")
        }
        (Some(named), _) => named,
        (None, Some(given)) => given,
        (None, None) => {
            bail!("{url}: name the tenant (--tenant, or s3://{bucket}/uploads/<tenant>/)")
        }
    };
    let tenant = Tenant::new(tenant).map_err(anyhow::Error::msg)?;
    Scope::new(tenant, path).map_err(|e| anyhow::anyhow!("{url}: {e}"))
}

/// What `docpipe sync` is asked.
pub struct Request<'a> {
    pub url: &'a str,
    pub tenant: Option<&'a str>,
    pub dry_run: bool,
    /// s3://bucket/inventory/…/manifest.json: the report to list from.
    pub inventory: Option<&'a str>,
    pub json: bool,
}

pub async fn run(request: Request<'_>) -> anyhow::Result<()> {
    let deployment = Deployment::from_env(Parts::NONE)
        .await
        .context("the deployed pipeline's settings (source .local/aws.env)")?;
    let bucket = &deployment.aws.bucket;
    let scope = scope(request.url, request.tenant, bucket)?;
    let pipeline = &deployment.pipeline;
    let started = match request.inventory {
        None => start(pipeline, &scope, request.dry_run, StartedBy::Request).await?,
        Some(manifest) => {
            let key = manifest_key(manifest, bucket)?;
            start_from_inventory(pipeline, &scope, request.dry_run, (bucket, key)).await?
        }
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    let counts = work_to_end(pipeline, started.id(), |progress| {
        bar.set_message(match progress {
            Progress::Counts(counts) => format!(
                "{} documents, {} sidecars scanned",
                counts.documents_scanned, counts.metadata_documents_scanned
            ),
            Progress::Waiting(wait) => format!("waiting: {wait}"),
        });
        bar.tick();
    })
    .await?;
    bar.finish_and_clear();
    if request.json {
        say!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        print_summary(&scope, &counts, request.dry_run);
    }
    Ok(())
}

/// The key of the manifest `url` names in `bucket` (reports are read from
/// the deployment's own bucket).
fn manifest_key<'a>(url: &'a str, bucket: &str) -> anyhow::Result<&'a str> {
    match url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((named, key)) if named == bucket => Ok(key),
        Some((named, _)) => bail!(
            "{url}: reports are read from this deployment's bucket {bucket}, not {named} \
             (deliver the inventory to s3://{bucket}/inventory/)"
        ),
        None => bail!("{url}: give s3://{bucket}/inventory/…/manifest.json"),
    }
}

fn print_summary(scope: &Scope, counts: &SyncCounts, dry_run: bool) {
    let verb = if dry_run { "would sync" } else { "synced" };
    say!(
        "{verb} {}: {} documents and {} sidecars scanned",
        scope.prefix,
        counts.documents_scanned,
        counts.metadata_documents_scanned
    );
    say!(
        "new {}, modified {}, metadata modified {}, deleted {}, failed {}, unchanged {}",
        counts.new,
        counts.modified,
        counts.metadata_modified,
        counts.deleted,
        counts.failed,
        counts.unchanged
    );
    for (code, count) in &counts.failures {
        say!("failed {count}: {code}");
    }
    for (why, count) in &counts.skipped {
        say!("skipped {count}: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_a_tenant_s_folder_in_this_bucket_only() {
        let scoped = |url: &str, tenant| scope(url, tenant, "b").map(|s| s.prefix);
        assert_eq!(
            scoped("s3://b/uploads/acme/reports/", None).unwrap(),
            "uploads/acme/reports/"
        );
        assert_eq!(scoped("s3://b/", Some("acme")).unwrap(), "uploads/acme/");
        assert_eq!(
            scoped("s3://b/uploads/", Some("acme")).unwrap(),
            "uploads/acme/"
        );
        assert_eq!(
            scoped("s3://b/uploads/acme/", Some("acme")).unwrap(),
            "uploads/acme/"
        );
        for (url, tenant, says) in [
            ("s3://b/uploads/globex/", Some("acme"), "not acme's"),
            ("s3://other/uploads/acme/", None, "bucket is b"),
            ("s3://b/parsed/acme/", Some("acme"), "tenant's folder"),
            ("s3://b/", None, "name the tenant"),
            ("b/uploads/acme/", None, "s3://bucket/prefix"),
            ("s3://b/uploads/bad tenant/", None, "tenant must be"),
        ] {
            let error = scoped(url, tenant).unwrap_err().to_string();
            assert!(error.contains(says), "{url}: {error}");
        }
    }
}
