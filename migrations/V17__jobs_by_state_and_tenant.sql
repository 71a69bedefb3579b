-- The tenants with jobs in a state, found one index probe a tenant (the
-- stage's fair share, `store/stage_work.rs`), however long a tenant's backlog.
CREATE INDEX upload_jobs_state_tenant_idx ON upload_pipeline.upload_jobs (state, tenant);
