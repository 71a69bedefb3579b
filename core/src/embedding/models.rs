//! Which model makes a tenant's vectors: the deployment's, or during a
//! model change the next one once the tenant has switched to it; its prices,
//! and the column its vectors are in. One type, read by the embed stage,
//! the model change's re-embedding and search alike.

use super::Embedder;
use crate::db::schema::VectorLayout;
use crate::error::{Error, Result};
use crate::external::ExternalService;
use crate::settings::{CostPolicy, PipelineSettings};
use deadpool_postgres::GenericClient;
use std::sync::Arc;

/// The deployment's model and, during a model change, the next one.
#[derive(Clone)]
pub struct Models {
    pub current: Arc<dyn Embedder>,
    /// The prices the current model's calls are billed at, and the budgets.
    pub cost: CostPolicy,
    /// During a model change, the model tenants move to.
    pub next: Option<NextModel>,
    /// The schema's vector columns, read at first use.
    layout: Arc<tokio::sync::OnceCell<VectorLayout>>,
}

/// Where a model's vectors are kept: the model that makes them, their size,
/// and the `document_chunks` column that holds them (a plain name, from the
/// schema). The cache keeps vectors by model and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSlot {
    pub model: String,
    pub dims: i32,
    pub column: String,
}

/// A model change's next model, and the prices its calls are billed at.
#[derive(Clone)]
pub struct NextModel {
    pub embedder: Arc<dyn Embedder>,
    pub cost: CostPolicy,
}

/// The model a tenant's vectors are made by, and its prices.
#[derive(Clone, Copy)]
pub struct Serving<'a> {
    pub embedder: &'a dyn Embedder,
    pub cost: &'a CostPolicy,
}

impl Models {
    /// The deployment's model, and during a model change the next one, at
    /// the prices `settings` give them.
    pub fn new(
        current: Arc<dyn Embedder>,
        next: Option<Arc<dyn Embedder>>,
        settings: &PipelineSettings,
    ) -> Models {
        let next = next.map(|embedder| {
            let mut cost = settings.cost.clone();
            cost.embedding_usd_per_million_tokens = settings
                .next_embedding
                .as_ref()
                .map_or(0.0, |next| next.usd_per_million_tokens());
            NextModel { embedder, cost }
        });
        Models {
            current,
            cost: settings.cost.clone(),
            next,
            layout: Arc::default(),
        }
    }

    /// Where `embedder`'s vectors are kept (a model change to another size
    /// keeps the next model's in a column of their own).
    pub async fn slot(
        &self,
        client: &tokio_postgres::Client,
        embedder: &dyn Embedder,
    ) -> Result<VectorSlot> {
        let layout = self
            .layout
            .get_or_try_init(|| async {
                VectorLayout::read(client)
                    .await
                    .map_err(|e| Error::Transient(e.to_string()))?
                    .ok_or_else(|| Error::Transient("the schema is not migrated".into()))
            })
            .await?;
        Ok(VectorSlot {
            model: embedder.model().to_string(),
            dims: embedder.dims() as i32,
            column: layout.column(embedder.dims()),
        })
    }

    /// The external services the models call.
    pub fn services(&self) -> Vec<&ExternalService> {
        let mut services = self.current.services();
        services.extend(self.next.iter().flat_map(|next| next.embedder.services()));
        services
    }

    /// The model `tenant`'s vectors are made by: the one it switched to
    /// during a model change, else the deployment's. A tenant switched to a
    /// model this deployment no longer configures (the change rolled back
    /// half-way) is an error that says so, not an empty search.
    pub async fn serving(&self, client: &impl GenericClient, tenant: &str) -> Result<Serving<'_>> {
        let current = Serving {
            embedder: self.current.as_ref(),
            cost: &self.cost,
        };
        let Some(model) = switched_to(client, tenant).await? else {
            return Ok(current);
        };
        match &self.next {
            _ if model == current.embedder.model() => Ok(current),
            Some(next) if model == next.embedder.model() => Ok(Serving {
                embedder: next.embedder.as_ref(),
                cost: &next.cost,
            }),
            _ => Err(Error::Transient(format!(
                "tenant {tenant} searches vectors of {model}, which neither EMBEDDING_MODEL \
                 nor NEXT_EMBEDDING_MODEL names: finish or undo the model change"
            ))),
        }
    }
}

/// The model `tenant` switched to (`tenant_models`), if it did: else it
/// searches the deployment's model.
pub async fn switched_to(client: &impl GenericClient, tenant: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT model FROM upload_pipeline.tenant_models WHERE tenant = $1",
            &[&tenant],
        )
        .await?
        .map(|row| row.get(0)))
}
