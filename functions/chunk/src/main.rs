//! `chunk`: runs the chunk stage for each message on its queue.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docpipe_core::tokens::warm_up_tokenizer();
    docpipe_lambda::serve_stage::<docpipe_ingest::pipeline::ChunkStage>().await
}
