"""A model that answers from a script, so the loops' own logic can be tested turn by turn.

It replaces only the model: the loop, the toolbox and the tools under test are the real ones. Each request is
recorded so a test can check what the loop sent (tools, tool_choice, stop strings, the observations).
"""

from __future__ import annotations

import copy
import time

from engine.agents.model import ModelError, Reply, ToolCallRequest


def call(name: str, arguments: str, call_id: str = "") -> ToolCallRequest:
    return ToolCallRequest(name=name, arguments=arguments, id=call_id)


class ScriptedClient:
    name = "scripted"

    def __init__(self, *replies: Reply | str, delay_s: float = 0.0):
        self.replies = [Reply(content=r, tokens=10) if isinstance(r, str) else r for r in replies]
        self.requests: list[dict] = []
        self.delay_s = delay_s

    def chat(self, messages, tools=None, tool_choice=None, stop=None, max_tokens=512, temperature=0.0, timeout=None):
        self.requests.append(dict(messages=copy.deepcopy(messages), tools=tools, tool_choice=tool_choice, stop=stop))
        if self.delay_s:
            time.sleep(self.delay_s)
        if len(self.requests) > len(self.replies):
            raise ModelError(f"the script has only {len(self.replies)} replies")
        return self.replies[len(self.requests) - 1]
