"""The example plugin's components pass advframe's conformance kit and do what they say."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import torch

import advframe
from advframe.errors import ParameterError
from advframe.testing import check_attack, check_dataset, check_model, toy_model
from advframe.threat import ThreatModel
from advframe_example.attack import RandomStartFGSM
from advframe_example.dataset import Stripes
from advframe_example.model import ExampleMLP


def test_attack_conforms():
    assert check_attack(RandomStartFGSM, eps=(0.0, 0.1, 0.3)) == []
    assert check_attack(functools.partial(RandomStartFGSM, alpha_fraction=0.0), ExampleMLP(), eps=(0.1,)) == []


def test_dataset_and_model_conform():
    assert check_dataset(Stripes) == []
    assert check_model(ExampleMLP()) == []


def test_zero_alpha_is_fgsm():
    model = toy_model((1, 12, 12), num_classes=4)
    x = Stripes().load("test").x[:8]
    y = torch.arange(8) % 4
    threat = ThreatModel(eps=0.1)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.loss(model(xr), y).sum(), xr)
    fgsm = threat.project(x + 0.1 * g.sign(), x)
    assert torch.equal(RandomStartFGSM(alpha_fraction=0.0)(model, x, y, threat), fgsm)


def test_random_step_then_gradient_step():
    model = toy_model((1, 12, 12), num_classes=4)
    x = torch.full((4, 1, 12, 12), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    threat = ThreatModel(eps=0.2)
    torch.manual_seed(0)
    noise = torch.randn(x.shape).sign()
    start = x + 0.1 * noise
    xr = start.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.loss(model(xr), y).sum(), xr)
    expected = threat.project(start + 0.1 * g.sign(), x)
    torch.manual_seed(0)
    assert torch.allclose(RandomStartFGSM()(model, x, y, threat), expected)


def test_bad_alpha_is_refused():
    with pytest.raises(ParameterError, match="alpha_fraction"):
        RandomStartFGSM(alpha_fraction=1.5)


def test_hooks_register_the_components():
    """plugin.py's hooks on a fresh plugin host: works whether or not the plugin is installed."""
    from advframe.plugins import PluginHost
    from advframe_example import plugin

    host = PluginHost()
    info = host.add(plugin, "example", "advframe-example-plugin", "0.1.0")
    assert info.status == "ok" and info.errors == []
    assert set(info.hooks) == {"register_attacks", "register_datasets", "register_models"}
    assert host.registry.get("attacks", "example_r_fgsm").factory is RandomStartFGSM
    assert host.registry.get("datasets", "example_stripes").factory is Stripes
    assert host.registry.get("models", "example_mlp").factory is ExampleMLP


def _installed() -> bool:
    try:
        distribution("advframe-example-plugin")
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="the entry point exists once the plugin is installed: "
                                            "pip install ./examples/plugin-template")
def test_registered_through_the_entry_point():
    entry = advframe.plugins.registry().get("attacks", "example_r_fgsm")
    assert entry.distribution == "advframe-example-plugin"
    assert isinstance(advframe.get_attack("example_r_fgsm"), RandomStartFGSM)


def test_stripes_are_learnable_and_the_attack_hurts():
    train, test = Stripes().load("train"), Stripes().load("test")
    torch.manual_seed(0)
    model = ExampleMLP()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        model.loss(model(train.x), train.y).mean().backward()
        opt.step()
    model.eval()
    result = advframe.evaluate(model, test, attacks=[RandomStartFGSM()], eps=[0.2], label_leaks=False)
    assert result.clean_top1 > 0.9
    assert result.runs[0].top1 < result.clean_top1
