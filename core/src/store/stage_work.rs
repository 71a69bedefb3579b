//! `stage_work`: the stage messages each tenant has in hand, so that one
//! tenant's burst takes no more than its share of a stage's workers while
//! another tenant's work waits (`pipeline::fair_share`).

use crate::domain::state::JobState;
use crate::error::Result;
use deadpool_postgres::GenericClient;
use std::time::Duration;
use uuid::Uuid;

/// One stage message's work: the job, the stage's name, and which part of
/// the job (an embed batch's first chunk; 0 for the other stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub job_id: Uuid,
    pub stage: &'static str,
    pub part: i32,
    /// The state the stage's jobs wait in.
    pub waits_in: JobState,
}

/// What [`take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The work is in hand until [`release`] (or `hold` has passed).
    InHand,
    /// Its tenant has `share` messages of this stage in hand and another
    /// tenant's job waits for the stage: let that one go first.
    OverShare,
    /// No such job: the stage finds the message stale.
    NoJob,
}

/// Takes `work` in hand for up to `hold`, unless its tenant already has
/// `share` of this stage's messages in hand while a tenant with fewer in
/// hand has a job waiting for the stage (one not told to wait for spending,
/// not parsing at LlamaParse, and not itself in hand). Tenants at their
/// share do not yield to each other, so no worker idles for fairness. A tenant's takes in one stage are
/// one at a time (a transaction lock on the pair), so a batch taken at once
/// does not all count the same few in hand.
pub async fn take(
    client: &mut deadpool_postgres::Client,
    work: Work,
    share: u32,
    hold: Duration,
) -> Result<Taken> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(tenant || '/' || $2, 0))
           FROM upload_pipeline.upload_jobs WHERE id = $1",
        &[&work.job_id, &work.stage],
    )
    .await?;
    // A statement of its own: its snapshot sees the takes committed before the lock.
    let row = tx
        .query_one(
            "WITH job AS (
                 SELECT tenant FROM upload_pipeline.upload_jobs WHERE id = $1
             ), busy AS (
                 SELECT count(*) AS n FROM upload_pipeline.stage_work w, job
                  WHERE w.stage = $2 AND w.tenant = job.tenant AND w.until > now()
                    AND (w.job_id, w.part) <> ($1, $3)
             ), others_wait AS (
                 -- The tenants with jobs in the stage's state, one index probe
                 -- each (a skip scan: a tenant's backlog is never read row by row).
                 WITH RECURSIVE tenants(tenant) AS (
                     SELECT min(tenant) FROM upload_pipeline.upload_jobs WHERE state = $4
                     UNION ALL
                     SELECT (SELECT min(j.tenant) FROM upload_pipeline.upload_jobs j
                              WHERE j.state = $4 AND j.tenant > tenants.tenant)
                       FROM tenants WHERE tenants.tenant IS NOT NULL
                 )
                 SELECT EXISTS (
                     SELECT 1 FROM tenants t, job
                      WHERE t.tenant IS NOT NULL AND t.tenant <> job.tenant
                        AND (SELECT count(*) FROM upload_pipeline.stage_work w
                              WHERE w.stage = $2 AND w.tenant = t.tenant AND w.until > now()) < $6
                        AND EXISTS (
                            SELECT 1 FROM upload_pipeline.upload_jobs j
                             WHERE j.state = $4 AND j.tenant = t.tenant
                               AND (j.waiting_until IS NULL OR j.waiting_until <= now())
                               AND (j.state <> 'queued' OR j.parse_request_id IS NULL)
                               AND NOT EXISTS (
                                   SELECT 1 FROM upload_pipeline.stage_work w
                                    WHERE w.job_id = j.id AND w.until > now()))
                 ) AS yes
             ), taken AS (
                 INSERT INTO upload_pipeline.stage_work (job_id, stage, part, tenant, until)
                 SELECT $1, $2, $3, job.tenant, now() + make_interval(secs => $5)
                   FROM job, busy
                  -- Whether others wait is asked only of a tenant at its share.
                  WHERE CASE WHEN busy.n < $6 THEN true
                             ELSE NOT (SELECT yes FROM others_wait) END
                 ON CONFLICT (job_id, stage, part) DO UPDATE SET until = excluded.until
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM job), EXISTS (SELECT 1 FROM taken)",
            &[
                &work.job_id,
                &work.stage,
                &work.part,
                &work.waits_in,
                &hold.as_secs_f64(),
                &i64::from(share),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(match (row.get(0), row.get(1)) {
        (false, _) => Taken::NoJob,
        (true, true) => Taken::InHand,
        (true, false) => Taken::OverShare,
    })
}

/// The work is no longer in hand.
pub async fn release(client: &impl GenericClient, work: Work) -> Result<()> {
    client
        .execute(
            "DELETE FROM upload_pipeline.stage_work WHERE job_id = $1 AND stage = $2 AND part = $3",
            &[&work.job_id, &work.stage, &work.part],
        )
        .await?;
    Ok(())
}
