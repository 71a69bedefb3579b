#!/usr/bin/env python3
"""Builds the retrieval-quality corpus from public text already on disk: the
README of every crates.io package in Cargo.lock (cargo has downloaded their
sources into its registry to build docpipe), and two sets of labeled queries.

- summaries.jsonl: each crate's `description` from its Cargo.toml, written by
  its authors for crates.io, as the query; its own README as the one relevant
  document. Descriptions found word for word in their README are left out,
  so these queries ask in other words than the answer's.
- sentences.jsonl: one sentence of prose from a README (10 to 25 words, the
  middle one of its qualifying sentences), found in no other README, as an
  exact-phrase query for its own README.

Neither the queries nor the labels come from docpipe, and every label is
the document the query was taken from or written for.

With --paragraphs it writes instead the prose paragraphs of the same crates'
doc comments and Markdown files (8 to 60 words and at most 400 characters,
printable ASCII, each once, one a line): ~92 500 texts of real English for
the search bench's real-model vectors.

Usage:
  scripts/quality-corpus.py OUT_DIR              (docs/ and the two .jsonl files in it)
  scripts/quality-corpus.py --paragraphs FILE
"""

import hashlib
import json
import os
import re
import sys
import tomllib
from pathlib import Path

MIN_README_BYTES = 1_000
MAX_README_BYTES = 200_000
MAX_SENTENCES = 150


def version_key(version):
    return [int(part) if part.isdigit() else 0 for part in re.split(r"[.+-]", version)]


def normalized(text):
    return " ".join(text.lower().split()).rstrip(".")


def prose_sentences(readme):
    """Sentences of the README's prose: no headings, code, tables, links, HTML."""
    lines, in_code = [], False
    for line in readme.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.startswith(("    ", "\t")) or not line.strip():
            lines.append("")
            continue
        if line.lstrip().startswith(("#", "|", "<", "!", "[", ">", "*", "-", "=")):
            lines.append("")
            continue
        lines.append(line.strip())
    text = " ".join(lines)
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return [
        s
        for s in sentences
        if 10 <= len(s.split()) <= 25
        and re.fullmatch(r"[A-Za-z0-9 ,;:'\"()\-.!?]+", s)
        and s[0].isupper()
    ]


def crates():
    """(name, source folder) of the newest version of each crates.io package
    in Cargo.lock that cargo's registry holds, by name."""
    repo = Path(__file__).resolve().parent.parent
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    sources = sorted((cargo_home / "registry" / "src").glob("*"))
    lock = tomllib.loads((repo / "Cargo.lock").read_text())
    newest = {}
    for package in lock["package"]:
        if not package.get("source", "").startswith("registry+"):
            continue
        name, version = package["name"], package["version"]
        if name not in newest or version_key(version) > version_key(newest[name]):
            newest[name] = version
    for name in sorted(newest):
        crate = next(
            (d / f"{name}-{newest[name]}" for d in sources if (d / f"{name}-{newest[name]}").is_dir()),
            None,
        )
        if crate is not None:
            yield name, crate


def doc_comment_paragraphs(source):
    """Paragraphs of a Rust file's `///` and `//!` comments, code blocks and
    Markdown headings, lists and tables left out."""
    paragraph, in_code = [], False
    for line in source.splitlines() + [""]:
        comment = re.match(r"\s*//[/!] ?(.*)$", line)
        text = comment.group(1).strip() if comment else ""
        if comment and text.startswith("```"):
            in_code = not in_code
            text = ""
        if comment and in_code:
            continue
        if not text or text.startswith(("#", "|", "-", "*", "<")):
            if paragraph:
                yield " ".join(paragraph)
            paragraph = []
            in_code = in_code and comment is not None
            continue
        paragraph.append(text)


def markdown_paragraphs(text):
    for block in re.split(r"\n\s*\n", text):
        if not block.lstrip().startswith(("#", "|", "-", "*", "<", "`", "    ", "!", "[", ">")):
            yield " ".join(block.split())


def write_paragraphs(out):
    seen = set()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for _, crate in crates():
            sources = [(doc_comment_paragraphs, p) for p in sorted(crate.rglob("*.rs"))]
            sources += [
                (markdown_paragraphs, p)
                for p in sorted(crate.rglob("*.md"))
                if not re.search(r"CHANGE|HISTORY|RELEASE", p.name.upper())
            ]
            for paragraphs, path in sources:
                for paragraph in paragraphs(path.read_text(errors="replace")):
                    if (
                        8 <= len(paragraph.split()) <= 60
                        and len(paragraph) <= 400
                        and paragraph not in seen
                        and re.fullmatch(r"[\x20-\x7e]+", paragraph)
                    ):
                        seen.add(paragraph)
                        f.write(paragraph + "\n")
    print(f"quality-corpus: {len(seen)} paragraphs in {out}", file=sys.stderr)


def main():
    if sys.argv[1] == "--paragraphs":
        write_paragraphs(sys.argv[2])
        return
    out = Path(sys.argv[1])
    docs, seen = {}, set()
    for name, crate in crates():
        manifest = tomllib.loads((crate / "Cargo.toml").read_text()).get("package", {})
        readme_name = manifest.get("readme")
        readme = crate / (readme_name if isinstance(readme_name, str) else "README.md")
        description = " ".join(str(manifest.get("description", "")).split())
        if not readme.is_file() or len(description.split()) < 4:
            continue
        text = readme.read_text(errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if not MIN_README_BYTES <= len(text.encode()) <= MAX_README_BYTES or digest in seen:
            continue
        seen.add(digest)
        docs[name] = (text, description)

    # Files already as they should be are left alone: a bench reading them
    # meanwhile sees the same corpus.
    (out / "docs").mkdir(parents=True, exist_ok=True)
    for stale in (out / "docs").glob("*.md"):
        if stale.stem not in docs:
            stale.unlink()
    for name, (text, _) in docs.items():
        path = out / "docs" / f"{name}.md"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)

    flat = {name: normalized(text) for name, (text, _) in docs.items()}
    summaries, sentences = [], []
    for name, (text, description) in docs.items():
        if normalized(description) not in flat[name]:
            summaries.append({"query": description, "relevant": [f"{name}.md"]})
        candidates = prose_sentences(text)
        if candidates:
            sentence = candidates[len(candidates) // 2]
            needle = normalized(sentence)
            if not any(needle in other for n, other in flat.items() if n != name):
                sentences.append({"query": sentence, "relevant": [f"{name}.md"]})
    # An even spread over the alphabet, the same on every machine.
    step = max(1, len(sentences) // MAX_SENTENCES)
    sentences = sentences[::step][:MAX_SENTENCES]
    for file, queries in [("summaries.jsonl", summaries), ("sentences.jsonl", sentences)]:
        with open(out / file, "w") as f:
            for query in queries:
                f.write(json.dumps(query) + "\n")
    size = sum(len(text.encode()) for text, _ in docs.values())
    print(
        f"quality-corpus: {len(docs)} READMEs ({size / 1e6:.1f} MB), "
        f"{len(summaries)} summaries, {len(sentences)} sentences in {out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
