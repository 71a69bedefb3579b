//! Where `search` and `eval` search: the database, for a tenant named with
//! `--tenant`, or the HTTP API (`--api`), for the API key's tenant.

use crate::api::ApiClient;
use anyhow::{Context, bail};
use docpipe_core::db;
use docpipe_core::domain::keys::Tenant;
use docpipe_core::settings::{Env, Parts, PipelineSettings};
use docpipe_search::context::ContextRequest;
use docpipe_search::{self as search, SearchHit, SearchMode, SearchParts};
use serde_json::Value;

pub enum Searcher {
    Api(ApiClient),
    Database {
        tenant: Tenant,
        pool: db::Pool,
        parts: Box<SearchParts>,
    },
}

impl Searcher {
    /// Through `api` if given, else the database for `tenant`.
    pub async fn new(api: Option<ApiClient>, tenant: Option<String>) -> anyhow::Result<Searcher> {
        match (api, tenant) {
            (Some(_), Some(_)) => {
                bail!("--tenant is not used with --api: the API key decides the tenant")
            }
            (Some(api), None) => Ok(Searcher::Api(api)),
            (None, None) => bail!("--tenant is required (or --api with an API key)"),
            (None, Some(tenant)) => {
                let config = PipelineSettings::load(&Env::from_process(), Parts::EMBED)?;
                Ok(Searcher::Database {
                    tenant: Tenant::new(&tenant)?,
                    pool: db::connect(&config.database).await?,
                    parts: Box::new(SearchParts::new(
                        &config,
                        docpipe_ingest::embedding::models(&config)?,
                    )?),
                })
            }
        }
    }

    /// The hits of one search; `filter` as the API takes it.
    pub async fn search(
        &self,
        text: &str,
        (top_k, mode): (u32, SearchMode),
        (context, rerank): (Option<ContextRequest>, bool),
        filter: Option<Value>,
    ) -> anyhow::Result<Vec<SearchHit>> {
        let (tenant, pool, parts) = match self {
            Searcher::Api(api) => {
                return api
                    .search(text, (top_k, mode), (context, rerank), filter)
                    .await;
            }
            Searcher::Database {
                tenant,
                pool,
                parts,
            } => (tenant, pool, parts),
        };
        let filter: search::FilterRequest =
            serde_json::from_value(filter.unwrap_or_else(|| serde_json::json!({})))
                .context("--filter")?;
        let filter = filter.scoped(tenant).map_err(anyhow::Error::msg)?;
        let query = search::Query {
            text,
            top_k,
            mode,
            filter: &filter,
            context,
            rerank,
        };
        Ok(search::search(pool, parts, tenant, &query).await?)
    }
}
