"""One-step gradient attacks (Kurakin et al. 2017, Appendix A; Goodfellow et al. 2015).

Each attack computes a direction ``d`` of unit size in its norm from ONE gradient at the
clean input and returns ``project(x + eps · d)``. Because ``d`` does not depend on eps,
:meth:`OneStepAttack.craft_grid` shares it over a whole eps grid (one gradient
evaluation in total, booked as an equal share to each eps).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from advframe.attack import Attack, Crafted, random_target, shared_over, synchronize
from advframe.model import Model
from advframe.ops import generator, normalized
from advframe.threat import ThreatModel


class OneStepAttack(Attack, abc.ABC):
    """Base class: ``x_adv = project(x + eps · direction(x))`` with an eps-free direction.

    Its :meth:`direction` is public (the trait ``eps_free_direction``): adversarial
    training uses it to give each example its own radius from one gradient.
    """

    eps_free_direction: ClassVar[bool] = True

    @abc.abstractmethod
    def direction(self, model: Model, x: torch.Tensor, y: torch.Tensor,
                  target: torch.Tensor | None) -> torch.Tensor:
        """The step direction at ``x`` (unit size in the attack's norm); one gradient evaluation."""

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        return self._steps(model, x, y, [threat], target)[0]

    def _steps(self, model: Model, x: torch.Tensor, y: torch.Tensor, threats: Sequence[ThreatModel],
               target: torch.Tensor | None) -> list[torch.Tensor]:
        """Adversarial examples for every threat from ONE direction (none when all eps are 0)."""
        if not any(t.eps > 0 for t in threats):
            return [t.clip_bounds(x) for t in threats]
        d = self.direction(model, x, y, target)
        return [t.project(x + t.reach(x) * d, x) for t in threats]  # = eps, capped where it cannot matter

    def craft_grid(self, model: Model, x: torch.Tensor, y: torch.Tensor, threats: list[ThreatModel],
                   target: torch.Tensor | None, seeds: Sequence[int] | None) -> list[Crafted]:
        """Share ONE gradient over the whole grid; each eps is booked an equal share of it."""
        if seeds is not None:
            torch.manual_seed(seeds[0])
        self.reset_counter()
        t0 = time.perf_counter()
        advs = self._steps(model, x, y, threats, target)
        synchronize(x)
        return shared_over(advs, *self.booked(x.shape[0]), time.perf_counter() - t0)


class _OutputObjective(OneStepAttack):
    """A sign step up an objective whose labels are read off the same forward pass."""

    @abc.abstractmethod
    def objective(self, model: Model, outputs: torch.Tensor) -> torch.Tensor:
        """Per-example quantity to ascend, from the outputs at x (labels from ``outputs.detach()``)."""

    def direction(self, model, x, y, target):
        g, _ = self.gradient(model, x, lambda out: self.objective(model, out))
        return g.sign()


class _FastGrad(OneStepAttack):
    """The loss gradient normalised to unit ``normalization`` norm (Kurakin's "fast grad.")."""

    normalization: ClassVar[str] = "l2"
    targetable = True
    uses_true_label = True
    leaks_labels = True

    def direction(self, model, x, y, target):
        g, _ = self.objective_gradient(model, x, y, target)
        return normalized(g, self.normalization)


class FGSM(OneStepAttack):
    """Fast gradient sign method (Goodfellow et al. 2015; Kurakin et al. 2017, §2.2).

    ``x_adv = clip(x + eps · sign(∇x J(x, y_true)))`` with ``J = model.loss``. Targeted
    (Kurakin's one-step target class method): ``x - eps · sign(∇x J(x, y_target))``.
    Norm linf; no hyper-parameters; one gradient evaluation (shared over an eps grid);
    reads the true label (label leaking, Kurakin §4.2).
    """

    name = "fgsm"
    summary = "Fast gradient sign method: x + eps·sign(∇loss(x, y_true)) (Goodfellow 2015)"
    norms = ("linf",)
    targetable = True
    uses_true_label = True
    leaks_labels = True
    label_free_twin = "fgsm_pred"

    def direction(self, model, x, y, target):
        g, _ = self.objective_gradient(model, x, y, target)
        return g.sign()


class FGSMPred(_OutputObjective):
    """FGSM with the predicted label ("FGSM-pred", Kurakin et al. 2017, Appendix A).

    ``x_adv = clip(x + eps · sign(∇x J(x, y_pred)))`` with ``y_pred = model.predict(model(x))``,
    read off the same forward pass as the gradient. Norm linf; untargeted only; does not
    read the true label (no label leaking); one gradient evaluation; no hyper-parameters.
    """

    name = "fgsm_pred"
    summary = "FGSM with the model's predicted label instead of the true one (Kurakin 2017)"
    norms = ("linf",)
    uses_true_label = False

    def objective(self, model, outputs):
        return model.loss(outputs, model.predict(outputs.detach()))


class StepLL(_OutputObjective):
    """One step toward the least-likely class ("step l.l.", Kurakin et al. 2017, §2.2).

    ``x_adv = clip(x - eps · sign(∇x J(x, y_LL)))`` with ``y_LL = argmin model.scores(model(x))``.
    Norm linf; it picks its own target, so it is not targetable by the caller; does not
    read the true label; one gradient evaluation; no hyper-parameters.
    """

    name = "step_ll"
    summary = "One step toward the least-likely class: x - eps·sign(∇loss(x, y_LL)) (Kurakin 2017)"
    norms = ("linf",)
    uses_true_label = False

    def objective(self, model, outputs):
        return -model.loss(outputs, model.scores(outputs.detach()).argmin(dim=1))


class StepRnd(_OutputObjective):
    """One step toward a random class ("step rnd.", Kurakin et al. 2017, Appendix A).

    ``x_adv = clip(x - eps · sign(∇x J(x, y_rnd)))`` with ``y_rnd`` uniform among the
    classes other than the PREDICTED one (so the true label is never read).

    Args:
        seed (int | None): seed of the random targets; ``None`` (default) uses torch's global RNG.

    Norm linf; not targetable by the caller; one gradient evaluation.
    """

    name = "step_rnd"
    summary = "One step toward a random class: x - eps·sign(∇loss(x, y_rnd)) (Kurakin 2017)"
    norms = ("linf",)
    uses_true_label = False
    defaults = {"seed": None}

    def objective(self, model, outputs):
        scores = model.scores(outputs.detach())
        return -model.loss(outputs, random_target(scores.argmax(dim=1), scores.shape[1], generator(self.seed)))


class FastEntropy(_OutputObjective):
    """Fast method that ascends the prediction entropy ("fast entropy", Kurakin et al. 2017, App. A).

    ``x_adv = clip(x + eps · sign(∇x H(softmax(model.scores(model(x))))))``, with
    ``H(p) = -Σ p log p``: the model becomes less certain of its prediction. Norm linf;
    untargeted only; does not read the true label; one gradient evaluation; no
    hyper-parameters.
    """

    name = "fast_entropy"
    summary = "One step up the entropy of softmax(scores) (Kurakin 2017)"
    norms = ("linf",)
    uses_true_label = False

    def objective(self, model, outputs):
        logp = F.log_softmax(model.scores(outputs), dim=1)
        return -(logp.exp() * logp).sum(dim=1)


class FastGradL2(_FastGrad):
    """Fast gradient with L2 normalisation ("fast grad. L2", Kurakin et al. 2017; Miyato et al. 2016).

    ``x_adv = clip(x + eps · ∇x J(x, y_true) / ||∇x J(x, y_true)||_2)``: a step of L2 length
    exactly eps, so the norm is l2. Targeted: ``x - eps · ∇J(x, y_t) / ||∇J(x, y_t)||_2``.
    Reads the true label; one gradient evaluation; no hyper-parameters.
    """

    name = "fast_grad_l2"
    summary = "One step of L2 length eps along the loss gradient (Kurakin 2017, Miyato 2016)"
    norms = ("l2",)
    normalization = "l2"


class FastGradLinf(_FastGrad):
    """Fast gradient with Linf normalisation ("fast grad. Linf", Kurakin et al. 2017, App. A).

    ``x_adv = clip(x + eps · ∇x J(x, y_true) / ||∇x J(x, y_true)||_inf)``: the largest
    coordinate moves by eps, so the norm is linf. Targeted: minus the normalised gradient
    of the target's loss. Reads the true label; one gradient evaluation; no
    hyper-parameters.
    """

    name = "fast_grad_linf"
    summary = "One step along the loss gradient scaled to Linf length eps (Kurakin 2017)"
    norms = ("linf",)
    normalization = "linf"
