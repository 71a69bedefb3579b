-- Each new vector is written once before its chunk goes live: to the
-- embedding cache. The vector buffer only records which of a job's chunks
-- are embedded, and by which model; finalize takes each vector from the
-- cache by the chunk's text hash. (Every vector a buffer row stood for is in
-- the cache: embed writes both in one transaction and nothing deletes from
-- the cache, so jobs under way keep theirs across this migration.)
ALTER TABLE upload_pipeline.document_vector_buffer DROP COLUMN embedding;
