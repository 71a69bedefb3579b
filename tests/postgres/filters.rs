//! Metadata filters over real Postgres: documents get attributes from their
//! sidecars, then every operator of the grammar, nested, on attributes and
//! on the keys docpipe sets, picks exactly the documents it should, within
//! the caller's tenant only, in every search mode.

use docpipe_core::JobState;
use docpipe_core::db::indexes;
use docpipe_core::settings::PipelineSettings;
use docpipe_search::SearchMode;
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, search_filtered, search_in_mode};
use serde_json::{Value, json};

/// acme's three documents (two with sidecars) and globex's one, ingested.
async fn documents() -> (TestDb, PipelineSettings) {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let acme = ScratchDir::new();
    acme.write(
        "contract.md",
        "# Contract\n\nThe harbour lease runs for ten years.\n",
    );
    acme.write(
        "contract.md.metadata.json",
        json!({"metadataAttributes": {"team": "legal", "year": 2024, "tags": ["nda", "eu"],
                                      "draft": false, "region": "eu-west-1"}})
        .to_string(),
    );
    acme.write(
        "memo.md",
        "# Memo\n\nThe harbour budget for new buoys is approved.\n",
    );
    acme.write(
        "memo.md.metadata.json",
        json!({"metadataAttributes": {"team": "finance", "year": 2021, "tags": ["budget"],
                                      "draft": true, "region": "us-east-1"}})
        .to_string(),
    );
    acme.write(
        "notes.txt",
        "Notes on the harbour lantern, kept by the keeper.\n",
    );
    let globex = ScratchDir::new();
    globex.write("plans.md", "# Plans\n\nThe harbour lease of globex.\n");
    globex.write(
        "plans.md.metadata.json",
        json!({"metadataAttributes": {"team": "legal", "year": 2024}}).to_string(),
    );
    for (tenant, dir) in [("acme", &acme), ("globex", &globex)] {
        let (run, outcomes) = ingest_locally(&config, tenant, std::slice::from_ref(&dir.0)).await;
        assert!(run.not_ingested.is_empty(), "{:?}", run.not_ingested);
        assert_eq!(run.sidecars.len(), if tenant == "acme" { 2 } else { 1 });
        assert!(outcomes.values().all(|o| o.state == JobState::Complete));
    }
    (test_db, config)
}

/// The names of `tenant`'s documents whose chunks pass `filter`, sorted:
/// the same in every search mode (every document holds the query's word).
async fn found(config: &PipelineSettings, tenant: &str, filter: Value) -> Vec<String> {
    let mut found_by_mode = Vec::new();
    for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Keyword] {
        let hits = search_in_mode(config, tenant, "harbour", 10, filter.clone(), mode)
            .await
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        let mut names: Vec<String> = hits
            .iter()
            .map(|hit| hit.source_key.rsplit('/').next().unwrap().to_string())
            .collect();
        names.sort();
        names.dedup();
        found_by_mode.push(names);
    }
    assert!(
        found_by_mode.iter().all(|names| names == &found_by_mode[0]),
        "{filter}: hybrid, vector, keyword found {found_by_mode:?}"
    );
    found_by_mode.remove(0)
}

#[tokio::test]
async fn every_operator_picks_exactly_its_documents() {
    let (_db, config) = documents().await;
    let cases = [
        (json!({}), vec!["contract.md", "memo.md", "notes.txt"]),
        (
            json!({"equals": {"key": "team", "value": "legal"}}),
            vec!["contract.md"],
        ),
        (
            json!({"equals": {"key": "draft", "value": true}}),
            vec!["memo.md"],
        ),
        (
            json!({"equals": {"key": "year", "value": 2024.0}}),
            vec!["contract.md"],
        ),
        // A chunk without the attribute matches notEquals.
        (
            json!({"notEquals": {"key": "team", "value": "legal"}}),
            vec!["memo.md", "notes.txt"],
        ),
        (
            json!({"greaterThan": {"key": "year", "value": 2021}}),
            vec!["contract.md"],
        ),
        (
            json!({"greaterThanOrEquals": {"key": "year", "value": 2021}}),
            vec!["contract.md", "memo.md"],
        ),
        (
            json!({"lessThan": {"key": "year", "value": 2024}}),
            vec!["memo.md"],
        ),
        (
            json!({"lessThanOrEquals": {"key": "year", "value": 2024}}),
            vec!["contract.md", "memo.md"],
        ),
        // A comparison with an attribute of another type matches nothing.
        (
            json!({"greaterThan": {"key": "region", "value": 0}}),
            vec![],
        ),
        (
            json!({"in": {"key": "team", "value": ["legal", "ops"]}}),
            vec!["contract.md"],
        ),
        (
            // As Bedrock documents notIn: the attribute must be there
            // (notes.txt has no team).
            json!({"notIn": {"key": "team", "value": ["legal"]}}),
            vec!["memo.md"],
        ),
        (
            json!({"startsWith": {"key": "region", "value": "eu-"}}),
            vec!["contract.md"],
        ),
        (
            json!({"listContains": {"key": "tags", "value": "budget"}}),
            vec!["memo.md"],
        ),
        (
            json!({"listContains": {"key": "team", "value": "legal"}}),
            vec![],
        ),
        (
            json!({"stringContains": {"key": "region", "value": "east"}}),
            vec!["memo.md"],
        ),
        (
            json!({"stringContains": {"key": "tags", "value": "ud"}}),
            vec!["memo.md"],
        ),
        (
            json!({"equals": {"key": "nobody-has-this", "value": "x"}}),
            vec![],
        ),
        (
            json!({"andAll": [{"equals": {"key": "team", "value": "legal"}},
                              {"greaterThan": {"key": "year", "value": 2022}}]}),
            vec!["contract.md"],
        ),
        (
            json!({"orAll": [{"equals": {"key": "team", "value": "finance"}},
                             {"startsWith": {"key": "source_key", "value": "uploads/acme/notes"}}]}),
            vec!["memo.md", "notes.txt"],
        ),
        (
            json!({"andAll": [
                {"orAll": [{"equals": {"key": "team", "value": "legal"}},
                           {"equals": {"key": "team", "value": "finance"}}]},
                {"notEquals": {"key": "draft", "value": true}}]}),
            vec!["contract.md"],
        ),
        // The keys docpipe sets.
        (
            json!({"equals": {"key": "content_type", "value": "text/plain"}}),
            vec!["notes.txt"],
        ),
        (
            json!({"listContains": {"key": "headings", "value": "Memo"}}),
            vec!["memo.md"],
        ),
        (
            json!({"equals": {"key": "chunk_index", "value": 0}}),
            vec!["contract.md", "memo.md", "notes.txt"],
        ),
        // Beside the key prefix, both apply.
        (
            json!({"key_prefix": "memo", "equals": {"key": "team", "value": "legal"}}),
            vec![],
        ),
        (
            json!({"key_prefix": "con", "equals": {"key": "team", "value": "legal"}}),
            vec!["contract.md"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            found(&config, "acme", filter.clone()).await,
            expected,
            "{filter}"
        );
    }
}

#[tokio::test]
async fn a_filter_never_reaches_another_tenants_documents() {
    let (_db, config) = documents().await;
    let legal = json!({"equals": {"key": "team", "value": "legal"}});
    assert_eq!(found(&config, "acme", legal.clone()).await, ["contract.md"]);
    assert_eq!(found(&config, "globex", legal).await, ["plans.md"]);
    let theirs = json!({"startsWith": {"key": "source_key", "value": "uploads/globex/"}});
    assert_eq!(found(&config, "acme", theirs).await, Vec::<String>::new());
    let everyone = json!({"orAll": [{"notEquals": {"key": "team", "value": "x"}},
                                    {"equals": {"key": "team", "value": "x"}}]});
    assert_eq!(found(&config, "globex", everyone).await, ["plans.md"]);
}

#[tokio::test]
async fn hits_carry_their_documents_metadata() {
    let (_db, config) = documents().await;
    let hits = search_filtered(&config, "acme", "harbour lease", 10, json!({}))
        .await
        .unwrap();
    let contract = hits
        .iter()
        .find(|h| h.source_key.ends_with("contract.md"))
        .unwrap();
    assert_eq!(
        Value::Object(contract.metadata.clone()),
        json!({"team": "legal", "year": 2024, "tags": ["nda", "eu"], "draft": false,
               "region": "eu-west-1"})
    );
    let notes = hits
        .iter()
        .find(|h| h.source_key.ends_with("notes.txt"))
        .unwrap();
    assert!(notes.metadata.is_empty());
}

#[tokio::test]
async fn a_selective_filter_still_fills_top_k() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let dir = ScratchDir::new();
    for i in 0..40 {
        dir.write(
            &format!("other-{i:02}.md"),
            format!("# Other {i}\n\nHarbour note number {i}.\n"),
        );
    }
    let sections: String = (0..12)
        .map(|i| format!("# Section {i}\n\nThe harbour ledger, part {i}, kept by legal.\n\n"))
        .collect();
    dir.write("ledger.md", sections);
    dir.write(
        "ledger.md.metadata.json",
        json!({"metadataAttributes": {"team": "legal"}}).to_string(),
    );
    ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    let filter = json!({"equals": {"key": "team", "value": "legal"}});
    let hits = search_filtered(&config, "acme", "harbour note", 10, filter)
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert!(
        hits.iter()
            .all(|h| h.source_key == "uploads/acme/ledger.md"),
        "{hits:?}"
    );
}

/// A large tenant's search narrowed by a filter to a few chunks returns the
/// exact nearest, whatever the HNSW graph would find. 20 000 random 384-dim
/// vectors are the graph's worst case (recall ~0.1 at this `ef_search`); a
/// folder, a document list or an attribute narrows them to 200 (1 %).
#[tokio::test]
async fn a_filter_narrowing_a_large_tenant_gets_the_exact_nearest() {
    let vars = [
        ("EMBEDDING_DIMS", "384"),
        ("SEARCH_EXACT_MAX_CHUNKS", "5000"),
        ("SEARCH_EF_SEARCH", "10"),
    ];
    let test_db = TestDb::migrated(&vars).await;
    let config = test_db.config(&vars);
    let mut client = test_db.client().await;
    let embedder = docpipe_ingest::embedding::from_settings(&config).unwrap();
    // Loaded as a bulk load is: the graph built once, after.
    assert!(indexes::defer_search_index(&mut client).await.unwrap());
    // 1 000 documents of 20 chunks; every 100th in the folder `kept/`, with
    // the attribute `kept`.
    client
        .batch_execute(
            "INSERT INTO upload_pipeline.documents (id, tenant, source_key, metadata)
             SELECT md5(d::text)::uuid, 'acme',
                    'uploads/acme/' || CASE WHEN d % 100 = 0 THEN 'kept/' ELSE 'rest/' END || d,
                    jsonb_build_object('kept', d % 100 = 0)
               FROM generate_series(0, 999) d",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO upload_pipeline.document_chunks
                 (chunk_id, document_id, job_id, tenant, source_key, chunk_index, text, token_count,
                  char_start, char_end, model, embedding, text_sha256, metadata)
             SELECT gen_random_uuid(), d.id, d.id, 'acme', d.source_key, i, 'text', 1, 0, 4, $1,
                    (SELECT array_agg(random() - 0.5)::vector(384)
                       FROM generate_series(1, 384) WHERE i >= 0),
                    sha256('text'), d.metadata
               FROM upload_pipeline.documents d, generate_series(0, 19) i",
            &[&embedder.model()],
        )
        .await
        .unwrap();
    indexes::rebuild_deferred_indexes(&mut client, &config.database)
        .await
        .unwrap();
    client
        .batch_execute("ANALYZE upload_pipeline.document_chunks")
        .await
        .unwrap();
    let kept: Vec<String> = test_db
        .column(
            "SELECT id::text FROM upload_pipeline.documents WHERE metadata @> '{\"kept\": true}'",
        )
        .await;
    // Several queries: the graph finds all ten for one query now and then,
    // but not for all of them.
    for query in [
        "the nearest of the kept",
        "tide tables for the harbour",
        "replace the worn impeller",
        "quarterly figures by team",
    ] {
        let input = docpipe_core::embedding::EmbedInput {
            text: query,
            tokens: query.len() as u32,
        };
        let vector =
            pgvector::Vector::from(embedder.embed_query(input).await.unwrap().vectors.remove(0));
        let exact: Vec<String> = client
            .query(
                "SELECT document_id::text || ':' || chunk_index FROM upload_pipeline.document_chunks
                  WHERE metadata @> '{\"kept\": true}'
                  ORDER BY (embedding <=> $1) + 0 LIMIT 10",
                &[&vector],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        for filter in [
            json!({"key_prefix": "kept/"}),
            json!({"document_ids": kept}),
            json!({"equals": {"key": "kept", "value": true}}),
        ] {
            let hits = search_in_mode(
                &config,
                "acme",
                query,
                10,
                filter.clone(),
                SearchMode::Vector,
            )
            .await
            .unwrap();
            let found: Vec<String> = hits
                .iter()
                .map(|hit| format!("{}:{}", hit.document_id, hit.chunk_index))
                .collect();
            assert_eq!(found, exact, "{query}, {filter}");
        }
    }
}
