"""The ``advnet`` defense: a classifier and a generator trained as a minimax game (adversarial networks)."""

from __future__ import annotations

import math
from typing import Any

import torch

from advframe import distributed
from advframe.defense import Defense
from advframe.distributed import unwrap
from advframe.errors import CheckpointError, ParameterError
from advframe.model import Model, eval_mode
from advframe.params import check_int, check_range
from advframe.ops import derive_seed
from advframe.training import flatten_optimizer, unflatten_optimizer
from advframe_advnet.generators import KINDS, NORMS, Generator, generator_for
from advframe_advnet.objective import (MinimaxSettings, classifier_loss_exact, classifier_loss_finite_difference,
                                       generator_gradient, generator_params)

HVP_MODES = ("finite_difference", "exact")
G_OPTIMIZERS = ("adam", "sgd")


def reduce_mean(n_local: int) -> Any:
    """A function averaging per-process gradient lists into the gradient of the GLOBAL mean.

    Each process's list is the gradient of its local mean; the global mean's gradient is
    ``Σ_r (n_r / N)·g_r``. Identity on one process.
    """
    if not distributed.is_active():
        return lambda tensors: tensors
    import torch.distributed as dist

    weight = n_local / max(distributed.global_count(n_local), 1)

    def reduce(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for t in tensors:
            t = t * weight
            dist.all_reduce(t)
            out.append(t)
        return out

    return reduce


class AdversarialNetworks(Defense):
    """Adversarial networks (ICLR 2019 submission, §3): the classifier D_θ and a
    generator G_ψ of perturbations play the minimax game of its Eq. 4,

        ``min_θ max_ψ  mean l(D(x), y) + λ·mean l(D(clip(x + ε·G(x))), y)``.

    Every training step, on the same minibatch:

    1. ``g_steps`` (5) gradient-ascent steps of G on F, with its own optimiser (Adam,
       lr 0.002, β1 0.5, β2 0.999 as in §4.1), the classifier held fixed in eval mode;
    2. one classifier step on the regularised objective of Eq. 5, ``F + (γ/2)‖∇_ψ F‖²``
       (γ = 0.01), whose Hessian-vector product is the finite difference of §3.1 with
       ``h = η_G/10`` (``hvp=exact``: double backpropagation instead). The classifier's
       optimiser is the training loop's (§4.1: SGD, lr 0.01, momentum 0.9, weight decay
       1e-3 on MNIST; give them to ``advframe train``).

    Both networks start from random weights (§3.2). Checkpoints hold the classifier (the
    loop's model) and the generator with its optimiser state (``defense.generator.*``,
    ``defense.g_optim.*``), so training resumes exactly and ``--attack generator`` can
    load the trained G.

    Args:
        generator: ``g1`` (encoder–decoder of the image, default), ``g2`` (from Gaussian z)
            or ``g3`` (from the one-hot label).
        width: k, the generator's width factor (paper: 64; preset ``cpu``: 8).
        eps: ε, the size of G's perturbations (default 0.3, the paper's MNIST setting).
        norm: ``linf`` (tanh head) or ``l2`` (unit-L2 head).
        lam: λ of Eq. 4 (default 1).
        gamma: γ of Eq. 5 (default 0.01; 0 turns the regularisation off).
        hvp: ``finite_difference`` (default, §3.1) or ``exact`` (double backprop, one process only).
        h (float | None): finite-difference step (default ``g_lr / 10``).
        g_steps: generator steps per classifier step (default 5).
        g_optimizer: ``adam`` (default) or ``sgd``.
        g_lr: η_G (default 0.002).
        g_beta1: Adam's β1 (default 0.5).
        g_beta2: Adam's β2 (default 0.999).
        g_momentum: SGD momentum of G (default 0.9; the paper's SVHN setting uses sgd, lr 0.01).
    """

    name = "advnet"
    summary = "Adversarial networks: classifier vs a trained perturbation generator, Eq. 4-5 (ICLR 2019 sub.)"
    defaults = {"generator": "g1", "width": 64, "eps": 0.3, "norm": "linf", "lam": 1.0, "gamma": 0.01,
                "hvp": "finite_difference", "h": None, "g_steps": 5, "g_optimizer": "adam", "g_lr": 0.002,
                "g_beta1": 0.5, "g_beta2": 0.999, "g_momentum": 0.9}
    presets = {"paper": {}, "cpu": {"width": 8}}

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        if self.generator not in KINDS:
            raise ParameterError(f"{owner}: unknown generator '{self.generator}': use g1, g2 or g3")
        if self.norm not in NORMS:
            raise ParameterError(f"{owner}: unknown norm '{self.norm}': use linf or l2")
        if self.hvp not in HVP_MODES:
            raise ParameterError(f"{owner}: unknown hvp '{self.hvp}': use finite_difference or exact")
        if self.g_optimizer not in G_OPTIMIZERS:
            raise ParameterError(f"{owner}: unknown g_optimizer '{self.g_optimizer}': use adam or sgd")
        check_int(owner, "width", self.width, 1)
        check_int(owner, "g_steps", self.g_steps, 0)
        check_range(owner, eps=(self.eps, 0.0, math.inf), lam=(self.lam, 0.0, math.inf),
                    gamma=(self.gamma, 0.0, math.inf), g_lr=(self.g_lr, 0.0, math.inf),
                    g_beta1=(self.g_beta1, 0.0, 0.999999), g_beta2=(self.g_beta2, 0.0, 0.999999),
                    g_momentum=(self.g_momentum, 0.0, 1.0))
        if self.h is not None:
            check_range(owner, h=(self.h, 1e-12, math.inf))
        if self.gamma and self.hvp == "finite_difference" and self.step_h() <= 0:
            raise ParameterError(f"{owner}: the finite-difference step h = g_lr/10 is 0: give h=... or g_lr > 0")
        self.gen: Generator | None = None

    def step_h(self) -> float:
        """The finite-difference step h (adversarial networks §3.1: η_G / 10 unless given)."""
        return float(self.h) if self.h is not None else float(self.g_lr) / 10.0

    # -- set-up -----------------------------------------------------------------------------
    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        self.bounds = tuple(float(b) for b in getattr(data, "bounds", (0.0, 1.0)))
        self.seed = int(context.get("seed", 0))
        self.device = torch.device(context.get("device", "cpu"))
        if self.hvp == "exact" and distributed.is_active():
            raise ParameterError("defense 'advnet': hvp=exact (double backprop) runs on one process only; "
                                 "use hvp=finite_difference with --devices")
        if data is not None and getattr(data, "x", None) is not None:
            self._build(tuple(data.x.shape[1:]), int(data.num_classes))

    def _build(self, shape: tuple[int, ...], num_classes: int) -> None:
        self.gen = generator_for(self.generator, shape, num_classes, int(self.width), self.norm).to(self.device)
        self.gen.train()
        params = generator_params(self.gen)
        if self.g_optimizer == "adam":
            self.g_opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=float(self.g_lr),
                                                                 betas=(float(self.g_beta1), float(self.g_beta2)))
        else:
            self.g_opt = torch.optim.SGD(params, lr=float(self.g_lr), momentum=float(self.g_momentum))

    def _ensure(self, core: Model, x: torch.Tensor) -> Generator:
        if self.gen is None:
            if not hasattr(self, "bounds"):
                self.setup(core, None, {"device": x.device})
            with torch.no_grad():
                classes = int(core.scores(core(x[:1])).shape[1])
            self._build(tuple(x.shape[1:]), classes)
        return self.gen  # type: ignore[return-value]

    # -- one training step ------------------------------------------------------------------
    def noise_seed(self, step: int, salt: int) -> int:
        """Seed of G2's z for (step, generator update or 5 = classifier update, rank)."""
        rank, world = distributed.rank_and_world()
        return derive_seed(self.seed, step, salt, rank)

    def generator_steps(self, core: Model, gen: Generator, x: torch.Tensor, y: torch.Tensor, step: int) -> float:
        """``g_steps`` ascent steps of G on F, the classifier fixed (eval mode); the last adversarial loss."""
        reduce = reduce_mean(x.shape[0])
        params = generator_params(gen)
        last = float("nan")
        with eval_mode(core):
            for i in range(int(self.g_steps)):
                grads, last, _ = generator_gradient(core, gen, x, y, float(self.eps), self.bounds, float(self.lam),
                                                 self.noise_seed(step, i))
                for p, g in zip(params, reduce(grads)):
                    p.grad = -g  # ascent on F
                self.g_opt.step()
            self.g_opt.zero_grad(set_to_none=True)
        return last

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core = unwrap(model)
        gen = self._ensure(core, x)
        gen.train()
        g_loss = self.generator_steps(core, gen, x, y, step)
        seed = self.noise_seed(step, int(self.g_steps))
        if self.hvp == "exact":
            settings = MinimaxSettings(float(self.eps), self.bounds, float(self.lam), float(self.gamma))
            loss, stats = classifier_loss_exact(model, core, gen, x, y, settings, seed)
        else:
            settings = MinimaxSettings(float(self.eps), self.bounds, float(self.lam), float(self.gamma),
                                       self.step_h())
            loss, stats = classifier_loss_finite_difference(model, core, gen, x, y, settings, seed,
                                                            reduce_mean(x.shape[0]))
        outputs = stats.pop("outputs")
        n = x.shape[0]
        with torch.no_grad():
            pred = core.predict(outputs)
            clean_acc = float((pred[:n] == y).float().mean())
            adv_acc = float((pred[n:2 * n] == y).float().mean())
        return loss, {"clean_acc": clean_acc, "adv_acc": adv_acc, "g_adv_loss": g_loss, **stats}

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.gen is None:
            return {}
        _, opt_meta = flatten_optimizer(self.g_opt.state_dict())
        return {"generator_config": self.gen.config(), "g_optimizer": opt_meta}

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.gen is None:
            return {}
        opt_tensors, _ = flatten_optimizer(self.g_opt.state_dict())
        out = {f"generator.{k}": v for k, v in self.gen.state_dict().items()}
        out.update({f"g_{k}": v for k, v in opt_tensors.items()})  # g_optim.state.<p>.<key>
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state = dict(state)

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        state = getattr(self, "_state", {})
        if not state and not tensors:
            return
        if "generator_config" not in state:
            raise CheckpointError("this advnet checkpoint holds no generator configuration: it cannot be resumed")
        if self.gen is None:
            config = state["generator_config"]
            self._build((config["channels"], config["image_size"], config["image_size"]), config["num_classes"])
        self._restore(state, tensors)

    def _restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        gen = self.gen
        if gen is None:
            raise CheckpointError("advnet: no generator to restore into (call setup first)")
        if state["generator_config"] != gen.config():
            raise CheckpointError(f"the checkpoint's generator {state['generator_config']} differs from this "
                                  f"run's {gen.config()}: use the same defense parameters")
        gen.load_state_dict({k[len("generator."):]: v for k, v in tensors.items()
                                  if k.startswith("generator.")})
        opt = {k[len("g_"):]: v for k, v in tensors.items() if k.startswith("g_optim.")}
        self.g_opt.load_state_dict(unflatten_optimizer(opt, state["g_optimizer"]))
