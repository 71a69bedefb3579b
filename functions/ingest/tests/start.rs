//! `ingest` reads no provider's settings: it starts and handles uploads with
//! a provider configured and no key for it, as its role can read none.

use docpipe_tests::TestDb;
use docpipe_tests::lambda_runtime_api::invoke_once;

#[tokio::test]
async fn ingest_starts_without_any_provider_key() {
    let test_db = TestDb::migrated(&[]).await;
    let answer = invoke_once(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            ("DATABASE_URL", &test_db.url),
            ("EMBEDDING_PROVIDER", "openai"),
            ("PARSER", "llamaparse"),
            ("DOCPIPE_BUCKET", "docpipe-uploads-000000000000-us-east-1"),
            ("PARSE_QUEUE_URL", "http://127.0.0.1:1/queue/parse"),
            ("CHUNK_QUEUE_URL", "http://127.0.0.1:1/queue/chunk"),
            ("EMBED_QUEUE_URL", "http://127.0.0.1:1/queue/embed"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ],
        include_str!("../../../events/ingest-s3-test-event.json"),
    )
    .await
    .json()
    .expect("ingest answers");
    assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
}
