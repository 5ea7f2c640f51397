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

from fastapi.responses import JSONResponse
from nicegui import app, ui

from app.settings import is_loopback
from ui import pages, state
from ui.auth import TokenGuard
from ui.i18n import t

FIRST_START_FLAG = ".bundled-model-registered"


def register_pages() -> None:
    for info in pkgutil.iter_modules(pages.__path__):
        name = f"ui.pages.{info.name}"
        # Each module declares its @ui.page routes on import; tests rebuild the app, so re-run them.
        if name in sys.modules:
            importlib.reload(sys.modules[name])
        else:
            importlib.import_module(name)


@app.get("/healthz")
def healthz():
    return JSONResponse({"status": "ok", "app": "inkstone", "pid": os.getpid(), "data_dir": str(state.root())})


@ui.page("/signin")
def signin_page():
    ui.page_title("Inkstone")
    with ui.card().classes("absolute-center w-96"):
        ui.label(t("Enter the access token to continue.")).classes("text-lg")
        token = ui.input(t("Access token"), password=True).classes("w-full")
        ui.button(t("Sign in"), on_click=lambda: ui.navigate.to(f"/?token={token.value}"))


def register_bundled_model_once() -> None:
    """First start only: queue the conversion of the bundled model, so a removed one is not re-added."""
    from jobs.api import submit

    flag = state.root() / FIRST_START_FLAG
    if flag.exists():
        return
    submit(state.root(), "import_model", {"bundled": True}, title="Set up the bundled model")
    flag.write_text("1")


def start_background_work() -> None:
    from app.telemetry import TelemetrySampler

    register_bundled_model_once()
    sampler = TelemetrySampler(state.root(), state.settings().telemetry_interval_s)
    sampler.start()
    app.on_shutdown(sampler.stop)


def build(data_dir: str | None = None) -> None:
    state.init(data_dir)
    register_pages()
    token = os.environ.get("INKSTONE_TOKEN") or state.settings().access_token
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
    host, port = args.host or settings.host, args.port or settings.port
    token = os.environ.get("INKSTONE_TOKEN") or settings.access_token
    if not is_loopback(host) and not token:
        sys.exit(f"refusing to listen on {host}: set an access token first (Settings, or INKSTONE_TOKEN)")
    app.on_startup(start_background_work)
    ui.run(host=host, port=port, title="Inkstone", reload=False, show=False, dark=settings.dark_mode,
           storage_secret=token or "inkstone-local", show_welcome_message=False,
           favicon="🪨")


if __name__ in {"__main__", "__mp_main__"}:
    if os.environ.get("NICEGUI_USER_SIMULATION"):
        # Under NiceGUI's User test fixture: build the pages; ui.run is simulated.
        build(os.environ.get("INKSTONE_HOME"))
        ui.run(storage_secret="test", reload=False, show=False)
    else:
        main()
