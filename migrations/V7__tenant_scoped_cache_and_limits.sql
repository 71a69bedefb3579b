-- Tenant safety. The embedding cache is scoped: by default each tenant
-- reuses only vectors of its own texts, so what a tenant is billed never
-- tells whether another tenant holds a text (scope '' is the shared scope
-- of EMBEDDING_CACHE_SCOPE=shared, and holds the vectors cached before this
-- migration). Each tenant keeps the cached vectors of the texts it holds
-- live already, so no re-ingest pays for them again.
ALTER TABLE upload_pipeline.embedding_cache ADD COLUMN scope text NOT NULL DEFAULT '';
ALTER TABLE upload_pipeline.embedding_cache DROP CONSTRAINT embedding_cache_pkey;
ALTER TABLE upload_pipeline.embedding_cache ADD PRIMARY KEY (text_sha256, model, dims, scope);
INSERT INTO upload_pipeline.embedding_cache (text_sha256, model, dims, scope, embedding, created_at)
SELECT DISTINCT ON (c.text_sha256, c.model, c.dims, d.tenant)
       c.text_sha256, c.model, c.dims, d.tenant, c.embedding, c.created_at
  FROM upload_pipeline.document_chunks d
  JOIN upload_pipeline.embedding_cache c
    ON c.scope = '' AND c.model = d.model
   AND c.text_sha256 = sha256(convert_to(d.text, 'UTF8'))
ON CONFLICT DO NOTHING;

-- Spending outside jobs (a search's query) has no job.
ALTER TABLE upload_pipeline.cost_ledger ALTER COLUMN job_id DROP NOT NULL;

-- Per-tenant limits beside the deployment's: a NULL column takes the
-- default setting (TENANT_DAILY_BUDGET_USD, TENANT_HOURLY_REQUEST_CAP,
-- TENANT_API_REQUESTS_PER_MINUTE).
CREATE TABLE upload_pipeline.tenant_limits (
    tenant                   text PRIMARY KEY,
    daily_budget_usd         double precision CHECK (daily_budget_usd >= 0),
    hourly_request_cap       integer CHECK (hourly_request_cap >= 0),
    api_requests_per_minute  integer CHECK (api_requests_per_minute > 0)
);
