"""APGD-CE, APGD-DLR and APGD-T (Croce & Hein, ICML 2020): Auto-PGD on three objectives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from advframe_gradient.losses import dlr_loss, require_classes, targeted_dlr_loss

from advframe.attack import Attack
from advframe.model import Model
from advframe.ops import generator
from advframe.params import check_optional_int
from advframe.threat import ThreatModel
from advframe_autoattack._common import check_targets_param, target_count, top_other_classes
from advframe_autoattack.apgd import Goal, run_apgd


@dataclass(frozen=True)
class _Outcome:
    """The attack's running outcome over its runs (the tensors are updated in place).

    Attributes:
        robust: examples not fooled yet.
        x_adv: the result: a fooling point, or the highest-objective point so far.
        best: the objective at ``x_adv`` (-inf before any run).
    """

    robust: torch.Tensor
    x_adv: torch.Tensor
    best: torch.Tensor


class _APGD(Attack):
    """Shared parameters and the restart loop of the APGD attacks."""

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    uses_true_label: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"steps": 100, "restarts": 1, "seed": None}

    def validate(self) -> None:
        owner = f"attack '{self.name}'"
        check_optional_int(owner, "steps", self.steps, 0)
        check_optional_int(owner, "restarts", self.restarts, 1)
        check_optional_int(owner, "seed", self.seed, 0)

    def _runs(self, model: Model, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, goal: Goal,
              outcome: _Outcome, gen: torch.Generator | None) -> None:
        """``restarts`` APGD runs on the still-robust examples; updates ``outcome`` in place.

        A fooled example takes its fooling point and leaves ``outcome.robust``; a robust one
        keeps the point of highest objective over the runs (``outcome.best``).
        """
        robust, result, best = outcome.robust, outcome.x_adv, outcome.best
        for _ in range(int(self.restarts)):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                return
            run = run_apgd(self, model, x[idx], labels[idx], threat, goal, int(self.steps), gen)
            take = run.fooled | (run.objective > best[idx])
            result[idx[take]] = run.x_adv[take]
            best[idx[take]] = run.objective[take]
            robust[idx[run.fooled]] = False

    def _start(self, model: Model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The clean forward query; a result initialised to ``x``; best objectives at -inf."""
        out = self.forward(model, x)
        return out, x.clone(), x.new_full((x.shape[0],), float("-inf"))


class APGDCE(_APGD):
    """APGD-CE: Auto-PGD on the model's own loss (Croce & Hein, *Reliable evaluation of
    adversarial robustness with an ensemble of diverse parameter-free attacks*, ICML 2020).

    "CE" is ``model.loss`` — cross-entropy for a logits classifier, the model's own
    training loss otherwise (codeword models). Untargeted: ascends ``loss(x, y)`` and
    succeeds when ``predict != y``; targeted: ascends ``-loss(x, target)`` and succeeds
    when ``predict == target``. See :func:`advframe_autoattack.apgd.run_apgd` for the
    step-size schedule (eta = 2 eps, halved at the checkpoints 0.22 N, 0.41 N, ... when
    progress stalls; momentum 0.75; random start on the ball's surface).

    Cost: one forward query (clean predictions; examples already fooled are returned
    as they are), then per restart ``steps + 1`` gradient evaluations over the
    still-robust examples, fewer when all of them are fooled early. Each example
    returns its first fooling iterate or, if never fooled, its highest-loss point.

    Args:
        steps: iterations N per restart (default 100, AutoAttack standard).
        restarts: runs, each on the examples still robust (default 1).
        seed (int | None): seed of the random starts; ``None`` (default) uses torch's global RNG.

    Norms linf and l2; targetable; reads the true label.
    """

    name = "apgd_ce"
    summary = "Auto-PGD on the model's own loss, linf or l2 (Croce & Hein 2020)"
    targetable = True

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        out, result, best = self._start(model, x)
        if target is None:
            labels = y
            objective = model.loss
            fooled = lambda o, lab: model.predict(o) != lab  # noqa: E731
        else:
            labels = target
            objective = lambda o, lab: -model.loss(o, lab)  # noqa: E731
            fooled = lambda o, lab: model.predict(o) == lab  # noqa: E731
        outcome = _Outcome(~fooled(out, labels), result, best)
        self._runs(model, x, labels, threat, Goal(objective, fooled), outcome, generator(self.seed))
        return result


class APGDDLR(_APGD):
    """APGD-DLR: Auto-PGD on the untargeted Difference of Logits Ratio loss (Croce & Hein,
    ICML 2020, eq. (6)) on ``model.scores``: ``-(z_y - max_{i≠y} z_i) / (z_π1 - z_π3)``.

    Scale- and shift-invariant, so it does not suffer from the gradient masking of
    saturated cross-entropy. Same loop, cost and arguments as :class:`APGDCE`
    (steps 100, restarts 1, seed None). Needs at least 3 classes
    (:class:`~advframe.errors.ParameterError` otherwise).

    Norms linf and l2; untargeted; reads the true label.
    """

    name = "apgd_dlr"
    summary = "Auto-PGD on the scale-invariant DLR margin loss, linf or l2 (Croce & Hein 2020)"
    targetable = False

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        out, result, best = self._start(model, x)
        require_classes(f"attack '{self.name}'", "the DLR loss", 3, model.scores(out).shape[1])
        objective = lambda o, lab: dlr_loss(model.scores(o), lab)  # noqa: E731
        fooled = lambda o, lab: model.predict(o) != lab  # noqa: E731
        outcome = _Outcome(~fooled(out, y), result, best)
        self._runs(model, x, y, threat, Goal(objective, fooled), outcome, generator(self.seed))
        return result


class APGDT(_APGD):
    """APGD-T: Auto-PGD on the targeted DLR loss over the top-k other classes (Croce &
    Hein, ICML 2020, eq. (7) and §5).

    The threat is UNtargeted: the targets are chosen internally, the ``k`` classes other
    than ``y`` with the highest clean scores. For each target in turn (best first), the
    examples still robust are attacked with ``restarts`` runs ascending
    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)``; an example is broken when
    ``predict != y``. A robust example keeps the point of highest targeted DLR over all runs.

    Cost: one forward query, then at most ``k · restarts · (steps + 1)`` gradient
    evaluations (each over the examples still robust).

    Args:
        steps: iterations per run (default 100).
        restarts: runs per target class (default 1, AutoAttack standard).
        n_target_classes (int | None): ``k``; ``None`` (default) = AutoAttack's 9 capped at
            classes − 1; an explicit ``k`` needs at least ``k + 1`` classes.
        seed (int | None): seed of the random starts; ``None`` (default) uses torch's global RNG.

    Needs at least 4 classes (targeted DLR). Norms linf and l2; not targetable; reads
    the true label.
    """

    name = "apgd_t"
    summary = "Auto-PGD on the targeted DLR loss over the top-9 other classes (Croce & Hein 2020)"
    targetable = False
    defaults = {**_APGD.defaults, "n_target_classes": None}

    def validate(self) -> None:
        super().validate()
        check_targets_param(f"attack '{self.name}'", self.n_target_classes)

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        if threat.eps == 0:
            return threat.clip_bounds(x)
        owner = f"attack '{self.name}'"
        out, result, best = self._start(model, x)
        scores = model.scores(out)
        require_classes(owner, "the targeted DLR loss", 4, scores.shape[1])
        k = target_count(owner, self.n_target_classes, scores.shape[1])
        targets = top_other_classes(scores, y, k)
        objective = lambda o, lab: targeted_dlr_loss(model.scores(o), lab[:, 0], lab[:, 1])  # noqa: E731
        fooled = lambda o, lab: model.predict(o) != lab[:, 0]  # noqa: E731
        outcome = _Outcome(model.predict(out) == y, result, best)
        gen = generator(self.seed)
        for j in range(k):
            labels = torch.stack([y, targets[:, j]], dim=1)
            self._runs(model, x, labels, threat, Goal(objective, fooled), outcome, gen)
        return result
