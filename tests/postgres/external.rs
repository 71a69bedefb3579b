//! The external-service clients against the mock servers over real HTTP: each
//! fault knob, the tokens-per-minute limit, the circuit breaker, hybrid
//! fallback, the budget and request cap that make jobs wait, and LlamaParse's
//! submit / check-later / result cycle.

use docpipe_core::JobState;
use docpipe_core::db;
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::external::breaker::BreakerState;
use docpipe_core::settings::{Env, Parts, PipelineSettings, SweepPolicy};
use docpipe_core::store::status;
use docpipe_core::{Error, Rejection};
use docpipe_ingest::drivers::local::LocalPipeline;
use docpipe_ingest::embedding::mock;
use docpipe_ingest::embedding::openai::OpenAiEmbedder;
use docpipe_ingest::pipeline::Pipeline;
use docpipe_ingest::pipeline::sweeper;
use docpipe_mocks::faults::{Fault, FaultKnobs};
use docpipe_mocks::llamaparse::MockLlamaParseConfig;
use docpipe_mocks::openai::{MockOpenAi, MockOpenAiConfig};
use docpipe_search::SearchMode;
use docpipe_tests::{
    Outage, ScratchDir, TestDb, ingest_locally, samples_dir, search_as, search_in_mode,
    spawn_llamaparse, spawn_openai,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIMS: &str = "64";

/// Settings for an OpenAI-compatible embedder at `url`, plus `more`.
fn openai<'a>(url: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_BASE_URL", url),
        ("EMBEDDING_DIMS", DIMS),
    ];
    vars.extend_from_slice(more);
    vars
}

/// The OpenAI provider at `url`, with `vars` over the defaults.
fn config(url: &str, vars: &[(&str, &str)]) -> PipelineSettings {
    let defaults = openai(
        url,
        &[
            ("DATABASE_URL", "postgres://unused"),
            ("EXTERNAL_FIRST_BACKOFF_MS", "10"),
        ],
    );
    let env = Env::from_pairs(defaults.into_iter().chain(vars.iter().copied()));
    PipelineSettings::load(&env, Parts::EMBED).unwrap()
}

async fn mock_with(faults: FaultKnobs) -> (String, Arc<MockOpenAi>) {
    spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        faults,
        ..MockOpenAiConfig::default()
    })
    .await
}

fn client(url: &str, vars: &[(&str, &str)]) -> OpenAiEmbedder {
    let config = config(url, vars);
    OpenAiEmbedder::new(config.embedding(), &config.external).unwrap()
}

const TEXTS: [&str; 3] = ["the fog horn", "a lighthouse keeper", "spring tides"];

fn inputs() -> Vec<EmbedInput<'static>> {
    TEXTS
        .iter()
        .map(|text| EmbedInput { text, tokens: 4 })
        .collect()
}

/// What `docpipe status` shows.
async fn overview(config: &PipelineSettings) -> status::Overview {
    let pool = db::connect(&config.database).await.unwrap();
    status::overview(&pool.get().await.unwrap()).await.unwrap()
}

fn injected(mock: &MockOpenAi, fault: Fault) -> usize {
    mock.faults
        .injected()
        .iter()
        .filter(|f| **f == fault)
        .count()
}

#[tokio::test]
async fn server_errors_and_malformed_bodies_are_retried_until_they_pass() {
    let (url, mock) = mock_with(FaultKnobs {
        error_rate: 0.3,
        malformed_rate: 0.2,
        seed: 11,
        ..FaultKnobs::default()
    })
    .await;
    let client = client(&url, &[("EXTERNAL_MAX_ATTEMPTS", "10")]);
    for _ in 0..20 {
        let embeddings = client.embed(&inputs()).await.unwrap();
        assert_eq!(embeddings.vectors.len(), 3);
        assert_eq!(embeddings.vectors[1], mock::vector(TEXTS[1], 64));
    }
    assert!(injected(&mock, Fault::ServerError) >= 3);
    assert!(injected(&mock, Fault::Malformed) >= 2);
    assert_eq!(mock.accepted().len(), 20, "each batch accepted once");
}

#[tokio::test]
async fn rate_limited_requests_wait_for_retry_after() {
    let (url, mock) = mock_with(FaultKnobs {
        rate_limit_rate: 0.5,
        retry_after_secs: 1,
        seed: 3,
        ..FaultKnobs::default()
    })
    .await;
    let client = client(&url, &[("EXTERNAL_MAX_ATTEMPTS", "10")]);
    let start = Instant::now();
    for _ in 0..4 {
        client.embed(&inputs()).await.unwrap();
    }
    let limited = injected(&mock, Fault::RateLimited) as u32;
    assert!(limited >= 1, "seed 3 injects 429s");
    assert!(
        start.elapsed() >= Duration::from_millis(950) * limited,
        "{limited} × Retry-After: 1 must be waited out, took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn wrong_dimensions_fail_the_batch_for_good() {
    let (url, _mock) = mock_with(FaultKnobs {
        wrong_dims_rate: 1.0,
        ..FaultKnobs::default()
    })
    .await;
    let error = client(&url, &[]).embed(&inputs()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Rejected(Rejection::EmbeddingInvalid { detail })
            if detail == "vector of 63 dimensions, expected 64 (EMBEDDING_DIMS)"),
        "{error}"
    );
}

#[tokio::test]
async fn hung_requests_time_out_and_latency_is_waited_out() {
    let (url, mock) = mock_with(FaultKnobs {
        timeout_rate: 1.0,
        hang_secs: 5,
        ..FaultKnobs::default()
    })
    .await;
    let client = client(
        &url,
        &[
            ("EMBEDDING_TIMEOUT_SECS", "1"),
            ("EXTERNAL_MAX_ATTEMPTS", "2"),
        ],
    );
    let start = Instant::now();
    let error = client.embed(&inputs()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("embeddings request timed out"),
        "{error}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(injected(&mock, Fault::Hang), 2);

    mock.faults.set_knobs(FaultKnobs {
        latency_ms: 300,
        ..FaultKnobs::default()
    });
    let start = Instant::now();
    client.embed(&inputs()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn the_client_paces_itself_under_the_providers_token_limit() {
    // 3 000 tokens a second at the mock. The client's limit is per minute, and
    // its rate is that limit less its burst (one 500-token request): told
    // 120 000, it sends ~1 992 a second, ~2 500 in any second with the burst.
    // That is a request's worth under the mock's limit, so a request held up
    // by a busy machine and sent beside the next one still gets through (told
    // 150 500, the worst second was exactly 3 000, and CI saw a 429).
    let (url, mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        tokens_per_window: Some(3000),
        limit_window: Duration::from_secs(1),
        ..MockOpenAiConfig::default()
    })
    .await;
    let client = Arc::new(client(
        &url,
        &[
            ("EMBEDDING_TPM", "120000"),
            ("EMBEDDING_MAX_REQUEST_TOKENS", "500"),
            ("EXTERNAL_MAX_ATTEMPTS", "20"),
        ],
    ));
    // 12 concurrent batches of 500 real tokens each: 6 000 tokens, ~2.76 s of
    // quota after the burst.
    let text = "word ".repeat(500);
    let tokens = docpipe_core::tokens::tokenizer()
        .encode_ordinary(&text)
        .len() as u32;
    let start = Instant::now();
    let batches = (0..12).map(|_| {
        let client = client.clone();
        let text = text.clone();
        tokio::spawn(async move {
            client
                .embed(&[EmbedInput {
                    text: &text,
                    tokens,
                }])
                .await
                .map(|e| e.billed_tokens)
        })
    });
    let billed: u64 = futures::future::join_all(batches)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .sum();
    let elapsed = start.elapsed();
    assert_eq!(
        billed,
        12 * u64::from(tokens),
        "no batch lost or paid twice"
    );
    // Paced by the client, not by 429s, and the run took as
    // long as the quota needs (the first 500 tokens are the burst).
    assert_eq!(mock.accepted().len(), 12, "each batch accepted once");
    assert_eq!(mock.rate_limited(), 0, "the client kept under the limit");
    assert!(elapsed >= Duration::from_millis(2600), "{elapsed:?}");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_closes_after_a_good_probe() {
    let (url, mock) = mock_with(FaultKnobs {
        error_rate: 1.0,
        ..FaultKnobs::default()
    })
    .await;
    let client = client(
        &url,
        &[
            ("BREAKER_THRESHOLD", "3"),
            ("BREAKER_COOLDOWN_SECS", "1"),
            ("EXTERNAL_MAX_ATTEMPTS", "1"),
        ],
    );
    for _ in 0..3 {
        assert!(client.embed(&inputs()).await.unwrap_err().is_transient());
    }
    assert_eq!(client.services()[0].breaker.state(), BreakerState::Open);
    let start = Instant::now();
    let error = client.embed(&inputs()).await.unwrap_err();
    assert!(
        error.to_string().contains("circuit breaker is open"),
        "{error}"
    );
    assert!(start.elapsed() < Duration::from_millis(100), "fails fast");
    assert_eq!(injected(&mock, Fault::ServerError), 3, "no call while open");

    mock.faults.set_knobs(FaultKnobs::default());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.embed(&inputs()).await.unwrap();
    assert_eq!(client.services()[0].breaker.state(), BreakerState::Closed);
}

/// What an operator sees: the state the breaker was last reported in by
/// any instance, the instance that hit the outage or a later one that found
/// the service well.
#[tokio::test]
async fn status_shows_the_breaker_an_outage_opened_until_an_instance_finds_the_service_well() {
    let (url, mock) = mock_with(FaultKnobs {
        error_rate: 1.0,
        ..FaultKnobs::default()
    })
    .await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let config = test_db.config(&openai(
        &url,
        &[
            ("BREAKER_THRESHOLD", "2"),
            ("BREAKER_COOLDOWN_SECS", "60"),
            ("EXTERNAL_MAX_ATTEMPTS", "1"),
        ],
    ));
    let breakers = async || {
        overview(&config)
            .await
            .breakers
            .into_iter()
            .map(|b| (b.service, b.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(breakers().await, [], "nothing reported before any call");

    let samples = samples_dir();
    let (_, outcomes) = ingest_locally(&config, "acme", &[samples.join("fog-signals.txt")]).await;
    let outcome = &outcomes["uploads/acme/fog-signals.txt"];
    assert_eq!(outcome.error_code.as_deref(), Some("retries_exhausted"));
    let detail: Vec<String> = test_db
        .column("SELECT error_detail FROM upload_pipeline.upload_jobs")
        .await;
    assert!(detail[0].contains("circuit breaker is open"), "{detail:?}");
    assert_eq!(
        breakers().await,
        [("openai".to_string(), "open".to_string())]
    );

    // The outage ends; a new instance (a fresh process) calls and reports.
    mock.faults.set_knobs(FaultKnobs::default());
    let (_, outcomes) = ingest_locally(&config, "acme", &[samples.join("tide-tables.md")]).await;
    assert_eq!(
        outcomes["uploads/acme/tide-tables.md"].state,
        JobState::Complete
    );
    assert_eq!(
        breakers().await,
        [("openai".to_string(), "closed".to_string())]
    );
}

async fn chunk_models(test_db: &TestDb) -> Vec<String> {
    test_db
        .column("SELECT DISTINCT model FROM upload_pipeline.document_chunks ORDER BY 1")
        .await
}

#[tokio::test]
async fn hybrid_falls_back_to_the_mock_outside_production_and_replaces_it_later() {
    let (url, mock) = mock_with(FaultKnobs {
        error_rate: 1.0,
        ..FaultKnobs::default()
    })
    .await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let vars = openai(
        &url,
        &[
            ("SERVICE_MODE", "hybrid"),
            ("DOCPIPE_ENVIRONMENT", "dev"),
            ("EXTERNAL_MAX_ATTEMPTS", "1"),
        ],
    );
    let config = test_db.config(&vars);
    let (_, outcomes) = ingest_locally(&config, "acme", &[samples_dir()]).await;
    assert!(
        outcomes.values().all(|o| o.state == JobState::Complete),
        "{outcomes:?}"
    );
    assert_eq!(chunk_models(&test_db).await, [mock::MODEL]);

    // The provider is back: the sweeper swaps every fallback vector for a real one.
    mock.faults.set_knobs(FaultKnobs::default());
    let pool = db::connect(&config.database).await.unwrap();
    let local = LocalPipeline::new(&config, pool).unwrap();
    let pipeline: &Pipeline = local.pipeline();
    let report = sweeper::sweep(pipeline, &SweepPolicy::default())
        .await
        .unwrap();
    let chunks = test_db.count("document_chunks").await as u64;
    assert_eq!(report.replaced_fallback_vectors, chunks);
    assert_eq!(chunk_models(&test_db).await, ["text-embedding-3-small"]);
    let vector: Vec<pgvector::Vector> = test_db
        .column(
            "SELECT embedding FROM upload_pipeline.document_chunks WHERE chunk_index = 0 LIMIT 1",
        )
        .await;
    assert_eq!(vector[0].as_slice().len(), 64);

    // In production, hybrid never falls back: the same outage fails the jobs.
    mock.faults.set_knobs(FaultKnobs {
        error_rate: 1.0,
        ..FaultKnobs::default()
    });
    let production = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let mut vars = vars.to_vec();
    vars.push(("DOCPIPE_ENVIRONMENT", "production")); // the later setting wins
    let (_, outcomes) = ingest_locally(&production.config(&vars), "acme", &[samples_dir()]).await;
    assert!(
        outcomes
            .values()
            .all(|o| o.state == JobState::Failed
                && o.error_code.as_deref() == Some("retries_exhausted")),
        "{outcomes:?}"
    );
    assert_eq!(production.count("document_chunks").await, 0);
}

#[tokio::test]
async fn past_the_daily_budget_jobs_wait_and_resume_when_spending_may_go_on() {
    let (url, _mock) = mock_with(FaultKnobs::default()).await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let vars = |budget: &'static str| {
        openai(
            &url,
            &[
                ("EMBEDDING_USD_PER_MILLION_TOKENS", "1000"),
                ("DAILY_BUDGET_USD", budget),
            ],
        )
    };
    let samples = samples_dir();
    let first = samples.join("fog-signals.txt");
    let config = test_db.config(&vars("0.01"));
    let (_, outcomes) = ingest_locally(&config, "acme", &[first]).await;
    assert!(outcomes.values().all(|o| o.state == JobState::Complete));
    let spent: Vec<f64> = test_db
        .column("SELECT sum(usd)::float8 FROM upload_pipeline.cost_ledger")
        .await;
    assert!(
        spent[0] > 0.01,
        "the first document spent the budget: {spent:?}"
    );

    let second = samples.join("tide-tables.md");
    let (_, outcomes) = ingest_locally(&config, "acme", &[second]).await;
    let waiting = &outcomes["uploads/acme/tide-tables.md"];
    assert_eq!(waiting.state, JobState::Chunked, "waits, does not fail");
    let reasons: Vec<String> = test_db
        .column("SELECT waiting_reason FROM upload_pipeline.upload_jobs WHERE waiting_reason IS NOT NULL")
        .await;
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with("daily budget reached"),
        "{}",
        reasons[0]
    );

    // A new day (simulated) with a larger budget: the sweeper sends it on.
    test_db
        .client()
        .await
        .execute(
            "UPDATE upload_pipeline.upload_jobs SET waiting_until = now() WHERE waiting_until IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let config = test_db.config(&vars("100"));
    let pool = db::connect(&config.database).await.unwrap();
    let mut local = LocalPipeline::new(&config, pool).unwrap();
    let report = sweeper::sweep(local.pipeline(), &SweepPolicy::default())
        .await
        .unwrap();
    assert_eq!(report.unpaused.len(), 1);
    local.run(Vec::new(), |_| {}).await;
    let states: Vec<String> = test_db
        .column("SELECT state FROM upload_pipeline.upload_jobs ORDER BY source_key")
        .await;
    assert_eq!(states, ["complete", "complete"]);
}

#[tokio::test]
async fn the_hourly_request_cap_stops_new_calls() {
    let (url, mock) = mock_with(FaultKnobs::default()).await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let config = test_db.config(&openai(
        &url,
        &[("HOURLY_REQUEST_CAP", "1"), ("DB_POOL_SIZE", "1")],
    ));
    let samples = samples_dir();
    let files = [
        samples.join("fog-signals.txt"),
        samples.join("tide-tables.md"),
    ];
    let (_, outcomes) = ingest_locally(&config, "acme", &files).await;
    let mut states: Vec<&str> = outcomes.values().map(|o| o.state.as_str()).collect();
    states.sort();
    assert_eq!(states, ["chunked", "complete"], "{outcomes:?}");
    assert_eq!(mock.accepted().len(), 1, "one request, then the cap");
    let waiting = overview(&config).await.waiting;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].jobs, 1);
    assert!(
        waiting[0]
            .reason
            .starts_with("hourly request cap reached: 1 requests"),
        "{waiting:?}"
    );
}

#[tokio::test]
async fn llamaparse_documents_are_submitted_once_checked_later_and_billed_by_page() {
    let (url, mock) = spawn_llamaparse(MockLlamaParseConfig {
        api_key: Some("llx-test".into()),
        processing_delay: Duration::from_millis(1500),
        faults: FaultKnobs {
            error_rate: 0.2,
            rate_limit_rate: 0.1,
            retry_after_secs: 1,
            seed: 5,
            ..FaultKnobs::default()
        },
    })
    .await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let config = test_db.config(&[
        ("EMBEDDING_DIMS", DIMS),
        ("PARSER", "llamaparse"),
        ("LLAMA_CLOUD_API_KEY", "llx-test"),
        ("LLAMAPARSE_BASE_URL", &url),
        ("LLAMAPARSE_EXTENSIONS", "pdf,md"),
        ("LLAMAPARSE_FIRST_POLL_SECS", "1"),
        ("EXTERNAL_MAX_ATTEMPTS", "10"),
        ("EXTERNAL_FIRST_BACKOFF_MS", "10"),
    ]);
    let scratch = ScratchDir::new();
    let broken = scratch.write("broken.pdf", b"%PDF-1.4 truncated");
    let (_, outcomes) = ingest_locally(&config, "acme", &[samples_dir(), broken]).await;
    for (key, outcome) in &outcomes {
        let expected = if key.ends_with("broken.pdf") {
            JobState::Failed
        } else {
            JobState::Complete
        };
        assert_eq!(
            outcome.state, expected,
            "{key}: {:?}",
            outcome.error_message
        );
    }
    let broken = &outcomes["uploads/acme/broken.pdf"];
    assert_eq!(broken.error_code.as_deref(), Some("parse_failed"));
    assert_eq!(
        broken.error_message.as_deref(),
        Some("LlamaParse could not parse the document; the operators have its answer"),
    );
    let detail: Vec<String> = test_db
        .column("SELECT error_detail FROM upload_pipeline.upload_jobs WHERE error_code = 'parse_failed'")
        .await;
    assert!(
        detail[0].starts_with("LlamaParse could not parse the document: PDF cannot be read"),
        "{detail:?}"
    );
    assert_eq!(mock.submitted(), 3, "pdf, md and the broken pdf, each once");
    assert!(
        !mock.faults.injected().is_empty(),
        "faults were injected and survived"
    );

    let pages: Vec<String> = test_db
        .column(
            "SELECT source_key || ' ' || units || ' ' || usd::text FROM upload_pipeline.cost_ledger l
               JOIN upload_pipeline.upload_jobs j ON j.id = l.job_id
              WHERE unit = 'pages' ORDER BY 1",
        )
        .await;
    assert_eq!(
        pages,
        [
            "uploads/acme/lighthouse-handbook.pdf 2 0.006000",
            "uploads/acme/tide-tables.md 1 0.003000"
        ]
    );
    let submitted: Vec<i64> = test_db
        .column("SELECT count(*) FROM upload_pipeline.events WHERE action = 'parse_submitted'")
        .await;
    assert_eq!(submitted, [3]);
    let hits = search_as(&config, "acme", "Fresnel lens bends the light", 1).await;
    assert_eq!(hits[0].source_key, "uploads/acme/lighthouse-handbook.pdf");
}

#[tokio::test]
async fn a_llamaparse_job_that_never_finishes_fails_the_document() {
    let (url, mock) = spawn_llamaparse(MockLlamaParseConfig {
        api_key: None,
        processing_delay: Duration::from_secs(3600),
        faults: FaultKnobs::default(),
    })
    .await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let config = test_db.config(&[
        ("EMBEDDING_DIMS", DIMS),
        ("PARSER", "llamaparse"),
        ("LLAMA_CLOUD_API_KEY", "llx-test"),
        ("LLAMAPARSE_BASE_URL", &url),
        ("LLAMAPARSE_FIRST_POLL_SECS", "1"),
        ("LLAMAPARSE_MAX_POLL_SECS", "1"),
        ("LLAMAPARSE_JOB_TIMEOUT_SECS", "2"),
    ]);
    let pdf = samples_dir().join("lighthouse-handbook.pdf");
    let (_, outcomes) = ingest_locally(&config, "acme", &[pdf]).await;
    let outcome = &outcomes["uploads/acme/lighthouse-handbook.pdf"];
    assert_eq!(outcome.state, JobState::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("parse_timeout"));
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("LlamaParse did not finish within 2 s (LLAMAPARSE_JOB_TIMEOUT_SECS)")
    );
    assert_eq!(mock.submitted(), 1);
}

/// Tokens each tenant was billed for, from the ledger.
async fn billed_tokens(test_db: &TestDb, tenant: &str) -> i64 {
    let rows = test_db
        .client()
        .await
        .query(
            "SELECT coalesce(sum(units), 0)::int8 FROM upload_pipeline.cost_ledger
              WHERE tenant = $1 AND unit = 'tokens'",
            &[&tenant],
        )
        .await
        .unwrap();
    rows[0].get(0)
}

#[tokio::test]
async fn a_tenant_never_learns_from_its_bill_what_another_holds() {
    let (url, _mock) = mock_with(FaultKnobs::default()).await;
    let samples = samples_dir();
    let paragraph = [samples.join("fog-signals.txt")];

    // Per tenant (the default): the same text is billed to each tenant that sends it.
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let config = test_db.config(&openai(&url, &[]));
    ingest_locally(&config, "acme", &paragraph).await;
    let acme = billed_tokens(&test_db, "acme").await;
    assert!(acme > 0);
    let (_, outcomes) = ingest_locally(&config, "globex", &paragraph).await;
    assert!(outcomes.values().all(|o| o.state == JobState::Complete));
    assert_eq!(
        billed_tokens(&test_db, "globex").await,
        acme,
        "globex pays for its own copy: its bill says nothing of acme's"
    );
    // Its own re-upload under another name is a cache hit, as before.
    let scratch = ScratchDir::new();
    let copy = scratch.write("copy.txt", std::fs::read(&paragraph[0]).unwrap());
    ingest_locally(&config, "globex", std::slice::from_ref(&copy)).await;
    assert_eq!(billed_tokens(&test_db, "globex").await, acme);

    // Shared within a trust domain, when configured: paid once.
    let shared_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let shared = shared_db.config(&openai(&url, &[("EMBEDDING_CACHE_SCOPE", "shared")]));
    ingest_locally(&shared, "acme", &paragraph).await;
    ingest_locally(&shared, "globex", &paragraph).await;
    assert_eq!(billed_tokens(&shared_db, "acme").await, acme);
    assert_eq!(billed_tokens(&shared_db, "globex").await, 0);
}

#[tokio::test]
async fn search_spends_within_the_tenants_budget_and_stops_only_that_tenant() {
    let (url, mock) = mock_with(FaultKnobs::default()).await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    // $1 per thousand tokens; each tenant may spend a cent a day.
    let config = test_db.config(&openai(
        &url,
        &[
            ("EMBEDDING_USD_PER_MILLION_TOKENS", "1000"),
            ("TENANT_DAILY_BUDGET_USD", "0.01"),
        ],
    ));
    let pool = db::connect(&config.database).await.unwrap();
    let parts = docpipe_tests::search_parts(&config);
    let search = async |tenant: &str| {
        let query = "where does the fog signal sound at neap tides in the harbour";
        let filter = Default::default();
        let query = docpipe_search::Query {
            text: query,
            top_k: 3,
            mode: Default::default(),
            filter: &filter,
            context: None,
            rerank: true,
        };
        docpipe_search::search(&pool, &parts, tenant, &query).await
    };
    search("acme").await.unwrap();
    let sent = mock
        .accepted()
        .iter()
        .map(|(_, tokens)| tokens)
        .sum::<u64>();
    assert!(sent > 10, "the query's tokens: {sent}");
    assert_eq!(
        billed_tokens(&test_db, "acme").await,
        sent as i64,
        "the search's tokens are in the ledger"
    );
    // Over its cent: acme's next search is refused before any call goes out.
    let refused = search("acme").await.unwrap_err();
    let Error::Waiting(wait) = refused else {
        panic!("{refused}")
    };
    assert!(wait.reason.contains("tenant acme"), "{}", wait.reason);
    assert_eq!(mock.accepted().len(), 1);
    // Another tenant searches on.
    search("globex").await.unwrap();
    assert_eq!(mock.accepted().len(), 2);
    // An override in tenant_limits lifts acme's budget.
    test_db
        .client()
        .await
        .execute(
            "INSERT INTO upload_pipeline.tenant_limits (tenant, daily_budget_usd) VALUES ('acme', 1)",
            &[],
        )
        .await
        .unwrap();
    search("acme").await.unwrap();
}

/// How long the database stays away once the provider has a paid request.
const OUTAGE: Duration = Duration::from_secs(2);

/// A migrated database, and settings (`vars`) whose pipeline reaches it
/// through a proxy the test can take down.
async fn behind_a_proxy(vars: &[(&str, &str)]) -> (TestDb, Outage, PipelineSettings) {
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let outage = Outage::proxy_to(&test_db.server_address()).await;
    let url = test_db.url_through(&outage);
    let mut vars = vars.to_vec();
    vars.extend([("EMBEDDING_DIMS", DIMS), ("DATABASE_URL", &url)]);
    let config = test_db.config(&vars);
    (test_db, outage, config)
}

/// Takes the database away the moment `provider_has_it` says the provider
/// has a paid request, for [`OUTAGE`]: the answer comes while it is away.
async fn away_while_the_provider_answers(
    outage: &Outage,
    mut provider_has_it: impl AsyncFnMut() -> bool,
) {
    let start = Instant::now();
    while !provider_has_it().await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no paid request came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    outage.down().await;
    tokio::time::sleep(OUTAGE).await;
    outage.up();
}

/// The ledger's units of `service`, and its rows not settled with the
/// provider's figure.
async fn ledger_of(test_db: &TestDb, service: &str) -> (i64, i64) {
    let row = test_db
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(units), 0)::int8, count(*) FILTER (WHERE settlement <> 'settled')
               FROM upload_pipeline.cost_ledger WHERE service = $1",
            &[&service],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn tokens_accepted(mock: &MockOpenAi) -> i64 {
    mock.accepted()
        .iter()
        .map(|(_, tokens)| *tokens as i64)
        .sum()
}

/// Answers after 600 ms: long enough to take the database away meanwhile.
fn slow() -> FaultKnobs {
    FaultKnobs {
        latency_ms: 600,
        ..FaultKnobs::default()
    }
}

#[tokio::test]
async fn embeddings_answered_while_the_database_is_away_are_billed_once_and_paid_once() {
    let (url, mock) = mock_with(slow()).await;
    let (test_db, outage, config) = behind_a_proxy(&openai(&url, &[])).await;
    let fog = [samples_dir().join("fog-signals.txt")];
    let ((_, outcomes), ()) = tokio::join!(
        ingest_locally(&config, "acme", &fog),
        away_while_the_provider_answers(&outage, async || mock.requests() > 0),
    );
    assert!(
        outcomes.values().all(|o| o.state == JobState::Complete),
        "{outcomes:?}"
    );
    assert_eq!(mock.accepted().len(), 1, "paid once: its vectors were kept");
    assert_eq!(
        ledger_of(&test_db, "openai").await,
        (tokens_accepted(&mock), 0)
    );
}

#[tokio::test]
async fn a_search_answered_while_the_database_is_away_is_billed_once() {
    let (url, mock) = mock_with(FaultKnobs::default()).await;
    let rerank = docpipe_mocks::rerank::MockRerank::new(None, FaultKnobs::default());
    let rerank_url = format!("http://{}", docpipe_tests::serve(rerank.router()).await);
    let vars = openai(
        &url,
        &[
            ("RERANK_PROVIDER", "cohere"),
            ("RERANK_BASE_URL", &rerank_url),
            ("RERANK_API_KEY", "rk-test"),
        ],
    );
    let (test_db, outage, config) = behind_a_proxy(&vars).await;
    ingest_locally(&config, "acme", &[samples_dir()]).await;
    let query = "where does the fog signal sound at neap tides";
    let search = async |mode| search_in_mode(&config, "acme", query, 3, json!({}), mode).await;

    // The query's embedding, answered while the database is away.
    mock.faults.set_knobs(slow());
    let paid = mock.requests();
    let (hits, ()) = tokio::join!(
        search(SearchMode::Vector),
        away_while_the_provider_answers(&outage, async || mock.requests() > paid),
    );
    assert!(!hits.unwrap().is_empty());
    assert_eq!(
        ledger_of(&test_db, "openai").await,
        (tokens_accepted(&mock), 0)
    );

    // The rerank, answered while the database is away.
    mock.faults.set_knobs(FaultKnobs::default());
    rerank.faults.set_knobs(slow());
    let (hits, ()) = tokio::join!(
        search(SearchMode::Hybrid),
        away_while_the_provider_answers(&outage, async || rerank.requests() > 1),
    );
    assert!(!hits.unwrap().is_empty());
    assert_eq!(rerank.requests(), 2);
    assert_eq!(ledger_of(&test_db, "rerank").await, (2, 0));
    assert_eq!(
        ledger_of(&test_db, "openai").await,
        (tokens_accepted(&mock), 0)
    );
}

#[tokio::test]
async fn fallback_vectors_replaced_while_the_database_is_away_are_billed_once() {
    let (url, mock) = mock_with(FaultKnobs {
        error_rate: 1.0,
        ..FaultKnobs::default()
    })
    .await;
    let vars = openai(
        &url,
        &[
            ("SERVICE_MODE", "hybrid"),
            ("DOCPIPE_ENVIRONMENT", "dev"),
            ("EXTERNAL_MAX_ATTEMPTS", "1"),
        ],
    );
    let (test_db, outage, config) = behind_a_proxy(&vars).await;
    ingest_locally(&config, "acme", &[samples_dir().join("fog-signals.txt")]).await;
    assert_eq!(chunk_models(&test_db).await, [mock::MODEL]);

    mock.faults.set_knobs(slow());
    let refused = mock.requests();
    let pool = db::connect(&config.database).await.unwrap();
    let local = LocalPipeline::new(&config, pool).unwrap();
    let policy = SweepPolicy::default();
    let (report, ()) = tokio::join!(
        sweeper::sweep(local.pipeline(), &policy),
        away_while_the_provider_answers(&outage, async || mock.requests() > refused),
    );
    // The sweep's own work after the call may have met the outage: the next one ends it.
    if report.is_err() || chunk_models(&test_db).await != ["text-embedding-3-small"] {
        sweeper::sweep(local.pipeline(), &SweepPolicy::default())
            .await
            .unwrap();
    }
    assert_eq!(chunk_models(&test_db).await, ["text-embedding-3-small"]);
    assert_eq!(mock.accepted().len(), 1, "paid once: its vectors were kept");
    assert_eq!(
        ledger_of(&test_db, "openai").await,
        (tokens_accepted(&mock), 0)
    );
}

#[tokio::test]
async fn a_llamaparse_job_answered_while_the_database_is_away_is_billed_once() {
    let (url, mock) = spawn_llamaparse(MockLlamaParseConfig {
        api_key: Some("llx-test".into()),
        processing_delay: Duration::from_millis(500),
        faults: FaultKnobs::default(),
    })
    .await;
    let vars = [
        ("PARSER", "llamaparse"),
        ("LLAMA_CLOUD_API_KEY", "llx-test"),
        ("LLAMAPARSE_BASE_URL", &url),
        ("LLAMAPARSE_EXTENSIONS", "md"),
        ("LLAMAPARSE_FIRST_POLL_SECS", "1"),
    ];
    let (test_db, outage, config) = behind_a_proxy(&vars).await;
    let tides = [samples_dir().join("tide-tables.md")];
    let ((_, outcomes), ()) = tokio::join!(
        ingest_locally(&config, "acme", &tides),
        away_while_the_provider_answers(&outage, async || mock.submitted() > 0),
    );
    assert!(
        outcomes.values().all(|o| o.state == JobState::Complete),
        "{outcomes:?}"
    );
    assert_eq!(mock.submitted(), 1);
    assert_eq!(ledger_of(&test_db, "llamaparse").await, (1, 0));
}

/// The red team's echoing provider: it answers 401 with the request's
/// `Authorization` header in its message. The tenant reads a code and what
/// failed, nowhere the key; operators read the provider's words, redacted.
#[tokio::test]
async fn a_provider_that_echoes_the_key_never_shows_it_to_anyone() {
    use axum::http::{HeaderMap, StatusCode};
    let echo = axum::Router::new().route(
        "/v1/embeddings",
        axum::routing::post(|headers: HeaderMap| async move {
            let sent = headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let message = format!("Incorrect API key provided: {sent}");
            let body = json!({"error": {"message": message, "code": "invalid_api_key"}});
            (StatusCode::UNAUTHORIZED, axum::Json(body))
        }),
    );
    let url = format!("http://{}/v1", docpipe_tests::serve(echo).await);
    let key = "sk-live-0123456789abcdefSECRET";
    let mut vars = openai(&url, &[]);
    vars.push(("OPENAI_API_KEY", key));
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let config = test_db.config(&vars);
    let fog = samples_dir().join("fog-signals.txt");
    let (_, outcomes) = ingest_locally(&config, "acme", &[fog]).await;
    let outcome = &outcomes["uploads/acme/fog-signals.txt"];
    assert_eq!(outcome.error_code.as_deref(), Some("embedding_rejected"));
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("the embedding provider refused the request; the operators have its answer")
    );
    // Nowhere in the database: not the job, its history, nor the ledger.
    let everything: Vec<String> = test_db
        .column(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM (
               SELECT to_jsonb(j) AS t FROM upload_pipeline.upload_jobs j
               UNION ALL SELECT to_jsonb(e) FROM upload_pipeline.events e) rows",
        )
        .await;
    assert!(
        !everything[0].contains("0123456789abcdef"),
        "{}",
        everything[0]
    );
    let overview = overview(&config).await;
    let detail = overview.recent_failures[0].error_detail.as_deref().unwrap();
    assert!(
        detail.contains("Incorrect API key provided: Bearer [redacted]"),
        "{detail}"
    );
}
