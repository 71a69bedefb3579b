//! `docpipe-rss-bench`: peak memory (RSS) of `docpipe ingest` on one large
//! document: a 50 MB text file and a 300-page PDF, each in a process of its
//! own, so parse and chunk of that one document are what the peak holds.
//! With `--hostile`, on each class of hostile document instead (the peak
//! counts the parse child too: wait4 reports the largest of a process and
//! the children it waited for).
//!
//!   cargo build --profile perf -p docpipe-cli
//!   cargo run --profile perf -p docpipe-benches --bin docpipe-rss-bench -- [--docpipe target/perf/docpipe] [--mb 50] [--pages 300] [--hostile]
//!
//! Needs DATABASE_URL (a Postgres with pgvector). Vectors are 64-dim mock
//! ones (the vector size does not change what parse and chunk hold).

use clap::Parser;
use docpipe_benches::measured;
use docpipe_tests::corpus::{Rng, deep_html, document, flate_pdf, pdf, wide_table};
use docpipe_tests::{ScratchDir, TestDb};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "docpipe-rss-bench")]
struct Args {
    /// The `docpipe` binary to measure.
    #[arg(long, default_value = "target/perf/docpipe")]
    docpipe: PathBuf,
    /// Size of the text file in MB.
    #[arg(long, default_value_t = 50)]
    mb: usize,
    /// Pages of the PDF.
    #[arg(long, default_value_t = 300)]
    pages: usize,
    /// Hostile documents instead (the classes of tests/localstack/hostile_input.rs).
    #[arg(long)]
    hostile: bool,
    /// Text files of `--mb` each handled at once (as a batch of records is;
    /// the deployed functions take 10), instead of one text and one PDF.
    #[arg(long, default_value_t = 1)]
    docs: usize,
}

/// Runs `docpipe ingest file` in a fresh database; returns its peak RSS in
/// bytes, the seconds taken and what it printed.
async fn ingest(docpipe: &Path, file: &Path, at_once: usize) -> (u64, f64, String) {
    const DIMS: [(&str, &str); 1] = [("EMBEDDING_DIMS", "64")];
    let test_db = TestDb::migrated(&DIMS).await;
    let run = measured(
        std::process::Command::new(docpipe)
            .args(["ingest", "--tenant", "rss", "--defer-index"])
            .arg(file)
            .env("DATABASE_URL", &test_db.url)
            .env("DOCPIPE_BLOB_DIR", &test_db.blob_dir)
            // The CLI works on as many documents at once as it has connections.
            .env("DB_POOL_SIZE", at_once.to_string())
            .envs(DIMS),
    );
    // 1: a document failed, which the summary says.
    assert!(
        run.exit_code.is_some_and(|code| code <= 1),
        "docpipe ingest failed: {}",
        run.stdout
    );
    (run.peak_rss_bytes, run.seconds, run.stdout)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let scratch = ScratchDir::new();
    let mut rng = Rng(0x5eed_d0c5);
    let documents = if args.hostile {
        vec![
            (
                "10 000 nested blockquotes".to_string(),
                scratch.write("deep.html", deep_html("blockquote", 10_000)),
            ),
            (
                "200 000 nested divs".to_string(),
                scratch.write("divs.html", deep_html("div", 200_000)),
            ),
            (
                "a table row of 2 000 cells".to_string(),
                scratch.write("wide.html", wide_table(2000)),
            ),
            (
                "PDF stream inflating to 1 GiB".to_string(),
                scratch.write("bomb.pdf", flate_pdf(1 << 30, 1, "bomb")),
            ),
            (
                "3 000 PDF pages sharing a 60 KB stream".to_string(),
                scratch.write("pages.pdf", flate_pdf(60_000, 3000, "the same words")),
            ),
        ]
    } else if args.docs > 1 {
        for n in 0..args.docs {
            let text = document(&mut rng, args.mb * 1_000_000, false, n);
            scratch.write(&format!("batch/{n}.txt"), text);
        }
        let name = format!("{} text files of {} MB at once", args.docs, args.mb);
        vec![(name, scratch.0.join("batch"))]
    } else {
        let text = document(&mut rng, args.mb * 1_000_000, false, 0);
        vec![
            (
                format!("{} MB text", args.mb),
                scratch.write("large.txt", text),
            ),
            (
                format!("{}-page PDF", args.pages),
                scratch.write("large.pdf", pdf(&mut rng, args.pages)),
            ),
        ]
    };
    println!("docpipe-rss-bench: {}", args.docpipe.display());
    println!("| document | size | peak RSS | time | docpipe says |");
    println!("|---|---|---|---|---|");
    for (name, file) in documents {
        let size = match std::fs::read_dir(&file) {
            Ok(files) => files.map(|f| f.unwrap().metadata().unwrap().len()).sum(),
            Err(_) => std::fs::metadata(&file).unwrap().len(),
        };
        let (rss, seconds, stdout) = ingest(&args.docpipe, &file, args.docs).await;
        println!(
            "| {name} | {:.1} MB | {:.1} MB | {seconds:.1} s | {} |",
            size as f64 / 1e6,
            rss as f64 / 1e6,
            stdout
                .lines()
                .find(|l| l.trim_start().starts_with("failed "))
                .or_else(|| stdout.lines().find(|l| l.starts_with("new chunks")))
                .unwrap_or_default()
                .trim()
        );
    }
}
