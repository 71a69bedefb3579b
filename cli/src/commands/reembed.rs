//! `docpipe reembed`: a model change moved on, as the sweeper does.

use anyhow::bail;
use docpipe_core::db;
use docpipe_core::settings::PipelineSettings;
use docpipe_ingest::drivers::local::LocalPipeline;
use docpipe_ingest::pipeline::reembed;
use std::process::ExitCode;

/// Moves the model change on until every tenant is switched, or a round
/// embeds nothing (the next model's provider is down, or spending stopped).
pub async fn reembed(settings: &PipelineSettings, chunks: u32) -> anyhow::Result<ExitCode> {
    let local = LocalPipeline::new(settings, db::connect(&settings.database).await?)?;
    let pipeline = local.pipeline();
    if reembed::model_change(pipeline)?.is_none() {
        bail!("no model change is configured (NEXT_EMBEDDING_MODEL …)");
    }
    loop {
        let report = reembed::advance_model_change(pipeline, chunks).await?;
        for (tenant, moved) in &report.switched {
            say!("{tenant}: switched ({moved} chunks)");
        }
        let progress = reembed::model_change_progress(pipeline).await?;
        let waiting: i64 = progress
            .iter()
            .map(|t| t.progress.chunks - t.progress.ready)
            .sum();
        if progress.iter().all(|t| t.progress.switched) {
            say!("every tenant searches the next model");
            return Ok(ExitCode::SUCCESS);
        }
        if report.embedded == 0 {
            say!("{waiting} chunks still lack the next model's vectors; try again later");
            return Ok(ExitCode::FAILURE);
        }
        say!("embedded {}; {waiting} to go", report.embedded);
    }
}
