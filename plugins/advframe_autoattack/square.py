"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based
random search with square-shaped updates, linf and l2."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from advframe_gradient.losses import margin_loss, require_classes

from advframe.attack import Attack
from advframe.errors import ParameterError
from advframe.model import Model
from advframe.ops import generator, per_example
from advframe.params import check_optional_int, check_range
from advframe.threat import ThreatModel
from advframe_autoattack._square_ops import etas, p_schedule, positions, side, signs, stripes_l2, window_index


def _images(x: torch.Tensor, owner: str) -> torch.Tensor:
    """View a batch as ``(n, c, h, w)``: ``(n, h, w)`` gets one channel, extra leading
    dimensions are folded into the channels."""
    if x.dim() < 3:
        raise ParameterError(f"{owner} needs image-shaped inputs (n, c, h, w) or (n, h, w), "
                             f"got shape {tuple(x.shape)}")
    if x.dim() == 3:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1])


class Square(Attack):
    """Square Attack (Andriushchenko et al., *Square Attack: a query-efficient black-box
    adversarial attack via random search*, ECCV 2020), as run in AutoAttack.

    Black box: only forward queries (``model.scores`` and ``model.predict``), no gradient.
    Random search on the CW margin ``max_{i≠y} z_i − z_y`` of the scores: from a start
    on the boundary of the ball (linf: vertical stripes of ±eps; l2: a grid of "eta"
    patterns), each iteration draws, per example, a square of side
    ``round(sqrt(p · h · w))`` at a uniform position and proposes a new point (linf: the
    square set to ±eps per channel; l2: mass moved from a second square into the first,
    staying on the eps-sphere); the proposal is kept if it raises the margin or fools
    the model. ``p`` starts at ``p_init`` and is halved after iterations 10, 50, 200,
    500, 1000, 2000, 4000, 6000 and 8000 of a 10,000-query budget, rescaled to ``queries``.

    Queries are exact: one forward pass over the batch for the clean predictions
    (examples already misclassified are returned unchanged), one over the still-robust
    examples at the start point, then one per iteration over the examples not yet fooled;
    an example is dropped as soon as it is fooled. An example never fooled therefore
    costs exactly ``queries + 2`` forward passes; ``forward_queries`` counts passes over
    the batch (``2 + iterations run``, or 1 when nothing is robust), and
    ``example_queries`` holds the per-example counts of the last call.

    Args:
        queries: iterations of the random search (default 5000, AutoAttack standard).
        p_init: initial fraction of the image a square covers (default 0.8, AutoAttack's
            standard for both norms; the paper uses 0.05 (linf) and 0.1 (l2) on ImageNet).
        seed (int | None): seed of the random search; ``None`` (default) uses torch's global RNG.

    Inputs must be image-shaped, ``(n, c, h, w)`` or ``(n, h, w)``. Norms linf and l2;
    untargeted; reads the true label; ``black_box = True``.
    """

    name: ClassVar[str] = "square"
    summary: ClassVar[str] = "Square Attack: score-based random search, no gradients (Andriushchenko 2020)"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    targetable: ClassVar[bool] = False
    uses_true_label: ClassVar[bool] = True
    black_box: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"queries": 5000, "p_init": 0.8, "seed": None}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.example_queries = torch.zeros(0, dtype=torch.long)

    def validate(self) -> None:
        owner = f"attack '{self.name}'"
        check_optional_int(owner, "queries", self.queries, 0)
        check_optional_int(owner, "seed", self.seed, 0)
        check_range(owner, p_init=(self.p_init, 1e-6, 1.0))

    def _query(self, model: Model, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """One counted forward pass: the margins and fooled flags of ``x``."""
        out = self.forward(model, x)
        self.example_queries[rows] += 1
        return margin_loss(model.scores(out), y), model.predict(out) != y

    def perturb(self, model: Model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None) -> torch.Tensor:
        owner = f"attack '{self.name}'"
        images = _images(x, owner)
        n = x.shape[0]
        self.example_queries = torch.zeros(n, dtype=torch.long, device=x.device)
        if threat.eps == 0 or n == 0:
            return threat.clip_bounds(x)
        out = self.forward(model, x)
        self.example_queries += 1
        require_classes(owner, "the margin loss", 2, model.scores(out).shape[1])
        robust = (model.predict(out) == y).nonzero().squeeze(1)
        result = images.clone()
        if robust.numel():
            result[robust] = self._search(model, images[robust], y[robust], robust, threat, generator(self.seed))
        return result.reshape(x.shape)

    def _start(self, x: torch.Tensor, threat: ThreatModel, gen: torch.Generator | None) -> torch.Tensor:
        n, c, h, w = x.shape
        if threat.norm == "linf":
            return threat.project(x + threat.eps * signs((n, c, 1, w), gen, x), x)
        delta = stripes_l2((n, c, h, w), gen, x)
        return threat.project(x + threat.eps * _unit(delta), x)

    def _search(self, model: Model, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, threat: ThreatModel,
                gen: torch.Generator | None) -> torch.Tensor:
        """The random search on the clean-robust examples ``x`` (rows ``rows`` of the batch)."""
        best = self._start(x, threat, gen)
        margin, done = self._query(model, best, y, rows)
        for i in range(int(self.queries)):
            act = (~done).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            p = p_schedule(i, int(self.queries), float(self.p_init))
            propose = self._linf_proposal if threat.norm == "linf" else self._l2_proposal
            x_new = propose(x[act], best[act], p, threat, gen)
            m_new, f_new = self._query(model, x_new, y[act], rows[act])
            take = (m_new > margin[act]) | f_new
            best[act] = torch.where(per_example(take, x_new), x_new, best[act])
            margin[act] = torch.where(take, m_new, margin[act])
            done[act] = f_new
        return best

    def _linf_proposal(self, x: torch.Tensor, best: torch.Tensor, p: float, threat: ThreatModel,
                       gen: torch.Generator | None) -> torch.Tensor:
        """Set one random square per example to ``x ± eps`` (a random sign per channel)."""
        n, c, h, w = x.shape
        s = side(p, c * h * w, c, 1, min(h, w))
        idx = window_index(positions(n, h - s, gen, x.device), positions(n, w - s, gen, x.device), s, c)
        x_new = best.clone()
        x_new[idx] = (best[idx] + 2 * threat.eps * signs((n, c, 1, 1), gen, x))
        return threat.project(x_new, x)

    def _l2_proposal(self, x: torch.Tensor, best: torch.Tensor, p: float, threat: ThreatModel,
                     gen: torch.Generator | None) -> torch.Tensor:
        """Move the perturbation of a second square into a first one, with a new eta pattern
        (Andriushchenko et al., Algorithm 3), and rescale onto the eps-sphere."""
        n, c, h, w = x.shape
        s = side(p, c * h * w, c, 3, min(h, w), odd=True)
        delta = best - x
        first = window_index(positions(n, h - s, gen, x.device), positions(n, w - s, gen, x.device), s, c)
        second = window_index(positions(n, h - s, gen, x.device), positions(n, w - s, gen, x.device), s, c)
        mask = torch.zeros_like(x)
        mask[first] = 1.0
        mask[second] = 1.0
        old = delta[first]
        window_norm = old.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
        image_norm = per_example(delta.reshape(n, -1).norm(dim=1), x)
        windows_norm = per_example((delta * mask).reshape(n, -1).norm(dim=1), x)
        new = etas(n, s, gen, x) * signs((n, c, 1, 1), gen, x) + old / (window_norm + 1e-12)
        budget = ((threat.eps ** 2 - image_norm ** 2).clamp_min(0) / c + windows_norm ** 2).sqrt()
        new = new / (new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12) * budget
        delta = delta.clone()
        delta[second] = 0.0
        delta[first] = new
        return threat.project(x + threat.eps * _unit(delta), x)


def _unit(delta: torch.Tensor) -> torch.Tensor:
    """``delta / ||delta||_2`` per example (the reference's 1e-12 guard)."""
    return delta / per_example(delta.reshape(delta.shape[0], -1).norm(dim=1) + 1e-12, delta)
