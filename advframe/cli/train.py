"""``advframe train``: train a model with a defense and write a safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advframe import plugins
from advframe.cli import render
from advframe.cli.models import ArchOption, ModelParamOption, NormalizeOption, model_to_train
from advframe.cli.options import check_not_empty, check_positive, check_seed, parse_params
from advframe.cli.outputs import check_output_path


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
    import advframe
    from advframe import distributed
    from advframe.cli.app import resolve_device
    from advframe.cli.launch import maybe_launch
    from advframe.dataset import check_fits
    from advframe.params import declared_params, split_params

    check_output_path(out, "--out")
    check_not_empty((model, "--model"), (dataset, "--dataset"), (arch, "--arch"))
    check_seed(seed)
    check_positive(limit, "--limit", "examples")
    launched = maybe_launch(ctx, devices)
    if launched is not None:
        raise typer.Exit(launched)

    from advframe.cli.app import default_name

    reg = plugins.registry()
    entry = reg.get("defenses", defense)
    defense_params = split_params(parse_params(param), [defense], {defense: declared_params(entry.factory)},
                                  "defenses")[defense]
    if arch is None:
        model = model or default_name("models", "--model", "train")
    dataset = dataset or default_name("datasets", "--dataset")
    net, model_config = model_to_train(model, arch, model_param, normalize, seed)
    dev = str(distributed.init_from_env(resolve_device(device)))
    rank, _ = distributed.rank_and_world()
    data = advframe.load_dataset(dataset, split="train", data_dir=data_dir).take(limit)
    check_fits(net if not isinstance(net, str) else _build(model, model_config), data, "cpu", arch or model)
    # the bar shows the epoch's running means; its last value is the summary's number
    with render.progress_bar(progress and rank == 0, labels={"loss": "mean loss"}) as cb:
        result = advframe.train(net, data, model_config=model_config, defense=defense,
                                defense_params=defense_params, epochs=epochs,
                                batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
                                weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, augment=augment,
                                holdout=holdout, keep=keep, stop_on_collapse=stop_on_collapse, seed=seed, out=out,
                                checkpoint_every=checkpoint_every, resume=resume, device=dev, progress=cb,
                                dataset_name=dataset, amp=amp)
    distributed.shutdown()
    if rank != 0:
        return
    if result.stopped:
        render.console.print(f"stopped: {result.stopped}; kept epoch {result.kept_epoch}")
    kept = f", kept epoch {result.kept_epoch} (best held-out robust accuracy)" \
        if result.kept_epoch is not None and not result.stopped else ""
    render.console.print(f"trained {arch or model} with {defense}: {result.steps} steps, mean loss "
                         f"{result.final_loss:.4g} over the last epoch{kept}; checkpoint written to {out}")

def _build(model: str, config: dict) -> object:
    """The model named by --model with --model-param keywords; a keyword it does not take is a usage error."""
    import inspect

    import advframe
    from advframe.errors import ParameterError

    factory = plugins.registry().get("models", model).factory
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = None
    if accepted is not None and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        for key in config:
            if key not in accepted:
                raise ParameterError(f"--model-param {key}=…: model '{model}' takes no parameter '{key}' "
                                     f"(its parameters: {', '.join(accepted) or 'none'})")
    try:
        return advframe.build_model(model, **config)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError(f"--model-param: model '{model}' cannot be built with "
                             f"{', '.join(f'{k}={v!r}' for k, v in config.items())}: {exc}") from None
