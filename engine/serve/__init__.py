"""An OpenAI-compatible HTTP server over the inference engine (chat, completions, tools, metrics).

`run_server(ServeArgs(...))` is the long-running entry point; `create_app` builds the FastAPI app over an
engine already loaded (tests, embedding in another process).
"""

from engine.serve.server import ServeArgs, run_server

__all__ = ["ServeArgs", "run_server"]
