"""advframe_zoo architectures with RobustBench's parameter names: state-dict keys and shapes,
parameter counts, forward passes, bad parameters.

The expected layouts below are written from RobustBench's own definitions
(``robustbench/model_zoo/architectures/resnet.py``: ``PreActResNet``/``PreActBlock``;
``.../wide_resnet.py``: ``WideResNet``/``NetworkBlock``/``BasicBlock``) and from
``torchvision.models.resnet50`` (RobustBench's ImageNet ResNet-50), not from the
implementation. Reference parameter counts:

* PreActResNet-18, 10 classes: 11,171,146 = the CIFAR ResNet-18 (kuangliu/pytorch-cifar,
  11,173,962) less its stem BN (128), its three shortcut BNs (1,792) and the narrower
  first BN of layers 2-4 (896).
* WRN-28-10, 10 classes: 36,479,194 (the count pytorchcv asserts for wrn28_10_cifar10).
* WRN-34-10: 46,160,474 and WRN-70-16: 266,796,506, from the closed form of the layout
  (the "46M" and "267M" of the papers that train them).
* ResNet-50, 1000 classes: 25,557,032 (torchvision's ``ResNet50_Weights`` ``num_params``).

Big networks are built on the meta device; forward passes use small nets and batches.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from advframe.errors import ParameterError
from advframe.model import Classifier

zoo_resnet = pytest.importorskip("advframe_zoo.resnet")
zoo_wrn = pytest.importorskip("advframe_zoo.wide_resnet")

Layout = list[tuple[str, tuple[int, ...]]]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# ---------------------------------------------------------------- expected layouts


def _bn(prefix: str, c: int) -> Layout:
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
            (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]


def _conv(prefix: str, cin: int, cout: int, k: int) -> Layout:
    return [(f"{prefix}.weight", (cout, cin, k, k))]


def _linear(prefix: str, cin: int, cout: int) -> Layout:
    return [(f"{prefix}.weight", (cout, cin)), (f"{prefix}.bias", (cout,))]


def rb_preact_resnet18(num_classes: int = 10, bn_before_fc: bool = False) -> Layout:
    """RobustBench PreActResNet(PreActBlock, [2, 2, 2, 2]): module order of its __init__."""
    out = _conv("conv1", 3, 64, 3)
    in_planes = 64
    for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for j, s in enumerate([stride, 1]):
            p = f"layer{i}.{j}"
            out += _bn(f"{p}.bn1", in_planes) + _conv(f"{p}.conv1", in_planes, planes, 3)
            out += _bn(f"{p}.bn2", planes) + _conv(f"{p}.conv2", planes, planes, 3)
            if s != 1 or in_planes != planes:
                out += _conv(f"{p}.shortcut.0", in_planes, planes, 1)
            in_planes = planes
    if bn_before_fc:
        out += _bn("bn", 512)
    return out + _linear("linear", 512, num_classes)


def rb_wide_resnet(depth: int, widen: int, num_classes: int = 10, sub_block1: bool = False) -> Layout:
    """RobustBench WideResNet(depth, num_classes, widen_factor, sub_block1)."""
    n = (depth - 4) // 6
    ch = [16, 16 * widen, 32 * widen, 64 * widen]

    def group(name: str, cin: int, cout: int) -> Layout:
        rows: Layout = []
        for j in range(n):
            c = cin if j == 0 else cout
            p = f"{name}.layer.{j}"
            rows += _bn(f"{p}.bn1", c) + _conv(f"{p}.conv1", c, cout, 3) + _bn(f"{p}.bn2", cout)
            rows += _conv(f"{p}.conv2", cout, cout, 3)
            if c != cout:  # BasicBlock.equalInOut is False
                rows += _conv(f"{p}.convShortcut", c, cout, 1)
        return rows

    out = _conv("conv1", 3, 16, 3) + group("block1", ch[0], ch[1])
    if sub_block1:
        out += group("sub_block1", ch[0], ch[1])
    out += group("block2", ch[1], ch[2]) + group("block3", ch[2], ch[3])
    return out + _bn("bn1", ch[3]) + _linear("fc", ch[3], num_classes)


def tv_resnet50(num_classes: int = 1000) -> Layout:
    """torchvision resnet50: Bottleneck(conv1, bn1, conv2, bn2, conv3, bn3, downsample.0/.1)."""
    out = _conv("conv1", 3, 64, 7) + _bn("bn1", 64)
    inplanes = 64
    for i, (planes, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for j in range(blocks):
            p = f"layer{i}.{j}"
            out += _conv(f"{p}.conv1", inplanes, planes, 1) + _bn(f"{p}.bn1", planes)
            out += _conv(f"{p}.conv2", planes, planes, 3) + _bn(f"{p}.bn2", planes)
            out += _conv(f"{p}.conv3", planes, 4 * planes, 1) + _bn(f"{p}.bn3", 4 * planes)
            if j == 0 and (stride != 1 or inplanes != 4 * planes):
                out += _conv(f"{p}.downsample.0", inplanes, 4 * planes, 1) + _bn(f"{p}.downsample.1", 4 * planes)
            inplanes = 4 * planes
    return out + _linear("fc", 2048, num_classes)


def _params(layout: Layout) -> int:
    return sum(math.prod(shape) for key, shape in layout if not key.endswith(BUFFERS))


def _layout(model: torch.nn.Module) -> Layout:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


# (factory, kwargs, expected layout, state-dict keys, parameters)
CASES = {
    "preact_resnet18": (zoo_resnet.PreActResNet18, {}, rb_preact_resnet18(), 102, 11_171_146),
    "preact_resnet18_bn": (zoo_resnet.PreActResNet18, {"bn_before_fc": True, "out_shortcut": True},
                           rb_preact_resnet18(bn_before_fc=True), 107, 11_172_170),
    "resnet50": (zoo_resnet.ResNet50, {}, tv_resnet50(), 320, 25_557_032),
    "wrn_28_10": (zoo_wrn.WRN28_10, {}, rb_wide_resnet(28, 10), 155, 36_479_194),
    "wrn_28_10_c100": (zoo_wrn.WideResNet, {"num_classes": 100}, rb_wide_resnet(28, 10, 100), 155, 36_536_884),
    "wrn_34_10": (zoo_wrn.WRN34_10, {}, rb_wide_resnet(34, 10), 191, 46_160_474),
    "wrn_34_10_sub": (zoo_wrn.WRN34_10, {"sub_block1": True}, rb_wide_resnet(34, 10, sub_block1=True), 252, None),
    "wrn_70_16": (zoo_wrn.WRN70_16, {}, rb_wide_resnet(70, 16), 407, 266_796_506),
    "wrn_10_1": (zoo_wrn.WideResNet, {"depth": 10, "width": 1}, rb_wide_resnet(10, 1), 46, 77_850),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_is_robustbench_layout(case):
    factory, kwargs, expected, n_keys, n_params = CASES[case]
    with torch.device("meta"):
        model = factory(**kwargs)
    assert _layout(model) == expected  # names, shapes and order
    assert len(expected) == n_keys
    counted = sum(p.numel() for p in model.parameters())
    assert counted == _params(expected)
    if n_params is not None:
        assert counted == n_params


REPRESENTATIVE = {
    "preact_resnet18": {
        "conv1.weight": (64, 3, 3, 3), "layer1.0.bn1.running_mean": (64,),
        "layer2.0.shortcut.0.weight": (128, 64, 1, 1), "layer4.1.conv2.weight": (512, 512, 3, 3),
        "layer3.1.bn2.num_batches_tracked": (), "linear.weight": (10, 512), "linear.bias": (10,)},
    "resnet50": {
        "conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.downsample.1.num_batches_tracked": (), "layer3.5.conv2.weight": (256, 256, 3, 3),
        "layer4.2.bn3.running_mean": (2048,), "fc.weight": (1000, 2048), "fc.bias": (1000,)},
    "wrn_28_10": {
        "conv1.weight": (16, 3, 3, 3), "block1.layer.0.convShortcut.weight": (160, 16, 1, 1),
        "block2.layer.0.convShortcut.weight": (320, 160, 1, 1), "block3.layer.3.bn2.running_mean": (640,),
        "block2.layer.1.bn1.num_batches_tracked": (), "bn1.weight": (640,), "fc.weight": (10, 640),
        "fc.bias": (10,)},
}


@pytest.mark.parametrize("case", sorted(REPRESENTATIVE))
def test_representative_keys(case):
    factory = CASES[case][0]
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
    for key, shape in REPRESENTATIVE[case].items():
        assert shapes[key] == shape, key
    assert not any(k.split(".")[-1] in ("mean", "std", "mu", "sigma") for k in shapes)  # no normalisation
    convs = [k[:-len(".weight")] for k, shape in shapes.items() if len(shape) == 4]
    assert convs and not any(f"{c}.bias" in shapes for c in convs)  # convolutions have no bias


def test_conventions():
    shapes = {"preact_resnet18": (3, 32, 32), "resnet50": (3, 224, 224), "wide_resnet": (3, 32, 32),
              "wrn_28_10": (3, 32, 32), "wrn_34_10": (3, 32, 32), "wrn_70_16": (3, 32, 32)}
    classes = [zoo_resnet.PreActResNet18, zoo_resnet.ResNet50, zoo_wrn.WideResNet, zoo_wrn.WRN28_10,
               zoo_wrn.WRN34_10, zoo_wrn.WRN70_16]
    assert sorted(c.name for c in classes) == sorted(shapes)
    for cls in classes:
        assert issubclass(cls, Classifier) and cls.summary and "\n" not in cls.summary
        params = inspect.signature(cls).parameters.values()
        assert all(p.default is not p.empty and p.annotation is not p.empty for p in params), cls.name
        with torch.device("meta"):
            assert cls().input_shape == shapes[cls.name]


# ---------------------------------------------------------------- forward passes


def _randomise_bn(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=gen))


def _bn_relu(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.relu(F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                               sd[f"{p}.bias"], training=False))


def rb_wide_resnet_forward(x: torch.Tensor, sd: dict, depth: int) -> torch.Tensor:
    """RobustBench's WideResNet.forward / BasicBlock.forward in eval mode, on a state dict."""
    out = F.conv2d(x, sd["conv1.weight"], padding=1)
    for g, stride in (("block1", 1), ("block2", 2), ("block3", 2)):
        for j in range((depth - 4) // 6):
            p, s = f"{g}.layer.{j}", stride if j == 0 else 1
            if f"{p}.convShortcut.weight" in sd:  # not equalInOut: x itself is replaced by relu1(bn1(x))
                x_in = _bn_relu(out, sd, f"{p}.bn1")
                h = F.conv2d(x_in, sd[f"{p}.conv1.weight"], stride=s, padding=1)
                skip = F.conv2d(x_in, sd[f"{p}.convShortcut.weight"], stride=s)
            else:
                h = F.conv2d(_bn_relu(out, sd, f"{p}.bn1"), sd[f"{p}.conv1.weight"], stride=s, padding=1)
                skip = out
            out = skip + F.conv2d(_bn_relu(h, sd, f"{p}.bn2"), sd[f"{p}.conv2.weight"], padding=1)
    out = F.avg_pool2d(_bn_relu(out, sd, "bn1"), 8).flatten(1)
    return F.linear(out, sd["fc.weight"], sd["fc.bias"])


def rb_preact_forward(x: torch.Tensor, sd: dict, bn_before_fc: bool, out_shortcut: bool) -> torch.Tensor:
    """RobustBench's PreActResNet.forward / PreActBlock.forward in eval mode, on a state dict."""
    out = F.conv2d(x, sd["conv1.weight"], padding=1)
    for i, stride in enumerate((1, 2, 2, 2), start=1):
        for j in range(2):
            p, s = f"layer{i}.{j}", stride if j == 0 else 1
            a = _bn_relu(out, sd, f"{p}.bn1")
            key = f"{p}.shortcut.0.weight"
            skip = F.conv2d(a if out_shortcut else out, sd[key], stride=s) if key in sd else out
            h = F.conv2d(a, sd[f"{p}.conv1.weight"], stride=s, padding=1)
            out = F.conv2d(_bn_relu(h, sd, f"{p}.bn2"), sd[f"{p}.conv2.weight"], padding=1) + skip
    if bn_before_fc:
        out = _bn_relu(out, sd, "bn")
    return F.linear(F.avg_pool2d(out, 4).flatten(1), sd["linear.weight"], sd["linear.bias"])


@pytest.mark.parametrize("width", [1, 2])
def test_wide_resnet_forward_is_robustbench(width):
    torch.manual_seed(0)
    model = zoo_wrn.WideResNet(depth=10, width=width, num_classes=7).eval()
    _randomise_bn(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        ref = rb_wide_resnet_forward(x, model.state_dict(), 10)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", [{}, {"bn_before_fc": True, "out_shortcut": True}])
def test_preact_resnet18_forward_is_robustbench(variant):
    torch.manual_seed(0)
    model = zoo_resnet.PreActResNet18(num_classes=10, **variant).eval()
    _randomise_bn(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        ref = rb_preact_forward(x, model.state_dict(), variant.get("bn_before_fc", False),
                                variant.get("out_shortcut", False))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_robustbench_state_dict_loads_strictly_and_runs():
    expected = rb_wide_resnet(10, 2, num_classes=10, sub_block1=True)
    gen = torch.Generator().manual_seed(1)
    sd = {k: (torch.tensor(5) if k.endswith("num_batches_tracked") else
              torch.rand(shape, generator=gen) + (0.5 if k.endswith("running_var") else 0.0))
          for k, shape in expected}
    model = zoo_wrn.WideResNet(depth=10, width=2, sub_block1=True)
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.rand(2, 3, 32, 32))).all()


def test_resnet50_forward():
    torch.manual_seed(0)
    model = zoo_resnet.ResNet50().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
        small = model(torch.rand(1, 3, 64, 64))  # adaptive pooling
    assert out.shape == (1, 1000) and small.shape == (1, 1000) and torch.isfinite(out).all()


def test_wrn_28_10_forward_shape_on_meta():
    with torch.device("meta"):
        model = zoo_wrn.WRN28_10(num_classes=100)
        out = model(torch.empty(2, 3, 32, 32))
    assert out.shape == (2, 100)


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize("factory, kwargs, words", [
    (zoo_wrn.WideResNet, {"depth": 27}, "depth must be 6n+4"),
    (zoo_wrn.WideResNet, {"depth": 4}, "parameter depth=4 must be an integer >= 10"),
    (zoo_wrn.WideResNet, {"depth": 28.0}, "parameter depth=28.0 must be an integer"),
    (zoo_wrn.WideResNet, {"width": 0}, "parameter width=0 must be an integer >= 1"),
    (zoo_wrn.WideResNet, {"num_classes": 1}, "parameter num_classes=1 must be an integer >= 2"),
    (zoo_wrn.WideResNet, {"sub_block1": "yes"}, "sub_block1 must be true or false"),
    (zoo_wrn.WRN28_10, {"num_classes": 1}, "model 'wrn_28_10': parameter num_classes"),
    (zoo_resnet.PreActResNet18, {"num_classes": 1}, "model 'preact_resnet18': parameter num_classes"),
    (zoo_resnet.PreActResNet18, {"bn_before_fc": 1}, "bn_before_fc must be true or false"),
    (zoo_resnet.ResNet50, {"num_classes": True}, "model 'resnet50': parameter num_classes"),
])
def test_bad_parameters(factory, kwargs, words):
    with pytest.raises(ParameterError) as info, torch.device("meta"):
        factory(**kwargs)
    message = str(info.value)
    assert words in message and "\n" not in message
