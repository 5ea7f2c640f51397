"""One training process of a multi-process run: `python -m engine.train.worker launch.json` under torchrun or
the DeepSpeed launcher. It joins the process group, trains, and talks to the parent through stdout lines.

SIGTERM (the parent's cancel) only sets a flag: the loop agrees on it across processes at a step boundary.
A kill -9 of the process that launched the run is not a cancel: every rank exits at once (it watches that
process), as the launcher between them may have died without passing anything on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path


def main(spec_path: str) -> int:
    from engine.procs import exit_when_gone
    from engine.train.launch import CANCELLED, FAILED, OWNER_ENV, PROGRESS, RESULT

    if os.environ.get(OWNER_ENV):  # first, before the slow imports
        exit_when_gone(int(os.environ[OWNER_ENV]))
    import torch
    import torch.distributed as dist

    from engine.finetune.config import FinetuneConfig
    from engine.finetune.trainer import train
    from engine.progress import Cancelled

    spec = json.loads(Path(spec_path).read_text())
    config = FinetuneConfig(**spec["config"])
    use_cuda = config.device != "cpu" and torch.cuda.is_available()
    if config.deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo")
    else:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())

    def progress(fraction=None, message=None, metrics=None, step=None):
        print(PROGRESS + json.dumps({"fraction": fraction, "message": message, "metrics": metrics or {},
                                     "step": step}), flush=True)

    code = 0
    try:
        result = train(config, spec["model_path"], spec["output"], progress, cancel, spec["resume"])
        if rank == 0:
            print(RESULT + json.dumps(result), flush=True)
    except Cancelled:
        if rank == 0:
            print(CANCELLED, flush=True)
    except Exception as e:  # the parent shows rank 0's one-line reason; the traceback goes to the log
        if rank == 0:
            print(FAILED + f"{type(e).__name__}: {e}".replace("\n", " "), flush=True)
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return code


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1]))
