//! `ingest`: S3 upload and delete notifications, delivered through SQS.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docpipe_lambda::serve_uploads().await
}
