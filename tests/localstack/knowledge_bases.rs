//! docpipe as a Bedrock knowledge base to AWS's own Rust SDK
//! (`aws-sdk-bedrockagentruntime`): only the endpoint and docpipe-issued
//! SigV4 credentials change. Retrieve with filters on Bedrock's own
//! attributes, paging, reranking, both search types, scores a threshold
//! can use, and each refusal as the SDK's modelled exception.

use aws_sdk_bedrockagentruntime::config::{Credentials, Region};
use aws_sdk_bedrockagentruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockagentruntime::operation::retrieve::{RetrieveError, RetrieveOutput};
use aws_sdk_bedrockagentruntime::types::{
    FilterAttribute, GuardrailConfiguration, KnowledgeBaseQuery,
    KnowledgeBaseRetrievalConfiguration, KnowledgeBaseVectorSearchConfiguration, RetrievalFilter,
    SearchType, VectorSearchBedrockRerankingConfiguration,
    VectorSearchBedrockRerankingModelConfiguration, VectorSearchRerankingConfiguration,
    VectorSearchRerankingConfigurationType,
};
use aws_sdk_bedrockagentruntime::{Client, config::retry::RetryConfig};
use aws_smithy_types::Document;
use docpipe_tests::local_aws::LocalAws;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

const ACME_KEY_ID: &str = "DPKACME000000000001";
const GLOBEX_KEY_ID: &str = "DPKGLOBEX0000000001";
const INITECH_KEY_ID: &str = "DPKINITECH000000001";
const SECRET: &str = "docpipe-test-secret/0123456789+abcdefghij";
const SKERRY: &str = "The fog signal at Skerry light sounds every minute in thick weather.";

type Retrieve = aws_sdk_bedrockagentruntime::operation::retrieve::builders::RetrieveFluentBuilder;

/// A Bedrock Agent Runtime client pointed at docpipe: endpoint, region and
/// key are all that differ from one pointed at AWS.
async fn client(
    base: &str,
    key_id: &str,
    secret: &str,
    region: &str,
    clock: Option<SystemTime>,
) -> Client {
    let sdk = docpipe_tests::local_aws::sdk_config().await;
    let mut config = aws_sdk_bedrockagentruntime::config::Builder::from(&sdk)
        .endpoint_url(base)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(key_id, secret, None, None, "docpipe"))
        .retry_config(RetryConfig::disabled());
    if let Some(at) = clock {
        config = config.time_source(aws_smithy_async::time::StaticTimeSource::new(at));
    }
    Client::from_conf(config.build())
}

fn query(text: &str) -> KnowledgeBaseQuery {
    KnowledgeBaseQuery::builder().text(text).build()
}

fn configured(
    search: KnowledgeBaseVectorSearchConfiguration,
) -> KnowledgeBaseRetrievalConfiguration {
    KnowledgeBaseRetrievalConfiguration::builder()
        .vector_search_configuration(search)
        .build()
}

fn attribute(key: &str, value: Document) -> FilterAttribute {
    FilterAttribute::builder()
        .key(key)
        .value(value)
        .build()
        .unwrap()
}

fn filtered(filter: RetrievalFilter, results: i32) -> KnowledgeBaseRetrievalConfiguration {
    configured(
        KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(results)
            .filter(filter)
            .build(),
    )
}

fn uris(output: &RetrieveOutput) -> Vec<String> {
    output
        .retrieval_results()
        .iter()
        .map(|result| {
            result
                .location()
                .unwrap()
                .s3_location()
                .unwrap()
                .uri()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn refused(call: Retrieve) -> RetrieveError {
    call.send().await.expect_err("refused").into_service_error()
}

#[tokio::test]
async fn bedrock_s_rust_sdk_retrieves_with_only_the_endpoint_and_keys_changed() {
    let rerank = docpipe_mocks::rerank::MockRerank::new(Some("rk-test".into()), Default::default());
    let rerank_url = format!("http://{}", docpipe_tests::serve(rerank.router()).await);
    let stack = LocalAws::start(&[
        ("RERANK_PROVIDER", "cohere"),
        ("RERANK_BASE_URL", &rerank_url),
        ("RERANK_API_KEY", "rk-test"),
    ])
    .await;
    let sigv4 = format!(
        "{ACME_KEY_ID}:{SECRET}:acme,{GLOBEX_KEY_ID}:{SECRET}:globex,{INITECH_KEY_ID}:{SECRET}:initech"
    );
    let bases = "KBACME0001:acme,KBLOGS0001:acme:logs/,KBGLOBEX01:globex,KBINITECH1:initech";
    let vars = [
        ("KNOWLEDGE_BASES", bases),
        ("SIGV4_KEYS", sigv4.as_str()),
        ("SIGV4_REGION", "us-east-1"),
    ];
    let base = stack
        .serve_api_with("acme-key-0123456789:acme", &vars)
        .await;
    let bucket = stack.resources.bucket.clone();
    let mut keys = vec![
        (
            "uploads/acme/logs/skerry.txt",
            SKERRY.to_string(),
            Some(r#"{"metadataAttributes": {"team": "harbour", "year": 2026}}"#),
        ),
        (
            "uploads/acme/notes/pump.txt",
            "The harbour pump E4711 is serviced each spring.".into(),
            Some(r#"{"metadataAttributes": {"team": "works"}}"#),
        ),
        (
            "uploads/acme/notes/tides.txt",
            "Tide tables list high water at the harbour.".into(),
            None,
        ),
        (
            "uploads/globex/plans.md",
            "Globex plans a harbour light with a fog signal.".into(),
            None,
        ),
    ];
    let fillers: Vec<String> = (0..14)
        .map(|i| format!("uploads/acme/fillers/cargo-{i}.txt"))
        .collect();
    for (i, key) in fillers.iter().enumerate() {
        keys.push((
            key,
            format!("Cargo manifest {i} lists crates of apples and barrels of oil."),
            None,
        ));
    }
    for (key, text, sidecar) in &keys {
        if let Some(sidecar) = sidecar {
            stack
                .put(&format!("{key}.metadata.json"), sidecar.to_string())
                .await;
        }
        stack.put(key, text.clone()).await;
    }
    for (key, ..) in &keys {
        stack.wait_for_state(key, "complete").await;
    }
    let acme = client(&base, ACME_KEY_ID, SECRET, "us-east-1", None).await;
    let globex = client(&base, GLOBEX_KEY_ID, SECRET, "us-east-1", None).await;
    let skerry_uri = format!("s3://{bucket}/uploads/acme/logs/skerry.txt");

    // Both search types; scores 0 to 1 that a threshold can use: the chunk
    // that is the query scores at least 0.8, a chunk sharing no word low.
    for search_type in [SearchType::Hybrid, SearchType::Semantic] {
        let search = KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(20)
            .override_search_type(search_type.clone())
            .build();
        let output = acme
            .retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query(SKERRY))
            .retrieval_configuration(configured(search))
            .send()
            .await
            .unwrap();
        let results = output.retrieval_results();
        assert_eq!(uris(&output)[0], skerry_uri, "{search_type:?}");
        let first = &results[0];
        assert!(first.score().unwrap() >= 0.8, "{search_type:?}: {first:?}");
        assert!(
            results
                .iter()
                .all(|r| (0.0..=1.0).contains(&r.score().unwrap()))
        );
        let cargo = results
            .iter()
            .find(|r| r.content().unwrap().text().starts_with("Cargo"));
        if let Some(unrelated) = cargo {
            assert!(
                unrelated.score().unwrap() < 0.5,
                "{search_type:?}: {unrelated:?}"
            );
        }
        let metadata = first.metadata().unwrap();
        assert_eq!(
            metadata["x-amz-bedrock-kb-source-uri"],
            Document::from(skerry_uri.as_str())
        );
        assert_eq!(metadata["team"], Document::from("harbour"));
        assert!(metadata.contains_key("x-amz-bedrock-kb-data-source-id"));
        assert!(uris(&output).iter().all(|uri| !uri.contains("/globex/")));
    }

    // Filters on Bedrock's own attributes, and notIn as Bedrock means it.
    let first = acme
        .retrieve()
        .knowledge_base_id("KBACME0001")
        .retrieval_query(query("fog"))
        .send()
        .await
        .unwrap();
    let data_source =
        first.retrieval_results()[0].metadata().unwrap()["x-amz-bedrock-kb-data-source-id"].clone();
    let uri_filter = RetrievalFilter::Equals(attribute(
        "x-amz-bedrock-kb-source-uri",
        Document::from(skerry_uri.as_str()),
    ));
    let not_legal = RetrievalFilter::NotIn(attribute(
        "team",
        Document::Array(vec![Document::from("legal")]),
    ));
    let other_source = RetrievalFilter::Equals(attribute(
        "x-amz-bedrock-kb-data-source-id",
        Document::from("NOTTHISONE"),
    ));
    let this_source =
        RetrievalFilter::Equals(attribute("x-amz-bedrock-kb-data-source-id", data_source));
    for (filter, expected) in [
        (uri_filter, 1),
        (not_legal, 2),
        (other_source, 0),
        (this_source, 17),
    ] {
        let output = acme
            .retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query("harbour fog signal"))
            .retrieval_configuration(filtered(filter.clone(), 100))
            .send()
            .await
            .unwrap();
        assert_eq!(
            output.retrieval_results().len(),
            expected,
            "{filter:?}: {:?}",
            uris(&output)
        );
    }

    // A knowledge base over a prefix finds that folder only.
    let logs = acme
        .retrieve()
        .knowledge_base_id("KBLOGS0001")
        .retrieval_query(query("harbour"))
        .send()
        .await
        .unwrap();
    assert_eq!(uris(&logs), [skerry_uri.as_str()]);

    // Paging: the SDK's paginator walks every page, each result once.
    let mut seen = HashSet::new();
    let mut pages = acme
        .retrieve()
        .knowledge_base_id("KBACME0001")
        .retrieval_query(query("cargo manifest"))
        .retrieval_configuration(configured(
            KnowledgeBaseVectorSearchConfiguration::builder()
                .number_of_results(3)
                .build(),
        ))
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        count += 1;
        for uri in uris(&page) {
            assert!(seen.insert(uri.clone()), "{uri} twice");
        }
    }
    assert_eq!(seen.len(), 17, "every chunk of the knowledge base, once");
    assert!(count >= 6, "{count} pages");

    // A page token is good for its own request only.
    let page = acme
        .retrieve()
        .knowledge_base_id("KBACME0001")
        .retrieval_query(query("cargo manifest"))
        .retrieval_configuration(configured(
            KnowledgeBaseVectorSearchConfiguration::builder()
                .number_of_results(3)
                .build(),
        ))
        .send()
        .await
        .unwrap();
    let token = page.next_token().unwrap().to_string();
    let forged = token.replacen('3', "4", 1);
    for (caller, base_id, token) in [
        (&acme, "KBACME0001", forged),
        (&globex, "KBGLOBEX01", token.clone()),
    ] {
        let error = refused(
            caller
                .retrieve()
                .knowledge_base_id(base_id)
                .retrieval_query(query("cargo manifest"))
                .retrieval_configuration(configured(
                    KnowledgeBaseVectorSearchConfiguration::builder()
                        .number_of_results(3)
                        .build(),
                ))
                .next_token(token),
        )
        .await;
        assert!(error.is_validation_exception(), "{error:?}");
        assert!(
            error.message().unwrap().contains("nextToken is not one"),
            "{error:?}"
        );
    }

    // Another tenant's knowledge base is as unknown as one that is not.
    let theirs = refused(
        globex
            .retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query("fog")),
    )
    .await;
    let nobody = refused(
        globex
            .retrieve()
            .knowledge_base_id("KBNOSUCH01")
            .retrieval_query(query("fog")),
    )
    .await;
    assert!(theirs.is_resource_not_found_exception() && nobody.is_resource_not_found_exception());
    assert_eq!(
        theirs.message().unwrap().replace("KBACME0001", "ID"),
        nobody.message().unwrap().replace("KBNOSUCH01", "ID")
    );

    // Bedrock's longest query is read; one character more is refused.
    let long = "fog ".repeat(5_000);
    let answered = acme
        .retrieve()
        .knowledge_base_id("KBACME0001")
        .retrieval_query(query(&long))
        .send()
        .await;
    assert!(answered.is_ok(), "{answered:?}");
    let longer = refused(
        acme.retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query(&format!("{long}x"))),
    )
    .await;
    assert!(
        longer.is_validation_exception() && longer.message().unwrap().contains("20000"),
        "{longer:?}"
    );

    // A field docpipe does not offer is refused by name.
    let guarded = refused(
        acme.retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query("fog"))
            .guardrail_configuration(
                GuardrailConfiguration::builder()
                    .guardrail_id("g1")
                    .guardrail_version("1")
                    .build()
                    .unwrap(),
            ),
    )
    .await;
    assert!(
        guarded.is_validation_exception()
            && guarded
                .message()
                .unwrap()
                .contains("guardrailConfiguration")
    );

    // Reranking by the deployment's reranker, asked for by its model.
    let reranked = |model: &str, results: i32| {
        let model = VectorSearchBedrockRerankingModelConfiguration::builder()
            .model_arn(format!(
                "arn:aws:bedrock:us-east-1::foundation-model/{model}"
            ))
            .build()
            .unwrap();
        let bedrock = VectorSearchBedrockRerankingConfiguration::builder()
            .model_configuration(model)
            .number_of_reranked_results(results)
            .build();
        let reranking = VectorSearchRerankingConfiguration::builder()
            .r#type(VectorSearchRerankingConfigurationType::BedrockRerankingModel)
            .bedrock_reranking_configuration(bedrock)
            .build()
            .unwrap();
        configured(
            KnowledgeBaseVectorSearchConfiguration::builder()
                .number_of_results(10)
                .reranking_configuration(reranking)
                .build(),
        )
    };
    let output = acme
        .retrieve()
        .knowledge_base_id("KBACME0001")
        .retrieval_query(query("harbour pump E4711"))
        .retrieval_configuration(reranked("rerank-v3.5", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(output.retrieval_results().len(), 2);
    assert!(
        uris(&output)[0].ends_with("notes/pump.txt"),
        "{:?}",
        uris(&output)
    );
    assert!(rerank.requests() >= 1, "the reranker was asked");
    let other_model = refused(
        acme.retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query("fog"))
            .retrieval_configuration(reranked("amazon.rerank-v1:0", 2)),
    )
    .await;
    assert!(
        other_model.is_validation_exception()
            && other_model.message().unwrap().contains("rerank-v3.5")
    );

    // Signatures: a wrong secret, another region, a clock ten minutes off
    // either way are each refused as AccessDeniedException.
    let now = SystemTime::now();
    let wrong = [
        client(
            &base,
            ACME_KEY_ID,
            "not-the-secret-0123456789abcdefghijkl",
            "us-east-1",
            None,
        )
        .await,
        client(&base, "DPKUNKNOWN000000001", SECRET, "us-east-1", None).await,
        client(&base, ACME_KEY_ID, SECRET, "eu-west-1", None).await,
        client(
            &base,
            ACME_KEY_ID,
            SECRET,
            "us-east-1",
            Some(now - Duration::from_secs(600)),
        )
        .await,
        client(
            &base,
            ACME_KEY_ID,
            SECRET,
            "us-east-1",
            Some(now + Duration::from_secs(600)),
        )
        .await,
    ];
    for (i, caller) in wrong.iter().enumerate() {
        let error = refused(
            caller
                .retrieve()
                .knowledge_base_id("KBACME0001")
                .retrieval_query(query("fog")),
        )
        .await;
        assert!(error.is_access_denied_exception(), "{i}: {error:?}");
    }

    // A tenant over its rate is throttled, as AWS throttles.
    let db = stack.test_db.client().await;
    db.execute(
        "INSERT INTO upload_pipeline.tenant_limits (tenant, api_requests_per_minute) VALUES ('initech', 1)",
        &[],
    )
    .await
    .unwrap();
    let initech = client(&base, INITECH_KEY_ID, SECRET, "us-east-1", None).await;
    let call = || {
        initech
            .retrieve()
            .knowledge_base_id("KBINITECH1")
            .retrieval_query(query("fog"))
    };
    call().send().await.unwrap();
    let throttled = refused(call()).await;
    assert!(throttled.is_throttling_exception(), "{throttled:?}");
}

/// An embedding provider that takes every connection and never answers.
async fn silent_provider() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    (url, held)
}

#[tokio::test]
async fn a_provider_that_fails_and_full_search_slots_are_the_sdk_s_exceptions() {
    let (url, _held) = silent_provider().await;
    let stack = LocalAws::start(&[
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", &url),
        ("OPENAI_API_KEY", "sk-test"),
        ("EMBEDDING_TIMEOUT_SECS", "8"),
        ("EXTERNAL_MAX_ATTEMPTS", "1"),
    ])
    .await;
    let sigv4 = format!("{ACME_KEY_ID}:{SECRET}:acme");
    let vars = [
        ("KNOWLEDGE_BASES", "KBACME0001:acme"),
        ("SIGV4_KEYS", sigv4.as_str()),
        ("SIGV4_REGION", "us-east-1"),
        ("TENANT_SEARCH_SLOTS", "1"),
    ];
    let base = stack
        .serve_api_with("acme-key-0123456789:acme", &vars)
        .await;
    let acme = client(&base, ACME_KEY_ID, SECRET, "us-east-1", None).await;
    let call = || {
        acme.retrieve()
            .knowledge_base_id("KBACME0001")
            .retrieval_query(query("fog"))
    };
    // The first search holds the tenant's one slot while the provider is
    // silent; the second waits 5 s for it, then is told the quota is full.
    let first = tokio::spawn(refused(call()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = refused(call()).await;
    assert!(second.is_service_quota_exceeded_exception(), "{second:?}");
    // The provider never answers: the search fails as a dependency's fault.
    let first = first.await.unwrap();
    assert!(first.is_dependency_failed_exception(), "{first:?}");
    assert!(first.message().is_some_and(|m| !m.is_empty()), "{first:?}");
}
