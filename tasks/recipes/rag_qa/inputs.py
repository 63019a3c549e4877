"""Contexts for the RAG QA recipe: the user's documents cut into overlapping passages,
or topics from which the model writes synthetic passages.

Chunking counts words (a tokenizer-free, provider-independent measure) and cuts at
sentence ends where it can: a passage is whole sentences up to ``size`` words, and the
next one starts with the last sentences of the previous, up to ``overlap`` words, so a
fact spanning a cut appears whole in at least one passage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.core.jsonl import InputError
from tasks.core.paths import examples_dir
from tasks.core.tables import FORMATS, read_table

DOC_SUFFIXES = (".txt", ".md")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


class ChunkConfig(BaseModel):
    size: int = Field(180, ge=20, le=4000, description="words per passage (at most)")
    overlap: int = Field(30, ge=0, le=2000, description="words shared with the previous passage")
    min_words: int = Field(25, ge=1, description="shorter passages are dropped")


class DocumentError(InputError):
    """The documents given cannot be read (the user's to fix, reported before any request)."""


def passage_id(text: str) -> str:
    return "c-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def sentences(text: str) -> list[str]:
    """Sentences of a text, with markdown headings and list markers dropped."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("```"):
            lines.append("")  # a paragraph break
            continue
        lines.append(re.sub(r"^([-*+]|\d+[.)])\s+", "", line))
    paragraphs = [p for p in " ".join(x if x else "\n" for x in lines).split("\n") if p.strip()]
    out: list[str] = []
    for paragraph in paragraphs:
        out += [s.strip() for s in _SENTENCE.split(paragraph.strip()) if s.strip()]
    return out


def chunk_text(text: str, config: ChunkConfig) -> list[str]:
    """Whole sentences up to ``size`` words per passage, ``overlap`` words carried over.
    A sentence longer than ``size`` is cut by words."""
    units: list[str] = []
    for sentence in sentences(text):
        words = sentence.split()
        if len(words) <= config.size:
            units.append(sentence)
        else:
            step = max(1, config.size - config.overlap)
            units += [" ".join(words[i : i + config.size]) for i in range(0, len(words), step)]
    chunks: list[str] = []
    current: list[str] = []
    for unit in units:
        n = len(unit.split())
        if current and _words(current) + n > config.size:
            chunks.append(" ".join(current))
            current = _tail(current, config.overlap)
            while current and _words(current) + n > config.size:
                current = current[1:]
        current.append(unit)
    if current and (not chunks or _words(current) > _words(_tail(current, config.overlap))):
        chunks.append(" ".join(current))
    return [c for c in chunks if len(c.split()) >= config.min_words]


def _words(units: list[str]) -> int:
    return sum(len(u.split()) for u in units)


def _tail(units: list[str], overlap: int) -> list[str]:
    """The last units whose words add up to at most ``overlap``."""
    tail: list[str] = []
    for unit in reversed(units):
        if _words(tail) + len(unit.split()) > overlap:
            break
        tail.insert(0, unit)
    return tail


TABLE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")


def load_documents(path: str | Path, field: str = "text") -> Iterator[tuple[str, str]]:
    """(source, text) pairs from a folder of .txt/.md files and tables (recursively,
    sorted), one such file, or a saved ``datasets`` folder. A table's rows hold the text
    in ``field`` and are named by their ``source`` or ``id``, else their row number."""
    root = Path(path)
    if not root.exists():
        raise DocumentError(f"documents not found: {root}")
    if root.is_dir() and not (root / "state.json").is_file():
        files = sorted(
            p for p in root.rglob("*") if p.suffix.lower() in (*DOC_SUFFIXES, *TABLE_SUFFIXES)
        )
        if not files:
            raise DocumentError(f"no .txt, .md or table files under {root}")
        for f in files:
            if f.suffix.lower() in TABLE_SUFFIXES:
                yield from _table_documents(f, field)
            else:
                yield str(f.relative_to(root)), f.read_text(errors="replace")
    elif root.is_dir() or root.suffix.lower() in TABLE_SUFFIXES:
        yield from _table_documents(root, field)
    elif root.suffix.lower() in DOC_SUFFIXES:
        yield root.name, root.read_text(errors="replace")
    else:
        raise DocumentError(
            f"unsupported documents {root}: a folder, .txt, .md, or a table ({FORMATS})"
        )


def _table_documents(path: Path, field: str) -> Iterator[tuple[str, str]]:
    for number, row in read_table(path):
        text = row.get(field)
        if not isinstance(text, str):
            raise DocumentError(f"{path}: row {number}: expected a text field {field!r}")
        own = row.get("source") or row.get("id")
        yield (str(own) if own else f"{path.name}:{number}"), text


def document_passages(
    path: str | Path, config: ChunkConfig, limit: int | None = None, field: str = "text"
) -> list[dict[str, Any]]:
    """Passage rows (``id``, ``index``, ``source``, ``passage``) of the documents,
    without duplicates, at most ``limit``."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source, text in load_documents(path, field):
        for n, chunk in enumerate(chunk_text(text, config)):
            pid = passage_id(chunk)
            if pid in seen:
                continue
            seen.add(pid)
            rows.append(
                {
                    "id": pid,
                    "index": len(rows),
                    "source": f"{source}#{n}",
                    "source_id": source,  # the document (file, or table row) it came from
                    "passage": chunk,
                }
            )
            if limit is not None and len(rows) >= limit:
                return rows
    if not rows:
        raise DocumentError(f"no passage of at least {config.min_words} words in {path}")
    return rows


def topic_rows(topics: list[str], n: int) -> list[dict[str, Any]]:
    """Seed rows for synthetic passages: ``n`` rows cycling over the topics (a topic
    drawn again gets a variant number, so its prompt, and its passage, differ)."""
    if not topics:
        raise DocumentError("synthetic contexts need at least one topic")
    rows = []
    for i in range(n):
        topic, variant = topics[i % len(topics)], i // len(topics)
        rows.append(
            {
                "id": f"t-{i:05d}",
                "index": i,
                "topic": topic,
                "variant": variant,
                "source": "",
                "source_id": f"t-{i:05d}",
            }
        )
    return rows


def example_documents() -> Path:
    return examples_dir() / "rag"
