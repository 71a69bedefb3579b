//! The runner's start, as Lambda's cold start would be retried.

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_runner_waits_for_a_database_that_is_not_up_yet() {
    // Nothing listens on this port: as a database restarting or in crash recovery.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut runner = Command::new(env!("CARGO_BIN_EXE_docpipe-local-runner"))
        .args([
            "run",
            "--uploads-queue-url",
            "http://127.0.0.1:1/queue/uploads",
        ])
        .env(
            "DATABASE_URL",
            format!("postgres://docpipe:x@127.0.0.1:{port}/docpipe"),
        )
        .env("DOCPIPE_BUCKET", "bucket")
        .env("PARSE_QUEUE_URL", "http://127.0.0.1:1/queue/parse")
        .env("CHUNK_QUEUE_URL", "http://127.0.0.1:1/queue/chunk")
        .env("EMBED_QUEUE_URL", "http://127.0.0.1:1/queue/embed")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let exited = runner.try_wait().unwrap();
    runner.kill().unwrap();
    let output = runner.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(exited.is_none(), "the runner gave up at once: {log}");
    assert!(log.contains("database not ready"), "{log}");
}
