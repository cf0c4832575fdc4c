"""``advframe import``: RobustBench .pt files and timm safetensors into advframe checkpoints, no code run."""

from __future__ import annotations

import os
import pickle
import sys
import types

import pytest
import torch
from torch import nn

import advframe
from advframe.checkpoint import read_metadata
from tests.helpers import invoke

pytest.importorskip("advframe_zoo.importing")


def _randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """``net`` with random batch-norm statistics and affine terms (fresh ones are 0/1: they would hide key mix-ups)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


def _robustbench_file(path, net: nn.Module, nest: bool) -> None:
    """A checkpoint as RobustBench's training code leaves it: DataParallel's ``module.`` keys, maybe nested."""
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 200, "best_prec1": 0.5} if nest else state, path)


# (arch, constructor config, input side). wrn_34_10 and wrn_70_16 are WideResNet at other depths and widths (the
# same code as wrn_28_10 and wide_resnet here; their keys are checked in test_zoo_architectures.py): their
# imports, 185 MB and 1 GB files, were run once and reported, not in every suite run
ARCHS = [("preact_resnet18", {}, 32), ("wide_resnet", {"depth": 16, "width": 2}, 32), ("wrn_28_10", {}, 32),
         ("resnet50", {}, 64), ("inception_v3", {}, 80)]


@pytest.mark.parametrize("arch,config,side", ARCHS, ids=[a for a, _, _ in ARCHS])
def test_a_robustbench_checkpoint_imports_and_gives_the_source_modules_logits(tmp_path, arch, config, side):
    torch.manual_seed(0)
    source = _randomised(advframe.build_model(arch, **config))
    src = tmp_path / "rb.pt"
    _robustbench_file(src, source, nest=arch != "wrn_28_10")
    args = ["import", str(src), "--arch", arch, "--out", str(tmp_path / "m.safetensors"), "--eps", "8/255"]
    for k, v in config.items():
        args += ["--model-param", f"{k}={v}"]
    out = invoke(args)
    assert out.code == 0, out.output
    model = advframe.load_model(str(tmp_path / "m.safetensors"))  # no other argument: the file says it all
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["model"] == arch and meta["model_config"] == config
    assert meta["threat_model"]["norm"] == "linf" and meta["threat_model"]["eps"] == pytest.approx(8 / 255)
    assert meta["input_shape"] == {32: [3, 32, 32], 64: [3, 224, 224], 80: [3, 299, 299]}[side]
    assert meta["dataset"] == ("cifar10" if side == 32 else "imagefolder")
    assert meta["imported_from"]["file"] == "rb.pt" and len(meta["imported_from"]["sha256"]) == 64


def test_robustbench_cifar_mu_sigma_buffers_become_the_checkpoints_normalisation(tmp_path):
    """RobustBench's Wong2020Fast normalises inside forward with ``mu`` / ``sigma`` buffers its file holds."""
    net = _randomised(advframe.build_model("preact_resnet18"))
    mu, sigma = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2471, 0.2435, 0.2616])
    state = {**net.state_dict(), "mu": mu.view(1, 3, 1, 1), "sigma": sigma.view(1, 3, 1, 1)}
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "Wong2020Fast.pt")
    out = invoke(["import", str(tmp_path / "Wong2020Fast.pt"), "--arch", "preact_resnet18", "--out",
                  str(tmp_path / "w.safetensors"), "--json"])
    assert out.code == 0, out.output
    model = advframe.load_model(str(tmp_path / "w.safetensors"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mu.view(1, 3, 1, 1)) / sigma.view(1, 3, 1, 1)), atol=1e-5)


def test_robustbench_imagenet_normaliser_becomes_the_checkpoints_normalisation(tmp_path):
    """RobustBench wraps its ImageNet models as Sequential(normalize=ImageNormalizer, model=net)."""
    torch.manual_seed(0)
    net = _randomised(advframe.build_model("resnet50"))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state.update({"normalize.mean": mean.view(1, 3, 1, 1), "normalize.std": std.view(1, 3, 1, 1)})
    torch.save(state, tmp_path / "rb_imagenet.pt")
    from advframe_zoo.importing import import_weights

    done = import_weights(tmp_path / "rb_imagenet.pt", "resnet50", tmp_path / "r.safetensors")
    assert done.normalize_source == "checkpoint"
    assert done.prefixes_removed == ["normalize.mean and normalize.std", "model."]
    model = advframe.load_model(str(tmp_path / "r.safetensors"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), net((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)), atol=1e-5)


class Payload:
    """Unpickling this calls os.system: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("form", ["torch.save", "pickle protocol 2", "whole module"])
def test_a_pt_file_that_carries_code_is_refused_in_one_line_and_its_payload_never_runs(tmp_path, form):
    marker = tmp_path / "PAYLOAD_RAN"
    src = tmp_path / "evil.pt"
    state = {f"module.{k}": v for k, v in advframe.build_model("preact_resnet18").state_dict().items()}
    if form == "torch.save":  # a zip archive whose pickle holds the payload beside real weights
        torch.save({"state_dict": {**state, "payload": Payload(marker)}}, src)
    elif form == "pickle protocol 2":
        src.write_bytes(pickle.dumps({"epoch": 3, "x": Payload(marker)}, protocol=2))
    else:  # the whole module pickled, as torch.save(model) does: its class is code
        torch.save(advframe.build_model("preact_resnet18"), src)
    out = invoke(["import", str(src), "--arch", "preact_resnet18", "--out", str(tmp_path / "m.safetensors")])
    assert out.code == 2 and len(out.lines) == 1, out.output
    assert "refused, and nothing in it ran" in out.output and "weights_only=True" in out.output
    assert not marker.exists() and not (tmp_path / "m.safetensors").exists()
    if form == "pickle protocol 2":
        assert "posix.system" in out.output or "nt.system" in out.output


@pytest.mark.parametrize("case,expect", [
    ("missing", "does not exist"),
    ("not a state dict", "not a state dict"),
    ("wrong arch", "do not fit the architecture"),
    ("unknown arch", "unknown model"),
    ("bad out", "must name a .safetensors file"),
    ("truncated", "cannot be read as a torch.save file"),
    ("bad memo", "a torch.save file"),
])
def test_bad_imports_get_one_line(tmp_path, case, expect):
    src = tmp_path / "w.pt"
    torch.save({f"module.{k}": v for k, v in advframe.build_model("preact_resnet18").state_dict().items()}, src)
    arch, out = "preact_resnet18", tmp_path / "m.safetensors"
    if case == "missing":
        src = tmp_path / "nope.pt"
    elif case == "not a state dict":
        torch.save({"epoch": 3, "acc": 0.5}, src)
    elif case == "wrong arch":
        arch = "wide_resnet"
    elif case == "unknown arch":
        arch = "preact_resnet1"
    elif case == "truncated":
        src.write_bytes(src.read_bytes()[:5000])
    elif case == "bad memo":  # a pickle that reads memo slot 5 of an empty memo
        src.write_bytes(b"\x80\x02h\x05.")
    else:
        out = tmp_path / "m.pt"
    result = invoke(["import", str(src), "--arch", arch, "--out", str(out)])
    assert result.code == 2 and len(result.lines) == 1 and expect in result.output, result.output


# ---------------------------------------------------------------- timm, through a test double of its API
# The real timm cannot be imported on the development machine (see docs/cifar-imagenet.md): these tests
# check advframe's side of the integration against timm's documented API (create_model, list_models,
# pretrained_cfg); test_timm_for_real runs the real package where it is installed.


class _TinyTimmNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, num_classes)
        self.pretrained_cfg = {"input_size": (3, 40, 40), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                               "crop_pct": 0.875}

    def forward(self, x):
        return self.fc(self.conv_stem(x).mean(dim=(2, 3)))


@pytest.fixture
def fake_timm(monkeypatch):
    module = types.ModuleType("timm")
    calls = []

    def create_model(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs))
        return _TinyTimmNet(**kwargs)

    module.create_model = create_model
    module.list_models = lambda: ["tiny_net", "inception_v3"]
    monkeypatch.setitem(sys.modules, "timm", module)
    return calls


def test_timm_safetensors_imports_with_timms_normalisation_and_evaluates_with_no_flag(tmp_path, fake_timm):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = _TinyTimmNet()
    save_file(source.state_dict(), str(tmp_path / "model.safetensors"))  # the file a Hugging Face timm repo holds
    out = invoke(["import", str(tmp_path / "model.safetensors"), "--arch", "timm:tiny_net", "--out",
                  str(tmp_path / "t.safetensors")])
    assert out.code == 0, out.output
    assert fake_timm and all(pretrained is False for _, pretrained, _ in fake_timm)  # nothing downloaded
    meta = read_metadata(tmp_path / "t.safetensors")
    assert meta["model"] == "timm" and meta["model_config"] == {"name": "tiny_net"}
    assert meta["normalize"] == {"mean": [0.5] * 3, "std": [0.25] * 3} and meta["input_shape"] == [3, 40, 40]
    assert meta["crop_pct"] == 0.875
    model = advframe.load_model(str(tmp_path / "t.safetensors"))
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x), source((x - 0.5) / 0.25))


def test_arch_timm_name_builds_the_family_member_and_unknown_names_get_suggestions(fake_timm):
    net = advframe.build_model("timm", name="tiny_net")
    assert net.input_shape == (3, 40, 40)
    out = invoke(["eval", "--arch", "timm:inceptoin_v3", "--untrained", "--limit", "2"])
    assert out.code == 2 and "did you mean inception_v3" in out.output and len(out.lines) == 1, out.output


def test_without_timm_the_family_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    out = invoke(["eval", "--arch", "timm:inception_v3", "--untrained", "--limit", "2"])
    assert out.code == 2 and len(out.lines) == 1 and 'pip install "advframe[timm]"' in out.output, out.output


def test_timm_for_real(tmp_path):
    """The real timm, where it can be imported: Inception v3 (Kurakin et al.'s network) builds and imports."""
    try:
        import timm
    except ImportError as exc:  # timm is an optional extra; its absence is tested above
        pytest.skip(f"timm cannot be imported here ({exc})")
    from safetensors.torch import save_file

    net = timm.create_model("resnet18", pretrained=False).eval()
    save_file(net.state_dict(), str(tmp_path / "model.safetensors"))
    out = invoke(["import", str(tmp_path / "model.safetensors"), "--arch", "timm:resnet18", "--out",
                  str(tmp_path / "r.safetensors")])
    assert out.code == 0, out.output
    assert advframe.build_model("timm", name="inception_v3").input_shape == (3, 299, 299)
