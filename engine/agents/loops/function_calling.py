"""Native function calling: tools go in the API's `tools` field, calls come back as `tool_calls`.

The server renders the tools into the model's own chat template and parses its calls (Hermes `<tool_call>`
blocks on our server), so this loop only keeps the conversation: the assistant's calls, one `tool` message per
observation, until the model answers in plain text. `tool_choice` from the config applies to the first turn
only — forcing every turn would never let the model answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from engine.agents.loops.base import AgentLoop
from engine.agents.trace import Step

UNPARSED_CALL_HINT = (
    'Your tool call could not be read: write it as <tool_call>{"name": ..., "arguments": {...}}</tool_call> '
    "with valid JSON, or answer in plain text."
)


class FunctionCallingLoop(AgentLoop):
    kind = "function_calling"

    def _steps(self, question: str) -> Iterator[Step]:
        messages: list[dict] = []
        if self.config.system_prompt:
            messages.append({"role": "system", "content": self.config.system_prompt})
        messages.append({"role": "user", "content": question})
        tools = self.toolbox.schemas()
        first = True
        while True:
            options = {"tools": tools} if tools else {}
            if tools and first and self.config.tool_choice is not None:
                options["tool_choice"] = self.config.tool_choice
            first = False
            reply, seconds = self.ask(messages, **options)
            if not reply.tool_calls:
                if "<tool_call>" in reply.content:
                    # The server gives a call whose JSON did not parse back as text; say so and let it retry.
                    yield self.failed_turn(
                        UNPARSED_CALL_HINT, thought=reply.content, duration_s=seconds, tokens=reply.tokens
                    )
                    messages += [
                        {"role": "assistant", "content": reply.content},
                        {"role": "user", "content": UNPARSED_CALL_HINT},
                    ]
                    continue
                yield self.answer(reply.content.strip(), duration_s=seconds, tokens=reply.tokens)
                return
            calls = [(c, c.id or f"call_{uuid.uuid4().hex[:12]}") for c in reply.tool_calls]
            messages.append(
                {
                    "role": "assistant",
                    "content": reply.content or None,
                    "tool_calls": [
                        {"id": cid, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                        for c, cid in calls
                    ],
                }
            )
            tokens = reply.tokens
            for call, call_id in calls:
                step = self.act(
                    call.name, call.arguments, thought=reply.content.strip(), call_id=call_id, tokens=tokens
                )
                tokens = 0  # the turn's tokens are counted on its first step
                messages.append({"role": "tool", "tool_call_id": call_id, "content": step.observation})
                yield step
