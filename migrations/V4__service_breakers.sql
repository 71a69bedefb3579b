-- The circuit breaker of each external service, as last reported by any
-- function instance: written when a breaker changes state, read by status
-- and health. `observed_at` orders reports from different instances.
CREATE TABLE upload_pipeline.service_breakers (
    service text PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    observed_at timestamptz NOT NULL
);
