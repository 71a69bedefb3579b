//! `parse`: runs the parse stage for each message on its queue.

fn main() -> Result<(), lambda_runtime::Error> {
    // Documents are parsed in children of this executable: one parses here and exits.
    docpipe_ingest::parsing::sandbox::serve_if_child();
    serve()
}

#[tokio::main]
async fn serve() -> Result<(), lambda_runtime::Error> {
    docpipe_lambda::serve_stage::<docpipe_ingest::pipeline::ParseStage>().await
}
