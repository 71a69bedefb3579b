-- A failed job's reason in full, for operators only: a provider's own words
-- (credentials redacted), which `error_message`, the tenant's, leaves out.
ALTER TABLE upload_pipeline.upload_jobs ADD COLUMN error_detail text;
