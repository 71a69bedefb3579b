//! A sync that lists from an S3 Inventory report (`docpipe sync
//! --inventory`) on LocalStack: the report written as S3 writes one
//! (gzipped CSV files, a manifest with their MD5s), in no key order. It
//! converges as a listed sync does, leaves alone a document written after
//! the report was taken (even one whose object is gone since) and other
//! tenants' rows; a tampered file, one over its bound, another bucket's
//! report or one rewritten under its sync deletes nothing.

use docpipe_core::domain::keys::Tenant;
use docpipe_core::error::{Error, Rejection};
use docpipe_ingest::sync::{Scope, Slice, slice, start_from_inventory, work_to_end};
use docpipe_tests::inventory_report::{rows_of, write_files, write_report};
use docpipe_tests::local_aws::LocalAws;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::time::SystemTime;

const DOCUMENTS: &str = "SELECT count(*) FROM upload_pipeline.documents";

fn acme() -> Scope {
    Scope::new(Tenant::new("acme").unwrap(), "").unwrap()
}

/// A sync of acme's folder from the report at `manifest`, run to its end.
async fn synced_from(stack: &LocalAws, manifest: &str) -> docpipe_core::error::Result<u64> {
    let pipeline = &stack.deployment.pipeline;
    let bucket = stack.resources.bucket.as_str();
    let started = start_from_inventory(pipeline, &acme(), false, (bucket, manifest)).await?;
    let counts = work_to_end(pipeline, started.id(), |_| {}).await?;
    Ok(counts.deleted)
}

fn bad_inventory(result: docpipe_core::error::Result<u64>) -> String {
    match result {
        Err(Error::Rejected(Rejection::BadInventory { detail })) => detail,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_sync_from_an_inventory_report_converges_and_deletes_only_what_the_report_saw() {
    let stack = LocalAws::start(&[]).await;
    for key in ["a", "b", "c"].map(|name| format!("uploads/acme/{name}.md")) {
        stack.put(&key, format!("{key}: text about tides.")).await;
        stack.wait_for_state(&key, "complete").await;
    }
    stack
        .put("uploads/globex/g.md", "Globex's, not in the report.")
        .await;
    stack
        .wait_for_state("uploads/globex/g.md", "complete")
        .await;
    let taken =
        docpipe_ingest::store::sync::now(&stack.deployment.pipeline.db.get().await.unwrap())
            .await
            .unwrap();
    // Written after the report was taken, then deleted unseen: the report
    // cannot tell, so the document stays until a later report or listing.
    stack
        .put("uploads/acme/f.md", "Foxtrot, after the report.")
        .await;
    stack.wait_for_state("uploads/acme/f.md", "complete").await;
    stack.notifications_off().await;
    stack.delete("uploads/acme/f.md").await;
    stack.delete("uploads/acme/b.md").await;
    stack
        .put("uploads/acme/d.md", "Delta, unseen by events.")
        .await;
    let report = rows_of(
        &stack,
        &[
            "uploads/acme/a.md",
            "uploads/acme/c.md",
            "uploads/acme/d.md",
        ],
    )
    .await;
    let bucket = stack.resources.bucket.clone();

    // Refused before anything is read: another bucket's report, one out of
    // inventory/, one whose file changed after its manifest was written.
    let other = write_report(&stack, ("other", "another-bucket"), &report, (2, taken)).await;
    assert!(bad_inventory(synced_from(&stack, &other).await).contains("another-bucket's report"));
    let outside = synced_from(&stack, "uploads/acme/manifest.json").await;
    assert!(bad_inventory(outside).contains("under inventory/"));
    let tampered = write_report(&stack, ("tampered", &bucket), &report, (2, taken)).await;
    let file = tampered.replace("manifest.json", "data/1.csv.gz");
    let mut csv = GzEncoder::new(Vec::new(), Compression::default());
    writeln!(csv, "\"{bucket}\",\"uploads/acme/a.md\",\"1\",\"00\"").unwrap();
    stack.put(&file, csv.finish().unwrap()).await;
    assert!(bad_inventory(synced_from(&stack, &tampered).await).contains("MD5"));
    // A report rewritten with fewer files under its sync (S3 never rewrites
    // one) fails it: what the dropped file listed would read as deleted.
    let pipeline = &stack.deployment.pipeline;
    let shrunk = write_report(&stack, ("shrunk", &bucket), &report, (2, taken)).await;
    let started = start_from_inventory(pipeline, &acme(), false, (&bucket, &shrunk))
        .await
        .unwrap();
    let first = slice(pipeline, started.id()).await.unwrap();
    assert!(matches!(first, Slice::More(_)), "{first:?}");
    write_report(&stack, ("shrunk", &bucket), &report, (1, taken)).await;
    match slice(pipeline, started.id()).await.unwrap() {
        Slice::Failed(Rejection::BadInventory { detail }) => {
            assert!(detail.contains("now lists 1 files, 2 when"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stack.count(DOCUMENTS).await, 5, "nothing deleted");
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM upload_pipeline.syncs WHERE state = 'failed'
                   AND error LIKE '%MD5%'"
            )
            .await,
        1
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.sync_inventory")
            .await,
        0,
        "a failed sync's staged listing is dropped"
    );

    let good = write_report(&stack, ("good", &bucket), &report, (2, taken)).await;
    let started = start_from_inventory(pipeline, &acme(), false, (&bucket, &good))
        .await
        .unwrap();
    for _ in 0..2 {
        let staged = slice(pipeline, started.id()).await.unwrap();
        assert!(
            matches!(staged, Slice::More(_)),
            "a file a slice: {staged:?}"
        );
    }
    // Once its files are staged the report is listed from Postgres: the
    // manifest is not read again (gone now, the sync still ends).
    stack.delete(&good).await;
    let counts = work_to_end(pipeline, started.id(), |_| {}).await.unwrap();
    assert_eq!(counts.deleted, 1, "{counts:?}");
    stack.settled().await;
    let keys: Vec<String> = stack
        .test_db
        .column("SELECT source_key FROM upload_pipeline.documents ORDER BY source_key")
        .await;
    assert_eq!(
        keys,
        [
            "uploads/acme/a.md",
            "uploads/acme/c.md",
            "uploads/acme/d.md",
            "uploads/acme/f.md",
            "uploads/globex/g.md"
        ]
    );
    stack.wait_for_state("uploads/acme/d.md", "complete").await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.sync_inventory")
            .await,
        0
    );
    // The same report again: everything it lists is known.
    let good = write_report(&stack, ("good", &bucket), &report, (2, taken)).await;
    let counts = {
        let pipeline = &stack.deployment.pipeline;
        let started = start_from_inventory(pipeline, &acme(), false, (&bucket, &good))
            .await
            .unwrap();
        work_to_end(pipeline, started.id(), |_| {}).await.unwrap()
    };
    assert_eq!(
        (
            counts.documents_scanned,
            counts.unchanged,
            counts.new,
            counts.deleted
        ),
        (3, 3, 0, 0),
        "{counts:?}"
    );
}

/// This process's peak resident memory, in bytes (Linux's VmHWM).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// A report file that inflates to one endless line (a gzip bomb: 128 MiB
/// from ~130 KB) fails its sync at the line bound, having held a few MiB
/// of it, and deletes nothing. (LocalStack sends small parts, ~6 MiB held
/// here; inflating 4 KiB at a time keeps S3's larger parts as small.)
#[tokio::test]
async fn a_gzip_bomb_in_a_report_fails_its_sync_at_the_line_bound() {
    let stack = LocalAws::start(&[]).await;
    stack.put("uploads/acme/a.md", "Alpha, in no report.").await;
    stack.wait_for_state("uploads/acme/a.md", "complete").await;
    // Gzip members one after another are one stream: 128 of 1 MiB each.
    let mut member = GzEncoder::new(Vec::new(), Compression::best());
    member.write_all(&[b'a'; 1 << 20]).unwrap();
    let bomb = member.finish().unwrap().repeat(128);
    let bucket = stack.resources.bucket.clone();
    let manifest = write_files(&stack, ("bomb", &bucket), vec![bomb], SystemTime::now()).await;
    let before = peak_rss();
    let detail = bad_inventory(synced_from(&stack, &manifest).await);
    assert!(detail.contains("a line over 16384 bytes"), "{detail}");
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 32 << 20, "peak memory grew {} MiB", grown >> 20);
    assert_eq!(stack.count(DOCUMENTS).await, 1, "nothing deleted");
}

/// A report file over the 1 GiB a slice stages, or a manifest over its
/// 16 MiB, fails its sync at once, by its size, before a byte of it is
/// read, and deletes nothing.
#[tokio::test]
async fn report_files_over_their_bounds_fail_their_sync_unread() {
    let stack = LocalAws::start(&[]).await;
    stack.put("uploads/acme/a.md", "Alpha, in no report.").await;
    stack.wait_for_state("uploads/acme/a.md", "complete").await;
    let bucket = stack.resources.bucket.clone();
    let huge = vec![0u8; (1 << 30) + 1];
    let manifest = write_files(&stack, ("huge", &bucket), vec![huge], SystemTime::now()).await;
    let started = std::time::Instant::now();
    let detail = bad_inventory(synced_from(&stack, &manifest).await);
    assert!(
        detail.ends_with("0.csv.gz: 1073741825 bytes, over the 1073741824 a report's file may be"),
        "{detail}"
    );
    // Reading it at LocalStack's pace would take many seconds.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");

    let manifest = "inventory/big/manifest.json";
    stack.put(manifest, vec![b' '; (16 << 20) + 1]).await;
    let detail = bad_inventory(synced_from(&stack, manifest).await);
    assert_eq!(
        detail,
        format!("{manifest}: 16777217 bytes, over the 16777216 a report's file may be")
    );
    assert_eq!(stack.count(DOCUMENTS).await, 1, "nothing deleted");
}
