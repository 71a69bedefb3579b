//! `docpipe status` from the database: jobs, failures, spend, a model change.

use anyhow::Context;
use docpipe_core::db;
use docpipe_core::settings::{Env, Parts, PipelineSettings};
use docpipe_core::store::status;
use docpipe_ingest::store::model_change;

/// A model change's progress, as `status` shows it.
#[derive(serde::Serialize)]
pub struct ModelChangeStatus {
    current: String,
    next: String,
    tenants: Vec<model_change::TenantProgress>,
}

pub async fn model_change(env: &Env, pool: &db::Pool) -> anyhow::Result<ModelChangeStatus> {
    let settings = PipelineSettings::load(env, Parts::EMBED)?;
    let change = model_change::ModelChange::configured(&settings).context("no model change")?;
    Ok(ModelChangeStatus {
        current: change.current.to_string(),
        next: change.next.to_string(),
        tenants: model_change::progress(&pool.get().await?, &change).await?,
    })
}

pub fn print_overview(
    overview: &status::Overview,
    model_change: Option<&ModelChangeStatus>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut status = serde_json::to_value(overview)?;
        status["model_change"] = serde_json::to_value(model_change)?;
        say!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    say!(
        "documents {}, searchable chunks {}",
        overview.documents,
        overview.searchable_chunks
    );
    say!("jobs per state:");
    for (state, count) in &overview.jobs_by_state {
        say!("  {state:<11} {count}");
    }
    if !overview.recent_failures.is_empty() {
        say!("recent failures:");
        for failed in &overview.recent_failures {
            let job = &failed.outcome;
            // Operators read the reason in full: a provider's words too.
            let reason = failed
                .error_detail
                .as_deref()
                .or(job.error_message.as_deref())
                .unwrap_or("");
            say!(
                "  {}  {}  {}: {reason}",
                job.state_changed_at,
                job.source_key,
                job.error_code.as_deref().unwrap_or("?")
            );
        }
    }
    say!("{}", overview.spend_estimates);
    for waiting in &overview.waiting {
        say!(
            "waiting: {} jobs until {}: {}",
            waiting.jobs,
            waiting.until,
            waiting.reason
        );
    }
    for breaker in &overview.breakers {
        say!(
            "{} circuit breaker: {} (as of {})",
            breaker.service,
            breaker.state,
            breaker.observed_at
        );
    }
    if let Some(change) = model_change {
        let switched = change
            .tenants
            .iter()
            .filter(|t| t.progress.switched)
            .count();
        say!(
            "model change {} -> {}: {switched} of {} tenants switched",
            change.current,
            change.next,
            change.tenants.len()
        );
        for tenant in &change.tenants {
            let state = if tenant.progress.switched {
                "switched"
            } else {
                "building"
            };
            say!(
                "  {:<20} {state:<9} {}/{} chunks with the next model's vectors",
                tenant.tenant,
                tenant.progress.ready,
                tenant.progress.chunks
            );
        }
    }
    Ok(())
}
