"""Agents: loops that let a model call tools, the tools, MCP servers as tool sources, and one trace format.

Library code: nothing here imports the app, the job queue or the UI, and nothing imports torch at module level,
so the web process can run a loop that talks to a model server over HTTP.
"""

from engine.agents.loops.base import AgentConfig, AgentLoop
from engine.agents.loops.function_calling import FunctionCallingLoop
from engine.agents.loops.plan_execute import PlanExecuteLoop
from engine.agents.loops.react import ReActLoop
from engine.agents.model import LocalEngineClient, ModelClient, ModelError, OpenAIClient, Reply, ToolCallRequest
from engine.agents.toolbox import Toolbox
from engine.agents.tools.base import Tool, ToolError, tool_from_function
from engine.agents.trace import Step, Trace

LOOPS: dict[str, type[AgentLoop]] = {
    FunctionCallingLoop.kind: FunctionCallingLoop,
    ReActLoop.kind: ReActLoop,
    PlanExecuteLoop.kind: PlanExecuteLoop,
}

__all__ = [
    "LOOPS",
    "AgentConfig",
    "AgentLoop",
    "FunctionCallingLoop",
    "LocalEngineClient",
    "ModelClient",
    "ModelError",
    "OpenAIClient",
    "PlanExecuteLoop",
    "ReActLoop",
    "Reply",
    "Step",
    "Tool",
    "ToolCallRequest",
    "ToolError",
    "Toolbox",
    "Trace",
    "tool_from_function",
]
