"""DeepFool: iterative linearisation of the decision boundaries (Moosavi-Dezfooli et al.)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from advframe.attack import Attack
from advframe.model import Model
from advframe.ops import per_example
from advframe.threat import ThreatModel
from advframe_optim._box import check_params

#: Added to the step length so that each linearised step lands just past the boundary
#: (the reference implementation's 1e-4).
_NUDGE = 1e-4


class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, *DeepFool: a simple and accurate
    method to fool deep neural networks*, CVPR 2016), multi-class version; Saito & Roy §2.3.

    With class scores ``f_k = model.scores(model(x))_k``, the classes considered are the
    ``nb_candidate`` highest-scoring ones at the clean input, the first being the original
    prediction ``k̂``. At iterate ``x_i`` and for each other candidate ``k``:

    ``w_k = ∇f_k(x_i) − ∇f_k̂(x_i)``,  ``f'_k = f_k(x_i) − f_k̂(x_i)``

    the closest linearised boundary is ``l = argmin_k |f'_k| / ‖w_k‖_q`` and the step is

    * L2:   ``r_i = (|f'_l| / ‖w_l‖₂ + 1e-4) · w_l / ‖w_l‖₂``
    * Linf: ``r_i = (|f'_l| / ‖w_l‖₁ + 1e-4) · sign(w_l)``

    accumulated in ``r = Σ r_i``; the next iterate is ``clip(x + (1 + overshoot) · r)``.
    An example stops as soon as the prediction leaves ``k̂`` (only those still
    classified as ``k̂`` are forwarded again), or after ``max_iter`` iterations. On an
    affine binary classifier ``f(x) = wᵀx + b`` it stops after one step with
    ``‖δ‖₂ = (1 + overshoot)(|f(x)| / ‖w‖₂ + 1e-4)`` along ``−sign(f(x)) w`` — the
    minimal perturbation times the overshoot.

    Gradients: per iteration, one forward pass over the still-active examples (which also
    checks the previous step) and one backward pass per other candidate (``nb_candidate − 1``), each counted in
    ``gradient_evaluations``.

    The attack is untargeted and pushes away from the model's own prediction ``k̂``; it
    never reads the true label (no label leaking). DeepFool is a minimum-norm attack: the
    result is passed through ``threat.project`` at the end, so a perturbation longer than
    ``threat.eps`` is scaled back onto the ball and may no longer fool the model.

    Norms: ``l2`` (the paper's) and ``linf``. Not targetable.
    Defaults: ``nb_candidate=10``, ``overshoot=0.02``, ``max_iter=50`` (Cleverhans).
    Preset ``saito`` (Saito & Roy Table 2): 10 candidates, overshoot 0.02; ``max_iter``
    is the ``m`` swept in their Table 1.
    """

    name: ClassVar[str] = "deepfool"
    summary: ClassVar[str] = "DeepFool: minimal L2/Linf steps to the nearest linearised boundary"
    norms: ClassVar[tuple[str, ...]] = ("l2", "linf")
    targetable: ClassVar[bool] = False
    uses_true_label: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {"nb_candidate": 10, "overshoot": 0.02, "max_iter": 50}
    presets: ClassVar[dict[str, dict[str, Any]]] = {"saito": {"nb_candidate": 10, "overshoot": 0.02}}

    def validate(self) -> None:
        """Check the merged parameters."""
        check_params(self.name, self.params, at_least={"nb_candidate": 2, "overshoot": 0, "max_iter": 1})

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        """Run the attack; see the class docstring."""
        with torch.no_grad():
            scores = model.scores(model(x))
        k = min(int(self.nb_candidate), scores.shape[1])
        candidates = scores.topk(k, dim=1).indices  # (n, k); column 0 is the prediction
        original = candidates[:, 0]
        r_tot = torch.zeros_like(x)
        x_adv = x.clone()
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        scale = 1 + float(self.overshoot)

        dual = 1 if threat.norm == "linf" else 2
        for it in range(int(self.max_iter) + 1):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xa = x_adv[idx].detach().requires_grad_(True)
            with torch.enable_grad():
                outputs = model(xa)
                # the forward pass of this iteration also checks the previous step
                still = model.predict(outputs.detach()) == original[idx]
                active[idx] = still
                if it == int(self.max_iter) or not bool(still.any()):
                    break
                picked = model.scores(outputs).gather(1, candidates[idx])  # (m, k)
                diffs = (picked[:, 1:] - picked[:, :1])[still]  # f'_k of the active rows
                grads = []
                for j in range(k - 1):
                    (g,) = torch.autograd.grad(diffs[:, j].sum(), xa, retain_graph=j < k - 2)
                    grads.append(g[still])
                    self.count_passes("gradient", idx.numel())
            idx = idx[still]
            w = torch.stack(grads, dim=1)  # (m, k-1, *shape): w_k
            wnorm = w.reshape(w.shape[0], w.shape[1], -1).norm(p=dual, dim=2).clamp_min(1e-12)
            pert = diffs.detach().abs() / wnorm
            best = pert.argmin(dim=1)
            rows = torch.arange(best.numel(), device=x.device)
            wl = w[rows, best]
            step_len = pert[rows, best] + _NUDGE
            if threat.norm == "linf":
                r_i = per_example(step_len, wl) * wl.sign()
            else:
                r_i = per_example(step_len / wnorm[rows, best], wl) * wl
            r_tot[idx] = r_tot[idx] + r_i
            x_adv[idx] = threat.clip_bounds(x[idx] + scale * r_tot[idx])

        return threat.project(x_adv, x).detach()
