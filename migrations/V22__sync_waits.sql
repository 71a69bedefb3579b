-- Why a sync is not adding work just now (its tenant's documents in the
-- pipeline are at their bound, or the tenant's spending is stopped): shown
-- by `GET /v1/syncs`, the CLI and the dashboard; cleared when it moves on.
-- `scheduled`: started by the scheduled reconcile rather than by someone.
ALTER TABLE upload_pipeline.syncs
    ADD COLUMN waiting text,
    ADD COLUMN scheduled boolean NOT NULL DEFAULT false;
