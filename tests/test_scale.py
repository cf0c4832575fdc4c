"""Evaluation at scale: --batch-size auto, bf16 autocast for the attacks' passes, channels_last, img/s."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advframe
from advframe.batch_size import HEADROOM, cuda_fits, find_batch_size, largest_fitting
from advframe.attack import Attack
from advframe.engine import AttackSpec, Engine
from advframe.errors import ParameterError
from advframe.precision import Autocast, channels_last_applies
from advframe.threat import ThreatModel
from tests.helpers import invoke


@pytest.mark.parametrize("limit,cap", [(37, 1000), (1, 1000), (64, 64), (1000, 64), (0, 50)])
def test_largest_fitting_finds_the_limit_by_doubling_then_bisection(limit, cap):
    tried = []

    def fits(n):
        tried.append(n)
        return n <= limit

    found, trials = largest_fitting(fits, cap)
    assert found == min(limit, cap)
    assert [n for n, _ in trials] == tried and all(ok == (n <= limit) for n, ok in trials)
    assert len(tried) <= 2 * cap.bit_length() + 1  # logarithmic, not a scan


class OutOfMemoryAbove(nn.Module):
    """A test double for a device's memory: a forward pass over more than ``limit`` examples raises
    torch.OutOfMemoryError, as CUDA's allocator does."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.lin(x)


def test_the_cuda_trial_catches_out_of_memory_and_keeps_headroom():
    model = advframe.load_model(OutOfMemoryAbove(300))
    x, y = torch.rand(2, 4), torch.tensor([0, 1])
    assert largest_fitting(cuda_fits(model, x[:1], y[:1]), 10_000)[0] == 300
    assert largest_fitting(cuda_fits(advframe.load_model(OutOfMemoryAbove(0)), x[:1], y[:1]), 10)[0] == 0


def test_cpu_batch_size_is_estimated_within_the_data_and_the_memory():
    model = advframe.load_model("mnist_cnn_standard")
    data = advframe.load_dataset("mnist5k")
    small = find_batch_size(model, data.x[:2], data.y[:2], "cpu", cap=40)
    assert (small.batch_size, small.largest, small.method) == (40, 40, "estimate")  # all of 40 digits fit
    big = find_batch_size(model, data.x[:2], data.y[:2], "cpu", cap=10 ** 9)
    assert 1 <= big.batch_size <= big.largest <= 1024 and big.batch_size == max(1, int(big.largest * HEADROOM))


def test_amp_runs_the_attacks_under_bf16_and_audits_in_float32():
    model = advframe.load_model("mnist_cnn_standard")
    data = advframe.load_dataset("mnist5k").take(64)
    seen = []

    class Spy(advframe.get_attack("fgsm").__class__):
        def grid(self, m, *args, **kwargs):
            seen.append(type(m))
            return super().grid(m, *args, **kwargs)

    threat = ThreatModel(norm="linf", eps=0.1)
    (rec,) = Engine([threat], amp=True).craft(model, data.x, data.y, AttackSpec("fgsm", Spy()))
    assert seen[0] is Autocast and rec.ok and rec.x_adv.dtype == torch.float32  # audited in float32
    with torch.no_grad():
        out = Autocast(model, "cpu")(data.x)
        assert out.dtype == torch.float32 and (out - model(data.x)).abs().max() < 0.5


class NearTie(nn.Module):
    """Two logits 1.0 and 1.001 at x = (1, 0): float32 says class 1, bf16 rounds both to 1.0 and says 0."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 0.0], [1.001, -10.0]]))

    def forward(self, x):
        return self.lin(x)


class StopsWhenBroken(Attack):
    """Like APGD, FAB or Square: leaves an example it believes broken as it is; breaks the others."""

    name = "test_stops_when_broken"

    def perturb(self, model, x, y, threat, target):
        with torch.no_grad():
            broken = model.predict(model(x)) != y
        pushed = (x + torch.tensor([0.0, threat.eps])).clamp(0, 1)  # class 1's logit falls by 10 eps
        return torch.where(broken[:, None], x, pushed)


def test_under_amp_an_example_only_bf16_calls_broken_is_attacked_again_in_float32():
    model = advframe.load_model(NearTie())
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    assert int(model.predict(model(x))) == 1 and int(Autocast(model, "cpu").predict(Autocast(model, "cpu")(x))) == 0
    threat = ThreatModel(norm="linf", eps=0.1)
    spec = AttackSpec("stops", StopsWhenBroken())
    (plain,) = Engine([threat], amp=False).craft(model, x, y, spec)
    (amp,) = Engine([threat], amp=True).craft(model, x, y, spec)
    assert int(model.predict(model(plain.x_adv))) == 0  # float32 all along: broken
    assert int(model.predict(model(amp.x_adv))) == 0 and amp.ok  # without the recheck it would be x itself
    assert torch.equal(amp.x_adv, plain.x_adv)


def test_amp_needs_cuda_in_one_line():
    with pytest.raises(ParameterError, match="amp .* needs a CUDA device"):
        advframe.evaluate(NearTie(), (torch.rand(2, 2), torch.tensor([0, 1])), attacks=["fgsm"], eps=[0.1], amp=True)
    out = invoke(["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "10", "--amp", "--device", "cpu"])
    assert out.code == 2 and len(out.lines) == 1 and "--amp" in out.output, out.output


def test_channels_last_only_on_cuda_by_default_and_the_same_counts_when_forced():
    net = advframe.load_model("mnist_cnn_standard")
    x = torch.rand(2, 1, 28, 28)
    assert not channels_last_applies(None, "cpu", net, x) and channels_last_applies(None, "cuda", net, x)
    assert not channels_last_applies(True, "cuda", net, torch.rand(2, 784))  # not an image batch
    data = advframe.load_dataset("mnist5k").take(100)
    base = advframe.evaluate(net, data, attacks=["fgsm"], eps=[0.1])
    forced = advframe.evaluate(advframe.load_model("mnist_cnn_standard"), data, attacks=["fgsm"], eps=[0.1],
                               channels_last=True)
    assert forced.to_dict()["channels_last"] is True and "channels_last" not in base.to_dict()
    assert forced.runs[0].top1 == base.runs[0].top1 and forced.clean_top1 == base.clean_top1


def test_cli_batch_size_auto_is_reported_and_progress_shows_images_per_second():
    out = invoke(["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "30", "--batch-size", "auto", "--no-checks"])
    assert out.code == 0, out.output
    assert "batch size auto: 30 (estimated" in out.output and "img/s" in out.output


def test_batch_size_auto_validates_the_model_against_the_data_first(tmp_path):
    """The search runs the model; it must not be what meets a 3-channel image first (a traceback)."""
    import numpy as np

    rec = np.zeros((4, 3073), np.uint8)
    rec.tofile(tmp_path / "test_batch.bin")
    out = invoke(["eval", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--attack", "fgsm", "--eps", "0.1",
                  "--batch-size", "auto"])
    assert out.code == 2 and len(out.lines) == 1 and "expects 1x28x28" in out.output, out.output


@pytest.mark.parametrize("args,needle", [
    (["--batch-size", "many"], "--batch-size 'many' is invalid"),
    (["--image-size", "32"], "--image-size applies to data sets read from image folders"),
    (["--class-map", "no_such_map.txt"], "--class-map 'no_such_map.txt' is not a file"),
])
def test_scale_options_refuse_bad_values_in_one_line(args, needle):
    out = invoke(["eval", "--attack", "fgsm", "--eps", "0.1", "--limit", "10", *args])
    assert out.code == 2 and len(out.lines) == 1 and needle in out.output, out.output


def test_image_folder_with_the_wrong_model_or_for_training_gets_one_line(tmp_path):
    from tests.formats import make_tree

    make_tree(tmp_path / "val", size=(40, 30))
    out = invoke(["eval", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "--model", "mnist_cnn_standard",
                  "--attack", "fgsm", "--eps", "0.1"])  # RGB images of the model's 28x28, but it takes one channel
    assert out.code == 2 and len(out.lines) == 1 and "3x28x28" in out.output and "1x28x28" in out.output, out.output
    out = invoke(["train", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "--model", "cifar_cnn",
                  "--epochs", "1", "--out", str(tmp_path / "m.safetensors")])
    assert out.code == 2 and len(out.lines) == 1 and "streamed from disk" in out.output, out.output
