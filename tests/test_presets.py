"""Every preset under assets/ parses against its job kind's arguments, and `--preset` works from the CLI.

One name serves the job kind, the CLI subcommand and the preset folder, so a JSON file in assets/<folder>/ must
belong to a kind (the data recipes in assets/recipes are the one other kind of JSON there, checked as recipes).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.data.recipe import load_recipe
from jobs.kinds import KINDS, PRESETS_DIR, get_kind
from tests.helpers import REPO, child_env

PRESET_FILES = sorted(p for p in PRESETS_DIR.glob("*/*.json") if p.parent.name != "recipes")
RECIPES = sorted((PRESETS_DIR / "recipes").glob("*.json"))


@pytest.mark.parametrize("path", PRESET_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in PRESET_FILES])
def test_every_preset_parses_against_its_kind(path):
    get_kind("selftest")  # loads every kind
    assert path.parent.name in KINDS, f"{path}: assets/{path.parent.name} is not a job kind ({sorted(KINDS)})"
    kind = KINDS[path.parent.name]
    params = kind.preset(path.stem)
    args = kind.parse_args(params, check=False)  # fields and types; a preset names no input files
    for name, value in params.items():
        assert getattr(args, name) == value or name == "host", f"{path}: {name} did not survive parsing"
    if kind.name == "data_prep":
        load_recipe(args.recipe)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads(path):
    assert load_recipe(path.stem).steps


def test_the_builtin_kinds_have_presets():
    # merge_adapter has none: its only argument worth giving is a job id.
    for name in ("data_prep", "finetune", "serve", "selftest", "import_model", "export_gguf"):
        assert get_kind(name).presets(), f"no preset for {name}"


def test_bad_and_unknown_presets_are_named(tmp_path, monkeypatch):
    kind = get_kind("selftest")
    with pytest.raises(ValueError, match=r"no preset 'nope' \(presets: .*quick"):
        kind.preset("nope")
    (tmp_path / "selftest").mkdir()
    (tmp_path / "selftest" / "broken.json").write_text('{"max_new_tokens": 4,\n oops}')
    monkeypatch.setattr("jobs.kinds.PRESETS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"broken.json: line 2"):
        kind.preset("broken")


def test_cli_preset_with_a_flag_that_overrides_it(home):
    # Detached: the job is recorded and queued, not run; its arguments are the preset's, overridden by the flag.
    r = subprocess.run([sys.executable, "-m", "cli", "selftest", "--preset", "chinese", "--max-new-tokens", "5",
                        "--detach"], cwd=REPO, env=child_env(home), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    from jobs.api import list_jobs

    job = list_jobs(home)[0]
    assert job.params == {"prompt": get_kind("selftest").preset("chinese")["prompt"], "max_new_tokens": 5}
    r = subprocess.run([sys.executable, "-m", "cli", "selftest", "--preset", "missing"], cwd=REPO,
                       env=child_env(home), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no preset 'missing'" in r.stderr
