//! Chaos: a few hundred documents through the local AWS stack (LocalStack
//! S3/SQS, the event-source runner, mock-openai over HTTP) while the mock
//! fails (5xx, 429 with `Retry-After`, malformed bodies, latency), the runner
//! is killed mid-batch and restarted, the Postgres postmaster is killed while
//! embedding requests are in flight, a second runner polls the same queues,
//! and S3 events and stage messages arrive twice or out of order. Every
//! document must end exactly once, as an undisturbed in-process run of the
//! same documents ends it: the same chunks (ids are content-derived), the
//! same failure reasons, nothing stuck, and every token the provider
//! accepted on the ledger. `CHAOS_SEED` picks the documents, faults and chaos.

use docpipe_core::domain::ids;
use docpipe_local_runner::provision::QueueSettings;
use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::local_aws::wait_until;
use docpipe_tests::local_aws::{LocalAws, s3_notification};
use docpipe_tests::{OwnPostgres, ScratchDir, TestDb, ingest_locally, spawn_openai};
use futures::StreamExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const TENANT: &str = "chaos";
const VALID_DOCUMENTS: usize = 240;
const KILLS: usize = 4;
const WITHIN: Duration = Duration::from_secs(120);
/// Small chunks and batches: many stage messages for the chaos to hit.
const CHUNKING: [(&str, &str); 4] = [
    ("EMBEDDING_DIMS", "64"),
    ("CHUNK_TOKENS", "64"),
    ("CHUNK_OVERLAP_TOKENS", "8"),
    ("EMBED_BATCH_SIZE", "8"),
];

/// splitmix64, so a seed gives the same run everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "harbour", "light", "fog", "signal", "tide", "keeper", "lens", "beacon", "channel", "buoy",
    "current", "pilot", "vessel", "anchor", "reef", "lantern", "horn", "shoal", "mooring", "chart",
];

/// `VALID_DOCUMENTS` generated markdown and text files of 1–12 paragraphs,
/// and the poison: files that must fail, each for its own reason.
fn documents(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut documents = Vec::new();
    for n in 0..VALID_DOCUMENTS {
        let paragraphs = 1 + rng.below(12);
        let mut text = format!("# Log {n}\n\n");
        for p in 0..paragraphs {
            let words: Vec<&str> = (0..20 + rng.below(80))
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect();
            text.push_str(&format!("Entry {n}.{p}: {}.\n\n", words.join(" ")));
        }
        let extension = if n % 3 == 0 { "txt" } else { "md" };
        documents.push((format!("log-{n:03}.{extension}"), text.into_bytes()));
    }
    documents.extend([
        ("poison-empty.txt".to_string(), Vec::new()),
        (
            "poison-report.docx".to_string(),
            b"PK\x03\x04 not a document".to_vec(),
        ),
        (
            "poison-broken.pdf".to_string(),
            b"%PDF-1.7 and then nothing".to_vec(),
        ),
        ("poison-latin1.txt".to_string(), b"caf\xe9 au lait".to_vec()),
        (
            "poison-script.html".to_string(),
            b"<html><script>var x = 1;</script></html>".to_vec(),
        ),
    ]);
    documents
}

fn key(name: &str) -> String {
    format!("uploads/{TENANT}/{name}")
}

/// The reference: the same documents in process, no faults, no chaos.
async fn reference(
    documents: &[(String, Vec<u8>)],
) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let scratch = ScratchDir::new();
    for (name, bytes) in documents {
        std::fs::write(scratch.0.join(name), bytes).unwrap();
    }
    let test_db = TestDb::migrated(&CHUNKING).await;
    let (_, outcomes) = ingest_locally(
        &test_db.config(&CHUNKING),
        TENANT,
        std::slice::from_ref(&scratch.0),
    )
    .await;
    let failures = outcomes
        .into_iter()
        .filter_map(|(key, outcome)| outcome.error_code.map(|code| (key, code)))
        .collect();
    (chunk_ids(&test_db).await, failures)
}

/// Each dead-letter queue that holds messages: its URL, depth and bodies.
async fn dead_letters(stack: &LocalAws) -> Vec<(String, u64, Vec<String>)> {
    let mut found = Vec::new();
    for queue in [
        &stack.resources.uploads,
        &stack.resources.parse,
        &stack.resources.chunk,
        &stack.resources.embed,
    ] {
        let depth = stack.depth(&queue.dlq_url).await;
        if depth > 0 {
            let bodies = stack.dead_letters(&queue.dlq_url).await;
            found.push((queue.dlq_url.clone(), depth, bodies));
        }
    }
    found
}

async fn chunk_ids(test_db: &TestDb) -> BTreeSet<String> {
    test_db
        .column::<String>("SELECT chunk_id::text FROM upload_pipeline.document_chunks")
        .await
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_ends_exactly_once_under_chaos() {
    // Warnings and errors (retries, redeliveries) to stderr, shown if the test fails.
    docpipe_core::ops::telemetry::init("warn");
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261123);
    let mut rng = Rng(seed);
    let documents = documents(&mut rng);
    let (expected_chunks, expected_failures) = reference(&documents).await;
    assert_eq!(expected_failures.len(), 5, "{expected_failures:?}");

    let (url, mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        faults: FaultKnobs {
            error_rate: 0.10,
            rate_limit_rate: 0.05,
            retry_after_secs: 1,
            malformed_rate: 0.02,
            latency_ms: 2,
            latency_jitter_ms: 30,
            seed,
            ..FaultKnobs::default()
        },
        ..MockOpenAiConfig::default()
    })
    .await;
    let mut vars = CHUNKING.to_vec();
    vars.extend([
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-chaos-0123456789"),
        ("OPENAI_BASE_URL", url.as_str()),
        ("EXTERNAL_FIRST_BACKOFF_MS", "50"),
        // The breaker has tests of its own; here it would only slow the run.
        ("BREAKER_THRESHOLD", "1000"),
    ]);
    // Redelivery after 10 s: longer than any batch takes here, even while
    // the chaos loads both cores, as production's 6× the function timeout is.
    let queues = QueueSettings {
        visibility_timeout_secs: 10,
        max_receive_count: 5,
    };
    // A cluster of the test's own: its postmaster is killed mid-run.
    let postgres = OwnPostgres::start();
    let mut stack = LocalAws::start_on(&postgres.admin_url(), &vars, queues).await;
    let second_runner = stack.start_runner().await;
    let started = Instant::now();
    let bucket = stack.resources.bucket.clone();
    let job_of = |name: &str, bytes: &[u8]| {
        ids::job_id(ids::document_id(TENANT, &key(name)), &ids::sha256(bytes))
    };

    // Deletes before the creates they follow.
    let early_deletes: Vec<usize> = (0..5).map(|_| rng.below(VALID_DOCUMENTS)).collect();
    for &n in &early_deletes {
        let body = s3_notification(&bucket, &key(&documents[n].0), "ObjectRemoved:Delete");
        stack.send(&stack.resources.uploads.url, &body).await;
    }
    // Embed batches before their job is even chunked.
    for _ in 0..10 {
        let (name, bytes) = &documents[rng.below(VALID_DOCUMENTS)];
        let message = json!({"job_id": job_of(name, bytes), "correlation_id": "chaos-early",
                             "stage": "embed", "first_chunk": 0, "chunk_count": 8});
        stack
            .send(&stack.resources.embed.url, &message.to_string())
            .await;
    }

    // The uploads, 16 at a time, while the chaos task kills and restarts runner one.
    let mut order: Vec<usize> = (0..documents.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut runner = std::mem::take(&mut stack.runner);
    let stack = &stack;
    let killer = async {
        let mut kills = 0;
        while kills < KILLS {
            tokio::time::sleep(Duration::from_millis(700 + rng.next() % 900)).await;
            runner.abort_all();
            while runner.join_next().await.is_some() {}
            kills += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            runner = stack.start_runner().await;
        }
        runner
    };
    let uploads = futures::stream::iter(order.iter().map(|&i| {
        let (name, bytes) = &documents[i];
        let (key, bytes) = (key(name), bytes.clone());
        async move { stack.put(&key, bytes).await }
    }))
    .buffer_unordered(16)
    .collect::<Vec<()>>();
    // The postmaster killed (`kill -9`) while embedding requests are in
    // flight, and started again a second later.
    let crash = async {
        wait_until(WITHIN, "embedding under way", async || mock.requests() > 60).await;
        postgres.kill_postmaster();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| postgres.restart_after_crash());
    };
    let (runner, _, ()) = tokio::join!(killer, uploads, crash);

    // Duplicates: S3 events sent again, objects uploaded again unchanged,
    // parse and chunk messages sent again.
    let mut duplicates = 0;
    for _ in 0..20 {
        let (name, bytes) = &documents[rng.below(documents.len())];
        let created = s3_notification(&bucket, &key(name), "ObjectCreated:Put");
        stack.send(&stack.resources.uploads.url, &created).await;
        stack.put(&key(name), bytes.clone()).await;
        for (queue, stage) in [
            (&stack.resources.parse.url, "parse"),
            (&stack.resources.chunk.url, "chunk"),
        ] {
            let message = json!({"job_id": job_of(name, bytes), "correlation_id": "chaos-dup", "stage": stage});
            stack.send(queue, &message.to_string()).await;
        }
        duplicates += 4;
    }

    // Everything settles: every key's job ended and the queues empty.
    let keys: Vec<String> = documents.iter().map(|(name, _)| key(name)).collect();
    let db = stack.test_db.client().await;
    let deadline = Instant::now() + WITHIN;
    loop {
        let states: BTreeMap<String, i64> = db
            .query(
                "SELECT state, count(*) FROM upload_pipeline.upload_jobs GROUP BY state",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let ended = states.get("complete").unwrap_or(&0) + states.get("failed").unwrap_or(&0);
        if ended as usize == keys.len() {
            break;
        }
        if Instant::now() > deadline {
            let stuck: Vec<String> = db
                .query(
                    "SELECT j.source_key || ' ' || j.state || ' chunks ' || coalesce(j.chunk_count, -1)
                            || ' embedded ' || j.embedded_chunks
                            || ' buffered ' || (SELECT count(*) FROM upload_pipeline.document_chunk_buffer b WHERE b.job_id = j.id)
                            || ' vectors ' || (SELECT count(*) FROM upload_pipeline.document_vector_buffer v WHERE v.job_id = j.id)
                            || ' events ' || (SELECT string_agg(e.action || ':' || coalesce(e.to_state, ''), ',' ORDER BY e.id)
                                                FROM upload_pipeline.events e WHERE e.job_id = j.id)
                       FROM upload_pipeline.upload_jobs j WHERE j.state NOT IN ('complete', 'failed')",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            panic!(
                "after {WITHIN:?}, {ended} of {} documents ended; jobs by state {states:?}; not ended: {stuck:#?}; dead letters: {:#?}",
                keys.len(),
                dead_letters(stack).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.wait_idle(WITHIN).await;
    let elapsed = started.elapsed();

    // Exactly once: one job per key, the reference's chunks, no more.
    let jobs: Vec<(String, String, Option<String>)> = db
        .query(
            "SELECT source_key, state, error_code FROM upload_pipeline.upload_jobs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(jobs.len(), keys.len(), "one job per document");
    let mut complete = 0;
    for (key, state, code) in &jobs {
        match expected_failures.get(key) {
            Some(expected) => {
                assert_eq!(
                    (state.as_str(), code.as_ref()),
                    ("failed", Some(expected)),
                    "{key}"
                )
            }
            None => {
                assert_eq!((state.as_str(), code), ("complete", &None), "{key}");
                complete += 1;
            }
        }
    }
    let chunks = chunk_ids(&stack.test_db).await;
    assert_eq!(chunks.len(), expected_chunks.len(), "chunk rows");
    assert!(
        chunks == expected_chunks,
        "the same chunks as the undisturbed run"
    );
    let leftovers: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM upload_pipeline.document_chunk_buffer)
                  + (SELECT count(*) FROM upload_pipeline.document_vector_buffer)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "no buffered chunk or vector left behind");

    // Nothing dead-lettered: no job failed for want of retries.
    let dead = dead_letters(stack).await;
    let dead_letters: u64 = dead.iter().map(|(_, depth, _)| depth).sum();
    let exhausted = jobs
        .iter()
        .filter(|(_, _, code)| code.as_deref() == Some("retries_exhausted"))
        .count();
    assert_eq!(
        (dead_letters, exhausted),
        (0, 0),
        "DLQ messages and jobs failed for want of retries: {dead:#?}"
    );

    let stats: serde_json::Value = docpipe_tests::http_client()
        .get(format!("{}/mock/stats", url.trim_end_matches("/v1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = db
        .query_one(
            "SELECT coalesce(sum(units) FILTER (WHERE settlement = 'settled'), 0)::int8,
                    coalesce(sum(units) FILTER (WHERE settlement <> 'settled'), 0)::int8
               FROM upload_pipeline.cost_ledger WHERE unit = 'tokens'",
            &[],
        )
        .await
        .unwrap();
    let (settled, estimated): (i64, i64) = (row.get(0), row.get(1));
    // Nothing lost, the postmaster's death included: every token the
    // provider accepted is on the bill. Settled rows are the provider's own
    // figures. A runner killed mid-call leaves its reservation at the
    // estimate (the tokens as the provider counts them), whether or not the
    // request got out before the kill: so the bill may exceed the provider's
    // count, by at most the estimates it shows as such, never fall short.
    let accepted = stats["accepted_tokens"].as_i64().unwrap();
    assert!(
        settled <= accepted && accepted <= settled + estimated,
        "ledger {settled} tokens settled and {estimated} estimated; provider accepted {accepted}"
    );

    let injected = mock.faults.injected();
    println!(
        "chaos seed {seed}: {} documents ({complete} complete, {} failed as expected) in {:.1} s; \
         {} chunks; faults injected: {} of {} requests ({}); runner kills {KILLS}, two runners; \
         {} early deletes, 10 early embed batches, {duplicates} duplicate events/messages; \
         postmaster killed once; ledger {settled} tokens settled + {estimated} estimated for \
         {accepted} the provider accepted; DLQ 0; stuck 0",
        keys.len(),
        expected_failures.len(),
        elapsed.as_secs_f64(),
        chunks.len(),
        injected.len(),
        stats["requests"],
        fault_counts(&injected),
        early_deletes.len(),
    );
    drop(runner);
    drop(second_runner);
}

fn fault_counts(faults: &[docpipe_mocks::faults::Fault]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for fault in faults {
        *counts.entry(format!("{fault:?}")).or_default() += 1;
    }
    counts
        .iter()
        .map(|(fault, n)| format!("{fault} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
