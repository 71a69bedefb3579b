//! A sync's listing against a mock of S3's ListObjectsV2 over real HTTP:
//! a million empty objects cost a listing, not a million rows; a key S3
//! could not have listed fails the sync, saying so, where it stood.

use docpipe_core::domain::keys::Tenant;
use docpipe_core::error::{Error, Rejection};
use docpipe_ingest::pipeline::Pipeline;
use docpipe_ingest::sync::{SLICE_OBJECTS, Scope, sync};
use docpipe_mocks::s3_listing::MockBucket;
use docpipe_tests::{TestDb, s3_client_at, serve, unreachable_aws};
use std::sync::Arc;
use std::time::Instant;

/// A pipeline whose bucket is `bucket`, served over HTTP; queues unreachable.
async fn pipeline_over(bucket: &Arc<MockBucket>, test_db: &TestDb) -> Pipeline {
    let address = serve(bucket.router()).await;
    let settings = test_db.config(&[]);
    let (_, sqs, queues) = unreachable_aws();
    Pipeline::new(
        &settings,
        docpipe_core::db::connect(&settings.database).await.unwrap(),
        Arc::new(docpipe_aws::s3::S3BlobStore::new(
            s3_client_at(&format!("http://{address}")),
            &bucket.name,
        )),
        Arc::new(docpipe_aws::sqs::SqsQueue::new(sqs, queues)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_empty_objects_make_no_rows() {
    const OBJECTS: u64 = 1_000_000;
    let bucket = MockBucket::new("hostile", "uploads/acme/", OBJECTS, 0);
    let test_db = TestDb::migrated(&[]).await;
    let pipeline = pipeline_over(&bucket, &test_db).await;
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

#[tokio::test]
async fn a_listed_key_that_is_not_utf8_fails_the_sync_where_it_stood() {
    // The third page holds the bad key: two pages are done before it.
    let bad = 2 * SLICE_OBJECTS as u64 + 10;
    let bucket = MockBucket::with_key_not_utf8("hostile", "uploads/acme/", 1000, 0, Some(bad));
    let test_db = TestDb::migrated(&[]).await;
    let pipeline = pipeline_over(&bucket, &test_db).await;
    let scope = Scope::new(Tenant::new("acme").unwrap(), "").unwrap();

    let error = sync(&pipeline, &scope, false, |_| {}).await.unwrap_err();
    let Error::Rejected(Rejection::InvalidKey { key, detail }) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(key, &bucket.key(bad));
    assert!(detail.contains("not UTF-8"), "{detail}");
    // Failed, saying why, at the last page it finished: not retried until
    // its message is lost, and nothing past the cursor read as deleted.
    let client = test_db.client().await;
    let row = client
        .query_one(
            "SELECT state, error, cursor, counts FROM upload_pipeline.syncs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("state"), "failed");
    assert!(row.get::<_, String>("error").contains("-%FF.txt"));
    assert_eq!(
        row.get::<_, Option<String>>("cursor"),
        Some(bucket.key(2 * SLICE_OBJECTS as u64 - 1))
    );
    let counts: serde_json::Value = row.get("counts");
    assert_eq!(counts["documents_scanned"], 2 * SLICE_OBJECTS as u64);
    // The scope is free again: the next sync starts, and fails alike.
    assert!(sync(&pipeline, &scope, true, |_| {}).await.is_err());
    assert_eq!(test_db.count("syncs").await, 2);
}
