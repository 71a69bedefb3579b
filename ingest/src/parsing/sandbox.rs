//! Untrusted documents are parsed in a child process that the OS bounds:
//! the same executable, started again with [`CHILD_ENV`] set, which puts
//! itself under `RLIMIT_AS` (memory) and `RLIMIT_CPU` before it reads the
//! document, killed at a wall-clock deadline or
//! once its text passes the document's bound. A hostile file (a compression
//! bomb, markup nested ten thousand deep) then costs at most its limits and
//! fails alone with a reason, and the process handling other tenants'
//! documents survives it: a thread cannot be stopped or have its memory
//! bounded, a child process can. Why not in-process limits alone: the PDF and
//! HTML crates allocate and loop inside calls we cannot interrupt.
//!
//! Every binary that parses calls [`serve_if_child`] first thing in `main`.

use super::layout::Layout;
use super::{Format, OutputBounds, ParseLimits, ParsedDocument};
use bytes::Bytes;
use docpipe_core::error::{Error, Rejection, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Set in a parse child's environment to its limits, `<memory bytes> <CPU
/// seconds>`: it sets them on itself, parses its stdin and exits.
pub const CHILD_ENV: &str = "DOCPIPE_PARSE_CHILD";

/// Whether this executable serves as a parse child ([`serve_if_child`] ran).
static SERVES_CHILDREN: AtomicBool = AtomicBool::new(false);

/// In a parse child, parses the document on stdin, writes the answer to
/// stdout and exits; otherwise notes that this executable can be one.
pub fn serve_if_child() {
    let Some(limits) = std::env::var_os(CHILD_ENV) else {
        SERVES_CHILDREN.store(true, Ordering::Relaxed);
        return;
    };
    // The limits are in force before a byte of the document is read.
    std::process::exit(
        match limit_this_process(&limits).and_then(|()| serve_child()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("parse child: {e}");
                2
            }
        },
    )
}

/// The first line a parent writes to its child; the document's bytes follow.
#[derive(Serialize, Deserialize)]
struct Request {
    key: String,
    bounds: OutputBounds,
}

/// The first line a child writes back; on success, the text follows.
#[derive(Serialize, Deserialize)]
enum Answer {
    Parsed {
        format: Format,
        pages: Option<u32>,
        layout: Layout,
    },
    Rejected(Rejection),
}

fn serve_child() -> std::io::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut header = String::new();
    stdin.read_line(&mut header)?;
    let request: Request = serde_json::from_str(&header)?;
    let mut bytes = Vec::new();
    stdin.read_to_end(&mut bytes)?;
    let parsed = std::panic::catch_unwind(|| {
        super::parse(&request.key, Bytes::from(bytes), &request.bounds)
    })
    .unwrap_or_else(|panic| {
        Err(Rejection::ParserCrashed {
            detail: docpipe_core::error::panic_message(panic.as_ref()),
        })
    });
    let mut stdout = std::io::stdout().lock();
    let (answer, text) = match parsed {
        Ok(document) => (
            Answer::Parsed {
                format: document.format,
                pages: document.pages,
                layout: document.layout,
            },
            document.text,
        ),
        Err(reason) => (Answer::Rejected(reason), String::new()),
    };
    serde_json::to_writer(&mut stdout, &answer)?;
    stdout.write_all(b"\n")?;
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Runs parses in child processes within [`ParseLimits`], a bounded number
/// at once.
pub struct ParseSandbox {
    limits: ParseLimits,
    /// The executable started as a child; `None` parses in this process,
    /// bounded in output only (a library user that serves no children).
    executable: Option<PathBuf>,
    running: Semaphore,
}

/// The most a child's header line may take: ~2 MB of headings
/// ([`super::layout::MAX_HEADINGS`]), ~0.5 MB of pages, row blocks.
const LAYOUT_BYTES: u64 = 16 << 20;

/// The most of a child's error output kept to explain how it ended.
const STDERR_KEPT: usize = 4096;

impl ParseSandbox {
    /// Children are `executable` (`PARSE_SANDBOX_EXE`), or this executable
    /// if it serves them.
    pub fn new(limits: ParseLimits, executable: Option<PathBuf>) -> ParseSandbox {
        let executable = executable.or_else(|| {
            SERVES_CHILDREN
                .load(Ordering::Relaxed)
                .then(|| std::env::current_exe().ok())
                .flatten()
        });
        ParseSandbox {
            running: Semaphore::new(limits.concurrency.max(1)),
            limits,
            executable,
        }
    }

    pub fn limits(&self) -> &ParseLimits {
        &self.limits
    }

    /// The text of the document at `key`, whose bytes `read` fetches once a
    /// parse slot is free (so a process holds at most `concurrency`
    /// documents). The document's faults (and its limits) are rejections;
    /// failing to start a child is transient.
    pub async fn parse(
        &self,
        key: &str,
        read: impl Future<Output = Result<Bytes>>,
    ) -> Result<ParsedDocument> {
        let format = Format::from_key(key)?;
        let _turn = self
            .running
            .acquire()
            .await
            .map_err(|e| Error::transient("parse slots", e))?;
        let bytes = read.await?;
        let bounds = self.limits.bounds(format, bytes.len());
        let Some(executable) = &self.executable else {
            // Said once, when a document is first parsed so: processes that
            // never parse (embed, the API) have nothing to warn about.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "documents are parsed in-process, without time or memory limits: \
                     call parsing::sandbox::serve_if_child in main or set PARSE_SANDBOX_EXE"
                )
            });
            let key = key.to_string();
            return tokio::task::spawn_blocking(move || super::parse(&key, bytes, &bounds))
                .await
                .map_err(|e| Error::transient("parse thread", e))?
                .map_err(Error::from);
        };
        self.in_child(executable, key, bytes, bounds).await
    }

    async fn in_child(
        &self,
        executable: &PathBuf,
        key: &str,
        bytes: Bytes,
        bounds: OutputBounds,
    ) -> Result<ParsedDocument> {
        let limits = &self.limits;
        // One wall deadline for the child, from its start to its exit.
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let timed_out = || {
            Err(Rejection::ParserTimedOut {
                secs: limits.timeout.as_secs(),
            }
            .into())
        };
        // The child sets its limits itself rather than in a `pre_exec` hook:
        // a hook makes the spawn a fork, which copies this process's page
        // tables for every document (a third of a bulk load's CPU), where
        // without one it is a `posix_spawn`.
        let cpu_secs = limits.timeout.as_secs() + 1;
        let mut command = tokio::process::Command::new(executable);
        command
            // The child needs nothing of ours: no secrets, no settings.
            .env_clear()
            .env(CHILD_ENV, format!("{} {cpu_secs}", limits.memory_bytes))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Error::transient("starting the parse child", e))?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::Transient("parse child without pipes".into()));
        };
        // Read to the end, keeping the first few KB: a child never blocks on it.
        let errors = tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buffer).await {
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let mut header = serde_json::to_vec(&Request {
            key: key.to_string(),
            bounds,
        })
        .map_err(|e| Error::transient("parse request", e))?;
        header.push(b'\n');
        // A header line (its layout bounded by the pages, headings and row
        // blocks a text may mark), then at most four bytes a character.
        let most = LAYOUT_BYTES + 4 * bounds.max_chars as u64;
        let feed = async move {
            // A child that stops early (its answer is already out) closes its
            // stdin: not an error of ours.
            let _ = stdin.write_all(&header).await;
            let _ = stdin.write_all(&bytes).await;
        };
        let read = async move {
            let mut out = Vec::new();
            let read = stdout.take(most + 1).read_to_end(&mut out).await;
            read.map(|_| out)
        };
        let exchange = async { tokio::join!(feed, read).1 };
        let output = match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => {
                let _ = child.kill().await;
                return timed_out();
            }
            Ok(read) => read.map_err(|e| Error::transient("reading the parse child", e))?,
        };
        if output.len() as u64 > most {
            let _ = child.kill().await;
            return Err(Rejection::TooMuchText {
                chars: bounds.max_chars + 1,
                limit: bounds.max_chars,
            }
            .into());
        }
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => status.map_err(|e| Error::transient("waiting for the parse child", e))?,
            Err(_) => {
                let _ = child.kill().await;
                return timed_out();
            }
        };
        let errors = errors.await.unwrap_or_default();
        if !status.success() {
            return Err(self.ended_badly(status, &errors).into());
        }
        answer(output)
    }

    /// Why a child ended without an answer: its limits, or a crash.
    fn ended_badly(&self, status: std::process::ExitStatus, errors: &str) -> Rejection {
        use std::os::unix::process::ExitStatusExt;
        tracing::warn!(?status, errors, "parse child failed");
        let limits = &self.limits;
        if errors.contains("memory allocation") || errors.contains("out of memory") {
            return Rejection::ParseMemory {
                limit_mb: limits.memory_bytes >> 20,
            };
        }
        match status.signal() {
            Some(libc::SIGXCPU | libc::SIGKILL) => Rejection::ParserTimedOut {
                secs: limits.timeout.as_secs(),
            },
            Some(signal) => Rejection::ParserCrashed {
                detail: format!("ended by signal {signal}"),
            },
            None => Rejection::ParserCrashed {
                detail: format!("exit status {}", status.code().unwrap_or(-1)),
            },
        }
    }
}

/// The document from a child's output.
fn answer(mut output: Vec<u8>) -> Result<ParsedDocument> {
    let malformed = |detail: String| Error::Transient(format!("parse child's answer: {detail}"));
    let newline = output
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| malformed("no header line".into()))?;
    let answer: Answer =
        serde_json::from_slice(&output[..newline]).map_err(|e| malformed(e.to_string()))?;
    match answer {
        Answer::Rejected(reason) => Err(reason.into()),
        Answer::Parsed {
            format,
            pages,
            layout,
        } => {
            output.drain(..=newline);
            let text = String::from_utf8(output).map_err(|e| malformed(e.to_string()))?;
            Ok(ParsedDocument {
                format,
                text,
                pages,
                layout,
            })
        }
    }
}

/// A parse child's limits on itself, from its [`CHILD_ENV`]: memory and CPU
/// time as given, and no core dumps. A child that cannot set them all
/// parses nothing.
fn limit_this_process(limits: &std::ffi::OsStr) -> std::io::Result<()> {
    let unreadable = || std::io::Error::other(format!("unreadable limits {limits:?}"));
    let (memory, cpu_secs) = limits
        .to_str()
        .and_then(|l| l.split_once(' '))
        .ok_or_else(unreadable)?;
    let memory = memory.parse().map_err(|_| unreadable())?;
    let cpu_secs = cpu_secs.parse().map_err(|_| unreadable())?;
    set_limit(libc::RLIMIT_AS, memory)?;
    set_limit(libc::RLIMIT_CPU, cpu_secs)?;
    set_limit(libc::RLIMIT_CORE, 0)
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a plain system call on a value we own.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
