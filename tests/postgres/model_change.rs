//! Changing the embedding model without an outage: with `NEXT_EMBEDDING_*`
//! set, the sweeper builds the next model's vectors in the cache, tenant
//! searches keep reading the current model, and each tenant switches, all
//! its chunks at once, in the sweep that completes its vectors. Here the
//! change is from the mock embedder to a real model (all-MiniLM-L6-v2, run
//! locally), so the switch shows in what search finds.

use docpipe_core::JobState;
use docpipe_core::db;
use docpipe_core::settings::{MOCK_EMBEDDING_MODEL, PipelineSettings, SweepPolicy};
use docpipe_ingest::drivers::local::LocalPipeline;
use docpipe_ingest::pipeline::reembed;
use docpipe_ingest::pipeline::sweeper;
use docpipe_ingest::store::model_change;
use docpipe_search::{SearchHit, SearchMode};
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, local_model_dir, samples_dir};
use serde_json::json;

const MINILM: &str = "all-MiniLM-L6-v2";
const TENANTS: [&str; 2] = ["harbour", "quay"];
/// No word of it is in the chunk it must find (fog-signals.txt).
const BY_MEANING: &str = "audible warnings alerting mariners amid murky weather";

/// The mock model making vectors of `dims`, with chunks that fit the local
/// model's window, each embedded under its file name (so that both models
/// embed, and the cache keys, the header with the text).
fn current_vars(dims: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EMBEDDING_PROVIDER", "mock".into()),
        ("EMBEDDING_DIMS", dims.into()),
        ("CHUNK_TOKENS", "150".into()),
        ("CHUNK_OVERLAP_TOKENS", "20".into()),
        ("CHUNK_HEADER", "name-and-headings".into()),
    ]
}

/// all-MiniLM-L6-v2 (`prefix` "NEXT_" for a change's next model), with the
/// same chunking.
fn local_vars(prefix: &str) -> Vec<(&'static str, String)> {
    let var = |name: &str| -> &'static str { format!("{prefix}{name}").leak() };
    vec![
        (var("EMBEDDING_PROVIDER"), "local".into()),
        (
            var("EMBEDDING_MODEL_DIR"),
            local_model_dir().display().to_string(),
        ),
        (var("EMBEDDING_DIMS"), "384".into()),
        (var("EMBEDDING_THREADS"), "2".into()),
        ("CHUNK_TOKENS", "150".into()),
        ("CHUNK_OVERLAP_TOKENS", "20".into()),
        ("CHUNK_HEADER", "name-and-headings".into()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn vector_search(config: &PipelineSettings, tenant: &str, text: &str) -> Vec<SearchHit> {
    docpipe_tests::search_in_mode(config, tenant, text, 3, json!({}), SearchMode::Vector)
        .await
        .unwrap()
}

/// The models of `tenant`'s searchable chunks.
async fn models_of(test_db: &TestDb, tenant: &str) -> Vec<String> {
    test_db
        .client()
        .await
        .query(
            "SELECT DISTINCT model FROM upload_pipeline.document_chunks WHERE tenant = $1
              ORDER BY model",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_change_to_a_model_of_the_same_size() {
    change_models("384").await;
}

#[tokio::test]
async fn a_change_to_a_model_of_another_size() {
    let test_db = change_models("64").await;
    // The new size's column holds every vector; the first one's, none.
    for (column, vectors) in [("embedding", 0), ("embedding_384", 20)] {
        let sql = format!("SELECT count({column}) FROM upload_pipeline.document_chunks");
        assert_eq!(test_db.column::<i64>(&sql).await, [vectors], "{column}");
    }
}

/// Ingests the samples for two tenants with the mock model at `dims`, then
/// changes to the local model (384 dimensions) as the runbook says: migrate
/// with the next model configured, let the sweeper work, make the next model
/// the deployment's. Search answers at every step, and each tenant switches
/// exactly when its vectors are complete.
async fn change_models(dims: &str) -> TestDb {
    let current = current_vars(dims);
    let test_db = TestDb::migrated(&borrowed(&current)).await;
    let before = test_db.config(&borrowed(&current));
    for tenant in TENANTS {
        let (_, outcomes) = ingest_locally(&before, tenant, &[samples_dir()]).await;
        assert!(
            outcomes.values().all(|o| o.state == JobState::Complete),
            "{outcomes:?}"
        );
    }

    let mut changing_vars = current.clone();
    changing_vars.extend(local_vars("NEXT_"));
    let changing = test_db.config(&borrowed(&changing_vars));
    let other_size = dims != "384";
    if other_size {
        // Deployed before the deploy step migrates: the functions start, and
        // the change waits for its column.
        let early =
            LocalPipeline::new(&changing, db::connect(&changing.database).await.unwrap()).unwrap();
        let err = reembed::advance_model_change(early.pipeline(), 10)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("need column document_chunks.embedding_384: run `docpipe migrate`"),
            "{err}"
        );
    }
    let migrated = db::schema::migrate(&changing.database).await.unwrap();
    let added: &[&str] = if other_size {
        &["column embedding_384"]
    } else {
        &[]
    };
    assert_eq!(migrated.applied, added);
    let local =
        LocalPipeline::new(&changing, db::connect(&changing.database).await.unwrap()).unwrap();
    let pipeline = local.pipeline();
    let progress = reembed::model_change_progress(pipeline).await.unwrap();
    assert_eq!(progress.len(), 2);
    assert!(
        progress
            .iter()
            .all(|t| t.progress.ready == 0 && !t.progress.switched)
    );
    // Nothing built yet: searches read the mock's vectors, as before.
    assert_eq!(
        vector_search(&changing, "harbour", "fog horn").await[0].text,
        vector_search(&before, "harbour", "fog horn").await[0].text
    );

    let policy = SweepPolicy {
        model_change_batch: 7,
        ..SweepPolicy::default()
    };
    let mut switched_in = Vec::new();
    for sweep in 1..=40 {
        let report = sweeper::sweep(pipeline, &policy).await.unwrap();
        assert!(report.model_change.embedded <= 7);
        for (tenant, _) in &report.model_change.switched {
            switched_in.push((tenant.clone(), sweep));
        }
        let progress = reembed::model_change_progress(pipeline).await.unwrap();
        // `docpipe status` reads the change from the settings: the same figures.
        let configured = model_change::ModelChange::configured(&changing).unwrap();
        let client = pipeline.db.get().await.unwrap();
        assert_eq!(
            model_change::progress(&client, &configured).await.unwrap(),
            progress
        );
        for tenant in &progress {
            // Switched exactly when every chunk has its next vector, and
            // never a mix of models in what its searches read.
            assert_eq!(
                tenant.progress.switched,
                tenant.progress.ready == tenant.progress.chunks,
                "sweep {sweep}: {tenant:?}"
            );
            let expected = if tenant.progress.switched {
                MINILM
            } else {
                MOCK_EMBEDDING_MODEL
            };
            assert_eq!(models_of(&test_db, &tenant.tenant).await, [expected]);
            let hits = vector_search(&changing, &tenant.tenant, "fog horn").await;
            assert_eq!(hits.len(), 3, "sweep {sweep}: {} answers", tenant.tenant);
        }
        if progress.iter().all(|t| t.progress.switched) {
            break;
        }
    }
    assert_eq!(switched_in.len(), 2, "{switched_in:?}");
    assert!(
        switched_in[0].1 < switched_in[1].1,
        "one tenant switches before the other finishes: {switched_in:?}"
    );

    // Now the real model answers, by meaning.
    let hits = vector_search(&changing, "harbour", BY_MEANING).await;
    assert_eq!(hits[0].source_key, "uploads/harbour/fog-signals.txt");
    // The next model was billed to the tenants whose chunks it embedded.
    let embedded_for: Vec<String> = test_db
        .column(
            "SELECT DISTINCT tenant FROM upload_pipeline.cost_ledger
              WHERE model = 'all-MiniLM-L6-v2' ORDER BY tenant",
        )
        .await;
    assert_eq!(embedded_for, TENANTS);

    // A switched tenant's new documents are embedded by the next model.
    let new = ScratchDir::new();
    new.write(
        "bells.txt",
        "Bell buoys ring with the swell; a gong buoy answers from the bar.\n",
    );
    let (_, outcomes) = ingest_locally(&changing, "harbour", std::slice::from_ref(&new.0)).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(models_of(&test_db, "harbour").await, [MINILM]);
    let report = reembed::advance_model_change(pipeline, 100).await.unwrap();
    assert_eq!(report.embedded, 0, "nothing was left to build");

    // Every tenant switched: the next model becomes the deployment's.
    let after = test_db.config(&borrowed(&local_vars("")));
    let migrated = db::schema::migrate(&after.database).await.unwrap();
    assert!(migrated.applied.is_empty(), "{:?}", migrated.applied);
    let hits = vector_search(&after, "quay", BY_MEANING).await;
    assert_eq!(hits[0].source_key, "uploads/quay/fog-signals.txt");
    let (_, outcomes) = ingest_locally(&after, "quay", std::slice::from_ref(&new.0)).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(models_of(&test_db, "quay").await, [MINILM]);
    test_db
}

#[tokio::test]
async fn a_chunk_the_next_model_refuses_holds_back_its_own_tenant_only() {
    let current = current_vars("384");
    let test_db = TestDb::migrated(&borrowed(&current)).await;
    let config = test_db.config(&borrowed(&current));
    let (_, outcomes) = ingest_locally(&config, "harbour", &[samples_dir()]).await;
    assert_eq!(outcomes.len(), 4);
    // Chunked for a bigger window than the next model's (254 tokens).
    let mut big_chunks = current.clone();
    big_chunks.retain(|(name, _)| !name.starts_with("CHUNK_"));
    big_chunks.push(("CHUNK_TOKENS", "1000".into()));
    let big_chunks = test_db.config(&borrowed(&big_chunks));
    let long = ScratchDir::new();
    let paragraph = "The keeper trims the wick and logs the weather at every watch. ".repeat(40);
    long.write("log.txt", format!("Short note.\n\n{paragraph}\n"));
    let (_, outcomes) = ingest_locally(&big_chunks, "quay", std::slice::from_ref(&long.0)).await;
    assert!(outcomes.values().all(|o| o.state == JobState::Complete));

    let mut changing_vars = current.clone();
    changing_vars.extend(local_vars("NEXT_"));
    let changing = test_db.config(&borrowed(&changing_vars));
    let local =
        LocalPipeline::new(&changing, db::connect(&changing.database).await.unwrap()).unwrap();
    let report = reembed::advance_model_change(local.pipeline(), 100)
        .await
        .unwrap();
    assert_eq!(report.switched, [("harbour".to_string(), 9)]);
    let progress = reembed::model_change_progress(local.pipeline())
        .await
        .unwrap();
    let quay = progress.iter().find(|t| t.tenant == "quay").unwrap();
    assert!(
        !quay.progress.switched && quay.progress.ready < quay.progress.chunks,
        "{quay:?}"
    );
    assert_eq!(models_of(&test_db, "quay").await, [MOCK_EMBEDDING_MODEL]);
    assert!(
        !vector_search(&changing, "quay", "keeper weather")
            .await
            .is_empty()
    );
    // The change undone half-way: the switched tenant is told, not shown nothing.
    let err = docpipe_tests::search_in_mode(
        &config,
        "harbour",
        "fog horn",
        3,
        json!({}),
        SearchMode::Vector,
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("tenant harbour searches vectors of all-MiniLM-L6-v2, which neither"),
        "{err}"
    );
}
