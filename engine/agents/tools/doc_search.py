"""Search the documents a user added (BM25 over passages), in English, Chinese or both.

Retrieval over the user's own files is the most asked-for agent tool and needs no model: bm25s ranks passages.
Chinese has no spaces, so Latin text is split into lowercase words and runs of CJK characters into overlapping
character bigrams (a lone character stays a unigram), the scheme Lucene's CJK analyzer uses; a Chinese query
then finds Chinese passages without a word segmenter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.agents.tools.base import Tool, ToolError, tool_from_function

PASSAGE_CHARS = 600
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKENS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_IS_CJK = re.compile(rf"[{_CJK}]")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".csv", ".json", ".jsonl", ".html", ".py")


def tokenize(text: str) -> list[str]:
    """Lowercase words for alphabetic scripts; character bigrams for CJK runs."""
    tokens: list[str] = []
    for run in _TOKENS.findall(text.lower()):
        if _IS_CJK.match(run):
            tokens += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        else:
            tokens.append(run)
    return tokens


def split_passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Paragraphs packed into passages of about `size` characters; a longer paragraph is cut."""
    passages, current = [], ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        while len(paragraph) > size:
            if current:
                passages.append(current)
                current = ""
            passages.append(paragraph[:size])
            paragraph = paragraph[size:]
        if current and len(current) + len(paragraph) + 1 > size:
            passages.append(current)
            current = ""
        current = f"{current}\n{paragraph}" if current else paragraph
    if current:
        passages.append(current)
    return passages


def read_document(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader

        return "\n\n".join((page.extract_text() or "").strip() for page in PdfReader(path).pages)
    if suffix == ".docx":
        from docx import Document

        return "\n\n".join(p.text for p in Document(str(path)).paragraphs)
    if suffix not in TEXT_SUFFIXES:
        raise ToolError(f"{path}: cannot read {suffix or 'files without a suffix'}; use text, markdown, PDF or docx")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{path}: not UTF-8 text") from None


@dataclass
class Passage:
    source: str
    """The file it came from (its name as added)."""
    number: int
    """Its position in that file, from 1."""
    text: str
    """The passage."""


class DocumentIndex:
    """Passages of the added files and their BM25 index (rebuilt on the next search after an add)."""

    def __init__(self):
        self.passages: list[Passage] = []
        self._retriever = None

    def add_text(self, source: str, text: str) -> int:
        """Index a text under a name; returns the number of passages added."""
        added = [Passage(source, i + 1, p) for i, p in enumerate(split_passages(text))]
        self.passages += added
        self._retriever = None
        return len(added)

    def add_file(self, path: str | Path) -> int:
        path = Path(path)
        if not path.is_file():
            raise ToolError(f"{path}: no such file")
        return self.add_text(path.name, read_document(path))

    def add_folder(self, folder: str | Path) -> int:
        folder = Path(folder)
        files = [
            p
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix.lower() in (*TEXT_SUFFIXES, ".pdf", ".docx")
        ]
        return sum(self.add_file(p) for p in files)

    def _index(self):
        import bm25s

        if self._retriever is None:
            self._retriever = bm25s.BM25()
            self._retriever.index([tokenize(p.text) or ["\x00"] for p in self.passages], show_progress=False)
        return self._retriever

    def search(self, query: str, top_k: int = 3) -> list[tuple[Passage, float]]:
        if not self.passages:
            return []
        retriever = self._index()
        known = [t for t in tokenize(query) if t in retriever.vocab_dict]
        if not known:
            return []
        scores = retriever.get_scores(known)
        ranked = sorted(range(len(self.passages)), key=lambda i: -scores[i])
        return [(self.passages[i], float(scores[i])) for i in ranked[:top_k] if scores[i] > 0]

    def search_documents(self, query: str, top_k: int = 3) -> str:
        """Search the user's documents and return the best matching passages with their file names.

        Args:
            query: What to look for, in any language (keywords work best).
            top_k: How many passages to return (1-10).
        """
        if not self.passages:
            raise ToolError("no documents have been added to search")
        hits = self.search(query, max(1, min(int(top_k), 10)))
        if not hits:
            return f"no passage matches {query!r}"
        return "\n\n".join(
            f"[{n}] {p.source} (passage {p.number}, score {score:.2f}):\n{p.text}"
            for n, (p, score) in enumerate(hits, 1)
        )


def doc_search_tool(index: DocumentIndex) -> Tool:
    return tool_from_function(index.search_documents)
