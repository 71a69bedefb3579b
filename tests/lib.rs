//! Support for docpipe's integration tests and benches: a fresh Postgres
//! database per test, the mock servers on loopback ports, sample files.

pub mod corpus;
pub mod inventory_report;
pub mod lambda_runtime_api;
pub mod local_aws;
pub mod office;
pub mod openapi;

use docpipe_core::db;
use docpipe_core::domain::keys::Tenant;
use docpipe_core::settings::{Env, Parts, PipelineSettings};
use docpipe_core::store::status;
use docpipe_ingest::drivers::local::{LocalPipeline, LocalRun, upload_keys};
use docpipe_mocks::llamaparse::{MockLlamaParse, MockLlamaParseConfig};
use docpipe_mocks::openai::{MockOpenAi, MockOpenAiConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The cluster to create test databases in: `DATABASE_URL` (any database of
/// a Postgres with pgvector; `scripts/local-postgres up` prints one).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a Postgres with pgvector (run scripts/local-postgres up)",
    )
}

/// The executable the tests' pipelines parse in: `docpipe-parse-sandbox`,
/// beside the test binaries (cargo builds a package's binaries for its
/// integration tests). `None` elsewhere (a bench serves children itself).
pub fn parse_sandbox_exe() -> Option<PathBuf> {
    beside_test_binaries("docpipe-parse-sandbox")
}

/// The workspace's executable `name` in the target directory the test
/// binaries run from, if it was built.
pub fn beside_test_binaries(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.ends_with("deps") {
        dir = dir.parent()?;
    }
    let path = dir.join(name);
    path.exists().then_some(path)
}

/// Every table of the `upload_pipeline` schema.
pub const TABLES: &[&str] = &[
    "documents",
    "upload_jobs",
    "events",
    "document_chunk_buffer",
    "document_vector_buffer",
    "document_chunks",
    "embedding_cache",
    "cost_ledger",
    "service_breakers",
    "deferred_indexes",
    "tenant_limits",
    "metadata_sidecars",
    "tenant_models",
    "pending_sidecars",
    "stage_work",
    "syncs",
    "sync_inventory",
];

/// A database of its own, migrated, dropped when the value is dropped.
pub struct TestDb {
    pub url: String,
    name: String,
    /// The cluster's admin URL, which created the database and drops it.
    admin: String,
    /// Where this test's local blob store lives; removed on drop.
    pub blob_dir: PathBuf,
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

async fn admin_execute(admin_url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .expect("connect to DATABASE_URL");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = connection.await;
}

impl TestDb {
    /// A fresh, unmigrated database.
    pub async fn empty() -> TestDb {
        TestDb::empty_on(&admin_url()).await
    }

    /// A fresh, unmigrated database in the cluster of `admin`.
    pub async fn empty_on(admin: &str) -> TestDb {
        let name = format!("docpipe_test_{}", uuid::Uuid::new_v4().simple());
        admin_execute(admin, &format!("CREATE DATABASE {name}")).await;
        let blob_dir = std::env::temp_dir().join(&name);
        TestDb {
            url: with_database(admin, &name),
            name,
            admin: admin.to_string(),
            blob_dir,
        }
    }

    /// A fresh database migrated with `vars` (e.g. EMBEDDING_DIMS).
    pub async fn migrated(vars: &[(&str, &str)]) -> TestDb {
        TestDb::migrated_on(&admin_url(), vars).await
    }

    /// [`TestDb::migrated`] in the cluster of `admin`.
    pub async fn migrated_on(admin: &str, vars: &[(&str, &str)]) -> TestDb {
        let test_db = TestDb::empty_on(admin).await;
        db::schema::migrate(&test_db.config(vars).database)
            .await
            .expect("migrate");
        test_db
    }

    /// Settings of every part for this database and blob dir, defaults plus `vars`.
    pub fn config(&self, vars: &[(&str, &str)]) -> PipelineSettings {
        let mut map: HashMap<String, String> = parse_sandbox_exe()
            .map(|exe| ("PARSE_SANDBOX_EXE".to_string(), exe.display().to_string()))
            .into_iter()
            .collect();
        map.extend([
            ("DATABASE_URL".to_string(), self.url.clone()),
            (
                "DOCPIPE_BLOB_DIR".to_string(),
                self.blob_dir.display().to_string(),
            ),
        ]);
        map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        PipelineSettings::load(&Env::from_pairs(map), Parts::ALL).expect("test settings")
    }

    /// A plain connection for assertions.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }

    /// `SELECT count(*)` of a table in the pipeline's schema.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM upload_pipeline.{table}");
        self.client()
            .await
            .query_one(&sql, &[])
            .await
            .expect(&sql)
            .get(0)
    }

    /// Row counts of every table, in [`TABLES`] order: what replays must leave unchanged.
    pub async fn row_counts(&self) -> Vec<(&'static str, i64)> {
        let mut counts = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            counts.push((*table, self.count(table).await));
        }
        counts
    }

    /// The first column of every row `sql` returns.
    pub async fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> Vec<T> {
        let rows = self.client().await.query(sql, &[]).await.expect(sql);
        rows.iter().map(|row| row.get(0)).collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin = self.admin.clone();
        let _ = std::fs::remove_dir_all(&self.blob_dir);
        // Drop runs outside any async context: use a runtime of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin_execute(&admin, &sql))
        })
        .join();
    }
}

/// Serves `router` on a loopback port for the test's lifetime.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// Serves `mock-openai` with `config`; returns its `/v1` base URL and the mock, for its stats.
pub async fn spawn_openai(config: MockOpenAiConfig) -> (String, Arc<MockOpenAi>) {
    let mock = MockOpenAi::new(config);
    let address = serve(mock.router()).await;
    (format!("http://{address}/v1"), mock)
}

/// Serves `mock-llamaparse` with `config`; returns its base URL and the mock.
pub async fn spawn_llamaparse(config: MockLlamaParseConfig) -> (String, Arc<MockLlamaParse>) {
    let mock = MockLlamaParse::new(config);
    let address = serve(mock.router()).await;
    (format!("http://{address}"), mock)
}

/// Serves a fault-free `mock-openai`; returns its `/v1` base URL.
pub async fn spawn_mock_openai(default_dims: usize, api_key: Option<&str>) -> String {
    let config = MockOpenAiConfig {
        default_dims,
        api_key: api_key.map(str::to_string),
        ..MockOpenAiConfig::default()
    };
    spawn_openai(config).await.0
}

/// Uploads `paths` for `tenant` and runs the in-process pipeline until no work
/// is left; returns the run and each job's outcome by key.
pub async fn ingest_locally(
    config: &PipelineSettings,
    tenant: &str,
    paths: &[PathBuf],
) -> (LocalRun, HashMap<String, status::JobOutcome>) {
    let pool = db::connect(&config.database).await.unwrap();
    let mut local = LocalPipeline::new(config, pool.clone()).unwrap();
    let files = upload_keys(tenant, paths).unwrap();
    for (key, file) in &files {
        local.upload(key, file).await.unwrap();
    }
    let run = local
        .run(files.into_iter().map(|(key, _)| key).collect(), |_| {})
        .await;
    let job_ids: Vec<_> = run.ingested.iter().map(|(_, i)| i.job_id).collect();
    let outcomes = status::outcomes(&pool.get().await.unwrap(), &job_ids)
        .await
        .unwrap();
    (
        run,
        outcomes
            .into_iter()
            .map(|o| (o.source_key.clone(), o))
            .collect(),
    )
}

/// The `top_k` chunks of `tenant` nearest to `query`, unfiltered, searched
/// as the API and the CLI search.
pub async fn search_as(
    config: &PipelineSettings,
    tenant: &str,
    query: &str,
    top_k: u32,
) -> Vec<docpipe_search::SearchHit> {
    search_filtered(config, tenant, query, top_k, serde_json::json!({}))
        .await
        .unwrap()
}

/// [`search_as`] with `filter` as the API and the CLI take it; a filter that
/// breaks a rule is the problem they answer with.
pub async fn search_filtered(
    config: &PipelineSettings,
    tenant: &str,
    query: &str,
    top_k: u32,
    filter: serde_json::Value,
) -> Result<Vec<docpipe_search::SearchHit>, String> {
    search_in_mode(config, tenant, query, top_k, filter, Default::default()).await
}

/// [`search_filtered`] ranked by `mode`.
pub async fn search_in_mode(
    config: &PipelineSettings,
    tenant: &str,
    text: &str,
    top_k: u32,
    filter: serde_json::Value,
    mode: docpipe_search::SearchMode,
) -> Result<Vec<docpipe_search::SearchHit>, String> {
    let request: docpipe_search::FilterRequest =
        serde_json::from_value(filter).map_err(|e| e.to_string())?;
    let filter = request.scoped(&Tenant::new(tenant).unwrap())?;
    let pool = db::connect(&config.database).await.unwrap();
    let parts = search_parts(config);
    let query = docpipe_search::Query {
        text,
        top_k,
        mode,
        filter: &filter,
        context: None,
        rerank: true,
    };
    docpipe_search::search(&pool, &parts, tenant, &query)
        .await
        .map_err(|e| e.to_string())
}

/// The HTTP API over `settings`' database with no AWS behind it (search and
/// reads need none), `api_keys` (`key:tenant,…`) naming its callers; its
/// base URL.
pub async fn serve_api_without_aws(
    settings: &PipelineSettings,
    api_keys: &str,
    api_settings: &docpipe_api::ApiSettings,
) -> String {
    let (s3, sqs, queues) = unreachable_aws();
    let pipeline = docpipe_ingest::pipeline::Pipeline::new(
        settings,
        db::connect(&settings.database).await.unwrap(),
        Arc::new(docpipe_aws::blob::LocalBlobStore::new(
            std::env::temp_dir().join("docpipe-api-without-aws"),
        )),
        Arc::new(docpipe_aws::sqs::SqsQueue::new(sqs.clone(), queues.clone())),
    )
    .unwrap();
    let parts = docpipe_api::ApiParts {
        pipeline,
        s3,
        sqs,
        bucket: "nowhere".into(),
        stage_queues: queues,
        search: search_parts(settings),
    };
    let keys = docpipe_api::parse_api_keys(api_keys).unwrap();
    let api = docpipe_api::Api::from_parts(parts, docpipe_api::Auth::ApiKeys(keys), api_settings)
        .unwrap();
    format!("http://{}", serve(docpipe_api::router(Arc::new(api))).await)
}

/// A client for the tests' own calls to a server (the API, a mock's stats).
pub fn http_client() -> reqwest::Client {
    docpipe_core::external::http_client(std::time::Duration::from_secs(60)).unwrap()
}

/// The sample documents shipped in `samples/docs`.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/docs"))
}

/// all-MiniLM-L6-v2, as `scripts/fetch-model` (which `scripts/test` runs)
/// makes it from pinned PyPI wheels.
pub fn local_model_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.local/models/all-MiniLM-L6-v2"
    ));
    assert!(
        dir.join("SHA256SUMS").exists(),
        "{} holds no model: run scripts/fetch-model",
        dir.display()
    );
    dir
}

/// A scratch directory removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new() -> ScratchDir {
        let dir =
            std::env::temp_dir().join(format!("docpipe-scratch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        ScratchDir::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An S3 client of test credentials for the server at `endpoint` (a mock),
/// path-style.
pub fn s3_client_at(endpoint: &str) -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .http_client(docpipe_core::ops::tls::aws_http_client())
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}

/// AWS clients and stage queues at an address where nothing listens (a call
/// is refused at once): for an API whose routes under test never reach AWS
/// (validation, search).
pub fn unreachable_aws() -> (
    aws_sdk_s3::Client,
    aws_sdk_sqs::Client,
    docpipe_core::settings::QueueUrls,
) {
    const NOWHERE: &str = "http://127.0.0.1:1";
    let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test");
    let s3 = s3_client_at(NOWHERE);
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(NOWHERE)
            .build(),
    );
    let queue = |name: &str| format!("{NOWHERE}/000000000000/{name}");
    let queues = docpipe_core::settings::QueueUrls {
        parse: queue("parse"),
        chunk: queue("chunk"),
        embed: queue("embed"),
    };
    (s3, sqs, queues)
}

/// A TCP proxy to a server (the emulator, Postgres) that can be taken down
/// (every connection dropped, new ones closed at once) and brought back.
pub struct Outage {
    /// `http://<the proxy's address>`.
    pub url: String,
    up: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Outage {
    /// A proxy to `target` (`host:port`, or `http://host:port`).
    pub async fn proxy_to(target: &str) -> Outage {
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

    /// The proxy's `host:port`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl TestDb {
    /// This database's URL through `outage`, a proxy to its server.
    pub fn url_through(&self, outage: &Outage) -> String {
        let (scheme_and_user, rest) = self.url.rsplit_once('@').expect("a URL with a user");
        let (_, path) = rest.split_once('/').expect("a URL with a database");
        format!("{scheme_and_user}@{}/{path}", outage.address())
    }

    /// The `host:port` of this database's server.
    pub fn server_address(&self) -> String {
        let (_, rest) = self.url.rsplit_once('@').expect("a URL with a user");
        rest.split_once('/')
            .expect("a URL with a database")
            .0
            .to_string()
    }
}

/// A Postgres cluster of the test's own, stopped and removed on drop.
pub struct OwnPostgres {
    port: u16,
    data: PathBuf,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
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
    pub fn admin_url(&self) -> String {
        let printed = self.script("env");
        let url = printed.trim().strip_prefix("export DATABASE_URL=");
        url.expect("scripts/local-postgres env prints the URL")
            .to_string()
    }

    /// Runs the script on this cluster; what it printed.
    pub fn script(&self, command: &str) -> String {
        let output = self
            .command(command)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/local-postgres");
        assert!(output.status.success(), "scripts/local-postgres {command}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn command(&self, command: &str) -> std::process::Command {
        let mut script = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/local-postgres"
        ));
        script
            .arg(command)
            .env("DOCPIPE_PG_PORT", self.port.to_string())
            .env("DOCPIPE_PG_DATA", &self.data);
        script
    }

    /// `kill -9` of the postmaster, as a crash would end it.
    pub fn kill_postmaster(&self) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        let pid: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGKILL) },
            0,
            "kill -9 {pid}"
        );
    }

    /// Starts the cluster again after a crash: crash recovery runs once
    /// the killed postmaster's backends have gone.
    pub fn restart_after_crash(&self) {
        for _ in 0..60 {
            let up = self.command("up").output().expect("scripts/local-postgres");
            if up.status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("Postgres did not start again after the crash");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // Never a panic here: a failed test may have left it down.
        let _ = self.command("down").output();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_file(self.data.with_extension("log"));
    }
}

/// What search uses under `settings` (loaded with the embedder): their
/// models, reranker and scan.
pub fn search_parts(settings: &PipelineSettings) -> docpipe_search::SearchParts {
    let models = docpipe_ingest::embedding::models(settings).unwrap();
    docpipe_search::SearchParts::new(settings, models).unwrap()
}
