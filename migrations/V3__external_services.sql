-- External services: what each call cost (dollars, HTTP requests) for the
-- budget and the hourly request cap; jobs waiting for spending to resume;
-- LlamaParse jobs submitted for a document.
ALTER TABLE upload_pipeline.cost_ledger
    ADD COLUMN requests integer NOT NULL DEFAULT 0,
    ALTER COLUMN day SET DEFAULT (now() AT TIME ZONE 'utc')::date;
CREATE INDEX cost_ledger_created_idx ON upload_pipeline.cost_ledger (created_at);

ALTER TABLE upload_pipeline.upload_jobs
    -- Set while spending is stopped for this job (budget, request cap); the
    -- sweeper resumes it once `waiting_until` has passed.
    ADD COLUMN waiting_reason text,
    ADD COLUMN waiting_until timestamptz,
    -- The LlamaParse job parsing this version, and when it was submitted.
    ADD COLUMN parse_request_id text,
    ADD COLUMN parse_requested_at timestamptz;
CREATE INDEX upload_jobs_waiting_idx ON upload_pipeline.upload_jobs (waiting_until)
    WHERE waiting_until IS NOT NULL;
