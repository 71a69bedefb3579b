//! Which model's vectors each tenant's searches read (`tenant_models`).

use crate::error::Result;
use deadpool_postgres::GenericClient;

/// The model `tenant` switched to, if it did: else it searches the
/// deployment's model.
pub async fn switched_to(client: &impl GenericClient, tenant: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT model FROM upload_pipeline.tenant_models WHERE tenant = $1",
            &[&tenant],
        )
        .await?
        .map(|row| row.get(0)))
}
