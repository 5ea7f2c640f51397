"""Output: the finetuning formats (plain text, SFT messages, packed pretraining text), the train/val split,
and jsonl or parquet files written under temporary names and renamed only when complete.

Parquet needs one schema for every row, so the common metadata fields get typed columns and anything else a
record carries goes into one `meta` JSON column.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from engine.data.recipe import Format, Split

PARQUET_COLUMNS = {"text": "string", "source": "string", "lang": "string", "lang_score": "float64",
                   "quality": "float64", "perplexity": "float64", "n_tokens": "int64", "n_docs": "int64",
                   "messages": "string"}


class SplitWriter:
    """Writes records to data.* (no split) or train.*/val.* in jsonl or parquet."""

    def __init__(self, out_dir: Path, fmt: Format, split: Split | None):
        self.out_dir, self.fmt, self.split = out_dir, fmt, split
        self.names = ["train", "val"] if split else ["data"]
        self.paths = {n: out_dir / f"{n}.{fmt.write_as}" for n in self.names}
        self.counts = dict.fromkeys(self.names, 0)
        self.buffers: dict[str, list[dict]] = {n: [] for n in self.names}
        self.files: dict = {}
        self._pack: list[dict] = []
        self._pack_tokens = 0

    def _tmp(self, name: str) -> Path:
        return self.paths[name].with_name(self.paths[name].name + ".part")

    def add(self, rec: dict) -> str | None:
        """Format and write one kept record; returns a drop reason when the format cannot use it."""
        if self.fmt.kind == "messages":
            if not rec.get("prompt"):
                return "no_prompt_for_messages"
            rec["messages"] = [{"role": "user", "content": rec.pop("prompt")},
                               {"role": "assistant", "content": rec["text"]}]
        elif self.fmt.kind == "packed":
            self._pack.append(rec)
            self._pack_tokens += rec.get("n_tokens") or len(rec["text"]) // 3
            if self._pack_tokens >= self.fmt.pack_tokens:
                self._flush_pack()
            return None
        self._emit(rec)
        return None

    def _flush_pack(self) -> None:
        if self._pack:
            self._emit({"text": self.fmt.separator.join(r["text"] for r in self._pack), "n_docs": len(self._pack),
                        "n_tokens": self._pack_tokens, "source": self._pack[0].get("source", "")})
        self._pack, self._pack_tokens = [], 0

    def _emit(self, rec: dict) -> None:
        name = "data"
        if self.split:
            h = int.from_bytes(hashlib.blake2b(rec["text"].encode("utf-8"), digest_size=8).digest(), "little")
            name = "val" if h / 2**64 < self.split.val_fraction else "train"
        self.counts[name] += 1
        if self.fmt.write_as == "jsonl":
            if name not in self.files:
                self.files[name] = open(self._tmp(name), "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            self.files[name].write(json.dumps(rec, ensure_ascii=False) + "\n")
        else:
            self.buffers[name].append(rec)
            if len(self.buffers[name]) >= 2000:
                self._write_parquet(name)

    def _write_parquet(self, name: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(k, getattr(pa, t)()) for k, t in PARQUET_COLUMNS.items()] + [("meta", pa.string())])
        rows = []
        for rec in self.buffers[name]:
            row = {k: rec.get(k) for k in PARQUET_COLUMNS}
            if row["messages"] is not None:
                row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
            extra = {k: v for k, v in rec.items() if k not in PARQUET_COLUMNS}
            row["meta"] = json.dumps(extra, ensure_ascii=False) if extra else None
            rows.append(row)
        if name not in self.files:
            self.files[name] = pq.ParquetWriter(self._tmp(name), schema)
        self.files[name].write_table(pa.Table.from_pylist(rows, schema=schema))
        self.buffers[name] = []

    def close(self) -> dict[str, dict]:
        """Finish every file (empty ones too, so readers find what the manifest names); {name: {path, rows}}."""
        if self.fmt.kind == "packed":
            self._flush_pack()
        for name in self.names:
            if self.fmt.write_as == "parquet" and (self.buffers[name] or name not in self.files):
                self._write_parquet(name)
            elif name not in self.files:
                self.files[name] = open(self._tmp(name), "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            self.files[name].close()
            os.replace(self._tmp(name), self.paths[name])
        return {n: {"path": str(self.paths[n]), "rows": self.counts[n]} for n in self.names}
