"""An OpenAI-compatible HTTP server over the inference engine (chat, completions, tools, metrics).

`run_server(ServeArgs(...))` is the long-running entry point; `create_app` builds the FastAPI app over an
`EngineCoreClient` (core_client.py), whose engine runs in a process of its own (engine_core.py).
"""

from engine.serve.server import ServeArgs, run_server

__all__ = ["ServeArgs", "run_server"]
