//! `docpipe-sync-bench`: `docpipe sync` against LocalStack S3 and Postgres.
//!
//! For each object count: that many small objects written with notifications
//! off, then `docpipe sync` in a process of its own, three ways: a dry run
//! (all new: listing and comparing), the sync itself (all new: a job and a
//! parse message each), and the reconcile of an index that is up to date
//! (all unchanged: what the scheduled reconcile costs). Each reports objects
//! per second and peak RSS (flat memory: a page at a time). The jobs are
//! marked complete in SQL before the reconcile, standing in for a pipeline
//! that has drained them. The dry run and the reconcile are timed again
//! listing from an S3 Inventory report of the same objects (`--inventory`:
//! the report staged in Postgres, then read in key order).
//!
//! With `--beside-backfill N`: the deployed shape instead (slices through
//! the uploads queue, the event-source runner, the mock embedder). One
//! tenant's small upload is timed to searchable alone, then while another
//! tenant's backfill of N objects runs.
//!
//!   cargo build --profile perf -p docpipe-cli
//!   cargo run --profile perf -p docpipe-benches --bin docpipe-sync-bench -- [--docpipe target/perf/docpipe] [--objects 10000,100000] [--rounds 3] [--beside-backfill 100000 --samples 5]
//!
//! Needs DATABASE_URL (a Postgres with pgvector) and LocalStack
//! (`scripts/localstack up`, its AWS_* variables).

use clap::Parser;
use docpipe_benches::{measured, median, spread};
use docpipe_tests::inventory_report::{ReportRow, write_report};
use docpipe_tests::local_aws::{LocalAws, s3_notification};
use futures::StreamExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

#[derive(Parser)]
#[command(name = "docpipe-sync-bench")]
struct Args {
    /// The `docpipe` binary to measure.
    #[arg(long, default_value = "target/perf/docpipe")]
    docpipe: PathBuf,
    /// Object counts to sync, one bucket each.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    objects: Vec<usize>,
    /// Times the dry run and the reconcile are repeated on each bucket.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Instead: a small upload's latency to searchable, alone and during a
    /// backfill of this many objects.
    #[arg(long, value_name = "OBJECTS")]
    beside_backfill: Option<usize>,
    /// Small uploads timed alone, and again during the backfill.
    #[arg(long, default_value_t = 5)]
    samples: usize,
}

const HEAVY: &str = "acme";
const LIGHT: &str = "light";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if let Some(objects) = args.beside_backfill {
        return beside_backfill(objects, args.samples, cores).await;
    }
    println!(
        "docpipe-sync-bench: {}, LocalStack, {cores} cores; min / median / max over the rounds",
        args.docpipe.display()
    );
    println!("| objects | docpipe sync | seconds | objects/s | peak RSS |");
    println!("|---|---|---|---|---|");
    for objects in args.objects {
        // Enough in flight that the sync never waits for a pipeline that is not running.
        let in_flight = (objects + 1).to_string();
        let mut stack = LocalAws::start(&[("SYNC_TENANT_IN_FLIGHT", &in_flight)]).await;
        stack.runner.abort_all();
        stack.notifications_off().await;
        write_objects(&stack, HEAVY, objects).await;
        let manifest = inventory_of(&stack, objects).await;
        let sync_from = |dry_run: bool, inventory: Option<&str>| {
            let mut command = std::process::Command::new(&args.docpipe);
            command
                .args(["sync", "--json", "--tenant", HEAVY])
                .arg(format!("s3://{}/", stack.resources.bucket))
                .args(dry_run.then_some("--dry-run"))
                .args(inventory.map(|manifest| {
                    format!("--inventory=s3://{}/{manifest}", stack.resources.bucket)
                }))
                .envs(stack.resources.env())
                .env("DATABASE_URL", &stack.test_db.url)
                .env("S3_FORCE_PATH_STYLE", "true")
                .env("SYNC_TENANT_IN_FLIGHT", &in_flight);
            let run = measured(&mut command);
            assert_eq!(run.exit_code, Some(0), "docpipe sync: {}", run.stdout);
            let counts: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
            assert_eq!(
                counts["documents_scanned"], objects,
                "every object scanned: {counts}"
            );
            run
        };
        let sync = |dry_run: bool| sync_from(dry_run, None);
        let listings: Vec<f64> = futures::stream::iter(0..args.rounds)
            .then(|_| list_alone(&stack))
            .collect()
            .await;
        println!(
            "| {objects} | ListObjectsV2 alone (250 keys a page) | {} | {} | |",
            spread(&listings, 1),
            spread(
                &listings
                    .iter()
                    .map(|s| objects as f64 / s)
                    .collect::<Vec<_>>(),
                0
            )
        );
        report(
            objects,
            "dry run (all new)",
            (0..args.rounds).map(|_| sync(true)),
        );
        report(
            objects,
            "dry run from an inventory report (all new)",
            (0..args.rounds).map(|_| sync_from(true, Some(&manifest))),
        );
        report(objects, "sync (all new: enqueued)", [sync(false)]);
        stack
            .test_db
            .client()
            .await
            .execute(
                "UPDATE upload_pipeline.upload_jobs SET state = 'complete'",
                &[],
            )
            .await
            .unwrap();
        let reconciles: Vec<_> = (0..args.rounds).map(|_| sync(false)).collect();
        let per_million = median(&reconciles.iter().map(|r| r.seconds).collect::<Vec<_>>())
            / objects as f64
            * 1e6;
        report(objects, "reconcile (all unchanged)", reconciles);
        report(
            objects,
            "reconcile from an inventory report (all unchanged)",
            (0..args.rounds).map(|_| sync_from(false, Some(&manifest))),
        );
        println!("|  | reconcile: {per_million:.0} s of one process per million objects | | | |");
    }
}

/// `count` small text objects under `tenant`'s folder, 64 writes at a time.
async fn write_objects(stack: &LocalAws, tenant: &str, count: usize) {
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(64, async |n| {
            let key = format!("uploads/{tenant}/backfill/{:03}/note-{n:07}.txt", n % 1000);
            stack
                .put(&key, format!("Note {n}: the harbour light was checked."))
                .await
        })
        .await;
    eprintln!(
        "  wrote {count} objects in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// An inventory report of the tenant's folder as it is now, in files of
/// 25 000 rows; its manifest's key.
async fn inventory_of(stack: &LocalAws, objects: usize) -> String {
    let mut rows = Vec::new();
    let mut pages = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.resources.bucket)
        .prefix(format!("uploads/{HEAVY}/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.expect("ListObjectsV2").contents() {
            rows.push(ReportRow {
                key: object.key().unwrap_or_default().to_string(),
                size: object.size().unwrap_or(0),
                etag: object.e_tag().unwrap_or_default().to_string(),
            });
        }
    }
    let files = objects.div_ceil(25_000);
    let bucket = stack.resources.bucket.as_str();
    write_report(stack, ("bench", bucket), &rows, (files, SystemTime::now())).await
}

/// The seconds a bare listing of the tenant's folder takes, pages of 250
/// as a sync lists: the emulator's share of a sync's time.
async fn list_alone(stack: &LocalAws) -> f64 {
    let started = Instant::now();
    let mut pages = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.resources.bucket)
        .prefix(format!("uploads/{HEAVY}/"))
        .max_keys(250)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        page.expect("ListObjectsV2");
    }
    started.elapsed().as_secs_f64()
}

/// One table row: the runs' seconds, objects/s and peak RSS as min / median / max.
fn report(objects: usize, what: &str, runs: impl IntoIterator<Item = docpipe_benches::Measured>) {
    let runs: Vec<_> = runs.into_iter().collect();
    println!(
        "| {objects} | {what} | {} | {} | {} MB |",
        spread(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>(), 1),
        spread(
            &runs
                .iter()
                .map(|r| objects as f64 / r.seconds)
                .collect::<Vec<_>>(),
            0
        ),
        spread(
            &runs
                .iter()
                .map(|r| r.peak_rss_bytes as f64 / 1e6)
                .collect::<Vec<_>>(),
            0
        ),
    );
}

/// A small upload of the light tenant, timed from its write to its job
/// complete (its event sent as S3 would: notifications are off for the backfill).
async fn light_upload(stack: &LocalAws, n: usize) -> f64 {
    let key = format!("uploads/{LIGHT}/question-{n}.md");
    let started = Instant::now();
    stack
        .put(
            &key,
            format!("# Question {n}\n\nWhere does the fog bell hang?\n"),
        )
        .await;
    stack
        .send(
            &stack.resources.uploads.url,
            &s3_notification(&stack.resources.bucket, &key, "ObjectCreated:Put"),
        )
        .await;
    stack.wait_for_state(&key, "complete").await;
    started.elapsed().as_secs_f64()
}

async fn beside_backfill(objects: usize, samples: usize, cores: usize) {
    println!(
        "docpipe-sync-bench beside a backfill: {objects} objects of one tenant, \
         synced through the uploads queue; {cores} cores"
    );
    let stack = LocalAws::start(&[]).await;
    stack.notifications_off().await;
    write_objects(&stack, HEAVY, objects).await;
    let listings: Vec<f64> = futures::stream::iter(0..3)
        .then(|_| list_alone(&stack))
        .collect()
        .await;
    println!(
        "  ListObjectsV2 alone over the {objects} objects, pages of 250: {} s",
        spread(&listings, 1)
    );
    let alone: Vec<f64> = futures::stream::iter(0..samples)
        .then(|n| light_upload(&stack, n))
        .collect()
        .await;
    stack.ask_for_a_sync(HEAVY).await;
    let started = Instant::now();
    // Into the backfill's stride: its first slices enqueued, the pipeline busy.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut beside = Vec::new();
    for n in 0..samples {
        beside.push(light_upload(&stack, samples + n).await);
    }
    let ingested = stack
        .count(&format!(
            "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE tenant = '{HEAVY}'"
        ))
        .await;
    let complete = stack
        .count(&format!(
            "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE tenant = '{HEAVY}' AND state = 'complete'"
        ))
        .await;
    println!(
        "  small upload to searchable (min / median / max of {samples}): alone {} s, \
         during the backfill {} s; ratio of medians {:.2}",
        spread(&alone, 2),
        spread(&beside, 2),
        median(&beside) / median(&alone)
    );
    println!(
        "  the backfill after {:.0} s: {ingested} of {objects} objects enqueued, {complete} searchable",
        started.elapsed().as_secs_f64()
    );
}
