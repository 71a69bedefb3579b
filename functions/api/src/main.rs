//! `api`: the HTTP API behind API Gateway (HTTP API, payload v2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // Search counts the query's tokens.
    docpipe_shared::chunking::warm_up_tokenizer();
    docpipe_api::serve_lambda().await
}
