//! `api`: the HTTP API behind API Gateway (HTTP API, payload v2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    docpipe_api::serve_lambda().await
}
