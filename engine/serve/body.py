"""Read and check a request body ourselves before FastAPI validates it, so a malformed one is a clear 400/413.

FastAPI's own parsing answered a non-UTF-8 or deeply nested body with `{"detail": ...}`, named the byte offset
of broken JSON as if it were a field (`param: "28"`), read a body of any size, and let lone UTF-16 surrogates
(`"\\ud800"`, valid JSON escapes, invalid Unicode) through to the tokenizer and the error messages, which then
raised: 500s. Here the body is read with a size cap (a declared Content-Length over it is refused before a
byte is read), decoded as strict UTF-8, parsed as JSON without NaN/Infinity, and walked once for nesting depth
and lone surrogates. The parsed value is handed to FastAPI through Starlette's request cache, so nothing is
parsed twice. Every refusal is an APIError: OpenAI's error shape, with `param` naming the top-level field the
problem is in (or none, when the body as a whole is at fault) and the message saying where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute

from engine.serve.protocol import APIError

MAX_NESTING = 64
# A lone surrogate can only come from a `\uD800`-`\uDFFF` escape: strict UTF-8 decoding refuses raw ones.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SURROGATE = re.compile("[\ud800-\udfff]")


class CheckedBodyRoute(APIRoute):
    """A route whose POST body is read and checked by `read_checked_body` before FastAPI sees it."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def checked(request: Request):
            if request.method in ("POST", "PUT", "PATCH"):
                await read_checked_body(request, request.app.state.limits.max_request_bytes)
            return await handler(request)

        return checked


def too_large(size_text: str, max_bytes: int) -> APIError:
    return APIError(
        f"The request body is {size_text}; this server accepts at most {max_bytes} bytes.",
        status=413,
        code="request_too_large",
    )


async def read_checked_body(request: Request, max_bytes: int) -> None:
    """Read the body (at most max_bytes), check it, and leave body and parsed JSON in Starlette's cache."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(f"Content-Length header is not a byte count: {declared[:40]!r}")
        if int(declared) > max_bytes:
            raise too_large(f"{int(declared)} bytes (Content-Length)", max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(f"more than {max_bytes} bytes", max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body
    if body:
        request._json = parse_json(body)


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(
            f"The request body is not valid UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start} ({exc.reason}).",
            code="invalid_encoding",
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise APIError(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(character {exc.pos}).",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise nested_too_deep(()) from None
    check_value(value, (), check_surrogates=SURROGATE_ESCAPE.search(body) is not None)
    return value


def _no_constant(name: str) -> Any:
    raise APIError(f"The request body is not valid JSON: {name} is not a JSON number.", code="invalid_json")


def nested_too_deep(path: tuple) -> APIError:
    where = _where(path) if path else "The request body"
    return APIError(
        f"{where} nests arrays/objects more than {MAX_NESTING} levels deep.",
        code="invalid_value",
        param=str(path[0]) if path else None,
    )


def check_value(value: Any, path: tuple, check_surrogates: bool) -> None:
    """Walk the parsed body: refuse nesting deeper than MAX_NESTING and strings that are not valid Unicode."""
    if isinstance(value, str):
        if check_surrogates:
            _check_text(value, path)
        return
    if not isinstance(value, (dict, list)):
        return
    if len(path) >= MAX_NESTING:
        raise nested_too_deep(path)
    if isinstance(value, dict):
        for key, item in value.items():
            if check_surrogates:
                _check_text(key, path, is_key=True)
            check_value(item, (*path, key), check_surrogates)
    else:
        for index, item in enumerate(value):
            check_value(item, (*path, index), check_surrogates)


def _check_text(text: str, path: tuple, is_key: bool = False) -> None:
    match = SURROGATE.search(text)
    if match is None:
        return
    what = f"a key of {_where(path)}" if is_key else _where(path)
    raise APIError(
        f"{what} holds a lone UTF-16 surrogate (\\u{ord(match.group()):04x} at character {match.start()}),"
        " which is not valid Unicode; send text as UTF-8 or as surrogate pairs.",
        param=str(path[0]) if path else None,
        code="invalid_value",
    )


def _where(path: tuple) -> str:
    return ".".join(str(part) for part in path) or "the request body"
