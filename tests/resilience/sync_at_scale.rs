//! A sync at scale through the deployed shape: 5 000 objects written while
//! notifications were off become searchable after one sync, a second sync
//! makes no job and pays nothing, a key that cannot be an upload is
//! skipped with its reason, another tenant's folder is left alone.

use docpipe_core::domain::keys::Tenant;
use docpipe_ingest::sync::{Scope, sync};
use docpipe_tests::local_aws::LocalAws;
use futures::StreamExt;

fn acme() -> Scope {
    Scope::new(Tenant::new("acme").unwrap(), "").unwrap()
}

const TOKENS: &str =
    "SELECT coalesce(sum(units), 0)::int8 FROM upload_pipeline.cost_ledger WHERE unit = 'tokens'";

#[tokio::test]
async fn objects_written_while_notifications_were_off_become_searchable_after_one_sync() {
    const OBJECTS: usize = 5000;
    let stack = LocalAws::start(&[]).await;
    stack.notifications_off().await;
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| format!("uploads/acme/backfill/note-{i:05}.txt"))
        .collect();
    futures::stream::iter(&keys)
        .for_each_concurrent(32, async |key| {
            stack
                .put(key, format!("Note {key}: the harbour light was checked."))
                .await
        })
        .await;
    stack
        .put("uploads/acme/tab\there.txt", "a key with a tab")
        .await;
    stack
        .put("uploads/globex/theirs.txt", "another tenant's")
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.documents")
            .await,
        0,
        "no event came"
    );

    let dry = sync(&stack.deployment.pipeline, &acme(), true, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (dry.new, dry.documents_scanned),
        (OBJECTS as u64, OBJECTS as u64)
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.documents")
            .await,
        0,
        "a dry run does nothing"
    );

    let first = stack.synced("acme").await;
    assert_eq!(first.new, OBJECTS as u64, "{first:?}");
    assert_eq!(first.failed, 0, "{first:?}");
    let skipped: Vec<_> = first.skipped.iter().collect();
    assert!(
        matches!(skipped[..], [(why, 1)] if why.contains("control characters")),
        "{first:?}"
    );
    stack.settled().await;
    let complete = "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE state = 'complete'";
    assert_eq!(stack.count(complete).await, OBJECTS as i64);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.documents WHERE tenant <> 'acme'")
            .await,
        0,
        "another tenant's folder is not this sync's"
    );

    // A second sync finds nothing to do and pays nothing.
    let tokens = stack.count(TOKENS).await;
    let jobs = stack
        .count("SELECT count(*) FROM upload_pipeline.upload_jobs")
        .await;
    let second = stack.synced("acme").await;
    assert_eq!(
        (
            second.new,
            second.modified,
            second.deleted,
            second.unchanged
        ),
        (0, 0, 0, OBJECTS as u64),
        "{second:?}"
    );
    assert_eq!(stack.count(TOKENS).await, tokens);
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.upload_jobs")
            .await,
        jobs
    );
}
