-- Syncs asked for through Bedrock's StartIngestionJob are its ingestion
-- jobs: Bedrock names them by ten capitals and digits (the start of the
-- sync's id), and gives them a description.
ALTER TABLE upload_pipeline.syncs
    ADD COLUMN ingestion_job_id text,
    ADD COLUMN description      text;
CREATE UNIQUE INDEX syncs_by_ingestion_job
    ON upload_pipeline.syncs (tenant, knowledge_base_id, ingestion_job_id);
