"""advframe_zoo Inception v3 with torchvision's parameter names: state-dict keys and shapes,
parameter count, a strict load of a torchvision-layout state dict, forward passes (against
a functional reference written from torchvision's ``Inception3``), gradients, bad parameters.

The expected layout below is written from ``torchvision/models/inception.py``
(``Inception3(aux_logits=True, init_weights=False)``: module names in ``__init__`` order,
each ``BasicConv2d`` a bias-free ``conv`` and a ``bn``), not from the implementation.

Reference parameter count, 1000 classes: 27,161,264 (torchvision's
``Inception_V3_Weights.IMAGENET1K_V1`` ``num_params``). By parts: the network without the
auxiliary head has 23,834,568 (timm's ``inception_v3`` "23.8M", which drops the head), and
``AuxLogits`` adds 3,326,696 = conv0 768·128 + BN 2·128 (98,560), conv1 128·768·5·5 + BN
2·768 (2,459,136), fc 768·1000 + 1000 (769,000); 23,834,568 + 3,326,696 = 27,161,264.
The generator below, summed, gives the same number (checked in the first test).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from advframe.errors import ParameterError
from advframe.model import Classifier

zoo_inception = pytest.importorskip("advframe_zoo.inception")

Layout = list[tuple[str, tuple[int, ...]]]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
TV_PARAMS = 27_161_264
AUX_PARAMS = 3_326_696

# (name, in, out, kernel (h, w), stride) of torchvision's blocks; in == 0 means the block's input
_A = [("branch1x1", 0, 64, (1, 1), 1), ("branch5x5_1", 0, 48, (1, 1), 1), ("branch5x5_2", 48, 64, (5, 5), 1),
      ("branch3x3dbl_1", 0, 64, (1, 1), 1), ("branch3x3dbl_2", 64, 96, (3, 3), 1),
      ("branch3x3dbl_3", 96, 96, (3, 3), 1)]  # + branch_pool(in, pool_features)
_B = [("branch3x3", 0, 384, (3, 3), 2), ("branch3x3dbl_1", 0, 64, (1, 1), 1),
      ("branch3x3dbl_2", 64, 96, (3, 3), 1), ("branch3x3dbl_3", 96, 96, (3, 3), 2)]
_D = [("branch3x3_1", 0, 192, (1, 1), 1), ("branch3x3_2", 192, 320, (3, 3), 2),
      ("branch7x7x3_1", 0, 192, (1, 1), 1), ("branch7x7x3_2", 192, 192, (1, 7), 1),
      ("branch7x7x3_3", 192, 192, (7, 1), 1), ("branch7x7x3_4", 192, 192, (3, 3), 2)]
_E = [("branch1x1", 0, 320, (1, 1), 1), ("branch3x3_1", 0, 384, (1, 1), 1), ("branch3x3_2a", 384, 384, (1, 3), 1),
      ("branch3x3_2b", 384, 384, (3, 1), 1), ("branch3x3dbl_1", 0, 448, (1, 1), 1),
      ("branch3x3dbl_2", 448, 384, (3, 3), 1), ("branch3x3dbl_3a", 384, 384, (1, 3), 1),
      ("branch3x3dbl_3b", 384, 384, (3, 1), 1), ("branch_pool", 0, 192, (1, 1), 1)]


def _c(c7: int) -> list:
    return [("branch1x1", 0, 192, (1, 1), 1), ("branch7x7_1", 0, c7, (1, 1), 1), ("branch7x7_2", c7, c7, (1, 7), 1),
            ("branch7x7_3", c7, 192, (7, 1), 1), ("branch7x7dbl_1", 0, c7, (1, 1), 1),
            ("branch7x7dbl_2", c7, c7, (7, 1), 1), ("branch7x7dbl_3", c7, c7, (1, 7), 1),
            ("branch7x7dbl_4", c7, c7, (7, 1), 1), ("branch7x7dbl_5", c7, 192, (1, 7), 1),
            ("branch_pool", 0, 192, (1, 1), 1)]


# (name, in channels, convolutions) in torchvision's __init__ order; "AuxLogits" is the head
MIXED = [("Mixed_5b", 192, _A + [("branch_pool", 0, 32, (1, 1), 1)]),
         ("Mixed_5c", 256, _A + [("branch_pool", 0, 64, (1, 1), 1)]),
         ("Mixed_5d", 288, _A + [("branch_pool", 0, 64, (1, 1), 1)]),
         ("Mixed_6a", 288, _B), ("Mixed_6b", 768, _c(128)), ("Mixed_6c", 768, _c(160)),
         ("Mixed_6d", 768, _c(160)), ("Mixed_6e", 768, _c(192)),
         ("AuxLogits", 768, [("conv0", 0, 128, (1, 1), 1), ("conv1", 128, 768, (5, 5), 1)]),
         ("Mixed_7a", 768, _D), ("Mixed_7b", 1280, _E), ("Mixed_7c", 2048, _E)]
STEM = [("Conv2d_1a_3x3", 3, 32, 3, 2, 0), ("Conv2d_2a_3x3", 32, 32, 3, 1, 0), ("Conv2d_2b_3x3", 32, 64, 3, 1, 1),
        ("Conv2d_3b_1x1", 64, 80, 1, 1, 0), ("Conv2d_4a_3x3", 80, 192, 3, 1, 0)]  # (name, in, out, k, stride, pad)


def _basic(prefix: str, cin: int, cout: int, kernel: tuple[int, int]) -> Layout:
    bn = f"{prefix}.bn"
    return [(f"{prefix}.conv.weight", (cout, cin, *kernel)), (f"{bn}.weight", (cout,)), (f"{bn}.bias", (cout,)),
            (f"{bn}.running_mean", (cout,)), (f"{bn}.running_var", (cout,)), (f"{bn}.num_batches_tracked", ())]


def tv_inception_v3(num_classes: int = 1000, aux_logits: bool = True) -> Layout:
    """torchvision Inception3(num_classes, aux_logits, init_weights=False).state_dict() layout."""
    out: Layout = []
    for name, cin, cout, k, _, _ in STEM:
        out += _basic(name, cin, cout, (k, k))
    for block, cin, convs in MIXED:
        if block == "AuxLogits" and not aux_logits:
            continue
        for name, i, o, kernel, _ in convs:
            out += _basic(f"{block}.{name}", i or cin, o, kernel)
        if block == "AuxLogits":
            out += [("AuxLogits.fc.weight", (num_classes, 768)), ("AuxLogits.fc.bias", (num_classes,))]
    return out + [("fc.weight", (num_classes, 2048)), ("fc.bias", (num_classes,))]


def _params(layout: Layout) -> int:
    return sum(math.prod(shape) for key, shape in layout if not key.endswith(BUFFERS))


def _layout(model: torch.nn.Module) -> Layout:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the network runs many small operations, and on two shared, busy
    cores two threads turn them into waits (this file took 28 s so, 4 s with one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _meta(**kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return zoo_inception.InceptionV3(**kwargs)


# ---------------------------------------------------------------- layout and count


@pytest.mark.parametrize("kwargs, classes, aux, n_params", [
    ({}, 1000, True, TV_PARAMS),
    ({"aux_logits": False}, 1000, False, TV_PARAMS - AUX_PARAMS),
    ({"num_classes": 10}, 10, True, None),
])
def test_state_dict_is_torchvision_layout(kwargs, classes, aux, n_params):
    expected = tv_inception_v3(classes, aux)
    model = _meta(**kwargs)
    assert _layout(model) == expected  # names, shapes and order
    assert len(expected) == 96 * 6 + 4 - (0 if aux else 2 * 6 + 2)  # 96 BasicConv2d (94 without the head)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == _params(expected)
    if n_params is not None:
        assert counted == n_params
    if aux and classes == 1000:
        assert _params([row for row in expected if row[0].startswith("AuxLogits.")]) == AUX_PARAMS


def test_conventions():
    cls = zoo_inception.InceptionV3
    assert issubclass(cls, Classifier) and cls.name == "inception_v3" and cls.summary and "\n" not in cls.summary
    params = inspect.signature(cls).parameters
    assert list(params) == ["num_classes", "aux_logits"]
    assert all(p.kind is p.KEYWORD_ONLY and p.annotation is not p.empty for p in params.values())
    assert params["num_classes"].default == 1000 and params["aux_logits"].default is True
    model = _meta()
    assert model.input_shape == (3, 299, 299)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 96 and all(m.eps == 0.001 for m in bns)
    assert not any(k.split(".")[-1] in ("mean", "std", "mu", "sigma") for k in model.state_dict())
    with pytest.raises(TypeError):
        cls(10)  # keyword-only


# ---------------------------------------------------------------- functional reference


def _ref_basic(x: torch.Tensor, sd: dict, p: str, stride: int = 1, pad: tuple[int, int] | int = 0) -> torch.Tensor:
    w = sd[f"{p}.conv.weight"]
    out = F.conv2d(x, w, stride=stride, padding=pad)
    out = F.batch_norm(out, sd[f"{p}.bn.running_mean"], sd[f"{p}.bn.running_var"], sd[f"{p}.bn.weight"],
                       sd[f"{p}.bn.bias"], training=False, eps=0.001)
    return F.relu(out)


def _ref_mixed(x: torch.Tensor, sd: dict, block: str, convs: list) -> torch.Tensor:
    """torchvision's InceptionA..E forward: 'same' padding except for stride-2 convolutions."""
    def run(name: str, h: torch.Tensor) -> torch.Tensor:
        (kh, kw), s = next((k, s) for n, _, _, k, s in convs if n == name)
        return _ref_basic(h, sd, f"{block}.{name}", s, 0 if s == 2 else (kh // 2, kw // 2))

    def chain(prefix: str, h: torch.Tensor) -> torch.Tensor:
        for name in sorted(n for n, *_ in convs if n.startswith(prefix)):
            h = run(name, h)
        return h

    avg = F.avg_pool2d(x, 3, stride=1, padding=1)
    if block.startswith("Mixed_5"):
        parts = [run("branch1x1", x), chain("branch5x5_", x), chain("branch3x3dbl_", x), run("branch_pool", avg)]
    elif block == "Mixed_6a":
        parts = [run("branch3x3", x), chain("branch3x3dbl_", x), F.max_pool2d(x, 3, stride=2)]
    elif block.startswith("Mixed_6"):
        parts = [run("branch1x1", x), chain("branch7x7_", x), chain("branch7x7dbl_", x), run("branch_pool", avg)]
    elif block == "Mixed_7a":
        parts = [chain("branch3x3_", x), chain("branch7x7x3_", x), F.max_pool2d(x, 3, stride=2)]
    else:
        s = run("branch3x3_1", x)
        d = run("branch3x3dbl_2", run("branch3x3dbl_1", x))
        parts = [run("branch1x1", x), torch.cat([run("branch3x3_2a", s), run("branch3x3_2b", s)], 1),
                 torch.cat([run("branch3x3dbl_3a", d), run("branch3x3dbl_3b", d)], 1), run("branch_pool", avg)]
    return torch.cat(parts, 1)


def tv_forward(x: torch.Tensor, sd: dict) -> torch.Tensor:
    """torchvision's Inception3 eval forward (transform_input=False) on a state dict."""
    for name, _, _, _, stride, pad in STEM:
        x = _ref_basic(x, sd, name, stride, pad)
        if name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
            x = F.max_pool2d(x, 3, stride=2)
    for block, _, convs in MIXED:
        if block != "AuxLogits":
            x = _ref_mixed(x, sd, block, convs)
    return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), sd["fc.weight"], sd["fc.bias"])


def _tv_state_dict(num_classes: int, seed: int = 1) -> dict:
    """A torchvision-layout state dict of random values at sane scales (weights ~ 1/sqrt(fan-in))."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in tv_inception_v3(num_classes):
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=gen)
        elif key.endswith("weight") and len(shape) > 1:
            sd[key] = torch.randn(shape, generator=gen) * (2.0 / math.prod(shape[1:])) ** 0.5
        else:
            sd[key] = 0.1 * torch.randn(shape, generator=gen) + (1.0 if key.endswith("bn.weight") else 0.0)
    return sd


def test_torchvision_state_dict_loads_strictly_and_matches_reference():
    sd = _tv_state_dict(10)
    model = _meta(num_classes=10)
    model.load_state_dict(sd, strict=True, assign=True)
    model.eval()
    x = torch.rand(2, 3, 80, 80)
    with torch.no_grad():
        out = model(x)
        ref = tv_forward(x, sd)
    assert out.shape == (2, 10) and torch.isfinite(out).all() and out.abs().max() > 0
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert model.state_dict()["Mixed_7c.branch_pool.bn.num_batches_tracked"] == 7


# ---------------------------------------------------------------- forward passes, gradients


def test_forward_shapes_and_gradient():
    torch.manual_seed(0)
    model = zoo_inception.InceptionV3().eval()  # randomly initialised, on the CPU
    x = torch.rand(1, 3, 75, 75, requires_grad=True)  # the smallest input the stem and reductions allow
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1000) and torch.isfinite(out).all()
    out[0, 3].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.AuxLogits.parameters())  # the head is never run
    with torch.no_grad():
        assert model(torch.rand(1, 3, 299, 299)).shape == (1, 1000)  # the native size


def test_num_classes_and_training_mode_returns_main_logits():
    torch.manual_seed(0)
    model = zoo_inception.InceptionV3(num_classes=10, aux_logits=False)
    assert model.AuxLogits is None
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 80, 80)).shape == (2, 10)
        out = model.train()(torch.rand(2, 3, 80, 80))  # a tensor, not torchvision's (logits, aux)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize("kwargs, words", [
    ({"num_classes": 1}, "model 'inception_v3': parameter num_classes=1 must be an integer >= 2"),
    ({"num_classes": True}, "must be an integer"),
    ({"num_classes": 10.0}, "must be an integer"),
    ({"num_classes": "10"}, "must be an integer"),
    ({"aux_logits": 1}, "model 'inception_v3': aux_logits must be true or false"),
    ({"aux_logits": "yes"}, "aux_logits must be true or false"),
])
def test_bad_parameters(kwargs, words):
    with pytest.raises(ParameterError) as info, torch.device("meta"):
        zoo_inception.InceptionV3(**kwargs)
    message = str(info.value)
    assert words in message and "\n" not in message
