//! `ingest`: S3 upload and delete notifications, delivered through SQS.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docpipe_lambda::serve_sqs(docpipe_lambda::SqsFunction::Uploads).await
}
