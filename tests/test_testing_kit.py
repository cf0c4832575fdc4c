"""advframe.testing: the conformance kit passes good components and catches bad ones."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

import advframe
from advframe.attack import Attack
from advframe.dataset import Dataset
from advframe.defense import Defense
from advframe.model import Classifier
from advframe.testing import (AttackCheckOptions, ConformanceError, CountingModel, check_attack, check_dataset,
                              check_defense, check_model, toy_model)
from advframe.threat import ThreatModel


class SignStep(Attack):
    """One FGSM-like step, projected: a correct attack."""

    name = "toy_sign_step"
    norms = ("linf",)
    targetable = True
    uses_true_label = True
    defaults: dict[str, Any] = {}

    def perturb(self, model, x, y, threat, target):
        grad, _ = self.objective_gradient(model, x, y, target)
        return threat.project(x + threat.eps * grad.sign(), x)


class LeavesBall(SignStep):
    name = "toy_leaves_ball"

    def perturb(self, model, x, y, threat, target):
        grad, _ = self.objective_gradient(model, x, y, target)
        return threat.clip_bounds(x + 2 * threat.eps * grad.sign() + 0.01)  # forgets the ball


class Miscounts(SignStep):
    name = "toy_miscounts"

    def perturb(self, model, x, y, threat, target):
        x_adv = x
        for _ in range(3):
            x_req = x_adv.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model.loss(model(x_req), y).sum(), x_req)  # not counted
            x_adv = threat.project(x_adv + threat.eps / 3 * g.sign(), x)
        self.gradient_evaluations += 1
        return x_adv


class Unseeded(SignStep):
    name = "toy_unseeded"

    def perturb(self, model, x, y, threat, target):
        noise = torch.from_numpy(__import__("numpy").random.uniform(-1, 1, tuple(x.shape))).to(x)
        return threat.project(x + threat.eps * noise, x)


class LiesAboutLabels(SignStep):
    name = "toy_label_liar"
    targetable = False
    uses_true_label = False


class SkipsChecks(SignStep):
    name = "toy_skips_checks"
    targetable = False

    def check_threat(self, threat, target):
        """Refuses nothing."""


class InPlace(SignStep):
    name = "toy_in_place"

    def perturb(self, model, x, y, threat, target):
        grad, _ = self.objective_gradient(model, x, y, target)
        return threat.project(x.add_(threat.eps * grad.sign()), x.clone())


class BackwardOnParameters(SignStep):
    name = "toy_backward"

    def perturb(self, model, x, y, threat, target):
        x = x.clone().requires_grad_(True)
        model.loss(model(x), y).sum().backward()
        self.gradient_evaluations += 1
        return threat.project(x.detach() + threat.eps * x.grad.sign(), x.detach())


class BadName(SignStep):
    name = "ToySignStep"


def errors_of(exc: ConformanceError) -> set[str]:
    return {f.check for f in exc.findings if f.severity == "error"}


def test_good_attack_passes_on_toy_and_given_model():
    assert check_attack(SignStep) == []
    model = toy_model((3, 4, 4), num_classes=5, seed=3)
    assert check_attack(SignStep, model, eps=(0.0, 8 / 255)) == []


def test_registered_attack_passes():
    assert check_attack(lambda: advframe.get_attack("fgsm"), eps=(0.0, 0.1)) == []


def test_attack_that_leaves_the_ball_is_caught():
    with pytest.raises(ConformanceError, match="leave the threat model") as info:
        check_attack(LeavesBall, eps=(0.0, 0.1))
    assert "audit" in errors_of(info.value)


def test_attack_that_miscounts_gradients_is_caught():
    with pytest.raises(ConformanceError) as info:
        check_attack(Miscounts, eps=(0.1,))
    assert errors_of(info.value) == {"gradient_evaluations"}
    assert "reports 1 gradient evaluation(s) but the model saw 3" in str(info.value)


def test_unseeded_randomness_is_caught():
    with pytest.raises(ConformanceError) as info:
        check_attack(Unseeded, eps=(0.1,))
    assert "determinism" in errors_of(info.value)


def test_label_use_lie_is_caught():
    with pytest.raises(ConformanceError) as info:
        check_attack(LiesAboutLabels, eps=(0.1,))
    assert errors_of(info.value) == {"uses_true_label"}


def test_accepting_undeclared_norm_and_targets_is_caught():
    with pytest.raises(ConformanceError) as info:
        check_attack(SkipsChecks, eps=(0.1,))
    assert errors_of(info.value) == {"refusal"}
    messages = [f.message for f in info.value.findings]
    assert any("norm l2" in m for m in messages) and any("targeted" in m for m in messages)


def test_in_place_writes_and_parameter_gradients_are_caught():
    with pytest.raises(ConformanceError, match="in place"):
        check_attack(InPlace, eps=(0.1,))
    with pytest.raises(ConformanceError) as info:
        check_attack(BackwardOnParameters, eps=(0.1,))
    assert errors_of(info.value) == {"parameter_gradients"}


def test_bad_name_is_caught_and_findings_can_be_returned():
    findings = check_attack(BadName, eps=(0.1,), raise_errors=False)
    assert [f.check for f in findings] == ["traits"]
    assert "snake_case" in findings[0].message


def test_check_attack_options_are_keywords_validated_against_attack_check_options():
    options = AttackCheckOptions(eps=(0.1,), batch_size=3, check_devices=("cpu",))
    assert check_attack(SignStep, **dataclasses.asdict(options)) == []
    with pytest.raises(TypeError, match="unexpected keyword argument 'epsilon'"):
        check_attack(SignStep, epsilon=(0.1,))


def test_counting_model_counts_backward_passes():
    model = CountingModel(toy_model())
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    y = torch.zeros(4, dtype=torch.long)
    out = model(x)
    torch.autograd.grad(model.loss(out, y).sum(), x)
    with torch.no_grad():
        model(x)
    assert (model.forwards, model.backwards) == (2, 1)


class MeanLoss(Classifier):
    """A model whose loss is batch-averaged and whose scores are reversed."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)

    def loss(self, outputs, y):
        return nn.functional.cross_entropy(outputs, y)

    def scores(self, outputs):
        return -outputs

    def predict(self, outputs):
        return outputs.argmax(dim=1)


def test_check_model():
    assert check_model(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), input_shape=(1, 4, 4)) == []
    with pytest.raises(ConformanceError) as info:
        check_model(MeanLoss(), input_shape=(1, 4, 4))
    assert {"loss", "scores"} <= errors_of(info.value)
    with pytest.raises(ValueError, match="input_shape"):
        check_model(MeanLoss())


class Blobs(Dataset):
    """Three Gaussian blobs as 1x2x2 images (synthetic)."""

    name = "toy_blobs"
    num_classes = 3
    input_shape = (1, 2, 2)
    splits = ("train", "test")
    defaults: dict[str, Any] = {}
    shift = 0.0

    def read(self, split, data_dir):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        y = torch.arange(30) % 3
        x = (0.2 + 0.3 * y.view(-1, 1, 1, 1) + 0.05 * torch.randn(30, 1, 2, 2, generator=g)).clamp(0, 1)
        return x + self.shift, y


class OutOfBounds(Blobs):
    name = "toy_out_of_bounds"
    shift = 5.0


def test_check_dataset():
    assert check_dataset(Blobs) == []
    assert check_dataset(advframe.load_dataset("mnist5k").take(50)) == []
    with pytest.raises(ConformanceError, match="outside the bounds"):
        check_dataset(OutOfBounds)


class LeakyDefense(Defense):
    """Calls backward inside training_loss, polluting parameter gradients."""

    name = "toy_leaky"
    defaults: dict[str, Any] = {}

    def training_loss(self, model, x, y, step):
        x = x.clone().requires_grad_(True)
        model.loss(model(x), y).sum().backward()
        loss = model.loss(model(x + 0.1 * x.grad.sign()), y).mean()
        return loss, {"adv_loss": float(loss.detach())}


def test_check_defense():
    data = Blobs().load("train")
    model = toy_model((1, 2, 2), num_classes=3).train()
    assert check_defense(lambda: advframe.get_defense("standard"), model, data) == []
    with pytest.raises(ConformanceError) as info:
        check_defense(LeakyDefense, toy_model((1, 2, 2), num_classes=3), data)
    assert errors_of(info.value) == {"parameter_gradients"}


def test_threat_model_is_used_as_given():
    attack = SignStep()
    x = torch.rand(2, 1, 8, 8)
    out = attack(toy_model(), x, torch.tensor([1, 2]), ThreatModel(eps=0.0))
    assert torch.equal(out, x)
