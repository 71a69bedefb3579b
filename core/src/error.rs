//! Errors carry their class from where they arise: a [`Rejection`] is final
//! (the document's fault, a provider's refusal, or a job given up on) and
//! fails the job; anything else is transient and retried.

use std::fmt;

/// The extensions read, as `unsupported_type` lists them: the formats'
/// table ([`crate::domain::format::EXTENSIONS`]) written out, which a test
/// holds to the table (errors sit below the domain and do not read it).
pub const SUPPORTED_EXTENSIONS: &str = ".txt, .text, .md, .markdown, .html, .htm, .pdf, .docx, \
                                        .pptx, .xlsx, .xls, .ods, .csv, .tsv, .json, .jsonl, .epub";

/// Why a job ended without its document being searchable, for good: its
/// content, a provider's refusal, or the pipeline giving up on it (retries
/// used up, stuck, the object gone). Recorded on the job as `error_code`
/// (stable, for machines) and `error_message` (readable, for people).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    #[error("unsupported file type {extension:?}; supported: {SUPPORTED_EXTENSIONS}")]
    UnsupportedType { extension: String },
    #[error("file is empty (0 bytes)")]
    EmptyFile,
    #[error("file is {size} bytes, over the limit of {limit} bytes (MAX_FILE_BYTES)")]
    TooLarge { size: u64, limit: u64 },
    #[error("file is not valid UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("file is binary, not text (NUL byte at offset {offset})")]
    Binary { offset: usize },
    #[error("PDF cannot be read: {detail}")]
    UnreadablePdf { detail: String },
    #[error("document has no extractable text")]
    NoText,
    #[error("{format} file cannot be read: {detail}")]
    UnreadableDocument { format: String, detail: String },
    #[error("document is encrypted or password-protected")]
    EncryptedDocument,
    #[error(
        "archive unpacks to more than {limit_mb} MB (PARSE_MAX_UNPACKED_MB): a compression bomb?"
    )]
    UnpacksTooLarge { limit_mb: u64 },
    #[error("archive holds {entries} files, over the limit of {limit} (PARSE_MAX_ENTRIES)")]
    TooManyEntries { entries: usize, limit: usize },
    #[error("archive holds another archive ({name:?}), which is not unpacked")]
    NestedArchive { name: String },
    #[error(
        "text has a run of {chars} characters without whitespace (at most {limit}): \
         not prose to chunk and embed (an encoded blob?)"
    )]
    UnbrokenText { chars: usize, limit: usize },
    #[error(
        "document gives over {limit} characters of text ({chars} so far; PARSE_MAX_CHARS, \
         PARSE_CHARS_PER_BYTE)"
    )]
    TooMuchText { chars: usize, limit: usize },
    #[error("elements nest {depth} deep, over the limit of {limit} (PARSE_MAX_DEPTH)")]
    TooDeep { depth: usize, limit: usize },
    #[error("document has {pages} pages, over the limit of {limit} (PARSE_MAX_PAGES)")]
    TooManyPages { pages: usize, limit: usize },
    #[error("parsing took longer than {secs} s (PARSE_TIMEOUT_SECS)")]
    ParserTimedOut { secs: u64 },
    #[error("parsing needed more than {limit_mb} MB of memory (PARSE_MEMORY_MB)")]
    ParseMemory { limit_mb: u64 },
    #[error("the parser stopped on this document: {detail}")]
    ParserCrashed { detail: String },
    #[error("object key {key:?} is not of the form uploads/<tenant>/<path>: {detail}")]
    InvalidKey { key: String, detail: String },
    #[error("object {key:?} no longer exists (deleted before it was processed)")]
    ObjectMissing { key: String },
    #[error("embedding provider rejected the request: {detail}")]
    EmbeddingRejected { detail: String },
    #[error("embedding provider returned an unusable response: {detail}")]
    EmbeddingInvalid { detail: String },
    #[error("rerank service rejected the request: {detail}")]
    RerankRejected { detail: String },
    #[error(
        "a chunk of {tokens} tokens is over the embedding model's limit of {limit} tokens per input \
         (EMBEDDING_MAX_INPUT_TOKENS, or a local model's window); lower CHUNK_TOKENS"
    )]
    ChunkTooLong { tokens: u32, limit: u32 },
    #[error("LlamaParse could not parse the document: {detail}")]
    ParseFailed { detail: String },
    #[error("LlamaParse did not finish within {secs} s (LLAMAPARSE_JOB_TIMEOUT_SECS)")]
    ParseTimedOut { secs: u64 },
    #[error("the database refused the document's data: {detail}")]
    DataRefused { detail: String },
    #[error("processing stopped with an internal error on this document (a bug): {detail}")]
    StagePanicked { detail: String },
    #[error("gave up after {attempts} attempts; last error: {last_error}")]
    RetriesExhausted { attempts: u32, last_error: String },
    #[error("stuck in {state}: no progress after the sweeper resumed it {resumes} times")]
    Stuck { state: String, resumes: u32 },
    #[error("the S3 Inventory report cannot be a sync's listing: {detail}")]
    BadInventory { detail: String },
}

impl Rejection {
    /// Stable machine-readable code, stored in `upload_jobs.error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnsupportedType { .. } => "unsupported_type",
            Rejection::EmptyFile => "empty_file",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::NotUtf8 { .. } => "not_utf8",
            Rejection::Binary { .. } => "binary_content",
            Rejection::UnreadablePdf { .. } => "unreadable_pdf",
            Rejection::NoText => "no_text",
            Rejection::UnreadableDocument { .. } => "unreadable_document",
            Rejection::EncryptedDocument => "encrypted_document",
            Rejection::UnpacksTooLarge { .. } => "unpacks_too_large",
            Rejection::TooManyEntries { .. } => "too_many_entries",
            Rejection::NestedArchive { .. } => "nested_archive",
            Rejection::UnbrokenText { .. } => "unbroken_text",
            Rejection::TooMuchText { .. } => "too_much_text",
            Rejection::TooDeep { .. } => "too_deep",
            Rejection::TooManyPages { .. } => "too_many_pages",
            Rejection::ParserTimedOut { .. } => "parse_timeout",
            Rejection::ParseMemory { .. } => "parse_memory",
            Rejection::ParserCrashed { .. } => "parse_crashed",
            Rejection::InvalidKey { .. } => "invalid_key",
            Rejection::ObjectMissing { .. } => "object_missing",
            Rejection::EmbeddingRejected { .. } => "embedding_rejected",
            Rejection::EmbeddingInvalid { .. } => "embedding_invalid",
            Rejection::RerankRejected { .. } => "rerank_rejected",
            Rejection::ChunkTooLong { .. } => "chunk_too_long",
            Rejection::ParseFailed { .. } => "parse_failed",
            Rejection::ParseTimedOut { .. } => "parse_timeout",
            Rejection::DataRefused { .. } => "data_refused",
            Rejection::StagePanicked { .. } => "stage_panicked",
            Rejection::RetriesExhausted { .. } => "retries_exhausted",
            Rejection::Stuck { .. } => "stuck",
            Rejection::BadInventory { .. } => "bad_inventory",
        }
    }

    /// What the tenant is told. A provider's own words (redacted as they
    /// are) are the operators' alone: the tenant gets what failed and its
    /// code, the operators the words ([`Rejection::operator_detail`]).
    pub fn tenant_message(&self) -> String {
        let service = match self {
            Rejection::EmbeddingRejected { .. } => "the embedding provider refused the request",
            Rejection::RerankRejected { .. } => "the rerank service refused the request",
            Rejection::ParseFailed { .. } => "LlamaParse could not parse the document",
            Rejection::RetriesExhausted { attempts, .. } => {
                return format!(
                    "gave up after {attempts} attempts at a step that kept failing \
                     (a service unavailable or slow); the operators have the last error"
                );
            }
            other => return other.to_string(),
        };
        format!("{service}; the operators have its answer")
    }

    /// The whole reason, a provider's words included, for operators only;
    /// `None` where the tenant's message says it all.
    pub fn operator_detail(&self) -> Option<String> {
        let message = self.to_string();
        (message != self.tenant_message()).then_some(message)
    }
}

/// An error from a pipeline step, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is bad: retrying cannot help. The job fails with this reason.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Something outside the document failed (network, database, provider
    /// overload): retry later.
    #[error("transient: {0}")]
    Transient(String),
    /// Spending is stopped (budget or request cap): the job waits, untouched,
    /// and is resumed when spending may go on.
    #[error("waiting: {0}")]
    Waiting(Wait),
}

/// Why a job waits, and until when.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Wait {
    pub reason: String,
    pub until: std::time::SystemTime,
}

impl Error {
    pub fn transient(context: &str, err: impl fmt::Display) -> Self {
        Error::Transient(format!("{context}: {err}"))
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_))
    }

    /// A short name for metrics: the rejection's code, `waiting`, or `transient`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Rejected(reason) => reason.code(),
            Error::Waiting(_) => "waiting",
            _ => "transient",
        }
    }
}

/// SQLSTATE classes that no retry can fix.
const DATA_FAULT_CLASSES: [&str; 2] = ["22", "54"];

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        // Show the server's message (it names the constraint or column), not just "db error".
        match err.as_db_error() {
            // Data exceptions (22: a NUL in text, a bad encoding, a value out
            // of range) and program limits (54: a row or value too large) are
            // the data's fault: the same statement would fail every time.
            Some(db) if DATA_FAULT_CLASSES.contains(&&db.code().code()[..2]) => {
                Error::Rejected(Rejection::DataRefused {
                    detail: format!("{}: {}", db.code().code(), db.message()),
                })
            }
            Some(db) => {
                Error::Transient(format!("database: {}: {}", db.code().code(), db.message()))
            }
            None => Error::transient("database", err),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Error::transient("database pool", err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::transient("i/o", err)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A problem with configuration or the environment found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set")]
    Missing { name: String },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// A setting that does not read as its type (the message names it).
    #[error("{0}")]
    Unreadable(String),
    #[error(
        "EMBEDDING_DIMS={configured} but the database's vector columns have {in_table} dimensions; \
         set EMBEDDING_DIMS={in_table}, or move to the new size with a model change \
         (NEXT_EMBEDDING_*: docs/operate/runbook.md, \"Changing the embedding model\")"
    )]
    DimensionMismatch { configured: usize, in_table: usize },
    #[error("database schema is not migrated (run `docpipe migrate`): {0}")]
    NotMigrated(String),
    #[error("database: {0}")]
    Database(String),
}

impl From<tokio_postgres::Error> for ConfigError {
    fn from(err: tokio_postgres::Error) -> Self {
        ConfigError::Database(Error::from(err).to_string())
    }
}

/// What a caught panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
