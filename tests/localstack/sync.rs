//! Syncs of the bucket against the documents (`docpipe_ingest::sync`)
//! through the deployed shape: deletes and sidecar edits made while
//! notifications were off converge, an upload during a sync makes one job,
//! the API's syncs and Bedrock's ingestion jobs move through the queue in
//! the caller's folder only; a backfill waits, and says why, while its
//! tenant's documents fill the pipeline or its spending is stopped.
//! (5 000 objects: `tests/resilience/sync_at_scale.rs`.)

use docpipe_core::domain::keys::Tenant;
use docpipe_ingest::store::sync as sync_rows;
use docpipe_ingest::sync::{Scope, Slice, StartedBy, slice, start, sync};
use docpipe_local_runner::provision::QueueSettings;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::local_aws::{LocalAws, RunnerOptions, WITHIN, sdk_config_through, wait_until};
use docpipe_tests::{Outage, spawn_openai};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

fn acme() -> Scope {
    Scope::new(Tenant::new("acme").unwrap(), "").unwrap()
}

/// A sync of acme's folder, started; its slices are the test's to drive.
async fn acme_sync(pipeline: &docpipe_ingest::pipeline::Pipeline) -> uuid::Uuid {
    start(pipeline, &acme(), false, StartedBy::Request)
        .await
        .unwrap()
        .id()
}

#[tokio::test]
async fn deletes_edits_and_sidecars_made_while_notifications_were_off_converge() {
    let stack = LocalAws::start(&[]).await;
    let sidecar = |team: &str| json!({"metadataAttributes": {"team": team}}).to_string();
    let put_all = async |objects: &[(&str, String)]| {
        for (key, body) in objects {
            stack.put(key, body.clone()).await;
        }
    };
    put_all(&[
        ("uploads/acme/a.md", "Alpha text about tides.".into()),
        ("uploads/acme/a.md.metadata.json", sidecar("harbour")),
        ("uploads/acme/b.md", "Bravo text about buoys.".into()),
        ("uploads/acme/c.md", "Charlie text about fog.".into()),
    ])
    .await;
    for key in [
        "uploads/acme/a.md",
        "uploads/acme/b.md",
        "uploads/acme/c.md",
    ] {
        stack.wait_for_state(key, "complete").await;
    }
    stack.notifications_off().await;
    stack.delete("uploads/acme/b.md").await;
    put_all(&[
        ("uploads/acme/c.md", "Charlie text, rewritten.".into()),
        ("uploads/acme/c.md.metadata.json", sidecar("works")),
        ("uploads/acme/a.md.metadata.json", sidecar("legal")),
        ("uploads/acme/d.md", "Delta text about pilots.".into()),
    ])
    .await;

    let counts = stack.synced("acme").await;
    assert_eq!(
        (
            counts.new,
            counts.modified,
            counts.deleted,
            counts.metadata_modified,
            counts.unchanged
        ),
        (1, 1, 1, 2, 1),
        "{counts:?}"
    );
    stack.settled().await;
    let db = stack.test_db.client().await;
    let documents: Vec<(String, serde_json::Value)> = db
        .query(
            "SELECT source_key, metadata FROM upload_pipeline.documents ORDER BY source_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        documents,
        [
            ("uploads/acme/a.md".to_string(), json!({"team": "legal"})),
            ("uploads/acme/c.md".to_string(), json!({"team": "works"})),
            ("uploads/acme/d.md".to_string(), json!({})),
        ]
    );
    let live_text: String = db
        .query_one(
            "SELECT text FROM upload_pipeline.document_chunks WHERE source_key = 'uploads/acme/c.md'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live_text, "Charlie text, rewritten.");
    // The sidecars' versions are known now: nothing to read again.
    let again = stack.synced("acme").await;
    assert_eq!(
        (again.metadata_modified, again.metadata_documents_scanned),
        (0, 2),
        "{again:?}"
    );
}

#[tokio::test]
async fn an_upload_evented_and_synced_at_once_makes_one_job() {
    let stack = LocalAws::start(&[]).await;
    for round in 0..5 {
        let key = format!("uploads/acme/race-{round}.md");
        let scope = acme();
        let (_, counts) = tokio::join!(
            stack.put(&key, format!("Round {round} of the race.")),
            sync(&stack.deployment.pipeline, &scope, false, |_| {}),
        );
        counts.unwrap();
        stack.wait_for_state(&key, "complete").await;
    }
    // Synced once more after the events: still one job each.
    stack.synced("acme").await;
    stack.settled().await;
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM (SELECT source_key FROM upload_pipeline.upload_jobs
              GROUP BY source_key HAVING count(*) > 1) twice"
            )
            .await,
        0
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.upload_jobs")
            .await,
        5
    );
}

#[tokio::test]
async fn a_sync_asked_of_the_api_moves_through_the_queue_in_the_callers_folder_only() {
    const OBJECTS: usize = 300;
    let stack = LocalAws::start(&[]).await;
    let keys = "acme-key-0123456789:acme, globex-key-0123456789:globex";
    let base = stack.serve_api_with(keys, &[]).await;
    stack.notifications_off().await;
    futures::stream::iter(0..OBJECTS)
        .for_each_concurrent(32, async |i| {
            let key = format!("uploads/acme/notes/{i:04}.txt");
            stack
                .put(&key, format!("Note {i} on the tide gauge."))
                .await
        })
        .await;
    let http = docpipe_tests::http_client();
    let call =
        async |key: &str, method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
            let mut request = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(key);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        };
    let acme = "acme-key-0123456789";
    let (status, started) = call(acme, reqwest::Method::POST, "/v1/syncs", Some(json!({}))).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(started["prefix"], "uploads/acme/");
    let path = format!("/v1/syncs/{id}");
    wait_until(WITHIN, "the sync to complete", async || {
        call(acme, reqwest::Method::GET, &path, None).await.1["state"] == "complete"
    })
    .await;
    let (_, done) = call(acme, reqwest::Method::GET, &path, None).await;
    assert_eq!(done["counts"]["new"], OBJECTS as u64, "{done}");
    assert!(
        done["finished_at"].is_object() || done["finished_at"].is_string(),
        "{done}"
    );
    stack.settled().await;
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.documents")
            .await,
        OBJECTS as i64
    );
    // Another tenant neither sees it nor reaches outside its own folder.
    let globex = "globex-key-0123456789";
    let (status, _) = call(globex, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, refused) = call(
        globex,
        reqwest::Method::POST,
        "/v1/syncs",
        Some(json!({"prefix": "../acme/"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (_, listed) = call(globex, reqwest::Method::GET, "/v1/syncs", None).await;
    assert_eq!(listed["syncs"], json!([]));
    let (_, listed) = call(acme, reqwest::Method::GET, "/v1/syncs", None).await;
    assert_eq!(listed["syncs"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_knowledge_base_s_ingestion_job_is_a_sync_of_its_data_source() {
    let stack = LocalAws::start(&[]).await;
    let keys = "acme-key-0123456789:acme, globex-key-0123456789:globex";
    let bases = [("KNOWLEDGE_BASES", "KBACME0001:acme:logs/,KBGLOBEX01:globex")];
    let base = stack.serve_api_with(keys, &bases).await;
    stack.notifications_off().await;
    stack
        .put("uploads/acme/logs/a.txt", "A log of the light.")
        .await;
    stack
        .put("uploads/acme/other/b.txt", "Not in the logs.")
        .await;
    let source = docpipe_api::bedrock::knowledge_bases::data_source_id("KBACME0001:logs/");
    let jobs = format!("{base}/knowledgebases/KBACME0001/datasources/{source}/ingestionjobs/");
    let http = docpipe_tests::http_client();
    let acme = "acme-key-0123456789";
    let started = http
        .put(&jobs)
        .bearer_auth(acme)
        .json(&json!({"description": "the first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let job: serde_json::Value = started.json().await.unwrap();
    let id = job["ingestionJob"]["ingestionJobId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        id.len() == 10 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{job}"
    );
    assert_eq!(job["ingestionJob"]["description"], "the first");
    let get = async |key: &str, url: &str| {
        let response = http.get(url).bearer_auth(key).send().await.unwrap();
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_string());
        (
            response.status().as_u16(),
            kind,
            response.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let one = format!("{jobs}{id}");
    wait_until(WITHIN, "the ingestion job to complete", async || {
        get(acme, &one).await.2["ingestionJob"]["status"] == "COMPLETE"
    })
    .await;
    let (_, _, done) = get(acme, &one).await;
    let statistics = &done["ingestionJob"]["statistics"];
    assert_eq!(
        statistics["numberOfDocumentsScanned"], 1,
        "the data source's prefix only: {done}"
    );
    assert_eq!(statistics["numberOfNewDocumentsIndexed"], 1, "{done}");
    let listed: serde_json::Value = http
        .post(&jobs)
        .bearer_auth(acme)
        .json(&json!({"maxResults": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["ingestionJobSummaries"][0]["ingestionJobId"],
        id.as_str()
    );
    // Another tenant's knowledge base is not found, whatever its job.
    let (status, kind, _) = get("globex-key-0123456789", &one).await;
    assert_eq!(
        (status, kind.as_deref()),
        (404, Some("ResourceNotFoundException"))
    );
    // While one runs, another is a conflict.
    let again = http
        .put(&jobs)
        .bearer_auth(acme)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let second: serde_json::Value = again.json().await.unwrap();
    let second_id = second["ingestionJob"]["ingestionJobId"]
        .as_str()
        .unwrap()
        .to_string();
    let third = http
        .put(&jobs)
        .bearer_auth(acme)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    if third.status() == 409 {
        assert_eq!(third.headers()["x-amzn-errortype"], "ConflictException");
    } else {
        // The second had already ended.
        let (_, _, second) = get(acme, &format!("{jobs}{second_id}")).await;
        assert_eq!(second["ingestionJob"]["status"], "COMPLETE", "{second}");
    }
}

/// `count` objects `uploads/<tenant>/bulk/NNNN.txt`, 32 at a time.
async fn put_many(stack: &LocalAws, tenant: &str, count: usize) {
    futures::stream::iter(0..count)
        .for_each_concurrent(32, async |i| {
            let key = format!("uploads/{tenant}/bulk/{i:04}.txt");
            stack.put(&key, format!("Bulk note {i} of {tenant}.")).await
        })
        .await;
}

#[tokio::test]
async fn a_backfill_waits_visibly_while_its_tenants_documents_fill_the_pipeline() {
    let mut stack = LocalAws::start(&[("SYNC_TENANT_IN_FLIGHT", "20")]).await;
    stack.notifications_off().await;
    // No function runs: whatever a sync adds stays in the pipeline.
    stack.runner.abort_all();
    put_many(&stack, "acme", 260).await;
    put_many(&stack, "globex", 5).await;
    let pipeline = &stack.deployment.pipeline;
    let id = acme_sync(pipeline).await;
    let Slice::More(first) = slice(pipeline, id).await.unwrap() else {
        panic!("the first slice lists a page and goes on")
    };
    assert_eq!(first.new, 250);
    let Slice::Waiting(wait) = slice(pipeline, id).await.unwrap() else {
        panic!("250 of acme's documents are in the pipeline: the sync waits")
    };
    assert!(wait.reason.contains("SYNC_TENANT_IN_FLIGHT"), "{wait}");
    let db = pipeline.db.get().await.unwrap();
    let row = sync_rows::get(&db, "acme", id).await.unwrap().unwrap();
    assert_eq!(row.waiting.as_deref(), Some(wait.reason.as_str()));
    assert_eq!(row.counts.new, 250, "nothing added while it waits");
    // Another tenant's sync is not held back by acme's backlog.
    assert_eq!(stack.synced("globex").await.new, 5);
    // The functions run again; the backlog drains and the sync goes on.
    let _runner = stack.start_runner().await;
    let counts = sync(pipeline, &acme(), false, |_| {}).await.unwrap();
    assert_eq!((counts.new, counts.documents_scanned), (260, 260));
    let row = sync_rows::get(&db, "acme", id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.waiting), ("complete", None));
    stack.settled().await;
}

#[tokio::test]
async fn a_backfill_waits_while_its_tenants_spending_is_stopped() {
    let (url, _mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        ..MockOpenAiConfig::default()
    })
    .await;
    // $1 per thousand tokens and a budget of a tenth of a cent a day: the
    // first embedding request spends it, and later ones wait.
    let stack = LocalAws::start(&[
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test"),
        ("OPENAI_BASE_URL", &url),
        ("EMBEDDING_DIMS", "64"),
        ("EMBEDDING_USD_PER_MILLION_TOKENS", "1000"),
        ("TENANT_DAILY_BUDGET_USD", "0.001"),
    ])
    .await;
    let text = "The keeper logs the tide, the fog and the light. ".repeat(20);
    stack.put("uploads/acme/log-0.txt", text.clone()).await;
    stack
        .wait_for_state("uploads/acme/log-0.txt", "complete")
        .await;
    stack
        .put("uploads/acme/log-1.txt", text.replace("tide", "tides"))
        .await;
    wait_until(WITHIN, "a job waiting for acme's spending", async || {
        stack
            .count("SELECT count(*) FROM upload_pipeline.upload_jobs WHERE waiting_until > now()")
            .await
            > 0
    })
    .await;
    stack.notifications_off().await;
    stack
        .put(
            "uploads/acme/late.txt",
            "Written while notifications were off.",
        )
        .await;
    let pipeline = &stack.deployment.pipeline;
    let id = acme_sync(pipeline).await;
    let Slice::Waiting(wait) = slice(pipeline, id).await.unwrap() else {
        panic!("acme's spending is stopped: its sync adds nothing")
    };
    assert!(wait.reason.contains("spending is stopped"), "{wait}");
    let db = pipeline.db.get().await.unwrap();
    let row = sync_rows::get(&db, "acme", id).await.unwrap().unwrap();
    assert_eq!(row.counts.documents_scanned, 0);
    assert!(
        row.waiting.unwrap().contains("budget"),
        "the reason names the budget"
    );
}

#[tokio::test]
async fn uploads_whose_events_are_lost_are_caught_by_the_scheduled_reconcile() {
    const UPLOADS: usize = 100;
    let mut stack = LocalAws::start(&[]).await;
    // One document arrives as usual; then the runner loses every S3
    // notification and reconciles every 3 s, as the schedule would.
    stack
        .put("uploads/globex/before.txt", "Sent while events arrived.")
        .await;
    stack
        .wait_for_state("uploads/globex/before.txt", "complete")
        .await;
    stack.runner.abort_all();
    let _runner = stack
        .start_runner_with(RunnerOptions {
            lose_notifications: true,
            reconcile_every: Some(Duration::from_secs(3)),
        })
        .await;
    put_many(&stack, "acme", UPLOADS).await;
    stack
        .put("uploads/globex/after.txt", "Sent after events were lost.")
        .await;
    // Folders that name no tenant (listed before acme's, in byte order):
    // left alone, and the reconcile goes on past them.
    for folder in ["Not A Tenant!", "dots.in.name"] {
        stack
            .put(&format!("uploads/{folder}/x.txt"), "No tenant's.")
            .await;
    }
    wait_until(WITHIN * 2, "every upload searchable", async || {
        stack.count_in_state("complete").await as usize == UPLOADS + 2
    })
    .await;
    // Every one of them through a scheduled sync, once each.
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM upload_pipeline.upload_jobs
                  WHERE correlation_id LIKE 'sync-%' AND source_key <> 'uploads/globex/before.txt'"
            )
            .await,
        UPLOADS as i64 + 1
    );
    assert_eq!(
        stack
            .count("SELECT count(*) FROM upload_pipeline.upload_jobs")
            .await,
        UPLOADS as i64 + 2
    );
    assert!(
        stack
            .count(
                "SELECT count(*) FROM upload_pipeline.syncs
                  WHERE scheduled AND tenant IN ('acme', 'globex')"
            )
            .await
            >= 2
    );
    assert_eq!(
        stack
            .count(
                "SELECT count(*) FROM upload_pipeline.syncs
                  WHERE tenant NOT IN ('acme', 'globex')"
            )
            .await,
        0
    );
}

#[tokio::test]
async fn objects_over_the_size_limit_fail_with_their_reason_and_the_rest_sync() {
    let stack = LocalAws::start(&[("MAX_FILE_BYTES", "100")]).await;
    stack.notifications_off().await;
    stack
        .put("uploads/acme/small+note é.md", "A note of the harbour.")
        .await;
    stack
        .put("uploads/acme/large.md", "Too many words. ".repeat(20))
        .await;
    stack.put("uploads/acme/folder/", "").await;
    stack
        .put("uploads/acme/line\u{1}feed.md", "a control character")
        .await;

    let counts = stack.synced("acme").await;
    assert_eq!((counts.new, counts.failed), (1, 1), "{counts:?}");
    assert_eq!(counts.failures.get("too_large"), Some(&1), "{counts:?}");
    let skipped: Vec<&String> = counts.skipped.keys().collect();
    assert!(
        matches!(skipped[..], [a, b] if a.contains("control characters") && b.contains("empty")),
        "{counts:?}"
    );
    assert_eq!(
        stack
            .error_message("uploads/acme/large.md")
            .await
            .as_deref(),
        Some("file is 320 bytes, over the limit of 100 bytes (MAX_FILE_BYTES)")
    );
    stack.settled().await;
    // The failed object is known now: a second sync does not fail it again.
    let keys: Vec<String> = stack
        .test_db
        .column("SELECT source_key FROM upload_pipeline.documents ORDER BY 1")
        .await;
    assert_eq!(
        keys,
        ["uploads/acme/large.md", "uploads/acme/small+note é.md"]
    );
    let again = stack.synced("acme").await;
    assert_eq!((again.failed, again.unchanged), (0, 2), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_fails_mid_way_deletes_nothing_it_did_not_see_and_resumes() {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (scripts/test sets it)");
    let outage = Outage::proxy_to(&endpoint).await;
    let queues = QueueSettings {
        visibility_timeout_secs: 30,
        max_receive_count: 3,
    };
    let mut stack = LocalAws::start_with_sdk(
        sdk_config_through(&outage).await,
        &docpipe_tests::admin_url(),
        &[("SYNC_TENANT_IN_FLIGHT", "0")],
        queues,
    )
    .await;
    stack.runner.abort_all(); // slices are driven here, one at a time
    stack.notifications_off().await;
    put_many(&stack, "acme", 600).await;
    assert_eq!(stack.synced("acme").await.new, 600);
    // Every other object goes, unseen by any event.
    for i in (0..600).step_by(2) {
        stack.delete(&format!("uploads/acme/bulk/{i:04}.txt")).await;
    }
    let documents = "SELECT count(*) FROM upload_pipeline.documents";
    let pipeline = &stack.deployment.pipeline;
    let id = acme_sync(pipeline).await;
    let Slice::More(first) = slice(pipeline, id).await.unwrap() else {
        panic!("a page listed, more to come")
    };
    // The page ended at 0499: the 250 gone before it are deleted.
    assert_eq!((first.deleted, first.unchanged), (250, 250), "{first:?}");
    assert_eq!(stack.count(documents).await, 350);

    outage.down().await;
    slice(pipeline, id)
        .await
        .expect_err("the listing fails while S3 is unreachable");
    let db = pipeline.db.get().await.unwrap();
    let row = sync_rows::get(&db, "acme", id).await.unwrap().unwrap();
    assert_eq!(
        row.state, "running",
        "a failed listing is resumed, not the end"
    );
    assert_eq!(row.counts, first, "nothing counted of a page not listed");
    assert_eq!(stack.count(documents).await, 350, "nothing unseen deleted");

    outage.up();
    let counts = sync(pipeline, &acme(), false, |_| {}).await.unwrap();
    assert_eq!(
        (counts.documents_scanned, counts.deleted, counts.unchanged),
        (300, 300, 300),
        "{counts:?}"
    );
    assert_eq!(stack.count(documents).await, 300);
}
