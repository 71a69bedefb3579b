#!/usr/bin/env python3
"""Builds the quality bench's natural-question set from public text already
on disk: the FAQs that Debian ships with lsof, zlib and xz-utils
(/usr/share/doc). Each answer becomes a document of its own, without its
question; each question, as the FAQ's authors wrote it, is a query whose one
relevant document is its answer.

The questions were written by people asking about the tools, before any
answer or search existed here, and not by us from the passages. They share
a subject (one tool per FAQ), so an answer must be told from its siblings by
meaning, the way users ask. Answers under MIN_ANSWER_WORDS are left out
("Yes.": there is nothing to find), as are headings without a question.

Usage:
  scripts/faq-corpus.py OUT_DIR     (OUT_DIR/faq/*.txt and OUT_DIR/questions.jsonl)
"""

import gzip
import json
import re
import sys
from pathlib import Path

DOC = Path("/usr/share/doc")
MIN_ANSWER_WORDS = 15
# An entry's number at the start of a line: "3.2.2   Why …" (lsof), " 4. compress() …" (zlib).
LSOF_ENTRY = re.compile(r"^(\d+(?:\.\d+)+)\s+(\S.*)$")
ZLIB_ENTRY = re.compile(r"^ ?(\d+)\. (\S.*)$")


def read(name):
    path = DOC / name
    if not path.is_file():
        package = name.split("/")[0]
        sys.exit(f"faq-corpus: {path} is missing: apt-get install --reinstall {package}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="replace") as f:
        return f.read()


def flat(lines):
    return " ".join(" ".join(lines).split())


def lsof():
    """The lsof FAQ: a numbered table of contents, then each number again
    with its question (over one or more lines) and its answer."""
    text = read("lsof/00FAQ.gz")
    toc, body = text.split("\n______", 2)[-1], text
    numbers = []
    for line in toc.splitlines():
        entry = LSOF_ENTRY.match(line)
        if entry:
            numbers.append(entry.group(1))
    # The body starts where the table's first number comes again.
    lines = body.splitlines()
    starts = [i for i, line in enumerate(lines) if LSOF_ENTRY.match(line)]
    first = numbers[0]
    body_starts = [i for i in starts if LSOF_ENTRY.match(lines[i]).group(1) == first]
    if len(body_starts) < 2:
        sys.exit("faq-corpus: the lsof FAQ's layout is not the one expected")
    starts = [i for i in starts if i >= body_starts[1]]
    for at, end in zip(starts, starts[1:] + [len(lines)]):
        number = LSOF_ENTRY.match(lines[at]).group(1)
        question, answer, i = [LSOF_ENTRY.match(lines[at]).group(2)], [], at + 1
        while i < end and lines[i].strip() and not question[-1].rstrip().endswith("?"):
            question.append(lines[i])
            i += 1
        answer = [line for line in lines[i:end] if not set(line.strip()) <= set("_=-*")]
        yield f"lsof-{number}", flat(question), "\n".join(answer).strip()


def zlib():
    """The zlib FAQ: " N. question" then an indented answer."""
    lines = read("zlib1g-dev/FAQ.gz").splitlines()
    starts = [i for i, line in enumerate(lines) if ZLIB_ENTRY.match(line)]
    for at, end in zip(starts, starts[1:] + [len(lines)]):
        entry = ZLIB_ENTRY.match(lines[at])
        question, i = [entry.group(2)], at + 1
        while i < end and lines[i].strip():
            question.append(lines[i])
            i += 1
        yield f"zlib-{entry.group(1)}", flat(question), "\n".join(lines[i:end]).strip()


def xz():
    """The XZ Utils FAQ: "Q:" then "A:" paragraphs."""
    text = read("xz-utils/faq.txt.gz")
    for n, entry in enumerate(re.split(r"\n\s*\nQ:", "\n\n" + text)[1:], 1):
        question, _, answer = entry.partition("\nA:")
        yield f"xz-{n}", flat(question.splitlines()), answer.strip()


def main():
    out = Path(sys.argv[1])
    docs, questions = {}, []
    for source in (lsof, zlib, xz):
        for name, question, answer in source():
            if not question.endswith("?") or len(answer.split()) < MIN_ANSWER_WORDS:
                continue
            docs[f"{name}.txt"] = answer + "\n"
            questions.append({"query": question, "relevant": [f"{name}.txt"]})
    # Files already as they should be are left alone (a second run of the
    # bench finds its documents unchanged).
    (out / "faq").mkdir(parents=True, exist_ok=True)
    for stale in (out / "faq").glob("*.txt"):
        if stale.name not in docs:
            stale.unlink()
    for name, text in docs.items():
        path = out / "faq" / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    with open(out / "questions.jsonl", "w") as f:
        for query in questions:
            f.write(json.dumps(query) + "\n")
    size = sum(len(text.encode()) for text in docs.values())
    print(
        f"faq-corpus: {len(docs)} answers ({size / 1e3:.0f} KB), {len(questions)} questions in {out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
