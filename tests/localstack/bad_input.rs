//! Bad input through the deployed shape (LocalStack S3/SQS, the event-source
//! runner, the functions' handlers): one test per case. Each ends in the
//! specific reason a user sees (on the job, or in the log when no job can
//! carry it) and touches nothing else: a control document uploaded first
//! stays complete with its chunks, the bad one has no searchable chunk, and
//! nothing waits in a dead-letter queue unless the case is a message no
//! function can read.

use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::llamaparse::MockLlamaParseConfig;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::local_aws::{LocalAws, WITHIN, s3_notification};
use docpipe_tests::{spawn_llamaparse, spawn_openai};
use std::time::Duration;

const CONTROL: &str = "uploads/acme/control.md";
const CONTROL_TEXT: &str =
    "# Control\n\nThe harbour light shows a white flash every ten seconds.\n";
const SMALL: [(&str, &str); 3] = [
    ("EMBEDDING_DIMS", "64"),
    ("CHUNK_TOKENS", "64"),
    ("CHUNK_OVERLAP_TOKENS", "8"),
];

struct Bad {
    stack: LocalAws,
    control_chunks: i64,
}

async fn stack() -> Bad {
    stack_with(&[]).await
}

/// A fresh stack with `vars` beside small chunks, the control document complete.
async fn stack_with(vars: &[(&str, &str)]) -> Bad {
    let mut all = SMALL.to_vec();
    all.extend_from_slice(vars);
    let stack = LocalAws::start(&all).await;
    stack.put(CONTROL, CONTROL_TEXT).await;
    stack.wait_for_state(CONTROL, "complete").await;
    let control_chunks = stack.chunks_of(CONTROL).await;
    assert!(control_chunks > 0);
    Bad {
        stack,
        control_chunks,
    }
}

impl Bad {
    /// Uploads `bytes` at `key`; its job must fail with `code` and a message
    /// containing `says`, and nothing else may change.
    async fn upload_fails(&self, key: &str, bytes: impl Into<Vec<u8>>, code: &str, says: &str) {
        self.stack.put(key, bytes).await;
        self.stack.wait_for_state(key, "failed").await;
        self.job_failed(key, code, says).await;
    }

    async fn job_failed(&self, key: &str, code: &str, says: &str) {
        let message = self.stack.error_message(key).await;
        let (_, recorded) = self.stack.jobs_of(key).await.pop().unwrap();
        assert_eq!(recorded.as_deref(), Some(code), "{key}: {message:?}");
        let message = message.unwrap_or_default();
        assert!(message.contains(says), "{key}: {message:?} lacks {says:?}");
        self.untouched(key, 0).await;
    }

    /// `body` on the uploads queue: acknowledged, no document or job made.
    async fn notification_ignored(&self, body: &str) {
        self.stack
            .send(&self.stack.resources.uploads.url, body)
            .await;
        self.nothing_recorded("").await;
    }

    /// An `ObjectCreated` notification for `key` (whether S3 has it or not).
    async fn created_ignored(&self, key: &str) {
        let bucket = &self.stack.resources.bucket;
        self.notification_ignored(&s3_notification(bucket, key, "ObjectCreated:Put"))
            .await;
    }

    /// A real upload whose key no tenant owns: no document or job made.
    async fn upload_ignored(&self, key: &str, body: &str) {
        self.stack.put(key, body).await;
        self.nothing_recorded(key).await;
    }

    async fn nothing_recorded(&self, key: &str) {
        self.untouched(key, 0).await;
        let jobs = self.stack.test_db.count("upload_jobs").await;
        assert_eq!(jobs, 1, "only the control's job");
    }

    /// The control document as it was; no chunks for `key`; `dead` messages
    /// in the dead-letter queues, no more.
    async fn untouched(&self, key: &str, dead: u64) {
        let stack = &self.stack;
        stack.wait_idle(WITHIN).await;
        assert_eq!(
            stack.jobs_of(CONTROL).await,
            [("complete".to_string(), None)]
        );
        assert_eq!(stack.chunks_of(CONTROL).await, self.control_chunks);
        assert_eq!(
            stack.chunks_of(key).await,
            0,
            "{key} has no searchable chunk"
        );
        assert_eq!(
            stack.dead_letter_count().await,
            dead,
            "dead-lettered messages"
        );
    }
}

#[tokio::test]
async fn zero_byte_file() {
    let bad = stack().await;
    bad.upload_fails(
        "uploads/acme/empty.txt",
        "",
        "empty_file",
        "file is empty (0 bytes)",
    )
    .await;
}

#[tokio::test]
async fn file_over_the_size_limit() {
    let bad = stack_with(&[("MAX_FILE_BYTES", "1000")]).await;
    let big = "tide ".repeat(400);
    bad.upload_fails(
        "uploads/acme/big.txt",
        big,
        "too_large",
        "over the limit of 1000 bytes",
    )
    .await;
}

#[tokio::test]
async fn truncated_pdf() {
    let bad = stack().await;
    let pdf = std::fs::read(docpipe_tests::samples_dir().join("lighthouse-handbook.pdf")).unwrap();
    let truncated = pdf[..pdf.len() / 2].to_vec();
    bad.upload_fails(
        "uploads/acme/cut.pdf",
        truncated,
        "unreadable_pdf",
        "PDF cannot be read",
    )
    .await;
}

#[tokio::test]
async fn encrypted_pdf() {
    let bad = stack().await;
    let pdf = include_bytes!("../fixtures/encrypted.pdf").to_vec();
    bad.upload_fails(
        "uploads/acme/locked.pdf",
        pdf,
        "unreadable_pdf",
        "PDF cannot be read",
    )
    .await;
}

#[tokio::test]
async fn pdf_without_a_text_layer() {
    let bad = stack().await;
    let pdf = include_bytes!("../fixtures/no-text-layer.pdf").to_vec();
    bad.upload_fails(
        "uploads/acme/scan.pdf",
        pdf,
        "no_text",
        "no extractable text",
    )
    .await;
}

#[tokio::test]
async fn binary_garbage_named_txt() {
    let bad = stack().await;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    bad.upload_fails(
        "uploads/acme/garbage.txt",
        garbage,
        "binary_content",
        "binary",
    )
    .await;
}

#[tokio::test]
async fn latin1_text() {
    let bad = stack().await;
    bad.upload_fails(
        "uploads/acme/menu.txt",
        b"caf\xe9 cr\xe8me".to_vec(),
        "not_utf8",
        "offset 3",
    )
    .await;
}

/// UTF-16 with a byte-order mark is text we can read: it is decoded, not refused.
#[tokio::test]
async fn utf16_text_with_a_bom_is_decoded() {
    let bad = stack().await;
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "The fog bell rings at the pier head.".encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    bad.stack.put("uploads/acme/utf16.txt", utf16).await;
    bad.stack
        .wait_for_state("uploads/acme/utf16.txt", "complete")
        .await;
    assert!(bad.stack.chunks_of("uploads/acme/utf16.txt").await > 0);
}

#[tokio::test]
async fn html_that_is_all_script() {
    let bad = stack().await;
    let html = "<html><head><script>var tide = 1;</script></head><body><script>go()</script></body></html>";
    bad.upload_fails(
        "uploads/acme/app.html",
        html,
        "no_text",
        "no extractable text",
    )
    .await;
}

/// 10 MB on one line with no whitespace is a blob, not prose: refused
/// before it becomes thousands of meaningless chunks on the bill.
#[tokio::test]
async fn ten_megabytes_on_one_line() {
    let bad = stack().await;
    let line: String = (0..10 * 1024 * 1024 / 8)
        .map(|i| format!("{:08x}", i))
        .collect();
    bad.upload_fails(
        "uploads/acme/line.txt",
        line,
        "unbroken_text",
        "run of 10485760 characters without whitespace",
    )
    .await;
}

#[tokio::test]
async fn chunk_longer_than_the_providers_limit() {
    let (url, _mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        ..MockOpenAiConfig::default()
    })
    .await;
    let bad = stack_with(&[
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test-0123456789"),
        ("OPENAI_BASE_URL", &url),
        ("EMBEDDING_MAX_INPUT_TOKENS", "40"),
    ])
    .await;
    let text = "The keeper trims the wick and winds the clockwork of the lens. ".repeat(20);
    bad.upload_fails(
        "uploads/acme/long.txt",
        text,
        "chunk_too_long",
        "EMBEDDING_MAX_INPUT_TOKENS",
    )
    .await;
}

#[tokio::test]
async fn unsupported_extension() {
    let bad = stack().await;
    bad.upload_fails(
        "uploads/acme/report.rtf",
        "{\\rtf1 hello}",
        "unsupported_type",
        "\"rtf\"",
    )
    .await;
}

#[tokio::test]
async fn key_outside_uploads() {
    let bad = stack().await;
    bad.created_ignored("elsewhere/acme/x.txt").await;
}

#[tokio::test]
async fn key_with_dot_dot_segments() {
    let bad = stack().await;
    let key = "uploads/acme/../globex/x.txt";
    bad.stack.put(key, "sneaky").await;
    bad.created_ignored(key).await;
}

#[tokio::test]
async fn tenant_segment_missing() {
    let bad = stack().await;
    bad.upload_ignored("uploads/x.txt", "no tenant").await;
}

#[tokio::test]
async fn tenant_segment_invalid() {
    let bad = stack().await;
    bad.upload_ignored("uploads/acme corp!/x.txt", "bad tenant")
        .await;
}

#[tokio::test]
async fn event_for_an_object_already_deleted() {
    let bad = stack().await;
    bad.created_ignored("uploads/acme/gone.txt").await;
}

#[tokio::test]
async fn s3_test_event() {
    let bad = stack().await;
    let bucket = &bad.stack.resources.bucket;
    let body = format!(
        r#"{{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T03:00:00.000Z","Bucket":"{bucket}","RequestId":"T","HostId":"H"}}"#
    );
    bad.notification_ignored(&body).await;
}

/// A body no function can read is dead-lettered for an operator, after
/// `MAX_RECEIVE_COUNT` receives; no job is touched.
#[tokio::test]
async fn malformed_sqs_message_body() {
    let bad = stack().await;
    let resources = &bad.stack.resources;
    bad.stack
        .send(&resources.parse.url, "{\"job_id\": 42")
        .await;
    bad.stack
        .send(&resources.uploads.url, "<xml>not json</xml>")
        .await;
    let stack = &bad.stack;
    docpipe_tests::local_aws::wait_until(WITHIN, "both in their DLQs", async || {
        stack.depth(&resources.parse.dlq_url).await == 1
            && stack.depth(&resources.uploads.dlq_url).await == 1
    })
    .await;
    bad.untouched("", 2).await;
}

#[tokio::test]
async fn message_for_an_unknown_job() {
    let bad = stack().await;
    let message =
        r#"{"job_id":"00000000-0000-0000-0000-0000000000aa","correlation_id":"x","stage":"chunk"}"#;
    bad.stack
        .send(&bad.stack.resources.chunk.url, message)
        .await;
    bad.nothing_recorded("").await;
}

#[tokio::test]
async fn embeddings_with_the_wrong_dimension() {
    let (url, mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        ..MockOpenAiConfig::default()
    })
    .await;
    let bad = stack_with(&[
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-test-0123456789"),
        ("OPENAI_BASE_URL", &url),
    ])
    .await;
    // The control was embedded well; from now on every answer is one dimension short.
    mock.faults.set_knobs(FaultKnobs {
        wrong_dims_rate: 1.0,
        ..FaultKnobs::default()
    });
    let text = "Skerry light: the fog signal sounds twice every thirty seconds.";
    bad.upload_fails(
        "uploads/acme/skerry.txt",
        text,
        "embedding_invalid",
        "dimension",
    )
    .await;
}

#[tokio::test]
async fn llamaparse_job_that_never_finishes() {
    let (url, _mock) = spawn_llamaparse(MockLlamaParseConfig {
        processing_delay: Duration::from_secs(3600),
        ..MockLlamaParseConfig::default()
    })
    .await;
    let bad = stack_with(&[
        ("PARSER", "llamaparse"),
        ("SERVICE_MODE", "real"),
        ("LLAMA_CLOUD_API_KEY", "llx-test-0123456789"),
        ("LLAMAPARSE_BASE_URL", &url),
        ("LLAMAPARSE_FIRST_POLL_SECS", "1"),
        ("LLAMAPARSE_MAX_POLL_SECS", "1"),
        ("LLAMAPARSE_JOB_TIMEOUT_SECS", "3"),
    ])
    .await;
    let pdf = std::fs::read(docpipe_tests::samples_dir().join("lighthouse-handbook.pdf")).unwrap();
    bad.upload_fails(
        "uploads/acme/slow.pdf",
        pdf,
        "parse_timeout",
        "LlamaParse did not finish within 3 s",
    )
    .await;
}

/// A `.docx` whose document part unpacks to 129 MiB (a few hundred KB packed).
#[tokio::test]
async fn office_zip_bomb() {
    let bad = stack().await;
    let bomb = docpipe_tests::office::zip_of(&[("word/document.xml", " ".repeat(129 << 20))]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    bad.upload_fails(
        "uploads/acme/bomb.docx",
        bomb,
        "unpacks_too_large",
        "PARSE_MAX_UNPACKED_MB",
    )
    .await;
}

#[tokio::test]
async fn password_protected_office_file() {
    let bad = stack().await;
    // What Office writes for a protected file: an OLE container, not a ZIP.
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.resize(4096, 0);
    bad.upload_fails(
        "uploads/acme/locked.xlsx",
        ole,
        "encrypted_document",
        "password-protected",
    )
    .await;
}

#[tokio::test]
async fn drm_protected_epub() {
    let bad = stack().await;
    let book = docpipe_tests::office::epub(&[("Locked", "Chapter text.")], true);
    bad.upload_fails(
        "uploads/acme/locked.epub",
        book,
        "encrypted_document",
        "password-protected",
    )
    .await;
}

#[tokio::test]
async fn office_file_holding_an_archive() {
    let bad = stack().await;
    let nested = docpipe_tests::office::zip_of(&[
        ("word/document.xml", "<w:document/>"),
        ("word/embeddings/payload.zip", "PK"),
    ]);
    bad.upload_fails(
        "uploads/acme/nested.docx",
        nested,
        "nested_archive",
        "payload.zip",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_lines_and_latin1_csv() {
    let bad = stack().await;
    bad.upload_fails(
        "uploads/acme/events.jsonl",
        "{\"ok\": 1}\n{\"broken\": \n",
        "unreadable_document",
        "line 2",
    )
    .await;
    bad.upload_fails(
        "uploads/acme/crew.csv",
        b"name,town\nJos\xe9,C\xe1diz\n".to_vec(),
        "not_utf8",
        "offset 13",
    )
    .await;
}
