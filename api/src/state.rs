//! What the routes share: the capabilities they use, each no wider than
//! they need, so a route's checks run without the services behind the rest.

use crate::auth::Auth;
use crate::bedrock::{Bedrock, KnowledgeBases, paging::PageTokens, sigv4::SigV4Keys};
use crate::error::ApiError;
use crate::rate_limit;
use crate::settings::ApiSettings;
use axum::response::Response;
use docpipe_core::ConfigError;
use docpipe_core::cost::ledger;
use docpipe_core::db::Pool;
use docpipe_core::settings::{ExposeSecret, QueueUrls, invalid};
use docpipe_ingest::drivers::Deployment;
use docpipe_ingest::pipeline::Pipeline;
use docpipe_search::{self as search, SearchParts};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// How long a search waits for its tenant's search slots before it is told
/// to come back.
const SEARCH_SLOT_WAIT: Duration = Duration::from_secs(5);

pub struct Api {
    pub auth: Auth,
    /// Bedrock's routes: knowledge bases, SigV4 keys, page tokens.
    pub bedrock: Bedrock,
    /// Reads of the caller's jobs, documents and metrics.
    pub db: Pool,
    /// The query's embedding, and the prices and budgets it counts against.
    pub search: SearchParts,
    /// Deleting and reprocessing documents: the pipeline's own steps.
    pub pipeline: Arc<Pipeline>,
    /// Presigned uploads into the bucket.
    pub presigner: Presigner,
    /// What `GET /v1/health` looks at besides the database: the bucket, the queues.
    pub infrastructure: Infrastructure,
    /// Each tenant's requests a minute.
    rates: rate_limit::TenantRates,
    /// Failed authentications: logged, and throttled past a rate.
    failed_authentications: rate_limit::FailedAuthentications,
    /// Each tenant's searches in flight, weighed by the rows they read.
    search_slots: rate_limit::SearchSlots,
    /// Tenants that see deployment-wide figures (every tenant's messages in
    /// the queues): the operators' (`API_OPERATOR_TENANTS`).
    pub operators: HashSet<String>,
}

pub struct Presigner {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// How long a presigned upload URL stays valid.
    pub ttl: Duration,
    /// The largest upload it signs for.
    pub max_file_bytes: u64,
}

pub struct Infrastructure {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub sqs: aws_sdk_sqs::Client,
    /// The queues `GET /v1/health` reports.
    pub queues: Vec<WatchedQueue>,
}

/// A queue and its dead-letter queue, as health reports them.
#[derive(Debug, Clone)]
pub struct WatchedQueue {
    pub name: &'static str,
    pub url: String,
    pub dead_letter_url: Option<String>,
}

/// The clients an [`Api`] is made of; none of them connects until used.
pub struct ApiParts {
    /// Built with the embedder (`Parts::EMBED`).
    pub pipeline: Pipeline,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub bucket: String,
    pub stage_queues: QueueUrls,
    /// The pipeline's models, with the reranker and the scan's settings.
    pub search: SearchParts,
}

impl Api {
    /// The API over a function's deployment (built with the embedder).
    pub fn new(
        deployment: Deployment,
        auth: Auth,
        settings: &ApiSettings,
    ) -> Result<Api, ConfigError> {
        let models = deployment
            .pipeline
            .embedding()
            .map_err(|_| ConfigError::Unreadable("the API needs the embedder".into()))?
            .models
            .clone();
        let parts = ApiParts {
            search: SearchParts::new(&deployment.settings, models)?,
            pipeline: deployment.pipeline,
            s3: deployment.s3,
            sqs: deployment.sqs,
            bucket: deployment.aws.bucket,
            stage_queues: deployment.aws.queues,
        };
        Api::from_parts(parts, auth, settings)
    }

    pub fn from_parts(
        parts: ApiParts,
        auth: Auth,
        settings: &ApiSettings,
    ) -> Result<Api, ConfigError> {
        let stages = &parts.stage_queues;
        let mut queues = Vec::new();
        for (name, url, dead_letter_url) in [
            (
                "uploads",
                settings.uploads_queue_url.clone(),
                &settings.uploads_dlq_url,
            ),
            ("parse", Some(stages.parse.clone()), &settings.parse_dlq_url),
            ("chunk", Some(stages.chunk.clone()), &settings.chunk_dlq_url),
            ("embed", Some(stages.embed.clone()), &settings.embed_dlq_url),
        ] {
            if let Some(url) = url {
                queues.push(WatchedQueue {
                    name,
                    url,
                    dead_letter_url: dead_letter_url.clone(),
                });
            }
        }
        let per_minute =
            NonZeroU32::new(settings.tenant_api_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let region = settings
            .sigv4_region
            .clone()
            .or_else(|| parts.s3.config().region().map(|region| region.to_string()))
            .unwrap_or_else(|| "us-east-1".into());
        let secret = |value: &Option<docpipe_core::settings::Secret>| {
            value
                .as_ref()
                .map(|secret| secret.expose_secret().to_string())
        };
        let bedrock = Bedrock {
            knowledge_bases: KnowledgeBases::parse(&settings.knowledge_bases)
                .map_err(|e| invalid("KNOWLEDGE_BASES", &settings.knowledge_bases, &e))?,
            sigv4: SigV4Keys::parse(&secret(&settings.sigv4_keys).unwrap_or_default(), &region)
                .map_err(|e| invalid("SIGV4_KEYS", "(secret)", &e))?,
            page_tokens: PageTokens::new(secret(&settings.page_token_key).as_deref()),
        };
        let pipeline = Arc::new(parts.pipeline);
        Ok(Api {
            auth,
            bedrock,
            db: pipeline.db.clone(),
            search: parts.search,
            presigner: Presigner {
                s3: parts.s3.clone(),
                bucket: parts.bucket.clone(),
                ttl: settings.upload_url_ttl,
                max_file_bytes: pipeline.max_file_bytes,
            },
            infrastructure: Infrastructure {
                s3: parts.s3,
                bucket: parts.bucket,
                sqs: parts.sqs,
                queues,
            },
            pipeline,
            rates: rate_limit::TenantRates::new(per_minute),
            failed_authentications: Default::default(),
            search_slots: rate_limit::SearchSlots::new(
                settings.tenant_search_slots,
                SEARCH_SLOT_WAIT,
            ),
            operators: settings.api_operator_tenants.iter().cloned().collect(),
        })
    }

    /// Counts `requests` requests of `tenant` (a costly one weighs more):
    /// 429 once it is over its allowance.
    pub(crate) async fn admit(&self, tenant: &str, requests: NonZeroU32) -> Result<(), ApiError> {
        let override_per_minute = async {
            let client = self.db.get().await.ok()?;
            ledger::api_requests_per_minute(&client, tenant)
                .await
                .ok()?
        };
        self.rates
            .admit(tenant, requests, override_per_minute)
            .await
            .map_err(|over| {
                let message = format!(
                    "tenant {tenant} is over its {} requests a minute; retry later",
                    over.per_minute
                );
                ApiError::too_many("rate_limited", message, over.retry_in)
            })
    }

    /// Slots for a search of `tenant` reading `rows`, held while the
    /// permit lives; 429 if the tenant's slots stay taken.
    pub(crate) async fn search_slots(
        &self,
        tenant: &str,
        rows: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.search_slots.take(tenant, rows).await.ok_or_else(|| {
            ApiError::too_many(
                "search_slots_full",
                format!("tenant {tenant}'s searches fill its search slots; retry shortly"),
                Duration::from_secs(1),
            )
        })
    }

    /// Runs `query` (its size checked by the caller) once its text is (named
    /// `text_name`) and the tenant has search slots for it; `answer` makes
    /// the response from the hits while the slots are held, since writing
    /// out a large answer costs too.
    pub(crate) async fn search(
        &self,
        tenant: &str,
        query: &search::Query<'_>,
        text_name: &str,
        answer: impl FnOnce(Vec<search::SearchHit>) -> Response,
    ) -> Result<Response, ApiError> {
        let text = query.text.trim();
        if text.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{text_name} must not be empty"
            )));
        }
        // Refused before it is embedded (and paid for): no chunk holds one.
        if text.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "{text_name} has a NUL character"
            )));
        }
        let query = search::Query {
            text,
            ..query.clone()
        };
        let _slots = self.search_slots(tenant, query.rows()).await?;
        let hits = search::search(&self.db, &self.search, tenant, &query).await?;
        Ok(answer(hits))
    }

    /// The error for a caller that failed to authenticate: 401, or 429
    /// while failures come faster than they are logged one by one.
    pub(crate) fn unauthenticated(&self, hint: String) -> ApiError {
        match self.failed_authentications.count(&hint) {
            None => ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", hint),
            Some(wait) => ApiError::too_many(
                "rate_limited",
                "too many failed authentications; retry later",
                wait,
            ),
        }
    }

    pub(crate) async fn client(&self) -> Result<docpipe_core::db::Client, ApiError> {
        Ok(self.db.get().await.map_err(docpipe_core::Error::from)?)
    }
}
