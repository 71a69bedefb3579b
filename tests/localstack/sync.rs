//! Syncs of the bucket against the documents (`docpipe_ingest::sync`)
//! through the deployed shape: objects written while notifications were
//! off become searchable, deletes and sidecar edits converge, a second sync
//! does nothing and pays nothing, an upload during a sync makes one job,
//! and keys that cannot be uploads are skipped with their reason.

use docpipe_core::domain::keys::Tenant;
use docpipe_ingest::sync::{Scope, SyncCounts, sync};
use docpipe_tests::local_aws::{LocalAws, WITHIN, wait_until};
use futures::StreamExt;
use serde_json::json;

fn acme() -> Scope {
    Scope::new(Tenant::new("acme").unwrap(), "")
}

async fn synced(stack: &LocalAws) -> SyncCounts {
    sync(&stack.deployment.pipeline, &acme(), false, |_| {})
        .await
        .unwrap()
}

async fn count(stack: &LocalAws, sql: &str) -> i64 {
    let db = stack.test_db.client().await;
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits until every job of the stack is complete or failed.
async fn settled(stack: &LocalAws) {
    wait_until(WITHIN, "every job to finish", async || {
        count(
            stack,
            "SELECT count(*) FROM upload_pipeline.upload_jobs
              WHERE state NOT IN ('complete', 'failed', 'superseded')",
        )
        .await
            == 0
    })
    .await;
}

const TOKENS: &str =
    "SELECT coalesce(sum(units), 0)::int8 FROM upload_pipeline.cost_ledger WHERE unit = 'tokens'";

#[tokio::test]
async fn objects_written_while_notifications_were_off_become_searchable_after_one_sync() {
    const OBJECTS: usize = 1000;
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
        count(&stack, "SELECT count(*) FROM upload_pipeline.documents").await,
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
        count(&stack, "SELECT count(*) FROM upload_pipeline.documents").await,
        0,
        "a dry run does nothing"
    );

    let first = synced(&stack).await;
    assert_eq!(first.new, OBJECTS as u64, "{first:?}");
    assert_eq!(first.failed, 0, "{first:?}");
    let skipped: Vec<_> = first.skipped.iter().collect();
    assert!(
        matches!(skipped[..], [(why, 1)] if why.contains("control characters")),
        "{first:?}"
    );
    settled(&stack).await;
    let complete = "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE state = 'complete'";
    assert_eq!(count(&stack, complete).await, OBJECTS as i64);
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM upload_pipeline.documents WHERE tenant <> 'acme'"
        )
        .await,
        0,
        "another tenant's folder is not this sync's"
    );

    // A second sync finds nothing to do and pays nothing.
    let tokens = count(&stack, TOKENS).await;
    let jobs = count(&stack, "SELECT count(*) FROM upload_pipeline.upload_jobs").await;
    let second = synced(&stack).await;
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
    assert_eq!(count(&stack, TOKENS).await, tokens);
    assert_eq!(
        count(&stack, "SELECT count(*) FROM upload_pipeline.upload_jobs").await,
        jobs
    );
}

#[tokio::test]
async fn deletes_edits_and_sidecars_made_while_notifications_were_off_converge() {
    let stack = LocalAws::start(&[]).await;
    let sidecar = |team: &str| json!({"metadataAttributes": {"team": team}}).to_string();
    stack
        .put("uploads/acme/a.md", "Alpha text about tides.")
        .await;
    stack
        .put("uploads/acme/a.md.metadata.json", sidecar("harbour"))
        .await;
    stack
        .put("uploads/acme/b.md", "Bravo text about buoys.")
        .await;
    stack
        .put("uploads/acme/c.md", "Charlie text about fog.")
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
    stack
        .put("uploads/acme/c.md", "Charlie text, rewritten.")
        .await;
    stack
        .put("uploads/acme/c.md.metadata.json", sidecar("works"))
        .await;
    stack
        .put("uploads/acme/a.md.metadata.json", sidecar("legal"))
        .await;
    stack
        .put("uploads/acme/d.md", "Delta text about pilots.")
        .await;

    let counts = synced(&stack).await;
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
    settled(&stack).await;
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
    let again = synced(&stack).await;
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
    synced(&stack).await;
    settled(&stack).await;
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM (SELECT source_key FROM upload_pipeline.upload_jobs
              GROUP BY source_key HAVING count(*) > 1) twice"
        )
        .await,
        0
    );
    assert_eq!(
        count(&stack, "SELECT count(*) FROM upload_pipeline.upload_jobs").await,
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
    settled(&stack).await;
    assert_eq!(
        count(&stack, "SELECT count(*) FROM upload_pipeline.documents").await,
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
