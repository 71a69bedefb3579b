//! Postgres, then the AWS endpoint, gone in the middle of a run: the
//! functions' connections recover, the messages whose handling failed
//! meanwhile come back from SQS, and every document still ends exactly once.
//! The database is a cluster of this test's own (`scripts/local-postgres`
//! with `DOCPIPE_PG_DATA`), so its restart disturbs no other test; the
//! emulator sits behind a proxy of the test's own that drops every
//! connection and refuses new ones for the outage (LocalStack's community
//! edition keeps no state across a real restart, so a restart would lose the
//! queues themselves, which SQS never does).

use docpipe_core::JobState;
use docpipe_local_runner::provision::QueueSettings;
use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::local_aws::{LocalAws, wait_until};
use docpipe_tests::{Outage, OwnPostgres, TestDb};
use std::time::Duration;

const DOCUMENTS: usize = 60;
const WITHIN: Duration = Duration::from_secs(120);
const VARS: [(&str, &str); 3] = [
    ("EMBEDDING_DIMS", "64"),
    ("CHUNK_TOKENS", "64"),
    ("CHUNK_OVERLAP_TOKENS", "8"),
];
/// Failed handling comes back after 3 s, and an outage uses few receives.
const QUEUES: QueueSettings = QueueSettings {
    visibility_timeout_secs: 3,
    max_receive_count: 10,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing() {
    let postgres = OwnPostgres::start();
    let stack = LocalAws::start_on(&postgres.admin_url(), &VARS, QUEUES).await;

    let keys: Vec<String> = (0..DOCUMENTS)
        .map(|n| format!("uploads/acme/log-{n:02}.md"))
        .collect();
    let put = async |n: usize| {
        let text: String = (0..1 + n % 6)
            .map(|p| format!("Entry {n}.{p}: the keeper logs the tide, the fog and the light.\n\n"))
            .collect();
        stack.put(&keys[n], text).await;
    };
    // Half the uploads, then the database goes away while they are in
    // flight; the other half arrive while it is down; it is back after 3 s.
    for n in 0..DOCUMENTS / 2 {
        put(n).await;
    }
    let ended_before = stack.count_in_state("complete").await;
    postgres.script("down");
    for n in DOCUMENTS / 2..DOCUMENTS {
        put(n).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.script("up");

    wait_until(WITHIN, "every document complete", async || {
        stack.count_in_state("complete").await as usize == DOCUMENTS
    })
    .await;
    let db = stack.test_db.client().await;
    stack.wait_idle(WITHIN).await;
    assert!(
        (ended_before as usize) < DOCUMENTS,
        "the restart came while work was in flight ({ended_before} done before it)"
    );
    for key in &keys {
        assert_eq!(
            stack.jobs_of(key).await,
            [("complete".to_string(), None)],
            "{key}"
        );
    }
    let row = db
        .query_one(
            "SELECT (SELECT coalesce(sum(chunk_count), 0)::int8 FROM upload_pipeline.upload_jobs),
                    (SELECT count(*) FROM upload_pipeline.document_chunks),
                    (SELECT count(*) FROM upload_pipeline.document_chunk_buffer)
                  + (SELECT count(*) FROM upload_pipeline.document_vector_buffer)",
            &[],
        )
        .await
        .unwrap();
    let (expected, stored, buffered): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (stored, buffered),
        (expected, 0),
        "every chunk once, no buffer left"
    );
    assert_eq!(stack.dead_letter_count().await, 0, "nothing dead-lettered");
    println!(
        "postgres restarted with {ended_before} of {DOCUMENTS} complete; all {DOCUMENTS} complete after, {stored} chunks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_outage_mid_run_loses_nothing() {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (scripts/test sets it)");
    let outage = Outage::proxy_to(&endpoint).await;
    let sdk = docpipe_tests::local_aws::sdk_config_through(&outage).await;
    let stack = LocalAws::start_with_sdk(sdk, &docpipe_tests::admin_url(), &VARS, QUEUES).await;
    // Uploads go straight to the emulator, so some arrive during the outage.
    let direct = docpipe_aws::s3::s3_client(&docpipe_tests::local_aws::sdk_config().await, true);
    let keys: Vec<String> = (0..DOCUMENTS)
        .map(|n| format!("uploads/acme/log-{n:02}.md"))
        .collect();
    let put = async |n: usize| {
        let text = format!("Entry {n}: the keeper logs the tide, the fog and the light.\n\n")
            .repeat(1 + n % 6);
        direct
            .put_object()
            .bucket(&stack.resources.bucket)
            .key(&keys[n])
            .body(text.into_bytes().into())
            .send()
            .await
            .expect("PutObject");
    };
    for n in 0..DOCUMENTS / 2 {
        put(n).await;
    }
    outage.down().await;
    for n in DOCUMENTS / 2..DOCUMENTS {
        put(n).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ended_before = stack.count_in_state("complete").await;
    outage.up();

    stack.wait_idle(WITHIN).await;
    for key in &keys {
        stack.wait_for_state(key, "complete").await;
        assert_eq!(
            stack.jobs_of(key).await,
            [("complete".to_string(), None)],
            "{key}"
        );
    }
    assert!(
        (ended_before as usize) < DOCUMENTS,
        "{ended_before} done before the endpoint came back"
    );
    assert_eq!(stack.dead_letter_count().await, 0, "nothing dead-lettered");
    println!(
        "AWS endpoint down 3 s with {ended_before} of {DOCUMENTS} complete; all {DOCUMENTS} complete after"
    );
}

/// A runner killed after committing a stage but before its message got out
/// leaves a job with no message anywhere (here: the queues are purged, as
/// after a DLQ that nobody redrives). The sweeper, on its schedule, finds it
/// idle past its state's timeout, sends its next message again, and the job
/// completes; one it cannot move is failed `stuck` (tests/postgres/stages.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_resumes_a_job_whose_messages_were_lost() {
    use docpipe_core::settings::SweepPolicy;
    use docpipe_ingest::pipeline::ingest;
    let mut stack = LocalAws::start(&[("EMBEDDING_DIMS", "64")]).await;
    stack.runner.abort_all(); // the runner dies
    while stack.runner.join_next().await.is_some() {}
    let key = "uploads/acme/lost.md";
    stack
        .put(
            key,
            "# Lost\n\nThe relief keeper finds the log open at the last entry.",
        )
        .await;
    let pipeline = &stack.deployment.pipeline;
    let ingested = ingest::ingest(pipeline, key, "lost-1").await.unwrap();
    for queue in [&stack.resources.uploads, &stack.resources.parse] {
        stack
            .sqs
            .purge_queue()
            .queue_url(&queue.url)
            .send()
            .await
            .expect("PurgeQueue");
    }
    let _runner = stack.start_runner().await; // a new instance: nothing to do
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.jobs_of(key).await, [("queued".to_string(), None)]);

    let policy = SweepPolicy {
        queued_timeout: Duration::from_secs(1),
        ..SweepPolicy::default()
    };
    let report = docpipe_ingest::pipeline::sweeper::sweep(pipeline, &policy)
        .await
        .unwrap();
    assert_eq!(report.resumed, [ingested.job_id]);
    stack.wait_for_state(key, "complete").await;
    assert!(stack.chunks_of(key).await > 0);
}

/// The postmaster killed (`kill -9`) the moment the provider has a paid
/// embedding request, and started again a second later: the answer comes
/// while the database is down or recovering. The call is on the ledger
/// once, as the provider counted it, and paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postmaster_killed_while_the_provider_answers_loses_no_spend() {
    let postgres = OwnPostgres::start();
    let test_db = TestDb::migrated_on(&postgres.admin_url(), &VARS).await;
    let (url, mock) = docpipe_tests::spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        faults: FaultKnobs {
            latency_ms: 1000,
            ..FaultKnobs::default()
        },
        ..MockOpenAiConfig::default()
    })
    .await;
    let mut vars = VARS.to_vec();
    vars.extend([
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_BASE_URL", &url),
    ]);
    let config = test_db.config(&vars);
    let crash = async {
        wait_until(WITHIN, "a paid request", async || mock.requests() > 0).await;
        postgres.kill_postmaster();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| postgres.restart_after_crash());
    };
    let fog = [docpipe_tests::samples_dir().join("fog-signals.txt")];
    let ((_, outcomes), ()) =
        tokio::join!(docpipe_tests::ingest_locally(&config, "acme", &fog), crash);
    assert!(
        outcomes.values().all(|o| o.state == JobState::Complete),
        "{outcomes:?}"
    );
    let accepted: i64 = mock
        .accepted()
        .iter()
        .map(|(_, tokens)| *tokens as i64)
        .sum();
    assert_eq!(mock.accepted().len(), 1, "paid once: its vectors were kept");
    let ledger: Vec<String> = test_db
        .column("SELECT units || ' ' || settlement FROM upload_pipeline.cost_ledger")
        .await;
    assert_eq!(ledger, [format!("{accepted} settled")]);
}
