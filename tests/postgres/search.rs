//! Search modes over real Postgres: keyword search finds an exact rare term
//! that vector search ranks below its top_k, vector search finds by meaning
//! what keyword search cannot, and hybrid search finds both; without an
//! embedding call in keyword mode. Context around a hit: its neighbours, or
//! its section within a token budget.

use docpipe_core::db;
use docpipe_core::db::indexes;
use docpipe_core::settings::PipelineSettings;
use docpipe_search::context::ContextRequest;
use docpipe_search::rankers;
use docpipe_search::{Query, SearchHit, SearchMode};
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, search_in_mode};
use pgvector::Vector;
use serde_json::json;

/// A manual whose one paragraph names fault E4711 among talk of impellers,
/// and short notes that say "harbour pump" again and again; searched with
/// `vars`.
async fn corpus_with(vars: &[(&str, &str)]) -> (TestDb, PipelineSettings) {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(vars);
    let dir = ScratchDir::new();
    dir.write(
        "manual.md",
        "# Impeller service\n\nWhen the harbour pump stops with fault E4711, close the intake \
         valve, drain the casing, lift the cover, take out the worn impeller, fit the new seal \
         ring and the spare impeller from the store, refill the casing and run the unit for ten \
         minutes before opening the valve again.\n",
    );
    for i in 0..6 {
        dir.write(
            &format!("note-{i}.md"),
            format!("Harbour pump note {i}: the harbour pump runs. Harbour pump checked.\n"),
        );
    }
    ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    (test_db, config)
}

async fn corpus() -> (TestDb, PipelineSettings) {
    corpus_with(&[]).await
}

async fn names(
    config: &PipelineSettings,
    query: &str,
    top_k: u32,
    mode: SearchMode,
) -> Vec<String> {
    let hits: Vec<SearchHit> = search_in_mode(config, "acme", query, top_k, json!({}), mode)
        .await
        .unwrap();
    hits.iter()
        .map(|hit| {
            hit.source_key
                .trim_start_matches("uploads/acme/")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn hybrid_finds_a_rare_term_vector_misses_and_a_meaning_keywords_miss() {
    let (_db, config) = corpus().await;
    let code = "harbour pump E4711";
    let by_vector = names(&config, code, 3, SearchMode::Vector).await;
    assert!(
        !by_vector.contains(&"manual.md".to_string()),
        "{by_vector:?}"
    );
    assert_eq!(
        names(&config, code, 3, SearchMode::Keyword).await,
        ["manual.md"]
    );
    assert_eq!(
        names(&config, code, 3, SearchMode::Hybrid).await[0],
        "manual.md"
    );
    // With SEARCH_KEYWORD_MATCH=any, keyword search ranks the one chunk
    // holding every word first, then chunks holding some.
    let (_any_db, any) = corpus_with(&[("SEARCH_KEYWORD_MATCH", "any")]).await;
    let hits = search_in_mode(&any, "acme", code, 3, json!({}), SearchMode::Keyword)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    // Scored by the share of the query's words each holds: all, then some.
    assert!(hits[0].source_key.ends_with("manual.md") && hits[0].score == 1.0);
    assert!(hits[1..].iter().all(|h| h.score < 1.0), "{hits:?}");
    assert_eq!(
        names(&any, code, 3, SearchMode::Hybrid).await[0],
        "manual.md"
    );

    // A question in other words than the manual's finds nothing by keywords;
    // by meaning, it does.
    let question = "how do I replace a worn impeller and its seal";
    assert_eq!(
        names(&config, question, 3, SearchMode::Keyword).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&config, question, 3, SearchMode::Vector).await[0],
        "manual.md"
    );
    assert_eq!(
        names(&config, question, 3, SearchMode::Hybrid).await[0],
        "manual.md"
    );
}

/// A question's words all in a chunk about something else: the default
/// search still ranks the answer first, since a hybrid search asked a
/// question ranks by meaning. A phrase copied from that other chunk still
/// finds it.
#[tokio::test]
async fn a_question_whose_words_all_occur_elsewhere_still_finds_its_answer() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let dir = ScratchDir::new();
    dir.write(
        "answer.md",
        "How do I see what a process holds open? Run lsof -p with the process id: it \
         prints each file the process holds, one a line.\n",
    );
    dir.write(
        "shop.md",
        "Shop news: the open day list is out. How we process files changed, so do write to \
         me, I hope. The shop holds a sale on garden tools all week.\n",
    );
    for (i, topic) in ["tide tables", "bread recipes", "bicycle repair"]
        .iter()
        .enumerate()
    {
        dir.write(
            &format!("other-{i}.md"),
            format!("Notes on {topic}, kept for later.\n"),
        );
    }
    ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    let question = "How do I list the files a process holds open?";
    // Every word of it is in the shop's chunk alone.
    assert_eq!(
        names(&config, question, 3, SearchMode::Keyword).await,
        ["shop.md"]
    );
    assert_eq!(
        names(&config, question, 3, SearchMode::Vector).await[0],
        "answer.md"
    );
    assert_eq!(
        names(&config, question, 3, SearchMode::Hybrid).await[0],
        "answer.md"
    );
    assert_eq!(
        names(&config, "the open day list is out", 3, SearchMode::Hybrid).await[0],
        "shop.md"
    );
}

/// The any-word query is built from the query's own words (plainto_tsquery's
/// `&`s made `|`s): whatever a caller types reads as words, never as
/// tsquery syntax, and never fails the search.
#[tokio::test]
async fn any_word_keyword_queries_read_hostile_text_as_words() {
    let (_db, any) = corpus_with(&[("SEARCH_KEYWORD_MATCH", "any")]).await;
    for text in [
        "pump & | ! <-> ( ) : * E4711",
        "pump' & 'x':* | !!",
        r"back\slash pump\ 'it''s' E4711",
        "'; DROP TABLE upload_pipeline.document_chunks; --",
        "!!! ::: &&& |||",
        "",
        "Überlast pump 泵 🦀",
    ] {
        for mode in [SearchMode::Keyword, SearchMode::Hybrid] {
            let hits = search_in_mode(&any, "acme", text, 3, json!({}), mode)
                .await
                .unwrap_or_else(|e| panic!("{text:?} in {mode}: {e}"));
            assert!(hits.len() <= 3, "{text:?}");
        }
    }
    assert_eq!(
        names(&any, "pump & | ! E4711", 3, SearchMode::Keyword).await[0],
        "manual.md"
    );
}

#[tokio::test]
async fn keyword_search_reads_phrases_and_exclusions_and_ranks_within_0_and_1() {
    let (_db, config) = corpus().await;
    let hits = search_in_mode(
        &config,
        "acme",
        r#""pump runs" -E4711"#,
        10,
        json!({}),
        SearchMode::Keyword,
    )
    .await
    .unwrap();
    assert_eq!(hits.len(), 6, "{hits:?}");
    assert!(hits.iter().all(|h| h.source_key.contains("note-")));
    assert!(hits.iter().all(|h| h.score > 0.0 && h.score <= 1.0));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
}

/// A guide of two sections, each paragraph a chunk of its own.
async fn sections() -> (TestDb, PipelineSettings) {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[("CHUNK_TOKENS", "48"), ("CHUNK_OVERLAP_TOKENS", "4")]);
    let paragraph = |topic: &str| {
        format!(
            "The {topic} is checked at dawn by the keeper, who writes what the {topic} shows \
             in the log and tells the harbour master of any change before the boats go out."
        )
    };
    let alpha: Vec<String> = ["lantern", "foghorn", "barometer", "anemometer"]
        .iter()
        .map(|t| paragraph(t))
        .collect();
    let beta: Vec<String> = ["tide gauge", "slipway"]
        .iter()
        .map(|t| paragraph(t))
        .collect();
    let text = format!(
        "# Alpha\n\n{}\n\n# Beta\n\n{}\n",
        alpha.join("\n\n"),
        beta.join("\n\n")
    );
    let dir = ScratchDir::new();
    dir.write("guide.md", text);
    ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    (test_db, config)
}

async fn with_context(config: &PipelineSettings, context: ContextRequest) -> SearchHit {
    let filter = Default::default();
    let query = Query {
        text: "what the barometer shows",
        top_k: 1,
        mode: SearchMode::Vector,
        filter: &filter,
        context: Some(context),
        rerank: true,
    };
    let pool = docpipe_core::db::connect(&config.database).await.unwrap();
    let parts = docpipe_tests::search_parts(config);
    let hits = docpipe_search::search(&pool, &parts, "acme", &query)
        .await
        .unwrap();
    hits.into_iter().next().unwrap()
}

#[tokio::test]
async fn context_brings_neighbours_or_the_section_within_a_budget() {
    let (_db, config) = sections().await;
    let plain = &search_in_mode(
        &config,
        "acme",
        "what the barometer shows",
        1,
        json!({}),
        SearchMode::Vector,
    )
    .await
    .unwrap()[0];
    assert!(plain.text.contains("barometer") && plain.context.is_none());
    assert!(
        !serde_json::to_string(plain)
            .unwrap()
            .contains("\"context\"")
    );
    let at = plain.chunk_index;

    let hit = with_context(&config, ContextRequest::Neighbors(1)).await;
    let context = hit.context.unwrap();
    assert_eq!((context.chunk_start, context.chunk_end), (at - 1, at + 1));
    assert!(context.text.contains("foghorn") && context.text.contains("barometer"));
    assert!(context.text.contains("anemometer") && !context.text.contains("lantern"));
    assert_eq!(
        context.text.matches("barometer is checked").count(),
        1,
        "overlaps once"
    );

    // The whole section, and nothing of the next, however large the budget.
    let hit = with_context(&config, ContextRequest::MaxTokens(8192)).await;
    let context = hit.context.unwrap();
    for topic in ["lantern", "foghorn", "barometer", "anemometer"] {
        assert!(context.text.contains(topic), "{topic}: {}", context.text);
    }
    assert!(!context.text.contains("tide gauge") && !context.text.contains("slipway"));

    // A budget the hit alone fills is the hit alone.
    let hit = with_context(&config, ContextRequest::MaxTokens(1)).await;
    let context = hit.context.unwrap();
    assert_eq!((context.chunk_start, context.chunk_end), (at, at));
    assert_eq!(context.text, hit.text);
}

/// The corpus with a reranker at mock-rerank (over HTTP), `vars` beside.
async fn reranked(
    vars: &[(&str, &str)],
) -> (
    TestDb,
    PipelineSettings,
    std::sync::Arc<docpipe_mocks::rerank::MockRerank>,
) {
    let (test_db, _) = corpus().await;
    let mock = docpipe_mocks::rerank::MockRerank::new(Some("rk-test".into()), Default::default());
    let address = docpipe_tests::serve(mock.router()).await;
    let url = format!("http://{address}");
    let mut all = vec![
        ("RERANK_PROVIDER", "cohere"),
        ("RERANK_BASE_URL", url.as_str()),
        ("RERANK_API_KEY", "rk-test"),
        ("EXTERNAL_MAX_ATTEMPTS", "3"),
        ("EXTERNAL_FIRST_BACKOFF_MS", "1"),
    ];
    all.extend_from_slice(vars);
    let config = test_db.config(&all);
    (test_db, config, mock)
}

async fn rerank_spend(test_db: &TestDb) -> Vec<String> {
    test_db
        .column(
            "SELECT tenant || ' ' || service || ' ' || units || ' ' || unit
               FROM upload_pipeline.cost_ledger WHERE unit = 'search_units'",
        )
        .await
}

#[tokio::test]
async fn a_reranker_reorders_the_candidates_and_is_paid_for() {
    let (test_db, config, mock) = reranked(&[]).await;
    // Vector search alone leaves the manual out of its top 3 (above); the
    // reranker, seeing the best 40, puts it first: it holds every word.
    let code = "harbour pump E4711";
    let hits = search_in_mode(&config, "acme", code, 3, json!({}), SearchMode::Vector)
        .await
        .unwrap();
    assert_eq!(hits[0].source_key, "uploads/acme/manual.md", "{hits:?}");
    assert_eq!(hits[0].score, 1.0, "the reranker's relevance");
    assert_eq!(hits.len(), 3);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(mock.requests(), 1);
    assert_eq!(rerank_spend(&test_db).await, ["acme rerank 1 search_units"]);
    // Filters still apply before reranking: nothing of the manual is sent.
    let notes = json!({"startsWith": {"key": "source_key", "value": "uploads/acme/note-"}});
    let hits = search_in_mode(&config, "acme", code, 3, notes, SearchMode::Hybrid)
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.source_key.contains("note-")),
        "{hits:?}"
    );
    assert_eq!(mock.requests(), 2);
    // A caller may do without it: the search's own order, no call, no cost.
    let pool = docpipe_core::db::connect(&config.database).await.unwrap();
    let parts = docpipe_tests::search_parts(&config);
    let query = Query {
        text: code,
        top_k: 3,
        mode: SearchMode::Vector,
        filter: &Default::default(),
        context: None,
        rerank: false,
    };
    let hits = docpipe_search::search(&pool, &parts, "acme", &query)
        .await
        .unwrap();
    assert!(
        hits.iter()
            .all(|h| h.source_key != "uploads/acme/manual.md"),
        "{hits:?}"
    );
    assert_eq!(mock.requests(), 2);
    assert_eq!(rerank_spend(&test_db).await.len(), 2);
}

#[tokio::test]
async fn reranking_faults_are_retried_refusals_are_not_and_the_budget_holds() {
    use docpipe_mocks::faults::FaultKnobs;
    let (_db, config, mock) = reranked(&[]).await;
    let search = async |config: &PipelineSettings| {
        search_in_mode(
            config,
            "acme",
            "impeller seal",
            3,
            json!({}),
            SearchMode::Hybrid,
        )
        .await
    };
    // The service down: a search fails after EXTERNAL_MAX_ATTEMPTS tries;
    // off contract, likewise; back, it answers again.
    mock.faults.set_knobs(FaultKnobs {
        error_rate: 1.0,
        ..Default::default()
    });
    let error = search(&config).await.unwrap_err();
    assert!(error.contains("HTTP 503"), "{error}");
    assert_eq!(mock.requests(), 3, "EXTERNAL_MAX_ATTEMPTS");
    mock.faults.set_knobs(FaultKnobs {
        malformed_rate: 1.0,
        ..Default::default()
    });
    let error = search(&config).await.unwrap_err();
    assert!(error.contains("off contract"), "{error}");
    mock.faults.set_knobs(FaultKnobs::default());
    assert!(search(&config).await.is_ok());

    let (_db, wrong_key, _mock) = reranked(&[("RERANK_API_KEY", "rk-wrong")]).await;
    let before = _mock.requests();
    let error = search(&wrong_key).await.unwrap_err();
    assert!(
        error.contains("rerank service rejected the request: HTTP 401"),
        "{error}"
    );
    assert_eq!(_mock.requests(), before + 1, "a refusal is not retried");

    // A search unit at $1 against a $0.50 daily budget: the first search
    // spends it, the next is refused until tomorrow.
    let (_db, costly, _mock) = reranked(&[
        ("RERANK_USD_PER_1K_SEARCHES", "1000"),
        ("TENANT_DAILY_BUDGET_USD", "0.5"),
    ])
    .await;
    assert!(search(&costly).await.is_ok());
    let error = search(&costly).await.unwrap_err();
    assert!(error.contains("budget"), "{error}");
}

/// The search index's definition as Postgres reads it.
async fn search_index(test_db: &TestDb) -> String {
    test_db
        .client()
        .await
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'document_chunks_embedding_idx'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_binary_index_ranks_as_the_vectors_do_and_migrate_switches_the_kind() {
    // Every tenant through the index, however small (by default a tenant
    // this small is searched exactly, with no index).
    let binary = [
        ("EMBEDDING_INDEX", "binary"),
        ("SEARCH_EXACT_MAX_CHUNKS", "0"),
    ];
    let test_db = TestDb::migrated(&binary).await;
    let index = search_index(&test_db).await;
    assert!(
        index.contains("bit_hamming_ops") && index.contains("bit(1536)"),
        "{index}"
    );
    let binary = test_db.config(&binary);
    for tenant in ["acme", "other"] {
        ingest_locally(&binary, tenant, &[docpipe_tests::samples_dir()]).await;
    }
    // The bits' nearest, re-ranked by the vectors, are the vectors' nearest:
    // the same scores as exact search (a tenant this small, by default), in
    // the tenant and the filter only.
    let exact = test_db.config(&[]);
    for (query, filter) in [
        ("spring tides and neap tides", json!({})),
        ("fog signal sounded every minute", json!({})),
        ("harbour speed limit", json!({"key_prefix": "harbour"})),
    ] {
        let scores = |config| {
            let filter = filter.clone();
            async move {
                let hits = search_in_mode(config, "acme", query, 5, filter, SearchMode::Vector)
                    .await
                    .unwrap();
                assert!(
                    hits.iter()
                        .all(|hit| hit.source_key.starts_with("uploads/acme/"))
                );
                hits.iter()
                    .map(|hit| (hit.score * 1e6).round() as i64)
                    .collect::<Vec<_>>()
            }
        };
        let through_bits = scores(&binary).await;
        assert!(!through_bits.is_empty(), "{query}");
        assert_eq!(through_bits, scores(&exact).await, "{query}");
    }
    let filtered = search_in_mode(
        &binary,
        "acme",
        "harbour speed limit",
        5,
        json!({"key_prefix": "harbour"}),
        SearchMode::Vector,
    )
    .await
    .unwrap();
    assert!(
        filtered
            .iter()
            .all(|hit| hit.source_key == "uploads/acme/harbour-rules.html")
    );

    // Back to HNSW over the vectors, once; a deferred index is rewritten, not built.
    let report = db::schema::migrate(&exact.database).await.unwrap();
    assert_eq!(
        report.applied,
        ["index document_chunks_embedding_idx (hnsw)"]
    );
    assert!(search_index(&test_db).await.contains("vector_cosine_ops"));
    assert!(
        db::schema::migrate(&exact.database)
            .await
            .unwrap()
            .applied
            .is_empty()
    );
    let pool = db::connect(&exact.database).await.unwrap();
    assert!(
        indexes::defer_search_index(&mut pool.get().await.unwrap())
            .await
            .unwrap()
    );
    let report = db::schema::migrate(&binary.database).await.unwrap();
    assert_eq!(
        report.applied,
        ["index document_chunks_embedding_idx (binary)"]
    );
    indexes::rebuild_deferred_indexes(&mut pool.get().await.unwrap(), &binary.database)
        .await
        .unwrap();
    assert!(search_index(&test_db).await.contains("bit_hamming_ops"));
}

/// A guide whose "Priming" section runs over three paragraphs, a chunk each
/// (after the introduction's), ingested with `CHUNK_HEADER=header`: each chunk's text, header, hash of
/// what was embedded, tokens of that, and vector.
async fn headed_chunks(header: &str) -> Vec<(String, Option<String>, Vec<u8>, i32, Vector)> {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[
        ("CHUNK_TOKENS", "48"),
        ("CHUNK_MIN_TOKENS", "8"),
        ("CHUNK_OVERLAP_TOKENS", "4"),
        ("CHUNK_HEADER", header),
    ]);
    let dir = ScratchDir::new();
    dir.write(
        "pumps.md",
        "# Bilge pumps\n\nThe bilge pumps keep the hull dry, the forward one and the aft one.\n\n\
         ## Priming\n\nFill the casing with water before the first start of the pump.\n\n\
         Open the vent cock on the casing top and pour in clean water until it runs out.\n\n\
         Close the vent cock, start the motor and watch the gauge climb within a minute.\n",
    );
    ingest_locally(&config, "acme", std::slice::from_ref(&dir.0)).await;
    let rows = test_db
        .client()
        .await
        .query(
            "SELECT text, embed_header, text_sha256, coalesce(embed_tokens, token_count), embedding
               FROM upload_pipeline.document_chunks ORDER BY chunk_index",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<_> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    // Keyword search reads the text alone: of the three, only the chunk
    // whose text says so is found by a word of the header.
    let found = search_in_mode(
        &config,
        "acme",
        "priming",
        5,
        json!({}),
        SearchMode::Keyword,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1, "{header}: {rows:#?}");
    assert!(found[0].text.starts_with("## Priming\n\nFill"));
    rows
}

#[tokio::test]
async fn a_chunk_is_embedded_under_its_header_and_found_by_its_own_text() {
    use docpipe_core::embedding::{EmbedInput, Embedder};
    use docpipe_ingest::embedding::mock::MockEmbedder;
    let mock = MockEmbedder::new(docpipe_core::settings::MOCK_EMBEDDING_MODEL, 1536);
    for (setting, name) in [
        ("none", None),
        ("headings", Some("")),
        ("name-and-headings", Some("pumps.md > ")),
    ] {
        let chunks = headed_chunks(setting).await;
        assert_eq!(chunks.len(), 4, "{setting}");
        for (i, (text, stored_header, hash, tokens, vector)) in chunks.into_iter().enumerate() {
            assert!(!text.contains(" > "), "{text}");
            let section = if i == 0 {
                "Bilge pumps"
            } else {
                "Bilge pumps > Priming"
            };
            let header = name.map(|name| format!("{name}{section}"));
            assert_eq!(stored_header, header, "{setting}");
            let input = match &header {
                Some(header) => format!("{header}\n\n{text}"),
                None => text.clone(),
            };
            let cl100k = docpipe_core::tokens::tokenizer();
            assert_eq!(tokens as usize, cl100k.encode_ordinary(&input).len());
            assert_eq!(hash, docpipe_core::domain::ids::sha256(input.as_bytes()));
            let input = EmbedInput {
                text: &input,
                tokens: 1,
            };
            let embedded = mock.embed(&[input]).await.unwrap().vectors.remove(0);
            assert_eq!(vector, Vector::from(embedded), "{setting}: {text}");
        }
    }
}

#[tokio::test]
async fn the_planner_estimates_a_filtered_tenant_from_the_statistics() {
    use docpipe_search::filter::{Condition, SqlCondition};
    // 4 000 chunks of one tenant over 40 documents, a team and a year each.
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", "3")]).await;
    let client = test_db.client().await;
    let pool = db::pool(&test_db.config(&[("EMBEDDING_DIMS", "3")]).database).unwrap();
    let pooled = pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO upload_pipeline.documents (id, tenant, source_key, metadata)
             SELECT md5(d::text)::uuid, 'acme', 'uploads/acme/' || d,
                    jsonb_build_object('team', (ARRAY['legal','finance','ops','sales','research'])[d % 5 + 1],
                                       'year', 2018 + d / 5)
               FROM generate_series(0, 39) d;
             INSERT INTO upload_pipeline.document_chunks
                 (chunk_id, document_id, job_id, tenant, source_key, chunk_index, text, token_count,
                  char_start, char_end, model, embedding, text_sha256, metadata)
             SELECT gen_random_uuid(), d.id, d.id, 'acme', d.source_key, i, 'text', 1, 0, 4, 'mock',
                    '[1,0,0]', sha256('text'), d.metadata
               FROM upload_pipeline.documents d, generate_series(0, 99) i;
             ANALYZE upload_pipeline.document_chunks;",
        )
        .await
        .unwrap();
    // Estimated against counted: a filter said once is read from the
    // statistics. Said twice (`@>` and `=`), the planner multiplied the two
    // and expected 1 of these 800 chunks, then sorted them all instead of
    // walking the HNSW graph (400 ms at 1 M rows).
    for (filter, expected) in [
        (json!({"equals": {"key": "team", "value": "legal"}}), 800),
        (
            json!({"listContains": {"key": "team", "value": "legal"}}),
            0,
        ),
        (
            json!({"andAll": [{"equals": {"key": "team", "value": "legal"}},
                              {"equals": {"key": "year", "value": 2020}}]}),
            100,
        ),
    ] {
        let condition = Condition::parse(&filter, "filter").unwrap();
        let sql = SqlCondition::new(&condition, 2, None);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&"acme"];
        params.extend(
            sql.params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
        let count = format!(
            "SELECT count(*) FROM upload_pipeline.document_chunks WHERE tenant = $1 AND {}",
            sql.sql
        );
        let counted: i64 = client.query_one(&count, &params).await.unwrap().get(0);
        assert_eq!(counted, expected, "{filter}");
        // The estimate the vector ranker reads to choose an exact answer.
        let search_filter = docpipe_search::SearchFilter {
            metadata: Some(condition),
            ..Default::default()
        };
        let estimated = rankers::estimated_passing(&pooled, "acme", &search_filter)
            .await
            .unwrap();
        let counted = (counted as f64).max(1.0);
        assert!(
            estimated >= counted / 3.0 && estimated <= counted * 3.0,
            "{filter}: estimated {estimated}, counted {counted}"
        );
    }
}

#[tokio::test]
async fn searches_never_wait_on_each_others_connections_and_hybrid_needs_just_one() {
    // A search must not hold a connection while it waits for another (the
    // spending check before the query's embedding): with as many searches
    // as connections, each held one and waited for a second, so every
    // search (every tenant's) stalled until the pool's 30 s wait ran out.
    let (test_db, config) = corpus_with(&[("DB_POOL_SIZE", "2")]).await;
    let pool = db::connect(&config.database).await.unwrap();
    let parts = docpipe_tests::search_parts(&config);
    let filter = Default::default();
    let searches = (0..12).map(|i| {
        let (pool, parts, filter) = (&pool, &parts, &filter);
        async move {
            let query = Query {
                text: "harbour pump",
                top_k: 3,
                mode: [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Keyword][i % 3],
                filter,
                context: None,
                rerank: false,
            };
            docpipe_search::search(pool, parts, "acme", &query).await
        }
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures::future::join_all(searches),
    )
    .await
    .expect("12 searches on 2 connections within 10 s");
    for answer in answers {
        assert_eq!(answer.unwrap().len(), 3);
    }

    // Hybrid search runs its rankers at once on two connections when the
    // pool has a second free, else one after the other: the same hits.
    let hybrid = async |pool_size: &str| {
        let config = test_db.config(&[("DB_POOL_SIZE", pool_size)]);
        let pool = db::connect(&config.database).await.unwrap();
        let query = Query {
            text: "pump fault E4711",
            top_k: 5,
            mode: SearchMode::Hybrid,
            filter: &filter,
            context: None,
            rerank: false,
        };
        let hits = docpipe_search::search(&pool, &parts, "acme", &query)
            .await
            .unwrap();
        hits.iter()
            .map(|hit| (hit.source_key.clone(), hit.score))
            .collect::<Vec<_>>()
    };
    let (alone, together) = (hybrid("1").await, hybrid("2").await);
    assert_eq!(alone.len(), 5);
    assert!(alone[0].0.ends_with("manual.md"), "{alone:?}");
    assert_eq!(alone, together);
}

/// The red team's heavy tenant: searches of `top_k` 100 with 10 neighbours
/// of context each (answers of megabytes), 150 at once and within its rate,
/// beside another tenant's one small search. The small one is answered
/// within 500 ms (here ~10 ms; it took 1.8 s here, and 10–14 s in the red
/// team's run, queued behind the heavy ones for the database and the CPU);
/// the heavy ones take their tenant's slots one at a time, or are told to
/// come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_heavy_searches_never_stall_another_tenants_search() {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[("CHUNK_TOKENS", "64"), ("CHUNK_OVERLAP_TOKENS", "0")]);
    let heavy = ScratchDir::new();
    for d in 0..20 {
        let text: String = (0..60)
            .map(|p| format!("Log {d}.{p}: the harbour pump ran, the tide rose, the keeper noted the fog and the light on the quay.\n\n"))
            .collect();
        heavy.write(&format!("log-{d}.md"), text);
    }
    ingest_locally(&config, "heavy", std::slice::from_ref(&heavy.0)).await;
    let light = ScratchDir::new();
    light.write("lamp.md", "The lamp room holds the Fresnel lens.\n");
    ingest_locally(&config, "light", std::slice::from_ref(&light.0)).await;
    let keys = "heavy-key-0123456789:heavy,light-key-0123456789:light";
    let base = docpipe_tests::serve_api_without_aws(&config, keys, &Default::default()).await;
    let http = docpipe_tests::http_client();
    let search = |key: &'static str, body: serde_json::Value| {
        let request = http
            .post(format!("{base}/v1/search"))
            .bearer_auth(key)
            .json(&body);
        async move {
            let started = std::time::Instant::now();
            let status = request.send().await.map(|r| r.status().as_u16());
            (status.unwrap_or(0), started.elapsed())
        }
    };
    let heavy_body = json!({"query": "harbour pump tide", "top_k": 100, "context": {"neighbors": 10}, "mode": "vector"});
    let heavy_searches = futures::future::join_all(
        (0..150).map(|_| search("heavy-key-0123456789", heavy_body.clone())),
    );
    let light_search = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        search(
            "light-key-0123456789",
            json!({"query": "Fresnel lens", "top_k": 1}),
        )
        .await
    };
    let (heavy, (light_status, light_took)) = tokio::join!(heavy_searches, light_search);
    let served = heavy.iter().filter(|(status, _)| *status == 200).count();
    let told_to_wait = heavy.iter().filter(|(status, _)| *status == 429).count();
    let slowest = heavy.iter().map(|(_, took)| *took).max().unwrap();
    println!(
        "light search {light_took:?} beside 150 heavy ones ({served} answered, {told_to_wait} told to wait, slowest {slowest:?})"
    );
    assert_eq!(light_status, 200);
    assert!(
        light_took < std::time::Duration::from_millis(500),
        "the light tenant's search took {light_took:?}"
    );
    assert_eq!(
        served + told_to_wait,
        150,
        "each heavy search answered or told to wait"
    );
    assert!(served > 0);
}
