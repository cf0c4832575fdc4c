"""Lipschitz bounds (Saito & Roy §3.4): FFT singular values of convolutions against explicit operators."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import advframe
from advframe.checkpoint import save_checkpoint
from advframe.errors import ParameterError
from advframe.model import model_config
from advframe_codeword import (conv2d_operator_norm, conv_singular_values, linear_operator_norm, lipschitz_bounds,
                               power_iteration_norm)
from advframe_codeword.lipschitz import explicit_conv


def conv(c_in: int, c_out: int, k: int, seed: int = 0, **kw: object) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, bias=False, **kw).double()


def dense_singular_values(op, shape: tuple[int, ...]) -> torch.Tensor:
    n = int(torch.tensor(shape).prod())
    jac = torch.autograd.functional.jacobian(op, torch.zeros(shape, dtype=torch.float64))
    return torch.linalg.svdvals(jac.reshape(-1, n))


def test_fft_spectrum_equals_dense_operator_spectrum_for_circular_conv() -> None:
    """Sedghi et al. Theorem 6: every singular value, not only the largest, matches."""
    layer = conv(2, 3, 3, padding=1, padding_mode="circular")
    fft = conv_singular_values(layer.weight, (5, 6)).flatten().sort(descending=True).values
    dense = dense_singular_values(explicit_conv(layer), (1, 2, 5, 6))
    dense = dense[: fft.numel()]
    assert torch.allclose(fft, dense, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("k,n", [(3, 6), (5, 8), (1, 4)])
def test_circular_same_conv_is_exact_against_power_iteration(k: int, n: int) -> None:
    layer = conv(3, 4, k, seed=k, padding=k // 2, padding_mode="circular")
    norm, exact = conv2d_operator_norm(layer, (n, n))
    assert exact
    assert norm == pytest.approx(power_iteration_norm(explicit_conv(layer), (1, 3, n, n), 200), rel=1e-3)


@pytest.mark.parametrize("kw", [{}, {"padding": 2}, {"stride": 2}, {"dilation": 2}, {"groups": 2, "padding": 1}])
def test_other_convs_are_bounded_and_not_loose(kw: dict) -> None:
    """Zero/valid padding, stride, dilation and groups: the FFT value bounds the true norm."""
    layer = conv(4, 6, 3, seed=1, **kw)
    n = 12
    norm, exact = conv2d_operator_norm(layer, (n, n))
    true = power_iteration_norm(explicit_conv(layer), (1, 4, n, n), 100)
    assert not exact
    assert true <= norm * (1 + 1e-6)
    assert true >= 0.6 * norm  # the bound is close for a 12x12 input


def test_conv_norm_scales_linearly_and_rejects_tiny_inputs() -> None:
    layer = conv(2, 2, 3, padding=1, padding_mode="circular")
    base, _ = conv2d_operator_norm(layer, (8, 8))
    with torch.no_grad():
        layer.weight.mul_(3.0)
    assert conv2d_operator_norm(layer, (8, 8))[0] == pytest.approx(3 * base)
    with pytest.raises(ParameterError, match="smaller than the kernel"):
        conv_singular_values(layer.weight, (2, 2))


def test_identity_kernel_has_norm_one() -> None:
    layer = conv(3, 3, 3, padding=1, padding_mode="circular")
    with torch.no_grad():
        layer.weight.zero_()
        for c in range(3):
            layer.weight[c, c, 1, 1] = 1.0
    assert conv2d_operator_norm(layer, (7, 7))[0] == pytest.approx(1.0)


def test_linear_norm_and_product_bound_hold_empirically() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 5 * 5, 8),
                        nn.Tanh(), nn.Linear(8, 3))
    report = lipschitz_bounds(net, 12)
    assert [layer.kind for layer in report.layers] == ["conv", "linear", "linear"]
    assert report.layers[0].input_shape == (1, 12, 12) and report.layers[1].input_shape == (100,)
    w = net[4].weight.detach().double()
    assert report.layers[1].operator_norm == pytest.approx(float(torch.linalg.svdvals(w)[0]))
    expected = 1.0
    for layer in report.layers:
        expected *= layer.operator_norm
    assert report.product == pytest.approx(expected) and report.unaccounted == []
    x = torch.rand(256, 1, 12, 12)
    d = 1e-2 * torch.randn_like(x)
    with torch.no_grad():
        ratio = (net(x + d) - net(x)).flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1)
    assert float(ratio.max()) <= report.product


def test_unknown_layers_are_reported() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 2))
    report = lipschitz_bounds(net, 8)
    assert report.unaccounted == ["1 (BatchNorm2d)"]


def test_codeword_model_layers() -> None:
    model = advframe.build_model("codeword", base="mnist_cnn", head="softmax_mse")
    report = lipschitz_bounds(model, 28)
    convs = [layer for layer in report.layers if layer.kind == "conv"]
    assert [c.input_shape[1:] for c in convs] == [(28, 28), (12, 12)]
    assert linear_operator_norm(model.base.classifier[1].weight) == pytest.approx(report.layers[2].operator_norm)


def _save(model: nn.Module, path: object) -> None:
    name, cfg = model_config(model)
    save_checkpoint(path, {f"model.{k}": v for k, v in model.state_dict().items()}, {"model": name, "model_config": cfg})


def test_cli_lipschitz_table_json_and_plot(tmp_path) -> None:
    from typer.testing import CliRunner

    from advframe.cli.app import build_app

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    torch.manual_seed(0)
    _save(advframe.build_model("codeword", base="mnist_cnn", head="softmax_ce"), a)
    torch.manual_seed(0)
    m = advframe.build_model("codeword", base="mnist_cnn", head="softmax_mse")
    with torch.no_grad():
        m.base.features[0].weight.mul_(0.5)
    _save(m, b)
    out, png = tmp_path / "l.json", tmp_path / "l.png"
    args = ["lipschitz", "--model", str(a), "--model", str(b), "--input-size", "28", "--output", str(out)]
    pytest.importorskip("matplotlib")
    result = CliRunner().invoke(build_app(), args + ["--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "product bound" in result.output and "conv" in result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "advframe.lipschitz/1" and [m["model"] for m in doc["models"]] == ["a", "b"]
    convs = [[layer for layer in m["layers"] if layer["kind"] == "conv"] for m in doc["models"]]
    assert [layer["name"] for layer in convs[0]] == ["base.features.0", "base.features.3"]
    # same initial weights, b's first kernel halved: half the bound, the second layer unchanged
    assert convs[1][0]["operator_norm"] == pytest.approx(0.5 * convs[0][0]["operator_norm"], rel=1e-6)
    assert convs[1][1]["operator_norm"] == pytest.approx(convs[0][1]["operator_norm"], rel=1e-6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    from advframe.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["lipschitz", "--model", str(tmp_path / "missing.safetensors")])
    assert exc.value.code == 2  # a user's mistake: one line, exit 2


def test_import_advframe_does_not_import_typer() -> None:
    code = ("import sys, advframe; advframe.plugins.registry(); import advframe_codeword; "
            "assert 'typer' not in sys.modules and 'rich' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_labels_each_model_with_its_own_layers() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from advframe_codeword.cli import lipschitz_figure

    shallow = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 10 * 10, 3))
    deep = nn.Sequential()
    deep.add_module("stem", nn.Conv2d(1, 2, 3))
    deep.add_module("mid", nn.Conv2d(2, 2, 3))
    deep.add_module("top", nn.Conv2d(2, 2, 3))
    deep.add_module("flat", nn.Flatten())
    deep.add_module("fc", nn.Linear(2 * 6 * 6, 3))
    reports = [lipschitz_bounds(shallow, 12, name="shallow"), lipschitz_bounds(deep, 12, name="deep")]
    fig = lipschitz_figure(reports)
    try:
        axes = fig.axes
        assert len(axes) == 2
        assert [t.get_text() for t in axes[0].get_xticklabels()] == ["0"]
        assert [t.get_text() for t in axes[1].get_xticklabels()] == ["stem", "mid", "top"]
        assert [len(a.patches) for a in axes] == [1, 3]
        assert axes[0].get_title().startswith("shallow") and axes[1].get_title().startswith("deep")
        assert all("layer" in a.get_xlabel() for a in axes)
        assert "Lipschitz" in axes[0].get_ylabel() and "Lipschitz" in fig.get_suptitle()
    finally:
        plt.close(fig)
