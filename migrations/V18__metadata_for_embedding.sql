-- A sidecar's attributes marked `includeForEmbedding` (Bedrock's typed
-- form), as the text each chunk of its document is embedded with: one
-- `name: value` line each, by name. NULL when none is marked. A change of it
-- embeds the document's chunks again; a change of other attributes only
-- updates their metadata.
ALTER TABLE upload_pipeline.metadata_sidecars ADD COLUMN for_embedding text;
