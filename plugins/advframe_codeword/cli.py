"""``advframe lipschitz``: per-layer upper Lipschitz bounds of saved models (Saito & Roy §3.4).

Loaded only by the plugin's ``register_commands`` hook, so ``import advframe`` never
imports typer or rich through this plugin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from advframe.cli.models import ArchListOption, ModelParamOption
from advframe.errors import ParameterError
from advframe_codeword.lipschitz import MAX_INPUT_SIZE, LipschitzReport, lipschitz_bounds

console = Console()


def _label(spec: str) -> str:
    return Path(spec).stem if spec.endswith(".safetensors") else spec


def lipschitz_table(report: LipschitzReport) -> Table:
    """A rich table of one model's per-layer bounds."""
    table = Table(title=f"{report.model} · input {'x'.join(map(str, report.input_shape))} · "
                        f"product bound {report.product:.4g}")
    for col in ("layer", "kind", "input", "norm", "cumulative Λ", "exact"):
        table.add_column(col, justify="right" if col in ("norm", "cumulative Λ") else "left", no_wrap=col == "layer")
    for layer in report.layers:
        table.add_row(layer.name, layer.kind, "x".join(map(str, layer.input_shape)), f"{layer.operator_norm:.4f}",
                      f"{layer.cumulative:.4g}", "yes" if layer.exact else "bound")
    return table


def lipschitz_figure(reports: list[LipschitzReport], kind: str = "conv") -> Any:
    """Bar charts of the ``kind`` layers' bounds, one panel per model, like Saito & Roy Figure 4.

    Each panel is labelled with its own model's layer names (models differ in depth and
    naming), and all panels share the y axis so that the bounds compare.

    Args:
        reports: the models' reports.
        kind: the layers to show (``conv`` or ``linear``).

    Returns:
        The matplotlib figure.

    Raises:
        ParameterError: if matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ParameterError("--plot needs matplotlib: pip install 'advframe[plot]' (or pip install matplotlib)"
                             ) from None
    what = "convolution" if kind == "conv" else "fully connected"
    fig, axes = plt.subplots(1, len(reports), figsize=(1 + 4.5 * len(reports), 4.2), sharey=True, squeeze=False)
    for ax, report in zip(axes[0], reports):
        layers = [layer for layer in report.layers if layer.kind == kind]
        ax.bar(range(len(layers)), [layer.operator_norm for layer in layers], color="tab:blue")
        ax.set_xticks(range(len(layers)), [layer.name for layer in layers], rotation=30, ha="right")
        ax.set_xlabel(f"{what} layer (in forward order)")
        side = "x".join(map(str, report.input_shape[-2:]))
        ax.set_title(f"{report.model} (input {side})")
        if not layers:
            ax.text(0.5, 0.5, f"no {what} layers", ha="center", va="center", transform=ax.transAxes)
    axes[0][0].set_ylabel("operator norm: upper bound of the\nlayer's L2 Lipschitz constant")
    fig.suptitle(f"Per-layer Lipschitz upper bounds of the {what} layers (FFT singular values)")
    fig.tight_layout()
    return fig


def plot_reports(reports: list[LipschitzReport], path: Path, kind: str = "conv") -> None:
    """Write :func:`lipschitz_figure` of ``reports`` as a PNG at ``path``.

    Raises:
        ParameterError: if matplotlib is not installed.
    """
    fig = lipschitz_figure(reports, kind)  # first: it reports a missing matplotlib
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lipschitz_command(
    model: Annotated[list[str], typer.Option(help="Model name or .safetensors checkpoint; repeat to compare.")],
    input_size: Annotated[int, typer.Option(help="Side n of the square inputs the bounds are computed for.")] = 28,
    in_channels: Annotated[Optional[int], typer.Option(help="Input channels (default: the first conv's).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Write the bounds as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG bar chart of the conv layers' bounds, one panel per model (like Saito & Roy Figure 4).")] = None,
    arch: ArchListOption = None,
    model_param: ModelParamOption = None,
) -> None:
    """Per-layer upper Lipschitz bounds (FFT singular values of convolutions, Saito & Roy §3.4)."""
    from advframe.checkpoint import atomic_write_text
    from advframe.cli.models import load_user_model, pick_arch

    from advframe.cli.outputs import check_output_paths

    check_output_paths((output, "--output"), (plot, "--plot"))
    if not 1 <= input_size <= MAX_INPUT_SIZE:
        raise ParameterError(f"--input-size {input_size} is out of range: use a side from 1 to {MAX_INPUT_SIZE}")
    if in_channels is not None and in_channels < 1:  # 0 is an error, not "the default"
        raise ParameterError(f"--in-channels must be positive, got {in_channels}")
    reports = [lipschitz_bounds(load_user_model(spec, arch=pick_arch(arch, spec), model_param=model_param,
                                                check=False)[0], input_size, in_channels, name=_label(spec))
               for spec in model]  # bounds of an untrained architecture are meaningful: no --untrained needed
    for report in reports:
        console.print(lipschitz_table(report))
        if any(not layer.exact and layer.kind == "conv" for layer in report.layers):
            console.print("conv 'bound': zero/valid padding or stride; the FFT value assumes circular padding "
                          "and is an upper bound there (see docs/codeword.md)")
        if report.unaccounted:
            console.print(f"[yellow]not covered by the bound:[/yellow] {', '.join(report.unaccounted)}")
    doc: dict[str, Any] = {"schema": "advframe.lipschitz/1", "input_size": input_size,
                           "models": [r.to_dict() for r in reports]}
    if output is not None:
        atomic_write_text(output, json.dumps(doc, indent=2))
        console.print(f"bounds written to {output}")
    if plot is not None:
        plot_reports(reports, plot)
        console.print(f"plot written to {plot}")
