"""Transfer-rate and error-rate matrices (Kurakin et al. 2017, Tables 4 and 6) on tiny linear models."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

import advframe
from advframe.attack import Attack
from advframe.errors import ParameterError, ThreatViolation
from advframe.threat import ThreatModel
from advframe_transfer.transfer import SCHEMA, transfer


def linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight)
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(w.shape[0]))
    return lin


class Shift(Attack):
    """A deterministic 'attack': adds ``eps * direction`` (then clips to the bounds)."""

    name = "shift"
    norms = ("linf", "l2")

    def __init__(self, direction: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.direction, self.scale = direction, scale

    def perturb(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                target: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = threat.bounds
        return (x + self.scale * threat.eps * self.direction).clamp(lo, hi)


def data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def test_hand_computed_matrices_with_a_fixed_perturbation() -> None:
    x, y = data()
    a = linear([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    b = linear([[1.0, 0.5, 0], [0, 1.0, 0.5], [0.5, 0, 1.0]], [0.1, 0.0, -0.1])
    attack = Shift(torch.tensor([-1.0, 1.0, 0.0]))
    res = transfer([a, b], [a, b], (x, y), attacks=[attack], eps=[0.4], source_names=["A", "B"],
                   target_names=["A", "B"], batch_size=7)
    x_adv = (x + 0.4 * torch.tensor([-1.0, 1.0, 0.0])).clamp(0, 1)
    with torch.no_grad():
        clean = {"A": a(x).argmax(1) == y, "B": b(x).argmax(1) == y}
        adv = {"A": a(x_adv).argmax(1) == y, "B": b(x_adv).argmax(1) == y}
    for si, s in enumerate("AB"):
        success = clean[s] & ~adv[s]
        for ti, t in enumerate("AB"):
            expected_tr = float((success & ~adv[t]).sum()) / float(success.sum())
            expected_er = float((~adv[t]).float().mean())
            assert res.matrix("shift", 0.4, "transfer_rate")[si][ti] == pytest.approx(expected_tr)
            assert res.matrix("shift", 0.4, "error_rate")[si][ti] == pytest.approx(expected_er)
    # a source equal to the target transfers every one of its successful examples
    assert res.matrix("shift", 0.4)[0][0] == 1.0 and res.matrix("shift", 0.4)[1][1] == 1.0
    # with 3 classes the label is always in the top 5: nothing is ever misclassified in top-5
    assert res.matrix("shift", 0.4, "error_rate", "top5") == [[0.0, 0.0], [0.0, 0.0]]
    assert res.matrix("shift", 0.4, "transfer_rate", "top5") == [[None, None], [None, None]]
    assert res.clean["A"]["top1"] == pytest.approx(float(clean["A"].float().mean()))


def test_fgsm_matches_an_independent_torch_computation() -> None:
    x, y = data(60, seed=3)
    a = linear([[2.0, -1.0, 0.5], [-1.0, 2.0, 0.0], [0.0, 0.5, 2.0]])
    b = linear([[1.5, -0.5, 0.0], [-0.5, 1.5, 0.5], [0.5, 0.0, 1.5]])
    res = transfer([a], [a, b], (x, y), attacks=["fgsm"], eps=[0.25], source_names=["A"],
                   target_names=["A", "B"], batch_size=16)
    xg = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(a(xg), y, reduction="sum").backward()
    x_adv = (x + 0.25 * xg.grad.sign()).clamp(0, 1)
    with torch.no_grad():
        success = (a(x).argmax(1) == y) & (a(x_adv).argmax(1) != y)
        wrong_b = b(x_adv).argmax(1) != y
    assert int(success.sum()) > 0
    run = next(r for r in res.runs if r["target"] == "B")
    assert run["source_successes"]["top1"] == int(success.sum())
    assert res.matrix("fgsm", 0.25)[0] == [1.0, pytest.approx(float((success & wrong_b).sum()) / float(success.sum()))]
    assert res.matrix("fgsm", 0.25, "error_rate")[0][1] == pytest.approx(float(wrong_b.float().mean()))
    assert run["accuracy"]["top1"] == pytest.approx(1 - float(wrong_b.float().mean()))
    assert run["max_perturbation"] <= 0.25 + 1e-6 and run["white_box"] is False


def test_document_schema_and_violating_batches_are_refused(tmp_path: Any) -> None:
    x, y = data(20)
    a = linear([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    too_far = Shift(torch.tensor([1.0, 0.0, 0.0]), scale=2.0)
    res = transfer([a], [a], (x, y), attacks=[too_far], eps=[0.1], batch_size=10)
    doc = json.loads(json.dumps(res.to_dict()))
    assert doc["schema"] == SCHEMA == "advframe.transfer/1"
    for key in ("dataset", "split", "examples", "norm", "sources", "targets", "clean", "runs", "matrices",
                "definitions", "violations"):
        assert key in doc
    run = doc["runs"][0]
    for key in ("source", "target", "attack", "eps", "transfer_rate", "error_rate", "accuracy", "examples",
                "violations", "rejected_batches"):
        assert key in run
    # x + 0.2 leaves the 0.1 ball wherever it is not clipped: refused, never counted
    assert run["examples"] == 0 and run["rejected_batches"] == 2 and run["violations"] > 0
    assert run["error_rate"]["top1"] is None
    assert doc["matrices"][0]["transfer_rate"]["top1"] == [[None]]
    with pytest.raises(ThreatViolation):
        transfer([a], [a], (x, y), attacks=[too_far], eps=[0.1], strict=True)


def test_input_errors() -> None:
    x, y = data(8)
    a = linear([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    with pytest.raises(ParameterError):
        transfer([], [a], (x, y), attacks=["fgsm"], eps=[0.1])
    with pytest.raises(ParameterError):
        transfer([a], [a], (x, y), attacks=["fgsm"], eps=[0.1], batch_size=0)
    with pytest.raises(ParameterError):
        transfer([a], [a], (x, y), attacks=["fgsm"], eps=None)


def test_cli_transfer_writes_json_and_markdown(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from advframe.cli.app import build_app

    torch.manual_seed(0)
    model = advframe.build_model("mnist_cnn", width=0.5)
    ckpt = tmp_path / "m.safetensors"
    from advframe.checkpoint import save_checkpoint

    save_checkpoint(ckpt, {f"model.{k}": v for k, v in model.state_dict().items()},
                    {"model": "mnist_cnn", "model_config": {"width": 0.5}, "dataset": "mnist5k"})
    out, md = tmp_path / "t.json", tmp_path / "t.md"
    result = CliRunner().invoke(build_app(), ["transfer", "--source", str(ckpt), "--target-model", str(ckpt),
                                              "--attack", "fgsm", "--eps", "0.3", "--limit", "20",
                                              "--device", "cpu", "--no-progress", "--output", str(out),
                                              "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "advframe.transfer/1" and doc["examples"] == 20
    assert "Transfer rate" in md.read_text()
    assert "transfer rate" in result.output.lower()


def test_report_joins_an_eval_and_a_transfer_of_the_same_checkpoint(tmp_path: Any) -> None:
    # both commands name the checkpoint alike ('m (mnist_cnn)'), so the white-box/black-box
    # table has one row for it, holding the eval's white-box and the transfer's black-box cells
    from advframe.report import layout_tables, load_documents
    from tests.helpers import invoke

    torch.manual_seed(0)
    for name in ("m", "n"):
        advframe.save_model(advframe.build_model("mnist_cnn", width=0.5), tmp_path / f"{name}.safetensors",
                            config={"width": 0.5}, dataset="mnist5k")
    common = ["--attack", "fgsm", "--eps", "0.3", "--limit", "20", "--device", "cpu", "--no-progress"]
    ran = invoke(["eval", "--model", str(tmp_path / "m.safetensors"), "--no-checks", "--no-label-leaks",
                  "--output", str(tmp_path / "e.json"), *common])
    assert ran.code == 0, ran.output
    ran = invoke(["transfer", "--source-model", str(tmp_path / "n.safetensors"), "--target-model",
                  str(tmp_path / "m.safetensors"), "--output", str(tmp_path / "t.json"), *common])
    assert ran.code == 0, ran.output
    evals, others = load_documents([tmp_path / "e.json", tmp_path / "t.json"])
    (_, header, rows), = [t for t in layout_tables(evals, others, None) if "black-box" in t[0].lower()]
    by_model = {row[0]: dict(zip(header, row)) for row in rows}
    assert evals[0]["model"] == "m (mnist_cnn)" and "m (mnist_cnn)" in by_model
    assert by_model["m (mnist_cnn)"]["fgsm"] != "—" and by_model["m (mnist_cnn)"]["fgsm(n (mnist_cnn))"] != "—"


def test_names_must_match_the_models_one_to_one() -> None:
    x, y = data(8)
    a = linear([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    with pytest.raises(ParameterError, match="1 source_names for 2 source models"):
        transfer([a, a], [a], (x, y), attacks=["fgsm"], eps=[0.1], source_names=["A"])
