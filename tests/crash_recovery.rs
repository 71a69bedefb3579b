//! Postgres, then the AWS endpoint, gone in the middle of a run: the
//! functions' connections recover, the messages whose handling failed
//! meanwhile come back from SQS, and every document still ends exactly once.
//! The database is a cluster of this test's own (`scripts/local-postgres`
//! with `DOCPIPE_PG_DATA`), so its restart disturbs no other test; the
//! emulator sits behind a proxy of the test's own that drops every
//! connection and refuses new ones for the outage (LocalStack's community
//! edition keeps no state across a real restart, so a restart would lose the
//! queues themselves, which SQS never does).

use docpipe_local_runner::provision::QueueSettings;
use docpipe_tests::local_aws::{LocalAws, wait_until};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const DOCUMENTS: usize = 60;
const WITHIN: Duration = Duration::from_secs(120);
const VARS: [(&str, &str); 3] = [
    ("EMBEDDING_DIMS", "64"),
    ("CHUNK_TOKENS", "64"),
    ("CHUNK_OVERLAP_TOKENS", "8"),
];
/// Failed handling comes back after 3 s, and an outage uses few receives.
const QUEUES: QueueSettings = QueueSettings {
    visibility_timeout_secs: 3,
    max_receive_count: 10,
};

/// A Postgres cluster of the test's own, stopped and removed on drop.
struct OwnPostgres {
    port: u16,
    data: PathBuf,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let local_dir = std::env::var("DOCPIPE_LOCAL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.local")));
        let postgres = OwnPostgres {
            port,
            data: local_dir.join(format!("pgdata-crash-{port}")),
        };
        postgres.script("up");
        postgres
    }

    /// What `scripts/local-postgres up` prints: `DATABASE_URL=postgres://…`.
    fn admin_url(&self) -> String {
        let printed = self.script("env");
        let url = printed.trim().strip_prefix("export DATABASE_URL=");
        url.expect("scripts/local-postgres env prints the URL")
            .to_string()
    }

    /// Runs the script on this cluster; what it printed.
    fn script(&self, command: &str) -> String {
        let output = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/local-postgres"
        ))
        .arg(command)
        .env("DOCPIPE_PG_PORT", self.port.to_string())
        .env("DOCPIPE_PG_DATA", &self.data)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/local-postgres");
        assert!(output.status.success(), "scripts/local-postgres {command}");
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.script("down");
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(self.data.with_extension("log"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing() {
    let postgres = OwnPostgres::start();
    let stack = LocalAws::start_on(&postgres.admin_url(), &VARS, QUEUES).await;

    let keys: Vec<String> = (0..DOCUMENTS)
        .map(|n| format!("uploads/acme/log-{n:02}.md"))
        .collect();
    let put = async |n: usize| {
        let text: String = (0..1 + n % 6)
            .map(|p| format!("Entry {n}.{p}: the keeper logs the tide, the fog and the light.\n\n"))
            .collect();
        stack.put(&keys[n], text).await;
    };
    // Half the uploads, then the database goes away while they are in
    // flight; the other half arrive while it is down; it is back after 3 s.
    for n in 0..DOCUMENTS / 2 {
        put(n).await;
    }
    let ended_before = stack.count_in_state("complete").await;
    postgres.script("down");
    for n in DOCUMENTS / 2..DOCUMENTS {
        put(n).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.script("up");

    wait_until(WITHIN, "every document complete", async || {
        stack.count_in_state("complete").await as usize == DOCUMENTS
    })
    .await;
    let db = stack.test_db.client().await;
    stack.wait_idle(WITHIN).await;
    assert!(
        (ended_before as usize) < DOCUMENTS,
        "the restart came while work was in flight ({ended_before} done before it)"
    );
    for key in &keys {
        assert_eq!(
            stack.jobs_of(key).await,
            [("complete".to_string(), None)],
            "{key}"
        );
    }
    let row = db
        .query_one(
            "SELECT (SELECT coalesce(sum(chunk_count), 0)::int8 FROM upload_pipeline.upload_jobs),
                    (SELECT count(*) FROM upload_pipeline.document_chunks),
                    (SELECT count(*) FROM upload_pipeline.document_chunk_buffer)
                  + (SELECT count(*) FROM upload_pipeline.document_vector_buffer)",
            &[],
        )
        .await
        .unwrap();
    let (expected, stored, buffered): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (stored, buffered),
        (expected, 0),
        "every chunk once, no buffer left"
    );
    assert_eq!(stack.dead_letter_count().await, 0, "nothing dead-lettered");
    println!(
        "postgres restarted with {ended_before} of {DOCUMENTS} complete; all {DOCUMENTS} complete after, {stored} chunks"
    );
}

/// A TCP proxy to the emulator that can be taken down (every connection
/// dropped, new ones closed at once) and brought back.
struct Outage {
    url: String,
    up: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Outage {
    async fn proxy_to(target: &str) -> Outage {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let (is_up, tasks) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes
                }
                let target = target.clone();
                tasks.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Outage {
            url,
            up,
            connections,
        }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_outage_mid_run_loses_nothing() {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (scripts/test sets it)");
    let outage = Outage::proxy_to(&endpoint).await;
    // Set in code, so the clients prefer it to AWS_ENDPOINT_URL.
    let mut sdk = docpipe_tests::local_aws::sdk_config().await.into_builder();
    sdk.set_endpoint_url(Some(outage.url.clone()));
    sdk.insert_origin("endpoint_url", aws_types::origin::Origin::shared_config());
    let sdk = sdk.build();
    let stack = LocalAws::start_with_sdk(sdk, &docpipe_tests::admin_url(), &VARS, QUEUES).await;
    // Uploads go straight to the emulator, so some arrive during the outage.
    let direct = docpipe_shared::adapters::aws::s3_client(
        &docpipe_tests::local_aws::sdk_config().await,
        true,
    );
    let keys: Vec<String> = (0..DOCUMENTS)
        .map(|n| format!("uploads/acme/log-{n:02}.md"))
        .collect();
    let put = async |n: usize| {
        let text = format!("Entry {n}: the keeper logs the tide, the fog and the light.\n\n")
            .repeat(1 + n % 6);
        direct
            .put_object()
            .bucket(&stack.resources.bucket)
            .key(&keys[n])
            .body(text.into_bytes().into())
            .send()
            .await
            .expect("PutObject");
    };
    for n in 0..DOCUMENTS / 2 {
        put(n).await;
    }
    outage.down().await;
    for n in DOCUMENTS / 2..DOCUMENTS {
        put(n).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ended_before = stack.count_in_state("complete").await;
    outage.up();

    stack.wait_idle(WITHIN).await;
    for key in &keys {
        stack.wait_for_state(key, "complete").await;
        assert_eq!(
            stack.jobs_of(key).await,
            [("complete".to_string(), None)],
            "{key}"
        );
    }
    assert!(
        (ended_before as usize) < DOCUMENTS,
        "{ended_before} done before the endpoint came back"
    );
    assert_eq!(stack.dead_letter_count().await, 0, "nothing dead-lettered");
    println!(
        "AWS endpoint down 3 s with {ended_before} of {DOCUMENTS} complete; all {DOCUMENTS} complete after"
    );
}

/// A runner killed after committing a stage but before its message got out
/// leaves a job with no message anywhere (here: the queues are purged, as
/// after a DLQ that nobody redrives). The sweeper, on its schedule, finds it
/// idle past its state's timeout, sends its next message again, and the job
/// completes; one it cannot move is failed `stuck` (tests/stages.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_resumes_a_job_whose_messages_were_lost() {
    use docpipe_shared::pipeline::ingest;
    use docpipe_shared::settings::SweepPolicy;
    let mut stack = LocalAws::start(&[("EMBEDDING_DIMS", "64")]).await;
    stack.runner.abort_all(); // the runner dies
    while stack.runner.join_next().await.is_some() {}
    let key = "uploads/acme/lost.md";
    stack
        .put(
            key,
            "# Lost\n\nThe relief keeper finds the log open at the last entry.",
        )
        .await;
    let pipeline = &stack.deployment.pipeline;
    let ingested = ingest::ingest(pipeline, key, "lost-1").await.unwrap();
    for queue in [&stack.resources.uploads, &stack.resources.parse] {
        stack
            .sqs
            .purge_queue()
            .queue_url(&queue.url)
            .send()
            .await
            .expect("PurgeQueue");
    }
    let _runner = stack.start_runner().await; // a new instance: nothing to do
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.jobs_of(key).await, [("queued".to_string(), None)]);

    let policy = SweepPolicy {
        queued_timeout: Duration::from_secs(1),
        ..SweepPolicy::default()
    };
    let report = docpipe_shared::pipeline::sweeper::sweep(pipeline, &policy)
        .await
        .unwrap();
    assert_eq!(report.resumed, [ingested.job_id]);
    stack.wait_for_state(key, "complete").await;
    assert!(stack.chunks_of(key).await > 0);
}
