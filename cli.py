"""The `inkstone` command: every job the UI can start, the CLI can too, with the same argument dataclass.

`inkstone <kind> --field value …` builds a job kind's arguments from its dataclass (field docs become the
help), submits it, and follows it with a progress bar; if no consumer is running (the app is not open), it
runs the job right here, still as a recorded job. Ctrl-C cancels the job it follows, and so do SIGTERM and
SIGHUP (`kill`, a closed terminal): a job run right here must not be left marked running by a killed CLI.

It is a face, like the web UI and the launcher: it sits on top of `jobs/` and `app/`, and nothing imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import typing
from pathlib import Path

from app.errors import DatabaseError, NotFound
from app.settings import SettingsError, data_dir
from engine.argdocs import field_docs

MANAGEMENT = ("ui", "jobs", "models", "agent", "agent-bench", "mcp-server")


def _add_kind_parser(sub, kind, groups: dict) -> None:
    from jobs.kinds import user_fields

    words = (kind.cli or kind.name.replace("_", "-")).split()
    for depth, word in enumerate(words[:-1]):  # "export gguf": a group `export` holding `gguf`
        key = tuple(words[: depth + 1])
        if key not in groups:
            group = sub.add_parser(word, help=f"{word} commands")
            groups[key] = group.add_subparsers(dest=f"verb{depth}", required=True)
        sub = groups[key]
    p = sub.add_parser(words[-1], help=kind.title, description=kind.title)
    docs = field_docs(kind.args_cls)
    hints = typing.get_type_hints(kind.args_cls)
    presets = kind.presets()
    p.add_argument("--preset", metavar="NAME", help=f"start from saved arguments, assets/{kind.name}/NAME.json; "
                   f"the flags given override them (presets: {', '.join(presets) or 'none'})")
    for f in user_fields(kind.args_cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{docs.get(f.name, '')} (default: {default!r})"
        tp = hints[f.name]
        optional = [a for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp) and len(optional) == 1:
            tp = optional[0]  # `int | None`: a flag of the int; leaving it out keeps the default (None)
        if tp is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif tp in (int, float, str):
            p.add_argument(flag, dest=f.name, type=tp, default=None, help=help_text)
        elif typing.get_origin(tp) is typing.Literal:
            p.add_argument(flag, dest=f.name, choices=typing.get_args(tp), default=None, help=help_text)
        else:  # lists and dicts as JSON
            p.add_argument(flag, dest=f.name, type=json.loads, default=None, help=help_text + " [JSON]")
    if "model" in hints:  # `inkstone serve MODEL` reads better than `--model MODEL`
        p.add_argument("model_ref", nargs="?", metavar="MODEL", help="same as --model")
    if kind.name == "serve":
        p.add_argument("--api-key", help="clients must send it as a Bearer token (or set INKSTONE_API_KEY)")
    p.add_argument("--detach", action="store_true", help="submit to the queue and return at once")
    p.set_defaults(kind=kind.name)


def build_parser() -> argparse.ArgumentParser:
    from jobs.kinds import KINDS, _load_builtin_kinds

    _load_builtin_kinds()
    parser = argparse.ArgumentParser(prog="inkstone", description="Inkstone: a workstation LLM toolkit")
    parser.add_argument("--data-dir", help="data dir (default: INKSTONE_HOME or ~/.inkstone)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ui", help="start the app (consumer + web UI) and open the browser", add_help=False)

    jobs = sub.add_parser("jobs", help="list, show, cancel and retry jobs")
    jsub = jobs.add_subparsers(dest="action", required=True)
    jl = jsub.add_parser("list", help="recent jobs")
    jl.add_argument("--limit", type=int, default=20)
    for action in ("show", "cancel", "retry"):
        jsub.add_parser(action, help=f"{action} a job").add_argument("id", type=int)
    jsub.choices["show"].add_argument("--log", action="store_true", help="print the log tail too")

    models = sub.add_parser("models", help="the model registry")
    msub = models.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="registered models")
    mi = msub.add_parser("import", help="register an HF folder or convert a GGUF file")
    mi.add_argument("path")
    mi.add_argument("--name", default="")
    msub.add_parser("remove", help="remove a model (its folder too if Inkstone made it)").add_argument("id")
    msub.add_parser("path", help="print a model's local HF folder").add_argument("id")
    msub.add_parser("setup-default", help="convert and register the bundled SmolLM2 model")

    _add_agent_parser(sub)
    bench = sub.add_parser("agent-bench", help="score a model's tool calling: BFCL v4 categories, GSM8K with "
                           "Python, ToolTalk conversations")
    bench.add_argument("model", help="a registered model, a .gguf file, or a model server's URL")
    bench.add_argument("--bench", default="bfcl:simple_python",
                       help="bfcl:<simple_python|multiple|parallel|parallel_multiple|irrelevance>, gsm8k-python, "
                       "or tooltalk[:easy|tooltalk] (ToolTalk's easy or hard conversations)")
    bench.add_argument("--limit", type=int, default=20, help="items (ToolTalk: conversations) to run")
    bench.add_argument("--api-key", help="Bearer token of a model server URL")
    mcp = sub.add_parser("mcp-server", help="serve Inkstone to outside agents over MCP (Streamable HTTP at /mcp)")
    mcp.add_argument("--host", default="127.0.0.1", help="bind address; beyond loopback a token is required")
    mcp.add_argument("--port", type=int, default=8766, help="port (the app itself uses 8765)")
    mcp.add_argument("--token", help="clients must send it as a Bearer token (or set INKSTONE_TOKEN)")
    groups: dict = {}
    for kind in KINDS.values():
        _add_kind_parser(sub, kind, groups)
    return parser


def _human(n: float) -> str:
    for unit in ("", "K", "M", "B", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def _stderr_progress(fraction=None, message=None, metrics=None, step=None) -> None:
    """Progress of work done right here (the bundled model's one-time set-up), as lines on stderr."""
    if message:
        print(f"inkstone: {message}" + (f" ({fraction:.0%})" if fraction is not None else ""), file=sys.stderr,
              flush=True)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def follow(root: Path, job_id: int) -> int:
    """Show a job's progress until it ends; Ctrl-C, SIGTERM or SIGHUP ask it to stop."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:  # an ignored one (nohup) stays ignored, as SIGINT does
                signal.signal(sig, _interrupt)
    from tqdm import tqdm

    from jobs import status as st
    from jobs.api import cancel, get_job

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}")
    shown_result = False
    try:
        while True:
            job = get_job(root, job_id)
            if job.result and not shown_result and job.status not in st.FINAL:
                bar.write(json.dumps(job.result, ensure_ascii=False))  # e.g. a server's URL while it runs
                shown_result = True
            bar.n = round(job.progress * 100, 1)
            bar.set_postfix_str(job.message[:60], refresh=False)
            bar.refresh()
            if job.status in st.FINAL:
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        cancel(root, job_id)
        print(f"\ncancelling job {job_id}…", file=sys.stderr)
        return follow(root, job_id)
    finally:
        bar.close()
    print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    if job.result:
        print(json.dumps(job.result, indent=2, ensure_ascii=False))
    return 0 if job.status == st.SUCCEEDED else 1


def run_kind(root: Path, args: argparse.Namespace) -> int:
    from jobs.api import submit
    from jobs.consumer import consumer_running
    from jobs.kinds import get_kind, user_fields

    kind = get_kind(args.kind)
    params = kind.preset(args.preset) if getattr(args, "preset", None) else {}
    params |= {f.name: getattr(args, f.name) for f in user_fields(kind.args_cls)
               if getattr(args, f.name, None) is not None}
    if getattr(args, "model_ref", None):
        params["model"] = args.model_ref
    secrets = {}
    if getattr(args, "api_key", None):
        # Secrets stay out of the job row: stored beside the job, handed to its worker's environment.
        from jobs.tasks.serve import API_KEY_ENV

        os.environ[API_KEY_ENV] = args.api_key  # the arguments are checked here too, before anything is queued
        secrets[API_KEY_ENV] = args.api_key
    if args.detach or consumer_running(root):
        job = submit(root, kind.name, params, secrets=secrets)
        print(f"submitted job {job.id} ({kind.name})")
        if not consumer_running(root):
            print("no job consumer runs for this data dir: the job starts when one does (inkstone ui)")
        return 0 if args.detach else follow(root, job.id)
    # No consumer: record the job and run it in this process, so it still has its row, log and metrics.
    from jobs.runner import run_job

    job = submit(root, kind.name, params, enqueue=False, secrets=secrets)
    runner = threading.Thread(target=run_job, args=(root, job.id), daemon=True)
    runner.start()
    return follow(root, job.id)


def jobs_command(root: Path, args) -> int:
    from jobs import api

    if args.action == "list":
        for j in api.list_jobs(root, args.limit):
            print(f"{j.id:>5}  {j.kind:<14} {j.status:<11} {j.progress * 100:5.1f}%  {j.message[:60]}")
        return 0
    if args.action == "show":
        j = api.get_job(root, args.id)
        print(json.dumps(j.model_dump(), indent=2, ensure_ascii=False, default=str))
        if args.log:
            print(api.log_tail(root, args.id))
        return 0
    j = api.cancel(root, args.id) if args.action == "cancel" else api.retry(root, args.id)
    print(f"job {j.id}: {j.status}" + (" (stop requested)" if j.cancel_requested else ""))
    return 0


def models_command(root: Path, args) -> int:
    from app import registry

    if args.action == "list":
        registry.ensure_bundled(root, _stderr_progress)  # a fresh data dir lists the bundled model
        models = registry.list_models(root)
        if not models:
            print("no models registered: import one with `inkstone models import PATH` (an HF folder or a .gguf "
                  "file), or `inkstone models setup-default` for the bundled SmolLM2-135M-Instruct")
        for m in models:
            print(f"{m.id:>4}  {m.name:<28} {m.arch:<8} {_human(m.params):>7}  ctx {m.context_len:<6} "
                  f"{m.dtype:<8} {m.size_bytes / 2**20:8.0f} MiB  template={'yes' if m.has_chat_template else 'no'}")
        return 0
    if args.action == "path":
        print(registry.resolve_model(root, args.id).path)
        return 0
    if args.action == "remove":
        print(f"removed {registry.remove_model(root, args.id).name}")
        return 0
    params = {"bundled": True} if args.action == "setup-default" else {"path": args.path, "name": args.name}
    fields = {"path": None, "name": None, "bundled": None} | params
    return run_kind(root, argparse.Namespace(kind="import_model", detach=False, **fields))


def _add_agent_parser(sub) -> None:
    from engine.agents import LOOPS
    from engine.agents.catalog import BUILTIN

    p = sub.add_parser("agent", help="run an agent: the model calls tools, each step is shown, the answer printed")
    p.add_argument("model", help="a registered model, a .gguf file, or a model server's URL (http://HOST:PORT)")
    p.add_argument("question")
    p.add_argument("--tools", default="calculator", help=f"comma-separated, from: {', '.join(BUILTIN)}")
    p.add_argument("--loop", choices=list(LOOPS), default="function_calling")
    p.add_argument("--max-steps", type=int, default=8, help="most model turns")
    p.add_argument("--language", choices=["en", "zh"], default="en", help="language of the ReAct/plan prompts")
    p.add_argument("--force-tool", help="the first turn must call this tool (tool_choice)")
    p.add_argument("--workspace", help="folder of the python and files tools (default: DATA_DIR/agents/workspace)")
    p.add_argument("--docs", action="append", default=[], help="a file or folder the search tool indexes")
    p.add_argument("--allow-host", action="append", default=[],
                   help="a host the http tool may reach (default: the allowed hosts set in Settings)")
    p.add_argument("--tools-folder", help="a folder of .py files whose typed functions become tools")
    p.add_argument("--mcp", action="append", default=[],
                   help="an MCP server: the name of one set in Settings, a URL (HTTP) or a command (stdio)")
    p.add_argument("--yes", action="store_true", help="approve every call of an 'ask' tool (python) without asking")
    p.add_argument("--api-key", help="Bearer token of a model server URL")
    p.add_argument("--no-save", action="store_true", help="do not store the run (it is listed on the Agents page)")


def _agent_client(root: Path, model: str, api_key: str | None):
    """A URL, a running server of a registered model, or the model loaded right here."""
    from engine.agents import LocalEngineClient, OpenAIClient

    if model.startswith(("http://", "https://")):
        from openai import OpenAI

        url = model.rstrip("/").removesuffix("/v1") + "/v1"
        served = OpenAI(base_url=url, api_key=api_key or "none", max_retries=0).models.list().data
        if not served:
            raise ValueError(f"{model}: the server lists no models")
        return OpenAIClient(url, served[0].id, api_key or "none")
    from jobs import status as st
    from jobs.servers import server_for

    job = server_for(root, model)
    if job is not None and job.status == st.RUNNING and job.result.get("url"):
        return OpenAIClient(job.result["url"], model)
    from app import registry
    from engine.infer import EngineConfig, LLMEngine

    path = model if registry.is_gguf(model) else registry.resolve_model(root, model, _stderr_progress).path
    print(f"inkstone: loading {model} here (no server runs for it)", file=sys.stderr)
    return LocalEngineClient(LLMEngine(path, EngineConfig()), registry.display_name(model))


def _ask_approval(tool: str, arguments: dict) -> str:
    if not sys.stdin.isatty():
        return "deny"
    answer = input(f"allow {tool} {json.dumps(arguments, ensure_ascii=False)}? [y]es once, [s]ession, [N]o: ")
    return {"y": "once", "yes": "once", "s": "session"}.get(answer.strip().lower(), "deny")


def _print_step(step) -> None:
    if step.kind == "tool":
        args = step.arguments if isinstance(step.arguments, str) else json.dumps(step.arguments, ensure_ascii=False)
        if step.thought:
            print(f"  thought: {step.thought}", file=sys.stderr)
        print(f"[{step.index}] {step.tool} {args} ({step.duration_s:.1f} s)\n    → {step.observation}", file=sys.stderr)
    elif step.kind == "plan":
        print(f"[{step.index}] plan:\n{step.thought}", file=sys.stderr)
    elif step.kind == "error":
        print(f"[{step.index}] {step.error}", file=sys.stderr)


def agent_command(root: Path, args) -> int:
    from app.settings import load_settings
    from engine.agents import LOOPS, AgentConfig, Toolbox
    from engine.agents.catalog import ToolSettings, build_tools
    from engine.agents.mcp_client import MCPServerSpec

    saved = load_settings(root)
    configured = {server.name: server for server in saved.mcp_servers}
    specs = [configured[s].to_spec() if s in configured else
             MCPServerSpec(name=f"mcp{i}", **({"url": s} if s.startswith(("http://", "https://")) else {"command": s}))
             for i, s in enumerate(args.mcp, 1)]
    settings = ToolSettings(workspace=args.workspace or str(root / "agents" / "workspace"), documents=args.docs,
                            allowed_hosts=args.allow_host or saved.agent_allowed_hosts,
                            tools_folder=args.tools_folder or "", mcp_servers=specs)
    built = build_tools([n.strip() for n in args.tools.split(",") if n.strip()], settings)
    for problem in built.problems:
        print(f"inkstone: {problem}", file=sys.stderr)
    try:
        policies = {t.name: "always" for t in built.tools if t.approval == "ask"} if args.yes else None
        toolbox = Toolbox(built.tools, policies=policies, approver=_ask_approval)
        choice = {"type": "function", "function": {"name": args.force_tool}} if args.force_tool else None
        config = AgentConfig(max_steps=args.max_steps, language=args.language, tool_choice=choice)
        loop = LOOPS[args.loop](_agent_client(root, args.model, args.api_key), toolbox, config)
        trace = loop.run(args.question, on_step=_print_step)
    finally:
        built.close()
    if not args.no_save:
        from app.agents import save_run

        print(f"inkstone: saved as agent run {save_run(root, trace.to_dict()).id}", file=sys.stderr)
    if trace.answer is None:
        print(f"inkstone: no answer ({trace.status}): {trace.message}", file=sys.stderr)
        return 1
    print(trace.answer)
    return 0


def agent_bench_command(root: Path, args) -> int:
    client = _agent_client(root, args.model, args.api_key)
    name, _, category = args.bench.partition(":")
    if name == "bfcl":
        from engine.agents.bench import bfcl

        result = bfcl.evaluate(client, category or "simple_python", args.limit, progress=_stderr_progress)
        metrics = {"accuracy": result.accuracy, "items": result.total}
        print(f"licence: {bfcl.LICENCE}", file=sys.stderr)
    elif name == "gsm8k-python":
        from engine.agents.bench import gsm8k_tool
        from engine.eval.tasks import get_task

        items = get_task("gsm8k_tool").docs("test")[: args.limit]
        scores = gsm8k_tool.evaluate(client, root / "agents" / "bench-workspace", items, progress=_stderr_progress)
        metrics = scores.metrics() | {"items": scores.total}
        print(f"licence: {gsm8k_tool.LICENCE}", file=sys.stderr)
    elif name == "tooltalk":
        from engine.agents.bench import tooltalk

        conversations = tooltalk.load(category or "easy", args.limit)
        results = tooltalk.evaluate(client, conversations, progress=_stderr_progress)
        metrics = tooltalk.metrics(results) | {"conversations": len(results)}
        print(f"licence: {tooltalk.LICENCE}", file=sys.stderr)
    else:
        raise ValueError(f"--bench {args.bench!r}: use bfcl:<category>, gsm8k-python or tooltalk[:easy|tooltalk]")
    print(json.dumps({"bench": args.bench, "model": args.model, **metrics}, ensure_ascii=False))
    return 0


def mcp_server_command(root: Path, args) -> int:
    import uvicorn

    from engine.netaddr import bind_host
    from jobs.mcp_server import http_app

    host = bind_host(args.host)
    app = http_app(root, host, args.token or os.environ.get("INKSTONE_TOKEN", ""))
    print(f"inkstone: MCP server at http://{host}:{args.port}/mcp", file=sys.stderr)
    uvicorn.run(app, host=host, port=args.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ui"]:
        import launcher

        return launcher.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        root = data_dir(args.data_dir)
        os.environ["INKSTONE_HOME"] = str(root)
        if args.command == "jobs":
            return jobs_command(root, args)
        if args.command == "models":
            return models_command(root, args)
        if args.command == "agent":
            return agent_command(root, args)
        if args.command == "agent-bench":
            return agent_bench_command(root, args)
        if args.command == "mcp-server":
            return mcp_server_command(root, args)
        return run_kind(root, args)
    except (SettingsError, NotFound, ValueError, FileNotFoundError, DatabaseError) as e:
        print(f"inkstone: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
