"""ReAct as a text protocol (Thought / Action / Action Input / Observation / Final Answer), in English or Chinese.

For models and servers without native tool calls, and for the models trained on this format. Replies are read
tolerantly, because small models drift: labels in either language whatever the prompt's language, `:` or `：`,
any case, markdown bold, arguments as a JSON object (fenced or not) or as plain text for a one-parameter tool,
`Action: tool[input]` on one line, and an Observation the model wrote itself is cut off. A reply with neither
an action nor a final answer is answered with a reminder of the format, and the run goes on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from engine.agents.loops.base import AgentLoop
from engine.agents.trace import Step

PROMPTS = {
    "en": """Answer the question as well as you can. You can use these tools:
{tools}

Use this format:
Thought: think about what to do next
Action: the tool to use, one of [{names}]
Action Input: the tool's arguments as a JSON object
Observation: the tool's result (it is given to you; never write it yourself)
... (Thought, Action, Action Input and Observation can repeat)
Thought: I now know the answer
Final Answer: the answer to the question""",
    "zh": """尽你所能回答问题。你可以使用以下工具：
{tools}

请使用如下格式：
思考：想一想下一步做什么
行动：要使用的工具，必须是 [{names}] 之一
行动输入：工具的参数，一个 JSON 对象
观察：工具返回的结果（由系统给出，不要自己写）
……（思考、行动、行动输入、观察可以重复多次）
思考：我已经知道答案了
最终答案：问题的答案""",
}
OBSERVATION = {"en": "Observation: {}", "zh": "观察：{}"}
FORMAT_REMINDER = {
    "en": "Your reply had neither an Action nor a Final Answer. Reply with 'Action:' and 'Action Input:' lines, "
    "or with 'Final Answer:'.",
    "zh": "你的回复既没有“行动”也没有“最终答案”。请用“行动：”和“行动输入：”两行调用工具，或用“最终答案：”回答。",
}

_COLON = r"\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*"
LABELS = {
    "thought": r"thought|思考|想法",
    "action": r"action|行动|动作|工具",
    "input": r"action[ _]input|行动输入|动作输入|工具输入|输入",
    "observation": r"observation|观察|观测",
    "final": r"final[ _]answer|最终答案|最终回答|答案",
}
_LABEL_LINE = re.compile(
    r"^[ \t>*#-]*(?:\*\*)?(?P<label>" + "|".join(f"(?P<{k}>{v})" for k, v in LABELS.items()) + r")" + _COLON,
    re.IGNORECASE | re.MULTILINE,
)
_INLINE_CALL = re.compile(r"^\s*([\w-]+)\s*[\[(](.*)[\])]\s*$", re.DOTALL)
STOP = ["\nObservation:", "\nObservation：", "\n观察：", "\n观察:"]


@dataclass
class Parsed:
    """One ReAct reply, read."""

    thought: str = ""
    action: str = ""
    action_input: str = ""
    final: str | None = None


def _strip_fence(text: str) -> str:
    text = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\s*\n?(.*?)\n?```", text, re.DOTALL)
    return fenced.group(1).strip() if fenced else text


def parse_react(text: str) -> Parsed:
    """Read the labelled sections of a reply; the first Observation (if the model wrote one) ends it."""
    sections: list[tuple[str, int, int]] = []  # (kind, value start, label start)
    for match in _LABEL_LINE.finditer(text):
        kind = next(k for k in LABELS if match.group(k))
        sections.append((kind, match.end(), match.start()))
    parsed = Parsed()
    for i, (kind, start, _) in enumerate(sections):
        end = sections[i + 1][2] if i + 1 < len(sections) else len(text)
        value = text[start:end].strip()
        if kind == "observation":
            break
        if kind == "thought" and not parsed.thought:
            parsed.thought = value
        elif kind == "action" and not parsed.action and parsed.final is None:
            parsed.action = value
        elif kind == "input" and parsed.action and not parsed.action_input:
            parsed.action_input = _strip_fence(value)
        elif kind == "final" and parsed.final is None and not parsed.action:
            parsed.final = value
    if parsed.action and not parsed.action_input:
        inline = _INLINE_CALL.match(parsed.action)
        if inline:
            parsed.action, parsed.action_input = inline.group(1), _strip_fence(inline.group(2))
    parsed.action = parsed.action.strip().strip("`*\"'[]")
    if not sections and text.strip():
        parsed.thought = text.strip()
    return parsed


class ReActLoop(AgentLoop):
    kind = "react"

    def _steps(self, question: str) -> Iterator[Step]:
        lang = self.config.language
        names = ", ".join(t["function"]["name"] for t in self.toolbox.schemas())
        instructions = PROMPTS[lang].format(tools=self.toolbox.describe() or "-", names=names)
        if self.config.system_prompt:
            instructions = f"{self.config.system_prompt}\n\n{instructions}"
        messages = [{"role": "system", "content": instructions}, {"role": "user", "content": question}]
        while True:
            reply, seconds = self.ask(messages, stop=STOP)
            text = reply.content
            cut = _LABEL_LINE.search(text)
            while cut and not cut.group("observation"):
                cut = _LABEL_LINE.search(text, cut.end())
            if cut:
                text = text[: cut.start()]
            parsed = parse_react(text)
            messages.append({"role": "assistant", "content": text.strip()})
            if parsed.action:
                arguments = self.toolbox.coerce(parsed.action, parsed.action_input)
                step = self.act(parsed.action, arguments, thought=parsed.thought, tokens=reply.tokens)
                messages.append({"role": "user", "content": OBSERVATION[lang].format(step.observation)})
                yield step
            elif parsed.final is not None:
                yield self.answer(parsed.final, thought=parsed.thought, duration_s=seconds, tokens=reply.tokens)
                return
            else:
                yield self.failed_turn(
                    FORMAT_REMINDER[lang], thought=text.strip(), duration_s=seconds, tokens=reply.tokens
                )
                messages.append({"role": "user", "content": FORMAT_REMINDER[lang]})
