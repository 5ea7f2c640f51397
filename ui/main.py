"""The web app process: `python -m ui.main` (started by the launcher or `inkstone ui`).

Registers every page, the token guard and /healthz, starts the telemetry sampler, registers the bundled
model on first start (as a job), and serves on the configured host and port.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from fastapi import Request
from fastapi.responses import JSONResponse
from nicegui import app, ui

from app import worker_pool
from app.telemetry import TelemetrySampler
from ui import pages, state
from ui.auth import TokenGuard, token_presented
from ui.i18n import t

SAMPLER_STOP_S = 5.0


def register_pages() -> None:
    for info in pkgutil.iter_modules(pages.__path__):
        name = f"ui.pages.{info.name}"
        # Each module declares its @ui.page routes on import; tests rebuild the app, so re-run them.
        if name in sys.modules:
            importlib.reload(sys.modules[name])
        else:
            importlib.import_module(name)


def access_token() -> str:
    return os.environ.get("INKSTONE_TOKEN") or state.settings().access_token


@app.get("/healthz")
def healthz(request: Request):
    """"ok" to anyone; the process and its data dir only to a caller that presents the access token."""
    if not token_presented(request.scope, access_token()):
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "ok", "app": "inkstone", "pid": os.getpid(), "data_dir": str(state.root())})


@ui.page("/signin")
def signin_page():
    # A plain HTML form (GET /?token=…): before sign-in the guard lets no websocket through, so a button with a
    # server-side handler would never fire.
    ui.page_title("Inkstone")
    with ui.card().classes("absolute-center w-96"), ui.element("form").props('method=get action="/"') \
            .classes("w-full flex flex-col gap-2"):
        ui.label(t("Enter the access token to continue.")).classes("text-lg")
        ui.input(t("Access token"), password=True).props("name=token autofocus").classes("w-full")
        ui.button(t("Sign in")).props("type=submit")


def register_bundled_model_once() -> None:
    """Until the bundled model was set up in this data dir, queue its conversion (a job: it needs torch, and
    the web process never imports torch). A bundled model the user removed is not re-added."""
    from app.registry import BUNDLED_MARKER
    from jobs.api import submit

    if not (state.root() / BUNDLED_MARKER).exists():
        submit(state.root(), "import_model", {"bundled": True}, title="Set up the bundled model")


def start_background_work() -> TelemetrySampler:
    """On startup: the first-start registration, the telemetry sampler, and their stop on shutdown."""
    register_bundled_model_once()
    sampler = TelemetrySampler(state.root(), state.settings().telemetry_interval_s).start()
    # A lambda, not sampler.stop: NiceGUI hands a handler that takes an argument its App object.
    app.on_shutdown(lambda: stop_background_work(sampler))
    return sampler


def stop_background_work(sampler: TelemetrySampler) -> None:
    """Join the sampler (a failure here is logged by the server as a failed shutdown) and end the worker."""
    worker_pool.shutdown()
    if not sampler.stop(SAMPLER_STOP_S):
        raise RuntimeError(f"the telemetry sampler did not stop within {SAMPLER_STOP_S} s")


def build(data_dir: str | None = None) -> None:
    state.init(data_dir)
    register_pages()
    token = access_token()
    if token:
        app.add_middleware(TokenGuard, token=token)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Serve Inkstone's web UI")
    p.add_argument("--data-dir")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    args = p.parse_args(argv)
    build(args.data_dir)
    settings = state.settings()
    from engine.netaddr import bind_host, check_bind

    host, port = bind_host(args.host or settings.host), args.port or settings.port
    token = access_token()
    try:
        check_bind(host, token, "an access token (Settings, or INKSTONE_TOKEN)")
    except ValueError as e:
        sys.exit(f"refusing to listen: {e}")
    app.on_startup(start_background_work)
    ui.run(host=host, port=port, title="Inkstone", reload=False, show=False, dark=settings.dark_mode,
           storage_secret=token or "inkstone-local", show_welcome_message=False,
           favicon="🪨")


# Not under "__mp_main__": the preview worker (a spawned process) imports this module by that name.
if __name__ == "__main__":
    if os.environ.get("NICEGUI_USER_SIMULATION"):
        # Under NiceGUI's User test fixture: build the pages; ui.run is simulated.
        build(os.environ.get("INKSTONE_HOME"))
        ui.run(storage_secret="test", reload=False, show=False)
    else:
        main()
