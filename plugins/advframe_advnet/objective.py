"""The minimax objective of the adversarial-networks paper and its regularised classifier gradient.

Eq. 4: ``F(θ, ψ) = mean l(D_θ(x), y) + λ · mean l(D_θ(clip(x + ε·G_ψ(x))), y)``, minimised
over the classifier θ and maximised over the generator ψ (means over the minibatch; ``l``
is the classifier's own loss, cross-entropy for the zoo's models).

Eq. 5: the classifier minimises ``F + (γ/2)·‖∇_ψ F‖²`` instead of ``F``. Its θ-gradient
is ``∇_θ F + γ·∇²_{θψ}F · ∇_ψ F``; §3.1 replaces the Hessian-vector product by the finite
difference ``[∇_θ F(θ, ψ + h·v) − ∇_θ F(θ, ψ)] / h`` with ``v = ∇_ψ F(θ, ψ)`` (a gradient-
ascent step of G) and ``h = η_G / 10``. :func:`classifier_loss_finite_difference` builds a
scalar whose θ-gradient is exactly that,

    ``(1 − γ/h)·F(θ, ψ) + (γ/h)·F(θ, ψ + h·v)``   (G's weights held constant),

and whose VALUE is the regularised objective ``F + (γ/2)‖v‖²``.
:func:`classifier_loss_exact` differentiates ``F + (γ/2)‖∇_ψ F‖²`` by double
backpropagation: the reference the finite difference is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from advframe.model import Model
from advframe.ops import derive_seed
from advframe_advnet.generators import Generator

Reduce = Callable[[list[torch.Tensor]], list[torch.Tensor]]


@dataclass(frozen=True)
class MinimaxSettings:
    """The constants of the objective for one classifier step (Eq. 4 and 5).

    Attributes:
        eps: ε of the generator's perturbations.
        bounds: valid input range.
        lam: λ of Eq. 4.
        gamma: γ of Eq. 5 (0 turns the regularisation off).
        h: finite-difference step of §3.1 (paper: η_G / 10); needed by
            :func:`classifier_loss_finite_difference` when ``gamma`` is not 0, unused by
            :func:`classifier_loss_exact`.
    """

    eps: float
    bounds: tuple[float, float]
    lam: float
    gamma: float
    h: float | None = None


def _identity(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return tensors


def noise_source(seed: int | None) -> torch.Generator | None:
    """A fresh CPU generator seeded with ``seed`` (the same z for every call with that seed)."""
    return None if seed is None else torch.Generator().manual_seed(derive_seed(seed))


def generator_params(gen: Generator) -> list[torch.nn.Parameter]:
    """The trainable parameters ψ of a generator."""
    return [p for p in gen.parameters() if p.requires_grad]


def generator_gradient(core: Model, gen: Generator, x: torch.Tensor, y: torch.Tensor, eps: float,
                       bounds: tuple[float, float], lam: float, noise_seed: int | None
                       ) -> tuple[list[torch.Tensor], float, torch.Tensor]:
    """``∇_ψ F`` (only the adversarial term of F depends on ψ), that term's mean loss, and
    the adversarial examples ``clip(x + ε·G(x))`` (detached).

    The classifier ``core`` is used as it is (its mode is the caller's); no classifier
    gradient is computed.
    """
    params = generator_params(gen)
    with torch.enable_grad():
        adv = gen.perturb(x, y, eps, bounds, noise_source(noise_seed))
        adv_loss = core.loss(core(adv), y).mean()
        grads = torch.autograd.grad(lam * adv_loss, params)
    return [g.detach() for g in grads], float(adv_loss.detach()), adv.detach()


@contextmanager
def shifted(params: Sequence[torch.nn.Parameter], direction: Sequence[torch.Tensor], h: float) -> Iterator[None]:
    """Temporarily move ``params`` to ``params + h·direction`` (restored bit for bit)."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d, alpha=h)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def _split_means(core: Model, outputs: torch.Tensor, y: torch.Tensor, parts: int) -> list[torch.Tensor]:
    per = core.loss(outputs, y.repeat(parts))
    return list(per.view(parts, -1).mean(dim=1))


def classifier_loss_finite_difference(model: Model, core: Model, gen: Generator, x: torch.Tensor, y: torch.Tensor,
                                      settings: MinimaxSettings, noise_seed: int | None = None,
                                      reduce: Reduce = _identity) -> tuple[torch.Tensor, dict[str, Any]]:
    """The classifier's loss for one step of Eq. 5 with the finite-difference HVP of §3.1.

    Args:
        model: the classifier to call for the loss (a distributed wrapper or ``core``).
        core: the bare classifier (its ``loss``; computes ``v`` without the wrapper).
        gen: the generator at ψ.
        x: clean inputs.
        y: labels.
        settings: ε, bounds, λ, γ and the finite-difference step ``h`` (paper: η_G / 10).
        noise_seed: seed of G2's z (the same z at ψ and at ψ + h·v).
        reduce: averages ``v`` over processes (identity on one).

    Returns:
        ``(loss, stats)``: backward of ``loss`` gives ``∇_θ F + γ·[∇_θF(ψ+hv) − ∇_θF(ψ)]/h``;
        its value is ``F + (γ/2)‖v‖²``. ``stats``: ``clean_loss``, ``adv_loss``,
        ``grad_norm_g`` (‖v‖) and the outputs for accuracies under ``outputs``.

    Raises:
        ValueError: when ``settings.gamma`` is not 0 and ``settings.h`` is not given.
    """
    eps, bounds, lam, gamma, h = settings.eps, settings.bounds, settings.lam, settings.gamma, settings.h
    if gamma and h is None:
        raise ValueError("classifier_loss_finite_difference needs the finite-difference step settings.h")
    n = x.shape[0]
    v: list[torch.Tensor] = []
    with torch.no_grad():
        if gamma:
            v, _, adv0 = generator_gradient(core, gen, x, y, eps, bounds, lam, noise_seed)
            v = reduce(v)
            with shifted(generator_params(gen), v, h):
                adv1 = gen.perturb(x, y, eps, bounds, noise_source(noise_seed))
            parts = [x, adv0, adv1]
        else:
            parts = [x, gen.perturb(x, y, eps, bounds, noise_source(noise_seed))]
    outputs = model(torch.cat(parts))
    means = _split_means(core, outputs, y, len(parts))
    clean_loss, adv_loss = float(means[0].detach()), float(means[1].detach())
    f0 = means[0] + lam * means[1]
    v_sq = sum(float((g.double() ** 2).sum()) for g in v)
    if not gamma:
        return f0, {"clean_loss": clean_loss, "adv_loss": adv_loss, "grad_norm_g": 0.0,
                    "outputs": outputs[:2 * n].detach()}
    f1 = means[0] + lam * means[2]
    surrogate = f0 + (gamma / h) * (f1 - f0)
    value = f0.detach() + 0.5 * gamma * v_sq
    loss = surrogate + (value - surrogate).detach()
    return loss, {"clean_loss": clean_loss, "adv_loss": adv_loss, "grad_norm_g": v_sq ** 0.5,
                  "outputs": outputs[:2 * n].detach()}


def classifier_loss_exact(model: Model, core: Model, gen: Generator, x: torch.Tensor, y: torch.Tensor,
                          settings: MinimaxSettings, noise_seed: int | None = None
                          ) -> tuple[torch.Tensor, dict[str, Any]]:
    """``F + (γ/2)‖∇_ψ F‖²`` with the gradient norm differentiated by double backpropagation.

    The reference for :func:`classifier_loss_finite_difference`; costs a second-order
    backward pass. Arguments and returns as there (without ``reduce``; ``settings.h`` is
    not used).
    """
    params = generator_params(gen)
    adv = gen.perturb(x, y, settings.eps, settings.bounds, noise_source(noise_seed))
    outputs = model(torch.cat([x, adv]))
    clean, adv_loss = _split_means(core, outputs, y, 2)
    f = clean + settings.lam * adv_loss
    grads = torch.autograd.grad(f, params, create_graph=True)
    penalty = 0.5 * sum((g ** 2).sum() for g in grads)
    loss = f + settings.gamma * penalty
    return loss, {"clean_loss": float(clean.detach()), "adv_loss": float(adv_loss.detach()),
                  "grad_norm_g": float(2.0 * penalty.detach()) ** 0.5, "outputs": outputs.detach()}
