//! The deployed pipeline against a local AWS emulator: a bucket and queues of
//! the test's own (provisioned as `scripts/local up` does), its own database,
//! and the event-source runner invoking the functions' handlers.

use crate::TestDb;
use docpipe_core::settings::{AwsResources, PipelineSettings};
use docpipe_ingest::drivers::Deployment;
use docpipe_local_runner::event_source::{self, EventSource, Function};
use docpipe_local_runner::provision::{self, QueueSettings, Resources};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Retries come quickly in tests: a failed message is visible again after 1 s.
pub const VISIBILITY_TIMEOUT_SECS: u32 = 1;
pub const MAX_RECEIVE_COUNT: u32 = 3;
/// How long a test waits for the stack to finish something.
pub const WITHIN: Duration = Duration::from_secs(60);

/// The emulator's SDK settings. Only `AWS_ENDPOINT_URL` tells the SDK where
/// the emulator is, as in production code; without it tests refuse to run
/// rather than reach a real account.
pub async fn sdk_config() -> aws_config::SdkConfig {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL must point at LocalStack (run scripts/localstack up; scripts/test does)",
    );
    docpipe_aws::sdk::sdk_config().await
}

/// [`sdk_config`] with every client reaching the emulator through
/// `outage`, a proxy that can be taken down.
pub async fn sdk_config_through(outage: &crate::Outage) -> aws_config::SdkConfig {
    let mut sdk = sdk_config().await.into_builder();
    sdk.set_endpoint_url(Some(outage.url.clone()));
    // Set in code, so the clients prefer it to AWS_ENDPOINT_URL.
    sdk.insert_origin("endpoint_url", aws_types::origin::Origin::shared_config());
    sdk.build()
}

pub struct LocalAws {
    pub test_db: TestDb,
    pub deployment: Arc<Deployment>,
    pub resources: Resources,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The event-source runner started with the stack; `abort_all` kills it
    /// mid-batch, as a Lambda container dies.
    pub runner: JoinSet<()>,
    config: PipelineSettings,
    aws_config: AwsResources,
    sdk: aws_config::SdkConfig,
}

impl LocalAws {
    /// A fresh stack; `vars` configure the pipeline (embedder, chunk sizes).
    /// Retries come quickly: 1 s visibility timeout, DLQ after 3 receives.
    pub async fn start(vars: &[(&str, &str)]) -> LocalAws {
        let settings = QueueSettings {
            visibility_timeout_secs: VISIBILITY_TIMEOUT_SECS,
            max_receive_count: MAX_RECEIVE_COUNT,
        };
        LocalAws::start_with_queues(vars, settings).await
    }

    /// A fresh stack whose queues behave as `settings` say. The visibility
    /// timeout must outlast the slowest batch, as the template's 6× the
    /// function timeout does, or messages come back while still in hand.
    pub async fn start_with_queues(vars: &[(&str, &str)], settings: QueueSettings) -> LocalAws {
        LocalAws::start_on(&crate::admin_url(), vars, settings).await
    }

    /// [`LocalAws::start_with_queues`] with its database in the cluster of `admin`.
    pub async fn start_on(admin: &str, vars: &[(&str, &str)], settings: QueueSettings) -> LocalAws {
        LocalAws::start_with_sdk(sdk_config().await, admin, vars, settings).await
    }

    /// A stack reached with `sdk`'s settings (e.g. through a proxy).
    pub async fn start_with_sdk(
        sdk: aws_config::SdkConfig,
        admin: &str,
        vars: &[(&str, &str)],
        settings: QueueSettings,
    ) -> LocalAws {
        let s3 = docpipe_aws::s3::s3_client(&sdk, true);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
        let stack = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let resources = provision::provision(&cloudformation, &sqs, &stack, &settings)
            .await
            .expect("the template's bucket and queues");
        let test_db = TestDb::migrated_on(admin, vars).await;
        let aws_config = AwsResources {
            bucket: resources.bucket.clone(),
            queues: resources.stage_queue_urls(),
            s3_force_path_style: true,
            max_receive_count: settings.max_receive_count,
            uploads_queue_url: Some(resources.uploads.url.clone()),
        };
        let config = test_db.config(vars);
        let deployment = Arc::new(
            Deployment::new(&config, aws_config.clone(), &sdk)
                .await
                .expect("deployment"),
        );
        let runner = runner_for(
            deployment.clone(),
            &sqs,
            &resources,
            RunnerOptions::default(),
        );
        LocalAws {
            test_db,
            deployment,
            resources,
            s3,
            sqs,
            runner,
            config,
            aws_config,
            sdk,
        }
    }

    /// Another runner on the same queues, as a new Lambda container: its
    /// own clients, connection pool and breakers.
    pub async fn start_runner(&self) -> JoinSet<()> {
        self.start_runner_with(RunnerOptions::default()).await
    }

    /// [`LocalAws::start_runner`], differing from the deployed shape as
    /// `options` say.
    pub async fn start_runner_with(&self, options: RunnerOptions) -> JoinSet<()> {
        runner_for(
            Arc::new(self.new_deployment().await),
            &self.sqs,
            &self.resources,
            options,
        )
    }

    /// `docpipe-local-runner run` on this stack's queues and database as a
    /// process of its own (to be killed with -9), with settings `vars`; no
    /// sweeps or reconciles. Its logs (warnings up) go to the test's output.
    pub fn spawn_runner_process(&self, vars: &[(&str, &str)]) -> tokio::process::Child {
        let exe = crate::beside_test_binaries("docpipe-local-runner").expect(
            "docpipe-local-runner beside the test binaries (cargo builds it for its own tests)",
        );
        tokio::process::Command::new(exe)
            .args([
                "run",
                "--sweep-every-secs",
                "0",
                "--reconcile-every-secs",
                "0",
            ])
            .envs(self.resources.env())
            .envs(vars.iter().copied())
            .env("DATABASE_URL", &self.test_db.url)
            .env("S3_FORCE_PATH_STYLE", "true")
            .env(
                "MAX_RECEIVE_COUNT",
                self.aws_config.max_receive_count.to_string(),
            )
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start docpipe-local-runner")
    }

    /// A new container's clients and settings for this stack. A container
    /// that starts while the database is down fails its start, and Lambda
    /// starts it again: so does this, for up to [`WITHIN`].
    pub async fn new_deployment(&self) -> Deployment {
        let start = Instant::now();
        loop {
            match Deployment::new(&self.config, self.aws_config.clone(), &self.sdk).await {
                Ok(deployment) => return deployment,
                Err(error) if start.elapsed() < WITHIN => {
                    eprintln!("a container could not start ({error}); starting it again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!("deployment: {error}"),
            }
        }
    }

    /// The HTTP API over this stack on a loopback port, with `API_KEYS`
    /// `api_keys`; returns its base URL.
    pub async fn serve_api(&self, api_keys: &str) -> String {
        self.serve_api_with(api_keys, &[]).await
    }

    /// [`LocalAws::serve_api`] with the API's own settings `vars` besides.
    pub async fn serve_api_with(&self, api_keys: &str, vars: &[(&str, &str)]) -> String {
        let mut env: Vec<(&str, String)> = self
            .resources
            .env()
            .iter()
            .map(|(name, value)| (*name, value.to_string()))
            .collect();
        env.extend(vars.iter().map(|(name, value)| (*name, value.to_string())));
        let keys = docpipe_api::parse_api_keys(api_keys).expect("API keys");
        let settings = docpipe_core::settings::Env::from_pairs(env)
            .load()
            .expect("the API's settings");
        // The API is a function of its own: its own clients and pool.
        let api = docpipe_api::Api::new(
            self.new_deployment().await,
            docpipe_api::Auth::ApiKeys(keys),
            &settings,
        )
        .expect("the API over the stack");
        let address = crate::serve(docpipe_api::router(Arc::new(api))).await;
        format!("http://{address}")
    }

    /// The first column of the first row `sql` answers, as a count.
    pub async fn count(&self, sql: &str) -> i64 {
        let db = self.test_db.client().await;
        db.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Waits until every job of the stack is complete, failed or superseded.
    pub async fn settled(&self) {
        wait_until(WITHIN, "every job to finish", async || {
            self.count(
                "SELECT count(*) FROM upload_pipeline.upload_jobs
                  WHERE state NOT IN ('complete', 'failed', 'superseded')",
            )
            .await
                == 0
        })
        .await;
    }

    /// A sync of `tenant`'s whole folder, run to its end.
    pub async fn synced(&self, tenant: &str) -> docpipe_ingest::sync::SyncCounts {
        let scope = docpipe_ingest::sync::Scope::new(
            docpipe_core::domain::keys::Tenant::new(tenant).unwrap(),
            "",
        )
        .unwrap();
        docpipe_ingest::sync::sync(&self.deployment.pipeline, &scope, false, |_| {})
            .await
            .expect("the sync")
    }

    /// Asks for a sync of `tenant`'s folder as the API does: the row, then
    /// its first slice on the uploads queue; returns its id.
    pub async fn ask_for_a_sync(&self, tenant: &str) -> uuid::Uuid {
        let scope = docpipe_ingest::sync::Scope::new(
            docpipe_core::domain::keys::Tenant::new(tenant).unwrap(),
            "",
        )
        .unwrap();
        let by = docpipe_ingest::sync::StartedBy::Request;
        let id = docpipe_ingest::sync::start(&self.deployment.pipeline, &scope, false, by)
            .await
            .expect("the sync starts")
            .id();
        let slice = docpipe_ingest::sync::slice_message(id);
        self.send(&self.resources.uploads.url, &slice).await;
        id
    }

    /// Turns the bucket's notifications off: objects written after it
    /// reach no queue, as with a lost or misconfigured notification.
    pub async fn notifications_off(&self) {
        self.s3
            .put_bucket_notification_configuration()
            .bucket(&self.resources.bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder().build(),
            )
            .send()
            .await
            .expect("notifications off");
    }

    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.put_with_metadata(key, body, &[]).await
    }

    /// Puts an object with S3 user metadata (`x-amz-meta-<name>: <value>`).
    pub async fn put_with_metadata(
        &self,
        key: &str,
        body: impl Into<Vec<u8>>,
        user_metadata: &[(&str, &str)],
    ) {
        let mut put = self
            .s3
            .put_object()
            .bucket(&self.resources.bucket)
            .key(key)
            .body(body.into().into());
        for (name, value) in user_metadata {
            put = put.metadata(*name, *value);
        }
        put.send().await.expect("PutObject");
    }

    pub async fn delete(&self, key: &str) {
        self.s3
            .delete_object()
            .bucket(&self.resources.bucket)
            .key(key)
            .send()
            .await
            .expect("DeleteObject");
    }

    pub async fn object_exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.resources.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    pub async fn send(&self, queue_url: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
    }

    /// Messages in a queue, visible and in flight.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        docpipe_aws::sqs::queue_depth(&self.sqs, queue_url)
            .await
            .expect("GetQueueAttributes")
            .total()
    }

    /// Messages in all four dead-letter queues.
    pub async fn dead_letter_count(&self) -> u64 {
        let r = &self.resources;
        let mut total = 0;
        for queue in [&r.uploads, &r.parse, &r.chunk, &r.embed] {
            total += self.depth(&queue.dlq_url).await;
        }
        total
    }

    /// The bodies in a dead-letter queue (received, left in place).
    pub async fn dead_letters(&self, dlq_url: &str) -> Vec<String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("ReceiveMessage");
        out.messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_string))
            .collect()
    }

    /// The document's searchable chunks.
    pub async fn chunks_of(&self, key: &str) -> i64 {
        self.test_db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM upload_pipeline.document_chunks WHERE source_key = $1",
                &[&key],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// How many jobs are in `state`.
    pub async fn count_in_state(&self, state: &str) -> i64 {
        self.test_db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE state = $1",
                &[&state],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The error message of the document's latest job: the tenant's.
    pub async fn error_message(&self, key: &str) -> Option<String> {
        self.latest_job_column(key, "error_message").await
    }

    /// The reason in full of the document's latest job: the operators'.
    pub async fn error_detail(&self, key: &str) -> Option<String> {
        self.latest_job_column(key, "error_detail").await
    }

    async fn latest_job_column(&self, key: &str, column: &str) -> Option<String> {
        let sql = format!(
            "SELECT {column} FROM upload_pipeline.upload_jobs
              WHERE source_key = $1 ORDER BY created_at DESC LIMIT 1"
        );
        self.test_db
            .client()
            .await
            .query_one(&sql, &[&key])
            .await
            .unwrap()
            .get(0)
    }

    /// `(state, error_code)` of the document's jobs, oldest first.
    pub async fn jobs_of(&self, key: &str) -> Vec<(String, Option<String>)> {
        self.test_db
            .client()
            .await
            .query(
                "SELECT state, error_code FROM upload_pipeline.upload_jobs WHERE source_key = $1 ORDER BY created_at",
                &[&key],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Waits until the document's latest job is in `state`.
    pub async fn wait_for_state(&self, key: &str, state: &str) {
        wait_until(WITHIN, &format!("{key} to be {state}"), async || {
            self.jobs_of(key)
                .await
                .last()
                .is_some_and(|(s, _)| s == state)
        })
        .await;
    }

    /// Waits until every queue of the stack is empty, twice in a row.
    pub async fn wait_idle(&self, within: Duration) {
        let queues = [
            &self.resources.uploads.url,
            &self.resources.parse.url,
            &self.resources.chunk.url,
            &self.resources.embed.url,
        ];
        let mut quiet = 0;
        wait_until(within, "all queues empty", async || {
            let mut total = 0;
            for url in queues {
                total += self.depth(url).await;
            }
            quiet = if total == 0 { quiet + 1 } else { 0 };
            quiet >= 2
        })
        .await;
    }
}

/// An S3 notification as the uploads queue receives it, for events S3
/// would not send in this order (or at all).
pub fn s3_notification(bucket: &str, key: &str, event: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T03:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AWS:TEST"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "TEST000000000000", "x-amz-id-2": "test"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "TEST"},
                          "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": 1, "eTag": "test", "sequencer": "0A1B"}}
    }]})
    .to_string()
}

/// The event-source runner over the stack's four queues: batches of 10, two
/// pollers per queue, 1 s long polls.
/// How a test's runner differs from the deployed shape's: S3's
/// notifications lost, a reconcile on a schedule.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunnerOptions {
    pub lose_notifications: bool,
    pub reconcile_every: Option<Duration>,
}

fn runner_for(
    deployment: Arc<Deployment>,
    sqs: &aws_sdk_sqs::Client,
    resources: &Resources,
    options: RunnerOptions,
) -> JoinSet<()> {
    let sources = [
        (&resources.uploads, Function::Uploads),
        (&resources.parse, Function::Parse),
        (&resources.chunk, Function::Chunk),
        (&resources.embed, Function::Embed),
    ]
    .into_iter()
    .map(|(queue, function)| EventSource {
        queue_url: queue.url.clone(),
        queue_arn: queue.arn.clone(),
        function,
        batch_size: 10,
        concurrency: 2,
        wait_secs: 1,
        lose_notifications: options.lose_notifications && function == Function::Uploads,
    })
    .collect();
    let schedules = event_source::Schedules {
        sweeps: None,
        reconciles: options
            .reconcile_every
            .map(|every| event_source::Reconciles {
                every,
                uploads_queue_url: resources.uploads.url.clone(),
            }),
    };
    event_source::start(deployment, sqs.clone(), sources, schedules)
}

/// Polls `done` every 200 ms until it is true; panics naming `what` after `within`.
pub async fn wait_until(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
