//! The `docpipe` binary as a user runs it.

use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::llamaparse::MockLlamaParseConfig;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::{ScratchDir, TestDb, samples_dir, spawn_llamaparse, spawn_openai};
use std::collections::{HashMap, HashSet};
use std::process::{Command, Output};
use std::time::Duration;

fn docpipe(test_db: &TestDb, args: &[&str]) -> Output {
    docpipe_with(test_db, args, &[])
}

/// `docpipe args` on `test_db`, with these settings beside the defaults.
fn docpipe_with(test_db: &TestDb, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_docpipe"))
        .args(args)
        .env("DATABASE_URL", &test_db.url)
        .env("DOCPIPE_BLOB_DIR", &test_db.blob_dir)
        .env_remove("EMBEDDING_PROVIDER")
        .env_remove("EMBEDDING_DIMS")
        .envs(vars.iter().copied())
        .output()
        .expect("run docpipe")
}

/// `eval` of the samples' labeled `queries` on the demo tenant.
fn args_of(queries: &str) -> [&str; 5] {
    ["eval", "--queries", queries, "--tenant", "demo"]
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn ingest_search_status_and_a_rerun() {
    let test_db = TestDb::empty().await;
    let migrate = docpipe(&test_db, &["migrate"]);
    assert!(migrate.status.success(), "{migrate:?}");
    assert_eq!(
        stdout(&migrate),
        "applied V1__schema, V2__correlation_and_sweeps, V3__external_services, V4__service_breakers, V5__deferred_indexes, V6__vectors_written_once, V7__tenant_scoped_cache_and_limits, V8__chunk_provenance, V9__document_metadata, V10__keyword_search, V11__model_change, V12__chunk_headers, V13__spend_reservations, V14__operator_error_detail, V15__pending_sidecars, V16__stage_work, V17__jobs_by_state_and_tenant, V18__metadata_for_embedding, V19__object_versions, V20__syncs, V21__ingestion_jobs, V22__sync_waits, V23__sync_inventory, V24__sync_inventory_file_count\n"
    );

    let samples = samples_dir().display().to_string();
    let first = docpipe(&test_db, &["ingest", &samples, "--tenant", "demo"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    // A first load (an empty table) builds the search index once, after loading.
    assert!(
        stdout(&first).starts_with("built index document_chunks_embedding_idx in ",)
            && stdout(&first).contains("\n4 documents: 4 complete, 0 failed (0 unchanged"),
        "{}",
        stdout(&first)
    );

    // A bulk load builds the search index once, after loading.
    let again = docpipe(
        &test_db,
        &["ingest", &samples, "--tenant", "demo", "--defer-index"],
    );
    assert_eq!(again.status.code(), Some(0));
    assert!(
        stdout(&again).starts_with("built index document_chunks_embedding_idx in "),
        "{}",
        stdout(&again)
    );
    assert!(
        stdout(&again).contains("(4 unchanged since the last run)\nnew chunks 0, tokens 0"),
        "{}",
        stdout(&again)
    );
    let search = docpipe(
        &test_db,
        &[
            "search",
            "speed limit inside the breakwater",
            "--tenant",
            "demo",
            "--mode",
            "vector",
            "--json",
        ],
    );
    let hits: serde_json::Value = serde_json::from_slice(&search.stdout).expect("JSON hits");
    assert_eq!(hits[0]["source_key"], "uploads/demo/harbour-rules.html");
    assert!(hits[0]["score"].as_f64().unwrap() > 0.3);

    let status = docpipe(&test_db, &["status", "--json"]);
    let overview: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    assert_eq!(overview["jobs_by_state"]["complete"], 4);
    assert_eq!(overview["documents"], 4);

    // The same text under another name: its tokens are counted, none paid.
    let scratch = ScratchDir::new();
    let fog = std::fs::read(samples_dir().join("fog-signals.txt")).unwrap();
    let copy = scratch.write("fog copy.txt", fog);
    let reused = docpipe(
        &test_db,
        &["ingest", copy.to_str().unwrap(), "--tenant", "demo"],
    );
    let summary = stdout(&reused);
    let tokens = summary
        .split("tokens ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(tokens.parse::<u32>().unwrap() > 0, "{summary}");
    assert!(
        summary.contains(&format!(
            "tokens {tokens} (0 paid, {tokens} reused from the cache)"
        )),
        "{summary}"
    );
}

#[tokio::test]
async fn status_shows_a_model_change_that_reembed_completes() {
    let test_db = TestDb::empty().await;
    let current = [
        ("EMBEDDING_DIMS", "384"),
        ("CHUNK_TOKENS", "150"),
        ("CHUNK_OVERLAP_TOKENS", "20"),
    ];
    assert!(
        docpipe_with(&test_db, &["migrate"], &current)
            .status
            .success()
    );
    let samples = samples_dir().display().to_string();
    let ingest = docpipe_with(
        &test_db,
        &["ingest", &samples, "--tenant", "demo"],
        &current,
    );
    assert_eq!(ingest.status.code(), Some(0), "{ingest:?}");
    let model_dir = docpipe_tests::local_model_dir().display().to_string();
    let changing: Vec<(&str, &str)> = current
        .into_iter()
        .chain([
            ("NEXT_EMBEDDING_PROVIDER", "local"),
            ("NEXT_EMBEDDING_MODEL_DIR", model_dir.as_str()),
        ])
        .collect();
    let status = stdout(&docpipe_with(&test_db, &["status"], &changing));
    assert!(
        status.contains(
            "model change docpipe-mock-embedding-v1 -> all-MiniLM-L6-v2: 0 of 1 tenants switched\n  \
             demo                 building  0/9 chunks with the next model's vectors"
        ),
        "{status}"
    );
    let reembed = docpipe_with(&test_db, &["reembed", "--chunks", "5"], &changing);
    assert_eq!(
        stdout(&reembed),
        "embedded 5; 4 to go\ndemo: switched (9 chunks)\nevery tenant searches the next model\n",
        "{reembed:?}"
    );
    let status = stdout(&docpipe_with(&test_db, &["status"], &changing));
    assert!(status.contains("1 of 1 tenants switched"), "{status}");
    let idle = docpipe_with(&test_db, &["reembed"], &current);
    assert_eq!(idle.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&idle.stderr).contains("no model change is configured"),
        "{idle:?}"
    );
}

#[tokio::test]
async fn a_failed_document_makes_ingest_exit_non_zero_with_the_reason() {
    let test_db = TestDb::empty().await;
    assert!(docpipe(&test_db, &["migrate"]).status.success());
    let dir = ScratchDir::new();
    dir.write("notes.txt", "Fine text.");
    dir.write("slides.key", "PK");
    let output = docpipe(
        &test_db,
        &["ingest", &dir.0.display().to_string(), "--tenant", "t1"],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("2 documents: 1 complete, 1 failed"), "{text}");
    assert!(
        text.contains(
            "failed uploads/t1/slides.key: unsupported_type: unsupported file type \"key\""
        ),
        "{text}"
    );

    let status = docpipe(&test_db, &["status"]);
    assert!(
        stdout(&status).contains("uploads/t1/slides.key  unsupported_type"),
        "{}",
        stdout(&status)
    );
}

#[tokio::test]
async fn a_first_load_builds_the_search_index_once_after_and_later_loads_keep_it() {
    let test_db = TestDb::empty().await;
    assert!(docpipe(&test_db, &["migrate"]).status.success());
    let client = test_db.client().await;
    // The index's oid: a new one when it was dropped and built again.
    let index = || async {
        client
            .query_one(
                "SELECT 'upload_pipeline.document_chunks_embedding_idx'::regclass::oid",
                &[],
            )
            .await
            .unwrap()
            .get::<_, u32>(0)
    };
    let migrated = index().await;
    let samples = samples_dir().display().to_string();
    assert!(
        docpipe(&test_db, &["ingest", &samples, "--tenant", "demo"])
            .status
            .success()
    );
    let first = index().await;
    assert_ne!(first, migrated, "built after the first load");
    assert_eq!(test_db.count("deferred_indexes").await, 0);
    let dir = ScratchDir::new();
    dir.write(
        "more.txt",
        "Harbour pilots board inbound ships at the fairway buoy.",
    );
    let output = docpipe(
        &test_db,
        &["ingest", &dir.0.display().to_string(), "--tenant", "other"],
    );
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(index().await, first, "kept while other chunks exist");
}

#[tokio::test]
async fn configuration_errors_are_named() {
    let test_db = TestDb::empty().await;
    let output = docpipe(&test_db, &["search", "x", "--tenant", "t"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("run `docpipe migrate`"), "{stderr}");
    let output = docpipe(&test_db, &["ingest", ".", "--tenant", "bad tenant"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("tenant must be 1-64 characters"),
        "{output:?}"
    );
}

/// The JSON log of an ingest through both external services while they fail
/// now and then: every line about a document names its upload's correlation
/// id, and no line shows a key or an auth header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_the_correlation_id_and_never_a_key() {
    const OPENAI_KEY: &str = "sk-canary-0penai-7f3a";
    const LLAMA_KEY: &str = "llx-canary-llama-91c2";
    let faults = FaultKnobs {
        error_rate: 0.2,
        rate_limit_rate: 0.2,
        retry_after_secs: 1,
        seed: 11,
        ..FaultKnobs::default()
    };
    let (openai_url, _openai) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        api_key: Some(OPENAI_KEY.into()),
        faults: faults.clone(),
        ..MockOpenAiConfig::default()
    })
    .await;
    let (llama_url, _llama) = spawn_llamaparse(MockLlamaParseConfig {
        api_key: Some(LLAMA_KEY.into()),
        processing_delay: Duration::from_millis(200),
        faults,
    })
    .await;
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", "64")]).await;
    let samples = samples_dir().display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_docpipe"))
            .args(["ingest", &samples, "--tenant", "demo"])
            .env("DATABASE_URL", &test_db.url)
            .env("DOCPIPE_BLOB_DIR", &test_db.blob_dir)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .env("EMBEDDING_PROVIDER", "openai")
            .env("EMBEDDING_DIMS", "64")
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .env("OPENAI_BASE_URL", &openai_url)
            .env("PARSER", "llamaparse")
            .env("LLAMA_CLOUD_API_KEY", LLAMA_KEY)
            .env("LLAMAPARSE_BASE_URL", &llama_url)
            .env("LLAMAPARSE_EXTENSIONS", "pdf,md,txt,html")
            .env("LLAMAPARSE_FIRST_POLL_SECS", "1")
            .env("EXTERNAL_MAX_ATTEMPTS", "10")
            .env("EXTERNAL_FIRST_BACKOFF_MS", "10")
            .output()
            .expect("run docpipe")
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).contains("4 documents: 4 complete"));

    let log = String::from_utf8(output.stderr).unwrap();
    for secret in [OPENAI_KEY, LLAMA_KEY, "authorization", "bearer", "api-key"] {
        assert!(
            !log.to_lowercase().contains(&secret.to_lowercase()),
            "{secret:?} in the log"
        );
    }
    // docpipe's own lines about a document, by correlation id: the stages
    // each logged in, and whether a line says the job completed.
    let mut stages_by_upload: HashMap<String, HashSet<String>> = HashMap::new();
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        let (span, fields) = (&entry["span"], &entry["fields"]);
        let ours = entry["target"].as_str().unwrap().starts_with("docpipe");
        if !ours || !(line.contains("job_id") || span["name"] == "upload") {
            continue;
        }
        let correlation_id = span["correlation_id"]
            .as_str()
            .or(fields["correlation_id"].as_str())
            .unwrap_or_else(|| panic!("no correlation id: {line}"));
        let stage = span["stage"].as_str().or(span["name"].as_str()).unwrap();
        let stages = stages_by_upload.entry(correlation_id.into()).or_default();
        stages.insert(stage.into());
        if fields["ended"] == "complete" {
            stages.insert("complete".into());
        }
    }
    assert_eq!(stages_by_upload.len(), 4, "{stages_by_upload:?}");
    for (correlation_id, stages) in &stages_by_upload {
        for stage in ["upload", "parse", "chunk", "embed", "complete"] {
            assert!(
                stages.contains(stage),
                "{correlation_id}: no {stage} line in {stages:?}"
            );
        }
    }
}

/// The Embedded Metric Format lines of a local run: each names metrics and
/// dimensions present on the line, and together they count what happened.
#[tokio::test]
async fn a_run_writes_emf_metric_lines_cloudwatch_can_read() {
    let test_db = TestDb::migrated(&[]).await;
    let scratch = ScratchDir::new();
    let empty = scratch.write("empty.txt", "");
    let emf = scratch.0.join("metrics.jsonl");
    let output = docpipe_with(
        &test_db,
        &[
            "ingest",
            &samples_dir().display().to_string(),
            &empty.display().to_string(),
            "--tenant",
            "demo",
        ],
        &[("EMF_OUTPUT", &emf.display().to_string())],
    );
    assert_eq!(output.status.code(), Some(1), "one document fails");

    let text = std::fs::read_to_string(&emf).expect("metrics written");
    let mut totals: HashMap<(String, String), f64> = HashMap::new();
    let mut error_kinds = HashSet::new();
    for line in text.lines() {
        let root: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        let aws = &root["_aws"];
        assert!(aws["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        for directive in aws["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(directive["Namespace"], "docpipe");
            for dimensions in directive["Dimensions"].as_array().unwrap() {
                for dimension in dimensions.as_array().unwrap() {
                    let name = dimension.as_str().unwrap();
                    assert!(root[name].is_string(), "{name} missing on {line}");
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                let unit = metric["Unit"].as_str().unwrap();
                let expected = match name {
                    "Duration" => "Milliseconds",
                    "CostUsd" | "BreakerOpen" => "None",
                    _ => "Count",
                };
                assert_eq!(unit, expected, "{name}");
                let value = root[name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{name} missing on {line}"));
                let stage = root["Stage"].as_str().unwrap().to_string();
                *totals.entry((stage, name.to_string())).or_default() += value;
            }
        }
        if let Some(kind) = root["ErrorKind"].as_str() {
            error_kinds.insert(kind.to_string());
        }
    }
    let total = |stage: &str, metric: &str| totals.get(&(stage.into(), metric.into())).copied();
    assert_eq!(total("ingest", "Messages"), Some(5.0), "{totals:?}");
    assert_eq!(total("ingest", "DocumentsIngested"), Some(5.0));
    assert_eq!(total("parse", "Messages"), Some(5.0));
    assert_eq!(total("parse", "JobsFailed"), Some(1.0));
    assert_eq!(error_kinds, HashSet::from(["empty_file".to_string()]));
    let chunks: Vec<i64> = test_db
        .column("SELECT count(*) FROM upload_pipeline.document_chunks")
        .await;
    assert_eq!(total("chunk", "ChunksCreated"), Some(chunks[0] as f64));
    assert_eq!(total("embed", "JobsCompleted"), Some(4.0));
    let tokens: Vec<Option<i64>> = test_db
        .column("SELECT sum(units)::int8 FROM upload_pipeline.cost_ledger WHERE unit = 'tokens'")
        .await;
    assert_eq!(
        total("embed", "EmbeddingTokens"),
        tokens[0].map(|t| t as f64)
    );
    assert!(total("embed", "Duration").unwrap() > 0.0);
}

/// Sidecars in an ingested folder give their documents metadata (a refused
/// one fails the run with its reason); `--filter` narrows the search, and
/// `--json` shows each hit's provenance and metadata.
#[tokio::test]
async fn sidecars_give_metadata_that_search_filters_by() {
    let test_db = TestDb::empty().await;
    assert!(docpipe(&test_db, &["migrate"]).status.success());
    let dir = ScratchDir::new();
    dir.write(
        "contract.md",
        "# Lease

The harbour lease runs ten years.",
    );
    let attributes = serde_json::json!({"team": "legal", "year": 2024});
    let sidecar = serde_json::json!({ "metadataAttributes": attributes });
    dir.write("contract.md.metadata.json", sidecar.to_string());
    dir.write(
        "memo.md",
        "# Memo

The harbour budget is approved.",
    );
    dir.write(
        "memo.md.metadata.json",
        r#"{"metadataAttributes": {"document_id": "x"}}"#,
    );
    let folder = dir.0.display().to_string();
    let ingest = docpipe(&test_db, &["ingest", &folder, "--tenant", "t"]);
    assert_eq!(ingest.status.code(), Some(1), "{ingest:?}");
    let text = stdout(&ingest);
    assert!(text.contains("2 documents: 2 complete, 0 failed"), "{text}");
    assert!(
        text.contains(
            "2 metadata sidecars read, 1 refused
  refused uploads/t/memo.md.metadata.json: \
             metadata sidecar not applied: attribute \"document_id\" is reserved"
        ),
        "{text}"
    );

    let search = |filter: &str| {
        let args = [
            "search", "harbour", "--tenant", "t", "--json", "--filter", filter,
        ];
        docpipe(&test_db, &args)
    };
    let legal = search(
        r#"{"andAll": [{"equals": {"key": "team", "value": "legal"}}, {"greaterThan": {"key": "year", "value": 2000}}]}"#,
    );
    assert!(legal.status.success(), "{legal:?}");
    let hits: serde_json::Value = serde_json::from_slice(&legal.stdout).expect("JSON hits");
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    let hit = &hits[0];
    assert_eq!(hit["source_key"], "uploads/t/contract.md");
    assert_eq!(hit["metadata"], attributes);
    assert_eq!(hit["headings"], serde_json::json!(["Lease"]));
    for field in ["score", "page_start", "page_end", "text"] {
        assert!(hit.get(field).is_some(), "{field} in {hit}");
    }
    let malformed = search(r#"{"greaterThan": {"key": "year", "value": "2000"}}"#);
    assert_eq!(malformed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(
        stderr.contains("filter.greaterThan.value: must be a number, not a string"),
        "{stderr}"
    );
    let args = [
        "search",
        "lease",
        "--tenant",
        "t",
        "--mode",
        "keyword",
        "--neighbors",
        "1",
    ];
    let keyword = stdout(&docpipe(&test_db, &args));
    assert!(
        keyword.contains("uploads/t/contract.md")
            && keyword.contains("   chunks 0-0:\n   | # Lease\n   |\n   | The harbour lease runs"),
        "{keyword}"
    );
    let not_json = search("{team: legal}");
    assert_eq!(not_json.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("not JSON"));
}

/// `docpipe eval` on the samples and their labeled queries: the figures of
/// each mode, within 0.05 of what they were when the labels were written
/// (`mock` embedder, so they move only when ranking changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_measures_each_mode_on_the_samples() {
    let test_db = TestDb::empty().await;
    assert!(docpipe(&test_db, &["migrate"]).status.success());
    let samples = samples_dir().display().to_string();
    assert!(
        docpipe(&test_db, &["ingest", &samples, "--tenant", "demo"])
            .status
            .success()
    );
    let queries = samples_dir().join("../queries.jsonl").display().to_string();
    let args = ["eval", "--queries", &queries, "--tenant", "demo", "--json"];
    let output = docpipe(&test_db, &args);
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (mode, recall_at_1, mrr) in [
        ("hybrid", 0.929, 0.964),
        ("vector", 0.929, 0.964),
        ("keyword", 0.429, 0.429),
    ] {
        let got = &report[mode];
        assert_eq!(got["queries"], 14);
        let [low, high] = [0, 1].map(|end| got["mrr_at_10_interval"][end].as_f64().unwrap());
        let mrr_at_10 = got["mrr_at_10"].as_f64().unwrap();
        assert!(low <= mrr_at_10 && mrr_at_10 <= high, "{mode}: {got}");
        for (figure, expected) in [("recall_at_1", recall_at_1), ("mrr_at_10", mrr)] {
            let value = got[figure].as_f64().unwrap();
            assert!(
                (value - expected).abs() <= 0.05,
                "{mode} {figure}: {value}, expected {expected}"
            );
        }
    }
    let text = stdout(&docpipe(
        &test_db,
        &[
            "eval",
            "--queries",
            &queries,
            "--tenant",
            "demo",
            "--mode",
            "keyword",
        ],
    ));
    assert!(
        text.contains("mode     recall@1  recall@5  recall@10  MRR@10  (95 % interval)\nkeyword "),
        "{text}"
    );
    // Each mode with and without the reranker, which is asked only for the latter.
    let reranker =
        docpipe_mocks::rerank::MockRerank::new(Some("rk-test".into()), FaultKnobs::default());
    let url = format!("http://{}", docpipe_tests::serve(reranker.router()).await);
    let vars = [
        ("RERANK_PROVIDER", "cohere"),
        ("RERANK_BASE_URL", &url),
        ("RERANK_API_KEY", "rk-test"),
    ];
    let args = ["--mode", "hybrid", "--rerank", "off,on", "--json"];
    let output = docpipe_with(&test_db, &[&args_of(&queries)[..], &args].concat(), &vars);
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(rows, ["hybrid", "hybrid+rerank"]);
    assert_eq!(
        reranker.requests(),
        14,
        "one call a query, reranked rows only"
    );
    let missing = docpipe(
        &test_db,
        &[
            "eval",
            "--queries",
            "/nonexistent.jsonl",
            "--tenant",
            "demo",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
}

/// `docpipe --api URL` searches and reports through the HTTP API, with the
/// key's tenant, and says clearly what is wrong when it cannot. (The API runs
/// in this process while the binary blocks a thread: two worker threads.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_status_through_the_api() {
    let stack = docpipe_tests::local_aws::LocalAws::start(&[]).await;
    let key = "cli-key-0123456789";
    let base = stack.serve_api(&format!("{key}:acme")).await;
    stack
        .put(
            "uploads/acme/bell.md",
            "# Bells\n\nThe fog bell rings at the pier head.",
        )
        .await;
    stack.put("uploads/acme/empty.txt", "").await;
    stack
        .wait_for_state("uploads/acme/bell.md", "complete")
        .await;
    stack
        .wait_for_state("uploads/acme/empty.txt", "failed")
        .await;
    let api = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_docpipe"))
            .args(args)
            .env("DOCPIPE_API_URL", &base)
            .env("DOCPIPE_API_KEY", key)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run docpipe")
    };

    let search = api(&["search", "fog bell at the pier"]);
    assert!(search.status.success(), "{search:?}");
    assert!(
        stdout(&search).starts_with("1. ") && stdout(&search).contains("uploads/acme/bell.md"),
        "{}",
        stdout(&search)
    );
    let filtered = api(&[
        "search",
        "fog",
        "--filter",
        r#"{"equals":{"key":"team","value":"x"}}"#,
    ]);
    assert_eq!(stdout(&filtered), "no results\n", "{filtered:?}");
    let malformed = api(&[
        "search",
        "fog",
        "--filter",
        r#"{"equal":{"key":"team","value":"x"}}"#,
    ]);
    assert_eq!(malformed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(stderr.contains("unknown operator \"equal\""), "{stderr}");
    let labels = ScratchDir::new();
    let file = labels.write(
        "q.jsonl",
        r#"{"query": "fog bell", "relevant": ["bell.md"]}"#,
    );
    let eval = api(&[
        "eval",
        "--queries",
        file.to_str().unwrap(),
        "--mode",
        "keyword,vector",
    ]);
    let report = stdout(&eval);
    assert!(
        report.contains(
            "\nkeyword     1.000     1.000      1.000   1.000  (1.000–1.000)\nvector      1.000"
        ),
        "{eval:?}"
    );
    let status = api(&["status"]);
    assert!(status.status.success(), "{status:?}");
    let report = stdout(&status);
    for line in [
        "tenant acme, health ok",
        "  complete    1",
        "  failed      1",
        // Queue figures count every tenant's messages: not shown to a tenant.
        "queue parse    ok  waiting —, in flight —, delayed —, dead letters —",
        "uploads/acme/empty.txt  empty_file: file is empty (0 bytes)",
    ] {
        assert!(report.contains(line), "{line:?} not in\n{report}");
    }
    let json = api(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["metrics"]["jobs_by_state"]["complete"], 1);

    let refused = api(&["search", "fog", "--tenant", "globex"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the API key decides the tenant"));
    let wrong_key = Command::new(env!("CARGO_BIN_EXE_docpipe"))
        .args(["--api", &base, "status"])
        .env("DOCPIPE_API_KEY", "not-a-key-of-anyone")
        .output()
        .unwrap();
    assert_eq!(wrong_key.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    assert!(
        stderr.contains("401 Unauthorized: send `Authorization: Bearer <API key>`"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-a-key-of-anyone"), "{stderr}");
}

/// Output to a reader already gone (`docpipe … | head` once head has read
/// its lines) ends the command quietly and successfully, not in a panic.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_docpipe"))
        .args(["keys", "issue", "--tenant", "acme"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run docpipe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.is_empty(), "{stderr}");
}
