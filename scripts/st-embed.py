#!/usr/bin/env python3
"""The reference side of docpipe-local-embed-bench: sentence-transformers
embeds the chunks in FILE (one JSON string a line) with the model in DIR, in
batches of BATCH, and prints the embedding time (not the load) and its peak
RSS as JSON.

    python scripts/st-embed.py DIR FILE BATCH
"""
import json
import resource
import sys
import time

from sentence_transformers import SentenceTransformer


def main() -> None:
    model_dir, path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, encoding="utf-8") as lines:
        texts = [json.loads(line) for line in lines]
    model = SentenceTransformer(model_dir, device="cpu")
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch, normalize_embeddings=False)
    secs = time.perf_counter() - started
    assert len(vectors) == len(texts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"chunks": len(texts), "secs": secs, "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
