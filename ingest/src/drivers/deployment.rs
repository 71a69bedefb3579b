//! A function's clients and settings, built once per container: the
//! Lambda functions', the API's and the local runner's.

use crate::drivers::delivery::DeliveryPolicy;
use crate::pipeline::Pipeline;
use docpipe_aws::s3::{self, S3BlobStore};
use docpipe_aws::sdk;
use docpipe_aws::sqs::SqsQueue;
use docpipe_core::db;
use docpipe_core::error::ConfigError;
use docpipe_core::settings::{AwsResources, Parts, PipelineSettings};
use std::sync::Arc;
use std::time::Duration;

/// A function's clients and settings, built once per container and reused
/// by every invocation.
pub struct Deployment {
    pub pipeline: Pipeline,
    pub aws: AwsResources,
    /// Attempts (the queues' `maxReceiveCount`) and the deadline of each.
    pub delivery: DeliveryPolicy,
    /// The clients behind the pipeline's blob store and queue, for what
    /// only the API does with them (presigned uploads, queue depths).
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The settings it was built with, for what else the function builds
    /// (the API's search).
    pub settings: PipelineSettings,
}

impl Deployment {
    /// A function's pipeline with `parts` from the environment and the
    /// secrets it names, as a Lambda cold start builds it: only the settings
    /// (and keys) of those parts are read.
    pub async fn from_env(parts: Parts) -> Result<Deployment, ConfigError> {
        let sdk = sdk::sdk_config().await;
        let env = super::handlers::settings(&sdk).await?;
        Deployment::new(&PipelineSettings::load(&env, parts)?, env.load()?, &sdk).await
    }

    pub async fn new(
        config: &PipelineSettings,
        aws: AwsResources,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Deployment, ConfigError> {
        let db = db::connect(&config.database).await?;
        let s3 = s3::s3_client(sdk, aws.s3_force_path_style);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let blobs = S3BlobStore::new(s3.clone(), &aws.bucket);
        let queue = SqsQueue::new(sqs.clone(), aws.queues.clone());
        let pipeline = Pipeline::new(config, db, Arc::new(blobs), Arc::new(queue))?;
        let delivery = DeliveryPolicy {
            max_attempts: aws.max_receive_count,
            deadline: config.stages.stage_deadline,
            // SQS waits its visibility timeout between deliveries.
            first_backoff: Duration::ZERO,
        };
        Ok(Deployment {
            pipeline,
            delivery,
            aws,
            s3,
            sqs,
            settings: config.clone(),
        })
    }
}
