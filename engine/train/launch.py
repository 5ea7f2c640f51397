"""Run a finetune over several processes: torchrun (DDP, and DeepSpeed on the CPU) or DeepSpeed's launcher
(GPUs, chosen GPUs via --include, several nodes via a hostfile).

The job stays the parent: it writes the run's arguments to `launch.json`, starts the launcher in its own
process group, turns rank 0's `@@progress` lines into progress callbacks, echoes everything else to its log,
and on cancel sends SIGTERM to the group; the workers agree to stop at the next step and checkpoint.
No process of the run outlives this one: the launcher dies with it (PR_SET_PDEATHSIG) and every rank watches
it (OWNER_ENV), so a kill -9 of the job's worker ends the whole run within moments.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from engine.finetune.config import FinetuneConfig
from engine.ports import free_port
from engine.procs import die_with_parent
from engine.progress import Cancelled, Progress, no_progress
from engine.train.extensions import extension_builds

PROGRESS, RESULT, CANCELLED, FAILED = "@@progress ", "@@result ", "@@cancelled", "@@failed "
OWNER_ENV = "INKSTONE_RUN_OWNER_PID"  # the pid of the process that called launch(); ranks die when it does


def launcher_command(config: FinetuneConfig, spec: Path, use_cuda: bool) -> list[str]:
    """The command line that starts config.num_procs workers (per node) on spec."""
    port = str(free_port())
    worker = ["-m", "engine.train.worker", str(spec)]
    if config.deepspeed and (use_cuda or config.hostfile):
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", port]
        if config.hostfile:
            cmd += ["--hostfile", config.hostfile]
        if config.gpus:
            cmd += ["--include", f"localhost:{config.gpus}"]
        else:
            cmd += ["--num_gpus", str(config.num_procs)]
        return cmd + ["--module", "engine.train.worker", str(spec)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(config.num_procs),
            "--master_port", port, *worker]


def launch(config: FinetuneConfig, model_path: str | Path, output: str | Path, progress: Progress = no_progress,
           cancel: threading.Event | None = None, resume: str | Path | None = None,
           env: dict | None = None) -> dict:
    """train() in this process when one suffices, else over num_procs processes; same result either way."""
    if config.num_procs == 1 and not config.hostfile:
        from engine.finetune.trainer import train

        return train(config, model_path, output, progress, cancel, resume)
    import torch

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    spec = output / "launch.json"
    spec.write_text(json.dumps({"config": asdict(config), "model_path": str(model_path), "output": str(output),
                                "resume": str(resume) if resume else None}))
    use_cuda = config.device != "cpu" and torch.cuda.is_available()
    child_env = dict(os.environ, **(env or {}), PYTHONUNBUFFERED="1", **{OWNER_ENV: str(os.getpid())})
    builds = child_env.get("TORCH_EXTENSIONS_DIR")
    with extension_builds(builds) if builds else contextlib.nullcontext([]) as stale:
        if stale:
            print(f"removed build locks left by a killed run: {', '.join(map(str, stale))}", flush=True)
        return _run(config, spec, use_cuda, child_env, progress, cancel)


def _run(config: FinetuneConfig, spec: Path, use_cuda: bool, child_env: dict, progress: Progress,
         cancel: threading.Event | None) -> dict:
    owner = int(child_env[OWNER_ENV])
    if config.gpus:  # chosen GPUs replace the one slot the job runner may have pinned
        if config.deepspeed:
            child_env.pop("CUDA_VISIBLE_DEVICES", None)  # DeepSpeed's --include selects them itself
        else:
            child_env["CUDA_VISIBLE_DEVICES"] = config.gpus
    proc = subprocess.Popen(launcher_command(config, spec, use_cuda), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=child_env, start_new_session=True,
                            preexec_fn=functools.partial(die_with_parent, owner),
                            cwd=Path(__file__).resolve().parents[2])
    stopper = threading.Thread(target=_stop_on_cancel, args=(proc, cancel), daemon=True)
    stopper.start()
    result, cancelled, failure, tail = None, False, "", []
    for line in proc.stdout:
        if line.startswith(PROGRESS):
            p = json.loads(line[len(PROGRESS):])
            progress(p["fraction"], p["message"], p["metrics"], step=p["step"])
        elif line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
        elif line.startswith(CANCELLED):
            cancelled = True
        elif line.startswith(FAILED):
            failure = line[len(FAILED):].strip()
        else:
            print(line, end="", flush=True)
            tail = (tail + [line])[-20:]
    rc = proc.wait()
    if cancelled:
        raise Cancelled("stopped; the workers wrote a checkpoint")
    if rc != 0 or result is None:
        raise RuntimeError(failure or f"training processes exited with {rc}:\n{''.join(tail)}")
    return result


def _stop_on_cancel(proc: subprocess.Popen, cancel: threading.Event | None) -> None:
    if cancel is None:
        return
    while proc.poll() is None:
        if cancel.wait(0.5):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(proc.pid, signal.SIGTERM)
            return
