//! `migrate` reads the database's settings only: it migrates with a provider
//! configured and no key for it, as its role can read none.

use docpipe_tests::TestDb;
use docpipe_tests::lambda_runtime_api::invoke_once;

#[tokio::test]
async fn migrate_starts_without_any_provider_key() {
    let test_db = TestDb::empty().await;
    let answer = invoke_once(
        env!("CARGO_BIN_EXE_migrate"),
        &[
            ("DATABASE_URL", &test_db.url),
            ("EMBEDDING_PROVIDER", "openai"),
            ("PARSER", "llamaparse"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ],
        "{}",
    )
    .await
    .json()
    .expect("migrate answers");
    let applied = answer["applied"]
        .as_array()
        .expect("the migrations applied");
    assert!(!applied.is_empty(), "{answer}");
    assert_eq!(test_db.count("upload_jobs").await, 0, "the schema is there");
}
