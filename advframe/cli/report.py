"""``advframe report``: tables, Markdown and accuracy / accuracy-ratio plots from results documents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advframe.cli import render
from advframe.cli.outputs import check_output_paths


def report_command(
    results: Annotated[list[Path], typer.Argument(help="Results documents: 'advframe eval --output' files, and documents a plugin's report layout reads (e.g. 'advframe transfer --output').")],
    plot: Annotated[Optional[Path], typer.Option(help="Write accuracy and accuracy-ratio curves against eps here (PNG; needs matplotlib).")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Write the report as Markdown here.")] = None,
    eps: Annotated[Optional[str], typer.Option(help="eps of the layouts' tables, e.g. the white-box/black-box table (default: the documents' largest).")] = None,
) -> None:
    """Print the accuracy tables (and the tables of the plugins' layouts), write accuracy curves (Kurakin 2017, Fig. 1) and Markdown."""
    from advframe.checkpoint import atomic_write_text
    from advframe.report import (MissingDependencyError, check_eps, layout_tables, load_documents,
                                 markdown as to_markdown, plot_curves)
    from advframe.threat import parse_eps

    check_output_paths((plot, "--plot"), (markdown, "--markdown"))
    evals, others = load_documents(list(results))
    chosen = parse_eps(eps) if eps is not None else None
    check_eps(evals, others, chosen)  # before any table is printed
    for doc in evals:
        render.console.print(render.eval_table(doc))
    for title, header, rows in layout_tables(evals, others, chosen):
        render.console.print(render.simple_table(title, header, rows))
    missing = None
    if plot is not None:
        try:
            plot_curves(evals, plot)
            render.console.print(f"plot written to {plot}")
        except MissingDependencyError as exc:  # the tables are printed; still write the Markdown
            missing, plot = exc, None
    if markdown is not None:
        rel = None
        if plot is not None:
            try:
                rel = str(plot.resolve().relative_to(markdown.resolve().parent))
            except ValueError:
                rel = str(plot.resolve())
        atomic_write_text(markdown, to_markdown(evals, others, chosen, rel))
        render.console.print(f"Markdown written to {markdown}")
    if missing is not None:
        done = "the tables were printed above" + (f" and the Markdown written to {markdown}" if markdown else "")
        raise MissingDependencyError(f"{missing}; {done}, without the plot")
