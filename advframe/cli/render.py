"""Rich rendering: progress bars for library callbacks, tables for results."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from advframe.progress import ProgressEvent
from advframe.report import pct

# Piped or captured output gets a wide table instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 160)


# What each task of the library's progress events counts, for the bar's label.
UNITS = {"evaluate": "examples", "checks": "checks", "epoch": "batches"}


def _unit(task: str) -> str:
    return UNITS.get(task.split(" ", 1)[0], "")


def _done_since_start(task: Task) -> float:
    """Units a task finished since its first event (a resumed run starts past zero)."""
    return task.completed - task.fields.get("first", 0)


class RunRemainingColumn(TimeRemainingColumn):
    """Time left, from the average speed since the task started (not rich's 30 s window).

    rich's estimate needs two updates inside its window, so with batches slower than
    that it never shows one; this one shows after the first finished unit.
    """

    def render(self, task: Task) -> Text:
        """``eta H:MM:SS``; ``eta -:--:--`` before the first unit is done."""
        if task.finished or task.total is None:
            return Text("")
        done = _done_since_start(task)
        elapsed = task.elapsed
        if done <= 0 or not elapsed:
            return Text("eta -:--:--", style="progress.remaining")
        left = int(elapsed * (task.total - task.completed) / done)
        return Text(f"eta {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", style="progress.remaining")


class RateColumn(ProgressColumn):
    """Images per second of an evaluation since it started (blank for other tasks and before the first batch)."""

    def render(self, task: Task) -> Text:
        """``123.4 img/s``."""
        done = _done_since_start(task)
        if task.fields.get("unit") != "examples" or done <= 0 or not task.elapsed:
            return Text("")
        rate = done / task.elapsed
        return Text(f"{rate:.3g} img/s" if rate < 100 else f"{rate:,.0f} img/s", style="progress.data.speed")


def progress_display() -> Progress:
    """The progress display of every command: on the stderr console, so stdout keeps only results."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), RunRemainingColumn(), RateColumn(),
                    TextColumn("{task.fields[info]}"), console=err_console, transient=False)


@contextmanager
def progress_bar(enabled: bool = True, labels: dict[str, str] | None = None) -> Iterator[Any]:
    """A callback for :class:`ProgressEvent` that draws one bar per task on stderr.

    A task's bar appears at its first event (the library sends one before the first
    unit of work, so elapsed time and the bar start with the work); it shows units done
    of the total, what they count, elapsed time, the time left and the event's info.

    Args:
        enabled: False gives no callback (None) and draws nothing.
        labels: names to show for info keys (e.g. ``{"loss": "epoch mean loss"}``).

    Yields:
        The callback, or None when disabled.
    """
    if not enabled:
        yield None
        return
    progress = progress_display()
    names = labels or {}
    tasks: dict[str, TaskID] = {}

    def callback(event: ProgressEvent) -> None:
        info = "  ".join(f"{names.get(k, k)}={_fmt(v)}" for k, v in event.info.items() if v is not None)
        if event.task not in tasks:
            tasks[event.task] = progress.add_task(event.task, total=event.total, completed=event.completed,
                                                  info=info, unit=_unit(event.task), first=event.completed)
        progress.update(tasks[event.task], completed=event.completed, total=event.total, info=info)

    with progress:
        yield callback


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def has_top5(doc: dict[str, Any]) -> bool:
    """Whether a results document reports top-5 (None for 5 classes or fewer)."""
    return doc["clean"].get("top5") is not None or any(r.get("top5") is not None for r in doc["runs"])


def eval_table(doc: dict[str, Any]) -> Table:
    """The table of an evaluation results document (no top-5 column where top-5 is not reported)."""
    clean = doc["clean"]
    top5 = has_top5(doc)
    table = Table(title=f"{doc['model']} on {doc['dataset']}/{doc['split']} · {doc['examples']} examples · "
                        f"clean top-1 {pct(clean['top1'])}" + (f", top-5 {pct(clean['top5'])}" if top5 else ""))
    worst = doc.get("worst_case") or []
    if worst:
        return worst_case_table(doc, table)
    for col in ("attack", "eps", "norm", "top-1", "top-5", "success", "acc. ratio", "label leaks",
                "max pert.", "violations", "grad evals", "seconds"):
        if col != "top-5" or top5:
            table.add_column(col, justify="left" if col in ("attack", "norm") else "right")
    for r in doc["runs"]:
        name = r["attack"] + (" (targeted)" if r["targeted"] else "")
        cells = [name, f"{r['eps']:.4g}", r["norm"], pct(r["top1"])] + ([pct(r["top5"])] if top5 else [])
        table.add_row(*cells, pct(r["success_rate"]),
                      "—" if r["accuracy_ratio"] is None else f"{r['accuracy_ratio']:.3f}",
                      "—" if r["label_leaks"] is None else str(r["label_leaks"]),
                      f"{r['max_perturbation']:.4g}", str(r["violations"]), _passes(r), f"{r['seconds']:.2f}")
    return table


def _passes(r: dict[str, Any]) -> str:
    """Gradient evaluations per example; a one-step grid's shared gradient says so."""
    g = r.get("gradient_evaluations")
    if g is None:
        return "—"
    return f"{g:.4g} (shared)" if r.get("gradient_shared_across_eps") else f"{g:.4g}"


def worst_case_table(doc: dict[str, Any], table: Table) -> Table:
    """A worst-case evaluation: each attack's examples broken, then the worst case per eps."""
    for col in ("attack", "eps", "norm", "attacked", "broke", "robust after", "violations", "grad evals",
                "queries", "seconds"):
        table.add_column(col, justify="left" if col in ("attack", "norm") else "right")
    for w in doc["worst_case"]:
        for r in doc["runs"]:
            if abs(r["eps"] - w["eps"]) > 1e-12:
                continue
            table.add_row(r["attack"], f"{r['eps']:.4g}", r["norm"], str(w["attacked"][r["attack"]]), str(r["broke"]),
                          pct(r["robust_after"]), str(r["violations"]), _passes(r),
                          "—" if r.get("forward_queries") is None else f"{r['forward_queries']:.4g}",
                          f"{r['seconds']:.2f}")
        table.add_row("[bold]worst case[/bold]", f"{w['eps']:.4g}", w["norm"], "", str(sum(w["broke"].values())),
                      f"[bold]{pct(w['top1'])}[/bold]", str(w["violations"]), f"{w['gradient_evaluations']:.4g}",
                      f"{w['forward_queries']:.4g}", f"{w['seconds']:.2f}", end_section=True)
    return table


CHECK_STYLES = {"pass": "green", "warn": "bold yellow", "not_applicable": "dim"}


def checks_view(checks: list[dict[str, Any]], detail: bool = False) -> Group:
    """What ``advframe eval`` prints of the checks: every check that did not pass in full (its
    evidence and source), the others as one line; ``detail`` prints every check in full."""
    if detail:
        return Group(checks_table(checks))
    shown = [c for c in checks if c["status"] not in ("pass", "not_applicable")]
    return Group(*([checks_table(shown, total=len(checks))] if shown else []), Text(checks_summary(checks)))


def checks_summary(checks: list[dict[str, Any]]) -> str:
    """``10 checks passed, 2 not applicable (a, b); --checks-detail for the evidence``."""
    passed = sum(1 for c in checks if c["status"] == "pass")
    unapplied = [c["name"] for c in checks if c["status"] == "not_applicable"]
    others = len(checks) - passed - len(unapplied)
    parts = [f"{passed} check{'' if passed == 1 else 's'} passed"]
    if unapplied:
        parts.append(f"{len(unapplied)} not applicable ({', '.join(unapplied)})")
    if others:
        parts.append(f"{others} shown above")
    return ", ".join(parts) + "; --checks-detail for the evidence"


def checks_table(checks: list[dict[str, Any]], total: int | None = None) -> Table:
    """The honesty checks of a results document: status, name, evidence and source (``total``:
    how many checks ran, when ``checks`` is only some of them)."""
    warned = sum(1 for c in checks if c["status"] == "warn")
    of = "" if total is None else f" of {total} checks"
    table = Table(title=f"checks · {warned} warning(s){of}", show_lines=True)
    table.add_column("status")
    table.add_column("check")
    table.add_column("evidence", ratio=3)
    table.add_column("source", ratio=1)
    for c in checks:
        style = CHECK_STYLES.get(c["status"], "")
        label = c["status"].replace("_", " ")
        table.add_row(Text(label, style=style), Text(c["name"]), Text(c["evidence"]), Text(short_source(c["source"])))
    return table


def short_source(source: str) -> str:
    """``"Athalye, Carlini & Wagner 2018, Obfuscated ...; Kurakin ... 2017, ..."`` -> authors and years."""
    parts = []
    for part in source.split(";"):
        m = re.search(r"^(.*?\b(19|20)\d\d)", part.strip())
        parts.append(m.group(1) if m else part.strip())
    return "; ".join(parts)


_PERCENTS = re.compile(r"^(—|[\d.]+%)( \| (—|[\d.]+%))?$")


def simple_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A plain table; columns of percentages (``97.0%`` or ``97.0% | 51.2%``) are right-justified."""
    table = Table(title=title)
    for i, c in enumerate(columns):
        numeric = i > 0 and bool(rows) and all(_PERCENTS.match(str(r[i])) for r in rows if i < len(r))
        table.add_column(c, justify="right" if numeric else "left")
    for row in rows:  # cells are data (names, summaries, plugin errors), never markup: "advframe[timm]" stays
        table.add_row(*[Text(str(v)) for v in row])
    return table
