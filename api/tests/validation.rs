//! What the API checks before it touches any service, in process
//! (`tower::ServiceExt::oneshot`): who may call, and a clear 4xx for every
//! bad input. Its clients point at nothing (a database and AWS endpoints
//! that refuse connections), so an answer that needed one would fail here.
//! Every answer is checked against `api/openapi.yaml`.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use docpipe_api::{Api, ApiParts, ApiSettings, Auth, OPENAPI, parse_api_keys, router};
use docpipe_aws::blob::LocalBlobStore;
use docpipe_aws::sqs::SqsQueue;
use docpipe_core::db;
use docpipe_core::settings::{Env, Parts, PipelineSettings};
use docpipe_ingest::embedding::models;
use docpipe_ingest::pipeline::Pipeline;
use docpipe_search::SearchParts;
use docpipe_tests::openapi::{OPENAPI as DOCUMENT, check_documented};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const ACME_KEY: &str = "acme-key-0123456789";

fn app() -> Router {
    let env = Env::from_pairs([
        ("DATABASE_URL", "postgres://docpipe:x@127.0.0.1:1/docpipe"),
        ("EMBEDDING_DIMS", "64"),
    ]);
    let settings = PipelineSettings::load(&env, Parts::EMBED).unwrap();
    let (s3, sqs, stage_queues) = docpipe_tests::unreachable_aws();
    let blobs = LocalBlobStore::new(std::env::temp_dir().join("docpipe-api-validation"));
    let pipeline = Pipeline::new(
        &settings,
        db::pool(&settings.database).unwrap(),
        Arc::new(blobs),
        Arc::new(SqsQueue::new(sqs.clone(), stage_queues.clone())),
    )
    .unwrap();
    let parts = ApiParts {
        pipeline,
        s3,
        sqs,
        bucket: "docpipe-validation".into(),
        stage_queues,
        search: SearchParts::new(&settings, models(&settings).unwrap()).unwrap(),
    };
    let keys = parse_api_keys(&format!("{ACME_KEY}:acme")).unwrap();
    let api = Api::from_parts(parts, Auth::ApiKeys(keys), &ApiSettings::default()).unwrap();
    router(Arc::new(api))
}

/// One request through the router; its answer must be what `api/openapi.yaml` says.
async fn call(
    app: &Router,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or_default().to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    check_documented(method, path, status, &body);
    (status, body)
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = app();
    let mut operations = 0;
    for (template, item) in DOCUMENT["paths"].as_object().unwrap() {
        let path = template
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{knowledgeBaseId}", "KB12345678")
            .replace("{dataSourceId}", "DS12345678")
            .replace("{ingestionJobId}", "JOB0123456");
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            let public = item[method]["security"] == json!([]);
            let (status, _) = call(&app, None, &method.to_uppercase(), &path, None).await;
            // Bedrock's routes answer as AWS does: 403 AccessDeniedException.
            let bedrock = path.starts_with("/knowledgebases/") || path == "/v1/retrieve";
            let refused = if bedrock { 403 } else { 401 };
            assert_eq!(
                status,
                if public { 200 } else { refused },
                "{method} {template}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 18);
    let yaml = app
        .clone()
        .oneshot(
            Request::get("/v1/openapi.yaml")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    let text = axum::body::to_bytes(yaml.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(text, OPENAPI.as_bytes());
}

#[tokio::test]
async fn every_route_wants_a_known_key() {
    let app = app();
    for (method, path, body) in [
        ("GET", "/v1/health", None),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/metrics", None),
        (
            "GET",
            "/v1/documents/00000000-0000-0000-0000-000000000000",
            None,
        ),
        ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000", None),
        ("POST", "/v1/search", Some(r#"{"query":"fog"}"#)),
        ("POST", "/v1/uploads", Some(r#"{"name":"a.txt","size":3}"#)),
        (
            "DELETE",
            "/v1/documents/00000000-0000-0000-0000-000000000000",
            None,
        ),
    ] {
        for key in [None, Some("not-a-key-of-anyone-at-all")] {
            let (status, body) = call(&app, key, method, path, body).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // Bedrock's routes refuse as AWS does.
    for path in ["/v1/retrieve", "/knowledgebases/KB12345678/retrieve"] {
        for key in [None, Some("not-a-key-of-anyone-at-all")] {
            let body = Some(r#"{"retrievalQuery":{"text":"fog"}}"#);
            let (status, body) = call(&app, key, "POST", path, body).await;
            assert_eq!(status, 403, "{path} with {key:?}");
            assert!(
                body["message"].as_str().unwrap().contains("Bearer"),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn bad_input_gets_a_4xx_that_says_what_is_wrong() {
    let app = app();
    let cases: [(&str, &str, Option<&str>, u16, &str); 41] = [
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","filter":{"document_ids":[]}}"#),
            400,
            "filter.document_ids must name 1 to 100 documents",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","filter":{"key_prefix":"a\u0000b"}}"#),
            400,
            "filter.key_prefix must not contain control characters",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"a\u0000.txt","size":10}"#),
            400,
            "control characters",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"line\nbreak.txt","size":10}"#),
            400,
            "control characters",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","filter":{"tenant":"globex"}}"#),
            400,
            "filter.tenant: unknown operator \"tenant\"; expected one of equals, notEquals",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","filter":{"equals":{"key":"a","value":1},"in":{}}}"#),
            400,
            "filter: one operator per object (equals, in)",
        ),
        (
            "POST",
            "/v1/search",
            Some(
                r#"{"query":"fog","filter":{"andAll":[{"equals":{"key":"team","value":"legal"}},{"greaterThan":{"key":"year","value":"2022"}}]}}"#,
            ),
            400,
            "filter.andAll[1].greaterThan.value: must be a number, not a string",
        ),
        (
            "POST",
            "/v1/search",
            Some(
                r#"{"query":"fog","filter":{"orAll":[{"orAll":[{"orAll":[{"orAll":[{"orAll":[{"orAll":[{"equals":{"key":"a","value":1}}]}]}]}]}]}]}}"#,
            ),
            400,
            "nest more than 5 deep",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"a.txt","size":3,"metadata":{"source_key":"uploads/globex/x.txt"}}"#),
            400,
            "metadata: attribute \"source_key\" is reserved",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"a.txt","size":3,"metadata":{"owner":{"name":"x"}}}"#),
            400,
            "must be a string, number, boolean or list of strings",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"a.txt.metadata.json","size":3}"#),
            400,
            "are metadata sidecars",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"../globex/x.txt","size":10}"#),
            400,
            "'..' segments",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"a//b.txt","size":10}"#),
            400,
            "without empty",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"tool.exe","size":10}"#),
            400,
            "unsupported",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"empty.txt","size":0}"#),
            400,
            "size must be at least 1 byte",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"huge.txt","size":1000000000000}"#),
            413,
            "at most",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"x.txt"}"#),
            422,
            "missing field `size`",
        ),
        (
            "POST",
            "/v1/uploads",
            Some(r#"{"name":"x.txt","size":-1}"#),
            422,
            "invalid value",
        ),
        ("GET", "/v1/nothing-here", None, 404, "no such route"),
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
            Some(r#"{"query":"fog","context":{"neighbors":11}}"#),
            400,
            "context.neighbors must be 1 to 10",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","context":{"neighbors":1,"max_tokens":100}}"#),
            422,
            "context: give one of neighbors or max_tokens",
        ),
        (
            "POST",
            "/v1/retrieve",
            Some(r#"{"retrievalQuery":{"text":"fog"},"nextToken":"abc"}"#),
            400,
            "nextToken is not one this request was given",
        ),
        (
            "POST",
            "/v1/retrieve",
            Some(
                r#"{"retrievalQuery":{"text":"fog"},"retrievalConfiguration":{"vectorSearchConfiguration":{"rerankingConfiguration":{}}}}"#,
            ),
            400,
            "missing field `type`",
        ),
        (
            "POST",
            "/v1/retrieve",
            Some(
                r#"{"retrievalQuery":{"text":"fog"},"retrievalConfiguration":{"vectorSearchConfiguration":{"numberOfResults":0}}}"#,
            ),
            400,
            "retrievalConfiguration.vectorSearchConfiguration.numberOfResults must be 1 to 100",
        ),
        (
            "POST",
            "/v1/retrieve",
            Some(
                r#"{"retrievalQuery":{"text":"fog"},"retrievalConfiguration":{"vectorSearchConfiguration":{"filter":{"equals":{"key":"a"}}}}}"#,
            ),
            400,
            "retrievalConfiguration.vectorSearchConfiguration.filter.equals: needs a value",
        ),
        (
            "POST",
            "/v1/retrieve",
            Some(r#"{"retrievalQuery":{"text":"  "}}"#),
            400,
            "retrievalQuery.text must not be empty",
        ),
        (
            "POST",
            "/v1/retrieve",
            Some(
                r#"{"retrievalQuery":{"text":"fog"},"retrievalConfiguration":{"vectorSearchConfiguration":{"overrideSearchType":"KEYWORD"}}}"#,
            ),
            400,
            "unknown variant `KEYWORD`, expected `HYBRID` or `SEMANTIC`",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","rerank":"no"}"#),
            422,
            "rerank: invalid type: string \"no\", expected a boolean",
        ),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query":"fog","mode":"semantic"}"#),
            422,
            "unknown variant `semantic`, expected one of `hybrid`, `vector`, `keyword`",
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
    ];
    for (method, path, body, expected, message) in cases {
        let (status, answer) = call(&app, Some(ACME_KEY), method, path, body).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        // docpipe's error, or (Bedrock's routes) AWS's.
        let text = answer["error"]["message"]
            .as_str()
            .or(answer["message"].as_str())
            .unwrap_or_default();
        assert!(text.contains(message), "{method} {path} {body:?}: {text}");
    }
    // Oversized inputs: a key over S3's limit, a query over ours, a body
    // over 64 KiB (read no further).
    let oversized = [
        (
            "/v1/uploads",
            format!(r#"{{"name":"{}.txt","size":5}}"#, "n".repeat(1100)),
            400,
            "at most 1024",
        ),
        (
            "/v1/search",
            format!(r#"{{"query":"{}"}}"#, "fog ".repeat(3000)),
            400,
            "at most 8192",
        ),
        (
            "/v1/search",
            format!(r#"{{"query":"{}"}}"#, "x".repeat(70_000)),
            413,
            "length limit exceeded",
        ),
        (
            "/v1/search",
            format!(
                r#"{{"query":"fog","filter":{}{}}}"#,
                r#"{"andAll":["#.repeat(200),
                "]}".repeat(200)
            ),
            400,
            "recursion limit exceeded",
        ),
        (
            "/v1/search",
            format!(
                r#"{{"query":"fog","filter":{{"orAll":[{}]}}}}"#,
                vec![r#"{"equals":{"key":"a","value":1}}"#; 51].join(",")
            ),
            400,
            "more than 50 comparisons",
        ),
    ];
    for (path, body, expected, message) in oversized {
        let (status, answer) = call(&app, Some(ACME_KEY), "POST", path, Some(&body)).await;
        assert_eq!(status, expected, "{path}: {answer}");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{path}: {text}");
    }
}

/// The red team's metadata: accepted at the POST, then dropped after the
/// upload. Metadata that cannot be a sidecar is refused at the POST.
#[tokio::test]
async fn upload_metadata_that_cannot_be_kept_is_refused_at_once() {
    let app = app();
    let attributes: serde_json::Map<String, Value> = (0..20)
        .map(|n| (format!("field{n}"), json!("x".repeat(1000))))
        .collect();
    let oversized = json!({"name": "a.txt", "size": 3, "metadata": attributes}).to_string();
    let with_nul = r#"{"name":"a.txt","size":3,"metadata":{"team":"leg\u0000al"}}"#;
    let nul_in_list = r#"{"name":"a.txt","size":3,"metadata":{"tags":["a","\u0000"]}}"#;
    for (body, says) in [
        (oversized.as_str(), "as a sidecar; at most 10240"),
        (with_nul, "attribute \"team\" has a NUL character"),
        (nul_in_list, "attribute \"tags\" has a NUL character"),
    ] {
        let (status, answer) = call(&app, Some(ACME_KEY), "POST", "/v1/uploads", Some(body)).await;
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{answer}");
        assert!(text.contains(says), "{text:?} lacks {says:?}");
    }
}

/// The red team's smaller findings at the API's door: each input refused
/// with the error JSON before any service is touched (the query's NUL was
/// embedded and billed, then refused by Postgres in its own words).
#[tokio::test]
async fn hostile_inputs_get_the_error_json_before_any_service() {
    let app = app();
    let cases: [(&str, &str, String, u16, &str, &str); 8] = [
        (
            "POST",
            "/v1/search",
            r#"{"query":"fog\u0000"}"#.into(),
            400,
            "bad_request",
            "query has a NUL character",
        ),
        (
            "POST",
            "/v1/search",
            r#"{"query":"fog","filter":{"equals":{"key":"team","value":"le\u0000gal"}}}"#.into(),
            400,
            "bad_request",
            "filter.equals.value: a string with a NUL character",
        ),
        (
            "POST",
            "/v1/search",
            r#"{"query":"fog","filter":{"in":{"key":"team","value":["a","\u0000"]}}}"#.into(),
            400,
            "bad_request",
            "filter.in.value: a string with a NUL character",
        ),
        (
            "POST",
            "/v1/search",
            format!(r#"{{"query":"fog{}"}}"#, " ".repeat(9000)),
            400,
            "bad_request",
            "query is 9003 bytes; at most 8192",
        ),
        (
            "POST",
            "/v1/search",
            format!(r#"{{"query":"{}"}}"#, "x".repeat(70_000)),
            413,
            "too_large",
            "length limit exceeded",
        ),
        (
            "POST",
            "/v1/uploads",
            r#"{"name":"a.md.METADATA.JSON","size":3}"#.into(),
            400,
            "bad_request",
            "are metadata sidecars",
        ),
        (
            "POST",
            "/v1/uploads",
            r#"{"name":"invoice\u202Etxt.exe.txt","size":3}"#.into(),
            400,
            "bad_request",
            "invisible or direction-changing character U+202E",
        ),
        (
            "DELETE",
            "/v1/search",
            String::new(),
            405,
            "method_not_allowed",
            "DELETE is not served here",
        ),
    ];
    for (method, path, body, status, code, says) in cases {
        let body = (!body.is_empty()).then_some(body.as_str());
        let (got, answer) = call(&app, Some(ACME_KEY), method, path, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {answer}"
        );
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(says), "{path}: {text:?} lacks {says:?}");
    }
}

/// Auth schemes are case-insensitive (RFC 9110): `bearer` is `Bearer`.
#[tokio::test]
async fn a_lower_case_bearer_is_a_bearer() {
    let app = app();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/search")
        .header("authorization", format!("bearer {ACME_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"query":"  "}"#))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400, "past auth, to the empty query");
}

/// A request line or headers past the API's limits are answered with the
/// error JSON (414 `uri_too_long`, 431 `headers_too_large`), before auth,
/// like every other refusal, not with an empty body.
#[tokio::test]
async fn an_oversized_request_head_gets_the_error_json() {
    let app = app();
    let long_uri = format!("/v1/jobs?state={}", "q".repeat(9000));
    let many = (0..120).fold(Request::builder().uri("/v1/jobs"), |request, i| {
        request.header(format!("x-filler-{i}"), "1")
    });
    let big = Request::builder()
        .uri("/v1/jobs")
        .header("x-filler", "h".repeat(40 * 1024));
    for (request, status, code) in [
        (
            Request::builder().uri(long_uri.as_str()),
            414,
            "uri_too_long",
        ),
        (many, 431, "headers_too_large"),
        (big, 431, "headers_too_large"),
    ] {
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
}

/// Every answer, the dashboard's (which holds an API key) first, tells the
/// browser not to sniff, frame or keep it.
#[tokio::test]
async fn answers_carry_the_headers_a_browser_needs() {
    let app = app();
    for (path, key) in [
        ("/", None),
        ("/v1/jobs/x", Some(ACME_KEY)),
        ("/v1/nothing", None),
    ] {
        let mut request = Request::builder().uri(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        let policy = header("content-security-policy");
        assert!(
            policy.contains("frame-ancestors 'none'") && policy.starts_with("default-src 'none'"),
            "{path}: {policy}"
        );
    }
}

/// The red team's key guessing: 3 000 wrong keys in 11 s, no line logged.
/// Failures past 20 a second are answered 429 (and counted, not logged one
/// by one); a right key is served throughout.
#[tokio::test]
async fn wrong_keys_in_a_burst_are_throttled_and_a_right_key_still_served() {
    let app = app();
    let mut statuses = Vec::new();
    for n in 0..100 {
        let key = format!("wrong-key-{n:010}");
        let (status, _) = call(&app, Some(&key), "GET", "/v1/jobs/x", None).await;
        statuses.push(status);
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + throttled, 100, "{statuses:?}");
    assert!((20..=30).contains(&refused), "{refused} answered 401");
    let (status, _) = call(&app, Some(ACME_KEY), "GET", "/v1/jobs/x", None).await;
    assert_eq!(status, 400, "the right key is past auth");
}
