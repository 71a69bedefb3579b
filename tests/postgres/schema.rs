//! Migrations and the startup check of the vector size.

use docpipe_core::ConfigError;
use docpipe_core::db;
use docpipe_tests::{TABLES, TestDb};

#[tokio::test]
async fn migrate_is_idempotent_and_creates_every_table() {
    let test_db = TestDb::migrated(&[]).await;
    let report = db::schema::migrate(&test_db.config(&[]).database)
        .await
        .unwrap();
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    let mut tables: Vec<String> = test_db
        .column("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'upload_pipeline'")
        .await;
    tables.sort();
    let mut expected = TABLES.to_vec();
    expected.sort();
    assert_eq!(tables, expected);
    for (table, rows) in test_db.row_counts().await {
        assert_eq!(rows, 0, "{table}");
    }
    let index: String = test_db
        .client()
        .await
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'upload_pipeline' AND indexname = 'document_chunks_embedding_idx'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        index.contains("USING hnsw (embedding vector_cosine_ops)"),
        "{index}"
    );
}

#[tokio::test]
async fn the_vector_size_is_fixed_at_migration() {
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", "384")]).await;
    db::connect(&test_db.config(&[("EMBEDDING_DIMS", "384")]).database)
        .await
        .expect("same size connects");

    let err = db::connect(&test_db.config(&[]).database)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::DimensionMismatch {
                configured: 1536,
                in_table: 384
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "EMBEDDING_DIMS=1536 but the database's vector columns have 384 dimensions"
        )
    );

    let err = db::schema::migrate(&test_db.config(&[("EMBEDDING_DIMS", "768")]).database)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::DimensionMismatch {
                configured: 768,
                in_table: 384
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_text_search_configuration_is_fixed_at_migration() {
    let test_db = TestDb::migrated(&[("SEARCH_TEXT_CONFIG", "english")]).await;
    let client = test_db.client().await;
    // English stems: "runs" finds "running", as `simple` would not.
    let stemmed = "SELECT to_tsvector(upload_pipeline.text_search_config(), 'running') @@
                          websearch_to_tsquery(upload_pipeline.text_search_config(), 'runs')";
    assert!(
        client
            .query_one(stemmed, &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    );
    let config: String = client
        .query_one("SELECT upload_pipeline.text_search_config()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(config, "english");
    let err = db::schema::migrate(&test_db.config(&[]).database)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the schema was migrated with \"english\"; it is fixed at migration"),
        "{err}"
    );
    for bad in ["English", "simple; DROP TABLE x", "x".repeat(64).as_str()] {
        let vars = [
            ("DATABASE_URL", "postgres://x"),
            ("SEARCH_TEXT_CONFIG", bad),
        ];
        let env = docpipe_core::settings::Env::from_pairs(
            vars.map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let err = env
            .load::<docpipe_core::settings::DatabaseSettings>()
            .unwrap_err();
        assert!(
            err.to_string().contains("SEARCH_TEXT_CONFIG"),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn an_unmigrated_database_is_a_clear_error() {
    let test_db = TestDb::empty().await;
    let err = db::connect(&test_db.config(&[]).database)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run `docpipe migrate`"), "{err}");
}

/// `format_type` of each vector column (the chunks' and the cache's), and
/// the HNSW index's definition.
async fn vector_columns(test_db: &TestDb) -> (Vec<String>, String) {
    let types = test_db
        .column(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attname = 'embedding' AND attrelid IN (
                    'upload_pipeline.document_chunks'::regclass,
                    'upload_pipeline.embedding_cache'::regclass)",
        )
        .await;
    let index = test_db
        .column(
            "SELECT indexdef FROM pg_indexes
              WHERE schemaname = 'upload_pipeline' AND indexname = 'document_chunks_embedding_idx'",
        )
        .await
        .remove(0);
    (types, index)
}

#[tokio::test]
async fn over_2000_dimensions_are_stored_as_halfvec() {
    let vars = [("EMBEDDING_DIMS", "3072")];
    let test_db = TestDb::migrated(&vars).await;
    let (types, index) = vector_columns(&test_db).await;
    // The cache keeps vectors of any size (a model change's too).
    assert_eq!(types, ["halfvec(3072)", "halfvec"]);
    assert!(
        index.contains("USING hnsw (embedding halfvec_cosine_ops)"),
        "{index}"
    );
    db::connect(&test_db.config(&vars).database)
        .await
        .expect("connects");
}

#[tokio::test]
async fn the_storage_is_chosen_and_fixed_at_migration() {
    let halfvec = [("EMBEDDING_DIMS", "384"), ("EMBEDDING_STORAGE", "halfvec")];
    let test_db = TestDb::migrated(&halfvec).await;
    assert_eq!(
        vector_columns(&test_db).await.0,
        ["halfvec(384)", "halfvec"]
    );
    let vector = [("EMBEDDING_DIMS", "384")];
    for err in [
        db::connect(&test_db.config(&vector).database)
            .await
            .unwrap_err(),
        db::schema::migrate(&test_db.config(&vector).database)
            .await
            .unwrap_err(),
    ] {
        assert!(
            err.to_string().starts_with(
                "EMBEDDING_STORAGE=\"vector\" is invalid: the schema stores 384-dimension vectors as halfvec"
            ),
            "{err}"
        );
    }
    // And `vector` takes no more than pgvector's HNSW index does.
    let err = docpipe_core::settings::Env::from_pairs([
        ("DATABASE_URL", "postgres://127.0.0.1:1/unused"),
        ("EMBEDDING_DIMS", "3072"),
        ("EMBEDDING_STORAGE", "vector"),
    ])
    .load::<docpipe_core::settings::DatabaseSettings>()
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be 1..=2000 with EMBEDDING_STORAGE=vector"),
        "{err}"
    );
}
