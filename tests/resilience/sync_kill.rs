//! A sync whose runner is killed with -9 at random points, five times,
//! ends with the same rows as a sync of the same objects that ran
//! uninterrupted: one document and one job per object, every chunk once,
//! and counts that add up (a killed slice's page is compared again, and
//! what it had ingested is found unchanged).

use docpipe_ingest::sync::SyncCounts;
use docpipe_local_runner::provision::QueueSettings;
use docpipe_tests::local_aws::{LocalAws, wait_until};
use futures::StreamExt;
use std::time::Duration;

const OBJECTS: usize = 1000;
const KILLS: usize = 5;
/// The seed of the kill points, printed so that a failing run can be replayed.
const SEED: u64 = 0x5eed_0035;

/// How long a runner works before its kill: 0 to 1.5 s, from a small
/// linear-congruential sequence (no randomness crate for one test).
fn lives(seed: u64) -> impl Iterator<Item = Duration> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Duration::from_millis((state >> 33) % 1500)
    })
}

async fn sync_state(stack: &LocalAws, id: uuid::Uuid) -> (String, SyncCounts) {
    let db = stack.test_db.client().await;
    let row = db
        .query_one(
            "SELECT state, counts FROM upload_pipeline.syncs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), serde_json::from_value(row.get(1)).unwrap())
}

async fn finished(stack: &LocalAws, id: uuid::Uuid) -> SyncCounts {
    wait_until(
        Duration::from_secs(240),
        "the sync to complete",
        async || sync_state(stack, id).await.0 == "complete",
    )
    .await;
    stack.settled().await;
    sync_state(stack, id).await.1
}

/// Per tenant: documents, jobs, keys with more than one job, complete jobs,
/// chunks.
async fn rows_of(stack: &LocalAws, tenant: &str) -> [i64; 5] {
    let db = stack.test_db.client().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM upload_pipeline.documents WHERE tenant = $1),
                    (SELECT count(*) FROM upload_pipeline.upload_jobs WHERE tenant = $1),
                    (SELECT count(*) FROM (SELECT source_key FROM upload_pipeline.upload_jobs
                      WHERE tenant = $1 GROUP BY source_key HAVING count(*) > 1) twice),
                    (SELECT count(*) FROM upload_pipeline.upload_jobs
                      WHERE tenant = $1 AND state = 'complete'),
                    (SELECT count(*) FROM upload_pipeline.document_chunks WHERE tenant = $1)",
            &[&tenant],
        )
        .await
        .unwrap();
    std::array::from_fn(|i| row.get(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_five_times_ends_as_one_that_ran_uninterrupted() {
    // Slices come back soon after a kill, and a slice message killed
    // several times in hand never reaches the dead-letter queue.
    let queues = QueueSettings {
        visibility_timeout_secs: 2,
        max_receive_count: 50,
    };
    let mut stack = LocalAws::start_with_queues(&[], queues).await;
    stack.runner.abort_all(); // the runner is a process of its own here
    stack.notifications_off().await;
    for tenant in ["acme", "globex"] {
        futures::stream::iter(0..OBJECTS)
            .for_each_concurrent(32, async |i| {
                let key = format!("uploads/{tenant}/bulk/{i:04}.txt");
                let text = format!("Bulk note {i}: the pilot boarded at the outer buoy.");
                stack.put(&key, text).await
            })
            .await;
    }

    println!("kill points from seed {SEED:#x}");
    let killed = stack.ask_for_a_sync("acme").await;
    let documents = "SELECT count(*) FROM upload_pipeline.documents WHERE tenant = 'acme'";
    for (kill, life) in lives(SEED).take(KILLS).enumerate() {
        // Each kill lands while the runner works: once it has moved the
        // sync on since the last kill, at a random point after.
        let before = stack.count(documents).await;
        let mut runner = stack.spawn_runner_process(&[]);
        wait_until(Duration::from_secs(60), "the runner to work", async || {
            stack.count(documents).await > before
        })
        .await;
        tokio::time::sleep(life).await;
        runner.start_kill().unwrap();
        runner.wait().await.unwrap();
        let (state, counts) = sync_state(&stack, killed).await;
        println!(
            "kill {} {life:?} into the work: sync {state}, {} documents, {} scanned",
            kill + 1,
            stack.count(documents).await,
            counts.documents_scanned
        );
        if kill + 1 == KILLS {
            assert_eq!(state, "running", "every kill must land while the sync runs");
        }
    }
    let runner = stack.spawn_runner_process(&[]);
    let after_kills = finished(&stack, killed).await;
    drop(runner);

    let runner = stack.spawn_runner_process(&[]);
    let uninterrupted = stack.ask_for_a_sync("globex").await;
    let once = finished(&stack, uninterrupted).await;
    drop(runner);

    let objects = OBJECTS as u64;
    assert_eq!(
        (once.documents_scanned, once.new),
        (objects, objects),
        "{once:?}"
    );
    assert_eq!(after_kills.documents_scanned, objects, "{after_kills:?}");
    assert_eq!(
        after_kills.new + after_kills.unchanged,
        objects,
        "each object ingested once, or found ingested: {after_kills:?}"
    );
    assert_eq!(after_kills.failed + once.failed, 0);
    let (acme, globex) = (
        rows_of(&stack, "acme").await,
        rows_of(&stack, "globex").await,
    );
    assert_eq!(
        acme, globex,
        "documents, jobs, keys with two jobs, complete jobs, chunks"
    );
    assert_eq!(
        acme[..4],
        [OBJECTS as i64, OBJECTS as i64, 0, OBJECTS as i64]
    );
    assert_eq!(stack.dead_letter_count().await, 0);
}
