//! The HTTP API over real HTTP against the deployed pipeline on the local
//! AWS stack (LocalStack S3/SQS, the event-source runner, a real database):
//! who may call it, tenant isolation on every route, uploads through a
//! presigned URL, and a clear 4xx for every bad input.

use docpipe_api::{Api, Auth, router};
use docpipe_core::domain::ids::document_id;
use docpipe_tests::local_aws::{LocalAws, WITHIN, wait_until};
use docpipe_tests::openapi::check_documented;
use docpipe_tests::samples_dir;
use serde_json::{Value, json};
use std::sync::Arc;

const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";
const PLANS: &str = "Globex plans a harbour light with a fog signal.";

struct Served {
    base: String,
    http: reqwest::Client,
    /// Job ids by tenant.
    acme_job: String,
    globex_job: String,
    _stack: LocalAws,
}

/// The API over a fresh stack, with `vars` configuring the pipeline.
async fn serve_api(vars: &[(&str, &str)]) -> (String, LocalAws) {
    let stack = LocalAws::start(vars).await;
    // acme operates the deployment: it sees the queues' figures.
    let operators = [("API_OPERATOR_TENANTS", "acme")];
    let base = stack
        .serve_api_with(&format!("{ACME_KEY}:acme, {GLOBEX_KEY}:globex"), &operators)
        .await;
    (base, stack)
}

/// Puts samples/docs in S3 under the tenant's folder; returns their keys.
async fn upload_samples(stack: &LocalAws, tenant: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(samples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        let key = format!("uploads/{tenant}/{name}");
        stack.put(&key, std::fs::read(&path).unwrap()).await;
        keys.push(key);
    }
    keys
}

/// acme has the samples, globex one document of its own, all uploaded to
/// S3 and processed by the stack.
async fn served() -> Served {
    let (base, stack) = serve_api(&[]).await;
    let mut keys = upload_samples(&stack, "acme").await;
    stack.put("uploads/globex/plans.md", PLANS).await;
    keys.push("uploads/globex/plans.md".into());
    for key in &keys {
        stack.wait_for_state(key, "complete").await;
    }
    let db = stack.test_db.client().await;
    let job_of = async |key: &str| -> String {
        let sql = "SELECT id::text FROM upload_pipeline.upload_jobs WHERE source_key = $1";
        db.query_one(sql, &[&key]).await.unwrap().get(0)
    };
    Served {
        base,
        http: docpipe_tests::http_client(),
        acme_job: job_of("uploads/acme/fog-signals.txt").await,
        globex_job: job_of("uploads/globex/plans.md").await,
        _stack: stack,
    }
}

impl Served {
    async fn call(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        call(&self.http, &self.base, key, method, path, body).await
    }
}

/// One request to the API; its answer must be what `api/openapi.yaml` says.
async fn call(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    check_documented(method, path, status, &body);
    (status, body)
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_jobs_or_hits() {
    let api = served().await;
    let (status, job) = api
        .call(
            Some(ACME_KEY),
            "GET",
            &format!("/v1/jobs/{}", api.acme_job),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["state"], "complete");
    let history = job["history"].as_array().unwrap();
    assert_eq!(history.first().unwrap()["to_state"], "queued");
    assert_eq!(history.last().unwrap()["to_state"], "complete");
    let (status, body) = api
        .call(
            Some(ACME_KEY),
            "GET",
            &format!("/v1/jobs/{}", api.globex_job),
            None,
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));

    // Both tenants have text about fog signals; each sees only its own.
    let query = r#"{"query":"fog signal at the harbour light","top_k":50}"#;
    let (status, acme) = api
        .call(Some(ACME_KEY), "POST", "/v1/search", Some(query))
        .await;
    assert_eq!(status, 200);
    let (_, globex) = api
        .call(Some(GLOBEX_KEY), "POST", "/v1/search", Some(query))
        .await;
    let keys = |hits: &Value| -> Vec<String> {
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["source_key"].as_str().unwrap().to_string())
            .collect()
    };
    let (acme, globex) = (keys(&acme), keys(&globex));
    assert!(
        !acme.is_empty() && acme.iter().all(|k| k.starts_with("uploads/acme/")),
        "{acme:?}"
    );
    assert_eq!(globex, ["uploads/globex/plans.md"]);

    // Listing: the caller's jobs only, in pages; naming another tenant is 404.
    let (_, first) = api
        .call(Some(ACME_KEY), "GET", "/v1/jobs?limit=3", None)
        .await;
    let next = first["next"].as_str().expect("a next page").to_string();
    let (_, second) = api
        .call(
            Some(ACME_KEY),
            "GET",
            &format!("/v1/jobs?limit=3&after={next}"),
            None,
        )
        .await;
    assert!(second.get("next").is_none(), "{second}");
    let listed: Vec<&Value> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["jobs"].as_array().unwrap())
        .collect();
    assert_eq!(listed.len(), 4, "the four samples, each once");
    assert!(listed.iter().all(|j| j["tenant"] == "acme"));
    let (_, globex_jobs) = api
        .call(
            Some(GLOBEX_KEY),
            "GET",
            "/v1/jobs?state=complete&tenant=globex",
            None,
        )
        .await;
    assert_eq!(globex_jobs["jobs"].as_array().unwrap().len(), 1);
    let (status, _) = api
        .call(Some(ACME_KEY), "GET", "/v1/jobs?tenant=globex", None)
        .await;
    assert_eq!(status, 404);

    // Metrics count the caller's jobs and spending only, against its own budget.
    let (status, acme) = api.call(Some(ACME_KEY), "GET", "/v1/metrics", None).await;
    assert_eq!(status, 200);
    let (_, globex) = api.call(Some(GLOBEX_KEY), "GET", "/v1/metrics", None).await;
    assert_eq!(
        (
            &acme["jobs_by_state"]["complete"],
            &acme["completed_last_hour"]
        ),
        (&json!(4), &json!(4))
    );
    assert_eq!(
        (
            &globex["jobs_by_state"]["complete"],
            &globex["completed_last_hour"]
        ),
        (&json!(1), &json!(1))
    );
    assert_eq!(acme["daily_budget_usd"], 1.0);
    assert!(acme.get("usd_today_all_tenants").is_none(), "{acme}");
    assert!(
        acme["tokens_today"].as_i64().unwrap() > globex["tokens_today"].as_i64().unwrap(),
        "{acme} {globex}"
    );
}

#[tokio::test]
async fn documents_are_shown_reprocessed_and_deleted_by_their_own_tenant_only() {
    let api = served().await;
    let fog = document_id("acme", "uploads/acme/fog-signals.txt");
    let plans = document_id("globex", "uploads/globex/plans.md");
    let (status, document) = api
        .call(Some(ACME_KEY), "GET", &format!("/v1/documents/{fog}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(document["source_key"], "uploads/acme/fog-signals.txt");
    assert_eq!(document["latest_job"]["state"], "complete");
    for (method, path) in [
        ("GET", format!("/v1/documents/{plans}")),
        ("DELETE", format!("/v1/documents/{plans}")),
        ("POST", format!("/v1/documents/{plans}/reprocess")),
    ] {
        let (status, _) = api.call(Some(ACME_KEY), method, &path, None).await;
        assert_eq!(status, 404, "{method} {path}");
    }

    // Reprocess: queued again (a second request while it runs is refused), then complete.
    let reprocess = format!("/v1/documents/{fog}/reprocess");
    let (status, queued) = api.call(Some(ACME_KEY), "POST", &reprocess, None).await;
    assert_eq!((status, &queued["state"]), (202, &json!("queued")));
    let (status, refused) = api.call(Some(ACME_KEY), "POST", &reprocess, None).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("in_progress"))
    );
    let mut document = Value::Null;
    wait_until(WITHIN, "the reprocessed job to complete", async || {
        (_, document) = api
            .call(Some(ACME_KEY), "GET", &format!("/v1/documents/{fog}"), None)
            .await;
        document["latest_job"]["state"] == "complete"
    })
    .await;
    let job = &document["latest_job"];
    assert!(
        job["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]["reason"] == "reprocess requested"),
        "{job}"
    );

    // Delete: gone from the API and from search; the other tenant's document stays.
    let (status, _) = api
        .call(
            Some(ACME_KEY),
            "DELETE",
            &format!("/v1/documents/{fog}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(Some(ACME_KEY), "GET", &format!("/v1/documents/{fog}"), None)
        .await;
    assert_eq!(status, 404);
    let (_, hits) = api
        .call(
            Some(ACME_KEY),
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog signals","top_k":100}"#),
        )
        .await;
    assert!(
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["source_key"] != "uploads/acme/fog-signals.txt")
    );
    let (status, _) = api
        .call(
            Some(GLOBEX_KEY),
            "GET",
            &format!("/v1/documents/{plans}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn health_reports_every_part_and_the_dead_letters() {
    let api = served().await;
    let (status, health) = api.call(Some(ACME_KEY), "GET", "/v1/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        (&health["status"], &health["database"], &health["storage"]),
        (&json!("ok"), &json!("ok"), &json!("ok")),
        "{health}"
    );
    let queues = health["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["uploads", "parse", "chunk", "embed"]);
    assert!(
        queues
            .iter()
            .all(|q| q["status"] == "ok" && q["dead_letters"] == 0 && q["waiting"] == 0),
        "{health}"
    );
    // The mock embedder calls no external service.
    assert_eq!(health["services"], json!([]));
    // A tenant that is not an operator learns nothing of the others' messages.
    let (_, theirs) = api.call(Some(GLOBEX_KEY), "GET", "/v1/health", None).await;
    for queue in theirs["queues"].as_array().unwrap() {
        assert_eq!(queue["status"], "ok", "{theirs}");
        assert!(queue["dead_letters"].is_null(), "{theirs}");
        for figure in ["waiting", "in_flight", "delayed"] {
            assert!(queue.get(figure).is_none(), "{theirs}");
        }
    }

    // A message no function can read ends in the dead-letter queue; health counts it.
    let stack = &api._stack;
    stack
        .send(&stack.resources.parse.url, "not a stage message")
        .await;
    wait_until(WITHIN, "the dead letter to be counted", async || {
        let (_, health) = api.call(Some(ACME_KEY), "GET", "/v1/health", None).await;
        health["queues"][1]["dead_letters"] == 1
    })
    .await;
}

/// The whole path a client takes: ask for an upload URL, PUT the file to
/// S3, follow the document until it is complete, find it by search.
#[tokio::test]
async fn a_file_uploaded_through_a_presigned_url_becomes_searchable() {
    let (base, stack) = serve_api(&[]).await;
    let http = docpipe_tests::http_client();
    let api = async |key, method, path: &str, body: Value| {
        let body = (!body.is_null()).then(|| body.to_string());
        call(&http, &base, Some(key), method, path, body.as_deref()).await
    };
    let text = "The keeper of the Skerry light logs every fog signal at dawn.";
    let metadata = json!({"team": "harbour", "year": 2026, "tags": ["log"]});
    let request =
        json!({"name": "logs/skerry light.txt", "size": text.len(), "metadata": metadata});
    let (status, answer) = api(ACME_KEY, "POST", "/v1/uploads", request).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["key"], "uploads/acme/logs/skerry light.txt");
    let expected_id = document_id("acme", "uploads/acme/logs/skerry light.txt");
    assert_eq!(answer["document_id"], expected_id.to_string());
    let upload = &answer["upload"];
    // The size is part of the signature: S3 refuses a body of any other
    // length (LocalStack does not check that part; real S3 does).
    let url = upload["url"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bhost"),
        "{url}"
    );
    let mut put = http.put(url).body(text);
    for (name, value) in upload["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let stored = put.send().await.unwrap();
    assert!(stored.status().is_success(), "{:?}", stored.text().await);

    let document = format!("/v1/documents/{expected_id}");
    wait_until(WITHIN, "the uploaded document to complete", async || {
        let (_, document) = api(ACME_KEY, "GET", &document, Value::Null).await;
        document["latest_job"]["state"] == "complete"
    })
    .await;
    // The metadata given with the upload is the document's, and its hits'.
    let (_, detail) = api(ACME_KEY, "GET", &document, Value::Null).await;
    assert_eq!(detail["metadata"], metadata);
    assert_eq!(detail["metadata_error"], Value::Null);
    let query = json!({"query": "Skerry light fog signal", "top_k": 5});
    let (_, hits) = api(ACME_KEY, "POST", "/v1/search", query.clone()).await;
    let first = &hits["hits"][0];
    assert_eq!(first["source_key"], "uploads/acme/logs/skerry light.txt");
    assert!(first["text"].as_str().unwrap().contains("Skerry"), "{hits}");
    assert_eq!(first["metadata"], metadata);
    for (filter, found) in [
        (json!({"equals": {"key": "team", "value": "harbour"}}), 1),
        (
            json!({"andAll": [{"listContains": {"key": "tags", "value": "log"}},
                           {"greaterThan": {"key": "year", "value": 2025}}]}),
            1,
        ),
        (
            json!({"key_prefix": "logs/", "equals": {"key": "team", "value": "legal"}}),
            0,
        ),
    ] {
        let query = json!({"query": "fog", "filter": filter});
        let (status, hits) = api(ACME_KEY, "POST", "/v1/search", query).await;
        assert_eq!(status, 200, "{hits}");
        assert_eq!(
            hits["hits"].as_array().unwrap().len(),
            found,
            "{filter}: {hits}"
        );
    }
    for mode in ["hybrid", "vector", "keyword"] {
        let query = json!({"query": "Skerry light", "mode": mode,
                           "filter": {"key_prefix": "logs/"}, "context": {"neighbors": 2}});
        let (status, hits) = api(ACME_KEY, "POST", "/v1/search", query).await;
        assert_eq!(status, 200, "{hits}");
        let first = &hits["hits"][0];
        assert_eq!(
            first["source_key"], "uploads/acme/logs/skerry light.txt",
            "{mode}"
        );
        assert_eq!(first["context"]["text"], text, "{mode}");
    }
    // The same search as Bedrock's Retrieve asks for it and answers.
    let retrieve = json!({
        "retrievalQuery": {"text": "Skerry light fog signal"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {
            "numberOfResults": 3, "overrideSearchType": "SEMANTIC",
            "filter": {"andAll": [{"equals": {"key": "team", "value": "harbour"}},
                                  {"startsWith": {"key": "source_key", "value": "uploads/acme/logs/"}}]}}}
    });
    let (status, answer) = api(ACME_KEY, "POST", "/v1/retrieve", retrieve).await;
    assert_eq!(status, 200, "{answer}");
    let result = &answer["retrievalResults"][0];
    assert_eq!(result["content"], json!({"type": "TEXT", "text": text}));
    let uri = format!(
        "s3://{}/uploads/acme/logs/skerry light.txt",
        stack.resources.bucket
    );
    assert_eq!(result["location"]["s3Location"]["uri"], uri);
    assert_eq!(result["metadata"]["team"], "harbour");
    assert_eq!(result["metadata"]["x-amz-bedrock-kb-source-uri"], uri);
    let elsewhere = json!({"retrievalQuery": {"text": "fog"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {
            "filter": {"equals": {"key": "team", "value": "legal"}}}}});
    let (_, answer) = api(ACME_KEY, "POST", "/v1/retrieve", elsewhere).await;
    assert_eq!(answer["retrievalResults"], json!([]));
    let (_, answer) = api(
        GLOBEX_KEY,
        "POST",
        "/v1/retrieve",
        json!({"retrievalQuery": {"text": "Skerry"}}),
    )
    .await;
    assert_eq!(answer["retrievalResults"], json!([]), "another tenant's");
    // Filters narrow the search, within the caller's folder only.
    let in_folder = json!({"query": "fog", "filter": {"key_prefix": "logs/"}});
    let (_, hits) = api(ACME_KEY, "POST", "/v1/search", in_folder).await;
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1, "{hits}");
    let elsewhere = json!({"query": "fog", "filter": {"key_prefix": "reports/"}});
    let (_, hits) = api(ACME_KEY, "POST", "/v1/search", elsewhere).await;
    assert_eq!(hits["hits"], json!([]));
    let by_id = json!({"query": "fog", "filter": {"document_ids": [expected_id]}});
    let (_, hits) = api(ACME_KEY, "POST", "/v1/search", by_id).await;
    assert_eq!(hits["hits"][0]["document_id"], expected_id.to_string());

    // globex cannot see it, by id, by search or by filter.
    let (status, _) = api(GLOBEX_KEY, "GET", &document, Value::Null).await;
    assert_eq!(status, 404);
    let (_, hits) = api(GLOBEX_KEY, "POST", "/v1/search", query).await;
    assert_eq!(hits["hits"], json!([]));
    let by_id = json!({"query": "fog", "filter": {"document_ids": [expected_id]}});
    let (_, hits) = api(GLOBEX_KEY, "POST", "/v1/search", by_id).await;
    assert_eq!(hits["hits"], json!([]));

    // Deleting the document deletes its sidecar too: a new upload of the
    // name starts without the old metadata.
    let sidecar = "uploads/acme/logs/skerry light.txt.metadata.json";
    assert!(stack.object_exists(sidecar).await);
    let (status, _) = api(ACME_KEY, "DELETE", &document, Value::Null).await;
    assert_eq!(status, 204);
    assert!(!stack.object_exists(sidecar).await);
    let db = stack.test_db.client().await;
    let sql = "SELECT count(*) FROM upload_pipeline.metadata_sidecars";
    assert_eq!(db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0), 0);
}

/// In Lambda the tenant comes from API Gateway's authorizer: a JWT claim or
/// a Lambda authorizer's context value, never from anything the caller sends.
#[tokio::test]
async fn in_lambda_the_tenant_is_the_authorizers_claim() {
    use tower::ServiceExt;
    let api = served().await;
    let stack = &api._stack;
    let lambda_api = Api::new(
        stack.new_deployment().await,
        Auth::Authorizer {
            claim: "tenant".into(),
        },
        &Default::default(),
    )
    .unwrap();
    let app = router(Arc::new(lambda_api));
    let event: Value = serde_json::from_str(include_str!("../../events/api-search.json")).unwrap();
    let call = async |event: &Value| -> (u16, Value) {
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&body).unwrap();
        check_documented("POST", "/v1/search", status, &body);
        (status, body)
    };
    let sources = |hits: &Value| -> Vec<String> {
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["source_key"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, hits) = call(&event).await;
    assert_eq!(status, 200, "{hits}");
    let acme = sources(&hits);
    assert!(!acme.is_empty() && acme.iter().all(|k| k.starts_with("uploads/acme/")));

    // A Lambda authorizer's context for globex; a bearer key changes nothing.
    let mut globex = event.clone();
    globex["requestContext"]["authorizer"] = json!({"lambda": {"tenant": "globex"}});
    globex["headers"]["authorization"] = json!(format!("Bearer {ACME_KEY}"));
    let (status, hits) = call(&globex).await;
    assert_eq!(
        (status, sources(&hits)),
        (200, vec!["uploads/globex/plans.md".to_string()])
    );

    // No authorizer context, or a claim that is no tenant name: 401.
    for authorizer in [
        json!(null),
        json!({"jwt": {"claims": {"tenant": "../acme"}}}),
    ] {
        let mut anonymous = event.clone();
        anonymous["requestContext"]["authorizer"] = authorizer;
        let (status, body) = call(&anonymous).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("unauthorized"))
        );
    }
}

/// The operations dashboard in a real browser (Debian's Chromium, driven by
/// Playwright: tests/browser/dashboard.mjs) after a real ingest: what a
/// person sees, then what the page's own auto-refresh shows once more work
/// is done. The screenshot is kept in .local/artifacts/dashboard.png.
#[tokio::test]
async fn the_dashboard_shows_what_the_pipeline_did() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (base, stack) = serve_api(&[]).await;
    upload_samples(&stack, "acme").await;
    stack
        .put("uploads/acme/broken.pdf", "%PDF-1.7 then nothing")
        .await;
    stack
        .send(&stack.resources.parse.url, "not a stage message")
        .await;
    stack
        .wait_for_state("uploads/acme/broken.pdf", "failed")
        .await;
    let (_, reason) = stack
        .jobs_of("uploads/acme/broken.pdf")
        .await
        .pop()
        .unwrap();
    let reason = reason.unwrap();
    wait_until(WITHIN, "4 complete and 1 dead letter", async || {
        let complete = stack.count_in_state("complete").await;
        complete == 4 && stack.depth(&stack.resources.parse.dlq_url).await == 1
    })
    .await;
    // A sync run to its end, then a dry run of a folder, started and not yet run.
    let synced = stack.synced("acme").await;
    let folder = docpipe_ingest::sync::Scope::new(
        docpipe_core::domain::keys::Tenant::new("acme").unwrap(),
        "reports/",
    )
    .unwrap();
    docpipe_ingest::sync::start(
        &stack.deployment.pipeline,
        &folder,
        true,
        docpipe_ingest::sync::StartedBy::Request,
    )
    .await
    .unwrap();

    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");
    assert!(
        std::path::Path::new(browser_dir)
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run scripts/browser-deps (scripts/test does)"
    );
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../.local/artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    let screenshot = format!("{artifacts}/dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut browser = tokio::process::Command::new("node")
        .arg(format!("{browser_dir}/dashboard.mjs"))
        .args([&base, ACME_KEY, &screenshot])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (the machine's Node.js)");
    let mut stdin = browser.stdin.take().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next_snapshot = async || -> Value {
        let line = tokio::time::timeout(WITHIN, lines.next_line())
            .await
            .expect("a snapshot from the browser in time")
            .unwrap()
            .expect("the browser script ended early; see its stderr");
        serde_json::from_str(&line).unwrap()
    };

    let seen = next_snapshot().await;
    assert_eq!(seen["error"], Value::Null, "{seen}");
    assert_eq!(seen["problems"], json!([]), "{seen}");
    assert_eq!(
        (&seen["tenant"], &seen["health"]),
        (&json!("acme"), &json!("ok"))
    );
    assert_eq!(
        seen["key_field_empty"], true,
        "the key does not stay on screen"
    );
    assert_eq!(
        (&seen["states"]["complete"], &seen["states"]["failed"]),
        (&json!(4), &json!(1)),
        "{seen}"
    );
    assert_eq!(seen["queues"]["parse"], "1", "{seen}");
    assert_eq!(seen["queues"]["embed"], "0", "{seen}");
    assert_eq!(
        seen["failures"],
        json!([{"key": "uploads/acme/broken.pdf", "reason": reason}])
    );
    assert_eq!(seen["budget"], "$1.0000");
    assert_eq!(
        seen["syncs"],
        json!([
            {"prefix": "uploads/acme/reports/", "state": "running", "scanned": "0",
             "new": "0", "unchanged": "0", "note": "dry run"},
            {"prefix": "uploads/acme/", "state": "complete",
             "scanned": (synced.documents_scanned + synced.metadata_documents_scanned).to_string(),
             "new": "0",
             "unchanged": synced.unchanged.to_string(), "note": ""},
        ]),
        "{seen}"
    );
    assert!(synced.unchanged >= 5, "{synced:?}");
    assert_eq!(seen["completed_last_hour"], 4);
    assert!(seen["throughput_bars"].as_u64().unwrap() >= 1, "{seen}");
    assert!(
        seen["tokens"]
            .as_str()
            .unwrap()
            .replace(',', "")
            .parse::<u64>()
            .unwrap()
            > 0,
        "{seen}"
    );

    // More work while the page is open: its auto-refresh shows it.
    stack
        .put(
            "uploads/acme/later.md",
            "# Later\n\nA fog bell at the pier.",
        )
        .await;
    stack
        .wait_for_state("uploads/acme/later.md", "complete")
        .await;
    stdin.write_all(b"again\n").await.unwrap();
    let seen = next_snapshot().await;
    assert_eq!(seen["states"]["complete"], 5, "{seen}");
    assert_eq!(seen["completed_last_hour"], 5, "{seen}");

    // A search shows where each hit is: the PDF's page, the markdown's section.
    stdin
        .write_all(b"search hybrid Fresnel lens bends the light\n")
        .await
        .unwrap();
    let seen = next_snapshot().await;
    let top = &seen["hits"][0];
    assert_eq!(top["key"], "uploads/acme/lighthouse-handbook.pdf", "{seen}");
    assert!(
        top["where"].as_str().unwrap().starts_with("page "),
        "{seen}"
    );
    stdin
        .write_all(b"search vector spring tides and neap tides\n")
        .await
        .unwrap();
    let seen = next_snapshot().await;
    let top = &seen["hits"][0];
    assert_eq!(top["key"], "uploads/acme/tide-tables.md", "{seen}");
    assert_eq!(
        top["headings"], "Tide tables for small harbours › Spring and neap tides",
        "{seen}"
    );
    // Keyword search wants every word; with context, a hit brings its neighbours.
    stdin
        .write_all(b"search keyword how do lenses work\n")
        .await
        .unwrap();
    let seen = next_snapshot().await;
    assert_eq!(seen["no_results"], true, "{seen}");
    stdin
        .write_all(b"context\nsearch keyword neap tides\n")
        .await
        .unwrap();
    let seen = next_snapshot().await;
    let top = &seen["hits"][0];
    assert_eq!(top["key"], "uploads/acme/tide-tables.md", "{seen}");
    let context = top["context"].as_str().unwrap();
    assert!(
        context.contains("tide tables")
            && context.contains("neap tides")
            && context.contains("chart datum"),
        "{seen}"
    );
    assert_eq!(seen["problems"], json!([]), "{seen}");

    stdin.write_all(b"done\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(WITHIN, browser.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let size = std::fs::metadata(&screenshot).expect("a screenshot").len();
    assert!(size > 10_000, "screenshot of {size} bytes");
    println!("dashboard screenshot: {screenshot}");
}

/// An id that names nothing is 404 (the checks without a database are in
/// `api/tests/validation.rs`).
#[tokio::test]
async fn an_unknown_job_is_not_found() {
    let api = served().await;
    let path = "/v1/jobs/00000000-0000-0000-0000-000000000000";
    let (status, answer) = api.call(Some(ACME_KEY), "GET", path, None).await;
    assert_eq!(
        (status, &answer["error"]["message"]),
        (404, &json!("no such job"))
    );
}

/// Tenant isolation in the SQL itself, not only in the routes: each read of
/// jobs, documents, history and chunks names the tenant, so a crafted id of
/// another tenant finds nothing even if a route forgot to check.
#[tokio::test]
async fn reads_by_id_find_nothing_for_another_tenant() {
    use docpipe_core::store::status;
    use docpipe_search as search;
    let api = served().await;
    let pipeline = &api._stack.deployment.pipeline;
    let client = pipeline.db.get().await.unwrap();
    let acme_job: uuid::Uuid = api.acme_job.parse().unwrap();
    let fog = document_id("acme", "uploads/acme/fog-signals.txt");

    assert!(
        status::tenant_job(&client, "acme", acme_job)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        status::tenant_job(&client, "globex", acme_job)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        status::document(&client, "acme", fog)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        status::document(&client, "globex", fog)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !status::history(&client, "acme", acme_job)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        status::history(&client, "globex", acme_job)
            .await
            .unwrap()
            .is_empty()
    );
    let page = status::jobs(&client, "globex", None, Some(acme_job), 50)
        .await
        .unwrap();
    assert!(
        page.is_empty(),
        "another tenant's id as a page cursor finds no page"
    );
    let only_acme = search::SearchFilter {
        document_ids: Some(vec![fog]),
        ..Default::default()
    };
    let hits = search::search(
        &pipeline.db,
        &docpipe_tests::search_parts(&api._stack.deployment.settings),
        "globex",
        &search::Query {
            text: "fog",
            top_k: 10,
            mode: search::SearchMode::Hybrid,
            filter: &only_acme,
            context: None,
            rerank: true,
        },
    )
    .await
    .unwrap();
    assert!(hits.is_empty(), "{hits:?}");
}

#[tokio::test]
async fn a_tenant_over_its_rate_is_told_when_to_come_back_and_others_are_not() {
    let stack = LocalAws::start(&[]).await;
    let keys = format!("{ACME_KEY}:acme, {GLOBEX_KEY}:globex");
    let per_minute = [("TENANT_API_REQUESTS_PER_MINUTE", "5")];
    let base = stack.serve_api_with(&keys, &per_minute).await;
    let http = docpipe_tests::http_client();
    for _ in 0..5 {
        let (status, _) = call(&http, &base, Some(ACME_KEY), "GET", "/v1/jobs", None).await;
        assert_eq!(status, 200);
    }
    let (status, body) = call(&http, &base, Some(ACME_KEY), "GET", "/v1/jobs", None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let again = http
        .get(format!("{base}/v1/metrics"))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = again.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another tenant is not slowed by acme's burst.
    let (status, _) = call(&http, &base, Some(GLOBEX_KEY), "GET", "/v1/jobs", None).await;
    assert_eq!(status, 200);
}

/// A rerank service that refuses the deployment's key is the deployment's
/// problem: 503 `provider_refused`, its words in the log, not the caller's.
#[tokio::test]
async fn a_refused_rerank_is_a_503_not_the_callers_fault() {
    let mock = docpipe_mocks::rerank::MockRerank::new(Some("rk-right".into()), Default::default());
    let url = format!("http://{}", docpipe_tests::serve(mock.router()).await);
    let (base, stack) = serve_api(&[
        ("RERANK_PROVIDER", "cohere"),
        ("RERANK_BASE_URL", &url),
        ("RERANK_API_KEY", "rk-wrong"),
    ])
    .await;
    stack
        .put(
            "uploads/acme/bell.md",
            "The fog bell rings at the pier head.",
        )
        .await;
    stack
        .wait_for_state("uploads/acme/bell.md", "complete")
        .await;
    let http = docpipe_tests::http_client();
    let body = json!({"query": "fog bell"}).to_string();
    let (status, answer) = call(
        &http,
        &base,
        Some(ACME_KEY),
        "POST",
        "/v1/search",
        Some(&body),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "provider_refused");
    assert!(!answer.to_string().contains("rk-"), "{answer}");
    assert_eq!(mock.requests(), 1);
}

/// During a model change each tenant sees its own progress in its metrics,
/// and nobody else's, while its searches keep answering.
#[tokio::test]
async fn metrics_show_the_callers_progress_through_a_model_change() {
    let (base, stack) = serve_api(&[("NEXT_EMBEDDING_MODEL", "docpipe-mock-embedding-v2")]).await;
    stack.put("uploads/globex/plans.md", PLANS).await;
    stack
        .wait_for_state("uploads/globex/plans.md", "complete")
        .await;
    let http = docpipe_tests::http_client();
    let metrics = async |key: &str| {
        let (status, metrics) = call(&http, &base, Some(key), "GET", "/v1/metrics", None).await;
        assert_eq!(status, 200);
        metrics["model_change"].clone()
    };
    let globex = metrics(GLOBEX_KEY).await;
    assert_eq!(
        (
            &globex["current"],
            &globex["next"],
            &globex["ready"],
            &globex["switched"]
        ),
        (
            &json!("docpipe-mock-embedding-v1"),
            &json!("docpipe-mock-embedding-v2"),
            &json!(0),
            &json!(false)
        )
    );
    assert!(globex["chunks"].as_i64().unwrap() > 0, "{globex}");
    assert_eq!(
        metrics(ACME_KEY).await["chunks"],
        0,
        "acme has none of its own"
    );
    let body = json!({"query": "plans", "mode": "vector"}).to_string();
    let (status, answer) = call(
        &http,
        &base,
        Some(GLOBEX_KEY),
        "POST",
        "/v1/search",
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer["hits"].as_array().unwrap().is_empty(), "{answer}");
}

/// A stack whose API allows acme `per_minute` requests, and acme's
/// fog-signals.txt complete in it; the API's base URL and the document's key.
async fn one_complete_document(per_minute: &str) -> (LocalAws, String, &'static str) {
    let stack = LocalAws::start(&[]).await;
    let rate = [("TENANT_API_REQUESTS_PER_MINUTE", per_minute)];
    let base = stack
        .serve_api_with(&format!("{ACME_KEY}:acme"), &rate)
        .await;
    let key = "uploads/acme/fog-signals.txt";
    let text = std::fs::read(samples_dir().join("fog-signals.txt")).unwrap();
    stack.put(key, text).await;
    stack.wait_for_state(key, "complete").await;
    (stack, base, key)
}

/// The red team's race: 40 reprocess calls at once on one document, round
/// after round while its stages run. Each is queued (202) or refused while
/// the job runs (409), never a deadlock's 503; the document ends complete
/// with its chunks once.
#[tokio::test]
async fn parallel_reprocess_calls_are_each_queued_or_refused_never_deadlocked() {
    // 160 reprocess calls weigh 1 600 requests: the race, not the rate, is tested.
    let (stack, base, key) = one_complete_document("100000").await;
    let chunks = stack.chunks_of(key).await;
    let http = docpipe_tests::http_client();
    let path = format!("/v1/documents/{}/reprocess", document_id("acme", key));
    for round in 0..4 {
        let calls = (0..40).map(|_| call(&http, &base, Some(ACME_KEY), "POST", &path, None));
        let answers = futures::future::join_all(calls).await;
        let queued = answers.iter().filter(|(status, _)| *status == 202).count();
        for (status, body) in &answers {
            assert!(
                *status == 202 || *status == 409,
                "round {round}: {status} {body}"
            );
        }
        assert!(
            queued >= 1,
            "round {round}: the ended job was not queued again"
        );
        stack.wait_for_state(key, "complete").await;
    }
    stack.wait_idle(WITHIN).await;
    assert_eq!(stack.chunks_of(key).await, chunks);
    assert_eq!(stack.dead_letter_count().await, 0);
}

/// The red team's 600 reprocess calls, within 600 requests a minute, each
/// running the whole pipeline again: a reprocess weighs as 10 requests of
/// the tenant's allowance.
#[tokio::test]
async fn a_reprocess_weighs_as_ten_requests() {
    let (stack, base, key) = one_complete_document("25").await;
    let http = docpipe_tests::http_client();
    let path = format!("/v1/documents/{}/reprocess", document_id("acme", key));
    for n in 1..=2 {
        let (status, answer) = call(&http, &base, Some(ACME_KEY), "POST", &path, None).await;
        assert_eq!(status, 202, "reprocess {n}: {answer}");
        stack.wait_for_state(key, "complete").await;
    }
    let (status, answer) = call(&http, &base, Some(ACME_KEY), "POST", &path, None).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (429, &json!("rate_limited")),
        "{answer}"
    );
}

/// The red team's upload that never comes: `POST /v1/uploads` with metadata
/// writes the sidecar, and no file follows. Once the upload URL has expired,
/// the sweeper removes the sidecar and its attributes; the sidecar of an
/// upload that came stays, and so does one written to the bucket directly.
#[tokio::test]
async fn a_sidecar_whose_upload_never_came_is_removed_once_its_url_expires() {
    let (base, stack) = serve_api(&[]).await;
    let http = docpipe_tests::http_client();
    for name in ["never.txt", "came.txt"] {
        let request = json!({"name": name, "size": 5, "metadata": {"team": "harbour"}});
        let request = request.to_string();
        let (status, answer) = call(
            &http,
            &base,
            Some(ACME_KEY),
            "POST",
            "/v1/uploads",
            Some(&request),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    let own = "uploads/acme/later.txt.metadata.json";
    stack
        .put(own, r#"{"metadataAttributes": {"team": "quay"}}"#)
        .await;
    stack.put("uploads/acme/came.txt", "hello").await;
    stack
        .wait_for_state("uploads/acme/came.txt", "complete")
        .await;
    let db = stack.test_db.client().await;
    // The URLs expire (their expiry moved an hour back).
    db.execute(
        "UPDATE upload_pipeline.pending_sidecars SET expires_at = now() - interval '1 hour'",
        &[],
    )
    .await
    .unwrap();
    let deployment = stack.new_deployment().await;
    let policy = docpipe_core::settings::SweepPolicy::default();
    let report = docpipe_ingest::pipeline::sweeper::sweep(&deployment.pipeline, &policy)
        .await
        .unwrap();
    assert_eq!(report.unclaimed_sidecars, 1);
    assert!(
        !stack
            .object_exists("uploads/acme/never.txt.metadata.json")
            .await
    );
    assert!(
        stack
            .object_exists("uploads/acme/came.txt.metadata.json")
            .await
    );
    assert!(stack.object_exists(own).await);
    wait_until(
        WITHIN,
        "the kept sidecars' attributes, and only theirs",
        async || {
            let kept: Vec<String> = stack
                .test_db
                .column("SELECT source_key FROM upload_pipeline.metadata_sidecars ORDER BY 1")
                .await;
            kept == ["uploads/acme/came.txt", "uploads/acme/later.txt"]
        },
    )
    .await;
}
