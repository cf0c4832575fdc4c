"""The codeword model of Saito & Roy: heads, decision rules, codebook secrecy, white-box attacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import advframe
from advframe.attack import least_likely
from advframe.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from advframe.errors import CheckpointError, ParameterError
from advframe.model import model_config
from advframe_codeword import CodewordModel, codebook_digest, load_with_key, make_codebook, strip_codebook
from advframe_codeword.heads import KEY_ENV


def build(head: str = "tanh_mse", **kw: object) -> CodewordModel:
    torch.manual_seed(0)
    return advframe.build_model("codeword", base="mnist_cnn", base_config={"width": 0.5}, head=head,
                                dim=kw.pop("dim", 16), key=kw.pop("key", 1234), **kw).eval()


def save(model: CodewordModel, path: object) -> None:
    """Save the way the training loop does: name + config in metadata, tensors prefixed ``model.``."""
    name, cfg = model_config(model)
    save_checkpoint(path, {f"model.{k}": v for k, v in model.state_dict().items()},
                    {"model": name, "model_config": cfg, "dataset": "mnist5k"})


def test_codebook_is_a_function_of_the_key() -> None:
    a, b, c = make_codebook(10, 128, 7), make_codebook(10, 128, 7), make_codebook(10, 128, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (10, 128) and float(a.min()) >= -1 and float(a.max()) < 1
    # roughly uniform on (-1, 1): mean 0, variance 1/3
    assert abs(float(a.mean())) < 0.1 and abs(float(a.var()) - 1 / 3) < 0.05


def test_tanh_head_decision_rule_is_nearest_codeword() -> None:
    model = build()
    x = torch.rand(8, 1, 28, 28)
    out = model(x)
    assert out.shape == (8, 16) and float(out.detach().abs().max()) <= 1
    dist = torch.cdist(out, model.codebook)
    assert torch.allclose(model.scores(out), -dist, atol=1e-5)
    assert torch.equal(model.predict(out), dist.argmin(dim=1))
    y = torch.arange(8) % 10
    assert torch.allclose(model.loss(out, y), ((out - model.codebook[y]) ** 2).mean(dim=1))
    # a codeword itself is classified as its class
    assert torch.equal(model.predict(model.codebook), torch.arange(10))


def test_softmax_heads() -> None:
    mse, ce = build("softmax_mse"), build("softmax_ce")
    x = torch.rand(6, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    p = mse(x)
    assert torch.allclose(p.sum(dim=1), torch.ones(6), atol=1e-5)
    assert torch.equal(mse.predict(p), p.argmax(dim=1))  # nearest one-hot = arg-max
    assert torch.allclose(mse.loss(p, y), ((p - F.one_hot(y, 10)) ** 2).mean(dim=1), atol=1e-6)
    z = ce(x)
    assert torch.allclose(ce.loss(z, y), F.cross_entropy(z, y, reduction="none"))
    assert torch.equal(ce.scores(z), z)


def test_config_from_cli_strings_and_errors() -> None:
    model = advframe.build_model("codeword", base="mnist_cnn", base_config={"width": "0.5"}, head="tanh_mse",
                                 dim="32", key="99", share_codebook="true")
    assert model.dim == 32 and torch.equal(model.codebook, make_codebook(10, 32, 99))
    assert model.base.classifier[-1].out_features == 32
    with pytest.raises(ParameterError, match="head"):
        advframe.build_model("codeword", head="sigmoid_mse")
    with pytest.raises(ParameterError, match="num_classes"):
        advframe.build_model("codeword", base_config={"num_classes": 5})


def test_checkpoint_round_trip_stores_codebook(tmp_path) -> None:
    model = build()
    path = tmp_path / "cw.safetensors"
    save(model, path)
    tensors, meta = load_checkpoint(path)
    assert torch.equal(tensors["model.codebook"], model.codebook)
    assert meta["model"] == "codeword" and meta["model_config"]["head"] == "tanh_mse"
    loaded = advframe.load_model(str(path))
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(loaded(x), model(x)) and torch.equal(loaded.codebook, model.codebook)


def test_strip_codebook_needs_the_key(tmp_path, monkeypatch) -> None:
    model = build(key=424242)
    full, stripped = tmp_path / "full.safetensors", tmp_path / "stripped.safetensors"
    save(model, full)
    strip_codebook(full, stripped)
    tensors, meta = load_checkpoint(stripped)
    assert "model.codebook" not in tensors
    assert meta["model_config"]["key"] is None and meta["model_config"]["codebook_sha256"] == codebook_digest(
        model.codebook)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(CheckpointError, match="key"):
        advframe.load_model(str(stripped))
    with pytest.raises(CheckpointError, match="does not reproduce"):
        load_with_key(stripped, 1)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(load_with_key(stripped, 424242)(x), model(x))
    monkeypatch.setenv(KEY_ENV, "424242")
    assert torch.equal(advframe.load_model(str(stripped)).codebook, model.codebook)
    with pytest.raises(CheckpointError, match="holds no codebook"):
        strip_codebook(stripped, tmp_path / "again.safetensors")


def test_share_codebook_false_keeps_codebook_and_key_out(tmp_path) -> None:
    model = build(share_codebook=False, key=555)
    assert "codebook" not in model.state_dict()
    path = tmp_path / "secret.safetensors"
    save(model, path)
    cfg = read_metadata(path)["model_config"]
    assert cfg["key"] is None and cfg["share_codebook"] is False
    assert "model.codebook" not in load_checkpoint(path)[0]
    assert torch.equal(load_with_key(path, 555).codebook, model.codebook)


def test_fgsm_ascends_the_mse_to_the_codeword_not_cross_entropy() -> None:
    """Saito & Roy §4.3.2: white-box attacks must use the model's own (MSE) loss."""
    model = build()
    x = 0.25 + 0.5 * torch.rand(4, 1, 28, 28)  # interior: clipping cannot hide the sign
    y = torch.tensor([3, 1, 4, 1])
    threat = advframe.ThreatModel(norm="linf", eps=0.01)
    x_adv = advframe.get_attack("fgsm")(model, x, y, threat)
    direction = torch.sign(x_adv - x)

    xg = x.clone().requires_grad_(True)
    mse = ((torch.tanh(model.base(xg)) - model.codebook[y]) ** 2).mean(dim=1).sum()
    (g_mse,) = torch.autograd.grad(mse, xg)
    xg = x.clone().requires_grad_(True)
    ce = F.cross_entropy(model(xg), y, reduction="sum")  # CE on the raw tanh outputs
    (g_ce,) = torch.autograd.grad(ce, xg)

    nonzero = g_mse != 0
    assert bool(nonzero.any())
    assert torch.equal(direction[nonzero], torch.sign(g_mse)[nonzero])
    assert float((direction != torch.sign(g_ce)).float().mean()) > 0.1


def test_least_likely_target_is_the_farthest_codeword() -> None:
    model = build()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        far = torch.cdist(model(x), model.codebook).argmax(dim=1)
    assert torch.equal(least_likely(model, x), far)


def test_tailored_cw_beats_naive_on_codeword_model() -> None:
    """Saito & Roy Table 7: the distance-based CW works on R:TANH:MSE, the logit one does not."""
    model = build(dim=16)
    torch.manual_seed(1)
    model.base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16))  # a spread-out affine base
    torch.nn.init.normal_(model.base[1].weight, std=0.1)
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        pred = model.predict(model(x))
    target = (pred + 1) % 10
    threat = advframe.ThreatModel(norm="l2", eps=100.0, targeted=True)
    params = {"binary_search_steps": 1, "max_iterations": 50, "learning_rate": 0.05, "initial_const": 10.0}
    rates = {}
    for naive in (False, True):
        x_adv = advframe.get_attack("cw_l2", naive=naive, **params)(model, x, pred, threat, target)
        with torch.no_grad():
            rates[naive] = float((model.predict(model(x_adv)) == target).float().mean())
    assert rates[False] >= 0.8
    assert rates[False] > rates[True]
