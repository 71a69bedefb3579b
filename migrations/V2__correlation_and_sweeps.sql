-- Correlation ids follow an upload through every stage's logs; the sweeper
-- counts how often it had to resume a stuck job before giving up on it.
ALTER TABLE upload_pipeline.upload_jobs
    ADD COLUMN correlation_id text NOT NULL DEFAULT '',
    ADD COLUMN sweep_count integer NOT NULL DEFAULT 0;

-- The sweeper's scan: unfinished jobs by how long they have been idle.
CREATE INDEX upload_jobs_unfinished_idx ON upload_pipeline.upload_jobs (updated_at)
    WHERE state IN ('queued', 'parsed', 'chunked');
