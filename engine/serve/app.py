"""The FastAPI app of the model server: OpenAI's /v1 routes, health, Prometheus metrics, errors and auth.

Every failure leaves as OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, including
pydantic validation errors (400 naming the field), so OpenAI clients raise their usual exceptions.
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from engine.serve.async_engine import AsyncEngine
from engine.serve.chat import ChatHandler
from engine.serve.completions import CompletionsHandler
from engine.serve.protocol import APIError, ChatCompletionRequest, CompletionRequest, ModelCard, ModelList


def _validation_error(exc: RequestValidationError) -> APIError:
    first = exc.errors()[0] if exc.errors() else {}
    # loc is ("body", "temperature") or ("body", "messages", 0, "role"): the top-level field is the param.
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = loc[0] if loc else None
    where = ".".join(loc) or "request body"
    return APIError(f"{where}: {first.get('msg', 'invalid value')}", param=param, code="invalid_value")


def create_app(engine, served_model_name: str, api_key: str | None = None) -> FastAPI:
    """An app over an LLMEngine (wrapped, run and stopped with the app) or an AsyncEngine (started if needed,
    left running: its owner stops it)."""
    owns_engine = not isinstance(engine, AsyncEngine)
    async_engine = AsyncEngine(engine) if owns_engine else engine

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async_engine.start()
        try:
            yield
        finally:
            if owns_engine:
                async_engine.shutdown()

    app = FastAPI(title="Inkstone model server", lifespan=lifespan)
    app.state.async_engine = async_engine
    chat = ChatHandler(async_engine, served_model_name)
    completions = CompletionsHandler(async_engine, served_model_name)

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        error = _validation_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        error = APIError(f"internal error: {type(exc).__name__}: {exc}", status=500, type="server_error")
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
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        text = async_engine.metrics.render(async_engine.stats())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=served_model_name, max_model_len=async_engine.max_model_len)])

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat_completions(req: ChatCompletionRequest, raw_request: Request):
        check_model(req.model)
        return await chat.create(req, raw_request)

    @app.post("/v1/completions", dependencies=[Depends(check_key)])
    async def create_completion(req: CompletionRequest, raw_request: Request):
        check_model(req.model)
        return await completions.create(req, raw_request)

    return app
