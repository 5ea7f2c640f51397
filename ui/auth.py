"""Access-token guard for every page, API call and websocket when a token is set.

A browser presents the token once (?token=… or the sign-in form); it is kept in an HttpOnly cookie.
Programs send `Authorization: Bearer <token>`. Pure ASGI, so websockets are guarded too.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

COOKIE = "inkstone_token"
OPEN_PATHS = ("/healthz", "/signin", "/_nicegui/")  # health probe, sign-in form and its static assets


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


class TokenGuard:
    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not self.token:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        presented, from_query = _presented(scope)
        ok = bool(presented) and hmac.compare_digest(presented.encode(), self.token.encode())
        if ok and from_query and scope["type"] == "http":
            return await _set_cookie_and_redirect(send, path, self.token)
        if ok or path.startswith(OPEN_PATHS):
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
