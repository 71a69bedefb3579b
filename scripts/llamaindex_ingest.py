"""LlamaIndex's side of scripts/llamaindex-bench: a folder to searchable
(vectors stored, HNSW index built) with LlamaIndex at its default settings:
SimpleDirectoryReader, an IngestionPipeline of the default SentenceSplitter
(1 024 tokens, 200 overlap) and a mock embedding, into PGVectorStore with
the HNSW index docpipe builds (m 16, ef_construction 64, cosine).

The mock embedding is docpipe's (`shared/src/embedding/mock.rs`: hashed
words and word pairs, unit length), so both sides index vectors of the same
structure; LlamaIndex's own MockEmbedding gives every text one vector.
Prints one JSON line: seconds from reading the folder to the last row
written (imports not counted), nodes stored. Usage:
  python llamaindex_ingest.py DIR DATABASE_URL DIMS
"""

import json
import re
import sys
import time
from urllib.parse import urlparse

from llama_index.core import SimpleDirectoryReader
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.vector_stores.postgres import PGVectorStore

MASK = (1 << 64) - 1


def word_hash(word):
    hash = 0xCBF29CE484222325
    for byte in word.lower():
        hash = ((hash ^ byte) * 0x100000001B3) & MASK
    return hash


def mock_vector(text, dims):
    sums = [0.0] * dims

    def add(hash):
        sums[hash % dims] += 1.0 if hash >> 63 == 0 else -1.0

    previous = None
    for word in re.findall(rb"[A-Za-z0-9\x80-\xff]+", text.encode()):
        hash = word_hash(word)
        add(hash)
        if previous is not None:
            rotated = ((previous << 17) | (previous >> 47)) & MASK
            add(rotated ^ ((hash * 0x9E3779B97F4A7C15) & MASK))
        previous = hash
    norm = sum(x * x for x in sums) ** 0.5 or 1.0
    return [x / norm for x in sums]


class DocpipeMockEmbedding(BaseEmbedding):
    dims: int

    def _get_text_embedding(self, text):
        return mock_vector(text, self.dims)

    def _get_query_embedding(self, query):
        return mock_vector(query, self.dims)

    async def _aget_query_embedding(self, query):
        return mock_vector(query, self.dims)


def main():
    folder, url, dims = sys.argv[1], urlparse(sys.argv[2]), int(sys.argv[3])
    started = time.perf_counter()
    documents = SimpleDirectoryReader(folder, recursive=True, exclude_hidden=False).load_data()
    store = PGVectorStore.from_params(
        host=url.hostname,
        port=str(url.port),
        database=url.path.lstrip("/"),
        user=url.username,
        password=url.password,
        table_name="llamaindex_bench",
        embed_dim=dims,
        hnsw_kwargs={
            "hnsw_m": 16,
            "hnsw_ef_construction": 64,
            "hnsw_ef_search": 40,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(), DocpipeMockEmbedding(dims=dims)],
        vector_store=store,
    )
    nodes = pipeline.run(documents=documents)
    print(json.dumps({"seconds": time.perf_counter() - started, "nodes": len(nodes)}))


if __name__ == "__main__":
    main()
