//! `docpipe-bench`: end-to-end chunks/s of the in-process pipeline (the same
//! path as `docpipe ingest`) over a generated corpus, in a scratch database,
//! against the machine's raw limit: a binary COPY of the same rows into an
//! unindexed table.
//!
//!   cargo run --release -p docpipe-tests --bin docpipe-bench -- [--mb 10] [--docs 300] [--dims 1536] [--corpus DIR] [--defer-index]
//!
//! Needs DATABASE_URL (a Postgres with pgvector); other settings as for docpipe.

use clap::Parser;
use docpipe_shared::local::{LocalPipeline, upload_keys};
use docpipe_shared::{JobState, bulk, db, status};
use docpipe_tests::corpus::generate;
use docpipe_tests::{ScratchDir, TestDb};
use pgvector::Vector;
use std::path::PathBuf;
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// End-to-end chunks/s of the in-process pipeline over a generated (or given) corpus.
#[derive(Parser)]
#[command(name = "docpipe-bench")]
struct Args {
    /// Size of the generated corpus in MB.
    #[arg(long, default_value_t = 10.0)]
    mb: f64,
    /// Documents in the generated corpus (a third of them markdown).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    docs: u32,
    /// Vector size of the scratch database and the mock embedder.
    #[arg(long, default_value_t = 1536, value_parser = clap::value_parser!(u16).range(1..=2000))]
    dims: u16,
    /// Ingest this folder instead of generating a corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// `CHUNK_MIN_TOKENS` (default: an eighth of `CHUNK_TOKENS`).
    #[arg(long)]
    chunk_min_tokens: Option<usize>,
    /// As `docpipe ingest --defer-index`: drop the HNSW index, build it after.
    #[arg(long)]
    defer_index: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dims = args.dims.to_string();
    let scratch = ScratchDir::new();
    let corpus = match args.corpus {
        Some(dir) => dir,
        None => {
            generate(
                &scratch,
                (args.mb * 1024.0 * 1024.0) as usize,
                args.docs as usize,
            );
            scratch.0.clone()
        }
    };
    let vars = [("EMBEDDING_DIMS", dims.as_str())];
    let test_db = TestDb::migrated(&vars).await;
    let min_tokens = args.chunk_min_tokens.map(|n| n.to_string());
    let chunking = min_tokens.as_deref().map(|n| ("CHUNK_MIN_TOKENS", n));
    let config = test_db.config(&[&vars[..], chunking.as_slice()].concat());
    let pool = db::connect(&config).await.expect("connect");
    let mut local = LocalPipeline::new(&config, pool.clone()).expect("pipeline");
    let files = upload_keys("bench", &[corpus]).expect("corpus");
    let bytes: u64 = files
        .iter()
        .map(|(_, f)| std::fs::metadata(f).unwrap().len())
        .sum();
    for (key, file) in &files {
        local.upload(key, file).await.expect("upload");
    }

    let started = Instant::now();
    if args.defer_index {
        bulk::defer_search_index(&mut pool.get().await.unwrap())
            .await
            .unwrap();
    }
    let run = local
        .run(files.iter().map(|(k, _)| k.clone()).collect(), |_| {})
        .await;
    let loaded = started.elapsed().as_secs_f64();
    bulk::rebuild_deferred_indexes(&mut pool.get().await.unwrap())
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();

    let job_ids: Vec<_> = run.ingested.iter().map(|(_, i)| i.job_id).collect();
    let outcomes = status::outcomes(&pool.get().await.unwrap(), &job_ids)
        .await
        .unwrap();
    let complete = outcomes
        .iter()
        .filter(|o| o.state == JobState::Complete.as_str())
        .count();
    let chunks: i64 = outcomes
        .iter()
        .map(|o| i64::from(o.chunk_count.unwrap_or(0)))
        .sum();
    let tokens: i64 = outcomes.iter().map(|o| o.token_count.unwrap_or(0)).sum();
    println!(
        "docpipe-bench: {} documents ({complete} complete), {:.1} MB, {chunks} chunks, {tokens} tokens, dims {dims}, \
         embedder {}, {} cores",
        files.len(),
        bytes as f64 / 1e6,
        config.embedding.model,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "  {seconds:.2} s: {:.0} chunks/s, {:.2} MB/s, {:.1} documents/s",
        chunks as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        files.len() as f64 / seconds
    );
    if args.defer_index {
        println!(
            "  of which loading {loaded:.2} s ({:.0} chunks/s), HNSW build {:.2} s",
            chunks as f64 / loaded,
            seconds - loaded
        );
    }
    let raw = raw_copy(&test_db.client().await).await;
    println!(
        "  raw limit: binary COPY of the same {} rows into an unindexed table {:.2} s: {:.0} rows/s; \
         docpipe end to end {:.1} % of it{}",
        raw.rows,
        raw.seconds,
        raw.rows as f64 / raw.seconds,
        100.0 * raw.seconds / seconds,
        if args.defer_index {
            format!(", loading alone {:.1} %", 100.0 * raw.seconds / loaded)
        } else {
            String::new()
        }
    );
    if complete != files.len() {
        eprintln!(
            "docpipe-bench: {} documents did not complete",
            files.len() - complete
        );
        std::process::exit(1);
    }
}

struct RawCopy {
    rows: u64,
    seconds: f64,
}

/// Times a binary COPY of every searchable row (read into memory first) into
/// a table like `document_chunks` but without its indexes and constraints.
async fn raw_copy(client: &tokio_postgres::Client) -> RawCopy {
    client
        .batch_execute(
            "CREATE TABLE raw_copy (LIKE upload_pipeline.document_chunks INCLUDING DEFAULTS)",
        )
        .await
        .unwrap();
    let select = "SELECT chunk_id, document_id, job_id, tenant, source_key, chunk_index, text, \
                  token_count, char_start, char_end, model, embedding FROM upload_pipeline.document_chunks";
    let types: Vec<Type> = client
        .prepare(select)
        .await
        .unwrap()
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let rows = client.query(select, &[]).await.unwrap();
    let started = Instant::now();
    let sink = client
        .copy_in("COPY raw_copy FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for row in &rows {
        let values: Vec<Box<dyn ToSql + Sync>> = vec![
            Box::new(row.get::<_, Uuid>(0)),
            Box::new(row.get::<_, Uuid>(1)),
            Box::new(row.get::<_, Uuid>(2)),
            Box::new(row.get::<_, String>(3)),
            Box::new(row.get::<_, String>(4)),
            Box::new(row.get::<_, i32>(5)),
            Box::new(row.get::<_, String>(6)),
            Box::new(row.get::<_, i32>(7)),
            Box::new(row.get::<_, i32>(8)),
            Box::new(row.get::<_, i32>(9)),
            Box::new(row.get::<_, String>(10)),
            Box::new(row.get::<_, Vector>(11)),
        ];
        writer
            .as_mut()
            .write(
                &values
                    .iter()
                    .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
    }
    let copied = writer.finish().await.unwrap();
    RawCopy {
        rows: copied,
        seconds: started.elapsed().as_secs_f64(),
    }
}
