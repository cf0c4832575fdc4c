"""Your own model, from Python to the CLI: save_model, --arch, and loading that runs no code."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

import advframe
from advframe.checkpoint import load_checkpoint, save_checkpoint
from advframe.dataset import LabeledData
from advframe.errors import CheckpointError
from tests.helpers import invoke, run_cli

NET = '''
from torch import nn

class Net(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x)
'''

EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from torch import nn
Net = nn.Linear
'''


@pytest.fixture
def usernet(tmp_path, monkeypatch):
    """A module ``usernet_mod`` defining Net, on sys.path and on PYTHONPATH for subprocesses."""
    root = tmp_path / "src"
    root.mkdir()
    (root / "usernet_mod.py").write_text(NET)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    yield root
    sys.modules.pop("usernet_mod", None)


def small(split: str, n: int) -> LabeledData:
    d = advframe.load_dataset("mnist5k", split=split)
    return LabeledData(d.x[:n], d.y[:n], 10, d.bounds, "mnist5k", split, d.default_eps)


def test_trained_in_python_evaluated_by_the_console_script(usernet, tmp_path):
    from usernet_mod import Net

    result = advframe.train(Net(hidden=16), small("train", 512), epochs=4, batch_size=64, lr=0.05, seed=1)
    path = advframe.save_model(result.model, tmp_path / "mynet.safetensors", config={"hidden": 16},
                               dataset="mnist5k")
    tensors, meta = load_checkpoint(path)
    assert sorted(tensors) == ["model.body.1.bias", "model.body.1.weight", "model.body.3.bias",
                               "model.body.3.weight"]                      # no wrapper prefix
    assert meta["arch"] == "usernet_mod:Net" and meta["model_config"] == {"hidden": 16}

    py = advframe.evaluate(advframe.load_model(path, arch="usernet_mod:Net"), small("test", 200),
                           attacks=["fgsm"], eps=[0.1])
    out = tmp_path / "r.json"
    proc = run_cli("eval", "--model", str(path), "--arch", "usernet_mod:Net", "--attack", "fgsm", "--eps", "0.1",
                   "--limit", "200", "--no-checks", "--no-progress", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["model"] == "mynet (usernet_mod:Net)"
    assert doc["clean"]["top1"] == py.clean_top1 and doc["clean"]["top1"] > 0.5
    assert doc["runs"][0]["top1"] == py.run("fgsm", 0.1).top1

    # without --arch: one line naming the exact --arch to pass
    proc = run_cli("eval", "--model", str(path), "--attack", "fgsm", "--eps", "0.1", "--limit", "10", "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--arch usernet_mod:Net" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_train_checkpoint_of_a_plain_module_has_no_wrapper_prefix(usernet, tmp_path):
    from usernet_mod import Net

    out = tmp_path / "t.safetensors"
    advframe.train(Net(), small("train", 64), epochs=1, batch_size=32, out=out)
    tensors, meta = load_checkpoint(out)
    assert not any(k.startswith("model.module.") for k in tensors)
    assert meta["arch"] == "usernet_mod:Net"
    advframe.train(Net(), small("train", 64), epochs=2, batch_size=32, out=out, resume=True)  # resumes
    assert advframe.load_model(out, arch="usernet_mod:Net") is not None


def test_old_checkpoints_with_wrapper_prefixes_still_load(usernet, tmp_path):
    from usernet_mod import Net

    net = Net()
    path = tmp_path / "old.safetensors"
    save_checkpoint(path, {f"model.module.{k}": v for k, v in net.state_dict().items()}, {"model": None})
    model = advframe.load_model(path, arch="usernet_mod:Net")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), net(x))


@pytest.fixture
def evil(tmp_path, monkeypatch):
    root = tmp_path / "evil"
    root.mkdir()
    marker = tmp_path / "IMPORTED"
    (root / "evilmod_x.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    yield marker
    sys.modules.pop("evilmod_x", None)


def test_a_dangerous_import_path_in_a_checkpoint_is_never_imported(evil, tmp_path):
    path = tmp_path / "evil.safetensors"
    save_checkpoint(path, {"model.weight": torch.zeros(10, 784), "model.bias": torch.zeros(10)},
                    {"model": None, "arch": "evilmod_x:Net", "model_config": {"in_features": 784, "out_features": 10}})
    with pytest.raises(CheckpointError, match="pass arch=evilmod_x:Net"):  # the CLI says --arch, below
        advframe.load_model(path)
    assert "evilmod_x" not in sys.modules and not evil.exists()
    proc = run_cli("eval", "--model", str(path), "--attack", "fgsm", "--limit", "10", "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "--arch evilmod_x:Net" in proc.stderr and not evil.exists()


def test_with_a_registered_name_nothing_is_imported(evil, tmp_path):
    net = advframe.build_model("mnist_cnn", width=0.5)
    path = tmp_path / "reg.safetensors"
    save_checkpoint(path, {f"model.{k}": v for k, v in net.state_dict().items()},
                    {"model": "mnist_cnn", "model_config": {"width": 0.5}, "arch": "evilmod_x:Net"})
    model = advframe.load_model(path)
    assert type(model).__name__ == "MnistCNN"
    assert "evilmod_x" not in sys.modules and not evil.exists()


def test_architecture_without_weights_needs_untrained():
    proc = run_cli("eval", "--model", "mnist_cnn", "--attack", "fgsm", "--limit", "10", "--no-progress")
    assert proc.returncode == 2 and "--untrained" in proc.stderr and "Traceback" not in proc.stderr


def test_arch_works_for_train_transfer_and_lipschitz(usernet, tmp_path):
    ck = tmp_path / "cli.safetensors"
    proc = run_cli("train", "--arch", "usernet_mod:Net", "--model-param", "hidden=8", "--out", str(ck),
                   "--epochs", "1", "--batch-size", "200", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    meta = load_checkpoint(ck)[1]
    assert meta["arch"] == "usernet_mod:Net" and meta["model_config"] == {"hidden": 8} and meta["model"] is None
    # the console script ran above; the other commands run in-process through the same entry point
    out = invoke(["transfer", "--source", str(ck), "--target-model", "mnist_cnn_standard", "--arch", "usernet_mod:Net",
                  "--attack", "fgsm", "--eps", "0.1", "--limit", "20", "--no-progress"])
    assert out.code == 0, out.output
    out = invoke(["lipschitz", "--model", str(ck), "--arch", "usernet_mod:Net"])
    assert out.code == 0, out.output
    out = invoke(["eval", "--arch", "usernet_mod:Net", "--untrained", "--attack", "fgsm", "--eps", "0.1",
                  "--limit", "20", "--no-progress", "--no-checks"])
    assert out.code == 0, out.output
