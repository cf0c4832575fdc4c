"""Training that watches itself: a held-out slice, its accuracies each epoch, the epoch to
keep, and the sign of catastrophic overfitting.

* :func:`holdout_split` sets aside a class-balanced slice of the TRAINING split (never the
  test split): the last examples of each class, so that a ``--limit`` prefix and the
  holdout of a longer run never share an example with the training examples of either.
* :func:`measure` gives clean and robust accuracy on that slice after an epoch, the robust
  one under the defense's monitoring attack (a few PGD steps), crafted and audited by the
  engine like any attack's output, with its own seeded generator and the global RNG
  untouched, so that monitoring changes nothing in the training run.
* :func:`best_epoch` is the epoch of highest held-out robust accuracy (early stopping
  against robust overfitting: Rice, Wong & Kolter, ICML 2020).
* :func:`collapse` recognises catastrophic overfitting (Wong, Rice & Kolter, ICLR 2020,
  §4.2): held-out robust accuracy falling to a fraction of its best while clean accuracy
  does not fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advframe.dataset import LabeledData
from advframe.engine import AttackSpec, craft_audited
from advframe.errors import ParameterError
from advframe.model import eval_mode
from advframe.options import fixed_step_spec
from advframe.threat import ThreatModel

#: A collapse: held-out robust accuracy at least this far (absolute) below its best ...
COLLAPSE_DROP = 0.1
#: ... and below this fraction of the best, while clean accuracy is not below the clean
#: accuracy of the best epoch. Wong et al. stop when PGD accuracy on a minibatch drops by 20
#: points between epochs; on a small model whose robust accuracy is itself low (20 %), a
#: relative rule also catches the fall to 0 that marks catastrophic overfitting.
COLLAPSE_FRACTION = 1 / 3

#: Examples per monitoring batch.
MONITOR_BATCH = 500


def holdout_split(data: LabeledData, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, holdout)`` of ``data`` with a class-balanced holdout of ``n`` examples.

    Each class gives ``n // C`` examples, the first ``n % C`` classes one more; a class
    gives its LAST examples in the split's order. Both index tensors are sorted.

    Raises:
        ParameterError: when ``n`` is negative, leaves no training example, or asks a
            class for more examples than it has.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ParameterError(f"holdout {n!r} is not a count of examples: pass a whole number >= 0")
    total = len(data)
    if n == 0:
        return torch.arange(total), torch.zeros(0, dtype=torch.long)
    if n >= total:
        raise ParameterError(f"holdout {n} leaves no training example of the {total}: pass a smaller holdout")
    classes = data.num_classes
    chosen = []
    for c in range(classes):
        want = n // classes + (1 if c < n % classes else 0)
        members = (data.y == c).nonzero().flatten()
        if want > len(members):
            raise ParameterError(f"holdout {n} needs {want} examples of class {c}, the training data has "
                                 f"{len(members)}: pass a smaller holdout")
        if want:
            chosen.append(members[len(members) - want:])
    held = torch.sort(torch.cat(chosen)).values
    mask = torch.ones(total, dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().flatten(), held


def subset(data: LabeledData, index: torch.Tensor, split: str) -> LabeledData:
    """The examples of ``data`` at ``index``, as a split named ``split``."""
    return LabeledData(data.x[index], data.y[index], data.num_classes, data.bounds, data.name, split,
                       data.default_eps)


@dataclass(frozen=True)
class Monitor:
    """What measures the held-out slice: the data, and the audited attack with its threat model."""

    data: LabeledData
    spec: AttackSpec | None
    threat: ThreatModel | None

    @classmethod
    def build(cls, data: LabeledData, monitor: tuple[str, dict[str, Any]] | None,
              threat: ThreatModel | None) -> "Monitor":
        """A monitor of ``data`` under the defense's declared ``monitor`` attack at ``threat``.

        Without an attack or a threat model only clean accuracy is measured.
        """
        if monitor is None or threat is None:
            return cls(data, None, None)
        spec = fixed_step_spec(*monitor)
        spec.attack.check_threat(threat, None)
        return cls(data, spec, threat)

    def measure(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """``holdout_clean`` (and ``holdout_robust``) accuracy of ``model`` on the slice, in eval mode.

        The global RNG is saved and restored around the measurement.
        """
        right = robust = 0
        with eval_mode(model), torch.random.fork_rng(devices=[]):
            for _, x, y in self.data.batches(MONITOR_BATCH):
                x, y = x.to(device), y.to(device)
                with torch.no_grad():
                    right += int((model.predict(model(x)) == y).sum())
                if self.spec is not None and self.threat is not None:
                    x_adv = craft_audited(model, x, y, self.spec, self.threat)
                    with torch.no_grad():
                        robust += int((model.predict(model(x_adv)) == y).sum())
        n = max(len(self.data), 1)
        out = {"holdout_clean": right / n}
        if self.spec is not None:
            out["holdout_robust"] = robust / n
        return out


def _score(entry: dict[str, float]) -> float | None:
    value = entry.get("holdout_robust", entry.get("holdout_clean"))
    return None if value is None else float(value)


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch (1-based, as in ``history``) of highest held-out robust accuracy.

    Held-out clean accuracy decides where no robust accuracy was measured; the earliest
    epoch wins a tie. None when no epoch was measured.
    """
    best: tuple[float, int] | None = None
    for entry in history:
        score = _score(entry)
        if score is not None and (best is None or score > best[0]):
            best = (score, int(entry["epoch"]))
    return None if best is None else best[1]


def collapse(history: list[dict[str, float]], drop: float = COLLAPSE_DROP,
             fraction: float = COLLAPSE_FRACTION) -> str | None:
    """A one-line description of catastrophic overfitting at the last epoch, or None.

    It is a collapse when the last epoch's held-out robust accuracy is more than ``drop``
    below the best so far AND below ``fraction`` of it, while its held-out clean accuracy
    is at least that of the best epoch (a model that gets worse at everything is
    diverging, not overfitting).
    """
    measured = [e for e in history if "holdout_robust" in e]
    if len(measured) < 2:
        return None
    last = measured[-1]
    best = max(measured[:-1], key=lambda e: (e["holdout_robust"], -e["epoch"]))
    fell = last["holdout_robust"] < min(best["holdout_robust"] - drop, fraction * best["holdout_robust"])
    if fell and last["holdout_clean"] >= best["holdout_clean"]:
        return (f"catastrophic overfitting at epoch {int(last['epoch'])}: held-out robust accuracy fell to "
                f"{100 * last['holdout_robust']:.1f}% (best {100 * best['holdout_robust']:.1f}% at epoch "
                f"{int(best['epoch'])}) while clean accuracy rose to {100 * last['holdout_clean']:.1f}%")
    return None
