//! A sync's listing against a mock of S3's ListObjectsV2 over real HTTP:
//! a million empty objects cost a listing, not a million rows.

use docpipe_core::domain::keys::Tenant;
use docpipe_ingest::pipeline::Pipeline;
use docpipe_ingest::sync::{Scope, sync};
use docpipe_mocks::s3_listing::MockBucket;
use docpipe_tests::{TestDb, s3_client_at, serve, unreachable_aws};
use std::sync::Arc;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_empty_objects_make_no_rows() {
    const OBJECTS: u64 = 1_000_000;
    let bucket = MockBucket::new("hostile", "uploads/acme/", OBJECTS, 0);
    let address = serve(bucket.router()).await;
    let test_db = TestDb::migrated(&[]).await;
    let settings = test_db.config(&[]);
    let (_, sqs, queues) = unreachable_aws();
    let pipeline = Pipeline::new(
        &settings,
        docpipe_core::db::connect(&settings.database).await.unwrap(),
        Arc::new(docpipe_aws::s3::S3BlobStore::new(
            s3_client_at(&format!("http://{address}")),
            "hostile",
        )),
        Arc::new(docpipe_aws::sqs::SqsQueue::new(sqs, queues)),
    )
    .unwrap();
    let scope = Scope::new(Tenant::new("acme").unwrap(), "").unwrap();

    let started = Instant::now();
    let counts = sync(&pipeline, &scope, false, |_| {}).await.unwrap();
    let took = started.elapsed();
    println!(
        "{OBJECTS} empty objects synced in {took:?} ({} listings)",
        bucket.lists()
    );
    assert_eq!(counts.documents_scanned, OBJECTS);
    assert_eq!(
        counts.skipped.values().sum::<u64>(),
        OBJECTS,
        "{:?}",
        counts.skipped
    );
    assert!(counts.skipped.keys().all(|why| why.contains("empty")));
    assert_eq!(counts.new + counts.failed, 0, "{counts:?}");
    for table in ["documents", "upload_jobs", "events"] {
        assert_eq!(test_db.count(table).await, 0, "{table}");
    }
    assert_eq!(test_db.count("syncs").await, 1);
}
