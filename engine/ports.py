"""A free TCP port, for the servers and rendezvous points that must name their port before they start.

The OS picks it (bind to port 0); it stays free only until someone else takes it, which on one workstation is
rare enough for servers that then bind it themselves.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
