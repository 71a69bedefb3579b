//! The whole pipeline in-process over real Postgres, with the mock embedder
//! and with the OpenAI client against mock-openai over real HTTP.

use docpipe_core::JobState;
use docpipe_core::db;
use docpipe_core::db::indexes;
use docpipe_core::settings::PipelineSettings;
use docpipe_core::store::status;
use docpipe_ingest::pipeline::ingest::Change;
use docpipe_tests::{
    ScratchDir, TestDb, ingest_locally, samples_dir, search_as, spawn_mock_openai,
};

async fn top_hit(config: &PipelineSettings, tenant: &str, query: &str) -> Option<String> {
    let hits = search_as(config, tenant, query, 3).await;
    hits.first().map(|hit| hit.source_key.clone())
}

#[tokio::test]
async fn a_folder_becomes_searchable_and_a_rerun_adds_nothing() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let (run, outcomes) = ingest_locally(&config, "acme", &[samples_dir()]).await;
    assert_eq!(run.ingested.len(), 4);
    assert!(run.not_ingested.is_empty());
    for (key, outcome) in &outcomes {
        assert_eq!(
            outcome.state,
            JobState::Complete,
            "{key}: {:?}",
            outcome.error_message
        );
        assert!(outcome.chunk_count.unwrap() >= 1);
    }

    for (query, expected) in [
        (
            "starboard side of the channel",
            "uploads/acme/harbour-rules.html",
        ),
        ("spring tides and neap tides", "uploads/acme/tide-tables.md"),
        (
            "Fresnel lens bends the light",
            "uploads/acme/lighthouse-handbook.pdf",
        ),
        (
            "one long blast every thirty seconds",
            "uploads/acme/fog-signals.txt",
        ),
    ] {
        assert_eq!(
            top_hit(&config, "acme", query).await.as_deref(),
            Some(expected),
            "{query}"
        );
    }
    assert_eq!(
        top_hit(&config, "someone-else", "starboard side").await,
        None,
        "search is tenant-scoped"
    );

    let before = test_db.row_counts().await;
    let (rerun, _) = ingest_locally(&config, "acme", &[samples_dir()]).await;
    assert!(
        rerun
            .ingested
            .iter()
            .all(|(_, i)| i.change == Change::Unchanged)
    );
    assert_eq!(test_db.row_counts().await, before);
}

async fn search_index_exists(client: &tokio_postgres::Client) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'document_chunks_embedding_idx'",
            &[],
        )
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_bulk_load_defers_the_search_index_and_an_interrupted_one_loses_nothing() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let client = test_db.client().await;
    let pool = db::connect(&config.database).await.unwrap();
    let mut pooled = pool.get().await.unwrap();

    assert!(indexes::defer_search_index(&mut pooled).await.unwrap());
    // A second (concurrent) bulk load finds it deferred already.
    assert!(!indexes::defer_search_index(&mut pooled).await.unwrap());
    assert!(!search_index_exists(&client).await);
    let (_, outcomes) = ingest_locally(&config, "acme", &[samples_dir()]).await;
    assert!(outcomes.values().all(|o| o.state == JobState::Complete));
    // Without the index, search scans: the same answer.
    let query = "spring tides and neap tides";
    let expected = Some("uploads/acme/tide-tables.md".to_string());
    assert_eq!(top_hit(&config, "acme", query).await, expected);

    // The load "died" here; its definition was kept, so the next rebuild restores it.
    let rebuilt = indexes::rebuild_deferred_indexes(&mut pooled, &config.database)
        .await
        .unwrap();
    assert_eq!(rebuilt.len(), 1, "{rebuilt:?}");
    assert_eq!(rebuilt[0].name, "document_chunks_embedding_idx");
    assert!(search_index_exists(&client).await);
    assert!(
        indexes::rebuild_deferred_indexes(&mut pooled, &config.database)
            .await
            .unwrap()
            .is_empty()
    );
    let definition: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'document_chunks_embedding_idx'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        definition.contains("USING hnsw (embedding vector_cosine_ops)"),
        "{definition}"
    );
    assert_eq!(top_hit(&config, "acme", query).await, expected);
}

#[tokio::test]
async fn a_deferred_index_is_built_with_the_memory_and_workers_set_for_it() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[
        ("DB_INDEX_BUILD_MEMORY", "96MB"),
        ("DB_INDEX_BUILD_WORKERS", "1"),
    ]);
    let client = test_db.client().await;
    // A stand-in definition that keeps the settings its build ran with.
    client
        .execute(
            "INSERT INTO upload_pipeline.deferred_indexes (name, definition) VALUES ('probe',
               'CREATE TABLE upload_pipeline.build_settings AS
                  SELECT current_setting(''maintenance_work_mem'') AS memory,
                         current_setting(''max_parallel_maintenance_workers'') AS workers')",
            &[],
        )
        .await
        .unwrap();
    let pool = db::connect(&config.database).await.unwrap();
    let mut pooled = pool.get().await.unwrap();
    let rebuilt = indexes::rebuild_deferred_indexes(&mut pooled, &config.database)
        .await
        .unwrap();
    assert_eq!(rebuilt.len(), 1);
    let row = client
        .query_one(
            "SELECT memory, workers FROM upload_pipeline.build_settings",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("96MB".into(), "1".into())
    );
    // For the build only: the pooled session is left as the server set it.
    let after: String = pooled
        .query_one("SELECT current_setting('maintenance_work_mem')", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(after, "96MB");
}

/// The samples ingested through mock-openai over HTTP as `model` of `dims`:
/// every job complete, and a search by a phrase finding its document.
async fn samples_through_mock_openai(model: &str, dims: usize) -> (TestDb, PipelineSettings) {
    let base_url = spawn_mock_openai(dims, Some("sk-test-key")).await;
    let dims = dims.to_string();
    let vars = [
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("OPENAI_API_KEY", "sk-test-key"),
        ("EMBEDDING_MODEL", model),
        ("EMBEDDING_DIMS", dims.as_str()),
    ];
    let test_db = TestDb::migrated(&vars).await;
    let config = test_db.config(&vars);
    let (_, outcomes) = ingest_locally(&config, "acme", &[samples_dir()]).await;
    assert!(
        outcomes.values().all(|o| o.state == JobState::Complete),
        "{outcomes:#?}"
    );
    assert_eq!(
        top_hit(&config, "acme", "starboard side of the channel")
            .await
            .as_deref(),
        Some("uploads/acme/harbour-rules.html")
    );
    (test_db, config)
}

/// text-embedding-3-large's 3 072 dimensions, over pgvector's 2 000 for
/// `vector`, end to end through mock-openai: stored as `halfvec`, searched
/// through its HNSW index.
#[tokio::test]
async fn a_3072_dimension_model_ingests_and_searches_as_halfvec() {
    let (test_db, _) = samples_through_mock_openai("text-embedding-3-large", 3072).await;
    let dims: Vec<i32> = test_db
        .column("SELECT DISTINCT vector_dims(embedding) FROM upload_pipeline.document_chunks")
        .await;
    assert_eq!(dims, [3072]);
    // A query vector (a `vector`, as search sends it) is ranked through the
    // halfvec index.
    let client = test_db.client().await;
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT chunk_id FROM upload_pipeline.document_chunks
              ORDER BY embedding <=> $1::vector LIMIT 3",
            &[&pgvector::Vector::from(vec![0.5f32; 3072])],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|line| line.contains("document_chunks_embedding_idx")),
        "{plan:#?}"
    );
}

#[tokio::test]
async fn the_openai_client_over_http_gives_the_same_results() {
    let (test_db, _) = samples_through_mock_openai("text-embedding-3-small", 1536).await;
    // The provider's billed tokens (tiktoken in the mock) are what the ledger
    // holds: the chunks' for the jobs, and the search's query without a job.
    let client = test_db.client().await;
    let searched: i64 = client
        .query_one(
            "SELECT count(*) FROM upload_pipeline.cost_ledger
              WHERE service = 'openai' AND job_id IS NULL AND tenant = 'acme' AND units > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(searched, 1, "the search's query is billed");
    let row = client
        .query_one(
            "SELECT (SELECT sum(units)::bigint FROM upload_pipeline.cost_ledger
                      WHERE service = 'openai' AND job_id IS NOT NULL),
                    (SELECT sum(token_count)::bigint FROM upload_pipeline.document_chunks),
                    (SELECT count(DISTINCT model) FROM upload_pipeline.document_chunks),
                    (SELECT min(model) FROM upload_pipeline.document_chunks)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(1));
    assert_eq!(
        (row.get::<_, i64>(2), row.get::<_, String>(3).as_str()),
        (1, "text-embedding-3-small")
    );
}

#[tokio::test]
async fn bad_files_fail_with_specific_reasons_and_good_ones_still_complete() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[("MAX_FILE_BYTES", "2000")]);
    let dir = ScratchDir::new();
    dir.write("good.txt", "A perfectly ordinary document about harbours.");
    dir.write("empty.txt", "");
    dir.write("report.rtf", "{\\rtf1 not really}");
    dir.write("latin1.txt", b"caf\xe9 cr\xe8me br\xfbl\xe9e");
    dir.write("binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00");
    dir.write("huge.txt", "x ".repeat(1500));
    dir.write(
        "scripts.html",
        "<html><script>var a = 1;</script><style>p{}</style></html>",
    );
    dir.write("broken.pdf", "%PDF-1.7\n1 0 obj << /Type /Catalog");
    dir.write(".hidden.txt", "skipped: hidden files are not ingested");

    let (run, outcomes) = ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    assert_eq!(run.ingested.len(), 8);
    let code = |name: &str| {
        let outcome = &outcomes[&format!("uploads/acme/{name}")];
        (
            outcome.state.as_str(),
            outcome.error_code.as_deref().unwrap_or(""),
        )
    };
    assert_eq!(code("good.txt"), ("complete", ""));
    assert_eq!(code("empty.txt"), ("failed", "empty_file"));
    assert_eq!(code("report.rtf"), ("failed", "unsupported_type"));
    assert_eq!(code("latin1.txt"), ("failed", "not_utf8"));
    assert_eq!(code("binary.txt"), ("failed", "binary_content"));
    assert_eq!(code("huge.txt"), ("failed", "too_large"));
    assert_eq!(code("scripts.html"), ("failed", "no_text"));
    assert_eq!(code("broken.pdf"), ("failed", "unreadable_pdf"));
    let huge = &outcomes["uploads/acme/huge.txt"];
    assert_eq!(
        huge.error_message.as_deref(),
        Some("file is 3000 bytes, over the limit of 2000 bytes (MAX_FILE_BYTES)")
    );

    // Only the good document has chunks.
    let keys: Vec<String> = test_db
        .column("SELECT DISTINCT source_key FROM upload_pipeline.document_chunks")
        .await;
    assert_eq!(keys, ["uploads/acme/good.txt"]);
}

/// Ingests one sample through the OpenAI client against a mock-openai that
/// answers with `mock_dims` and accepts only `mock_key` (any key if `None`).
async fn ingest_via_mock_openai(
    mock_dims: usize,
    mock_key: Option<&str>,
    vars: &[(&str, &str)],
) -> status::JobOutcome {
    let base_url = spawn_mock_openai(mock_dims, mock_key).await;
    let mut vars = vars.to_vec();
    vars.extend([
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", base_url.as_str()),
    ]);
    let test_db = TestDb::migrated(&vars).await;
    let (_, mut outcomes) = ingest_locally(
        &test_db.config(&vars),
        "acme",
        &[samples_dir().join("fog-signals.txt")],
    )
    .await;
    outcomes
        .remove("uploads/acme/fog-signals.txt")
        .expect("an outcome")
}

#[tokio::test]
async fn a_provider_that_refuses_the_key_fails_the_job_with_its_reason() {
    let outcome =
        ingest_via_mock_openai(1536, Some("sk-right"), &[("OPENAI_API_KEY", "sk-wrong")]).await;
    assert_eq!(outcome.error_code.as_deref(), Some("embedding_rejected"));
    // The provider's words (HTTP 401 …) are the operators'
    // (tests/postgres/external.rs, the echoing provider).
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("the embedding provider refused the request; the operators have its answer")
    );
}

/// Reprocessing: a failed document uploaded again runs again; a completed
/// one uploaded again is left alone.
#[tokio::test]
async fn uploading_a_failed_document_again_retries_it() {
    let base_url = spawn_mock_openai(1536, Some("sk-right")).await;
    let vars = |key| {
        [
            ("EMBEDDING_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", base_url.as_str()),
            ("OPENAI_API_KEY", key),
        ]
    };
    let test_db = TestDb::migrated(&vars("sk-wrong")).await;
    let file = [samples_dir().join("fog-signals.txt")];
    let key = "uploads/acme/fog-signals.txt";
    let (_, outcomes) = ingest_locally(&test_db.config(&vars("sk-wrong")), "acme", &file).await;
    assert_eq!(outcomes[key].state, JobState::Failed);

    let (run, outcomes) = ingest_locally(&test_db.config(&vars("sk-right")), "acme", &file).await;
    assert_eq!(run.ingested[0].1.change, Change::Requeued);
    assert_eq!(
        outcomes[key].state,
        JobState::Complete,
        "{:?}",
        outcomes[key]
    );
    assert_eq!(outcomes[key].error_code, None);

    let (run, _) = ingest_locally(&test_db.config(&vars("sk-right")), "acme", &file).await;
    assert_eq!(run.ingested[0].1.change, Change::Unchanged);
    assert_eq!(test_db.count("upload_jobs").await, 1, "one job throughout");
}

#[tokio::test]
async fn vectors_of_the_wrong_size_fail_the_job() {
    // A model that ignores `dimensions` and answers with 8.
    let vars = [
        ("OPENAI_API_KEY", "sk-any"),
        ("EMBEDDING_MODEL", "some-local-model"),
    ];
    let outcome = ingest_via_mock_openai(8, None, &vars).await;
    assert_eq!(outcome.error_code.as_deref(), Some("embedding_invalid"));
    assert!(
        outcome
            .error_message
            .as_deref()
            .unwrap()
            .contains("vector of 8 dimensions, expected 1536")
    );
}
