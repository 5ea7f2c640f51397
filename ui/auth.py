"""Access-token guard for every page, API call and websocket when a token is set.

A browser presents the token once (?token=… or the sign-in form); it is kept in an HttpOnly cookie.
Programs send `Authorization: Bearer <token>`. Pure ASGI, so websockets are guarded too.

Open without the token: the health probe (which then says only "ok"), the sign-in form, and GETs of NiceGUI's
versioned static assets. Nothing else under `/_nicegui/` is open: uploads (`/_nicegui/client/…/upload/…`)
write files and must carry the token like any page.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from nicegui import __version__ as nicegui_version

COOKIE = "inkstone_token"
OPEN_PATHS = ("/healthz", "/signin")  # the health probe and the sign-in form
STATIC_PREFIX = f"/_nicegui/{nicegui_version}/"  # NiceGUI's JS, CSS and component files: read-only


def is_open(scope) -> bool:
    """Whether a request may pass without the token."""
    path = scope.get("path", "")
    if path in OPEN_PATHS:
        return True
    return scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and path.startswith(STATIC_PREFIX)


def _presented(scope) -> tuple[str, bool]:
    """(token presented, came from the query string)."""
    headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    query = parse_qs(scope.get("query_string", b"").decode())
    if "token" in query:
        return query["token"][0], True
    cookie = SimpleCookie(headers.get("cookie", ""))
    return (cookie[COOKIE].value if COOKIE in cookie else ""), False


def token_presented(scope, token: str) -> bool:
    """Whether the request carries `token` (header, query or cookie); False when no token is set."""
    presented, _ = _presented(scope)
    return bool(token) and bool(presented) and hmac.compare_digest(presented.encode(), token.encode())


class TokenGuard:
    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not self.token:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        _, from_query = _presented(scope)
        ok = token_presented(scope, self.token)
        if ok and from_query and scope["type"] == "http":
            return await _set_cookie_and_redirect(send, path, self.token)
        if ok or is_open(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 4401})
        accepts_html = any(k == b"accept" and b"text/html" in v for k, v in scope.get("headers", []))
        if accepts_html and scope.get("method") == "GET":
            return await _redirect(send, "/signin")
        body = b'{"error": {"message": "missing or wrong access token", "type": "unauthorized"}}'
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def _redirect(send, location: str, extra_headers=()):
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), *extra_headers]})
    await send({"type": "http.response.body", "body": b""})


async def _set_cookie_and_redirect(send, path: str, token: str):
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()
    await _redirect(send, path or "/", [(b"set-cookie", cookie)])
