"""``advframe transfer``: black-box transfer matrices (Kurakin et al. 2017, Tables 4 and 6).

Loaded only by the plugin's ``register_commands`` hook, so ``import advframe`` never imports typer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from advframe.cli import render
from advframe.cli.models import ArchListOption, ModelParamOption, NormalizeOption, UntrainedOption
from advframe.cli.common import (check_positive, check_seed, default_name, parse_eps_list, parse_params,
                                 resolve_device)
from advframe.cli.outputs import check_output_paths
from advframe.errors import DataError
from advframe.options import resolve_attacks
from advframe.threat import ThreatModel


def _load_models(specs: list[str], device: str, cache: dict[str, Any], **user: Any) -> list[Any]:
    """Load each distinct spec once (``cache``), so that a model named as source and target is one object.

    ``user`` holds the --arch list, --model-param, --normalize and --untrained options.
    """
    from advframe.cli.models import load_user_model, pick_arch

    for spec in specs:
        if spec not in cache:
            cache[spec] = load_user_model(spec, arch=pick_arch(user["arch"], spec), model_param=user["model_param"],
                                          normalize=user["normalize"], untrained=user["untrained"], device=device)
    return [cache[spec][0] for spec in specs]


def _dataset_of(specs: list[str]) -> str | None:
    from advframe.checkpoint import read_metadata

    for spec in specs:
        if spec.endswith(".safetensors") and Path(spec).is_file():
            name = read_metadata(spec).get("dataset")
            if isinstance(name, str):
                return name
    return None


def transfer_command(
    source: Annotated[list[str], typer.Option("--source-model", "--source", help="Source model (name or .safetensors) the attacks see; repeatable.")],
    target: Annotated[list[str], typer.Option("--target-model", help="Target model (name or .safetensors) classifying the examples; repeatable. (Named apart from eval's --target, which picks target classes.)")],
    attack: Annotated[Optional[list[str]], typer.Option(help="Attack name; repeatable (default: the transfer suite a plugin declares; the built-ins declare fgsm, iter_basic, iter_ll).")] = None,
    eps: Annotated[Optional[list[str]], typer.Option(help="Perturbation budget, e.g. 0.3 or 8/255; repeatable (default: the data set's grid).")] = None,
    norm: Annotated[str, typer.Option(help="Threat-model norm: linf or l2.")] = "linf",
    dataset: Annotated[Optional[str], typer.Option(help="Data set name (default: the first checkpoint's, else the embedded default).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the data set's files.")] = None,
    split: Annotated[str, typer.Option(help="Data split.")] = "test",
    param: Annotated[Optional[list[str]], typer.Option(help="Attack hyper-parameter key=value or attack.key=value; repeatable.")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per batch.")] = 250,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N examples (prefixes of a shipped split such as mnist5k are class-balanced: N = 10k holds k of each class).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for random starts and noise.")] = 0,
    output: Annotated[Optional[Path], typer.Option(help="Write the transfer document (JSON, advframe.transfer/1) here.")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Write the matrices as Markdown here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    arch: ArchListOption = None,
    model_param: ModelParamOption = None,
    normalize: NormalizeOption = None,
    untrained: UntrainedOption = False,
) -> None:
    """Make adversarial examples on each source, classify them with every target, print the matrices."""
    import advframe
    from advframe.cli.inputs import dataset_params
    from advframe.data_source import as_source
    from advframe.dataset import LabeledData, check_fits
    from advframe.model import model_label
    from advframe_transfer.transfer import default_transfer_attacks, transfer

    check_output_paths((output, "--output"), (markdown, "--markdown"))
    check_seed(seed)
    check_positive(batch_size, "--batch-size", "examples per batch")
    check_positive(limit, "--limit", "examples")
    ThreatModel(norm=norm)
    grid = parse_eps_list(eps)
    attacks = resolve_attacks(attack or default_transfer_attacks(), parse_params(param), early_exit=False)
    if data_dir is not None and not data_dir.is_dir():
        raise DataError(f"--data-dir '{data_dir}' does not exist: pass an existing folder")
    dev = resolve_device(device)
    cache: dict[str, Any] = {}
    user = {"arch": arch, "model_param": model_param, "normalize": normalize, "untrained": untrained}
    sources = _load_models(source, dev, cache, **user)
    targets = _load_models(target, dev, cache, **user)
    name = dataset or _dataset_of(source + target) or default_name("datasets", "--dataset")
    data = advframe.load_dataset(name, split=split, data_dir=data_dir,
                                 **dataset_params(name, sources[0], None, None))  # image folders: sized to the model
    first = as_source(data).take(64)
    x0, y0 = first.batch(0, len(first))
    for net in sources + targets:  # named as in evaluation results (model_label), like the transfer document
        check_fits(net, LabeledData(x0, y0, 2, first.bounds, first.name, first.split), dev, model_label(net))
    with render.progress_bar(progress) as cb:
        result = transfer(sources, targets, data, attacks=attacks, eps=grid, norm=norm, batch_size=batch_size,
                          limit=limit, device=dev, seed=seed, progress=cb)
    doc = result.to_dict()
    _print_matrices(result, doc)
    _write(doc, output, markdown)


def _print_matrices(result: Any, doc: dict[str, Any]) -> None:
    """The clean accuracies, the transfer- and error-rate matrices of every attack and eps, the refusals."""
    from advframe_transfer.report import matrix_rows

    clean = "; ".join(f"{n} {render.pct(c['top1'])}" for n, c in doc["clean"].items())
    render.console.print(f"clean top-1: {clean}")
    for a, e in result.grid():
        for metric in ("transfer_rate", "error_rate"):
            render.console.print(render.simple_table(*matrix_rows(doc, a, e, metric)))
    for v in result.violations:
        render.err_console.print(f"[red]refused:[/red] {v.describe()}")


def _write(doc: dict[str, Any], output: Optional[Path], markdown: Optional[Path]) -> None:
    """Write the transfer document (``--output``) and its Markdown matrices (``--markdown``)."""
    from advframe.checkpoint import atomic_write_text
    from advframe_transfer.report import transfer_markdown

    if output is not None:
        atomic_write_text(output, json.dumps(doc, indent=2))
        render.console.print(f"transfer document written to {output}")
    if markdown is not None:
        atomic_write_text(markdown, transfer_markdown(doc))
        render.console.print(f"Markdown written to {markdown}")
