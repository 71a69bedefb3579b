//! `migrate`: applies `migrations/` to the stack's database; the deploy step invokes it.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docpipe_lambda::serve_migrate().await
}
