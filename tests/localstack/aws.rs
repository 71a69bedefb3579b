//! The AWS wiring end to end: S3 uploads in LocalStack notify the uploads
//! queue, the event-source runner invokes the functions' handlers, and the
//! document becomes searchable chunks in Postgres.

use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_search::{Query, search};
use docpipe_tests::local_aws::{LocalAws, MAX_RECEIVE_COUNT, WITHIN, wait_until};
use uuid::Uuid;

const VARS: &[(&str, &str)] = &[
    ("EMBEDDING_DIMS", "64"),
    ("CHUNK_TOKENS", "64"),
    ("CHUNK_OVERLAP_TOKENS", "8"),
    ("EMBED_BATCH_SIZE", "4"),
];

fn guide(topic: &str) -> String {
    (0..12)
        .map(|i| format!("## Part {i}\n\nThe harbour master explains {topic} to crew member {i}, with care.\n\n"))
        .collect()
}

#[tokio::test]
async fn an_upload_becomes_searchable_with_no_command_in_between() {
    let stack = LocalAws::start(VARS).await;
    let key = "uploads/acme/fog.md";
    stack.put(key, guide("fog signals and foghorns")).await;
    stack
        .put(
            "uploads/acme/tides.md",
            guide("tide tables and moon phases"),
        )
        .await;
    stack.wait_for_state(key, "complete").await;
    stack
        .wait_for_state("uploads/acme/tides.md", "complete")
        .await;
    assert!(stack.chunks_of(key).await > 1);

    let pipeline = &stack.deployment.pipeline;
    let query = Query {
        text: "foghorns fog signals",
        top_k: 3,
        mode: Default::default(),
        filter: &Default::default(),
        context: None,
        rerank: true,
    };
    let hits = search(
        &pipeline.db,
        &docpipe_tests::search_parts(&stack.deployment.settings),
        "acme",
        &query,
    )
    .await
    .unwrap();
    assert_eq!(hits[0].source_key, key);
    // The parsed text went to the bucket, not into a message.
    let parsed: String = stack
        .test_db
        .client()
        .await
        .query_one(
            "SELECT parsed_key FROM upload_pipeline.upload_jobs WHERE source_key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert!(parsed.starts_with("parsed/acme/"), "{parsed}");
    assert!(stack.object_exists(&parsed).await);
}

#[tokio::test]
async fn keys_with_spaces_and_unicode_keep_their_names() {
    let stack = LocalAws::start(VARS).await;
    let key = "uploads/acme/Sea charts/Über die Gezeiten + Häfen (v2) 日本.md";
    stack.put(key, guide("charts")).await;
    stack.wait_for_state(key, "complete").await;
    assert!(stack.chunks_of(key).await > 1);
}

#[tokio::test]
async fn the_same_object_uploaded_twice_is_one_job() {
    let stack = LocalAws::start(VARS).await;
    let key = "uploads/acme/twice.md";
    stack.put(key, guide("mooring lines")).await;
    stack.put(key, guide("mooring lines")).await;
    // (S3's notifications may reach the queue after an idle look: wait for the job first.)
    stack.wait_for_state(key, "complete").await;
    stack.wait_idle(WITHIN).await;
    assert_eq!(stack.jobs_of(key).await, [("complete".to_string(), None)]);
    let rows = stack.test_db.row_counts().await;
    // A third upload after the first two finished changes no row either.
    stack.put(key, guide("mooring lines")).await;
    stack.wait_idle(WITHIN).await;
    assert_eq!(stack.test_db.row_counts().await, rows);
}

#[tokio::test]
async fn deleting_the_object_removes_its_chunks_and_parsed_text() {
    let stack = LocalAws::start(VARS).await;
    let key = "uploads/acme/gone soon.md";
    stack.put(key, guide("anchors")).await;
    stack.put("uploads/acme/stays.md", guide("buoys")).await;
    stack.wait_for_state(key, "complete").await;
    stack
        .wait_for_state("uploads/acme/stays.md", "complete")
        .await;
    let parsed = docpipe_core::domain::keys::parsed_key(
        "acme",
        stack.test_db.column::<Uuid>("SELECT id FROM upload_pipeline.upload_jobs WHERE source_key = 'uploads/acme/gone soon.md'").await[0],
    );
    assert!(stack.object_exists(&parsed).await);

    stack.delete(key).await;
    wait_until(WITHIN, "the document to be forgotten", async || {
        stack.jobs_of(key).await.is_empty()
    })
    .await;
    assert_eq!(stack.chunks_of(key).await, 0);
    assert!(!stack.object_exists(&parsed).await);
    assert!(
        stack.chunks_of("uploads/acme/stays.md").await > 0,
        "other documents stay"
    );
}

#[tokio::test]
async fn a_message_that_keeps_failing_reaches_the_dlq_and_its_job_says_why() {
    // Nothing listens on port 9: every embedding call fails, transiently.
    let vars = [
        VARS,
        &[
            ("EMBEDDING_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("OPENAI_API_KEY", "sk-test"),
            ("EMBEDDING_TIMEOUT_SECS", "2"),
        ],
    ]
    .concat();
    let stack = LocalAws::start(&vars).await;
    let key = "uploads/acme/never embedded.md";
    stack.put(key, guide("radar")).await;
    stack.wait_for_state(key, "failed").await;
    let (_, code) = stack.jobs_of(key).await.pop().unwrap();
    assert_eq!(code.as_deref(), Some("retries_exhausted"));
    let message = stack.error_message(key).await.unwrap();
    assert!(
        message.starts_with(&format!(
            "gave up after {MAX_RECEIVE_COUNT} attempts at a step"
        )),
        "{message}"
    );
    let detail = stack.error_detail(key).await.unwrap();
    assert!(
        detail.starts_with(&format!(
            "gave up after {MAX_RECEIVE_COUNT} attempts; last error: openai "
        )),
        "{detail}"
    );
    wait_until(WITHIN, "the embed message in its DLQ", async || {
        !stack
            .dead_letters(&stack.resources.embed.dlq_url)
            .await
            .is_empty()
    })
    .await;
    let dead = stack.dead_letters(&stack.resources.embed.dlq_url).await;
    let dead: StageMessage = serde_json::from_str(&dead[0]).unwrap();
    assert!(matches!(dead.stage, Stage::Embed { .. }), "{dead:?}");
}

#[tokio::test]
async fn unreadable_messages_reach_the_dlq_and_the_s3_test_event_does_not() {
    let stack = LocalAws::start(VARS).await;
    let uploads = &stack.resources.uploads;
    stack
        .send(
            &uploads.url,
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T03:00:00.000Z","Bucket":"b","RequestId":"R","HostId":"H"}"#,
        )
        .await;
    stack.send(&uploads.url, "this is not a notification").await;
    stack
        .send(&stack.resources.parse.url, r#"{"stage":"parse"}"#)
        .await;
    wait_until(WITHIN, "both bad messages dead-lettered", async || {
        stack.dead_letters(&uploads.dlq_url).await.len() == 1
            && stack
                .dead_letters(&stack.resources.parse.dlq_url)
                .await
                .len()
                == 1
    })
    .await;
    stack.wait_idle(WITHIN).await;
    assert_eq!(
        stack.dead_letters(&uploads.dlq_url).await,
        ["this is not a notification"]
    );
}

#[tokio::test]
async fn duplicated_stage_messages_change_nothing() {
    let stack = LocalAws::start(VARS).await;
    let key = "uploads/acme/dupes.md";
    stack.put(key, guide("lighthouses")).await;
    stack.wait_for_state(key, "complete").await;
    stack.wait_idle(WITHIN).await;
    let rows = stack.test_db.row_counts().await;

    let job_id = stack
        .test_db
        .column::<Uuid>("SELECT id FROM upload_pipeline.upload_jobs")
        .await[0];
    let message =
        |stage| serde_json::to_string(&StageMessage::new(job_id, "replayed", stage)).unwrap();
    let queues = &stack.resources;
    for _ in 0..2 {
        stack.send(&queues.parse.url, &message(Stage::Parse)).await;
        stack.send(&queues.chunk.url, &message(Stage::Chunk)).await;
        stack
            .send(
                &queues.embed.url,
                &message(Stage::Embed {
                    first_chunk: 0,
                    chunk_count: 4,
                }),
            )
            .await;
    }
    stack.wait_idle(WITHIN).await;
    assert_eq!(stack.test_db.row_counts().await, rows);
    assert_eq!(stack.jobs_of(key).await, [("complete".to_string(), None)]);
}

/// The red team's burst: one tenant's uploads fill every stage queue, then
/// another tenant uploads one small document. It must not wait behind the
/// burst: it completes while most of the burst is still in the pipeline.
/// (Queued first in, first out, it completed after all of it.)
#[tokio::test]
async fn one_tenants_burst_does_not_stall_another_tenants_upload() {
    use futures::StreamExt;
    let stack = LocalAws::start(VARS).await;
    const BURST: i64 = 120;
    futures::stream::iter(0..BURST)
        .map(|i| {
            let stack = &stack;
            async move {
                let key = format!("uploads/heavy/doc-{i}.md");
                stack.put(&key, guide(&format!("knot {i}"))).await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let heavy_done = async || {
        stack
            .test_db
            .column::<i64>(
                "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE tenant = 'heavy' AND state = 'complete'",
            )
            .await[0]
    };
    let light = "uploads/light/one.md";
    let outstanding = BURST - heavy_done().await;
    stack
        .put(light, guide("the light tenant's one question"))
        .await;
    stack.wait_for_state(light, "complete").await;
    let overtaken_by = outstanding - (BURST - heavy_done().await);
    assert!(
        overtaken_by <= outstanding / 2,
        "the light tenant's upload waited for {overtaken_by} of the {outstanding} heavy uploads still in the pipeline"
    );
    wait_until(WITHIN, "the burst to complete", async || {
        stack.count_in_state("complete").await == BURST + 1
    })
    .await;
}
