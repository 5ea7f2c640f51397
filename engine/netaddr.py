"""The one answer to "may this address be served without a secret?", for every server Inkstone starts.

The web app, the launcher, the settings form and the model server all bind a host the user typed. An empty
host is the trap: uvicorn and NiceGUI read "" as every interface, so it must never pass as loopback. Here it
means 127.0.0.1 (`bind_host`), and anything that is not a loopback address needs a token (`check_bind`).
"""

from __future__ import annotations

import ipaddress

LOOPBACK = "127.0.0.1"


def bind_host(host: str | None) -> str:
    """The address to bind: the host as given, or 127.0.0.1 when it is empty."""
    host = (host or "").strip()
    return host or LOOPBACK


def is_loopback(host: str) -> bool:
    """Whether binding `host` reaches only this machine ("localhost", 127.0.0.0/8, ::1); "" is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, secret: str | None, secret_name: str) -> None:
    """Raise ValueError naming `secret_name` when `host` is not loopback and no secret guards it."""
    if not is_loopback(host) and not secret:
        raise ValueError(f"{host or '(empty host)'!r} is not a loopback address: listening there needs "
                         f"{secret_name}, or use host {LOOPBACK}")
