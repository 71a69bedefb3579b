//! `docpipe-search-bench`: how fast search answers through the HTTP API, per
//! mode, and how much of the exact answer HNSW finds, on a scratch database
//! of generated chunks: 100 tenants of skewed sizes (one holding half the
//! rows, the rest Zipf-distributed), each chunk with metadata to filter on.
//!
//!   cargo run --profile perf -p docpipe-benches --bin docpipe-search-bench -- [--chunks 100000] [--dims 384] [--queries 200]
//!       [--ef-search 100] [--hnsw M EF_CONSTRUCTION] [--recall-only] [--storage vector|halfvec]
//!       [--keyword-match all|any] [--texts FILE --embedder mock|local] [--heavy-beside-light ROUNDS]
//!   (DB_INDEX_BUILD_MEMORY, if set, is the HNSW build's memory)
//!
//! By default texts are 60-120 words drawn Zipf-distributed from a 20 000-word
//! vocabulary and embedded by the `mock` embedder (hashed bags of words and
//! word pairs), so vectors have the structure of text (shared rare words
//! make neighbours), not the uniform noise on which HNSW recall means
//! nothing. With `--texts` they are the file's lines (real prose:
//! `scripts/quality-corpus.py --paragraphs FILE`), in a fixed shuffle, and
//! `--embedder local` embeds them and the queries with the local model
//! (`scripts/fetch-model`): the vectors of a real model. Queries are six
//! consecutive words of a chunk of the tenant.
//! Rows go in by binary COPY with the HNSW index dropped, then the index is
//! built once, as `docpipe ingest --defer-index` does. Needs DATABASE_URL.
//! `--heavy-beside-light` measures instead a small tenant's searches while
//! the large tenant sends 150 heavy ones at once (`top_k` 100, 10 neighbours
//! of context), with each tenant's search slots (`TENANT_SEARCH_SLOTS`, the
//! default) and without them, the two APIs taking turns for ROUNDS rounds.

use clap::Parser;
use docpipe_api::ApiSettings;
use docpipe_core::db;
use docpipe_core::db::indexes;
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::settings::{Env, Parts, PipelineSettings, VectorStorage};
use docpipe_tests::TestDb;
use docpipe_tests::corpus::Rng;
use pgvector::{HalfVector, Vector};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "docpipe-search-bench")]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    #[arg(long, default_value_t = 384)]
    dims: usize,
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Queries per mode and concurrency.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// `SEARCH_EF_SEARCH` of the searches.
    #[arg(long, default_value_t = 100)]
    ef_search: u32,
    /// Build the HNSW index with these instead of the schema's (m, ef_construction).
    #[arg(long, num_args = 2, value_names = ["M", "EF_CONSTRUCTION"])]
    hnsw: Option<Vec<u32>>,
    /// Measure recall only, not latency.
    #[arg(long)]
    recall_only: bool,
    /// How vectors are stored (`EMBEDDING_STORAGE`): vector or halfvec.
    #[arg(long, default_value = "vector")]
    storage: VectorStorage,
    /// The keyword ranker's chunks (`SEARCH_KEYWORD_MATCH`): all or any.
    #[arg(long, default_value = "all")]
    keyword_match: String,
    /// Chunk texts, one a line, instead of generated ones (at most as many
    /// chunks as lines).
    #[arg(long)]
    texts: Option<std::path::PathBuf>,
    /// `EMBEDDING_PROVIDER` of the chunks and the queries: mock or local.
    #[arg(long, default_value = "mock")]
    embedder: String,
    /// Rounds of a small tenant's searches beside the large tenant's burst
    /// of heavy ones, with and without search slots (nothing else measured).
    #[arg(long, value_name = "ROUNDS")]
    heavy_beside_light: Option<usize>,
}

const VOCABULARY: usize = 20_000;
const CHUNKS_PER_DOCUMENT: usize = 20;
const TEAMS: [&str; 5] = ["legal", "finance", "ops", "sales", "research"];
const KEY: &str = "bench-key-0123456789";

/// A word of rank `rank` (0 the most common).
fn word(rank: usize) -> String {
    format!("w{rank:x}")
}

/// A Zipf-distributed word rank: `VOCABULARY` ** u, so rank r has weight ~1/r.
fn zipf(rng: &mut Rng) -> usize {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((VOCABULARY as f64).powf(u) as usize).saturating_sub(1)
}

fn generated_text(rng: &mut Rng) -> String {
    let words = 60 + rng.below(61);
    (0..words)
        .map(|_| word(zipf(rng)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chunks' texts: `chunks` generated ones, or the file's lines in a
/// fixed shuffle (at most `chunks`).
fn chunk_texts(args: &Args) -> Vec<String> {
    let mut rng = Rng(0x5ea2_c4b3);
    let Some(path) = &args.texts else {
        return (0..args.chunks).map(|_| generated_text(&mut rng)).collect();
    };
    let file =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("--texts {}: {e}", path.display()));
    let mut lines: Vec<String> = file.lines().map(str::to_owned).collect();
    for i in (1..lines.len()).rev() {
        lines.swap(i, rng.below(i + 1));
    }
    lines.truncate(args.chunks);
    lines
}

/// Vectors of `texts`, a batch a call, with progress on stderr every 30 s
/// (the local model takes minutes per 10 000).
async fn embed_all(embedder: &dyn Embedder, texts: &[String]) -> Vec<Vec<f32>> {
    let mut vectors = Vec::with_capacity(texts.len());
    let mut told = Instant::now();
    for batch in texts.chunks(64) {
        let inputs: Vec<EmbedInput> = batch
            .iter()
            .map(|text| EmbedInput {
                text,
                tokens: text.split(' ').count() as u32 * 2,
            })
            .collect();
        let embedded = embedder
            .embed(&inputs)
            .await
            .unwrap_or_else(|e| panic!("embedding a batch: {e}"));
        vectors.extend(embedded.vectors);
        if told.elapsed() > Duration::from_secs(30) {
            eprintln!("embedded {} of {}", vectors.len(), texts.len());
            told = Instant::now();
        }
    }
    vectors
}

/// Each tenant's share of the rows: the first half of them all, the others
/// Zipf-distributed over the other half.
fn tenant_sizes(chunks: usize, tenants: usize) -> Vec<usize> {
    let harmonic: f64 = (1..tenants).map(|i| 1.0 / i as f64).sum();
    let mut sizes = vec![chunks / 2];
    sizes.extend(
        (1..tenants).map(|i| ((chunks / 2) as f64 / i as f64 / harmonic).max(1.0) as usize),
    );
    sizes
}

fn tenant(i: usize) -> String {
    format!("t{i:03}")
}

/// Writes `texts` with their `vectors` into the tenants' documents; returns
/// how long that took (the embedding not counted).
async fn load(
    test_db: &TestDb,
    args: &Args,
    sizes: &[usize],
    model: &str,
    texts: &[String],
    vectors: Vec<Vec<f32>>,
) -> Duration {
    let mut client = test_db.client().await;
    indexes::defer_search_index(&mut client).await.unwrap();
    let mut rows = texts.iter().zip(vectors);
    let types = [
        Type::UUID,
        Type::UUID,
        Type::UUID,
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::TEXT,
        Type::INT4,
        Type::INT4,
        Type::INT4,
        Type::TEXT,
        Type::JSONB,
        Type::TEXT,
    ];
    let started = Instant::now();
    for (t, &size) in sizes.iter().enumerate() {
        let tenant = tenant(t);
        let tx = client.transaction().await.unwrap();
        let documents = size.div_ceil(CHUNKS_PER_DOCUMENT);
        for d in 0..documents {
            let key = format!("uploads/{tenant}/doc-{d:05}.txt");
            let id = docpipe_core::domain::ids::document_id(&tenant, &key);
            let metadata = json!({"team": TEAMS[d % TEAMS.len()], "year": 2018 + (d % 8)});
            tx.execute(
                "INSERT INTO upload_pipeline.documents (id, tenant, source_key, metadata) VALUES ($1, $2, $3, $4)",
                &[&id, &tenant, &key, &metadata],
            )
            .await
            .unwrap();
        }
        let mut types = types.to_vec();
        let vector_type = format!("SELECT $1::{}", args.storage.sql_type());
        types.push(tx.prepare(&vector_type).await.unwrap().params()[0].clone());
        types.push(Type::BYTEA);
        let sink = tx
            .copy_in(
                "COPY upload_pipeline.document_chunks (chunk_id, document_id, job_id, tenant, source_key,
                     chunk_index, text, token_count, char_start, char_end, model, metadata, content_type,
                     embedding, text_sha256) FROM STDIN BINARY",
            )
            .await
            .unwrap();
        let writer = BinaryCopyInWriter::new(sink, &types);
        tokio::pin!(writer);
        for i in 0..size {
            let d = i / CHUNKS_PER_DOCUMENT;
            let key = format!("uploads/{tenant}/doc-{d:05}.txt");
            let document = docpipe_core::domain::ids::document_id(&tenant, &key);
            let (body, vector) = rows.next().unwrap();
            let tokens = body.split(' ').count() as i32 * 2;
            let vector: Box<dyn ToSql + Sync + Send> = match args.storage {
                VectorStorage::Vector => Box::new(Vector::from(vector)),
                VectorStorage::Halfvec => Box::new(HalfVector::from_f32_slice(&vector)),
            };
            let metadata = json!({"team": TEAMS[d % TEAMS.len()], "year": 2018 + (d % 8)});
            let index = (i % CHUNKS_PER_DOCUMENT) as i32;
            let end = body.chars().count() as i32;
            let hash = docpipe_core::domain::ids::sha256(body.as_bytes());
            let row: [&(dyn ToSql + Sync); 15] = [
                &Uuid::new_v4(),
                &document,
                &document,
                &tenant,
                &key,
                &index,
                &body,
                &tokens,
                &0i32,
                &end,
                &model,
                &metadata,
                &"text/plain",
                vector.as_ref(),
                &hash.as_slice(),
            ];
            writer.as_mut().write(&row).await.unwrap();
        }
        writer.finish().await.unwrap();
        tx.commit().await.unwrap();
    }
    started.elapsed()
}

/// The API over the scratch database, with no AWS behind it (search needs
/// none), and each tenant's `search_slots` (`TENANT_SEARCH_SLOTS`).
async fn serve(settings: &PipelineSettings, search_slots: u32) -> String {
    let keys = (0..100)
        .map(|t| format!("{KEY}{t:03}:{}", tenant(t)))
        .collect::<Vec<_>>()
        .join(",");
    let api_settings = ApiSettings {
        tenant_api_requests_per_minute: 10_000_000,
        tenant_search_slots: search_slots,
        ..ApiSettings::default()
    };
    docpipe_tests::serve_api_without_aws(settings, &keys, &api_settings).await
}

/// One search's status and time, its answer read whole.
async fn timed_search(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
) -> (u16, Duration) {
    let sent = Instant::now();
    let response = http
        .post(format!("{base}/v1/search"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    (status, sent.elapsed())
}

/// `rounds` of: the `light` tenant's 20 searches one after another, while
/// the `heavy` tenant sends 150 heavy searches at once; through the API with
/// search slots (the default) and without them, taking turns.
async fn heavy_beside_light(
    settings: &PipelineSettings,
    test_db: &TestDb,
    (heavy, light): (usize, usize),
    rounds: usize,
) {
    let slotted = serve(settings, ApiSettings::default().tenant_search_slots).await;
    let unslotted = serve(settings, u32::MAX).await;
    let http = docpipe_tests::http_client();
    let light_bodies: Vec<Value> = queries(test_db, &tenant(light), 20)
        .await
        .into_iter()
        .map(|q| json!({"query": q, "top_k": 10, "mode": "vector"}))
        .collect();
    let heavy_bodies: Vec<Value> = queries(test_db, &tenant(heavy), 150)
        .await
        .into_iter()
        .map(|q| json!({"query": q, "top_k": 100, "context": {"neighbors": 10}, "mode": "vector"}))
        .collect();
    let (heavy_key, light_key) = (format!("{KEY}{heavy:03}"), format!("{KEY}{light:03}"));
    println!(
        "slots    round  light alone p50 ms  beside heavy p50 ms   p95 ms   max ms  heavy 200/429  heavy slowest s"
    );
    for round in 1..=rounds {
        for (slots, base) in [("4", &slotted), ("none", &unslotted)] {
            let alone = {
                let mut times = Vec::new();
                for body in &light_bodies {
                    times.push(timed_search(&http, base, &light_key, body).await.1);
                }
                times.sort();
                percentile(&times, 0.50)
            };
            let burst = futures::future::join_all(
                heavy_bodies
                    .iter()
                    .map(|body| timed_search(&http, base, &heavy_key, body)),
            );
            let beside = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut times = Vec::new();
                for body in &light_bodies {
                    let (status, took) = timed_search(&http, base, &light_key, body).await;
                    assert_eq!(status, 200);
                    times.push(took);
                }
                times.sort();
                times
            };
            let (heavy_answers, times) = tokio::join!(burst, beside);
            let ok = heavy_answers
                .iter()
                .filter(|(status, _)| *status == 200)
                .count();
            let waited = heavy_answers
                .iter()
                .filter(|(status, _)| *status == 429)
                .count();
            let slowest = heavy_answers.iter().map(|(_, took)| *took).max().unwrap();
            println!(
                "{slots:<8} {round:>5} {alone:>19.1} {:>20.1} {:>8.1} {:>8.1}  {ok:>6}/{waited:<6} {:>15.1}",
                percentile(&times, 0.50),
                percentile(&times, 0.95),
                times.last().unwrap().as_secs_f64() * 1000.0,
                slowest.as_secs_f64()
            );
        }
    }
}

/// Six consecutive words of a random chunk of `tenant`.
async fn queries(test_db: &TestDb, tenant: &str, n: usize) -> Vec<String> {
    let client = test_db.client().await;
    let rows = client
        .query(
            "SELECT text FROM upload_pipeline.document_chunks WHERE tenant = $1 ORDER BY random() LIMIT $2",
            &[&tenant, &(n as i64)],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let text: String = row.get(0);
            let words = text.split(' ').count();
            text.split(' ')
                .skip(words.saturating_sub(6).min(10))
                .take(6)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at].as_secs_f64() * 1000.0
}

/// p50/p95/p99 (ms) and queries/s of `bodies` sent `concurrency` at a time.
async fn measure(
    base: &str,
    key: &str,
    bodies: &[Value],
    concurrency: usize,
) -> (f64, f64, f64, f64) {
    let http = docpipe_tests::http_client();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| async {
        let mut times = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(body) = bodies.get(i) else { break };
            let (status, took) = timed_search(&http, base, key, body).await;
            assert_eq!(status, 200, "{body}");
            times.push(took);
        }
        times
    });
    let mut times: Vec<Duration> = futures::future::join_all(workers).await.concat();
    let elapsed = started.elapsed().as_secs_f64();
    times.sort();
    (
        percentile(&times, 0.50),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
        times.len() as f64 / elapsed,
    )
}

/// Recall@10 of the HNSW answers (as search finds them) against exact
/// search (index scans off), for `tenant`'s queries, with and without a
/// metadata filter: the share of the exact ten matched by hits as near as
/// the exact tenth.
async fn recall(
    test_db: &TestDb,
    settings: &PipelineSettings,
    tenant: &str,
    filter: Option<Value>,
    queries: &[String],
) -> Option<f64> {
    let pool = db::connect(&settings.database).await.unwrap();
    let parts = docpipe_tests::search_parts(settings);
    let request: docpipe_search::FilterRequest =
        serde_json::from_value(filter.clone().unwrap_or(json!({}))).unwrap();
    let scoped = request
        .scoped(&docpipe_core::domain::keys::Tenant::new(tenant).unwrap())
        .unwrap();
    let condition = scoped.metadata.clone();
    let mut found = 0;
    let mut total = 0;
    let mut client = test_db.client().await;
    for text in queries {
        let query = docpipe_search::Query {
            text,
            top_k: 10,
            mode: docpipe_search::SearchMode::Vector,
            filter: &scoped,
            context: None,
            rerank: true,
        };
        let hits = docpipe_search::search(&pool, &parts, tenant, &query)
            .await
            .unwrap();
        let vector = parts
            .models
            .current
            .embed(&[EmbedInput { text, tokens: 8 }])
            .await
            .unwrap();
        let vector = Vector::from(vector.vectors[0].clone());
        let tx = client.transaction().await.unwrap();
        tx.batch_execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
            .await
            .unwrap();
        let (sql, params) = match &condition {
            None => (String::new(), Vec::new()),
            Some(c) => {
                let c = docpipe_search::filter::SqlCondition::new(c, 3, None);
                (format!("AND {}", c.sql), c.params)
            }
        };
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&tenant, &vector];
        all.extend(params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
        let exact = tx
            .query(
                &format!(
                    "SELECT embedding <=> $2::vector FROM upload_pipeline.document_chunks
                      WHERE tenant = $1 {sql} ORDER BY embedding <=> $2::vector LIMIT 10"
                ),
                &all,
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // A hit counts if it is as near as the exact tenth (ties count: many
        // chunks share a short query's words, and any of them is as right).
        let Some(tenth) = exact.last().map(|row| row.get::<_, f64>(0)) else {
            continue;
        };
        total += exact.len();
        found += hits
            .iter()
            .filter(|hit| 1.0 - hit.score <= tenth + 1e-9)
            .count()
            .min(exact.len());
    }
    // None when no chunk of the tenant passes the filter.
    (total > 0).then(|| found as f64 / total as f64)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dims = args.dims.to_string();
    let storage = args.storage.to_string();
    let test_db =
        TestDb::migrated(&[("EMBEDDING_DIMS", &dims), ("EMBEDDING_STORAGE", &storage)]).await;
    let mut vars = vec![
        ("DATABASE_URL", test_db.url.clone()),
        ("EMBEDDING_PROVIDER", args.embedder.clone()),
        ("EMBEDDING_DIMS", dims.clone()),
        ("EMBEDDING_STORAGE", storage.clone()),
        ("DB_POOL_SIZE", "20".into()),
        ("SEARCH_EF_SEARCH", args.ef_search.to_string()),
        ("SEARCH_KEYWORD_MATCH", args.keyword_match.clone()),
    ];
    // The index build's memory, as a deployment would set it for its size.
    if let Ok(memory) = std::env::var("DB_INDEX_BUILD_MEMORY") {
        vars.push(("DB_INDEX_BUILD_MEMORY", memory));
    }
    if args.embedder == "local" {
        let dir = docpipe_tests::local_model_dir();
        vars.push(("EMBEDDING_MODEL_DIR", dir.display().to_string()));
    }
    let settings = PipelineSettings::load(
        &Env::from_pairs(vars.iter().map(|(k, v)| (*k, v.as_str()))),
        Parts::EMBED,
    )
    .unwrap();
    let embedder = docpipe_ingest::embedding::from_settings(&settings).unwrap();
    let texts = chunk_texts(&args);
    let started = Instant::now();
    let vectors = embed_all(embedder.as_ref(), &texts).await;
    let embedded = started.elapsed();
    let sizes = tenant_sizes(texts.len(), args.tenants);
    let texts = &texts[..sizes.iter().sum::<usize>()];
    let loaded = load(&test_db, &args, &sizes, embedder.model(), texts, vectors).await;
    let rows = test_db.count("document_chunks").await;
    let started = Instant::now();
    let mut client = test_db.client().await;
    let rebuilt = match &args.hnsw {
        None => indexes::rebuild_deferred_indexes(&mut client, &settings.database)
            .await
            .unwrap()
            .len(),
        Some(params) => {
            // Numbers parsed by clap: DDL takes no parameters.
            let sql = format!(
                "DELETE FROM upload_pipeline.deferred_indexes;
                 CREATE INDEX document_chunks_embedding_idx ON upload_pipeline.document_chunks
                     USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})",
                args.storage.cosine_ops(),
                params[0],
                params[1]
            );
            client.batch_execute(&sql).await.unwrap();
            1
        }
    };
    let built = started.elapsed();
    test_db
        .client()
        .await
        .batch_execute("ANALYZE upload_pipeline.document_chunks")
        .await
        .unwrap();
    let sizes_mb: Vec<f64> = test_db
        .column(
            "SELECT unnest(ARRAY[
                 pg_relation_size('upload_pipeline.document_chunks_embedding_idx'),
                 pg_table_size('upload_pipeline.document_chunks')]) / 1048576.0::float8",
        )
        .await;
    println!(
        "{rows} chunks of {} tenants ({} dims, {}, {} vectors): embedded in {:.1} s, loaded in {:.1} s, \
         {} index(es) built in {:.1} s; HNSW index {:.0} MB, table {:.0} MB",
        args.tenants,
        args.dims,
        args.storage,
        embedder.model(),
        embedded.as_secs_f64(),
        loaded.as_secs_f64(),
        rebuilt,
        built.as_secs_f64(),
        sizes_mb[0],
        sizes_mb[1]
    );

    // The tenant holding half the rows, and the one nearest 1 %.
    let small = (1..args.tenants)
        .min_by_key(|&t| sizes[t].abs_diff(texts.len() / 100))
        .unwrap();
    if let Some(rounds) = args.heavy_beside_light {
        return heavy_beside_light(&settings, &test_db, (0, small), rounds).await;
    }
    let base = serve(&settings, ApiSettings::default().tenant_search_slots).await;
    // A wide filter (15 % of a tenant's chunks) and a narrow one (2.5 %).
    let filters = [
        ("no", None),
        (
            "wide",
            Some(
                json!({"andAll": [{"equals": {"key": "team", "value": "legal"}},
                                   {"greaterThanOrEquals": {"key": "year", "value": 2020}}]}),
            ),
        ),
        (
            "narrow",
            Some(
                json!({"andAll": [{"equals": {"key": "team", "value": "legal"}},
                                   {"equals": {"key": "year", "value": 2018}}]}),
            ),
        ),
    ];
    println!("tenant      rows   filter  mode     conc   p50 ms   p95 ms   p99 ms    q/s");
    for t in [0, small] {
        let name = tenant(t);
        let texts = queries(&test_db, &name, args.queries).await;
        for (filtered, filter) in filters.iter().filter(|_| !args.recall_only) {
            for mode in ["vector", "hybrid", "keyword"] {
                for concurrency in [1, 16] {
                    let bodies: Vec<Value> = texts
                        .iter()
                        .map(|q| {
                            let mut body = json!({"query": q, "top_k": 10, "mode": mode});
                            if let Some(filter) = filter {
                                body["filter"] = filter.clone();
                            }
                            body
                        })
                        .collect();
                    let key = format!("{KEY}{t:03}");
                    let (p50, p95, p99, qps) = measure(&base, &key, &bodies, concurrency).await;
                    println!(
                        "{name} {:>9}  {filtered:>6}  {mode:<7} {concurrency:>4} {p50:>8.1} {p95:>8.1} {p99:>8.1} {qps:>6.0}",
                        sizes[t],
                    );
                }
            }
        }
        for (filtered, filter) in &filters {
            let r = recall(
                &test_db,
                &settings,
                &name,
                filter.clone(),
                &texts[..texts.len().min(50)],
            )
            .await;
            let r = r.map_or("n/a (no chunk passes the filter)".into(), |r| {
                format!("{r:.3}")
            });
            println!("{name} recall@10 of HNSW against exact, filter {filtered}: {r}");
        }
    }
}
