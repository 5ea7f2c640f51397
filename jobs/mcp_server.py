"""Inkstone as an MCP server: an outside agent lists models, datasets and jobs, starts jobs and reads results.

The whole chain is jobs, so the server is a thin face over jobs.api: `start_job` takes a job kind and the same
parameters the CLI and the UI give (checked by the kind's argument dataclass), and `job_status` returns what the
Jobs page shows. Streamable HTTP on loopback by default; bound to any other address it refuses to start without
an access token, and then every request must carry it as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from engine.netaddr import bind_host, check_bind

STARTABLE = ("data_prep", "finetune", "eval", "export_gguf", "merge_adapter", "import_model", "serve")
"""Job kinds an outside agent may start."""


def _job_dict(job) -> dict:
    keys = (
        "id",
        "kind",
        "title",
        "status",
        "progress",
        "message",
        "error",
        "result",
        "params",
        "created_at",
        "started_at",
        "finished_at",
    )
    return {k: getattr(job, k) for k in keys}


def build_server(root: Path):
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from app.registry import list_models
    from jobs import api
    from jobs.kinds import _load_builtin_kinds, get_kind, user_fields

    _load_builtin_kinds()
    server = MCPServer(
        "inkstone", instructions="Inkstone's data prep, finetune, evaluation and export jobs.", log_level="WARNING"
    )

    @server.tool()
    def models() -> list[dict]:
        """The registered models: id, name, architecture, parameters, context length."""
        return [
            {
                "id": m.id,
                "name": m.name,
                "arch": m.arch,
                "params": m.params,
                "context_len": m.context_len,
                "source": m.source,
            }
            for m in list_models(root)
        ]

    @server.tool()
    def datasets() -> list[dict]:
        """The registered datasets: id, name, format, rows, path."""
        from sqlmodel import select

        from app.db import session
        from app.tables import Dataset

        with session(root) as s:
            rows = s.exec(select(Dataset).order_by(Dataset.id)).all()
        return [{"id": d.id, "name": d.name, "format": d.format, "rows": d.rows, "path": d.path} for d in rows]

    @server.tool()
    def jobs(limit: int = 20, kind: str = "") -> list[dict]:
        """The latest jobs, newest first, optionally of one kind."""
        return [_job_dict(j) for j in api.list_jobs(root, limit, kind=kind or None)]

    @server.tool()
    def job_kinds() -> list[dict]:
        """The job kinds start_job accepts, with each parameter's name and default."""
        out = []
        for name in STARTABLE:
            kind = get_kind(name)
            fields = {f.name: (None if callable(f.default) else f.default) for f in user_fields(kind.args_cls)}
            out.append({"kind": name, "title": kind.title, "parameters": {k: repr(v) for k, v in fields.items()}})
        return out

    @server.tool()
    def start_job(kind: str, params: dict) -> dict:
        """Start a job (data_prep, finetune, eval, export_gguf, merge_adapter, import_model, serve) with the
        parameters the CLI takes for it; returns the job."""
        if kind not in STARTABLE:
            raise ToolError(f"kind {kind!r} cannot be started here; use one of {', '.join(STARTABLE)}")
        try:
            return _job_dict(api.submit(root, kind, params))
        except (ValueError, TypeError) as exc:
            raise ToolError(f"{kind}: {exc}") from None

    @server.tool()
    def job_status(job_id: int, log: bool = False) -> dict:
        """A job's status, progress, message, result and error (and the end of its log when log is true)."""
        try:
            job = _job_dict(api.get_job(root, job_id))
        except LookupError as exc:
            raise ToolError(str(exc)) from None
        if log:
            job["log_tail"] = api.log_tail(root, job_id, 4000)
        return job

    @server.tool()
    def cancel_job(job_id: int) -> dict:
        """Ask a queued or running job to stop."""
        try:
            return _job_dict(api.cancel(root, job_id))
        except LookupError as exc:
            raise ToolError(str(exc)) from None

    return server


class BearerToken:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`."""

    def __init__(self, app, token: str):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": b'{"error": "missing or wrong access token"}'})
                return
        await self.app(scope, receive, send)


def http_app(root: Path, host: str = "127.0.0.1", token: str = ""):
    """The Streamable HTTP app at /mcp; ValueError when bound beyond loopback without a token."""
    host = bind_host(host)
    check_bind(host, token, "an access token (--token or INKSTONE_TOKEN)")
    app = build_server(root).streamable_http_app(host=host)
    return BearerToken(app, token) if token else app
