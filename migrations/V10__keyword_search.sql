-- Keyword search: each chunk's words as the text-search configuration
-- SEARCH_TEXT_CONFIG reads them (`{text_search_config}`, fixed at migration
-- like the vector size), indexed for `@@`. Queries are parsed with the same
-- configuration through `text_search_config()`, so both sides always agree.
-- (Adding the column rewrites document_chunks once.)
CREATE FUNCTION upload_pipeline.text_search_config() RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '{text_search_config}'::regconfig $$;
ALTER TABLE upload_pipeline.document_chunks
    ADD COLUMN text_search tsvector
        GENERATED ALWAYS AS (to_tsvector(upload_pipeline.text_search_config(), text)) STORED;
CREATE INDEX document_chunks_text_search_idx
    ON upload_pipeline.document_chunks USING gin (text_search);
