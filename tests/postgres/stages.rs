//! Each stage handler run directly, twice and concurrently: replays change nothing.

use async_trait::async_trait;
use docpipe_aws::blob::{BlobStore, LocalBlobStore};
use docpipe_aws::queue::{Queue, Stage, StageMessage};
use docpipe_core::db;
use docpipe_core::settings::SweepPolicy;
use docpipe_core::{JobState, Result};
use docpipe_ingest::pipeline::ingest::{Change, ingest};
use docpipe_ingest::pipeline::sweeper::{SweepReport, sweep};
use docpipe_ingest::pipeline::{ChunkStage, ParseStage, Pipeline, handle, handle_stages};
use docpipe_tests::TestDb;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// A queue that keeps what is sent, so the test decides what runs when.
#[derive(Default)]
struct HeldQueue(Mutex<Vec<StageMessage>>);

#[async_trait]
impl Queue for HeldQueue {
    async fn send(&self, messages: Vec<StageMessage>) -> Result<()> {
        self.0.lock().unwrap().extend(messages);
        Ok(())
    }
    async fn send_later(&self, message: StageMessage, _delay: Duration) -> Result<()> {
        self.send(vec![message]).await
    }
}

impl HeldQueue {
    fn take(&self) -> Vec<StageMessage> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

const KEY: &str = "uploads/acme/guide.md";
const CORRELATION: &str = "test-upload";

fn message(job_id: Uuid, stage: Stage) -> StageMessage {
    StageMessage::new(job_id, CORRELATION, stage)
}
const LIVE_JOBS: &str = "SELECT DISTINCT job_id FROM upload_pipeline.document_chunks";

fn document(version: &str) -> String {
    (0..60)
        .map(|i| format!("## Part {i}\n\nThe {version} lighthouse keeper logs entry {i} about fog, tides and ships.\n\n"))
        .collect()
}

struct Fixture {
    test_db: TestDb,
    pipeline: Pipeline,
    queue: Arc<HeldQueue>,
    blobs: LocalBlobStore,
}

async fn fixture() -> Fixture {
    let vars = [
        ("CHUNK_TOKENS", "64"),
        ("CHUNK_OVERLAP_TOKENS", "8"),
        ("EMBED_BATCH_SIZE", "4"),
    ];
    let test_db = TestDb::migrated(&vars).await;
    let config = test_db.config(&vars);
    let pool = db::connect(&config.database).await.unwrap();
    let blobs = LocalBlobStore::new(&test_db.blob_dir);
    let queue = Arc::new(HeldQueue::default());
    let pipeline = Pipeline::new(&config, pool, Arc::new(blobs.clone()), queue.clone()).unwrap();
    Fixture {
        test_db,
        pipeline,
        queue,
        blobs,
    }
}

/// Jobs idle for ten minutes are resumed, twice, then failed.
const TWO_RESUMES: SweepPolicy = SweepPolicy {
    queued_timeout: Duration::from_secs(600),
    parsed_timeout: Duration::from_secs(600),
    chunked_timeout: Duration::from_secs(600),
    max_retries: 2,
    batch: 10,
    model_change_batch: 100,
};

impl Fixture {
    /// Every job as if it had not moved for an hour.
    async fn idle_for_an_hour(&self) {
        self.test_db
            .client()
            .await
            .execute(
                "UPDATE upload_pipeline.upload_jobs SET updated_at = now() - interval '1 hour'",
                &[],
            )
            .await
            .unwrap();
    }

    async fn upload(&self, text: &str) {
        self.blobs.put(KEY, text.to_string().into()).await.unwrap();
    }

    async fn rows(&self) -> Vec<(&'static str, i64)> {
        self.test_db.row_counts().await
    }

    async fn state(&self, job_id: Uuid) -> JobState {
        let client = self.test_db.client().await;
        let row = client
            .query_one(
                "SELECT state FROM upload_pipeline.upload_jobs WHERE id = $1",
                &[&job_id],
            )
            .await
            .unwrap();
        JobState::parse(row.get(0)).unwrap()
    }

    /// Runs messages (and what they send) until none are left.
    async fn drain(&self) {
        loop {
            let messages = self.queue.take();
            if messages.is_empty() {
                return;
            }
            for message in messages {
                handle(&self.pipeline, &message).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn every_stage_replayed_leaves_the_same_rows() {
    let f = fixture().await;
    f.upload(&document("first")).await;

    let first = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap();
    assert_eq!((first.change, first.state), (Change::New, JobState::Queued));
    let after_ingest = f.rows().await;
    let again = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap();
    assert_eq!(
        (again.job_id, again.change),
        (first.job_id, Change::Unchanged)
    );
    assert_eq!(f.rows().await, after_ingest);

    let parse = message(first.job_id, Stage::Parse);
    assert_eq!(f.queue.take(), [parse.clone(), parse.clone()]);
    handle(&f.pipeline, &parse).await.unwrap();
    let after_parse = f.rows().await;
    handle(&f.pipeline, &parse).await.unwrap();
    assert_eq!(f.rows().await, after_parse);
    assert_eq!(f.state(first.job_id).await, JobState::Parsed);

    // A replay after the work is done sends the next stage again: the
    // instance that did the work may have died before sending it.
    let chunk = message(first.job_id, Stage::Chunk);
    assert_eq!(f.queue.take(), [chunk.clone(), chunk.clone()]);
    handle(&f.pipeline, &chunk).await.unwrap();
    let after_chunk = f.rows().await;
    let embeds = f.queue.take();
    handle(&f.pipeline, &chunk).await.unwrap();
    assert_eq!(f.rows().await, after_chunk);
    assert_eq!(
        f.queue.take(),
        embeds,
        "the replayed chunk sent the same batches"
    );
    assert!(
        embeds.len() > 3,
        "several batches expected, got {}",
        embeds.len()
    );
    let mut ended = Vec::new();
    for message in embeds.iter().chain(&embeds) {
        ended.extend(handle(&f.pipeline, message).await.unwrap().ended);
    }
    assert_eq!(ended, [JobState::Complete], "finalized exactly once");
    assert!(f.queue.take().is_empty());

    let client = f.test_db.client().await;
    let row = client
        .query_one(
            "SELECT j.chunk_count,
                    (SELECT count(*) FROM upload_pipeline.document_chunks c WHERE c.job_id = j.id),
                    (SELECT count(DISTINCT chunk_index) FROM upload_pipeline.document_chunks c WHERE c.job_id = j.id),
                    (SELECT count(*) FROM upload_pipeline.events e WHERE e.job_id = j.id AND e.action = 'finalized')
               FROM upload_pipeline.upload_jobs j WHERE j.id = $1",
            &[&first.job_id],
        )
        .await
        .unwrap();
    let chunk_count = i64::from(row.get::<_, i32>(0));
    assert_eq!(
        (
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (chunk_count, chunk_count, 1)
    );
    assert_eq!(
        f.test_db.count("document_chunk_buffer").await,
        0,
        "buffers are emptied at the end"
    );
    assert_eq!(f.test_db.count("document_vector_buffer").await, 0);
}

#[tokio::test]
async fn a_stage_function_sends_another_stage_s_message_on_to_its_queue() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let job_id = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    f.queue.take();
    let parse = message(job_id, Stage::Parse);
    let before = f.rows().await;
    // The chunk function got a parse message: it does not parse, it forwards.
    let handled = handle_stages::<ChunkStage>(&f.pipeline, &parse)
        .await
        .unwrap();
    assert_eq!(handled.ended, None);
    assert_eq!(f.queue.take(), std::slice::from_ref(&parse));
    assert_eq!(f.rows().await, before);
    assert_eq!(f.state(job_id).await, JobState::Queued);
    // The parse function runs it.
    handle_stages::<ParseStage>(&f.pipeline, &parse)
        .await
        .unwrap();
    assert_eq!(f.state(job_id).await, JobState::Parsed);
    assert_eq!(f.queue.take(), [message(job_id, Stage::Chunk)]);
}

#[tokio::test]
async fn duplicate_batches_delivered_concurrently_finalize_once() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let job_id = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    handle(&f.pipeline, &message(job_id, Stage::Parse))
        .await
        .unwrap();
    f.queue.take();
    handle(&f.pipeline, &message(job_id, Stage::Chunk))
        .await
        .unwrap();
    let embeds = f.queue.take();
    let runs = embeds
        .iter()
        .chain(&embeds)
        .chain(&embeds)
        .map(|message| handle(&f.pipeline, message));
    let results = futures::future::join_all(runs).await;
    let ended: Vec<_> = results
        .into_iter()
        .filter_map(|r| r.unwrap().ended)
        .collect();
    assert_eq!(ended, [JobState::Complete]);
    assert_eq!(f.state(job_id).await, JobState::Complete);
}

#[tokio::test]
async fn a_new_version_replaces_the_old_chunks_and_an_old_one_costs_nothing_again() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let v1 = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    f.drain().await;
    let tokens_v1 = f.test_db.count("cost_ledger").await;

    f.upload(&document("second")).await;
    let v2 = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap();
    assert_eq!(v2.change, Change::New);
    assert_eq!(f.state(v1).await, JobState::Complete, "live until v2 is");
    f.drain().await;
    let jobs_in_chunks: Vec<Uuid> = f.test_db.column(LIVE_JOBS).await;
    assert_eq!(jobs_in_chunks, [v2.job_id]);
    // Only the live version is complete, so the states count documents.
    assert_eq!(f.state(v1).await, JobState::Superseded);
    let replaced: Vec<String> = f
        .test_db
        .column(&format!(
            "SELECT action || ' ' || (detail->>'by_job') FROM upload_pipeline.events
              WHERE job_id = '{v1}' AND to_state = 'superseded'"
        ))
        .await;
    assert_eq!(replaced, [format!("replaced {}", v2.job_id)]);
    // The older version's parsed text goes once the newer one is live.
    let text = |job| docpipe_core::domain::keys::parsed_key("acme", job);
    assert!(
        f.blobs.get(&text(v1), u64::MAX).await.is_err(),
        "v1's text remains"
    );
    assert!(f.blobs.get(&text(v2.job_id), u64::MAX).await.is_ok());

    // The first content again: its job is requeued and every vector comes from the cache.
    f.upload(&document("first")).await;
    let back = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap();
    assert_eq!((back.job_id, back.change), (v1, Change::Requeued));
    let ledger_before = f.test_db.count("cost_ledger").await;
    f.drain().await;
    assert_eq!(f.state(v1).await, JobState::Complete);
    assert_eq!(
        f.test_db.count("cost_ledger").await,
        ledger_before,
        "no provider call for cached text"
    );
    assert!(tokens_v1 > 0);
    let jobs_in_chunks: Vec<Uuid> = f.test_db.column(LIVE_JOBS).await;
    assert_eq!(jobs_in_chunks, [v1]);
}

#[tokio::test]
async fn a_version_replaced_mid_flight_is_superseded() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let v1 = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    handle(&f.pipeline, &message(v1, Stage::Parse))
        .await
        .unwrap();
    f.queue.take();

    f.upload(&document("second")).await;
    let v2 = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    assert_eq!(f.state(v1).await, JobState::Superseded);
    // v1's chunk message arrives late: stale, acknowledged, nothing written.
    let late = handle(&f.pipeline, &message(v1, Stage::Chunk))
        .await
        .unwrap();
    assert_eq!(late.ended, None);
    f.drain().await;
    assert_eq!(f.state(v2).await, JobState::Complete);
    let client = f.test_db.client().await;
    let stray: i64 = client
        .query_one(
            "SELECT count(*) FROM upload_pipeline.document_chunks WHERE job_id = $1",
            &[&v1],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0);
}

#[tokio::test]
async fn a_message_for_an_unknown_job_is_acknowledged() {
    let f = fixture().await;
    let handled = handle(&f.pipeline, &message(Uuid::new_v4(), Stage::Parse))
        .await
        .unwrap();
    assert_eq!(handled.ended, None);
    assert!(f.queue.take().is_empty());
}

#[tokio::test]
async fn the_sweeper_resumes_stuck_jobs_then_fails_them() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let job_id = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    f.queue.take(); // the parse message is lost
    let policy = TWO_RESUMES;

    let report = sweep(&f.pipeline, &policy).await.unwrap();
    assert_eq!(report, SweepReport::default(), "a fresh job is not stuck");

    for resume in 1..=2 {
        f.idle_for_an_hour().await;
        let report = sweep(&f.pipeline, &policy).await.unwrap();
        assert_eq!(
            (report.resumed, report.failed),
            (vec![job_id], vec![]),
            "resume {resume}"
        );
        assert_eq!(f.queue.take(), [message(job_id, Stage::Parse)]);
        assert_eq!(
            sweep(&f.pipeline, &policy).await.unwrap(),
            SweepReport::default(),
            "a resumed job's clock restarts"
        );
    }
    f.idle_for_an_hour().await;
    let report = sweep(&f.pipeline, &policy).await.unwrap();
    assert_eq!((report.resumed, report.failed), (vec![], vec![job_id]));
    assert!(f.queue.take().is_empty());
    let client = f.test_db.client().await;
    let row = client
        .query_one(
            "SELECT state, error_code, error_message FROM upload_pipeline.upload_jobs WHERE id = $1",
            &[&job_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "failed");
    assert_eq!(row.get::<_, &str>(1), "stuck");
    assert_eq!(
        row.get::<_, &str>(2),
        "stuck in queued: no progress after the sweeper resumed it 2 times"
    );
}

#[tokio::test]
async fn a_job_that_progresses_between_resumes_is_never_stuck() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let job_id = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    f.queue.take(); // the parse message is lost
    let policy = TWO_RESUMES;
    let resume = async || {
        f.idle_for_an_hour().await;
        let report = sweep(&f.pipeline, &policy).await.unwrap();
        assert_eq!((report.resumed, report.failed), (vec![job_id], vec![]));
        f.queue.take()
    };
    // Two resumes while queued; the second one's parse message is handled.
    resume().await;
    let parse = resume().await;
    handle(&f.pipeline, &parse[0]).await.unwrap();
    f.queue.take(); // the chunk message is lost
    // The job moved on: two more resumes in `parsed`, not `stuck`.
    assert_eq!(resume().await, [message(job_id, Stage::Chunk)]);
    assert_eq!(resume().await, [message(job_id, Stage::Chunk)]);
}

#[tokio::test]
async fn a_sweep_skips_jobs_locked_by_a_running_stage() {
    let f = fixture().await;
    f.upload(&document("first")).await;
    let job_id = ingest(&f.pipeline, KEY, CORRELATION).await.unwrap().job_id;
    f.queue.take();
    let mut holder = f.test_db.client().await;
    holder
        .execute(
            "UPDATE upload_pipeline.upload_jobs SET updated_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM upload_pipeline.upload_jobs WHERE id = $1 FOR UPDATE",
        &[&job_id],
    )
    .await
    .unwrap();
    let policy = SweepPolicy {
        queued_timeout: Duration::from_secs(1),
        parsed_timeout: Duration::from_secs(1),
        chunked_timeout: Duration::from_secs(1),
        max_retries: 0,
        batch: 10,
        ..SweepPolicy::default()
    };
    let report = tokio::time::timeout(Duration::from_secs(5), sweep(&f.pipeline, &policy))
        .await
        .expect("a sweep never waits for a lock")
        .unwrap();
    assert_eq!(report, SweepReport::default());
    tx.rollback().await.unwrap();
    let report = sweep(&f.pipeline, &policy).await.unwrap();
    assert_eq!(report.failed, [job_id]);
}
