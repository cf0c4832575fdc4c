"""Shared fixtures: fake plugin distributions on sys.path, small classification problems.
Helpers that tests import (the console script, in-process CLI runs) are in tests/helpers.py."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

import advframe.plugins
from tests.helpers import make_distribution

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Install fake plugin distributions for this process and for subprocesses."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))

    def add(dist: str, module: str, source: str, entry: str | None = None) -> Path:
        make_distribution(root, dist, module, source, entry)
        importlib.invalidate_caches()
        advframe.plugins.reset()
        return root

    yield add
    for name in list(sys.modules):
        if name.startswith("fakeplug_"):
            del sys.modules[name]
    advframe.plugins.reset()


@pytest.fixture
def problem():
    """Small seeded classification problems: ``problem(n, d, k, seed, hidden, margin, wrong)`` gives
    ``(net, x, y)``: a linear classifier (weights N(0, 1), biases 0), or with ``hidden`` units an
    MLP (every parameter N(0, 1)), in eval mode; ``n`` inputs of ``d`` features drawn uniformly
    from ``[margin, 1 - margin]``; the labels it predicts, shifted by one class at ``wrong`` (a
    slice: the clean mistakes)."""

    def make(n: int = 60, d: int = 12, k: int = 4, seed: int = 0, hidden: int = 0, margin: float = 0.1,
             wrong: slice | None = None) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        nn = torch.nn
        net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, k)) if hidden else nn.Linear(d, k)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) if hidden or name == "weight" else torch.zeros_like(p))
        x = torch.rand(n, d, generator=g) * (1 - 2 * margin) + margin
        y = net(x).argmax(1)
        if wrong is not None:
            y[wrong] = (y[wrong] + 1) % k
        return net.eval(), x, y

    return make
