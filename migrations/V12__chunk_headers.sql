-- Contextual chunk headers (CHUNK_HEADER): a chunk may be embedded under a
-- header (its file name and headings). `embed_header` is that header (NULL:
-- the text alone) and `embed_tokens` the tokens of header and text together
-- (NULL: `token_count`); `text_sha256` is the hash of what is embedded, the
-- embedding cache's key.
ALTER TABLE upload_pipeline.document_chunk_buffer
    ADD COLUMN embed_header text,
    ADD COLUMN embed_tokens int4;

-- Searchable chunks keep the same three, so that re-embedding (a model
-- change, fallback vectors replaced) embeds what ingest embedded and finds
-- it in the cache by its stored hash instead of hashing every text again.
ALTER TABLE upload_pipeline.document_chunks
    ADD COLUMN embed_header text,
    ADD COLUMN embed_tokens int4,
    ADD COLUMN text_sha256  bytea;
UPDATE upload_pipeline.document_chunks SET text_sha256 = sha256(convert_to(text, 'UTF8'));
ALTER TABLE upload_pipeline.document_chunks ALTER COLUMN text_sha256 SET NOT NULL;
