"""The FastAPI app of the model server: OpenAI's /v1 routes, health, Prometheus metrics, errors and auth.

Every failure leaves as OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, including
pydantic validation errors (400 naming the field), Starlette's own 404/405s and bodies refused by
`body.CheckedBodyRoute` (size, encoding, JSON, nesting, lone surrogates), so OpenAI clients raise their usual
exceptions. An unexpected exception is logged with its traceback and answered with a 500 that names only its
type: its message may carry internals.
"""

from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from engine.serve.body import CheckedBodyRoute
from engine.serve.chat import ChatHandler
from engine.serve.completions import CompletionsHandler
from engine.serve.core_client import EngineCoreClient, EngineUnavailable
from engine.serve.limits import ServeLimits
from engine.serve.protocol import APIError, ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from engine.serve.serving import unavailable

log = logging.getLogger(__name__)


def _validation_error(exc: RequestValidationError) -> APIError:
    first = exc.errors()[0] if exc.errors() else {}
    # loc is ("body", "temperature") or ("body", "messages", 0, "role"): the top-level field is the param.
    loc = [part for part in first.get("loc", ()) if part != "body"]
    param = loc[0] if loc and isinstance(loc[0], str) else None
    where = ".".join(str(part) for part in loc) or "request body"
    return APIError(f"{where}: {first.get('msg', 'invalid value')}", param=param, code="invalid_value")


def create_app(engine: EngineCoreClient, served_model_name: str, api_key: str | None = None,
               limits: ServeLimits | None = None) -> FastAPI:
    """An app over a running engine core; the app reads it on its event loop and stops it when it stops."""
    limits = limits or ServeLimits()
    limits.check()
    if not isinstance(engine, EngineCoreClient):
        raise TypeError(f"engine: an EngineCoreClient is needed, got {type(engine).__name__}")
    core = engine

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        core.start()
        try:
            yield
        finally:
            core.shutdown()

    app = FastAPI(title="Inkstone model server", lifespan=lifespan)
    app.router.route_class = CheckedBodyRoute
    app.state.engine = core
    app.state.limits = limits
    chat = ChatHandler(core, served_model_name, limits)
    completions = CompletionsHandler(core, served_model_name, limits)

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        error = _validation_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException):
        error = APIError(str(exc.detail), status=exc.status_code,
                         type="invalid_request_error" if exc.status_code < 500 else "server_error")
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(EngineUnavailable)
    async def on_engine_gone(request: Request, exc: EngineUnavailable):
        return JSONResponse(unavailable(str(exc)).body(), status_code=503)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        error = APIError(f"internal error ({type(exc).__name__}); the server log has the details", status=500,
                         type="server_error")
        return JSONResponse(error.body(), status_code=500)

    async def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError("Incorrect or missing API key: send `Authorization: Bearer <key>`.", status=401,
                           code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != served_model_name:
            raise APIError(f"The model `{name}` does not exist; this server serves `{served_model_name}`.",
                           status=404, param="model", code="model_not_found")

    @app.get("/health")
    async def health():
        reason = core.unavailable_reason
        if reason is not None:
            return JSONResponse(unavailable(reason).body(), status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        text = core.metrics.render(core.stats())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=served_model_name, max_model_len=core.max_model_len)])

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat_completions(req: ChatCompletionRequest, raw_request: Request):
        check_model(req.model)
        return await chat.create(req, raw_request)

    @app.post("/v1/completions", dependencies=[Depends(check_key)])
    async def create_completion(req: CompletionRequest, raw_request: Request):
        check_model(req.model)
        return await completions.create(req, raw_request)

    return app
