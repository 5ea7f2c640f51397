"""A model server on loopback whose replies are scripted (OpenAI chat-completions shape), for the faces of the
agents (CLI, playground) whose wiring is under test: it replaces only the model."""

from __future__ import annotations

import pytest

from tests.helpers import scripted_chat_server

REPLIES = [
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
            }
        ],
    },
    {"role": "assistant", "content": "6 × 7 = 42"},
]


@pytest.fixture
def scripted_server():
    # REPLIES is read per request, so a test may replace it (the playground's `replies` fixture); the last reply
    # repeats once the script runs out.
    with scripted_chat_server(lambda requests: REPLIES[min(len(requests), len(REPLIES)) - 1]) as served:
        yield served
