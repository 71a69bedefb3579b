#!/usr/bin/env python3
"""Records the reference vectors the local provider is held to.

sentence-transformers (the reference implementation) embeds a fixed set of
texts with the model directory given, and the texts and vectors are written
as JSON: tests/fixtures/minilm-reference.json came from

    python scripts/reference-vectors.py .local/models/all-MiniLM-L6-v2 \
        > tests/fixtures/minilm-reference.json

in a virtualenv with `pip install sentence-transformers`. Tests never need
Python: they read the file.
"""
import json
import sys

from sentence_transformers import SentenceTransformer

TEXTS = [
    "neap tides",
    "How do ships find their way in fog?",
    "The harbour master may close the inner basin when the swell exceeds two metres.",
    "Fehlercode E-4012: Der Sensor meldet eine Überlast. Café, naïve, façade — accents stay.",
    "東京の港は夜明けに開きます。 The port of Tokyo opens at dawn.",
    "x",
    "   spaces   and\ttabs\nand new lines   ",
    " ".join(
        "The lighthouse keeper logs the lamp's hours, the fog signal's hours and every "
        "vessel that answers the light; the log is read at each change of watch.".split()
        * 4
    ),
]


def main() -> None:
    model = SentenceTransformer(sys.argv[1], device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=False, convert_to_numpy=True)
    json.dump(
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "made_by": f"sentence-transformers {__import__('sentence_transformers').__version__}",
            "cases": [
                {"text": text, "vector": [round(float(x), 7) for x in vector]}
                for text, vector in zip(TEXTS, vectors)
            ],
        },
        sys.stdout,
        indent=None,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
