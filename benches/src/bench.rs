//! `docpipe-bench`: end-to-end chunks/s of the in-process pipeline (the same
//! path as `docpipe ingest`) over a generated corpus, in a scratch database,
//! against the machine's raw limit: a binary COPY of the same rows into an
//! unindexed table.
//!
//!   cargo run --profile perf -p docpipe-benches --bin docpipe-bench -- [--mb 10] [--docs 300] [--dims 1536] [--corpus DIR] [--defer-index] [--via in-process|local-stack] [--light-beside-burst ROUNDS]
//!
//! Needs DATABASE_URL (a Postgres with pgvector), and for `--via local-stack`
//! LocalStack (`scripts/localstack up`); other settings as for docpipe.

use clap::Parser;
use clap::ValueEnum;
use docpipe_core::db;
use docpipe_core::db::indexes;
use docpipe_core::settings::{DatabaseSettings, StageSettings};
use docpipe_ingest::drivers::local::{LocalPipeline, upload_keys};
use docpipe_local_runner::provision::QueueSettings;
use docpipe_tests::corpus::generate;
use docpipe_tests::local_aws::LocalAws;
use docpipe_tests::spawn_mock_openai;
use docpipe_tests::{ScratchDir, TestDb};
use pgvector::Vector;
use std::path::PathBuf;
use std::time::Duration;
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
    /// `CHUNK_MIN_TOKENS` (default: the pipeline's, a 64th of `CHUNK_TOKENS`).
    #[arg(long)]
    chunk_min_tokens: Option<usize>,
    /// As `docpipe ingest --defer-index`: drop the HNSW index, build it after.
    #[arg(long)]
    defer_index: bool,
    /// Where the pipeline runs.
    #[arg(long, value_enum, default_value = "in-process")]
    via: Via,
    /// Instead of throughput: on the local stack, one tenant uploads the
    /// corpus at once and another tenant one small document; times the small
    /// one, this many rounds, with `TENANT_STAGE_SHARE` off and on.
    #[arg(long, value_name = "ROUNDS")]
    light_beside_burst: Option<u32>,
    /// `TENANT_STAGE_SHARE` for `--light-beside-burst` when on (default: its default).
    #[arg(long, default_value_t = StageSettings::default().tenant_stage_share)]
    tenant_stage_share: u32,
}

/// Where the pipeline runs.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Via {
    /// In this process, as `docpipe ingest` (the `mock` embedder).
    InProcess,
    /// LocalStack S3 + SQS and the event-source runner, as deployed, with
    /// `mock-openai` over HTTP.
    LocalStack,
}

fn main() {
    // Documents are parsed in children of this executable: one parses here and exits.
    docpipe_ingest::parsing::sandbox::serve_if_child();
    bench_main()
}

#[tokio::main]
async fn bench_main() {
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
    let files = upload_keys("bench", &[corpus]).expect("corpus");
    let bytes: u64 = files
        .iter()
        .map(|(_, f)| std::fs::metadata(f).unwrap().len())
        .sum();
    let min_tokens = args.chunk_min_tokens.map(|n| n.to_string());
    let mut vars = vec![("EMBEDDING_DIMS", dims.as_str())];
    vars.extend(min_tokens.as_deref().map(|n| ("CHUNK_MIN_TOKENS", n)));
    if let Some(rounds) = args.light_beside_burst {
        return light_beside_burst(rounds, args.tenant_stage_share, &files, &vars).await;
    }

    let (seconds, loaded, test_db) = match args.via {
        Via::InProcess => {
            let test_db = TestDb::migrated(&vars).await;
            let config = test_db.config(&vars);
            let pool = db::connect(&config.database).await.expect("connect");
            let mut local = LocalPipeline::new(&config, pool.clone()).expect("pipeline");
            for (key, file) in &files {
                local.upload(key, file).await.expect("upload");
            }
            let keys = files.iter().map(|(k, _)| k.clone()).collect();
            let index_build = Some(&config.database).filter(|_| args.defer_index);
            let (seconds, loaded) = timed(&pool, index_build, async {
                local.run(keys, |_| {}).await;
            })
            .await;
            (seconds, loaded, test_db)
        }
        Via::LocalStack => {
            let stack = deployed_stack(&vars).await;
            let pool = stack.deployment.pipeline.db.clone();
            let database = stack.test_db.config(&vars).database;
            let index_build = Some(&database).filter(|_| args.defer_index);
            let (seconds, loaded) = timed(&pool, index_build, async {
                for (key, file) in &files {
                    stack.put(key, std::fs::read(file).unwrap()).await;
                }
                let ended = || async {
                    stack.count_in_state("complete").await + stack.count_in_state("failed").await
                };
                while ended().await < files.len() as i64 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            (seconds, loaded, stack.test_db)
        }
    };

    let client = test_db.client().await;
    let totals = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'complete'), sum(chunk_count)::int8, sum(token_count)::int8
               FROM upload_pipeline.upload_jobs",
            &[],
        )
        .await
        .unwrap();
    let (complete, chunks, tokens): (i64, i64, i64) = (totals.get(0), totals.get(1), totals.get(2));
    println!(
        "docpipe-bench ({}): {} documents ({complete} complete), {:.1} MB, {chunks} chunks, {tokens} tokens, dims {dims}, {} cores",
        args.via.to_possible_value().unwrap().get_name(),
        files.len(),
        bytes as f64 / 1e6,
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
    let raw = raw_copy(&client).await;
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
    if complete != files.len() as i64 {
        eprintln!(
            "docpipe-bench: {} documents did not complete",
            files.len() as i64 - complete
        );
        std::process::exit(1);
    }
}

/// The local stack as deployed, with `mock-openai` over HTTP and `vars`.
async fn deployed_stack(vars: &[(&str, &str)]) -> LocalAws {
    let dims: usize = vars
        .iter()
        .find(|(name, _)| *name == "EMBEDDING_DIMS")
        .and_then(|(_, dims)| dims.parse().ok())
        .expect("EMBEDDING_DIMS");
    let openai = spawn_mock_openai(dims, Some("sk-bench")).await;
    let mut vars = vars.to_vec();
    vars.extend([
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", openai.as_str()),
        ("OPENAI_API_KEY", "sk-bench"),
        ("EMBEDDING_MODEL", "text-embedding-3-small"),
    ]);
    // As deployed: messages stay hidden for longer than any batch takes.
    let settings = QueueSettings {
        visibility_timeout_secs: 120,
        max_receive_count: 5,
    };
    LocalAws::start_with_queues(&vars, settings).await
}

/// Times one tenant's small upload beside another tenant's burst of
/// `files`, with `TENANT_STAGE_SHARE` off (0) and at `share`, `rounds`
/// times each, on a fresh stack each time; and the small upload alone.
async fn light_beside_burst(
    rounds: u32,
    share: u32,
    files: &[(String, PathBuf)],
    vars: &[(&str, &str)],
) {
    use futures::StreamExt;
    const LIGHT: &str = "uploads/light/one.md";
    let light_text =
        "# One question\n\nThe light tenant asks where the harbour's fog bell hangs.\n";
    let share = share.to_string();
    println!(
        "docpipe-bench light beside burst: {} documents of one tenant, then one of another; {} cores",
        files.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for round in 1..=rounds {
        for share in ["0", share.as_str()] {
            let mut vars = vars.to_vec();
            vars.push(("TENANT_STAGE_SHARE", share));
            let stack = deployed_stack(&vars).await;
            let alone = Instant::now();
            stack.put("uploads/light/alone.md", light_text).await;
            stack
                .wait_for_state("uploads/light/alone.md", "complete")
                .await;
            let alone = alone.elapsed().as_secs_f64();
            let burst = Instant::now();
            futures::stream::iter(files)
                .map(|(key, file)| {
                    let key = key.replacen("uploads/bench/", "uploads/heavy/", 1);
                    let stack = &stack;
                    async move { stack.put(&key, std::fs::read(file).unwrap()).await }
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
            let light = Instant::now();
            stack.put(LIGHT, light_text).await;
            stack.wait_for_state(LIGHT, "complete").await;
            let light = light.elapsed().as_secs_f64();
            // The stages' part: from the job's creation (ingest) to its end.
            let staged: f64 = stack
                .test_db
                .column(&format!(
                    "SELECT extract(epoch FROM updated_at - created_at)::float8
                       FROM upload_pipeline.upload_jobs WHERE source_key = '{LIGHT}'"
                ))
                .await[0];
            let ended = async || {
                stack.count_in_state("complete").await + stack.count_in_state("failed").await
            };
            while ended().await < files.len() as i64 + 2 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!(
                "  round {round}, TENANT_STAGE_SHARE={share}: light upload alone {alone:.2} s, \
                 beside the burst {light:.2} s (in parse, chunk and embed {staged:.2} s); \
                 burst {:.1} s in all",
                burst.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs `load`, deferring the search index around it when given the
/// settings of its build; returns the seconds in all and the seconds before
/// the index build.
async fn timed(
    pool: &db::Pool,
    index_build: Option<&DatabaseSettings>,
    load: impl Future<Output = ()>,
) -> (f64, f64) {
    let started = Instant::now();
    let mut client = pool.get().await.unwrap();
    if index_build.is_some() {
        indexes::defer_search_index(&mut client).await.unwrap();
    }
    load.await;
    let loaded = started.elapsed().as_secs_f64();
    if let Some(settings) = index_build {
        indexes::rebuild_deferred_indexes(&mut client, settings)
            .await
            .unwrap();
    }
    (started.elapsed().as_secs_f64(), loaded)
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
