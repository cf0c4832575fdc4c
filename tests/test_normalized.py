"""advframe.Normalized: attacks see pixels in [0, 1], so eps is measured in pixel space."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advframe
from advframe.checkpoint import load_checkpoint
from advframe.errors import ParameterError

MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.1]


def linear_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_forward_normalises_per_channel():
    net = linear_net()
    model = advframe.Normalized(net, MEAN, STD)
    x = torch.rand(2, 3, 4, 4)
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(model(x), net((x - m) / s))


def test_eps_is_measured_in_pixel_space():
    """FGSM on a normalised linear model moves every pixel by exactly eps, not eps * std."""
    model = advframe.Normalized(linear_net(), MEAN, STD).eval()
    x = torch.full((8, 3, 4, 4), 0.5)
    y = torch.arange(8) % 5
    eps = 0.1
    x_adv = advframe.get_attack("fgsm")(model, x, y, advframe.ThreatModel(eps=eps, norm="linf"))
    delta = (x_adv - x).abs()
    assert torch.allclose(delta[delta > 0], torch.tensor(eps), atol=1e-6)
    assert float(delta.max()) == pytest.approx(eps, abs=1e-6)       # not eps * 0.1 or eps * 0.25
    result = advframe.evaluate(model, (x, y), attacks=["fgsm"], eps=[eps])
    assert result.run("fgsm", eps).max_perturbation == pytest.approx(eps, abs=1e-6)


def test_decision_rule_is_the_wrapped_models():
    inner = advframe.build_model("mnist_cnn", width=0.25)
    model = advframe.Normalized(inner, [0.1307], [0.3081])
    out = model(torch.rand(2, 1, 28, 28))
    assert torch.equal(model.predict(out), inner.predict(out))


def test_save_and_load_keep_the_normalisation(tmp_path):
    net = advframe.build_model("mnist_cnn", width=0.25)
    model = advframe.Normalized(net, [0.1307], [0.3081])
    path = advframe.save_model(model, tmp_path / "n.safetensors")
    tensors, meta = load_checkpoint(path)
    assert meta["normalize"] == {"mean": [pytest.approx(0.1307)], "std": [pytest.approx(0.3081)]}
    assert all(not k.startswith(("model.model.", "model.module.")) for k in tensors)
    loaded = advframe.load_model(path)
    x = torch.rand(3, 1, 28, 28)
    assert isinstance(loaded, advframe.Normalized) and torch.allclose(loaded(x), model.eval()(x))


@pytest.mark.parametrize("mean,std", [([0.5, 0.5], [0.2]), ([0.5], [0.0]), ([float("nan")], [1.0]), (["a"], [1.0])])
def test_bad_normalisation_is_refused(mean, std):
    with pytest.raises(ParameterError):
        advframe.Normalized(linear_net(), mean, std)


def test_eval_normalize_option(tmp_path, capsys):
    import json

    from advframe.cli import main

    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--model", "mnist_cnn", "--untrained", "--normalize", "0.1307/0.3081", "--attack", "fgsm",
              "--eps", "0.1", "--limit", "20", "--no-progress", "--no-checks", "--device", "cpu", "--output", str(out)])
    assert exc.value.code == 0, capsys.readouterr().err
    run = json.loads(out.read_text())["runs"][0]
    assert run["max_perturbation"] == pytest.approx(0.1, abs=1e-6)
