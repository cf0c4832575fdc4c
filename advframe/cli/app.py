"""The Typer application: eval, train, list, plugins (and commands added by plugins)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from advframe import plugins
from advframe.cli import render
from advframe.cli.models import ArchOption, ModelParamOption, NormalizeOption, UntrainedOption
from advframe.cli.common import (check_image_size, check_not_empty, check_positive, check_seed, parse_batch_size,
                                 parse_eps_list, parse_params, resolve_device)
from advframe.cli.inputs import load_model_and_data, resolve_batch_size
from advframe.cli.launch import maybe_launch
from advframe.cli.outputs import check_output_path
from advframe.cli.train import train_command
from advframe.errors import ParameterError
from advframe.evaluation import EvalResult, ResumeState
from advframe.options import resolve_attacks
from advframe.registry import KINDS


#: Options whose default a plugin declares: command -> {option: (kind, use)}.
DECLARED_DEFAULTS: dict[str, dict[str, tuple[str, str]]] = {
    "eval": {"model": ("models", ""), "dataset": ("datasets", ""), "attack": ("attacks", "")},
    "train": {"model": ("models", "train"), "dataset": ("datasets", "")},
}


def name_defaults(group: Any) -> None:
    """Say in the help of the click ``group``'s commands which component an option defaults to.

    In the help of each option of :data:`DECLARED_DEFAULTS`, "the ... a plugin declares as
    the default" becomes "NAME, declared by plugin P", as the installed plugins declared
    it; the CLI's code names no component.
    """
    import re

    reg = plugins.registry()
    for command, options in DECLARED_DEFAULTS.items():
        params = {p.name: p for p in group.commands[command].params} if command in group.commands else {}
        for param, (kind, use) in options.items():
            name = reg.default(kind, use)
            if name is not None and param in params:
                params[param].help = re.sub(r"the [a-z ]+ a plugin declares (as the default|for training)",
                                            f"{name}, declared by plugin {reg.get(kind, name).plugin}",
                                            params[param].help, count=1)


def attacks_of(attack: Optional[list[str]], suite: Optional[str], params: dict[str, Any]) -> list[Any]:
    """The attacks of ``--attack`` (default: the declared default) or of ``--suite`` with its parameters.

    A suite's own parameters come first; ``--param`` entries override them.
    """
    if suite is None:
        return resolve_attacks(attack or None, params)
    if attack:
        raise ParameterError(f"--suite {suite} runs its own attacks: drop --attack {' --attack '.join(attack)}")
    members = plugins.registry().get("suites", suite).factory.attacks
    merged: dict[str, Any] = {name: dict(p) for name, p in members}
    for key, value in params.items():
        if isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    return resolve_attacks([name for name, _ in members], merged)


@dataclass
class EvalArgs:
    """The options of ``advframe eval``, as the user gave them (see :func:`eval_command`)."""

    model: Optional[str]
    arch: Optional[str]
    model_param: Optional[list[str]]
    normalize: Optional[str]
    untrained: bool
    dataset: Optional[str]
    data_dir: Optional[Path]
    split: str
    attack: Optional[list[str]]
    eps: Optional[list[str]]
    norm: str
    param: Optional[list[str]]
    targeted: bool
    target: str
    batch_size: str
    limit: Optional[int]
    device: str
    seed: int
    output: Optional[Path]
    resume: bool
    label_leaks: Optional[bool]
    progress: bool
    checks: bool
    checks_detail: bool
    devices: int
    worst_case: bool
    suite: Optional[str]
    image_size: Optional[int] = None
    class_map: Optional[Path] = None
    amp: bool = False

    @property
    def to_stdout(self) -> bool:
        """``--output -``: the document goes to stdout, the tables to stderr."""
        return self.output is not None and str(self.output) == "-"


@dataclass
class _EvalRun:
    """What ``advframe eval`` prepared before the evaluation: model, data, attacks, device, resume state."""

    net: Any
    data: Any
    model_name: str
    specs: list[Any]
    grid: Optional[list[float]]
    device: str
    rank: int
    state: Optional[ResumeState]
    batch_size: int = 250


def _check_eval_args(a: EvalArgs) -> None:
    """Refuse bad options before any work (and before launching processes)."""
    if a.resume and (a.output is None or a.to_stdout):
        raise ParameterError("--resume needs --output FILE.json (the partial state is kept beside it)"
                             + (", not '-'" if a.to_stdout else ""))
    if not a.to_stdout:
        check_output_path(a.output, "--output")
    check_not_empty((a.model, "--model"), (a.dataset, "--dataset"), (a.arch, "--arch"), (a.suite, "--suite"))
    check_seed(a.seed)
    parse_batch_size(a.batch_size)
    check_positive(a.limit, "--limit", "examples")
    check_image_size(a.image_size)
    if a.class_map is not None and not a.class_map.is_file():
        raise ParameterError(f"--class-map '{a.class_map}' is not a file: pass the file that lists the classes "
                             f"in order (e.g. ImageNet's LOC_synset_mapping.txt)")


def _prepare_eval(a: EvalArgs) -> _EvalRun:
    """Resolve the attacks and device, load the model and data, and open (or clear) the resume state."""
    from advframe import distributed
    from advframe.threat import ThreatModel

    ThreatModel(norm=a.norm)  # validates the norm before anything slow
    grid = parse_eps_list(a.eps)
    specs = attacks_of(a.attack, a.suite, parse_params(a.param))
    dev = str(distributed.init_from_env(resolve_device(a.device)))
    rank, world = distributed.rank_and_world()
    net, data, model_name = load_model_and_data(a.model, a.dataset, a.data_dir, a.split, dev, arch=a.arch,
                                                model_param=a.model_param, normalize=a.normalize,
                                                untrained=a.untrained, image_size=a.image_size,
                                                class_map=a.class_map)
    state = None
    if a.output is not None and not a.to_stdout:
        state = ResumeState(str(a.output) + (".partial" if world == 1 else f".partial.rank{rank}"))
        if not a.resume:
            state.discard()
        elif state.exists():
            state.validate()
    resumed = state if a.resume and state is not None and state.exists() else None
    batch = resolve_batch_size(a.batch_size, net, data, dev, a.limit, resumed, report=rank == 0)
    if world > 1:  # every rank must cut the data into the same batches: the smallest size found
        batch = min(distributed.all_gather_objects([batch]))
    return _EvalRun(net, data, model_name, specs, grid, dev, rank, state, batch)


def _evaluate(a: EvalArgs, run: _EvalRun) -> Optional[EvalResult]:
    """Run the evaluation, then (on rank 0) the checks; None on the other ranks."""
    import advframe
    from advframe import distributed

    with render.progress_bar(a.progress and run.rank == 0) as cb:
        result = advframe.evaluate(run.net, run.data, attacks=run.specs, eps=run.grid, norm=a.norm,
                                   targeted=a.targeted, target=a.target, batch_size=run.batch_size, limit=a.limit,
                                   amp=a.amp,
                                   device=run.device, seed=a.seed, label_leaks=a.label_leaks, progress=cb,
                                   state_path=run.state, model_name=run.model_name,
                                   worst_case=a.worst_case or a.suite is not None)
        distributed.shutdown()
        if run.rank != 0:
            if run.state is not None:
                run.state.discard()
            return None
        if a.checks:
            from advframe.checks import available_checks, run_checks
            from advframe.progress import emit

            emit(cb, "checks", 0, len(available_checks()))  # the checks' bar starts with them
            run_checks(run.net, run.data, result, attacks={s.name: s.attack for s in run.specs}, device=run.device,
                       seed=a.seed, progress=cb, batch_size=min(run.batch_size, 250))  # no larger than it fits
    return result


def _report_eval(a: EvalArgs, result: EvalResult, state: Optional[ResumeState]) -> None:
    """Print the tables, write the document, discard the resume state; exit 1 if a run failed."""
    from advframe.checkpoint import atomic_write_text

    doc = result.to_dict()
    out = render.err_console if a.to_stdout else render.console  # '--output -': stdout holds the JSON only
    out.print(render.eval_table(doc))
    if doc["checks"]:
        out.print(render.checks_view(doc["checks"], detail=a.checks_detail))
    for v in result.violations:
        render.err_console.print(f"[red]refused:[/red] {v.describe()}")
    if a.to_stdout:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif a.output is not None:
        atomic_write_text(a.output, json.dumps(doc, indent=2))
        render.console.print(f"results written to {a.output}")
    if state is not None:  # the document is written: the attack work is no longer needed
        state.discard()
    failed = sorted({r.attack for r in result.runs if r.failed})
    if failed:  # the document is written, with these runs marked failed; the run as a whole did not succeed
        raise typer.Exit(1)


def eval_command(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option(help="Model name or .safetensors checkpoint (default: the model a plugin declares as the default).")] = None,
    arch: ArchOption = None,
    model_param: ModelParamOption = None,
    normalize: NormalizeOption = None,
    untrained: UntrainedOption = False,
    dataset: Annotated[Optional[str], typer.Option(help="Data set name (default: the checkpoint's, else the data set a plugin declares as the default).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the data set's files.")] = None,
    split: Annotated[str, typer.Option(help="Data split.")] = "test",
    attack: Annotated[Optional[list[str]], typer.Option(help="Attack name; repeat for several (default: the attack a plugin declares as the default).")] = None,
    eps: Annotated[Optional[list[str]], typer.Option(help="Perturbation budget, e.g. 0.3 or 8/255; repeatable (default: the data set's grid).")] = None,
    norm: Annotated[str, typer.Option(help="Threat-model norm: linf or l2.")] = "linf",
    param: Annotated[Optional[list[str]], typer.Option(help="Attack hyper-parameter key=value or attack.key=value; repeatable.")] = None,
    targeted: Annotated[bool, typer.Option(help="Run targeted attacks.")] = False,
    target: Annotated[str, typer.Option(help="Target classes for --targeted: random or least_likely.")] = "random",
    batch_size: Annotated[str, typer.Option(help="Examples per batch, or auto: the largest batch whose attack passes fit on the device (by trial on CUDA, estimated on CPU), reported.")] = "250",
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N examples (prefixes of the shipped splits are class-balanced: N = 10k holds k of each class).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for random starts, targets and noise.")] = 0,
    output: Annotated[Optional[Path], typer.Option(help="Write the results document (JSON) here; '-' writes it to stdout (the tables then go to stderr).")] = None,
    resume: Annotated[bool, typer.Option(help="Resume an interrupted run of the same command (needs --output).")] = False,
    label_leaks: Annotated[Optional[bool], typer.Option(help="Measure label leaking with the predicted-label twin: by default for one-step attacks that read the true label (where it happens); --label-leaks for every attack that reads it; --no-label-leaks for none.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars (on stderr): examples done, elapsed time and time left, then the checks.")] = True,
    checks: Annotated[bool, typer.Option(help="Run the gradient-masking and attack-failure checks after the attacks.")] = True,
    checks_detail: Annotated[bool, typer.Option("--checks-detail", help="Print every check with its evidence and source (by default the checks that pass are one line).")] = False,
    devices: Annotated[int, typer.Option(help="Processes to evaluate on (batches are shared out, counts summed); also works under torchrun.")] = 1,
    worst_case: Annotated[bool, typer.Option("--worst-case", help="Worst-case robust accuracy over the --attack list in the given order: a later attack runs only on examples still robust.")] = False,
    suite: Annotated[Optional[str], typer.Option(help="Run a registered attack suite worst-case (see 'advframe list suites'); replaces --attack.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Image folders: the side images are resized and centre-cropped to (default: the model's declared input size).")] = None,
    class_map: Annotated[Optional[Path], typer.Option(help="Image folders: a file giving the class order, one class folder name first on each line (ImageNet's LOC_synset_mapping.txt) or imagenet_class_index.json; recorded in the results document.")] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Run the attacks' forward passes under bf16 autocast (for CUDA); the adversarial examples are audited and classified in float32.")] = False,
) -> None:
    """Evaluate a model under attacks over an eps grid and print the table (and the checks)."""
    a = EvalArgs(**{k: v for k, v in locals().items() if k != "ctx"})  # the options, as given
    _check_eval_args(a)
    launched = maybe_launch(ctx, devices)
    if launched is not None:
        raise typer.Exit(launched)
    run = _prepare_eval(a)
    result = _evaluate(a, run)
    if result is not None:  # rank 0
        _report_eval(a, result, run.state)


def list_command(kind: Annotated[Optional[str], typer.Argument(metavar="[KIND]", help="attacks, defenses, models, datasets, suites, checks or reports.")] = None) -> None:
    """List registered components: name, plugin, summary."""
    if kind is not None and kind not in KINDS:
        raise ParameterError(f"unknown kind '{kind}': use {', '.join(KINDS[:-1])} or {KINDS[-1]}")
    reg = plugins.registry()
    kinds = [kind] if kind else list(KINDS)
    for k in kinds:
        rows = []
        for name in reg.names(k):
            d = reg.get(k, name).describe()
            row = [name + (f" ({', '.join(d['aliases'])})" if d["aliases"] else ""), d["distribution"], d["plugin"]]
            if k == "suites":
                row += [", ".join(a for a, _ in reg.get(k, name).factory.attacks)]
            if k == "attacks":
                row += [",".join(d.get("norms", [])), "yes" if d.get("targetable") else "no",
                        "yes" if d.get("uses_true_label") else "no"]
            rows.append(row + [d["summary"]])
        cols = ["name", "distribution", "plugin"]
        if k == "attacks":
            cols += ["norms", "targeted", "reads label"]
        if k == "suites":
            cols += ["attacks (in order)"]
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


def _version(value: bool) -> None:
    if value:
        from advframe import __version__

        render.console.print(f"advframe {__version__}", highlight=False)
        raise typer.Exit()


def root_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Attack, defend and honestly measure image classifiers."""


def _quiet_flag_types() -> None:
    """Show no type ('<bool>') beside on/off flags in the help (typer >= 0.20 renders one)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - older typer
        return
    original = TyperOption.display_type_rich
    if getattr(original, "_advframe", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._advframe = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


def build_app() -> typer.Typer:
    """The CLI application, with commands from plugins."""
    _quiet_flag_types()
    app = typer.Typer(name="advframe", help="Attack, defend and honestly measure image classifiers.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.callback()(root_callback)
    app.command("eval")(eval_command)
    app.command("list")(list_command)
    app.command("plugins")(plugins_command)
    app.command("train")(train_command)
    from advframe.cli.report import report_command

    app.command("report")(report_command)
    plugins.host().commands(app)
    return app
