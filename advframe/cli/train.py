"""``advframe train``: train a model with a defense and write a safetensors checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import advframe
from advframe import distributed, plugins
from advframe.cli import render
from advframe.cli.common import check_not_empty, check_positive, check_seed, default_name, parse_params, resolve_device
from advframe.cli.launch import maybe_launch
from advframe.cli.models import ArchOption, ModelParamOption, NormalizeOption, model_to_train
from advframe.cli.outputs import check_output_path
from advframe.params import declared_params, split_params
from advframe.training import check_in_memory


def train_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")],
    model: Annotated[Optional[str], typer.Option(help="Model architecture name (default: the architecture a plugin declares for training).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Data set name (default: the data set a plugin declares as the default).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the data set's files.")] = None,
    defense: Annotated[str, typer.Option(help="Training procedure (see 'advframe list defenses').")] = "standard",
    param: Annotated[Optional[list[str]], typer.Option(help="Defense parameter key=value; repeatable.")] = None,
    model_param: ModelParamOption = None,
    arch: ArchOption = None,
    normalize: NormalizeOption = None,
    limit: Annotated[Optional[int], typer.Option(help="Train on only the first N examples of the training split (prefixes of the shipped splits are class-balanced).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Passes over the training split (default: the defense's recipe, else 5).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Minibatch size (default: the defense's recipe, else 64).")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd, adam or rmsprop (default: the defense's recipe, else sgd).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the defense's recipe, else 0.05).")] = None,
    momentum: Annotated[Optional[float], typer.Option(help="Momentum of sgd and rmsprop (default: the recipe's, else 0.9).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (default: the recipe's, else 0).")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="LR schedule: none, step, cosine or onecycle (default: the recipe's, else none).")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="Epochs of linear LR warm-up (default: the recipe's, else 0).")] = None,
    augment: Annotated[Optional[str], typer.Option(help="Training-data augmentation: none or shift (random translations of up to 2 pixels) (default: the recipe's, else none).")] = None,
    holdout: Annotated[Optional[int], typer.Option(help="Training examples set aside (class-balanced) whose clean and robust accuracy is measured every epoch (default: the recipe's, else 0).")] = None,
    keep: Annotated[Optional[str], typer.Option(help="Checkpoint the 'last' epoch or the 'best' held-out robust epoch (default: the recipe's, else last).")] = None,
    stop_on_collapse: Annotated[Optional[bool], typer.Option("--stop-on-collapse/--no-stop-on-collapse", help="Stop, keeping the best epoch, when held-out robust accuracy collapses while clean accuracy rises (default: the recipe's; on for one-step defenses).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, shuffling and the defense.")] = 0,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Also write the checkpoint every N steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from --out if it exists.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars (on stderr): batches of each epoch with the epoch's mean loss so far, the number printed at the end.")] = True,
    devices: Annotated[int, typer.Option(help="Processes to train on with DistributedDataParallel (gloo on CPU, nccl on CUDA); --batch-size is the global minibatch.")] = 1,
    amp: Annotated[bool, typer.Option(help="bf16 autocast of the forward passes (CUDA only).")] = False,
) -> None:
    """Train a model and write a safetensors checkpoint that 'advframe eval --model' reads.

    Under torchrun (or with --devices N) every process trains on its shard of each
    global minibatch; only rank 0 writes the checkpoint and prints.
    """
    a = TrainArgs(**{k: v for k, v in locals().items() if k != "ctx"})  # the options, as given
    check_output_path(out, "--out")
    check_not_empty((model, "--model"), (dataset, "--dataset"), (arch, "--arch"))
    check_seed(seed)
    check_positive(limit, "--limit", "examples")
    launched = maybe_launch(ctx, devices)
    if launched is not None:
        raise typer.Exit(launched)
    plan = _prepare_training(a)
    # the bar shows the epoch's running means; its last value is the summary's number
    with render.progress_bar(progress and plan.rank == 0, labels={"loss": "mean loss"}) as cb:
        result = advframe.train(plan.net, plan.data, model_config=plan.model_config, defense=defense,
                                defense_params=plan.defense_params, device=plan.device, progress=cb,
                                dataset_name=plan.dataset, **a.settings())
    distributed.shutdown()
    if plan.rank == 0:
        _print_summary(a, plan.name, result)


@dataclass
class TrainArgs:
    """The options of ``advframe train``, as the user gave them (see :func:`train_command`)."""

    out: Path
    model: Optional[str]
    dataset: Optional[str]
    data_dir: Optional[Path]
    defense: str
    param: Optional[list[str]]
    model_param: Optional[list[str]]
    arch: Optional[str]
    normalize: Optional[str]
    limit: Optional[int]
    epochs: Optional[int]
    batch_size: Optional[int]
    optimizer: Optional[str]
    lr: Optional[float]
    momentum: Optional[float]
    weight_decay: Optional[float]
    schedule: Optional[str]
    warmup_epochs: Optional[float]
    augment: Optional[str]
    holdout: Optional[int]
    keep: Optional[str]
    stop_on_collapse: Optional[bool]
    seed: int
    checkpoint_every: Optional[int]
    resume: bool
    device: str
    progress: bool
    devices: int
    amp: bool

    #: The options :func:`advframe.train` takes as they are.
    SETTINGS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup_epochs",
                "augment", "holdout", "keep", "stop_on_collapse", "seed", "out", "checkpoint_every", "resume", "amp")

    def settings(self) -> dict[str, Any]:
        """The keywords of :func:`advframe.train` given as they are (:attr:`SETTINGS`)."""
        return {name: getattr(self, name) for name in self.SETTINGS}


@dataclass
class _TrainPlan:
    """What ``advframe train`` prepared: the model to train, its data, the defense's parameters, the device."""

    net: Any
    model_config: dict[str, Any]
    data: Any
    dataset: str
    defense_params: dict[str, Any]
    device: str
    rank: int
    name: str  # what the summary calls the model: --arch, else the model name


def _prepare_training(a: TrainArgs) -> _TrainPlan:
    """Resolve the defense's parameters, the model and data set (declared defaults) and the device."""
    reg = plugins.registry()
    entry = reg.get("defenses", a.defense)
    defense_params = split_params(parse_params(a.param), [a.defense], {a.defense: declared_params(entry.factory)},
                                  "defenses")[a.defense]
    model = a.model
    if a.arch is None:
        model = model or default_name("models", "--model", "train")
    dataset = a.dataset or default_name("datasets", "--dataset")
    net, model_config = model_to_train(model, a.arch, a.model_param, a.normalize, a.seed)
    dev = str(distributed.init_from_env(resolve_device(a.device)))
    rank, _ = distributed.rank_and_world()
    check_in_memory(dataset)
    data = advframe.load_dataset(dataset, split="train", data_dir=a.data_dir).take(a.limit)
    return _TrainPlan(net, model_config, data, dataset, defense_params, dev, rank, a.arch or model)


def _print_summary(a: TrainArgs, name: str, result: Any) -> None:
    """The one-line summary rank 0 prints (and why training stopped early, if it did)."""
    if result.stopped:
        render.console.print(f"stopped: {result.stopped}; kept epoch {result.kept_epoch}")
    kept = f", kept epoch {result.kept_epoch} (best held-out robust accuracy)" \
        if result.kept_epoch is not None and not result.stopped else ""
    render.console.print(f"trained {name} with {a.defense}: {result.steps} steps, mean loss "
                         f"{result.final_loss:.4g} over the last epoch{kept}; checkpoint written to {a.out}")
