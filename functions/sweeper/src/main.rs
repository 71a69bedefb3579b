//! `sweeper`: on a schedule, resumes or fails jobs stuck past their stage timeout.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docpipe_lambda::serve_schedule().await
}
