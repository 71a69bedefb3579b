//! `docpipe-local-runner provision` creates the bucket and queues from the
//! SAM template (as a CloudFormation stack) and prints their settings; `docpipe-local-runner run` feeds the queues to the
//! functions' handlers until interrupted.

use clap::{Parser, Subcommand};
use docpipe_core::ConfigError;
use docpipe_core::ops::telemetry;
use docpipe_core::settings::{Env, Parts, PipelineSettings, SweepPolicy};
use docpipe_ingest::drivers::Deployment;
use docpipe_local_runner::event_source::{self, EventSource, Function};
use docpipe_local_runner::provision::{self, Error, QueueSettings};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the template's bucket, queues, DLQs and S3 notifications as a
    /// stack (or find it created); print `export` lines.
    Provision {
        #[arg(long, default_value = "docpipe")]
        stack_name: String,
        #[arg(long, default_value_t = 30)]
        visibility_timeout_secs: u32,
        #[arg(long, env = "MAX_RECEIVE_COUNT", default_value_t = 5)]
        max_receive_count: u32,
    },
    /// Poll the queues and invoke the handlers, as Lambda's event source mappings do.
    Run {
        #[arg(long, env = "UPLOADS_QUEUE_URL")]
        uploads_queue_url: String,
        /// Records per invocation.
        #[arg(long, default_value_t = 10)]
        batch_size: i32,
        /// Concurrent invocations per queue.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Seconds between sweeps (the sweeper's schedule); 0 turns it off.
        #[arg(long, default_value_t = 60)]
        sweep_every_secs: u64,
        /// Seconds between reconciles, a sync of every tenant's folder (the
        /// template's `ReconcileSchedule`); 0 turns it off.
        #[arg(long, default_value_t = 3600)]
        reconcile_every_secs: u64,
        /// A drill: delete S3's notifications unread, as if lost on the way;
        /// only a sync or the reconcile then finds the objects.
        #[arg(long)]
        lose_upload_events: bool,
    },
}

/// How long the runner waits at start for the database to accept connections.
const START_WAIT: Duration = Duration::from_secs(120);

/// The deployment, once the database accepts connections: a Lambda whose
/// cold start fails is started again by the next invocation, so the runner
/// tries again while the database is unreachable (restarting, in crash
/// recovery) rather than exit. A configuration error ends it at once.
async fn deployment_when_ready(sdk: &aws_config::SdkConfig) -> Result<Deployment, Error> {
    let started = std::time::Instant::now();
    loop {
        let env = Env::from_process();
        let settings = PipelineSettings::load(&env, Parts::ALL)?;
        match Deployment::new(&settings, env.load()?, sdk).await {
            Err(ConfigError::Database(reason)) if started.elapsed() < START_WAIT => {
                tracing::warn!(%reason, "database not ready; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            deployment => return Ok(deployment?),
        }
    }
}

fn main() -> Result<(), Error> {
    // Documents are parsed in children of this executable: one parses here and exits.
    docpipe_ingest::parsing::sandbox::serve_if_child();
    runner_main()
}

#[tokio::main]
async fn runner_main() -> Result<(), Error> {
    telemetry::init("info");
    let sdk = docpipe_aws::sdk::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    match Cli::parse().command {
        Command::Provision {
            stack_name,
            visibility_timeout_secs,
            max_receive_count,
        } => {
            let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
            let settings = QueueSettings {
                visibility_timeout_secs,
                max_receive_count,
            };
            let resources =
                provision::provision(&cloudformation, &sqs, &stack_name, &settings).await?;
            print!("{}", resources.env_lines());
        }
        Command::Run {
            uploads_queue_url,
            batch_size,
            concurrency,
            sweep_every_secs,
            reconcile_every_secs,
            lose_upload_events,
        } => {
            let deployment = Arc::new(deployment_when_ready(&sdk).await?);
            let queues = &deployment.aws.queues;
            let mut sources = Vec::new();
            for (url, function) in [
                (&uploads_queue_url, Function::Uploads),
                (&queues.parse, Function::Parse),
                (&queues.chunk, Function::Chunk),
                (&queues.embed, Function::Embed),
            ] {
                sources.push(EventSource {
                    queue_arn: provision::queue_arn(&sqs, url).await?,
                    queue_url: url.clone(),
                    function,
                    batch_size,
                    concurrency,
                    wait_secs: 20,
                    lose_notifications: lose_upload_events && function == Function::Uploads,
                });
            }
            let sweeps = (sweep_every_secs > 0)
                .then(|| -> Result<_, Error> {
                    Ok(event_source::Sweeps {
                        every: Duration::from_secs(sweep_every_secs),
                        policy: Env::from_process().load::<SweepPolicy>()?,
                    })
                })
                .transpose()?;
            let reconciles = (reconcile_every_secs > 0).then(|| event_source::Reconciles {
                every: Duration::from_secs(reconcile_every_secs),
                uploads_queue_url: uploads_queue_url.clone(),
            });
            let schedules = event_source::Schedules { sweeps, reconciles };
            let mut tasks = event_source::start(deployment, sqs, sources, schedules);
            tracing::info!("polling; Ctrl-C stops");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = tasks.join_next() => {}
            }
        }
    }
    Ok(())
}
