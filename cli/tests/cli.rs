//! The `docpipe` binary as a user runs it.

use docpipe_tests::{ScratchDir, TestDb, samples_dir};
use std::process::{Command, Output};

fn docpipe(test_db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_docpipe"))
        .args(args)
        .env("DATABASE_URL", &test_db.url)
        .env("DOCPIPE_BLOB_DIR", &test_db.blob_dir)
        .env_remove("EMBEDDING_PROVIDER")
        .env_remove("EMBEDDING_DIMS")
        .output()
        .expect("run docpipe")
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
        "applied V1__schema, V2__correlation_and_sweeps, V3__external_services\n"
    );

    let samples = samples_dir().display().to_string();
    let first = docpipe(&test_db, &["ingest", &samples, "--tenant", "demo"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert!(
        stdout(&first).starts_with("4 documents: 4 complete, 0 failed (0 unchanged"),
        "{}",
        stdout(&first)
    );

    let again = docpipe(&test_db, &["ingest", &samples, "--tenant", "demo"]);
    assert_eq!(again.status.code(), Some(0));
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
}

#[tokio::test]
async fn a_failed_document_makes_ingest_exit_non_zero_with_the_reason() {
    let test_db = TestDb::empty().await;
    assert!(docpipe(&test_db, &["migrate"]).status.success());
    let dir = ScratchDir::new();
    dir.write("notes.txt", "Fine text.");
    dir.write("slides.pptx", "PK");
    let output = docpipe(
        &test_db,
        &["ingest", &dir.0.display().to_string(), "--tenant", "t1"],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.starts_with("2 documents: 1 complete, 1 failed"),
        "{text}"
    );
    assert!(
        text.contains(
            "failed uploads/t1/slides.pptx: unsupported_type: unsupported file type \"pptx\""
        ),
        "{text}"
    );

    let status = docpipe(&test_db, &["status"]);
    assert!(
        stdout(&status).contains("uploads/t1/slides.pptx  unsupported_type"),
        "{}",
        stdout(&status)
    );
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
