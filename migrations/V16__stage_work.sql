-- The stage messages each tenant has in hand: what a tenant's fair share of
-- a stage's workers is counted in (`TENANT_STAGE_SHARE`). A row is taken as
-- work on a message starts and removed as it ends; one whose holder died
-- counts until `until` (the stage deadline). Unlogged: after a crash the
-- table is empty, which is right, as nothing is in hand then. No foreign
-- key: a job row's lock must not wait on this table's writes.
CREATE UNLOGGED TABLE upload_pipeline.stage_work (
    job_id  uuid NOT NULL,
    stage   text NOT NULL,
    part    integer NOT NULL,
    tenant  text NOT NULL,
    until   timestamptz NOT NULL,
    PRIMARY KEY (job_id, stage, part)
);
CREATE INDEX stage_work_tenant_idx ON upload_pipeline.stage_work (stage, tenant);
