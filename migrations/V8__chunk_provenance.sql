-- Where each chunk came from: its page range (PDF pages, slides, sheets),
-- the titles of the headings above it, outermost first, and its range of
-- table rows. NULL pages or rows: the document has none. Chunks made before
-- this migration have none either, until their document is ingested again.
ALTER TABLE upload_pipeline.document_chunk_buffer
    ADD COLUMN page_start integer,
    ADD COLUMN page_end   integer,
    ADD COLUMN headings   jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN row_start  integer,
    ADD COLUMN row_end    integer;
ALTER TABLE upload_pipeline.document_chunks
    ADD COLUMN page_start integer,
    ADD COLUMN page_end   integer,
    ADD COLUMN headings   jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN row_start  integer,
    ADD COLUMN row_end    integer;
