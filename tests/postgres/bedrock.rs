//! The Bedrock embedding client over real HTTP, with real SigV4-signed
//! requests from the AWS SDK, against mock-bedrock reached through the SDK's
//! endpoint override (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`): Cohere's batches
//! and input types, Titan's one text a call with throttling waited out, and
//! a validation error failing the job with Bedrock's reason.

use docpipe_core::JobState;
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::settings::{Env, Parts, PipelineSettings};
use docpipe_ingest::embedding::mock::vector;
use docpipe_mocks::bedrock::{COHERE_MAX_TEXTS, Invocation, MockBedrock};
use docpipe_mocks::faults::FaultKnobs;
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, serve};
use std::sync::Arc;

/// Serves mock-bedrock and points the SDK of this test's process at it.
async fn mock_bedrock(knobs: FaultKnobs) -> Arc<MockBedrock> {
    let mock = MockBedrock::new(knobs);
    let address = serve(mock.router()).await;
    // SAFETY: nextest runs each test in a process of its own, and nothing in
    // it reads the environment concurrently: the SDK reads it on first call.
    unsafe {
        std::env::set_var(
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
            format!("http://{address}"),
        );
        for (name, value) in [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ] {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
    mock
}

fn vars(model: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EMBEDDING_PROVIDER", "bedrock".into()),
        ("EMBEDDING_MODEL", model.into()),
        ("EMBEDDING_DIMS", "1024".into()),
        ("EXTERNAL_FIRST_BACKOFF_MS", "10".into()),
    ]
}

fn embedder(model: &str) -> Result<Arc<dyn Embedder>, String> {
    let mut pairs = vars(model);
    pairs.push(("DATABASE_URL", "postgres://127.0.0.1:1/unused".into()));
    let settings = PipelineSettings::load(&Env::from_pairs(pairs), Parts::EMBED).unwrap();
    docpipe_ingest::embedding::from_settings(&settings).map_err(|e| e.to_string())
}

fn inputs(texts: &[String]) -> Vec<EmbedInput<'_>> {
    texts
        .iter()
        .map(|text| EmbedInput { text, tokens: 4 })
        .collect()
}

#[tokio::test]
async fn cohere_takes_96_texts_a_call_and_embeds_queries_as_queries() {
    let mock = mock_bedrock(FaultKnobs::default()).await;
    let embedder = embedder("cohere.embed-english-v3").unwrap();
    let texts: Vec<String> = (0..200).map(|i| format!("harbour note {i}")).collect();
    let embedded = embedder.embed(&inputs(&texts)).await.unwrap();
    for (text, got) in texts.iter().zip(&embedded.vectors) {
        assert_eq!(got, &vector(text, 1024));
    }
    assert_eq!((embedded.service, embedded.requests), ("bedrock", 3));
    let query = "where is the pilot boat".to_string();
    embedder
        .embed_query(EmbedInput {
            text: &query,
            tokens: 5,
        })
        .await
        .unwrap();
    let document = |texts| Invocation {
        model: "cohere.embed-english-v3".into(),
        texts,
        input_type: Some("search_document".into()),
    };
    assert_eq!(
        mock.invocations(),
        vec![
            document(COHERE_MAX_TEXTS),
            document(COHERE_MAX_TEXTS),
            document(8),
            Invocation {
                input_type: Some("search_query".into()),
                ..document(1)
            },
        ]
    );
    // Every request was signed (an unsigned one is refused, not recorded).
    assert_eq!(mock.requests(), 4);
}

#[tokio::test]
async fn titan_sends_one_text_a_call_and_waits_out_throttling() {
    let mock = mock_bedrock(FaultKnobs {
        rate_limit_rate: 0.3,
        seed: 3,
        ..FaultKnobs::default()
    })
    .await;
    let embedder = embedder("amazon.titan-embed-text-v2:0").unwrap();
    let texts: Vec<String> = (0..20)
        .map(|i| format!("tide table {i} for spring"))
        .collect();
    let embedded = embedder.embed(&inputs(&texts)).await.unwrap();
    for (text, got) in texts.iter().zip(&embedded.vectors) {
        assert_eq!(got, &vector(text, 1024), "in input order");
    }
    let throttled = mock.requests() - 20;
    assert!(throttled > 0, "the mock throttled none");
    assert_eq!(mock.invocations().len(), 20);
    assert!(mock.invocations().iter().all(|i| i.texts == 1));
    // Titan counts the tokens it bills: five words each, in the mock.
    assert_eq!(embedded.billed_tokens, 100);
}

#[tokio::test]
async fn a_validation_error_fails_the_job_with_bedrocks_reason() {
    let mock = mock_bedrock(FaultKnobs::default()).await;
    let vars = vars("cohere.embed-multilingual-v3");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let test_db = TestDb::migrated(&vars).await;
    let dir = ScratchDir::new();
    // One paragraph of ~270 tokens: one chunk, over Cohere's 2 048 characters.
    dir.write("long.txt", "harbour ".repeat(270));
    let (_, outcomes) =
        ingest_locally(&test_db.config(&vars), "acme", std::slice::from_ref(&dir.0)).await;
    let outcome = &outcomes["uploads/acme/long.txt"];
    assert_eq!(outcome.state, JobState::Failed);
    assert_eq!(outcome.error_code.as_deref(), Some("embedding_rejected"));
    // Bedrock's words are the operators'; the tenant is told what failed.
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("the embedding provider refused the request; the operators have its answer")
    );
    let detail: Vec<String> = test_db
        .column("SELECT error_detail FROM upload_pipeline.upload_jobs")
        .await;
    assert!(
        detail[0].contains("ValidationException") && detail[0].contains("over 2048 characters"),
        "{detail:?}"
    );
    assert_eq!(mock.requests(), 1, "a refusal is not retried");
}

#[test]
fn a_model_docpipe_cannot_speak_to_is_named_at_start() {
    let err = embedder("amazon.titan-embed-text-v1").err().unwrap();
    assert!(
        err.starts_with("EMBEDDING_MODEL=\"amazon.titan-embed-text-v1\" is invalid"),
        "{err}"
    );
    let mut pairs = vars("amazon.titan-embed-text-v2:0");
    pairs.retain(|(k, _)| *k != "EMBEDDING_DIMS");
    pairs.extend([
        ("EMBEDDING_DIMS", "384".into()),
        ("DATABASE_URL", "postgres://127.0.0.1:1/unused".into()),
    ]);
    let settings = PipelineSettings::load(&Env::from_pairs(pairs), Parts::EMBED).unwrap();
    let err = docpipe_ingest::embedding::from_settings(&settings)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("[256, 512, 1024] dimensions, not 384"),
        "{err}"
    );
}

fn bedrock_reranker(model: &str) -> Arc<docpipe_search::rerank::Reranker> {
    let settings = Env::from_pairs([("RERANK_PROVIDER", "bedrock"), ("RERANK_MODEL", model)])
        .load::<docpipe_core::settings::RerankSettings>()
        .unwrap();
    let policy = Env::from_pairs([("EXTERNAL_FIRST_BACKOFF_MS", "10")])
        .load::<docpipe_core::settings::ExternalPolicy>()
        .unwrap();
    docpipe_search::rerank::from_settings(&settings, &policy)
        .unwrap()
        .expect("a reranker")
}

#[tokio::test]
async fn the_bedrock_reranker_reorders_through_signed_calls() {
    let mock = mock_bedrock(FaultKnobs {
        rate_limit_rate: 0.5,
        seed: 1,
        ..FaultKnobs::default()
    })
    .await;
    let url = std::env::var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").unwrap();
    // SAFETY: as in mock_bedrock: this test's process alone, before any call.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", url) };
    let reranker = bedrock_reranker("amazon.rerank-v1:0");
    let documents = [
        "the tide tables",
        "the harbour pump and its impeller",
        "harbour notes",
    ];
    let reranked = reranker
        .rerank("harbour pump impeller", &documents)
        .await
        .unwrap();
    let order: Vec<usize> = reranked.order.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [1, 2, 0]);
    assert_eq!(reranked.search_units, 1);
    assert!(reranked.requests >= 1);
    assert_eq!(
        mock.invocations(),
        [Invocation {
            model: "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0".into(),
            texts: 3,
            input_type: None,
        }]
    );
    // A model Bedrock cannot rerank with is refused, once, with its reason.
    let before = mock.requests();
    let err = bedrock_reranker("amazon.titan-embed-text-v2:0")
        .rerank("harbour", &documents)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ValidationException") && err.contains("is not a reranking model"),
        "{err}"
    );
    assert!(
        mock.requests() - before <= 2,
        "throttled at most once, then refused once"
    );
}
