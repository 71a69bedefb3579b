-- A paid call's cost is reserved before the call: a ledger row holding the
-- estimate, written in the allowance check's transaction, then settled with
-- the provider's figure. A row never settled (its process died, or the
-- database was away when the answer came) stays on the bill as the estimate:
-- `reserved` while its call may still settle it, `estimated` once the
-- sweeper has closed it. Rows written before this were settled.
ALTER TABLE upload_pipeline.cost_ledger
    ADD COLUMN settlement text NOT NULL DEFAULT 'settled',
    ADD CONSTRAINT cost_ledger_settlement_known
        CHECK (settlement IN ('reserved', 'settled', 'estimated'));
CREATE INDEX cost_ledger_reserved_idx ON upload_pipeline.cost_ledger (created_at)
    WHERE settlement = 'reserved';
