"""The Agent playground: pick a model, a loop and tools, ask, and watch every step; rate runs, export good ones.

The loop (engine.agents) runs in a thread of the web process and talks to a model server over HTTP — engine.agents
imports no torch, so the web process stays free of it; model code runs only in the sandbox. Steps and approval
requests travel to the page through a queue drained by a timer: an "ask" tool pauses the loop on an event until
the user approves once, for the session, or denies, after seeing the exact arguments. Runs are stored when they
end, listed with their rating, and selected runs become an SFT dataset.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

from nicegui import ui

from app import agents as store
from app.registry import gguf_files, list_models
from ui import state
from ui.components.agent_tools import ToolPicker
from ui.components.mcp_servers import record_stopped
from ui.components.offload import io_bound
from ui.components.sandbox_status import sandbox_badge
from ui.frame import frame
from ui.i18n import t

LOOP_LABELS = {"function_calling": "Function calling", "react": "ReAct", "plan_execute": "Plan then execute"}


def _client(root: Path, model: str, url: str):
    """A client for the URL typed in, or for the running server of the chosen registered model."""
    from engine.agents import OpenAIClient
    from jobs import status as st
    from jobs.servers import server_for

    if url.strip():
        from openai import OpenAI

        base = url.strip().rstrip("/").removesuffix("/v1") + "/v1"
        served = OpenAI(base_url=base, api_key="none", max_retries=0, timeout=10).models.list().data
        if not served:
            raise ValueError(f"{url}: the server lists no models")
        return OpenAIClient(base, served[0].id)
    job = server_for(root, model)
    if job is None or job.status != st.RUNNING or not job.result.get("url"):
        raise ValueError(
            t("No server runs for {model}: start one on the Chat page, or give a server URL.", model=model)
        )
    return OpenAIClient(job.result["url"], model)


def _settings(root: Path, documents: str, hosts: list[str], mcp_specs: list, code_max_chars: int = 0):
    from engine.agents.catalog import ToolSettings

    return ToolSettings(
        workspace=str(root / "agents" / "workspace"),
        mcp_servers=mcp_specs,
        allowed_hosts=hosts,
        python_code_max_chars=code_max_chars,
        documents=[line.strip() for line in documents.splitlines() if line.strip()],
    )


@dataclass
class RunRequest:
    """What the form asked for."""

    model: str
    url: str
    loop: str
    tools: list[str]
    policies: dict
    settings: object
    question: str
    language: str
    max_steps: int
    tool_choice: object = None
    """Function calling: what the first turn must call (None: the model decides)."""


@dataclass
class Approval:
    """A paused call: the loop thread waits on `done` for `decision`."""

    tool: str
    arguments: dict
    done: threading.Event = field(default_factory=threading.Event)
    decision: str = "deny"


class AgentRunner:
    """One run in a thread; what it produces goes to `events` for the page's timer."""

    def __init__(self, root: Path):
        self.root = root
        self.events: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, request: RunRequest) -> None:
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(request,), daemon=True, name="agent-run")
        self.thread.start()

    def _approve(self, tool: str, arguments: dict) -> str:
        request = Approval(tool, arguments)
        self.events.put(("approval", request))
        while not request.done.wait(0.2):
            if self.cancel.is_set():
                return "deny"
        return request.decision

    def _run(self, request: RunRequest) -> None:
        from engine.agents import LOOPS, AgentConfig, Toolbox
        from engine.agents.catalog import build_tools

        built = None
        try:
            built = build_tools(request.tools, request.settings)
            for problem in built.problems:
                self.events.put(("problem", problem))
            names = {tool.name for tool in built.tools}
            policies = {k: v for k, v in request.policies.items() if k in names}
            toolbox = Toolbox(built.tools, policies=policies, approver=self._approve)
            config = AgentConfig(
                max_steps=request.max_steps, language=request.language, tool_choice=request.tool_choice
            )
            loop = LOOPS[request.loop](_client(self.root, request.model, request.url), toolbox, config)
            trace = loop.run(request.question, on_step=lambda step: self.events.put(("step", step)), cancel=self.cancel)
            run = store.save_run(self.root, trace.to_dict())
            self.events.put(("done", (trace, run.id)))
        except Exception as exc:
            self.events.put(("failed", str(exc)))
        finally:
            if built is not None:
                for connection in built.connections:
                    if connection.error:  # it stopped during the run (a clean close comes below)
                        record_stopped(connection.spec.name, connection.error)
                built.close()


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")


def _images(workspace: Path, observation: str) -> list[Path]:
    """Images the Python tool says it wrote ("Files written: a.png, b.csv"), inside the workspace only."""
    found = []
    for line in observation.splitlines():
        if line.startswith("Files written: "):
            for name in line.removeprefix("Files written: ").split(", "):
                path = (workspace / name).resolve()
                if path.suffix.lower() in IMAGE_SUFFIXES and workspace in path.parents and path.is_file():
                    found.append(path)
    return found


def step_card(step, workspace: Path) -> None:
    with ui.card().classes("w-full").mark(f"step-{step.index}"):
        with ui.row().classes("items-center gap-2 text-sm opacity-70"):
            kind = {"tool": t("Tool call"), "plan": t("Plan"), "answer": t("Answer"), "error": t("Problem")}
            ui.label(f"#{step.index} · {kind.get(step.kind, step.kind)}")
            ui.label(t("{s:.1f} s · {n} tokens", s=step.duration_s, n=step.tokens))
        if step.thought:
            ui.label(step.thought).classes("whitespace-pre-wrap italic")
        if step.kind == "tool":
            args = (
                step.arguments
                if isinstance(step.arguments, str)
                else json.dumps(step.arguments, ensure_ascii=False, indent=1)
            )
            ui.label(f"{step.tool} {args}").classes("font-mono whitespace-pre-wrap")
            ui.label(step.observation).classes("font-mono whitespace-pre-wrap bg-gray-100 p-2 rounded w-full").mark(
                f"observation-{step.index}"
            )
            for image in _images(workspace, step.observation):
                ui.image(image).classes("max-w-md").mark(f"image-{step.index}")
        elif step.kind == "answer":
            ui.markdown(step.observation).mark("answer")
        elif step.error:
            ui.label(step.error).classes("text-negative")


class AgentsView:
    def __init__(self, root: Path, model_names: list[str]):
        from engine.agents import LOOPS

        self.root = root
        self.runner = AgentRunner(root)
        with ui.row().classes("w-full no-wrap items-start gap-4"):
            with ui.column().classes("flex-1 min-w-0 gap-2"):
                with ui.row().classes("items-end gap-2 w-full"):
                    self.model = (
                        ui.select(model_names, value=model_names[0] if model_names else None, label=t("Model"))
                        .classes("w-56")
                        .mark("agent-model")
                    )
                    ui.button(t("Start its server"), on_click=self.start_server).props("flat").mark("agent-serve")
                    self.url = ui.input(t("or a server URL")).classes("w-72").mark("agent-url")
                    self.loop = (
                        ui.select({k: t(LOOP_LABELS[k]) for k in LOOPS}, value="function_calling", label=t("Loop"))
                        .classes("w-48")
                        .mark("agent-loop")
                    )
                    self.language = ui.select({"en": "English", "zh": "中文"}, value="en", label=t("Prompt language"))
                    self.max_steps = ui.number(t("Max steps"), value=8, min=1, max=50).classes("w-24")
                self.picker = ToolPicker()
                self.documents = (
                    ui.textarea(t("Documents to search (files or folders, one a line)"))
                    .classes("w-full")
                    .props("rows=2")
                    .mark("agent-documents")
                )
                self.question = ui.textarea(t("Question")).classes("w-full").mark("agent-question")
                with ui.row():
                    self.run_button = ui.button(t("Run"), on_click=self.start).mark("agent-run")
                    self.stop_button = ui.button(t("Stop"), on_click=lambda: self.runner.cancel.set()).props("flat")
                    self.stop_button.mark("agent-stop").disable()
                self.status = ui.label("").mark("agent-status")
                self.steps = ui.column().classes("w-full gap-2")
            with ui.column().classes("w-96 gap-2"):
                ui.label(t("Runs")).classes("text-lg")
                self.runs = ui.column().classes("w-full gap-1")
                self.selected: set[int] = set()
                self.dataset_name = ui.input(t("Dataset name")).classes("w-full").mark("export-name")
                ui.button(t("Export selected runs as a dataset"), on_click=self.export).mark("export-runs")
        self.dialog = ui.dialog()
        ui.timer(0.2, self.drain)

    async def start(self) -> None:
        if not (self.question.value or "").strip():
            ui.notify(t("Write a question first."), type="warning")
            return
        try:
            hosts = await io_bound(self.picker.save_hosts)
            tool_choice = self.picker.forced_choice()
        except ValueError as exc:
            ui.notify(str(exc), type="warning")
            return
        self.steps.clear()
        self.status.text = t("Running…")
        self.run_button.disable()
        self.stop_button.enable()
        self.runner.start(
            RunRequest(
                model=self.model.value or "",
                url=self.url.value or "",
                loop=self.loop.value,
                tools=self.picker.checked_builtin(),
                policies=self.picker.chosen_policies(),
                settings=_settings(
                    self.root,
                    self.documents.value or "",
                    hosts,
                    self.picker.mcp_specs(),
                    self.picker.code_max_chars(),
                ),
                question=self.question.value,
                language=self.language.value,
                max_steps=int(self.max_steps.value or 8),
                tool_choice=tool_choice,
            )
        )

    async def start_server(self) -> None:
        from jobs.servers import ensure_server

        if not self.model.value:
            ui.notify(t("Pick a model first."), type="warning")
            return
        job = await io_bound(ensure_server, self.root, self.model.value)
        ui.notify(
            t(
                "Server of {model}: job {id} ({status}); run once it is running.",
                model=self.model.value,
                id=job.id,
                status=t(job.status),
            )
        )

    def drain(self) -> None:
        while True:
            try:
                kind, payload = self.runner.events.get_nowait()
            except queue.Empty:
                return
            if kind == "step":
                with self.steps:
                    step_card(payload, (self.root / "agents" / "workspace").resolve())
            elif kind == "approval":
                self.ask(payload)
            elif kind == "problem":
                ui.notify(payload, type="warning")
            else:
                self.run_button.enable()
                self.stop_button.disable()
                if kind == "failed":
                    self.status.text = t("The run failed: {error}", error=payload)
                else:
                    trace, _ = payload
                    self.status.text = t("Ended: {status}. {message}", status=t(trace.status), message=trace.message)
                    ui.timer(0.1, self.show_runs, once=True)

    def ask(self, request: Approval) -> None:
        def decide(decision: str) -> None:
            request.decision = decision
            request.done.set()
            self.dialog.close()

        self.dialog.clear()
        with self.dialog, ui.card().mark("approval").props("data-testid=approval"):
            ui.label(t("The agent wants to run {tool} with these arguments:", tool=request.tool))
            ui.code(json.dumps(request.arguments, ensure_ascii=False, indent=2), language="json").mark(
                "approval-arguments"
            ).props("data-testid=approval-arguments")
            with ui.row():
                ui.button(t("Approve once"), on_click=lambda: decide("once")).mark("approve-once")
                ui.button(t("Approve for this session"), on_click=lambda: decide("session")).mark("approve-session")
                ui.button(t("Deny"), on_click=lambda: decide("deny")).props("flat").mark("deny")
        self.dialog.open()

    async def show_runs(self) -> None:
        runs = await io_bound(store.list_runs, self.root, 50)
        self.runs.clear()
        with self.runs:
            if not runs:
                ui.label(t("No runs yet.")).classes("opacity-60")
            for run in runs:
                # data-testid: what a browser test finds the row by (markers live on the server only).
                with ui.row().classes("items-center gap-2 w-full no-wrap").mark(f"run-{run.id}").props(
                    f"data-testid=run-{run.id}"
                ):
                    ui.checkbox(
                        value=run.id in self.selected, on_change=lambda e, rid=run.id: self.toggle(rid, e.value)
                    ).mark(f"select-run-{run.id}")
                    ui.label(f"#{run.id} {run.title}").classes("flex-1 truncate")
                    ui.label(t(run.status)).classes("text-xs opacity-60")
                    ui.select(
                        {i: "★" * i if i else "–" for i in range(6)},
                        value=run.rating,
                        on_change=lambda e, rid=run.id: self.rate(rid, e.value),
                    ).props("dense").mark(f"rate-run-{run.id}")

    def toggle(self, run_id: int, on: bool) -> None:
        (self.selected.add if on else self.selected.discard)(run_id)

    async def rate(self, run_id: int, rating: int) -> None:
        await io_bound(store.rate_run, self.root, run_id, rating)

    async def export(self) -> None:
        try:
            dataset = await io_bound(
                store.export_sft_dataset, self.root, sorted(self.selected), self.dataset_name.value or ""
            )
        except (ValueError, LookupError) as exc:
            ui.notify(str(exc), type="negative")
            return
        ui.notify(t("Dataset {name} written with {n} runs.", name=dataset.name, n=dataset.rows), type="positive")


@ui.page("/agents")
async def agents_page():
    root = state.root()
    with frame(t("Agents")):
        names = [m.name for m in await io_bound(list_models, root)] + await io_bound(gguf_files, root)
        sandbox_badge()
        view = AgentsView(root, names)
        await view.show_runs()
        ui.timer(0.1, view.picker.list_mcp_tools, once=True)  # servers may take seconds to start: not in the build
