//! Search modes over real Postgres: keyword search finds an exact rare term
//! that vector search ranks below its top_k, vector search finds by meaning
//! what keyword search cannot, and hybrid search finds both; without an
//! embedding call in keyword mode.

use docpipe_shared::search::{SearchHit, SearchMode};
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
