"""The one sandbox for code Inkstone did not write: generated programs in evaluation, the agents' Python tool.

Both run untrusted Python, so both go through here and get the same walls:

    from engine.sandbox import run_program, PythonSession, Limits, isolation

    out = run_program("print(input()[::-1])", stdin="abc", timeout_s=5)
    out.status, out.stdout            # 'ok', 'cba\\n'   (status: ok | error | timeout | killed)

    with PythonSession(workspace) as py:        # one long-lived interpreter per conversation
        py.run("x = 2")
        py.run("x * 21").value                  # '42'  (repr of the last expression, like Jupyter)

    str(isolation())                            # what the UI shows: network / files / processes

Every program gets its own process tree with CPU, memory, process-count and file-size limits (`Limits`), a
workspace directory as its only writable place, a scrubbed environment (no tokens, no parent descriptors), no
network, and is killed as a whole on timeout. How strongly that holds depends on the kernel; `isolation()`
says which mode is active (see policy.py and _jail.py).
"""

from engine.sandbox.policy import Isolation, Limits, SandboxError, isolation
from engine.sandbox.program import Outcome, run_program
from engine.sandbox.session import CellResult, PythonSession

__all__ = ["CellResult", "Isolation", "Limits", "Outcome", "PythonSession", "SandboxError", "isolation", "run_program"]
