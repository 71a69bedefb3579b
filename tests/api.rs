//! The HTTP API over real HTTP against a real database: who may call it,
//! tenant isolation on every route, and a clear 4xx for every bad input.

use docpipe_api::{Api, parse_api_keys, router};
use docpipe_shared::db;
use docpipe_shared::ids::document_id;
use docpipe_shared::local::LocalPipeline;
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, samples_dir, serve};
use serde_json::{Value, json};
use std::sync::Arc;

const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";

struct Served {
    base: String,
    http: reqwest::Client,
    /// Job ids by tenant.
    acme_job: String,
    globex_job: String,
    /// The pipeline the API shares, to run what it queues.
    local: LocalPipeline,
    _test_db: TestDb,
}

/// acme has the samples, globex one document of its own.
async fn served() -> Served {
    let test_db = TestDb::migrated(&[]).await;
    let config = test_db.config(&[]);
    let (_, acme) = ingest_locally(&config, "acme", &[samples_dir()]).await;
    let scratch = ScratchDir::new();
    let secret = scratch.write(
        "plans.md",
        "Globex plans a harbour light with a fog signal.",
    );
    let (_, globex) = ingest_locally(&config, "globex", &[secret]).await;
    let pool = db::connect(&config).await.unwrap();
    let local = LocalPipeline::new(&config, pool).unwrap();
    let pipeline = local.pipeline().clone();
    let api_keys = parse_api_keys(&format!("{ACME_KEY}:acme, {GLOBEX_KEY}:globex")).unwrap();
    let address = serve(router(Arc::new(Api { pipeline, api_keys }))).await;
    Served {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        acme_job: acme.values().next().unwrap().job_id.to_string(),
        globex_job: globex.values().next().unwrap().job_id.to_string(),
        local,
        _test_db: test_db,
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
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
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
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn every_route_wants_a_known_key() {
    let api = served().await;
    for (method, path, body) in [
        ("GET", "/v1/health", None),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/metrics", None),
        (
            "GET",
            "/v1/documents/00000000-0000-0000-0000-000000000000",
            None,
        ),
        ("GET", &format!("/v1/jobs/{}", api.acme_job) as &str, None),
        ("POST", "/v1/search", Some(r#"{"query":"fog"}"#)),
    ] {
        for key in [None, Some("not-a-key-of-anyone-at-all")] {
            let (status, body) = api.call(key, method, path, body).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
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

    // Metrics count the caller's jobs only; the budget is shared.
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
    assert_eq!(acme["daily_budget_usd"], 5.0);
    assert!(
        acme["tokens_today"].as_i64().unwrap() > globex["tokens_today"].as_i64().unwrap(),
        "{acme} {globex}"
    );
}

#[tokio::test]
async fn documents_are_shown_reprocessed_and_deleted_by_their_own_tenant_only() {
    let mut api = served().await;
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
    api.local.run(Vec::new(), |_| {}).await;
    let (_, document) = api
        .call(Some(ACME_KEY), "GET", &format!("/v1/documents/{fog}"), None)
        .await;
    let job = &document["latest_job"];
    assert_eq!(job["state"], "complete");
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
async fn bad_input_gets_a_4xx_that_says_what_is_wrong() {
    let api = served().await;
    let cases: [(&str, &str, Option<&str>, u16, &str); 13] = [
        (
            "GET",
            "/v1/documents/xyz",
            None,
            400,
            "document id must be a UUID",
        ),
        (
            "POST",
            "/v1/documents/xyz/reprocess",
            None,
            400,
            "document id must be a UUID",
        ),
        (
            "GET",
            "/v1/jobs?state=bogus",
            None,
            400,
            "state must be one of queued",
        ),
        (
            "GET",
            "/v1/jobs?limit=0",
            None,
            400,
            "limit must be 1 to 200",
        ),
        (
            "GET",
            "/v1/jobs?after=xyz",
            None,
            400,
            "after must be a UUID",
        ),
        (
            "GET",
            "/v1/jobs?colour=red",
            None,
            400,
            "unknown field `colour`",
        ),
        (
            "GET",
            "/v1/jobs/not-a-uuid",
            None,
            400,
            "job id must be a UUID",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"   "}"#),
            400,
            "query must not be empty",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","top_k":0}"#),
            400,
            "top_k must be 1 to 100",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","top_k":101}"#),
            400,
            "top_k must be 1 to 100",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","topk":3}"#),
            422,
            "unknown field `topk`",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog""#),
            400,
            "EOF while parsing",
        ),
        (
            "GET",
            "/v1/jobs/00000000-0000-0000-0000-000000000000",
            None,
            404,
            "no such job",
        ),
    ];
    for (method, path, body, expected, message) in cases {
        let (status, answer) = api.call(Some(ACME_KEY), method, path, body).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{method} {path} {body:?}: {text}");
    }
    let long = format!(r#"{{"query":"{}"}}"#, "fog ".repeat(3000));
    let (status, answer) = api
        .call(Some(ACME_KEY), "POST", "/v1/search", Some(&long))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 8192")
    );
}

#[tokio::test]
async fn health_reports_the_database_and_the_breakers() {
    let api = served().await;
    let (status, health) = api.call(Some(ACME_KEY), "GET", "/v1/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["breakers"], json!([]));
}
