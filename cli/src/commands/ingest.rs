//! `docpipe ingest` and `docpipe migrate`'s index build: files through the
//! whole pipeline in this process.

use anyhow::{Context, bail};
use docpipe_core::JobState;
use docpipe_core::db;
use docpipe_core::db::indexes;
use docpipe_core::domain::keys::{Tenant, sidecar_target};
use docpipe_core::settings::{DatabaseSettings, PipelineSettings};
use docpipe_core::store::status;
use docpipe_ingest::drivers::local::{LocalPipeline, Progress, upload_keys};
use docpipe_ingest::pipeline::ingest::Change;
use docpipe_ingest::pipeline::metadata::Sidecar;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Builds the search index if a bulk load deferred it (this run's, or one
/// that was interrupted).
pub async fn build_deferred_indexes(
    pool: &db::Pool,
    settings: &DatabaseSettings,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    for index in indexes::rebuild_deferred_indexes(&mut client, settings).await? {
        say!(
            "built index {} in {:.1} s",
            index.name,
            index.took.as_secs_f64()
        );
    }
    Ok(())
}

pub async fn ingest(
    config: &PipelineSettings,
    paths: &[PathBuf],
    tenant: &str,
    defer_index: bool,
) -> anyhow::Result<ExitCode> {
    Tenant::new(tenant)?;
    let started = Instant::now();
    let files = upload_keys(tenant, paths).context("reading input paths")?;
    if files.is_empty() {
        bail!("no files found in {paths:?}");
    }
    let pool = db::connect(&config.database).await?;
    let mut local = LocalPipeline::new(config, pool.clone())?;
    // A first load into an empty table: nothing to search meanwhile, and
    // building the graph once is twice as fast as growing it row by row.
    let first_load = !defer_index && indexes::no_chunks_yet(&*pool.get().await?).await?;
    if defer_index || first_load {
        indexes::defer_search_index(&mut *pool.get().await?).await?;
    } else {
        build_deferred_indexes(&pool, &config.database).await?;
    }
    for (key, file) in &files {
        local
            .upload(key, file)
            .await
            .with_context(|| format!("copying {}", file.display()))?;
    }

    let documents = files
        .iter()
        .filter(|(key, _)| sidecar_target(key).is_none());
    let bar = ProgressBar::new(documents.count() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} documents {elapsed} {msg}",
    )?);
    let keys = files.into_iter().map(|(key, _)| key).collect();
    let run = local
        .run(keys, |progress| match progress {
            Progress::Ingested { ingested, .. } if ingested.state.is_terminal() => bar.inc(1),
            Progress::IngestFailed { .. } => bar.inc(1),
            Progress::JobEnded { state, .. } => {
                bar.inc(1);
                if state == JobState::Failed {
                    bar.set_message("(some failed)");
                }
            }
            Progress::Ingested { .. } => {}
        })
        .await;
    bar.finish_and_clear();
    if defer_index || first_load {
        build_deferred_indexes(&pool, &config.database).await?;
    }

    let job_ids: Vec<_> = run.ingested.iter().map(|(_, i)| i.job_id).collect();
    let outcomes = status::outcomes(&pool.get().await?, &job_ids).await?;
    let unchanged: HashSet<_> = run
        .ingested
        .iter()
        .filter(|(_, i)| i.change == Change::Unchanged)
        .map(|(_, i)| i.job_id)
        .collect();
    let (complete, failed): (Vec<_>, Vec<_>) =
        outcomes.iter().partition(|o| o.state == JobState::Complete);
    // New work is what completed in this run, not what was already there.
    let (chunks, tokens) = complete
        .iter()
        .filter(|o| !unchanged.contains(&o.job_id))
        .fold((0i64, 0i64), |(c, t), o| {
            (
                c + i64::from(o.chunk_count.unwrap_or(0)),
                t + o.token_count.unwrap_or(0),
            )
        });
    let new_jobs: Vec<_> = job_ids
        .iter()
        .filter(|id| !unchanged.contains(*id))
        .copied()
        .collect();
    let paid = status::tokens_paid(&pool.get().await?, &new_jobs).await?;
    let seconds = started.elapsed().as_secs_f64();

    say!(
        "{} documents: {} complete, {} failed ({} unchanged since the last run)",
        run.ingested.len() + run.not_ingested.len(),
        complete.len(),
        failed.len() + run.not_ingested.len(),
        unchanged.len()
    );
    say!(
        "new chunks {chunks}, tokens {tokens} ({paid} paid, {} reused from the cache), {seconds:.2} s ({:.0} chunks/s)",
        (tokens - paid).max(0),
        chunks as f64 / seconds.max(1e-9)
    );
    for outcome in &failed {
        let code = outcome
            .error_code
            .as_deref()
            .unwrap_or(outcome.state.as_str());
        say!(
            "  failed {}: {code}: {}",
            outcome.source_key,
            outcome.error_message.as_deref().unwrap_or("not finished")
        );
    }
    for (key, error) in &run.not_ingested {
        say!("  failed {key}: {error}");
    }
    let refused: Vec<_> = run
        .sidecars
        .iter()
        .filter_map(|(key, change)| match &change.sidecar {
            Sidecar::Refused(problem) => Some((key, problem)),
            _ => None,
        })
        .collect();
    if !run.sidecars.is_empty() {
        say!(
            "{} metadata sidecars read, {} refused",
            run.sidecars.len(),
            refused.len()
        );
    }
    for (key, problem) in &refused {
        say!("  refused {key}: {problem}");
    }
    Ok(
        if failed.is_empty() && run.not_ingested.is_empty() && refused.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
