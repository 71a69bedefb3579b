//! Search modes over real Postgres: keyword search finds an exact rare term
//! that vector search ranks below its top_k, vector search finds by meaning
//! what keyword search cannot, and hybrid search finds both; without an
//! embedding call in keyword mode. Context around a hit: its neighbours, or
//! its section within a token budget.

use docpipe_shared::search::context::ContextRequest;
use docpipe_shared::search::{Query, SearchHit, SearchMode};
use docpipe_shared::settings::PipelineSettings;
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, search_in_mode};
use serde_json::json;

/// A manual whose one paragraph names fault E4711 among talk of impellers,
/// and short notes that say "harbour pump" again and again.
async fn corpus() -> (TestDb, PipelineSettings) {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
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
    assert!(hits.iter().all(|h| h.score > 0.0 && h.score < 1.0));
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
    };
    let pool = docpipe_shared::store::db::connect(&config.database)
        .await
        .unwrap();
    let embedder = docpipe_shared::embedding::from_settings(config).unwrap();
    let hits =
        docpipe_shared::search::search(&pool, embedder.as_ref(), &config.cost, "acme", &query)
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
