//! Every job move against real Postgres: conditional, audited, atomic.

use docpipe_core::db;
use docpipe_core::domain::ids;
use docpipe_core::store::jobs::{self, NewJob};
use docpipe_core::store::stage_work::{self, Taken, Work};
use docpipe_core::{JobState, Rejection};
use docpipe_tests::TestDb;
use uuid::Uuid;

/// A job forced into `state` (test setup only; the pipeline never does this).
async fn job_in(pool: &deadpool_postgres::Pool, state: JobState) -> Uuid {
    job_of(pool, "t", state).await
}

/// [`job_in`] for `tenant`.
async fn job_of(pool: &deadpool_postgres::Pool, tenant: &str, state: JobState) -> Uuid {
    let key = format!("uploads/{tenant}/{}.txt", Uuid::new_v4());
    let document_id = ids::document_id(tenant, &key);
    let sha = ids::sha256(key.as_bytes());
    let job_id = ids::job_id(document_id, &sha);
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO upload_pipeline.documents (id, tenant, source_key) VALUES ($1, $2, $3)",
        &[&document_id, &tenant, &key],
    )
    .await
    .unwrap();
    let job = NewJob {
        id: job_id,
        document_id,
        tenant,
        source_key: &key,
        content_sha256: &sha,
        size_bytes: 1,
        correlation_id: "test",
    };
    assert!(jobs::create(&tx, &job).await.unwrap());
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs SET state = $2 WHERE id = $1",
        &[&job_id, &state.as_str()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    job_id
}

async fn state_and_moves(pool: &deadpool_postgres::Pool, job_id: Uuid) -> (JobState, i64) {
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT state, (SELECT count(*) FROM upload_pipeline.events WHERE job_id = $1 AND action <> 'created')
               FROM upload_pipeline.upload_jobs WHERE id = $1",
            &[&job_id],
        )
        .await
        .unwrap();
    (JobState::parse(row.get(0)).unwrap(), row.get(1))
}

#[tokio::test]
async fn every_legal_move_happens_once_and_every_illegal_one_is_refused() {
    let test_db = TestDb::migrated(&[]).await;
    let pool = db::connect(&test_db.config(&[]).database).await.unwrap();
    for &from in JobState::ALL {
        for &to in JobState::ALL {
            let job_id = job_in(&pool, from).await;
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let result = jobs::transition(&tx, job_id, from, to, serde_json::json!({})).await;
            if result.is_ok() {
                tx.commit().await.unwrap();
            } else {
                drop(tx);
            }
            let (state, moves) = state_and_moves(&pool, job_id).await;
            match from.action_to(to) {
                Some(action) => {
                    assert!(result.unwrap(), "{from} -> {to}");
                    assert_eq!((state, moves), (to, 1), "{from} -> {to}");
                    let recorded: String = client
                        .query_one("SELECT action FROM upload_pipeline.events WHERE job_id = $1 ORDER BY id DESC LIMIT 1", &[&job_id])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(recorded, action);
                }
                None => {
                    let err = result.unwrap_err().to_string();
                    assert!(
                        err.contains(&format!("illegal job transition {from} -> {to}")),
                        "{err}"
                    );
                    assert_eq!((state, moves), (from, 0), "{from} -> {to}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_stale_move_is_a_no_op() {
    let test_db = TestDb::migrated(&[]).await;
    let pool = db::connect(&test_db.config(&[]).database).await.unwrap();
    let job_id = job_in(&pool, JobState::Parsed).await;
    let client = pool.get().await.unwrap();
    // A duplicate parse message expects `queued`; the job has moved on.
    let moved = jobs::transition(
        &client,
        job_id,
        JobState::Queued,
        JobState::Parsed,
        serde_json::json!({}),
    )
    .await;
    assert!(!moved.unwrap());
    assert_eq!(state_and_moves(&pool, job_id).await, (JobState::Parsed, 0));
}

#[tokio::test]
async fn a_rolled_back_move_leaves_no_trace() {
    let test_db = TestDb::migrated(&[]).await;
    let pool = db::connect(&test_db.config(&[]).database).await.unwrap();
    let job_id = job_in(&pool, JobState::Queued).await;
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert!(
        jobs::transition(
            &tx,
            job_id,
            JobState::Queued,
            JobState::Parsed,
            serde_json::json!({})
        )
        .await
        .unwrap()
    );
    drop(tx);
    assert_eq!(state_and_moves(&pool, job_id).await, (JobState::Queued, 0));
}

#[tokio::test]
async fn failing_records_the_reason_once() {
    let test_db = TestDb::migrated(&[]).await;
    let pool = db::connect(&test_db.config(&[]).database).await.unwrap();
    let job_id = job_in(&pool, JobState::Parsed).await;
    let reason = Rejection::NoText;
    assert!(
        jobs::fail(&mut pool.get().await.unwrap(), job_id, &reason)
            .await
            .unwrap()
    );
    assert!(
        !jobs::fail(
            &mut pool.get().await.unwrap(),
            job_id,
            &Rejection::EmptyFile
        )
        .await
        .unwrap()
    );
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT error_code, error_message FROM upload_pipeline.upload_jobs WHERE id = $1",
            &[&job_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "no_text");
    assert_eq!(row.get::<_, String>(1), "document has no extractable text");
    assert_eq!(state_and_moves(&pool, job_id).await, (JobState::Failed, 1));
}

/// What a stage's fair share decides: a tenant past its share lets a tenant
/// with fewer in hand go first, but not one as busy as itself (no worker
/// idles for fairness), nor a job told to wait for spending; work released
/// or past its hold no longer counts.
#[tokio::test]
async fn a_tenant_past_its_share_yields_only_to_a_tenant_with_fewer_in_hand() {
    let test_db = TestDb::migrated(&[]).await;
    let pool = db::connect(&test_db.config(&[]).database).await.unwrap();
    let mut client = pool.get().await.unwrap();
    let parse = |job_id| Work {
        job_id,
        stage: "parse",
        part: 0,
        waits_in: JobState::Queued,
    };
    const SHARE: u32 = 2;
    let hold = std::time::Duration::from_secs(60);
    let jobs_of = async |tenant, n| {
        let mut jobs = Vec::new();
        for _ in 0..n {
            jobs.push(job_of(&pool, tenant, JobState::Queued).await);
        }
        jobs
    };
    let a = jobs_of("a", 4).await;
    let b = jobs_of("b", 3).await;
    let c = jobs_of("c", 1).await;
    client
        .execute(
            "UPDATE upload_pipeline.upload_jobs SET waiting_until = now() + interval '1 hour' WHERE id = $1",
            &[&c[0]],
        )
        .await
        .unwrap();
    let mut take = async |job_id| {
        stage_work::take(&mut client, parse(job_id), SHARE, hold)
            .await
            .unwrap()
    };

    // b waits with none in hand: a takes its share, then yields.
    assert_eq!(take(a[0]).await, Taken::InHand);
    assert_eq!(take(a[1]).await, Taken::InHand);
    assert_eq!(take(a[2]).await, Taken::OverShare);
    // b at its share too, with work still waiting: neither yields to the other.
    assert_eq!(take(b[0]).await, Taken::InHand);
    assert_eq!(take(b[1]).await, Taken::InHand);
    assert_eq!(take(a[2]).await, Taken::InHand);
    assert_eq!(take(b[2]).await, Taken::InHand);
    // c's job waits for spending, not for the stage: a takes more.
    assert_eq!(take(a[3]).await, Taken::InHand);
    assert_eq!(take(Uuid::new_v4()).await, Taken::NoJob);

    // A new tenant waits: a yields until its work is released...
    let d = jobs_of("d", 1).await;
    let take = async |job_id, hold| {
        stage_work::take(&mut pool.get().await.unwrap(), parse(job_id), SHARE, hold)
            .await
            .unwrap()
    };
    let again = jobs_of("a", 1).await;
    assert_eq!(take(again[0], hold).await, Taken::OverShare);
    for job_id in &a {
        stage_work::release(&pool.get().await.unwrap(), parse(*job_id))
            .await
            .unwrap();
    }
    assert_eq!(
        take(again[0], std::time::Duration::ZERO).await,
        Taken::InHand
    );
    // ...and work past its hold counts no more (that take's hold was 0):
    // a has its share again beside it, not past it.
    let last = jobs_of("a", 3).await;
    assert_eq!(take(last[0], hold).await, Taken::InHand);
    assert_eq!(take(last[1], hold).await, Taken::InHand);
    assert_eq!(take(last[2], hold).await, Taken::OverShare);
    assert_eq!(take(d[0], hold).await, Taken::InHand);
}
