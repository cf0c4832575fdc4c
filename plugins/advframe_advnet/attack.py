"""The trained generator as an attack (adversarial networks §4.5): ``x_adv = clip(x + ε·G(x))``.

Once trained, G needs no gradient and no knowledge of the classifier it attacks: it is
one forward pass of the generator, so it spends no gradient evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from advframe.attack import Attack
from advframe.checkpoint import load_checkpoint
from advframe.errors import CheckpointError, ParameterError
from advframe.model import Model
from advframe.threat import ThreatModel
from advframe_advnet.generators import Generator, build_generator

GENERATOR_FORMAT = "advframe.generator/1"
TRAIN_FORMAT = "advframe.train/1"


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The generator stored in ``path``, in eval mode.

    ``path`` is a checkpoint of ``advframe train --defense advnet`` (the generator sits
    beside the classifier) or of ``advframe train-generator`` (a generator trained
    against a fixed classifier).

    Raises:
        CheckpointError: if the file is not a safetensors checkpoint holding a generator.
    """
    tensors, meta = load_checkpoint(path)
    if meta.get("format") == GENERATOR_FORMAT:
        config, prefix = meta.get("generator_config"), "generator."
    elif meta.get("format") == TRAIN_FORMAT and meta.get("defense") == "advnet":
        config, prefix = (meta.get("defense_state") or {}).get("generator_config"), "defense.generator."
    else:
        raise CheckpointError(f"'{path}' holds no generator: pass a checkpoint written by 'advframe train "
                              f"--defense advnet' or 'advframe train-generator'")
    if not isinstance(config, dict):
        raise CheckpointError(f"'{path}' has no generator configuration in its metadata: retrain it")
    try:
        gen = build_generator(config["kind"], config["channels"], config["image_size"], config["num_classes"],
                              config["width"], config["norm"])
        gen.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    except (KeyError, RuntimeError, ParameterError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"'{path}': the stored generator does not match its configuration ({first})") from None
    return gen.to(device).eval()


class GeneratorAttack(Attack):
    """A trained perturbation generator used as an attack (adversarial networks §4.5, Table 5).

    ``x_adv = clip(x + ε·G(x))`` with ``ε`` from the threat model and ``G`` loaded from
    ``checkpoint``, in eval mode. The generator's norm (linf: tanh head; l2: unit-L2 head)
    is the attack's norm. No gradient of the target model is used: it is a black-box
    attack once G is trained. G3 (the label generator) reads the label, so this attack
    reads the true label exactly when the generator is a G3.

    Args:
        checkpoint: path of a checkpoint of ``advframe train --defense advnet`` or
            ``advframe train-generator``.
        seed (int | None): seed of G2's Gaussian z; ``None`` (default) draws from torch's global RNG, which
            the evaluator seeds per batch (reproducible runs and resumes).
    """

    name = "generator"
    summary = "A trained perturbation generator as an attack, x + eps·G(x) (adversarial networks, ICLR 2019 sub.)"
    norms = ("linf", "l2")
    uses_true_label = True
    defaults = {"checkpoint": "", "seed": None}

    def validate(self) -> None:
        if not self.checkpoint:
            raise ParameterError("attack 'generator' needs --param checkpoint=PATH, a checkpoint of 'advframe train "
                                 "--defense advnet' or 'advframe train-generator'")
        self.gen = load_generator(self.checkpoint)
        self.norms = (self.gen.norm,)
        self.uses_true_label = self.gen.reads_label

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        shape = (self.gen.channels, self.gen.image_size, self.gen.image_size)
        if tuple(x.shape[1:]) != shape:
            raise ParameterError(f"attack 'generator': the generator makes {shape} perturbations, the data has "
                                 f"examples of shape {tuple(x.shape[1:])}")
        if threat.eps == 0:
            return threat.clip_bounds(x)
        self.gen.to(device=x.device, dtype=x.dtype)
        noise = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))
        with torch.no_grad():
            return threat.project(x + threat.eps * self.gen(x, y, noise), x)
