"""The Evaluate page's sample browser: one expandable card per scored item, filterable by run, task, right or
wrong, contamination and text; it shows what the model saw and answered, the extracted vs gold answer, a
program and its sandbox outcome, an agent benchmark's trace, an LLM judge's verdict and reply, pairwise verdicts
against another model, and the n-gram that marked an item contaminated.
"""

from __future__ import annotations

import json
from pathlib import Path

from nicegui import ui

from app import evals
from ui.components.offload import io_bound
from ui.i18n import t


class SampleBrowser:
    def __init__(self, root: Path):
        self.root = root
        with ui.row().classes("items-end gap-4"):
            ui.label(t("Samples")).classes("text-lg")
            self.run = ui.number(t("Run"), precision=0).classes("w-24").mark("eval-sample-run")
            self.task = ui.input(t("Task")).classes("w-48").mark("eval-sample-task")
            self.wrong_only = ui.switch(t("Wrong answers only"), value=True).mark("eval-wrong-only")
            self.contamination = ui.select({"": t("All items"), "contaminated": t("Contaminated only"),
                                            "clean": t("Clean only")}, value="",
                                           label=t("Contamination")).classes("w-40").mark("eval-sample-contam")
            self.search = ui.input(t("Search")).classes("w-48").mark("eval-search")
            ui.button(t("Show"), on_click=self.show).props("outline").mark("eval-samples-show")
        self.box = ui.column().classes("w-full")

    async def show(self) -> None:
        if self.run.value is None:
            return
        found = await io_bound(evals.samples, self.root, int(self.run.value), self.task.value.strip(),
                               bool(self.wrong_only.value), self.search.value.strip(),
                               contamination=self.contamination.value or "")
        self.box.clear()
        with self.box:
            if not found:
                ui.label(t("No samples match.")).classes("opacity-70")
            for smp in found:
                self._card(smp)

    def _card(self, smp) -> None:
        detail = smp.detail or {}
        mark = "✓" if smp.correct else "✗"
        title = f"{mark} {smp.task} #{smp.doc_id} — {t('extracted')}: {smp.extracted!r} · {t('gold')}: " \
                f"{smp.gold!r}" + (f" · {smp.outcome}" if smp.outcome else "")
        judge = detail.get("judge") or {}
        if judge:
            title += f" · {t('judge')}: {judge.get('verdict') or t('no verdict')}"
        if detail.get("contaminated"):
            title += f" · {t('contaminated')}"
        with ui.expansion(title).classes("w-full").mark(f"eval-sample-{smp.id}"):
            ui.code(smp.prompt[-4000:]).classes("w-full text-xs")
            ui.label(t("Answer")).classes("font-medium")
            ui.code(smp.answer or "").classes("w-full text-xs")
            if detail.get("program"):
                ui.label(t("Program")).classes("font-medium")
                ui.code(detail["program"], language="python").classes("w-full text-xs")
                ui.code(detail.get("stderr", "")).classes("w-full text-xs")
            if judge:
                self._judge(judge, detail)
            if detail.get("pairwise"):
                self._pairwise(detail["pairwise"])
            if detail.get("trace"):
                ui.label(t("Agent trace")).classes("font-medium")
                ui.code(json.dumps(detail["trace"], ensure_ascii=False, indent=1, default=str)[-6000:],
                        language="json").classes("w-full text-xs").mark(f"eval-sample-trace-{smp.id}")
            if detail.get("contaminated"):
                ui.label(t("Shares this n-gram with the training data: {gram}",
                           gram=detail.get("overlap", ""))).classes("text-xs text-orange-700").mark(
                    f"eval-sample-overlap-{smp.id}")

    def _judge(self, judge: dict, detail: dict) -> None:
        verdict = judge.get("verdict") or t("no verdict")
        line = t("Judge's verdict: {verdict}", verdict=verdict)
        if "rule_correct" in detail:
            line += " · " + t("rule-based check: {ok}", ok="✓" if detail["rule_correct"] else "✗")
        if judge.get("invalid") or detail.get("judge_invalid"):
            line += " · " + t("the judge's reply gave no valid verdict (scored wrong)")
        ui.label(line).classes("font-medium")
        if judge.get("reply"):
            ui.code(str(judge["reply"])[-3000:]).classes("w-full text-xs")

    def _pairwise(self, pair: dict) -> None:
        verdicts = " / ".join(str(v) for v in pair.get("verdicts", []))
        ui.label(t("Against the other model: {outcome} (verdicts in both orders: {verdicts})",
                   outcome=pair.get("outcome", ""), verdicts=verdicts)).classes("font-medium")
        if pair.get("against_answer"):
            ui.code(str(pair["against_answer"])[-3000:]).classes("w-full text-xs")
