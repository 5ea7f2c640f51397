"""HTTP requests, only to the hosts the user allow-listed.

An agent that can fetch any URL can leak what it read to anywhere; so the tool takes a list of hosts (`docs.local`,
`*.example.com`, `127.0.0.1:8080`) and refuses every other one with a message — redirects included, since a
redirect is followed only when its target is allowed too.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urljoin, urlsplit

from engine.agents.tools.base import Tool, ToolError, tool_from_function

MAX_BODY_CHARS = 20_000
MAX_REDIRECTS = 5


class HttpClient:
    def __init__(self, allowed_hosts: list[str], timeout_s: float = 20.0):
        self.allowed = [h.strip().lower() for h in allowed_hosts if h.strip()]
        self.timeout_s = timeout_s

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = parts.hostname.lower()
        with_port = f"{host}:{parts.port}" if parts.port else host
        for entry in self.allowed:
            if entry.startswith("*."):
                if host.endswith(entry[1:]) or host == entry[2:]:
                    return True
            elif entry in (host, with_port):
                return True
        return False

    def http_request(self, url: str, method: Literal["GET", "POST"] = "GET", body: str = "") -> str:
        """Send an HTTP request to an allowed host and return the status and the response text.

        Args:
            url: The full URL, e.g. "http://docs.local/page".
            method: GET or POST.
            body: The request body for POST (sent as is; JSON text is sent as JSON).
        """
        import httpx

        if not self.allowed:
            raise ToolError("no hosts are allowed for HTTP requests; the user can add some in the tool's settings")
        headers = {}
        if body.lstrip().startswith(("{", "[")):
            headers["content-type"] = "application/json"
        for _ in range(MAX_REDIRECTS + 1):
            if not self.allows(url):
                raise ToolError(f"{url!r} is not on the allowed hosts ({', '.join(self.allowed)})")
            try:
                response = httpx.request(
                    method,
                    url,
                    content=body.encode("utf-8") if body else None,
                    headers=headers,
                    timeout=self.timeout_s,
                    follow_redirects=False,
                )
            except httpx.HTTPError as exc:
                raise ToolError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from None
            if response.is_redirect and "location" in response.headers:
                url, method, body = urljoin(url, response.headers["location"]), "GET", ""
                continue
            text = response.text
            if len(text) > MAX_BODY_CHARS:
                text = text[:MAX_BODY_CHARS] + f"\n[… {len(response.text) - MAX_BODY_CHARS} more characters cut]"
            return f"HTTP {response.status_code}\n{text}"
        raise ToolError(f"{url!r}: more than {MAX_REDIRECTS} redirects")


def http_tool(allowed_hosts: list[str], timeout_s: float = 20.0) -> Tool:
    return tool_from_function(HttpClient(allowed_hosts, timeout_s).http_request)
