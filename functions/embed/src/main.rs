//! `embed`: runs the embed stage for each message on its queue.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docpipe_lambda::serve_stage::<docpipe_ingest::pipeline::EmbedStage>().await
}
