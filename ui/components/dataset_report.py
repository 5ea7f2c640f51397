"""What a finished data run shows (read from its manifest.json): the funnel of records through the steps, why
records were dropped, length histograms in characters and tokens, the language split, kept and dropped samples
with their reason, near-duplicate clusters side by side, and the bad input that was skipped.

Plain functions that build elements from the manifest dict; the page reads the file off the event loop.
"""

from __future__ import annotations

from nicegui import ui

from ui.i18n import t


def funnel_options(manifest: dict) -> dict:
    """A horizontal bar per step: records left after it, starting with the records read."""
    stats = manifest["stats"]
    names = [t("read")] + [row["step"] for row in stats["steps"]]
    values = [stats["records_read"]] + [row["out"] for row in stats["steps"]]
    return {"tooltip": {"trigger": "axis"}, "grid": {"left": 130, "right": 40, "top": 10, "bottom": 30},
            "xAxis": {"type": "value"}, "yAxis": {"type": "category", "data": names[::-1]},
            "series": [{"type": "bar", "data": values[::-1], "label": {"show": True, "position": "right"}}]}


def histogram_options(hist: dict, unit: str) -> dict:
    edges = hist["edges"]
    labels = [f"{a:,}–{b:,}" for a, b in zip(edges, edges[1:], strict=False)] + [f"≥{edges[-1]:,}"]
    return {"tooltip": {"trigger": "axis"}, "grid": {"left": 50, "right": 10, "top": 30, "bottom": 60},
            "title": {"text": unit, "textStyle": {"fontSize": 13}},
            "xAxis": {"type": "category", "data": labels, "axisLabel": {"rotate": 40}},
            "yAxis": {"type": "value"}, "series": [{"type": "bar", "data": hist["counts"]}]}


def language_options(languages: dict) -> dict:
    data = [{"name": k, "value": v} for k, v in sorted(languages.items(), key=lambda kv: -kv[1])]
    return {"tooltip": {"trigger": "item"}, "series": [{"type": "pie", "radius": "65%", "data": data}]}


def _sample_card(sample: dict) -> None:
    with ui.card().classes("w-full p-2 gap-1"):
        with ui.row().classes("items-center gap-2"):
            if sample.get("reason"):
                ui.badge(sample["reason"], color="negative")
            ui.label(sample.get("source", "")).classes("text-xs opacity-60 break-all")
        ui.label(sample["text"]).classes("text-sm whitespace-pre-wrap break-words")


def drop_table(manifest: dict) -> None:
    rows = [{"step": row["step"], "reason": reason, "count": n}
            for row in manifest["stats"]["steps"] for reason, n in row["dropped"].items() if n]
    rows += [{"step": t("reading"), "reason": reason, "count": n}
             for reason, n in manifest["stats"]["bad_input"].items()]
    columns = [{"name": k, "label": t(k.capitalize()), "field": k, "align": "left"}
               for k in ("step", "reason", "count")]
    ui.table(columns=columns, rows=rows, row_key="reason").classes("w-full").props("dense flat").mark("drop-table")


def samples_view(manifest: dict) -> None:
    stats = manifest["stats"]
    reasons = list(stats["dropped_samples"])
    with ui.tabs().classes("w-full") as tabs:
        kept_tab = ui.tab(t("Kept"))
        dropped_tab = ui.tab(t("Dropped"))
    with ui.tab_panels(tabs, value=kept_tab).classes("w-full"):
        with ui.tab_panel(kept_tab):
            for sample in stats["kept_samples"]:
                _sample_card(sample)
        with ui.tab_panel(dropped_tab):
            if not reasons:
                ui.label(t("Nothing was dropped."))
                return
            reason = ui.select(reasons, value=reasons[0], label=t("Reason")).classes("w-72").mark("reason-select")

            @ui.refreshable
            def shown() -> None:
                for sample in stats["dropped_samples"].get(reason.value, []):
                    _sample_card(sample)

            shown()
            reason.on_value_change(shown.refresh)


def clusters_view(manifest: dict) -> None:
    clusters = manifest.get("clusters") or []
    if not clusters:
        ui.label(t("No near-duplicate clusters.")).classes("opacity-60")
        return
    for i, members in enumerate(clusters, start=1):
        ui.label(t("Cluster {n}: {size} records (the first is kept)", n=i, size=len(members))).classes("font-medium")
        with ui.row().classes("w-full flex-nowrap gap-2 overflow-x-auto"):
            for member in members[:4]:
                with ui.card().classes("min-w-72 max-w-96 p-2"):
                    ui.label(member.get("source", "")).classes("text-xs opacity-60 break-all")
                    ui.label(member["text"]).classes("text-sm whitespace-pre-wrap break-words")


def bad_input_view(manifest: dict) -> None:
    stats = manifest["stats"]
    if not stats["bad_input"]:
        return
    with ui.expansion(t("Skipped input ({n})", n=sum(stats["bad_input"].values())), icon="report").classes("w-full"):
        for reason, n in stats["bad_input"].items():
            examples = ", ".join(stats["bad_examples"].get(reason, []))
            ui.label(f"{reason} × {n}: {examples}").classes("text-sm break-all")


def report(manifest: dict) -> None:
    """The whole results view of one run."""
    stats = manifest["stats"]
    with ui.row().classes("gap-6 text-sm"):
        ui.label(t("Read {n} records", n=f"{stats['records_read']:,}")).mark("records-read")
        ui.label(t("Kept {n}", n=f"{manifest['records_out']:,}")).mark("records-kept")
        ui.label(t("Wrote {n} rows ({fmt})", n=f"{manifest['rows_written']:,}", fmt=manifest["format"]))
        ui.label(t("{s} s", s=manifest["seconds"]))
    bad_input_view(manifest)
    with ui.row().classes("w-full gap-4 flex-nowrap"):
        with ui.card().classes("w-1/2"):
            ui.label(t("Funnel")).classes("font-medium")
            ui.echart(funnel_options(manifest)).classes("w-full h-80").mark("funnel")
        with ui.card().classes("w-1/2"):
            ui.label(t("Why records were dropped")).classes("font-medium")
            drop_table(manifest)
    with ui.row().classes("w-full gap-4 flex-nowrap"):
        with ui.card().classes("w-1/3"):
            ui.echart(histogram_options(manifest["histograms"]["chars"], t("Length (characters)"))).classes(
                "w-full h-64").mark("hist-chars")
        if manifest["histograms"].get("tokens"):
            with ui.card().classes("w-1/3"):
                ui.echart(histogram_options(manifest["histograms"]["tokens"], t("Length (tokens)"))).classes(
                    "w-full h-64").mark("hist-tokens")
        if stats["languages"]:
            with ui.card().classes("w-1/3"):
                ui.label(t("Languages ({n} mixed zh/en)", n=stats["mixed"])).classes("font-medium")
                ui.echart(language_options(stats["languages"])).classes("w-full h-56").mark("languages")
    with ui.expansion(t("Samples"), icon="article", value=True).classes("w-full"):
        samples_view(manifest)
    with ui.expansion(t("Near-duplicate clusters"), icon="content_copy").classes("w-full"):
        clusters_view(manifest)
