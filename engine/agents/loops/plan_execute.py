"""Plan-then-execute (ReWOO): one model turn writes the whole plan, workers run it, one turn solves.

The planner writes `Plan: …` lines, each followed by `#E1 = tool[arguments]`; arguments may cite earlier
evidence (`#E1`), which is substituted before the call. Only two model turns are spent however many tools run,
which suits slow local models. The plan is carried out in order; a reference to evidence that does not exist
yet is refused as an observation, and the solver sees every observation, errors included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from engine.agents.loops.base import AgentLoop, Stop
from engine.agents.trace import Step

PLANNER = {
    "en": """Make a plan to answer the question with these tools:
{tools}

For each step write one line "Plan: what this step does" and below it "#E<n> = tool[arguments]", where the \
arguments are a JSON object (or plain text for a tool with one argument) and may use earlier results as #E1, \
#E2 …. Write only the plan. Example:
Plan: work out the total
#E1 = calculator[{{"expression": "3 * 4"}}]
Plan: add the tax
#E2 = calculator[{{"expression": "#E1 * 1.1"}}]""",
    "zh": """请用以下工具制定回答问题的计划：
{tools}

每一步先写一行“Plan: 这一步做什么”，下一行写“#E<n> = 工具名[参数]”，参数是一个 JSON 对象（只有一个参数的工具也可以\
直接写文本），可以用 #E1、#E2 …… 引用前面步骤的结果。只写计划。例如：
Plan: 计算总数
#E1 = calculator[{{"expression": "3 * 4"}}]
Plan: 加上税
#E2 = calculator[{{"expression": "#E1 * 1.1"}}]""",
}
SOLVER = {
    "en": "Solve the task with the plan and the evidence below. Answer directly and briefly.\n\nTask: {question}\n\n"
    "{evidence}\n\nAnswer:",
    "zh": "根据下面的计划和证据完成任务，直接简要地回答。\n\n任务：{question}\n\n{evidence}\n\n答案：",
}
NO_PLAN = {"en": "the planner wrote no '#E1 = tool[arguments]' line", "zh": "计划中没有“#E1 = 工具名[参数]”这样的行"}

_PLAN_LINE = re.compile(r"^\s*(?:plan|计划)\s*\d*\s*[:：]\s*(?P<text>.*)$", re.IGNORECASE | re.MULTILINE)
_EVIDENCE_LINE = re.compile(r"^\s*#E(?P<n>\d+)\s*[=＝]\s*(?P<tool>[\w-]+)\s*[\[(](?P<args>.*)[\])]\s*$", re.MULTILINE)
_REFERENCE = re.compile(r"#E(\d+)")


@dataclass
class PlannedCall:
    """One `#En = tool[args]` line and the Plan line above it."""

    label: str
    """#E1, #E2 …"""
    tool: str
    """The tool to call."""
    arguments: str
    """The text between the brackets, references unresolved."""
    purpose: str = ""
    """The Plan line that explains it."""


def parse_plan(text: str) -> list[PlannedCall]:
    calls = []
    for match in _EVIDENCE_LINE.finditer(text):
        purposes = [p for p in _PLAN_LINE.finditer(text, 0, match.start())]
        purpose = purposes[-1].group("text").strip() if purposes else ""
        calls.append(PlannedCall(f"#E{match.group('n')}", match.group("tool"), match.group("args").strip(), purpose))
    return calls


def _substitute(arguments: str, evidence: dict[str, str]) -> str:
    """Put earlier evidence where #En stands; inside JSON arguments it is escaped as string content."""
    in_json = arguments.lstrip().startswith("{")

    def value(match: re.Match) -> str:
        text = evidence[f"#E{match.group(1)}"]
        return json.dumps(text, ensure_ascii=False)[1:-1] if in_json else text

    return _REFERENCE.sub(value, arguments)


class PlanExecuteLoop(AgentLoop):
    kind = "plan_execute"

    def _steps(self, question: str) -> Iterator[Step]:
        lang = self.config.language
        assert self.trace is not None
        planner = PLANNER[lang].format(tools=self.toolbox.describe() or "-")
        if self.config.system_prompt:
            planner = f"{self.config.system_prompt}\n\n{planner}"
        reply, seconds = self.ask([{"role": "system", "content": planner}, {"role": "user", "content": question}])
        plan = parse_plan(reply.content)
        if not plan:
            raise Stop("error", f"{NO_PLAN[lang]}: {reply.content.strip()[:300]!r}")
        yield self.trace.add(
            "plan", turn=self._turn, thought=reply.content.strip(), duration_s=seconds, tokens=reply.tokens
        )
        evidence: dict[str, str] = {}
        for done, call in enumerate(plan):
            if done >= self.config.max_steps:
                raise Stop(
                    "max_steps", f"the plan has {len(plan)} steps; max_steps={self.config.max_steps} were carried out"
                )
            missing = [f"#E{n}" for n in _REFERENCE.findall(call.arguments) if f"#E{n}" not in evidence]
            if missing:
                step = self.trace.add(
                    "tool",
                    turn=self._turn,
                    thought=call.purpose,
                    tool=call.tool,
                    arguments=call.arguments,
                    call_id=call.label,
                    observation=f"Error: {call.label} refers to {', '.join(missing)}, which no earlier step produced",
                    error=f"{call.label} refers to missing evidence {', '.join(missing)}",
                )
            else:
                resolved = _substitute(call.arguments, evidence)
                arguments = self.toolbox.coerce(call.tool, resolved)
                step = self.act(call.tool, arguments, thought=call.purpose, call_id=call.label)
            evidence[call.label] = step.observation
            yield step
        lines = []
        for call in plan[: len(evidence)]:
            lines.append(
                f"Plan: {call.purpose}\n{call.label} = {call.tool}[{call.arguments}]\nEvidence: {evidence[call.label]}"
            )
        solver = SOLVER[lang].format(question=question, evidence="\n\n".join(lines))
        reply, seconds = self.ask([{"role": "user", "content": solver}], count_turn=False)
        yield self.answer(reply.content.strip(), duration_s=seconds, tokens=reply.tokens)
