"""The Typer application: eval, train, list, plugins (and commands added by plugins)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from advframe import plugins
from advframe.cli import render
from advframe.cli.options import (check_all_used, check_positive, check_seed, params_for, parse_eps_list,
                                  parse_params)
from advframe.cli.outputs import PartialState, check_output_path
from advframe.errors import DataError, ParameterError
from advframe.registry import KINDS

DEFAULT_MODEL = "mnist_cnn_standard"
DEFAULT_DATASET = "mnist5k"


class Kind(str, Enum):
    attacks = "attacks"
    defenses = "defenses"
    models = "models"
    datasets = "datasets"


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; refuse cuda without a GPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ParameterError(f"--device {device} is unknown: use auto, cpu or cuda")
    return device


def load_model_and_data(model: Optional[str], dataset: Optional[str], data_dir: Optional[Path], split: str,
                        device: str) -> tuple[object, object, str]:
    """The model and data the user named, or the embedded default."""
    import advframe
    from advframe.checkpoint import read_metadata

    if data_dir is not None and not data_dir.is_dir():
        raise DataError(f"--data-dir '{data_dir}' does not exist: pass an existing folder")
    model_spec = model or DEFAULT_MODEL
    if dataset is None:
        dataset = DEFAULT_DATASET
        if model is not None and model.endswith(".safetensors") and Path(model).is_file():
            dataset = read_metadata(model).get("dataset") or DEFAULT_DATASET
    data = advframe.load_dataset(dataset, split=split, data_dir=data_dir)
    net = advframe.load_model(model_spec, device=device)
    name = Path(model_spec).stem if model_spec.endswith(".safetensors") else model_spec
    return net, data, name


def eval_command(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(help="Model name or .safetensors checkpoint (default: the embedded mnist5k model).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Data set name (default: mnist5k, or the checkpoint's).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the data set's files.")] = None,
    split: Annotated[str, typer.Option(help="Data split.")] = "test",
    attack: Annotated[Optional[list[str]], typer.Option(help="Attack name; repeat for several.")] = None,
    eps: Annotated[Optional[list[str]], typer.Option(help="Perturbation budget, e.g. 0.3 or 8/255; repeatable (default: the data set's grid).")] = None,
    norm: Annotated[str, typer.Option(help="Threat-model norm: linf or l2.")] = "linf",
    param: Annotated[Optional[list[str]], typer.Option(help="Attack hyper-parameter key=value or attack.key=value; repeatable.")] = None,
    targeted: Annotated[bool, typer.Option(help="Run targeted attacks.")] = False,
    target: Annotated[str, typer.Option(help="Target classes for --targeted: random or least_likely.")] = "random",
    batch_size: Annotated[int, typer.Option(help="Examples per batch.")] = 250,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N examples (prefixes of a shipped split such as mnist5k are class-balanced: N = 10k holds k of each class).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for random starts, targets and noise.")] = 0,
    output: Annotated[Optional[Path], typer.Option(help="Write the results document (JSON) here.")] = None,
    resume: Annotated[bool, typer.Option(help="Resume an interrupted run of the same command (needs --output).")] = False,
    label_leaks: Annotated[bool, typer.Option(help="Measure label leaking for attacks that read the true label.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    checks: Annotated[bool, typer.Option(help="Run the gradient-masking and attack-failure checks after the attacks.")] = True,
    devices: Annotated[int, typer.Option(help="Processes to evaluate on (batches are shared out, counts summed); also works under torchrun.")] = 1,
) -> None:
    """Evaluate a model under attacks over an eps grid and print the table (and the checks)."""
    import advframe
    from advframe import distributed
    from advframe.checkpoint import atomic_write_text
    from advframe.cli.launch import maybe_launch
    from advframe.dataset import check_fits
    from advframe.threat import ThreatModel

    check_output_path(output, "--output")
    check_seed(seed)
    check_positive(batch_size, "--batch-size", "examples per batch")
    check_positive(limit, "--limit", "examples")
    launched = maybe_launch(ctx, devices)
    if launched is not None:
        raise typer.Exit(launched)

    ThreatModel(norm=norm)  # validates the norm before anything slow
    grid = parse_eps_list(eps)
    names = attack or ["iter_ll"]
    reg = plugins.registry()
    declared = {n: dict(getattr(reg.get("attacks", n).factory, "defaults", {})) for n in names}
    parsed = parse_params(param)
    check_all_used(parsed, names, declared, "attacks")
    attacks = [advframe.get_attack(n, **params_for(n, declared[n], parsed)) for n in names]
    if resume and output is None:
        raise ParameterError("--resume needs --output FILE.json (the partial state is kept beside it)")
    dev = str(distributed.init_from_env(resolve_device(device)))
    rank, world = distributed.rank_and_world()
    net, data, model_name = load_model_and_data(model, dataset, data_dir, split, dev)
    check_fits(net, data, dev, model_name)
    suffix = ".partial" if world == 1 else f".partial.rank{rank}"
    state = Path(str(output) + suffix) if output is not None else None
    keeper = PartialState(state, resume, keep=rank == 0)
    with render.progress_bar(progress and rank == 0) as cb:
        result = advframe.evaluate(net, data, attacks=attacks, eps=grid, norm=norm, targeted=targeted, target=target,
                                   batch_size=batch_size, limit=limit, device=dev, seed=seed,
                                   label_leaks=label_leaks, progress=keeper.wrap(cb),
                                   state_path=state, model_name=model_name)
        keeper.restore()  # the attack work stays on disk until the document is written
        distributed.shutdown()
        if rank != 0:
            if state is not None and state.exists():
                state.unlink()
            return
        if checks:
            from advframe.checks import run_checks

            run_checks(net, data, result, attacks=attacks, device=dev, seed=seed, progress=cb)
    doc = result.to_dict()
    render.console.print(render.eval_table(doc))
    if doc["checks"]:
        render.console.print(render.checks_table(doc["checks"]))
    for v in result.violations:
        render.err_console.print(f"[red]refused:[/red] {v.describe()}")
    if output is not None:
        atomic_write_text(output, json.dumps(doc, indent=2))
        render.console.print(f"results written to {output}")
    keeper.discard()


def list_command(kind: Annotated[Optional[Kind], typer.Argument(help="attacks, defenses, models or datasets.")] = None) -> None:
    """List registered components: name, plugin, summary."""
    reg = plugins.registry()
    kinds = [kind.value] if kind else list(KINDS)
    for k in kinds:
        rows = []
        for name in reg.names(k):
            d = reg.get(k, name).describe()
            row = [name + (f" ({', '.join(d['aliases'])})" if d["aliases"] else ""), d["distribution"], d["plugin"]]
            if k == "attacks":
                row += [",".join(d.get("norms", [])), "yes" if d.get("targetable") else "no",
                        "yes" if d.get("uses_true_label") else "no"]
            rows.append(row + [d["summary"]])
        cols = ["name", "distribution", "plugin"]
        if k == "attacks":
            cols += ["norms", "targeted", "reads label"]
        render.console.print(render.simple_table(k, cols + ["summary"], rows))


def plugins_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show every plugin: distribution, version, status, hooks and load errors."""
    infos = [p.describe() for p in plugins.host().plugins.values()]
    if as_json:
        render.console.print_json(json.dumps(infos))
        return
    rows = [[i["name"], i["distribution"], i["version"], i["status"], ", ".join(h.replace("register_", "") for h in i["hooks"]),
             "; ".join(i["errors"])] for i in infos]
    render.console.print(render.simple_table("plugins", ["plugin", "distribution", "version", "status", "hooks", "errors"],
                                             rows))


def build_app() -> typer.Typer:
    """The CLI application, with commands from plugins."""
    app = typer.Typer(name="advframe", help="Attack, defend and honestly measure image classifiers.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    app.command("eval")(eval_command)
    app.command("list")(list_command)
    app.command("plugins")(plugins_command)
    from advframe.cli.train import train_command

    app.command("train")(train_command)
    from advframe.cli.report import report_command
    from advframe.cli.transfer import transfer_command

    app.command("transfer")(transfer_command)
    app.command("report")(report_command)
    plugins.host().commands(app)
    return app
