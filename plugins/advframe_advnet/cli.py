"""``advframe train-generator``: train a generator against a fixed classifier (adversarial networks, Table 5).

Loaded only by the plugin's ``register_commands`` hook, so ``import advframe`` never
imports typer or rich through this plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advframe.cli import render
from advframe.errors import ParameterError


def train_generator_command(
    out: Annotated[Path, typer.Option(help="Generator checkpoint to write (.safetensors).")],
    model: Annotated[str, typer.Option(help="The fixed classifier: a model name or a .safetensors checkpoint.")] = "mnist_cnn_standard",
    dataset: Annotated[str, typer.Option(help="Data set name (its train split).")] = "mnist5k",
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the data set's files.")] = None,
    generator: Annotated[str, typer.Option(help="g1 (encoder-decoder of the image), g2 (Gaussian z) or g3 (label).")] = "g1",
    width: Annotated[int, typer.Option(help="Width factor k of the generator (paper: 8 narrow, 64 wide).")] = 64,
    eps: Annotated[str, typer.Option(help="Perturbation size, e.g. 0.3 or 8/255.")] = "0.3",
    norm: Annotated[str, typer.Option(help="linf (tanh head) or l2 (unit-L2 head).")] = "linf",
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 64,
    optimizer: Annotated[str, typer.Option(help="sgd, adam or rmsprop.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate (paper: 0.01).")] = 0.01,
    momentum: Annotated[float, typer.Option(help="Momentum (paper: 0.9).")] = 0.9,
    seed: Annotated[int, typer.Option(help="Seed of the generator's weights, the data order and G2's z.")] = 0,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Also write the checkpoint every N steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from --out if it exists.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a perturbation generator against a fixed classifier; evaluate it with
    'advframe eval --attack generator --param checkpoint=OUT'."""
    import advframe
    from advframe.cli.common import check_seed, resolve_device
    from advframe.cli.outputs import check_output_path
    from advframe.threat import parse_eps
    from advframe_advnet.fixed import train_generator

    check_output_path(out, "--out")  # before an hour of training, not after
    check_seed(seed)
    eps_value = parse_eps(eps)
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ParameterError(f"--checkpoint-every must be >= 1 step, got {checkpoint_every}")
    dev = resolve_device(device)
    classifier = advframe.load_model(model, device=dev)
    data = advframe.load_dataset(dataset, split="train", data_dir=data_dir)
    with render.progress_bar(progress) as cb:
        result = train_generator(classifier, data, generator=generator, width=width, eps=eps_value, norm=norm,
                                 epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                                 momentum=momentum, seed=seed, out=out, checkpoint_every=checkpoint_every,
                                 resume=resume, device=dev, progress=cb, classifier_name=model)
    last = result.history[-1] if result.history else {}
    render.console.print(f"trained generator {generator} (k={width}, {norm}, eps={eps_value:g}) against {model}: "
                         f"{result.steps} steps, last epoch's loss {last.get('loss', float('nan')):.4f}, "
                         f"accuracy on its own examples {last.get('adv_acc', float('nan')):.4f}; "
                         f"checkpoint written to {out}")
