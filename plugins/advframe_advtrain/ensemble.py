"""Ensemble adversarial training (Tramèr et al., ICLR 2018), as compared against in the
ICLR 2019 adversarial-networks submission (§4.4)."""

from __future__ import annotations

from typing import Any

import torch

from advframe import distributed
from advframe.distributed import unwrap
from advframe.engine import craft_audited
from advframe.errors import ParameterError
from advframe.model import Model, eval_mode
from advframe.params import check_range
from advframe.threat import ThreatModel
from advframe_advtrain._common import AdversarialDefense, accuracy, attack_spec, data_bounds


def _split_names(text: str) -> list[str]:
    return [s.strip() for s in str(text or "").split(",") if s.strip()]


class EnsembleAdversarialTraining(AdversarialDefense):
    """Training on clean data enlarged with adversarial examples of STATIC models.

    Tramèr et al. (2018) decouple the generation of adversarial examples from the model
    being trained: they come from fixed, pre-trained models. Following the adversarial-networks paper (§4.4),
    every minibatch of ``n`` clean examples is enlarged with ``n`` adversarial examples per
    attack of ``attacks`` — FGSM with the PREDICTED label (``fgsm_pred``, no label leaking)
    and the least-likely step ``x − ε·sign ∇ₓJ(x, y_LL)`` (``step_ll``) — made on one source
    model; the sources take turns by step (``step mod len(sources)``), as in Tramèr's
    rotation. The loss is

        ``( Σ_clean L(x, y) + λ·Σ_adv L(x_adv, y) ) / (n + λ·A·n)``   (A = number of attacks)

    i.e. the mean over the enlarged set for λ = 1 (default).

    Args:
        sources: comma-separated ``.safetensors`` checkpoints or registered model names
            (e.g. ``mnist_cnn_standard``) of the static models; empty = the model being
            trained (then this is plain adversarial training with those attacks).
        attacks: comma-separated one-step attacks (default ``fgsm_pred,step_ll``).
        eps: radius ε (default 0.3, the adversarial-networks paper's MNIST setting).
        lam: weight λ of the adversarial examples (default 1.0).
        include_current: also rotate the model being trained into the sources (Tramèr's
            variant; default False, the adversarial-networks paper uses static models only).
    """

    name = "ensemble_at"
    summary = "Ensemble adversarial training: clean + fgsm_pred/step_ll examples of static models (Tramer 2018)"
    defaults = {"sources": "", "attacks": "fgsm_pred,step_ll", "eps": 0.3, "lam": 1.0, "include_current": False}
    recipe = {"stop_on_collapse": True}  # one-step training: watched whenever a holdout is given

    def validate(self) -> None:
        owner = f"defense '{self.name}'"
        check_range(owner, eps=(self.eps, 0.0, float("inf")), lam=(self.lam, 0.0, float("inf")))
        if not _split_names(self.attacks):
            raise ParameterError(f"{owner}: give at least one attack in attacks=fgsm_pred,step_ll")

    def threat_model(self, bounds: tuple[float, float]) -> ThreatModel:
        return ThreatModel(norm="linf", eps=float(self.eps), bounds=bounds)

    def setup(self, model: Model, data: Any, context: dict[str, Any]) -> None:
        from advframe.api import load_model

        device = context.get("device", "cpu")
        self.bounds = data_bounds(data)
        self.threat = context.get("threat") or self.threat_model(self.bounds)
        self.attack_objects = [attack_spec(a) for a in _split_names(self.attacks)]
        for a in self.attack_objects:
            a.attack.check_threat(self.threat, None)
        self.static_models = []
        for spec in _split_names(self.sources):
            static = load_model(spec, device=device)
            for p in static.parameters():
                p.requires_grad_(False)
            self.static_models.append(static)

    def source(self, core: Model, step: int) -> Any:
        """The model whose adversarial examples enlarge minibatch ``step``."""
        pool: list[Any] = list(self.static_models)
        if self.include_current or not pool:
            pool.append(core)
        return pool[step % len(pool)]

    def training_loss(self, model: Model, x: torch.Tensor, y: torch.Tensor, step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        core = unwrap(model)
        if not hasattr(self, "attack_objects"):
            self.setup(model, None, {})
        src = self.source(core, step)
        with eval_mode(src):
            advs = [craft_audited(src, x, y, spec, self.threat) for spec in self.attack_objects]
        n, a = x.shape[0], len(advs)
        outputs = model(torch.cat([x, *advs]))
        per = core.loss(outputs, y.repeat(a + 1))
        n_global = distributed.global_count(n)
        lam = float(self.lam)
        denominator = n_global * (1.0 + lam * a)
        if denominator == 0:
            return per.sum() * 0.0, {}
        weighted = per[:n].sum() + lam * per[n:].sum()
        loss = weighted * (n_global / max(n, 1)) / denominator
        return loss, {"clean_acc": accuracy(outputs[:n], y, core),
                      "adv_acc": accuracy(outputs[n:], y.repeat(a), core)}
