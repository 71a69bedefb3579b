//! Hostile input on the deployed shape (LocalStack S3/SQS, the event-source
//! runner, the functions' handlers): one test per class of attack. Each
//! hostile upload of tenant `evil` must fail with its specific reason within
//! the bound the test states, while a document of tenant `acme` uploaded
//! just after it completes meanwhile, and the process handling both
//! survives. Parsing runs in child processes bounded by the `PARSE_*` limits.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_ingest::pipeline::{self, EmbedStage};
use docpipe_local_runner::provision::QueueSettings;
use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::llamaparse::MockLlamaParseConfig;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::corpus::{deep_html, flate_pdf, wide_table};
use docpipe_tests::local_aws::{LocalAws, s3_notification};
use docpipe_tests::spawn_openai;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTROL: &str = "uploads/acme/control.md";
const CONTROL_TEXT: &str =
    "# Control\n\nThe harbour light shows a white flash every ten seconds.\n";

/// Small chunks and vectors, and parse limits a test can reach quickly.
const LIMITS: [(&str, &str); 5] = [
    ("EMBEDDING_DIMS", "64"),
    ("CHUNK_TOKENS", "64"),
    ("CHUNK_OVERLAP_TOKENS", "8"),
    ("PARSE_TIMEOUT_SECS", "5"),
    ("PARSE_MEMORY_MB", "256"),
];

/// A stack whose messages stay invisible while a parse may run (as the
/// template's 6× the function timeout): a slow hostile parse is not handed
/// out again while still in hand.
async fn stack(vars: &[(&str, &str)]) -> LocalAws {
    let mut all = LIMITS.to_vec();
    all.extend_from_slice(vars);
    let settings = QueueSettings {
        visibility_timeout_secs: 30,
        max_receive_count: 3,
    };
    LocalAws::start_with_queues(&all, settings).await
}

/// Uploads `bytes` as `evil`'s `key`, then the control as `acme`'s: the
/// control completes, and the hostile job fails with `code` within `bound`
/// of its upload. Returns the failure's message.
async fn fails_alone(
    stack: &LocalAws,
    key: &str,
    bytes: Vec<u8>,
    code: &str,
    bound: Duration,
) -> String {
    let started = Instant::now();
    stack.put(key, bytes).await;
    stack.put(CONTROL, CONTROL_TEXT).await;
    stack.wait_for_state(CONTROL, "complete").await;
    assert!(stack.chunks_of(CONTROL).await > 0);
    stack.wait_for_state(key, "failed").await;
    let took = started.elapsed();
    let (_, recorded) = stack.jobs_of(key).await.pop().unwrap();
    let message = stack.error_message(key).await.unwrap_or_default();
    assert_eq!(recorded.as_deref(), Some(code), "{key}: {message}");
    assert!(took < bound, "{key} failed after {took:?}, over {bound:?}");
    assert_eq!(stack.chunks_of(key).await, 0);
    assert_eq!(stack.dead_letter_count().await, 0, "nothing dead-lettered");
    message
}

#[tokio::test]
async fn nesting_depth_is_refused_before_rendering() {
    // 10 000 nested blockquotes (140 KB): rendered, 200 M characters and 154 s.
    let html = deep_html("blockquote", 10_000);
    let stack = stack(&[]).await;
    let message = fails_alone(
        &stack,
        "uploads/evil/deep.html",
        html.into(),
        "too_deep",
        Duration::from_secs(20),
    )
    .await;
    assert!(message.contains("PARSE_MAX_DEPTH"), "{message}");
}

#[tokio::test]
async fn deep_divs_are_refused_before_the_parse() {
    // 200 000 nested divs (1 MB): parsing them alone is quadratic in depth
    // (still parsing after 5 minutes, before).
    let html = deep_html("div", 200_000);
    let stack = stack(&[]).await;
    fails_alone(
        &stack,
        "uploads/evil/divs.html",
        html.into(),
        "too_deep",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_wide_table_is_not_padded_into_megabytes() {
    // One row of 2 000 cells (26 KB): laid out at a huge width, 8 M characters.
    let html = wide_table(2000);
    let size = html.len() as i64;
    let stack = stack(&[]).await;
    stack.put("uploads/evil/wide.html", html).await;
    stack.put(CONTROL, CONTROL_TEXT).await;
    stack.wait_for_state(CONTROL, "complete").await;
    stack
        .wait_for_state("uploads/evil/wide.html", "complete")
        .await;
    let row = stack
        .test_db
        .client()
        .await
        .query_one(
            "SELECT parsed_chars FROM upload_pipeline.upload_jobs WHERE source_key = $1",
            &[&"uploads/evil/wide.html"],
        )
        .await
        .unwrap();
    let chars: i64 = row.get(0);
    assert!(chars < size, "{chars} characters from {size} bytes");
}

#[tokio::test]
async fn a_compression_bomb_stops_at_the_memory_limit() {
    // ~1 MB of PDF whose one stream inflates to 1 GiB.
    let pdf = flate_pdf(1 << 30, 1, "bomb");
    assert!(pdf.len() < 4 << 20, "{} bytes", pdf.len());
    let stack = stack(&[]).await;
    let message = fails_alone(
        &stack,
        "uploads/evil/bomb.pdf",
        pdf,
        "parse_memory",
        Duration::from_secs(30),
    )
    .await;
    assert!(message.contains("PARSE_MEMORY_MB"), "{message}");
}

#[tokio::test]
async fn pages_sharing_one_stream_stop_at_the_text_limit() {
    // 3 000 pages each showing one 60 KB stream: 180 M characters of text.
    // The text limit, not the clock, must stop it: the timeout is set past
    // what reaching the limit takes on a loaded machine.
    let pdf = flate_pdf(60_000, 3000, "the same words on every page");
    let stack = stack(&[("PARSE_TIMEOUT_SECS", "15")]).await;
    let message = fails_alone(
        &stack,
        "uploads/evil/pages.pdf",
        pdf,
        "too_much_text",
        Duration::from_secs(20),
    )
    .await;
    assert!(message.contains("PARSE_CHARS_PER_BYTE"), "{message}");
}

#[tokio::test]
async fn text_over_the_character_limit() {
    let stack = stack(&[("PARSE_MAX_CHARS", "100000")]).await;
    let text = "Plain words, but far too many of them. ".repeat(5000);
    fails_alone(
        &stack,
        "uploads/evil/huge.txt",
        text.into(),
        "too_much_text",
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test]
async fn nul_in_utf16_text_is_binary_content() {
    let bytes: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("tide\0table".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let stack = stack(&[]).await;
    let message = fails_alone(
        &stack,
        "uploads/evil/nul.txt",
        bytes,
        "binary_content",
        Duration::from_secs(20),
    )
    .await;
    assert!(message.contains("NUL"), "{message}");
}

#[tokio::test]
async fn nul_in_a_key_is_refused_without_retries() {
    let stack = stack(&[]).await;
    let bucket = stack.resources.bucket.clone();
    for key in ["uploads/evil/a%00.txt", "uploads/evil/line%0Abreak.txt"] {
        let notification = s3_notification(&bucket, key, "ObjectCreated:Put");
        stack
            .send(&stack.resources.uploads.url, &notification)
            .await;
    }
    stack.put(CONTROL, CONTROL_TEXT).await;
    stack.wait_for_state(CONTROL, "complete").await;
    stack.wait_idle(Duration::from_secs(20)).await;
    assert_eq!(
        stack.test_db.count("upload_jobs").await,
        1,
        "only the control"
    );
    assert_eq!(stack.dead_letter_count().await, 0);
}

#[tokio::test]
async fn hostile_retry_after_values_never_stall_the_process() {
    let (url, mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        ..MockOpenAiConfig::default()
    })
    .await;
    let stack = stack(&[
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test-0123456789"),
        ("OPENAI_BASE_URL", &url),
        ("EXTERNAL_MAX_WAIT_SECS", "1"),
        ("EXTERNAL_MAX_ATTEMPTS", "2"),
    ])
    .await;
    // Before: `inf` panicked the caller; `1e12` paused every later call for ever.
    let values = ["inf", "1e12", "-1", "soon", "NaN", "1e400"];
    for (n, value) in values.iter().enumerate() {
        mock.faults.set_knobs(FaultKnobs {
            rate_limit_rate: 1.0,
            retry_after_raw: Some(value.to_string()),
            ..FaultKnobs::default()
        });
        let key = format!("uploads/evil/limited-{n}.md");
        stack
            .put(&key, format!("# Note {n}\n\nA note about {value}."))
            .await;
        let limited = || mock.faults.injected().len();
        let before = limited();
        docpipe_tests::local_aws::wait_until(
            Duration::from_secs(20),
            "a 429 answered",
            async || limited() > before,
        )
        .await;
    }
    // The provider recovers: every document completes within the bound (the
    // next delivery after the 30 s visibility timeout, and no stalled pause).
    let started = Instant::now();
    mock.faults.set_knobs(FaultKnobs::default());
    stack.put(CONTROL, CONTROL_TEXT).await;
    stack.wait_for_state(CONTROL, "complete").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "control waited"
    );
    for n in 0..values.len() {
        stack
            .wait_for_state(&format!("uploads/evil/limited-{n}.md"), "complete")
            .await;
    }
    assert_eq!(stack.dead_letter_count().await, 0);
}

/// An embedder that panics on a text holding `word`: a bug met by one
/// record of a batch.
struct PanicsOn {
    inner: Arc<dyn Embedder>,
    word: &'static str,
}

#[async_trait::async_trait]
impl Embedder for PanicsOn {
    fn billable(&self) -> bool {
        self.inner.billable()
    }
    fn service(&self) -> &'static str {
        self.inner.service()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dims(&self) -> usize {
        self.inner.dims()
    }
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> docpipe_core::Result<Embeddings> {
        if inputs.iter().any(|input| input.text.contains(self.word)) {
            panic!("the embedder met {}", self.word);
        }
        self.inner.embed(inputs).await
    }
}

#[tokio::test]
async fn a_panicking_record_fails_its_own_job_and_not_the_batch() {
    let mut stack = stack(&[]).await;
    // This test delivers the messages itself, as one Lambda batch.
    stack.runner.abort_all();
    let mut deployment = stack.new_deployment().await;
    let pipeline = &deployment.pipeline;
    let mut jobs = Vec::new();
    for (key, text) in [
        (
            "uploads/evil/poison.md",
            "# Poison\n\nThis paragraph holds the word kraken.",
        ),
        (CONTROL, CONTROL_TEXT),
    ] {
        stack.put(key, text).await;
        let ingested = pipeline::ingest::ingest(pipeline, key, "test")
            .await
            .unwrap();
        for stage in [Stage::Parse, Stage::Chunk] {
            let message = StageMessage::new(ingested.job_id, "test", stage);
            pipeline::handle(pipeline, &message).await.unwrap();
        }
        jobs.push(ingested.job_id);
    }
    let models = &mut deployment.pipeline.embedding.as_mut().unwrap().models;
    models.current = Arc::new(PanicsOn {
        inner: models.current.clone(),
        word: "kraken",
    });
    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .enumerate()
        .map(|(n, job_id)| {
            let message = StageMessage::new(
                *job_id,
                "test",
                Stage::Embed {
                    first_chunk: 0,
                    chunk_count: 100,
                },
            );
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("m{n}"));
            record.body = Some(serde_json::to_string(&message).unwrap());
            record
        })
        .collect();
    let response =
        docpipe_ingest::drivers::handlers::handle_stage_events::<EmbedStage>(&deployment, event)
            .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "both records are done with: {:?}",
        response.batch_item_failures
    );
    let (_, code) = stack.jobs_of("uploads/evil/poison.md").await.pop().unwrap();
    assert_eq!(code.as_deref(), Some("stage_panicked"));
    let message = stack.error_message("uploads/evil/poison.md").await.unwrap();
    assert!(message.contains("kraken"), "{message}");
    assert_eq!(
        stack.jobs_of(CONTROL).await,
        [("complete".to_string(), None)]
    );
    assert!(stack.chunks_of(CONTROL).await > 0);
}

#[test]
fn a_parse_child_without_readable_limits_reads_nothing() {
    // The child sets its own memory and CPU limits before it reads the
    // document: given limits it cannot read, it must stop, not parse unbounded.
    let exe = docpipe_tests::parse_sandbox_exe().expect("the parse sandbox binary");
    for limits in ["1", "unbounded", "268435456", "268435456 -5"] {
        let child = std::process::Command::new(&exe)
            .env_clear()
            .env(docpipe_ingest::parsing::sandbox::CHILD_ENV, limits)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&child.stderr);
        assert_eq!(child.status.code(), Some(2), "{limits:?}: {errors}");
        assert!(errors.contains("unreadable limits"), "{limits:?}: {errors}");
        assert!(child.stdout.is_empty(), "{limits:?}");
    }
}

#[tokio::test]
async fn a_slow_llamaparse_upload_holds_no_connection_another_tenant_needs() {
    // LlamaParse takes 10 s to answer each request, and the stack has one
    // database connection. Submitting a document claims it and records the
    // request in short statements; the upload between them must not hold
    // the connection, or every other tenant's document waits on it.
    let (url, _mock) = docpipe_tests::spawn_llamaparse(MockLlamaParseConfig {
        api_key: Some("llx-test".into()),
        processing_delay: Duration::from_secs(1),
        faults: FaultKnobs {
            latency_ms: 10_000,
            ..FaultKnobs::default()
        },
    })
    .await;
    let stack = stack(&[
        ("DB_POOL_SIZE", "1"),
        ("PARSER", "llamaparse"),
        ("LLAMA_CLOUD_API_KEY", "llx-test"),
        ("LLAMAPARSE_BASE_URL", &url),
        ("LLAMAPARSE_EXTENSIONS", "pdf"),
    ])
    .await;
    stack
        .put("uploads/evil/slow.pdf", flate_pdf(1000, 1, "slow"))
        .await;
    stack
        .wait_for_state("uploads/evil/slow.pdf", "queued")
        .await;
    // The parse stage picks it up and starts the upload.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    stack.put(CONTROL, CONTROL_TEXT).await;
    stack.wait_for_state(CONTROL, "complete").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the control took {took:?} beside a slow LlamaParse upload"
    );
}
