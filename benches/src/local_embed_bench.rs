//! `docpipe-local-embed-bench`: chunks/s and peak RSS of the local embedding
//! provider (ONNX Runtime, in-process) against sentence-transformers (PyTorch), on
//! the same chunks, on this machine, in one run, rounds alternating.
//!
//!   cargo run --profile perf -p docpipe-benches --bin docpipe-local-embed-bench -- \
//!       --python <venv with sentence-transformers>/bin/python [--chunks 1000] [--rounds 3]
//!
//! The chunks are the bench corpus's (`docpipe_tests::corpus`), cut by the
//! chunker in the model's own tokens at the default settings (so at most 254
//! tokens each). Each engine runs in a process of its own, which loads the
//! model, embeds every chunk in batches of `--batch` (8) with all cores, and reports the
//! embedding time (not the load) and its peak RSS (the kernel's high-water
//! mark, model load included).

use clap::Parser;
use docpipe_benches::{median, spread};
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::settings::ChunkingSettings;
use docpipe_ingest::chunking::{Chunker, TokenCount};
use docpipe_ingest::embedding::local::{LocalEmbedder, ModelTokenizer};
use docpipe_ingest::parsing::layout::Layout;
use docpipe_tests::corpus::{Rng, document};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "docpipe-local-embed-bench")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    chunks: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A Python with sentence-transformers installed.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The model directory (by default scripts/fetch-model's).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Texts in one forward pass, for both engines (docpipe's own is 8).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Internal: embed the chunks in this file and report, as one engine.
    #[arg(long, hide = true)]
    worker: Option<PathBuf>,
}

/// The first `count` chunks of the generated corpus, in the model's tokens.
fn chunks(model: &Path, count: usize) -> Vec<String> {
    let tokens = TokenCount::Model(ModelTokenizer::load(model).unwrap());
    let chunker = Chunker::new(&ChunkingSettings::default(), tokens).unwrap();
    let mut rng = Rng(0x5eed_d0c5);
    let mut out = Vec::new();
    for doc in 0.. {
        let text = document(&mut rng, 20_000, doc % 3 == 0, doc);
        for chunk in chunker.chunk(&text, doc % 3 == 0, &Layout::default()) {
            out.push(chunk.text(&text).to_string());
            if out.len() == count {
                return out;
            }
        }
    }
    unreachable!()
}

/// This process's peak RSS in MB (VmHWM).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

async fn worker(model: &Path, file: &Path, batch: usize) {
    let texts: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let embedder = LocalEmbedder::load("bench", model, threads, batch).unwrap();
    let inputs: Vec<EmbedInput> = texts
        .iter()
        .map(|text| EmbedInput { text, tokens: 0 })
        .collect();
    let started = Instant::now();
    let embeddings = embedder.embed(&inputs).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(embeddings.vectors.len(), texts.len());
    println!(
        "{}",
        json!({"chunks": texts.len(), "secs": secs, "peak_rss_mb": peak_rss_mb(), "tokens": embeddings.billed_tokens})
    );
}

fn run(command: &mut std::process::Command) -> Value {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let model = args.model.unwrap_or_else(docpipe_tests::local_model_dir);
    if let Some(file) = &args.worker {
        return worker(&model, file, args.batch).await;
    }
    let texts = chunks(&model, args.chunks);
    let file = docpipe_tests::ScratchDir::new();
    let lines: String = texts.iter().map(|t| json!(t).to_string() + "\n").collect();
    let path = file.write("chunks.jsonl", lines);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/st-embed.py");
    let mut engines: Vec<(&str, Vec<f64>, Vec<f64>)> =
        vec![("docpipe local (ONNX Runtime)", vec![], vec![])];
    if args.python.is_some() {
        engines.push(("sentence-transformers", vec![], vec![]));
    }
    let mut tokens = 0;
    for round in 0..args.rounds {
        for (name, rates, rss) in &mut engines {
            let report = if name.starts_with("docpipe") {
                run(std::process::Command::new(std::env::current_exe().unwrap())
                    .arg("--model")
                    .arg(&model)
                    .args(["--batch", &args.batch.to_string(), "--worker"])
                    .arg(&path))
            } else {
                run(std::process::Command::new(args.python.as_ref().unwrap())
                    .args([
                        script,
                        &model.display().to_string(),
                        &path.display().to_string(),
                    ])
                    .arg(args.batch.to_string())
                    .env("HF_HUB_OFFLINE", "1"))
            };
            tokens = tokens.max(report["tokens"].as_u64().unwrap_or(0));
            let rate = report["chunks"].as_f64().unwrap() / report["secs"].as_f64().unwrap();
            eprintln!(
                "round {round}: {name}: {rate:.1} chunks/s, peak RSS {:.0} MB",
                report["peak_rss_mb"]
            );
            rates.push(rate);
            rss.push(report["peak_rss_mb"].as_f64().unwrap());
        }
    }
    println!(
        "{} chunks ({tokens} model tokens, {:.0} a chunk), batches of {}, {} rounds, {} cores",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        args.batch,
        args.rounds,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("| engine | chunks/s (min / median / max) | peak RSS MB (min / median / max) |");
    println!("|---|---|---|");
    for (name, rates, rss) in &engines {
        println!("| {name} | {} | {} |", spread(rates, 1), spread(rss, 1));
    }
    if engines.len() == 2 {
        println!(
            "docpipe / sentence-transformers: {:.2}x the chunks/s, {:.2}x the peak RSS (medians)",
            median(&engines[0].1) / median(&engines[1].1),
            median(&engines[0].2) / median(&engines[1].2)
        );
    }
}
