//! Metadata sidecars through the deployed shape (LocalStack S3 and its
//! notifications, the event-source runner, a real database, mock-openai
//! over HTTP): whichever of a document and its sidecar arrives first, and
//! however the sidecar is edited, refused or removed, the document and its
//! chunks end with the same metadata, and no token is spent on it after the
//! first ingest (the cost ledger records every embedding call).

use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::local_aws::{LocalAws, WITHIN, wait_until};
use docpipe_tests::spawn_openai;
use serde_json::{Value, json};

const REPORT: &str = "uploads/acme/report.md";
const SIDECAR: &str = "uploads/acme/report.md.metadata.json";
const TEXT: &str = "# Report\n\nThe harbour lease was renewed for ten years.\n\n\
                    # Budget\n\nNew buoys are bought each spring.\n";

/// A stack whose embeddings come from mock-openai over HTTP.
async fn stack() -> LocalAws {
    let (url, _mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        ..MockOpenAiConfig::default()
    })
    .await;
    LocalAws::start(&[
        ("EMBEDDING_DIMS", "64"),
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test-0123456789"),
        ("OPENAI_BASE_URL", &url),
    ])
    .await
}

fn sidecar(attributes: Value) -> String {
    json!({ "metadataAttributes": attributes }).to_string()
}

/// What the database holds for the report: its tokens paid, its jobs, its
/// chunk ids, and the metadata of the document and of each chunk.
struct Seen {
    tokens: i64,
    jobs: i64,
    chunk_ids: Vec<String>,
    document: Value,
    chunks: Vec<Value>,
}

async fn seen(stack: &LocalAws) -> Seen {
    let db = stack.test_db.client().await;
    let one = async |sql: &str| db.query_one(sql, &[&REPORT]).await.unwrap();
    let all = async |sql: &str| db.query(sql, &[&REPORT]).await.unwrap();
    Seen {
        tokens: db
            .query_one(
                "SELECT coalesce(sum(units), 0)::int8 FROM upload_pipeline.cost_ledger
                  WHERE unit = 'tokens'",
                &[],
            )
            .await
            .unwrap()
            .get(0),
        jobs: one("SELECT count(*) FROM upload_pipeline.upload_jobs WHERE source_key = $1")
            .await
            .get(0),
        chunk_ids: all("SELECT chunk_id::text FROM upload_pipeline.document_chunks
              WHERE source_key = $1 ORDER BY chunk_index")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect(),
        document: db
            .query_opt(
                "SELECT metadata FROM upload_pipeline.documents WHERE source_key = $1",
                &[&REPORT],
            )
            .await
            .unwrap()
            .map_or(Value::Null, |row| row.get(0)),
        chunks: all(
            "SELECT DISTINCT metadata FROM upload_pipeline.document_chunks WHERE source_key = $1",
        )
        .await
        .iter()
        .map(|row| row.get(0))
        .collect(),
    }
}

/// Waits until the report and every one of its chunks have `expected`.
async fn converges(stack: &LocalAws, expected: Value) -> Seen {
    let what = format!("the report's metadata to be {expected}");
    wait_until(WITHIN, &what, async || {
        let now = seen(stack).await;
        now.document == expected && now.chunks == [expected.clone()]
    })
    .await;
    seen(stack).await
}

async fn sidecar_error(stack: &LocalAws) -> Option<String> {
    let db = stack.test_db.client().await;
    db.query_opt(
        "SELECT error FROM upload_pipeline.metadata_sidecars WHERE source_key = $1",
        &[&REPORT],
    )
    .await
    .unwrap()
    .and_then(|row| row.get(0))
}

#[tokio::test]
async fn a_sidecar_after_its_document_edited_refused_and_removed_costs_nothing() {
    let stack = stack().await;
    // The object's own S3 user metadata is the first source.
    stack
        .put_with_metadata(REPORT, TEXT, &[("owner", "harbour-office")])
        .await;
    stack.wait_for_state(REPORT, "complete").await;
    let first = converges(&stack, json!({"owner": "harbour-office"})).await;
    assert!(first.tokens > 0 && first.chunk_ids.len() >= 2);

    stack
        .put(SIDECAR, sidecar(json!({"team": "legal", "year": 2024})))
        .await;
    converges(
        &stack,
        json!({"owner": "harbour-office", "team": "legal", "year": 2024}),
    )
    .await;

    // Edited: a sidecar's attribute wins over the object's of the same name.
    let edited = json!({"owner": "legal-dept", "team": "finance", "tags": ["a", "b"]});
    stack.put(SIDECAR, sidecar(edited.clone())).await;
    converges(&stack, edited.clone()).await;

    // Refused (a reserved name): the last good attributes stay, and why is kept.
    stack
        .put(
            SIDECAR,
            sidecar(json!({"source_key": "uploads/globex/x.md"})),
        )
        .await;
    wait_until(WITHIN, "the refusal to be recorded", async || {
        sidecar_error(&stack).await.is_some()
    })
    .await;
    let error = sidecar_error(&stack).await.unwrap();
    assert!(error.contains("\"source_key\" is reserved"), "{error}");
    assert_eq!(seen(&stack).await.document, edited);

    // Removed: the object's own metadata is all that is left.
    stack.delete(SIDECAR).await;
    let last = converges(&stack, json!({"owner": "harbour-office"})).await;
    assert_eq!(sidecar_error(&stack).await, None);

    assert_eq!(
        last.tokens, first.tokens,
        "no embedding after the first ingest"
    );
    assert_eq!(last.jobs, 1, "no job after the first");
    assert_eq!(last.chunk_ids, first.chunk_ids, "the same chunks");
}

#[tokio::test]
async fn a_sidecar_before_its_document_is_read_when_the_document_arrives() {
    let stack = stack().await;
    let attributes = json!({"team": "legal", "draft": false});
    stack.put(SIDECAR, sidecar(attributes.clone())).await;
    wait_until(WITHIN, "the sidecar to be read", async || {
        let db = stack.test_db.client().await;
        let sql = "SELECT count(*) FROM upload_pipeline.metadata_sidecars WHERE source_key = $1";
        db.query_one(sql, &[&REPORT])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    assert_eq!(seen(&stack).await.document, Value::Null, "no document yet");

    stack.put(REPORT, TEXT).await;
    stack.wait_for_state(REPORT, "complete").await;
    let first = converges(&stack, attributes).await;

    // The same content again with other user metadata: no new job, no tokens.
    stack
        .put_with_metadata(REPORT, TEXT, &[("owner", "harbour-office")])
        .await;
    let last = converges(
        &stack,
        json!({"team": "legal", "draft": false, "owner": "harbour-office"}),
    )
    .await;
    assert_eq!(
        (last.tokens, last.jobs, &last.chunk_ids),
        (first.tokens, 1, &first.chunk_ids)
    );
}

#[tokio::test]
async fn a_hostile_sidecar_is_refused_with_its_reason_and_nothing_else_changes() {
    let stack = stack().await;
    stack.put(REPORT, TEXT).await;
    stack.wait_for_state(REPORT, "complete").await;
    let before = seen(&stack).await;
    let deep = format!(
        r#"{{"metadataAttributes": {{"a": {}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases = [
        (
            "x".repeat(11 * 1024),
            "sidecar is 11264 bytes; at most 10240",
        ),
        (deep[..10_000].to_string(), "recursion limit exceeded"),
        (
            "\u{0}\u{1}binary".to_string(),
            "expected value at line 1 column 1",
        ),
        (
            sidecar(json!({"list": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()})),
            "lists 101 items; at most 100",
        ),
    ];
    for (body, says) in cases {
        stack.put(SIDECAR, body).await;
        let what = format!("the sidecar to be refused: {says}");
        wait_until(WITHIN, &what, async || {
            sidecar_error(&stack)
                .await
                .is_some_and(|e| e.contains(says))
        })
        .await;
    }
    let after = seen(&stack).await;
    assert_eq!(after.document, json!({}));
    assert_eq!(
        (after.tokens, after.jobs, after.chunk_ids),
        (before.tokens, 1, before.chunk_ids)
    );
}

/// The headers each of `key`'s chunks was embedded under, in order.
async fn embed_headers(stack: &LocalAws, key: &str) -> Vec<Option<String>> {
    let db = stack.test_db.client().await;
    db.query(
        "SELECT embed_header FROM upload_pipeline.document_chunks
          WHERE source_key = $1 ORDER BY chunk_index",
        &[&key],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[tokio::test]
async fn attributes_marked_for_embedding_head_the_chunks_and_a_change_embeds_only_their_document() {
    const OTHER: &str = "uploads/acme/buoys.md";
    let stack = stack().await;
    let marked = |team: &str, year: u32| {
        sidecar(json!({
            "team": {"value": {"type": "STRING", "stringValue": team}, "includeForEmbedding": true},
            "year": year,
        }))
    };
    stack
        .put(OTHER, "# Buoys\n\nBuoys are painted red and green.\n")
        .await;
    stack.put(SIDECAR, marked("harbour", 2026)).await;
    stack.put(REPORT, TEXT).await;
    stack.wait_for_state(OTHER, "complete").await;
    stack.wait_for_state(REPORT, "complete").await;
    let headers = embed_headers(&stack, REPORT).await;
    assert!(
        headers.len() >= 2
            && headers
                .iter()
                .all(|h| h.as_deref() == Some("team: harbour")),
        "{headers:?}"
    );
    assert_eq!(embed_headers(&stack, OTHER).await, [None]);
    let before = seen(&stack).await;

    // An attribute not marked for embedding changes: metadata only.
    stack.put(SIDECAR, marked("harbour", 2027)).await;
    let unmarked = converges(&stack, json!({"team": "harbour", "year": 2027})).await;
    assert_eq!(unmarked.tokens, before.tokens, "nothing embedded");

    // The marked one changes: the report's chunks are embedded under it,
    // and what is paid is their inputs' tokens, no other document's.
    stack.put(SIDECAR, marked("legal", 2027)).await;
    wait_until(
        WITHIN,
        "the report's chunks under the new team",
        async || {
            let headers = embed_headers(&stack, REPORT).await;
            !headers.is_empty() && headers.iter().all(|h| h.as_deref() == Some("team: legal"))
        },
    )
    .await;
    stack.wait_for_state(REPORT, "complete").await;
    let after = converges(&stack, json!({"team": "legal", "year": 2027})).await;
    let db = stack.test_db.client().await;
    let inputs: i64 = db
        .query_one(
            "SELECT sum(embed_tokens)::int8 FROM upload_pipeline.document_chunks
              WHERE source_key = $1",
            &[&REPORT],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        after.tokens - before.tokens,
        inputs,
        "the report's chunks, once"
    );
    let other_jobs: i64 = db
        .query_one(
            "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE source_key = $1",
            &[&OTHER],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(other_jobs, 1);
    assert_eq!(embed_headers(&stack, OTHER).await, [None]);
}
