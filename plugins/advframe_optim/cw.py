"""Carlini–Wagner L2 attack, with Saito & Roy's score-based (codeword) variant and
Madry et al.'s high-confidence CW+."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from advframe.attack import Attack
from advframe.model import Model
from advframe.threat import ThreatModel
from advframe_optim._box import check_classes, check_params, from_tanh_space, margin, sq_l2, to_tanh_space

#: Upper bound of the constant ``c`` that means "no success seen yet" in the binary search.
_NO_UPPER = 1e10


class CarliniWagnerL2(Attack):
    """Carlini & Wagner's L2 attack (*Towards Evaluating the Robustness of Neural
    Networks*, 2017), as described in Saito & Roy §2.3 and §3.3.

    For each example it minimises, over ``w`` (tanh change of variables),

    ``‖x̃ − x‖²₂ + c · f(x̃)``  with  ``x̃ = lo + (hi − lo) · (tanh(w) + 1) / 2``

    so that ``x̃`` stays inside ``threat.bounds``. With class scores ``Z`` the objective is

    * targeted at ``t``:   ``f(x̃) = max(max_{i≠t} Z_i − Z_t + κ, 0)``
    * untargeted (``y``): ``f(x̃) = max(Z_y − max_{i≠y} Z_i + κ, 0)``

    ``Z`` is ``model.scores(model(x̃))``. On a codeword model (Saito & Roy), whose scores
    are minus the distance of the output to each class codeword, ``Z_t − max_{i≠t} Z_i =
    min_{i≠t} D_i − D_t`` and ``f`` is exactly Saito & Roy's distance-based variant (§3.3);
    on a logits model it is the original CW objective. ``naive=True`` uses the raw outputs
    ``model(x̃)`` as logits instead — the unmodified CWL2 that Saito & Roy's Table 7
    compares against (on a codeword model this indexes the tanh outputs by class, which
    is meaningless, hence its near-zero success rate there).

    ``c`` starts at ``initial_const`` and is tuned per example by a binary search over
    ``binary_search_steps`` rounds (halving towards the smallest successful ``c``; ×10
    while no success has been seen). Each round runs up to ``max_iterations`` Adam steps
    (learning rate ``learning_rate``) from ``x``; with ``abort_early`` a round stops
    when the total objective has not decreased by 0.01 % over a tenth of the iterations.

    An iterate counts as a success when the model's own decision rule (``model.predict``)
    gives the target (targeted) or a class other than ``y`` (untargeted) *and* the margin
    on ``Z`` reaches ``κ``. The attack returns, per example, the successful iterate with
    the smallest L2 distance over all rounds; an example never fooled is returned
    unchanged (``x``).

    CW is a minimum-norm attack, but the result must lie inside the threat model: the
    final batch is passed through ``threat.project``. A successful example farther than
    ``threat.eps`` from ``x`` is therefore scaled back onto the eps ball and may no longer
    fool the model — that is the honest answer to "is there an adversarial example within
    eps?". Use a large eps to measure the minimum norm.

    With ``early_exit`` (default True, for evaluation) and ``abort_early=False``, a
    binary-search round runs only on the examples with no success inside the eps ball yet:
    a further round could only find a smaller distortion, which the threat model does not
    count, and Adam's steps are per coordinate, so the other examples' search is unchanged.
    With ``abort_early`` (the default) a round ends when the objective summed over the batch
    stops falling, so dropping examples would change how long the others are searched (tried
    on Saito & Roy's softmax-MSE model, it left 9 of 60 digits unbroken at c = 10 where the
    full search leaves 6): every round then runs on every example, as with ``early_exit=False``.

    Norm: ``l2``. Targetable; untargeted mode reads the true label ``y``.
    Gradient evaluations: one per Adam step (forward + backward over the examples searched).

    Defaults (Carlini & Wagner / Cleverhans): ``binary_search_steps=5``,
    ``max_iterations=1000``, ``learning_rate=0.01``, ``initial_const=0.01``,
    ``confidence=0.0``, ``abort_early=True``, ``naive=False``, ``early_exit=True``.
    Presets: ``saito`` (Saito & Roy Table 2: 5 binary-search steps, 1,000 iterations; the
    initial constant is the swept parameter of their Table 1, pass it explicitly),
    ``cw_plus`` (Madry et al.'s high-confidence CW+: ``confidence=50``, the value of their
    MNIST evaluation; the summary in the papers folder names CW+ without the number).
    """

    name: ClassVar[str] = "cw_l2"
    summary: ClassVar[str] = "Carlini-Wagner L2 (tanh box, Adam, binary search on c; scores or naive logits)"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    targetable: ClassVar[bool] = True
    uses_true_label: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "binary_search_steps": 5,
        "max_iterations": 1000,
        "learning_rate": 0.01,
        "initial_const": 0.01,
        "confidence": 0.0,
        "abort_early": True,
        "naive": False,
        "early_exit": True,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "saito": {"binary_search_steps": 5, "max_iterations": 1000},
        "cw_plus": {"confidence": 50.0},
    }

    def validate(self) -> None:
        """Check the merged parameters."""
        check_params(self.name, self.params, at_least={"binary_search_steps": 1, "max_iterations": 1,
                                                       "confidence": 0},
                     positive=("learning_rate", "initial_const"))

    def class_scores(self, model: Model, outputs: torch.Tensor) -> torch.Tensor:
        """The ``Z`` of the objective: ``model.scores(outputs)``, or ``outputs`` when naive."""
        return outputs if self.naive else model.scores(outputs)

    def objective(self, model: Model, x_new: torch.Tensor, labels: torch.Tensor, targeted: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``f(x̃)`` per example, the margin it is built on, and the outputs at ``x̃``."""
        outputs = model(x_new)
        z = self.class_scores(model, outputs)
        check_classes(z, labels, "the raw outputs (naive=True)" if self.naive else "model.scores")
        m = margin(z, labels)  # Z_label - max_{i != label} Z_i
        kappa = float(self.confidence)
        f = (kappa - m).clamp_min(0) if targeted else (m + kappa).clamp_min(0)
        return f, m, outputs

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        """Run the attack; see the class docstring."""
        targeted = target is not None
        labels = (target if targeted else y).to(x.device).long()
        n = x.shape[0]
        kappa = float(self.confidence)
        w0 = to_tanh_space(x, threat.bounds)

        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), _NO_UPPER, device=x.device)
        const = torch.full((n,), float(self.initial_const), device=x.device)
        best_l2 = torch.full((n,), float("inf"), device=x.device)
        best_adv = x.clone()
        check_every = max(1, int(self.max_iterations) // 10)

        searching = self.early_exit and not self.abort_early  # only where no success lies within eps
        for _ in range(int(self.binary_search_steps)):
            rows = (best_l2 > float(threat.eps) ** 2).nonzero().squeeze(1) if searching else \
                torch.arange(n, device=x.device)
            if searching and rows.numel() == 0:
                break
            round_l2, round_adv, success, improved = self._search_round(
                model, x[rows], labels[rows], w0[rows], const[rows], best_l2[rows], threat, targeted, kappa,
                check_every)
            best_l2[rows] = round_l2
            best_adv[rows[improved]] = round_adv[improved]
            upper[rows], lower[rows], const[rows] = _next_const(success, upper[rows], lower[rows], const[rows])

        x_adv = best_adv
        return threat.project(x_adv, x).detach()

    def _search_round(self, model: Model, x: torch.Tensor, labels: torch.Tensor, w0: torch.Tensor,
                      const: torch.Tensor, best_l2: torch.Tensor, threat: ThreatModel, targeted: bool, kappa: float,
                      check_every: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One round of the binary search: up to ``max_iterations`` Adam steps from ``x`` at constants ``const``.

        Returns:
            The smallest squared L2 of a success per example (``best_l2`` where none is smaller),
            the point of that success, whether the round had a success, and whether its point
            improved on ``best_l2``.
        """
        n = x.shape[0]
        best_adv = x.clone()
        ever_improved = torch.zeros(n, dtype=torch.bool, device=x.device)
        w = w0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=float(self.learning_rate))
        round_success = torch.zeros(n, dtype=torch.bool, device=x.device)
        prev = float("inf")
        for it in range(int(self.max_iterations)):
            with torch.enable_grad():
                x_new = from_tanh_space(w, threat.bounds)
                l2 = sq_l2(x_new - x)
                f, m, outputs = self.objective(model, x_new, labels, targeted)
                total = (l2 + const * f).sum()
                (grad,) = torch.autograd.grad(total, w)
            self.count_passes("gradient", n)
            with torch.no_grad():
                pred = model.predict(outputs.detach())
                hit = pred == labels if targeted else pred != labels
                hit &= (m >= kappa) if targeted else (-m >= kappa)
                improved = hit & (l2 < best_l2)
                best_l2 = torch.where(improved, l2.detach(), best_l2)
                best_adv[improved] = x_new.detach()[improved]
                ever_improved |= improved
                round_success |= hit
            w.grad = grad
            optimizer.step()
            if self.abort_early and it % check_every == 0:
                value = float(total.detach())
                if value > prev * 0.9999:
                    break
                prev = value
        return best_l2, best_adv, round_success, ever_improved


def _next_const(success: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor,
                const: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The binary search on ``c``, per example: halve towards the smallest success, ×10 before any."""
    upper = torch.where(success, torch.minimum(upper, const), upper)
    lower = torch.where(success, lower, torch.maximum(lower, const))
    bounded = upper < _NO_UPPER
    return upper, lower, torch.where(bounded, (lower + upper) / 2, const * 10)
